"""``POST /chat``: a grounded answer with citations, for one question or a conversation,
as one JSON object or as a server-sent event stream."""

from __future__ import annotations

import logging
import time
from typing import AsyncIterator

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from rag.answer.pipeline import answer_question
from rag.api.auth import require_api_key
from rag.api.errors import one_line
from rag.api.models import ChatRequest, ChatResponse, ErrorResponse
from rag.api.responses import KoreanJSONResponse, dumps, server_timing
from rag.api.state import ApiState, get_state
from rag.errors import QuestionError
from rag.query.checks import check_options, check_question
from rag.query.followup import resolve_followup

log = logging.getLogger("rag.api")

router = APIRouter(tags=["chat"], dependencies=[Depends(require_api_key)])

SSE_DOC = """`"stream": true`이면 `text/event-stream`으로 다음 순서의 이벤트를 보냅니다:

1. `event: citations` — `data:` 근거 목록 (JSON 배열, 비스트리밍 응답의 `citations`와 같음)
2. `event: answer` — `data:` `{"answer", "answerable"}`
3. `event: done` — `data:` `{"timing_ms", "query"}`

처리 중 오류가 나면 `event: error` — `data:` `{"error": {"code", "message"}}` 로 끝납니다."""


def _questions(body: ChatRequest) -> tuple[str, str]:
    """(the user's question as asked, the retrieval query), both checked."""
    if body.question is not None:
        asked = check_question(body.question)
        return asked, asked
    messages = [m.model_dump() for m in body.messages or []]
    asked = check_question(messages[-1]["content"])
    try:
        query = check_question(resolve_followup(messages))
    except QuestionError:  # the combined context was unusable: fall back to the message alone
        query = asked
    return asked, query


def _sse(event: str, data: object) -> bytes:
    return f"event: {event}\ndata: {dumps(data)}\n\n".encode("utf-8")


@router.post(
    "/chat", response_model=ChatResponse, summary="문서 근거가 있는 답변 (대화·스트리밍 지원)",
    description="질문 하나(`question`) 또는 대화(`messages`) 중 정확히 하나를 보냅니다. 대화의 마지막 질문이 "
                "'그럼 작년에는?' 같은 후속 질문이면 앞 질문과 합쳐 검색하며, 실제 검색 질의는 `query`에 있습니다. "
                "문서에서 근거를 찾지 못하면 `answerable`=false와 안내 문구를 돌려줍니다.\n\n" + SSE_DOC,
    responses={200: {"content": {"text/event-stream": {"example": 'event: citations\ndata: [...]\n\n'
                                                                 'event: answer\ndata: {"answer": "...", "answerable": true}\n\n'
                                                                 'event: done\ndata: {"timing_ms": 42.1}\n\n'}}},
               401: {"model": ErrorResponse}, 413: {"model": ErrorResponse}, 415: {"model": ErrorResponse},
               422: {"model": ErrorResponse}},
)
async def chat(body: ChatRequest, state: ApiState = Depends(get_state)):
    t0 = time.perf_counter()
    asked, query = _questions(body)  # bad input is a 422 before any stream starts
    check_options(body.k, body.mode)

    def run() -> tuple[dict, dict[str, float]]:
        t1 = time.perf_counter()
        ans = answer_question(state.retriever, query, k=body.k, mode=body.mode)
        stages = dict(ans.timings_ms)  # the core's stages; "other" is whatever they do not cover
        stages["other"] = round(max(0.0, (time.perf_counter() - t1) * 1e3 - sum(stages.values())), 3)
        return ans.to_dict(), stages

    if not body.stream:
        result, stages = await run_in_threadpool(run)  # CPU-bound: off the event loop
        total = (time.perf_counter() - t0) * 1e3
        result.update(question=asked, query=query, timing_ms=round(total, 2))
        return KoreanJSONResponse(result, headers={"Server-Timing": server_timing(stages, total)})

    async def events() -> AsyncIterator[bytes]:
        try:
            result, _ = await run_in_threadpool(run)
            yield _sse("citations", result["citations"])
            yield _sse("answer", {"answer": result["answer"], "answerable": result["answerable"]})
            yield _sse("done", {"timing_ms": round((time.perf_counter() - t0) * 1e3, 2), "query": query})
        except Exception as exc:  # headers are sent: report in-band, keep the server up
            log.exception("chat stream failed")
            code = "invalid_question" if isinstance(exc, QuestionError) else "internal_error"
            message = str(exc) if isinstance(exc, QuestionError) else f"the answer failed: {type(exc).__name__}"
            yield _sse("error", {"error": {"code": code, "message": one_line(message)}})

    return StreamingResponse(events(), media_type="text/event-stream; charset=utf-8",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
