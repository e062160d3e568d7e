"""Section parsing on real snippets of the corpus: each structure the documents use."""

from rag.ingest.sections import (
    bullet_level,
    classify_lines,
    heading_rank,
    is_noise,
    parse_sections,
)


def titles(text):
    return [(len(path), s.title) for path, s in parse_sections(text).walk() if s.rank]


def test_markdown_roman_and_box_headings_nest_by_marker_not_hash_count():
    text = "# I. 실행계획 개요\n\n## □ 수립 배경\n\n- 내용 하나\n\n## II. 2024년도 실적 및 평가\n\n### 1 안정적 성장기반\n\n#### 1. 세부\n"
    assert titles(text) == [
        (1, "I. 실행계획 개요"), (2, "□ 수립 배경"),
        (1, "II. 2024년도 실적 및 평가"), (2, "1 안정적 성장기반"), (3, "1. 세부"),
    ]


def test_number_only_heading_joins_the_title_line(corpus):
    # 001 writes "## 2" and "## 뿌리산업 혁신역량 제고" on separate lines
    root = parse_sections(corpus["001"].text)
    names = [s.title for _, s in root.walk()]
    assert "2 뿌리산업 혁신역량 제고" in names
    assert "3 뿌리산업 생태계 강화" in names


def test_slide_titles_take_their_numeral_from_the_table_of_contents(corpus):
    root = parse_sections(corpus["000"].text)
    top = [c.title for c in root.children]
    assert top[:3] == ["I. 뿌리산업의 개념 및 중요성", "II. 국내 뿌리산업의 현주소", "III. 뿌리산업 첨단화 비전 및 전략"]
    # the TOC itself is noise, not content
    kinds = {ln.stripped: kind for ln, kind, _, _ in classify_lines(corpus["000"].text)}
    assert kinds["CONTENTS"] == "noise"


def test_circled_and_bracket_numbers_are_siblings(corpus):
    root = parse_sections(corpus["004"].text)
    paths = [p for p, s in root.walk() if s.rank]
    tech = [p[-1] for p in paths if len(p) == 3 and p[1].startswith("1 기술 혁신")]
    assert tech[:3] == ["1 [도전] 미래 시장 선도형 첨단 소부장 기술개발", "② [속도] 신속한 기술개발 및 상용화",
                        "③ [개방] 글로벌 R&D 협력 네트워크 확장"]


def test_ordinals_and_hash_number_markers_in_the_column(corpus):
    names = [s.title for _, s in parse_sections(corpus["002"].text).walk() if s.rank]
    assert "첫째, 스마트 뿌리공장 구축 지원이다." in names
    assert "#2. 대구의 ‘스마트 금형 고도화 클러스터 조성사업’" in names
    assert "둘째, “지역산업 육성사업은 특정 지역 기업만 가능한가?" in names


def test_bold_only_line_and_caption_are_headings():
    assert heading_rank("**3 첨단 뿌리산업 제도·기반 조성**") == (2, "3 첨단 뿌리산업 제도·기반 조성")
    assert heading_rank("### < 뿌리산업의 위상 >")[0] == 5
    assert heading_rank("**클러스터 지원방안**") == (5, "클러스터 지원방안")
    assert heading_rank("구분\t사업체 수 (개사)\t종사자 수 (명)") is None  # a table row is never a heading
    assert heading_rank("20년 미만") is None
    assert heading_rank("6대 기반 공정기술") is None


def test_bullet_levels():
    assert bullet_level("○ 뿌리기업의 새로운 공급망") == 1
    assert bullet_level("- 공정 최적화를 위한") == 2
    assert bullet_level("  - 뿌리산업 혁신공정 R&D") == 3
    assert bullet_level("\\* 뿌리산업 특화단지 지원사업") == 3
    assert bullet_level("- ◆ 뿌리산업의 핵심인재 확보") == 0
    assert bullet_level("뿌리산업은 주조, 금형") is None


def test_web_page_furniture_is_noise(corpus):
    text = corpus["003"].text
    noise = [ln.stripped for ln, kind, _, _ in classify_lines(text) if kind == "noise"]
    for furniture in ("이 기사를 공유합니다", "댓글삭제", "저작권자 © 철강금속신문 무단전재 및 재배포 금지",
                      "• 댓글 0", "• 승인 2023.03.28 17:21"):
        assert furniture in noise
    # the repeated title line is dropped once, the content kept
    contents = [ln.stripped for ln, kind, _, _ in classify_lines(text) if kind == "content"]
    assert contents.count("산업부, ‘K-뿌리산업 첨단화 전략’ 발표") == 1
    assert any("4,000억원 규모의 뿌리전용 신규 R&D" in c for c in contents)
    assert is_noise("---") and is_noise("##") and not is_noise("- 내용")
    # everything after the copyright line is the page footer
    assert "댓글을 남기실 수 있습니다." in noise and "댓글쓰기" in noise


def test_running_header_repeating_its_section_is_noise(corpus):
    root = parse_sections(corpus["000"].text)
    assert [c.title for c in root.children].count("III. 뿌리산업 첨단화 비전 및 전략") == 1


def test_offsets_cover_each_section_exactly(corpus):
    for doc in corpus.values():
        root = parse_sections(doc.text)
        for _, s in root.walk():
            assert 0 <= s.start <= s.heading_end <= len(doc.text)
            assert s.start <= s.end
            for child in s.children:
                assert s.start <= child.start and child.end <= s.end
            for a, b in zip(s.children, s.children[1:]):
                assert a.end <= b.start
