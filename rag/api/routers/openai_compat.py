"""OpenAI-compatible routes: ``GET /v1/models`` and ``POST /v1/chat/completions``, so that any
OpenAI client (the official SDKs, LangChain's ``ChatOpenAI``, chat UIs) can ask the
documents with nothing but a ``base_url`` and an API key::

    from openai import OpenAI
    client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="<RAG_API_KEY or anything>")
    r = client.chat.completions.create(model="rag-ko", messages=[{"role": "user", "content": "…"}])
    print(r.choices[0].message.content)

The answer is the same as ``POST /chat``'s (extractive, cited, or an honest decline):

* ``system``/``developer`` messages are accepted and not used for retrieval; the
  user/assistant turns go through the same follow-up resolution as /chat;
* ``model`` may be any name (the one model, ``rag-ko``, answers); OpenAI's sampling and
  tool parameters (``temperature``, ``max_tokens``, ``top_p``, ``n``, ``stop``, ``tools``,
  …) are accepted and ignored; ``k``, ``mode`` and ``compact`` of /chat may be sent as
  extra body fields;
* the message content is the answer with its ``[n]`` markers, then a blank line and one
  footnote per citation: ``[n] 문서 제목 — 절 경로: "인용"``; a decline is the not-found
  text, a blank line and the reason;
* the structured citations ride along as extra top-level fields: ``citations`` (as /chat's),
  ``related``, ``answerable``, ``reason`` and ``query`` (on the last chunk when streamed);
* ``usage`` is null: no tokens are generated.

Errors keep the project's shape, ``{"error": {"code", "message"}}``, which OpenAI clients
read as they read OpenAI's own (``error.message``, ``error.code``; e.g. a wrong key raises
``openai.AuthenticationError``). A failure after a stream started is one
``data: {"error": {...}}`` line before ``data: [DONE]``.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any, AsyncIterator, Optional

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from rag.api.auth import require_api_key
from rag.api.errors import ApiError, one_line
from rag.api.models import (
    OPENAI_MODEL_ID,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ErrorResponse,
    ModelCard,
    ModelList,
    OpenAIMessage,
)
from rag.api.responses import KoreanJSONResponse, dumps, split_pieces
from rag.api.routers.chat import questions_of, run_answer
from rag.api.state import ApiState, get_state
from rag.errors import QuestionError
from rag.query.checks import check_options

log = logging.getLogger("rag.api")

router = APIRouter(prefix="/v1", tags=["openai"], dependencies=[Depends(require_api_key)])

#: Who ``/v1/models`` says owns the model.
OWNED_BY = "rag-ko"

#: The extra top-level fields of a completion (and of a stream's last chunk).
EXTRA_FIELDS = ("citations", "related", "answerable", "reason")

_TEXT_PARTS = ("text", "input_text")


def _created(state: ApiState) -> int:
    """When the loaded index was built (Unix seconds), for the model card."""
    try:
        return int(state.retriever.index.path.stat().st_mtime)
    except (AttributeError, OSError, TypeError):
        return int(time.time())


def _fingerprint(state: ApiState) -> Optional[str]:
    path = getattr(state.retriever.index, "path", None)
    return getattr(path, "name", None)


def _model_card(state: ApiState) -> dict[str, Any]:
    return {"id": OPENAI_MODEL_ID, "object": "model", "created": _created(state), "owned_by": OWNED_BY}


def _text_of(message: OpenAIMessage, i: int) -> str:
    """A message's content as text: a string, or the text parts of a list joined."""
    content = message.content
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts = []
    for part in content:
        if part.type not in _TEXT_PARTS:
            raise ApiError(422, "invalid_request", f"messages.{i}.content: only text parts are supported, not {part.type!r}")
        texts.append(part.text or "")
    return "\n".join(texts)


def conversation_of(messages: list[OpenAIMessage]) -> list[dict[str, str]]:
    """The user/assistant turns of an OpenAI conversation as ``{"role", "content"}`` dicts;
    system, developer and tool messages are left out. 422 unless the last turn is the user's."""
    turns = [{"role": m.role, "content": _text_of(m, i)} for i, m in enumerate(messages)]
    turns = [t for t in turns if t["role"] in ("user", "assistant")]
    if not turns or turns[-1]["role"] != "user":
        raise ApiError(422, "invalid_request", "messages: the last user or assistant message must be the user's question")
    return turns


def _one_line_quote(quote: str) -> str:
    """A quote for a footnote: table cells joined by `` | ``, other whitespace runs as one space."""
    return " | ".join(" ".join(cell.split()) for cell in quote.split("\t"))


def footnotes(citations: list[dict[str, Any]]) -> str:
    """``[n] 문서 제목 — 절 경로: "인용"`` lines, one per citation, numbered as the answer's markers."""
    lines = []
    for n, c in enumerate(citations, 1):
        where = f"{c['doc_title']} — {c['section']}" if c.get("section") else c["doc_title"]
        lines.append(f'[{n}] {where}: "{_one_line_quote(c["quote"])}"')
    return "\n".join(lines)


