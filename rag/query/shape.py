"""What a question asks for, read from its wording alone (no index, no retrieval).

The shape of a question (:class:`QuestionShape`, from :func:`analyse`) is what an answer
line must show to answer it, beyond sharing its words:

* ``kind`` / ``pattern`` — a number with the unit asked with 몇, a share, an amount, a
  date (:func:`answer_kind`, :func:`expected_pattern`);
* ``numbers`` — the question's numbers with their units ("2026년도", "제4차"): an answer
  about 2025 does not answer a question about 2026 (:func:`number_phrases`);
* ``subject`` — the proper names (Kiwi NNP, Latin words, hanja) of the phrase the
  question word hangs on: in "디팜스테크 직원은 몇 명이야?" the answer must be about
  디팜스테크, not about another company's staff; ``phrase`` — all the nouns of that
  phrase ("주조 업종 2022년 사업체 수" → 주조, 업종, 사업체; a terse question with no question
  word, "ASML '22년 매출액?", is all phrase); ``asked`` — the noun right after 어느/몇
  ("어느 *도시*");
* ``qualifiers`` — restrictive words whose meaning the answer must carry: 최대, 평균,
  기업당 (기업당, 한 곳당), 연간, 초대, 처음, 완전히, "before the change" (…늘리기 전에는),
  "so far" (지금까지) — "the budget of a programme" does not answer "how much one company
  gets", and a target for 2027 does not say how many have been chosen so far;
* ``predicate`` — for a yes/no question ending in a Sino-Korean verb ("예비타당성조사를
  *통과*했어?"), that verb: a plan to apply does not say whether it passed;
* ``answer_class`` — ``place`` (어느 지역/도시/나라, 어디에 있어), ``company`` (어느 회사),
  ``org`` (어느 기관/부처, "…기업은 어디야"), ``person`` (누구), ``names`` (명단, 기관 이름,
  어디어디): the answer must name one, with a name that is not already in the question.

Plus the composition hints used by :mod:`rag.answer.compose`: list questions, questions that want
two sources, and the parts of a two-part question.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from rag.text.korean import KoreanAnalyzer as Analyzer
from rag.text.korean import get_analyzer
from rag.text.wordlists import load_words

# --------------------------------------------------------------------------- kinds of answer

_LIST_RE = re.compile(
    r"(뭐가\s*있|무엇이\s*있|뭐뭐|무엇무엇|나열|종류|목록|어떤\s*(?:것|게|거)들|어떤\s*게\s*(?:있|나와)|"
    r"어디\s*어디|(?:과제|사업|기술|분야|품목|방식|기관|지역|업종)들|(?:네|세|두|다섯)\s*가지|\d+\s*(?:대|가지)\s*\S*(?:이|가|은|는)?\s*(?:뭐|무엇|어디))"
)
_MULTI_DOC_RE = re.compile(r"(둘\s*다|각각|양쪽|모두\s*확인|달라|다른가|다르|차이|비교해)")
_NUMBER_Q_RE = re.compile(r"(몇|얼마|비중|비율|퍼센트|%|규모|예산|사업비|금액|총액|점유율|인원|건수|개수|매출|수출액|목표)")
_DATE_Q_RE = re.compile(r"(언제|며칠|몇\s*월|몇\s*년도|시기|기한)")
_DEFINITION_Q_RE = re.compile(r"(뜻|의미|정의|개념|(?:이|가)?란\s*(?:뭐|무엇)|말하는\s*거)")


def _first_label(question: str, rules: tuple[tuple[re.Pattern, str], ...], default=None):
    """The label of the first rule whose pattern the question matches."""
    return next((label for pattern, label in rules if pattern.search(question)), default)


def answer_kind(question: str) -> str:
    """What the question asks for: ``date``, ``number``, ``definition`` or ``other``."""
    return _first_label(question, ((_DEFINITION_Q_RE, "definition"), (_DATE_Q_RE, "date"),
                                   (_NUMBER_Q_RE, "number")), "other")


def is_list_question(question: str) -> bool:
    return bool(_LIST_RE.search(question))


def wants_two_sources(question: str) -> bool:
    return bool(_MULTI_DOC_RE.search(question))


_UNIT_Q_RE = re.compile(r"몇\s*(퍼센트|%|개사|개교|개월|개|곳|명|건|배|위|(?:억|만|천)?\s*달러|조\s*원|억\s*원|만\s*원|원|년도|년|월|일|종|회|번|차|점)")
_PERCENT_Q_RE = re.compile(r"(퍼센트|%|비율|점유율)")
_MONEY_Q_RE = re.compile(r"(예산|매출|금액|비용|지원금|자금|보조금|투자액|사업비|연봉|임금|가격|지원받|지원해|보태)")
DATE_RE = r"(\d+\s*[월일月]|['’‘]\d{2}|(?:19|20)\d{2}|[상하上下]반기|분기|[上下]\b)"
#: The unit an answer must mention (next to a number, or as a table column's unit) for
#: the unit a question asks about with 몇.
_UNIT_WORDS = {
    "퍼센트": r"%", "%": r"%", "개사": r"개사|개|社|곳", "개교": r"개교|개|곳", "개": r"개|종|곳|건|社|대",
    "곳": r"곳|개|社", "명": r"명", "건": r"건", "배": r"배", "위": r"위", "조원": r"조", "억원": r"억",
    "만원": r"만", "원": r"원", "년도": DATE_RE + r"|\d\s*년", "년": r"년|['’‘]\d{2}|(?:19|20)\d{2}", "월": r"월|月",
    "일": r"일", "종": r"종|개", "회": r"회|번", "차": r"차", "개월": r"개월|월|년", "점": r"점", "번": r"번|회",
    "달러": r"달러|불|\$", "억달러": r"억\s*(?:달러|불)|\$", "만달러": r"만\s*(?:달러|불)|\$", "천달러": r"달러|불|\$",
}

#: A number that is not a year or a date: "수출경합도 수치는 얼마였어?" is not answered by
#: a chart caption that only says ('21).
_QUANTITY = r"(?<![\d'’‘.])(?!(?:19|20)\d\d(?!\d))\d+(?:\.\d+)?(?!\s*[년월일]|\d)"

#: A share: a number with %, or a table row whose column says (%).
PERCENT = "percent"


def expected_pattern(question: str, kind: str) -> str | None:
    """What the best answer line must show for the kind of answer the question asks
    for: a number with the unit asked with 몇, a share (%), an amount (원, 달러 or a
    share) for 얼마 with a money word, a number for another 얼마, a date; or None
    (also for 얼마나 "how much / to what degree", often answered in words)."""
    m = _UNIT_Q_RE.search(question)
    if m:
        unit = re.sub(r"\s+", "", m.group(1))
        if unit in ("퍼센트", "%"):
            return PERCENT
        return rf"(?=.*\d)(?=.*(?:{_UNIT_WORDS.get(unit, '')}))"
    if kind == "number":
        if _PERCENT_Q_RE.search(question):
            return PERCENT
        if re.search(r"얼마(?!나)", question):
            if _MONEY_Q_RE.search(question):
                return r"(?=.*\d)(?=.*(?:원|달러|불|\$|%))"
            return _QUANTITY
        if re.search(r"몇(?!\s*가지)", question) or not re.search(r"얼마나|어떻|어떤|무엇|뭐|왜", question):
            return _QUANTITY  # "지수는 몇이야?", "펀드 조성 규모?"
        return None
    if kind == "date":
        if "며칠" in question:  # a day, not a year: "며칠에 발표됐어?" → "3월 28일"
            return r"\d+\s*일(?![자간])|\d{1,2}\s*[./]\s*\d{1,2}(?!\d)(?!\s*[년분])"
        return DATE_RE
    return None


_PART_SPLIT_RE = re.compile(r"(?<=[가-힣](?:고|며))\s*,?\s+|[,?？]\s+|\s+(?:그리고|또|또한)\s+")


def question_parts(question: str) -> list[str]:
    """The clauses of a question that asks two things ("…몇 개 기술로 넓어졌고, 그 사업체는
    모두 몇 개사야?"): split after a clause ending 고/며, a comma or a question mark."""
    parts = [p.strip() for p in _PART_SPLIT_RE.split(question.strip()) if p and p.strip()]
    return parts if len(parts) >= 2 else [question.strip()]


# --------------------------------------------------------------------------- numbers

_NUMBER_PHRASE_RE = re.compile(
    r"(?<![\d.,])(\d[\d,]*(?:\.\d+)?)(?![\d.,]*[A-Za-z])\s*(만|억|조|천)?\s*"  # "3D 프린팅" is a name
    r"(년도|년|분기|월|일|차|개사|개교|개|명|곳|%|퍼센트|위|배|원|대|종|호)?"
)


@dataclass(frozen=True)
class NumberPhrase:
    """A number of the question as the squashed spellings a passage may use.
    ``range_end`` — whether the end of a span ("'24.~'26.") counts: only when the question
    asks up to that year ("2026년까지"); a programme running '24~'26 says nothing about
    the 2026 budget."""

    forms: tuple[str, ...]
    range_end: bool = True


def number_phrases(question: str) -> list[NumberPhrase]:
    """Each number of the question with the unit written after it: "2026년도" → ("2026년",
    "'26", …), "제4차" → ("4차",), "50%" → ("50%",). Durations ("10년 넘게", "1년 예산") are
    left out: the documents state them in too many ways."""
    out = []
    for m in _NUMBER_PHRASE_RE.finditer(question):
        num = m.group(1).replace(",", "")
        mag = m.group(2) or ""
        if mag == "천" and question[m.end(2):m.end(2) + 1] in ("억", "만") and num.isdigit():
            num, mag = str(int(num) * 1000), question[m.end(2)]  # "4천억" is written 4,000억
        unit = {"년도": "년", "퍼센트": "%"}.get(m.group(3) or "", m.group(3) or "")
        year = re.fullmatch(r"(?:19|20)\d\d", num) is not None and not mag
        if unit == "년" and not year:
            continue
        forms = [num + mag + unit]
        if unit == "위" and num.isdigit() and 1 <= int(num) <= 20:  # "1위" is written ① in lists
            forms.append(chr(0x2460 + int(num) - 1))
        if year:
            short = num[2:]
            forms += [num, f"'{short}", f"’{short}", f"‘{short}", f"({short}.", f"{short}."]
        until = bool(re.match(r"\s*(?:도|년)?\s*(?:까지|말까지)", question[m.end():]))
        out.append(NumberPhrase(tuple(dict.fromkeys(forms)), range_end=not year or until))
    return out


# --------------------------------------------------------------------------- shape

#: Question words; the phrase right before the first one is what the question is about.
_WH = frozenset(load_words("question_words"))
_NP_TAGS = frozenset("NNG NNP NNB NR SN SL SH XR XPN XSN MM SP".split())

#: Restrictive words: (how the question says it, how an answer line may say it).
QUALIFIERS: dict[str, tuple[str, str]] = {
    "최대": (r"최대|최고\s*한도|한도", r"최대|최고|한도|상한|까지|이내"),
    "최소": (r"최소", r"최소|이상|하한"),
    "평균": (r"평균(?!\s*(?:과|와|보다|이랑|하고|에\s*비해))", r"평균|CAGR"),
    "기업당": (r"(?:기업|업체|회사|곳|개사|社|명|인|사람|과제|건|가구|\d)당(?![가-힣])|"
                 r"한\s*(?:곳|개사|기업|회사|업체|명|사람)(?:당|에|이|마다)|하나(?:당|에|마다)|"
                 r"하루에|하루\s*(?:당|에|이용)|시간당",
                 r"(?<=[가-힣\d)])당|/\s*(?:개사|社|사|곳|기업|명|인|과제|개|년|연|일|시간)\b|마다|per\b|하루|1일"),
    "연간": (r"연간|한\s*해에|매년", r"연간|년간|매년|/\s*(?:연|년)|연\s*\d|연평균"),
    "초대": (r"초대", r"초대|첫|최초"),
    "처음": (r"처음|최초", r"처음|최초|첫"),
    "완전히": (r"완전히|전면", r"완전|전면|전부|모두"),
    "이전": (r"(?:늘리|올리|바꾸|바뀌|확대하|개편하|변경하|인상하|줄이|낮추)기\s*전|이전에는|변경\s*전",
           r"→|기존|종전|현행|당초|이전|에서\s*[\d,.]+"),
    "지금까지": (r"지금까지|현재까지|이제까지|여태", r"現|현재|지금까지|누적|실적|기준|완료|달성"),
    # how to take part: a line about the programme that says nothing of applying does not answer
    "신청": (r"신청|접수", r"신청|접수|공고|모집|참여|원서"),
}

#: (where something *is* is caught first by _WHERE_IS_RE)
_PLACE_Q_RE = re.compile(r"어느\s*(?:지역|도시|나라|국가|시도|권역)|(?:지역|도시|나라|소재지)[은는이가]?\s*어디")
_ORG_Q_RE = re.compile(r"어느\s*(?:기업|회사|업체|기관|부처|대학|단체|협회|센터|방산업체)|"
                       r"(?:기업|회사|업체|기관|부처|대학|단체|협회|센터)[은는이가]?\s*(?:어디|어느\s*곳)")
_PERSON_Q_RE = re.compile(r"(?:사람|인물|장관|기자|회장|대표|위원장|담당자)\S*\s*(?:누구|누가)|누가")
#: "누구한테 납품해?" may be answered by a company
_WHO_RE = re.compile(r"누구")
_COMPANY_Q_RE = re.compile(r"어느\s*(?:회사|업체|기업)(?!들)|(?:회사|업체)[은는이가]?\s*(?:어디|어느\s*곳)")
_WHERE_IS_RE = re.compile(r"어디\s*(?:에\s*)?(?:있|위치)|위치[은는이가]?\s*어디")
#: "…가능해?", "…필요해?": a yes/no question about what is allowed or needed, whose verb an
#: answer rarely repeats.
_MODAL_NOUNS = frozenset(load_words("modal_nouns"))
#: A request, not a yes/no question: "…나열해줘", "…정리해 주세요".
_REQUEST_RE = re.compile(r"(?:줘|주세요|줄래|주실래요|주라)\s*[.?!]*\s*$")
_NAMES_Q_RE = re.compile(r"명단|어디\s*어디|누구\s*누구|(?:기업|회사|업체|대학|학교|기관|사람)\S*\s*(?:이름|명칭)|"
                         r"어떤\s*(?:기업|회사|업체|대학|학교|기관)들")


@dataclass(frozen=True)
class QuestionPart:
    """One clause of a question that asks two things, with what it asks for."""

    text: str
    kind: str
    pattern: str | None


@dataclass(frozen=True)
class QuestionShape:
    """What an answer line must show (see the module doc): the question read once, every
    later stage takes its reading from here."""

    kind: str
    pattern: str | None
    numbers: tuple[NumberPhrase, ...]
    subject: tuple[str, ...] = ()
    phrase: tuple[str, ...] = ()
    asked: tuple[str, ...] = ()
    qualifiers: tuple[str, ...] = ()
    predicate: tuple[str, ...] = ()
    answer_class: str | None = None
    text: str = ""
    is_list: bool = False  # asks for several items ("…뭐가 있어?", "세 가지")
    two_sources: bool = False  # compares or asks both ("각각", "차이", "달라")
    parts: tuple[QuestionPart, ...] = ()  # clauses of a two-part question (empty: one part)


#: Regions, cities and countries the documents talk about.
PLACES = "|".join(load_words("places"))

#: A place the question restricts itself to: "제주도에만 … 몇 개나 있어?" is not answered by
#: a national total.
_ONLY_PLACE_RE = re.compile(r"([가-힣]{2,6}?)(?:도|시|지역)?(?:에만|에서만|만의|지역만)")
#: …and a trade partner: "대만으로 … 수출했어?" is not answered by the exports to all countries.
_PARTNER_RE = re.compile(rf"({PLACES})(?:으로|로|에|에서|와의|과의)\s+(?:\S+\s+){{0,5}}?\S*(?:수출|수입|교역)")

#: A compound ending like this names a body ("우주항공청", "국가뿌리산업진흥센터"), even when
#: Kiwi splits it into common nouns.
_BODY_RE = re.compile(r"[가-힣]{2,}(?:청|처|공사|공단|협회|위원회|재단|연구소|연구원|진흥원|센터|대학교)$")


def _compounds(question: str, toks) -> list[str]:
    """Runs of nouns written without a space between them ("우주" "항공" "청" → "우주항공청")."""
    runs: list[list] = []
    for t in toks:
        if t.tag not in ("NNG", "NNP"):
            runs.append([])
            continue
        if runs and runs[-1] and runs[-1][-1].start + runs[-1][-1].len == t.start:
            runs[-1].append(t)
        else:
            runs.append([t])
    return [question[r[0].start:r[-1].start + r[-1].len] for r in runs if len(r) >= 2]


def _subject_phrase(toks, wh: int) -> list:
    """The noun phrase right before the question word (across 의), e.g. "ASML의 2022년
    매출액" in "ASML의 2022년 매출액은 얼마야?"."""
    j = wh - 1
    while j >= 0 and toks[j].tag.startswith("J"):
        j -= 1
    phrase = []
    while j >= 0 and (toks[j].tag in _NP_TAGS or toks[j].tag == "JKG"):
        if toks[j].tag != "JKG":
            phrase.insert(0, toks[j])
        j -= 1
    return phrase


def _topic_phrase(toks) -> list:
    """The noun phrase marked by the first topic particle (은/는), for a question with no
    question word ("…프로젝트는 예비타당성조사를 통과했어?")."""
    for i, t in enumerate(toks):
        if t.tag == "JX" and t.form in ("은", "는"):
            return _subject_phrase(toks, i + 1)
    return []


def _answer_class(question: str) -> str | None:
    # "…센터는 어디에 있어?" asks where it is (place) before which body runs it (org)
    return _first_label(question, ((_NAMES_Q_RE, "names"), (_PERSON_Q_RE, "person"), (_WHO_RE, "names"),
                                   (_WHERE_IS_RE, "place"),
                                   (_COMPANY_Q_RE, "company"), (_ORG_Q_RE, "org"), (_PLACE_Q_RE, "place")))


def analyse(question: str, analyzer: Analyzer | None = None) -> QuestionShape:
    """The shape of a question, read with ``analyzer``'s Kiwi (the retriever's; by default
    the shared one). Cached: the same question is analysed once."""
    return _analyse(question, (analyzer or get_analyzer()).kiwi)


@lru_cache(maxsize=2048)
def _analyse(question: str, kiwi) -> QuestionShape:
    toks = kiwi.tokenize(question)
    request = _REQUEST_RE.search(question) is not None
    wh = next((i for i, t in enumerate(toks) if t.form in _WH), None)
    phrase = _subject_phrase(toks, wh) if wh is not None else _topic_phrase(toks)
    terse = not any(t.tag[:2] in ("VV", "VA", "VX", "VC") or t.tag in ("XSV", "XSA") for t in toks)
    if wh is None and not phrase and (terse or request):
        # a terse question or a request ("ASML '22년 매출액?", "… 창구 전화번호 알려줘"): all its nouns
        phrase = [t for t in toks if t.tag in _NP_TAGS]
    asked = ()  # the noun right after 어느/몇/무슨/어떤: "어느 *도시*", "몇 *개월*"
    if wh is not None and wh + 1 < len(toks) and toks[wh + 1].tag in ("NNG", "NNP"):
        asked = (toks[wh + 1].form,)
    subject = tuple(dict.fromkeys(  # names: NNP, hanja, Latin words with a capital ("vs" is not one)
        [m.group(1) for m in _ONLY_PLACE_RE.finditer(question)]
        + [m.group(1) for m in _PARTNER_RE.finditer(question)]
        + [t.form for t in phrase
         if (t.tag == "NNP" and len(t.form) >= 2) or t.tag == "SH"
         or (t.tag == "SL" and len(t.form) >= 2 and not t.form.islower())]
        + [c for c in _compounds(question, phrase) if _BODY_RE.search(c)]))
    predicate: tuple[str, ...] = ()
    if wh is None and not request:  # a yes/no question: "…통과했어?", "…확정됐어?"
        for i in range(len(toks) - 1, 0, -1):
            t = toks[i]
            if t.tag in ("XSV", "XSA") and t.form in ("하", "되") and toks[i - 1].tag == "NNG":
                if toks[i - 1].form not in _MODAL_NOUNS:  # "신청 가능해?" asks whether one may
                    predicate = (toks[i - 1].form,)
                break
            if t.tag in ("NNG", "NNP", "VV", "VA", "VCP") and i < len(toks) - 1:
                break
    kind = answer_kind(question)
    clauses = question_parts(question)
    return QuestionShape(
        text=question,
        is_list=is_list_question(question),
        two_sources=wants_two_sources(question),
        parts=tuple(QuestionPart(c, answer_kind(c), expected_pattern(c, answer_kind(c)))
                    for c in clauses) if len(clauses) > 1 else (),
        kind=kind,
        pattern=expected_pattern(question, kind),
        numbers=tuple(number_phrases(question)),
        subject=subject,
        phrase=tuple(dict.fromkeys(t.form for t in phrase if t.tag in ("NNG", "NNP", "SL", "SH", "XR"))),
        asked=asked,
        qualifiers=tuple(k for k, (q_re, _) in QUALIFIERS.items() if re.search(q_re, question)),
        predicate=predicate,
        answer_class=_answer_class(question),
    )
