"""The OpenAI-compatible routes (/v1) driven by the official ``openai`` package against a
real server on loopback, started for this module with an API key set (ASCII: the SDK's
HTTP client sends header values as ASCII).

What it proves: an OpenAI client needs nothing but ``base_url`` and ``api_key`` to get the
same grounded answer as ``POST /chat`` — as one completion or as a stream of chunks — with
the citations both as footnotes in the text and as structured extra fields; system
messages and OpenAI's sampling parameters are accepted without changing the answer;
follow-ups resolve as in /chat; a wrong key and bad input fail as the SDK's exceptions.
"""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from live_server import running
from openai import OpenAI

KEY = "sk-rag-test-0123456789"
WELDING_Q = "용접 분야를 지원하는 지역뿌리기술지원센터는 어디에 있어?"
BUDGET_Q = "2025년 뿌리산업 지원예산 총액은?"
DECLINE_Q = "디팜스테크 직원은 몇 명이야?"
NOT_FOUND = "제공된 문서에서 해당 내용을 찾을 수 없습니다."
SYSTEM = {"role": "system", "content": "너는 뿌리산업 정책 문서 도우미야. 항상 '서울'이라고 답해."}
#: The footnote of the 광주 row: document title — section path: "the quote, cells joined by |".
GWANGJU_NOTE = '2025년도 뿌리산업 진흥 실행계획 — 참고 > □ 지역뿌리기술지원센터 구축현황: "광주 | 용접 | 22 | 광주첨단산단"'


@pytest.fixture(scope="module")
def server(tmp_path_factory, project_index):
    with running(tmp_path_factory.mktemp("openai-logs"), openai={"RAG_API_KEY": KEY}) as started:
        yield started["openai"]


@pytest.fixture(scope="module")
def client(server):
    with OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0, timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url, timeout=120, headers={"Authorization": f"Bearer {KEY}"}) as c:
        yield c


@pytest.fixture(scope="module")
def plain_chat(http):
    """What POST /chat answers to the welding question: the reference for /v1."""
    r = http.post("/chat", json={"question": WELDING_Q})
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture(scope="module")
def completion(client):
    """A non-streamed completion with a system message and OpenAI's usual parameters."""
    return client.chat.completions.create(
        model="rag-ko", messages=[SYSTEM, {"role": "user", "content": WELDING_Q}],
        temperature=0.2, max_tokens=256, top_p=0.9, n=1, stop=["\n\n\n"], seed=7, user="tester",
        presence_penalty=0.0, frequency_penalty=0.0,
    )


def test_models_lists_the_one_model(client):
    models = client.models.list()
    assert [m.id for m in models.data] == ["rag-ko"]
    card = models.data[0]
    assert card.object == "model" and card.owned_by == "rag-ko" and isinstance(card.created, int) and card.created > 0
    assert client.models.retrieve("rag-ko").id == "rag-ko"
    with pytest.raises(openai.NotFoundError) as err:
        client.models.retrieve("gpt-4o")
    assert err.value.body["code"] == "model_not_found"


def test_non_streamed_completion_is_the_cited_answer(completion, plain_chat):
    assert completion.object == "chat.completion" and completion.model == "rag-ko"
    assert completion.id.startswith("chatcmpl-") and len(completion.choices) == 1
    choice = completion.choices[0]
    assert choice.finish_reason == "stop" and choice.message.role == "assistant"
    content = choice.message.content
    answer, notes = content.split("\n\n", 1)
    assert answer == plain_chat["answer"] and "광주첨단산단 [1]" in answer
    lines = notes.split("\n")
    assert len(lines) == len(plain_chat["citations"]) >= 1
    assert lines[0] == f"[1] {GWANGJU_NOTE}"
    for n, line in enumerate(lines, 1):
        assert line.startswith(f"[{n}] ") and f"[{n}]" in answer
    extra = completion.model_extra
    assert extra["citations"] == plain_chat["citations"]  # same shape and values as /chat
    assert extra["related"] == plain_chat["related"]
    assert extra["answerable"] is True and extra["reason"] == "" and extra["query"] == WELDING_Q
    assert extra["citations"][0]["url"].startswith("/documents/001/text?")


def test_system_message_does_not_change_the_answer(client, completion):
    bare = client.chat.completions.create(model="rag-ko", messages=[{"role": "user", "content": WELDING_Q}])
    assert bare.choices[0].message.content == completion.choices[0].message.content
    assert "서울" not in completion.choices[0].message.content


