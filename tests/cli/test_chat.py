"""``rag chat`` driven through its prompt, on a pseudo-terminal, via the real entry point."""

from __future__ import annotations

import os

import pexpect  # a test dependency: missing, the suite fails here rather than skipping
import pytest
from conftest import RAG, ROOT

PROMPT = "질문> "
TIMEOUT = 180  # the first answer loads Kiwi and the query encoder; the machine may be busy


def _spawn():
    env = {**os.environ, "NO_COLOR": "1", "TERM": "dumb", "COLUMNS": "160", "PYTHONUNBUFFERED": "1"}
    # codec_errors: readline may redraw a long line cut mid-character on a dumb terminal
    child = pexpect.spawn(RAG[0], RAG[1:] + ["chat"], encoding="utf-8", codec_errors="replace", timeout=TIMEOUT,
                          dimensions=(50, 160), env=env, cwd=str(ROOT))
    child.expect_exact(PROMPT)
    return child


def _ask(child, line: str) -> str:
    """Send a line and return everything printed before the next prompt."""
    child.sendline(line)
    child.expect_exact(PROMPT)
    return child.before


@pytest.fixture(scope="module")
def session(project_index):
    child = _spawn()
    yield child
    if child.isalive():
        child.terminate(force=True)


def test_question_then_follow_up_then_sources_then_quit(session):
    out = _ask(session, "용접 분야를 지원하는 지역뿌리기술지원센터는 어디에 있어?")
    assert "광주첨단산단" in out and "[1]" in out
    assert "근거" in out and "001" in out  # the citations table: document id and offsets

    # a follow-up that only makes sense with the history
    out = _ask(session, "그럼 울산은?")
    assert "이전 질문과 이어서 검색" in out
    assert "울산" in out and "테크노산단" in out and "[1]" in out

    out = _ask(session, "/sources")
    assert "[1] 2025년도 뿌리산업 진흥 실행계획 (001)" in out
    assert "인용 범위: 문자" in out and "인용문:" in out and "구절 전체:" in out
    assert "울산 | 주조, 용접 | 17 | 테크노산단" in out  # the quoted row, in full
    assert "표의 열: 지역 | 지원 분야 | 구축장비수(종) | 센터 위치" in out


def test_bad_input_gets_a_message_and_the_session_continues(session):
    out = _ask(session, "")
    assert "질문을 입력하세요" in out
    out = _ask(session, "가" * 3000)
    assert "3,000" in out and "2,000" in out  # "질문이 너무 깁니다: 3,000자 (최대 2,000자)"
    out = _ask(session, "/nonsense")
    assert "알 수 없는 명령" in out
    out = _ask(session, "/help")
    assert "/sources" in out and "/quit" in out
    out = _ask(session, "누리호 개발에 참여한 회사들 가운데 뿌리기업은 몇 곳이었어?")
    assert "19개사" in out and "[1]" in out


def test_quit_exits_zero(project_index):
    child = _spawn()
    out = _ask(child, "/help")
    assert "/quit" in out
    child.sendline("/quit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert "Traceback" not in (child.before or "")


def test_ctrl_d_exits_cleanly(project_index):
    child = _spawn()
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert "Traceback" not in (child.before or "")


@pytest.mark.parametrize("line", ["/exit", "exit", "QUIT", "종료"])
def test_exit_words_end_the_session_instead_of_being_asked(project_index, line):
    child = _spawn()
    child.sendline(line)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    after = child.before or ""
    assert "╭" not in after and "근거" not in after and "질문을 처리할 수 없습니다" not in after  # nothing was answered
    assert "Traceback" not in after


def test_help_lists_the_commands(project_index):
    child = _spawn()
    out = _ask(child, "/help")
    for command in ("/sources", "/history", "/clear", "/help", "/exit", "/quit", "종료"):
        assert command in out, command
    child.sendline("/exit")
    child.expect(pexpect.EOF)


def test_clear_forgets_the_conversation(project_index):
    child = _spawn()
    _ask(child, "용접 분야를 지원하는 지역뿌리기술지원센터는 어디에 있어?")
    out = _ask(child, "그럼 울산은?")  # before /clear: joined with the question before it
    assert "이전 질문과 이어서 검색" in out and "용접" in out.split("이전 질문과 이어서 검색", 1)[1].splitlines()[0]

    out = _ask(child, "/clear")
    assert "대화 기록을 지웠습니다" in out
    assert "아직 질문이 없습니다" in _ask(child, "/history")
    assert "아직 답변이 없습니다" in _ask(child, "/sources")

    out = _ask(child, "그럼 울산은?")  # after /clear: searched alone
    assert "이전 질문과 이어서 검색" not in out
    assert "그럼 울산은?" in out  # the answer panel's title: the question as typed
    history = _ask(child, "/history")
    assert "1. 그럼 울산은?" in history and "2. " not in history  # the questions before /clear are gone
    child.sendline("/exit")
    child.expect(pexpect.EOF)