def content_of(result: dict[str, Any]) -> str:
    """The assistant message: the answer and its footnotes, or the decline and its reason."""
    if result["answerable"] and result["citations"]:
        return f"{result['answer']}\n\n{footnotes(result['citations'])}"
    if result.get("reason"):
        return f"{result['answer']}\n\n{result['reason']}"
    return result["answer"]


@router.get("/models", response_model=ModelList, summary="모델 목록 (OpenAI 형식)",
            description=f"OpenAI `GET /v1/models`와 같은 형식으로 하나의 모델 `{OPENAI_MODEL_ID}`를 돌려줍니다.",
            responses={401: {"model": ErrorResponse}})
async def list_models(state: ApiState = Depends(get_state)) -> KoreanJSONResponse:
    return KoreanJSONResponse({"object": "list", "data": [_model_card(state)]})


@router.get("/models/{model}", response_model=ModelCard, summary="모델 정보 (OpenAI 형식)",
            responses={401: {"model": ErrorResponse}, 404: {"model": ErrorResponse}})
async def get_model(model: str, state: ApiState = Depends(get_state)) -> KoreanJSONResponse:
    if model != OPENAI_MODEL_ID:
        raise ApiError(404, "model_not_found", f"no model {model!r}; the one model is {OPENAI_MODEL_ID!r}")
    return KoreanJSONResponse(_model_card(state))


STREAM_EXAMPLE = (
    'data: {"id":"chatcmpl-…","object":"chat.completion.chunk","created":1767225600,"model":"rag-ko",'
    '"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}\n\n'
    'data: {…,"choices":[{"index":0,"delta":{"content":"광주 | 지원 분야: 용접 | "},"finish_reason":null}]}\n\n'
    'data: {…,"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"citations":[…],"related":[…],'
    '"answerable":true,"reason":"","query":"…"}\n\n'
    'data: [DONE]\n\n'
)


@router.post(
    "/chat/completions", response_model=ChatCompletionResponse, summary="OpenAI 호환 채팅 답변",
    description="OpenAI Chat Completions 형식의 요청을 받아 `/chat`과 같은 근거 있는 답변을 돌려줍니다. "
                "system 메시지는 받되 검색에는 쓰지 않고, user/assistant 대화는 `/chat`처럼 후속 질문을 풀어 검색합니다. "
                "본문(`choices[0].message.content`)은 [n] 표시가 있는 답변과 각주 `[n] 문서 제목 — 절 경로: \"인용\"`이며, "
                "`citations`·`related`·`answerable`·`reason`·`query`가 최상위 추가 필드로 함께 옵니다. "
                "`temperature`·`max_tokens` 등 다른 OpenAI 파라미터는 받고 무시합니다. "
                "`stream`=true면 `chat.completion.chunk` SSE(`data: {...}`)로 역할 → 내용 조각들 → "
                "`finish_reason: \"stop\"`과 추가 필드가 있는 마지막 조각을 보내고 `data: [DONE]`으로 끝냅니다. "
                "오류는 `{\"error\": {\"code\", \"message\"}}`입니다.",
    responses={200: {"content": {"text/event-stream": {"example": STREAM_EXAMPLE}}},
               401: {"model": ErrorResponse}, 413: {"model": ErrorResponse}, 415: {"model": ErrorResponse},
               422: {"model": ErrorResponse}},
)
async def chat_completions(body: ChatCompletionRequest, request: Request, state: ApiState = Depends(get_state)):
    turns = conversation_of(body.messages)
    _asked, query = questions_of(turns)  # bad input is a 422 before any stream starts
    check_options(body.k, body.mode)
    root = request.scope.get("root_path", "")
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())

    async def answer() -> dict[str, Any]:
        result, _ = await run_in_threadpool(run_answer, state, query, body.k, body.mode)  # CPU-bound
        return state.answer_json(result, compact=body.compact, root_path=root)

    if not body.stream:
        result = await answer()
        return KoreanJSONResponse({
            "id": completion_id, "object": "chat.completion", "created": created, "model": OPENAI_MODEL_ID,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content_of(result)},
                         "finish_reason": "stop", "logprobs": None}],
            "usage": None, "system_fingerprint": _fingerprint(state),
            **{key: result[key] for key in EXTRA_FIELDS}, "query": result["query"],
        })

    def chunk(delta: dict[str, Any], finish: Optional[str] = None, **extra: Any) -> bytes:
        data = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": OPENAI_MODEL_ID,
                "system_fingerprint": _fingerprint(state),
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}], **extra}
        return f"data: {dumps(data)}\n\n".encode("utf-8")

    async def events() -> AsyncIterator[bytes]:
        try:
            yield chunk({"role": "assistant", "content": ""})
            result = await answer()
            for piece in split_pieces(content_of(result)):
                yield chunk({"content": piece})
            yield chunk({}, "stop", **{key: result[key] for key in EXTRA_FIELDS}, query=result["query"])
        except Exception as exc:  # headers are sent: report in-band, keep the server up
            log.exception("chat completion stream failed")
            code = "invalid_question" if isinstance(exc, QuestionError) else "internal_error"
            message = str(exc) if isinstance(exc, QuestionError) else f"the answer failed: {type(exc).__name__}"
            yield f"data: {dumps({'error': {'code': code, 'message': one_line(message)}})}\n\n".encode("utf-8")
        yield b"data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream; charset=utf-8",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
