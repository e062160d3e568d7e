"""Request and response models of the HTTP API (pydantic 2).

Requests are validated strictly (no "5" for 5, no unknown fields), so a client mistake
gets a 422 naming the field rather than a silently different search. Responses follow the
contracts of docs/design.md: a passage is exactly ``Passage.to_dict()``, a search response
is exactly what ``rag search --json`` prints. The handlers return ready JSON responses for
speed; these models document them in OpenAPI (``/docs``) and are checked by the tests.
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

from rag.config import MAX_QUESTION_CHARS
from rag.query.checks import MAX_K

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
    text: str = Field(description="문서에 있는 그대로의 구절")
    start: int = Field(description="정규화된 문서 텍스트에서의 시작 위치 (문자)")
    end: int = Field(description="끝 위치 (문자, 포함하지 않음)")


class CitationOut(PassageOut):
    """A passage plus the exact line the answer quotes (``text[quote_start:quote_end]`` of the document)."""

    quote: str = Field(description="답변이 인용한 문장 (문서 원문 그대로)")
    quote_start: int = Field(description="인용문의 문서 내 시작 위치")
    quote_end: int = Field(description="인용문의 문서 내 끝 위치")


# ----------------------------------------------------------------------------- search


class SearchRequest(BaseModel):
    model_config = ConfigDict(**_STRICT, json_schema_extra={
        "examples": [{"question": "뿌리산업 특화단지 지원사업 올해 예산은?", "k": 5, "mode": "hybrid"}]})

    question: str = QUESTION_FIELD
    k: int = K_FIELD
    mode: Mode = MODE_FIELD


class SearchResponse(BaseModel):
    """Same shape as one line of ``rag search --json``."""

    question: str
    mode: Mode
    passages: list[PassageOut]


# ----------------------------------------------------------------------------- chat


class Message(BaseModel):
    model_config = _STRICT

    role: Literal["user", "assistant"] = Field(description="말한 사람: user 또는 assistant")
    content: str = Field(max_length=MAX_MESSAGE_CHARS, description="메시지 내용",
                         examples=["2025년 뿌리산업 지원예산 총액은?"])


class ChatRequest(BaseModel):
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
    stream: bool = Field(False, description="true면 text/event-stream(SSE)로 citations → answer → done 이벤트를 보냄")

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
    model_config = ConfigDict(extra="allow")

    built: bool
    stale: bool = Field(description="코퍼스가 서버 시작 후 바뀌었으면 true (재시작/재색인 필요)")
    chunks: int
    documents: int
    model: str
    index_dir: str
    build: Optional[str] = None
    created: Optional[str] = None
    reasons: list[str] = Field(default_factory=list)


class HealthResponse(BaseModel):
    status: Literal["ok"]
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
    chars: str = Field(description="정규화된 본문 길이 (문자 수)")


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