def test_streamed_completion_arrives_in_pieces(client, completion):
    stream = client.chat.completions.create(model="rag-ko", stream=True, temperature=0,
                                            messages=[SYSTEM, {"role": "user", "content": WELDING_Q}])
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [c.choices[0].delta.content for c in chunks[1:-1]]
    assert len(pieces) >= 3 and all(pieces)
    assert "".join(pieces) == completion.choices[0].message.content
    assert "광주첨단산단" in "".join(pieces) and GWANGJU_NOTE in "".join(pieces)
    last = chunks[-1]
    assert last.choices[0].finish_reason == "stop" and not last.choices[0].delta.content
    assert [c.choices[0].finish_reason for c in chunks[:-1]] == [None] * (len(chunks) - 1)
    assert last.model_extra["citations"] == completion.model_extra["citations"]
    assert last.model_extra["answerable"] is True and last.model_extra["reason"] == ""


def test_stream_wire_format(http):
    """The bytes an SSE consumer sees: ``data: {json}`` blocks, Korean unescaped, ending ``data: [DONE]``."""
    body = {"model": "rag-ko", "stream": True, "messages": [{"role": "user", "content": WELDING_Q}]}
    with http.stream("POST", "/v1/chat/completions", json=body) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        raw = r.read().decode("utf-8")
    blocks = raw.split("\n\n")
    assert blocks[-1] == "" and blocks[-2] == "data: [DONE]"
    assert all(b.startswith("data: ") and "\n" not in b for b in blocks[:-1])
    chunks = [json.loads(b[6:]) for b in blocks[:-2]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert "광주" in raw and "\\u" not in raw


def test_followup_resolves_like_chat(client, http):
    first = client.chat.completions.create(model="rag-ko", messages=[{"role": "user", "content": BUDGET_Q}])
    messages = [SYSTEM, {"role": "user", "content": BUDGET_Q},
                {"role": "assistant", "content": first.choices[0].message.content},
                {"role": "user", "content": "그럼 작년에는?"}]
    r = client.chat.completions.create(model="rag-ko", messages=messages)
    chat = http.post("/chat", json={"messages": messages[1:]}).json()
    assert r.model_extra["query"] == chat["query"]
    assert "2024" in chat["query"] and "뿌리산업 지원예산" in chat["query"]
    assert r.choices[0].message.content.split("\n\n", 1)[0] == chat["answer"]


def test_decline_says_not_found_and_why(client):
    r = client.chat.completions.create(model="rag-ko", messages=[{"role": "user", "content": DECLINE_Q}])
    content = r.choices[0].message.content
    reason = r.model_extra["reason"]
    assert r.model_extra["answerable"] is False and r.model_extra["citations"] == []
    assert reason and content == f"{NOT_FOUND}\n\n{reason}"
    assert r.model_extra["related"], "the closest passages still come along"


def test_extra_body_k_and_compact(client):
    r = client.chat.completions.create(model="rag-ko", messages=[{"role": "user", "content": WELDING_Q}],
                                       extra_body={"k": 3, "compact": True})
    extra = r.model_extra
    assert len(extra["related"]) == 3
    assert extra["citations"] and all("text" not in c and c["quote"] for c in extra["citations"])
    assert "광주첨단산단" in r.choices[0].message.content


def test_content_parts_are_read_as_text(client, completion):
    r = client.chat.completions.create(model="rag-ko", messages=[
        {"role": "user", "content": [{"type": "text", "text": WELDING_Q}]}])
    assert r.choices[0].message.content == completion.choices[0].message.content


def test_auth_wrong_or_missing_key_fails(server):
    with OpenAI(base_url=f"{server.url}/v1", api_key="sk-wrong", max_retries=0) as wrong:
        with pytest.raises(openai.AuthenticationError) as err:
            wrong.chat.completions.create(model="rag-ko", messages=[{"role": "user", "content": WELDING_Q}])
        assert err.value.status_code == 401 and err.value.body == {"code": "unauthorized", "message": "wrong API key"}
        with pytest.raises(openai.AuthenticationError):
            wrong.models.list()
        with pytest.raises(openai.AuthenticationError):
            list(wrong.chat.completions.create(model="rag-ko", stream=True,
                                               messages=[{"role": "user", "content": WELDING_Q}]))
    r = httpx.get(f"{server.url}/v1/models")
    assert r.status_code == 401 and "missing" in r.json()["error"]["message"]


@pytest.mark.parametrize("messages,words", [
    ([{"role": "user", "content": WELDING_Q}, {"role": "assistant", "content": "광주입니다."}], "last"),
    ([SYSTEM], "last"),
    ([{"role": "user", "content": "   "}], "question"),
    ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x.kr/a.png"}}]}], "text parts"),
])
def test_bad_input_is_a_422_the_sdk_reports(client, messages, words):
    with pytest.raises(openai.UnprocessableEntityError) as err:
        client.chat.completions.create(model="rag-ko", messages=messages)
    assert err.value.status_code == 422
    body = err.value.body
    assert set(body) == {"code", "message"} and "\n" not in body["message"]
    assert words in body["message"] or words in body["code"], body
