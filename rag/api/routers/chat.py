"""``POST /chat``: a grounded answer with citations, for one question or a conversation,
as one JSON object or as a server-sent event stream."""

from __future__ import annotations

import logging
import time
from typing import AsyncIterator

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from rag.answer.pipeline import answer_question
from rag.api.auth import require_api_key
from rag.api.errors import one_line
from rag.api.models import ChatRequest, ChatResponse, ErrorResponse
from rag.api.responses import KoreanJSONResponse, dumps, server_timing, split_pieces
from rag.api.state import ApiState, get_state
from rag.errors import QuestionError
from rag.query.checks import check_options, check_question
from rag.query.followup import resolve_followup

log = logging.getLogger("rag.api")

router = APIRouter(tags=["chat"], dependencies=[Depends(require_api_key)])

SSE_DOC = """`"stream": true`이면 `text/event-stream`으로 다음 순서의 이벤트를 보냅니다:

1. `event: citations` — `data:` 근거 목록 (JSON 배열, 비스트리밍 응답의 `citations`와 같음)
2. `event: delta` (0번 이상) — `data:` `{"text": "<조각>"}`: 답변을 줄·단어 경계에서 약 20자씩 나눈 조각;
   모든 조각을 순서대로 이어 붙이면 `answer`와 정확히 같습니다
3. `event: answer` — `data:` `{"answer", "answerable", "reason", "related"}` (답변 전체; 답하지 못하면
   `reason`에 까닭, `related`에 가장 가까운 구절)
4. `event: done` — `data:` `{"timing_ms", "query"}`

처리 중 오류가 나면 `event: error` — `data:` `{"error": {"code", "message"}}` 로 끝납니다.
`delta`를 모르는 클라이언트는 그것을 건너뛰고 `answer`만 읽으면 됩니다."""


def questions_of(messages: list[dict]) -> tuple[str, str]:
    """(the last user question as asked, the retrieval query), both checked.

    Args:
        messages: ``{"role", "content"}`` dicts, oldest first, ending with the user's;
            roles other than user and assistant are left out of the follow-up resolution.

    Returns:
        The question stripped, and the query :func:`resolve_followup` makes of the
        conversation (the question alone when the combined context is unusable).
    """
    turns = [m for m in messages if m.get("role") in ("user", "assistant")]
    asked = check_question(turns[-1]["content"] if turns else "")
    try:
        query = check_question(resolve_followup(turns))
    except QuestionError:  # the combined context was unusable: fall back to the message alone
        query = asked
    return asked, query


def _questions(body: ChatRequest) -> tuple[str, str]:
    """(the user's question as asked, the retrieval query), both checked."""
    if body.question is not None:
        asked = check_question(body.question)
        return asked, asked
    return questions_of([m.model_dump() for m in body.messages or []])


def run_answer(state: ApiState, query: str, k: int, mode: str) -> tuple[dict, dict[str, float]]:
    """The core's answer to ``query`` as a dict, and its stage timings (ms; ``other`` is
    whatever the stages do not cover). The dict's ``query`` is what was read of ``query``
    (:meth:`ApiState.query_of`: all of it, unless it is over the token budget).
    CPU-bound: call it in the thread pool."""
    t1 = time.perf_counter()
    read = state.query_of(query)
    ans = answer_question(state.retriever, read, k=k, mode=mode)
    stages = dict(ans.timings_ms)
    stages["other"] = round(max(0.0, (time.perf_counter() - t1) * 1e3 - sum(stages.values())), 3)
    return {**ans.to_dict(), "query": read}, stages


COMPACT_QUERY = Query(False, description="`compact`와 같음: 구절 본문(`text`) 없이 돌려줌")


def _sse(event: str, data: object) -> bytes:
    return f"event: {event}\ndata: {dumps(data)}\n\n".encode("utf-8")


@router.post(
    "/chat", response_model=ChatResponse, summary="문서 근거가 있는 답변 (대화·스트리밍 지원)",
    description="질문 하나(`question`) 또는 대화(`messages`) 중 정확히 하나를 보냅니다. 대화의 마지막 질문이 "
                "'그럼 작년에는?' 같은 후속 질문이면 앞 질문과 합쳐 검색하며, 실제 검색 질의는 `query`에 있습니다. "
                "문서에서 근거를 찾지 못하면 `answerable`=false와 안내 문구, 까닭(`reason`)을 돌려줍니다. "
                "각 근거와 관련 구절에는 원문 구간 주소 `url`과 문서의 `date`·`publisher`가 있고, "
                "`compact`=true면 구절 본문(`text`)이 빠집니다.\n\n" + SSE_DOC,
    responses={200: {"content": {"text/event-stream": {"example": 'event: citations\ndata: [...]\n\n'
                                                                 'event: delta\ndata: {"text": "광주 | 지원 분야: 용접 | "}\n\n'
                                                                 'event: delta\ndata: {"text": "… [1]"}\n\n'
                                                                 'event: answer\ndata: {"answer": "...", "answerable": true, "reason": "", "related": [...]}\n\n'
                                                                 'event: done\ndata: {"timing_ms": 42.1, "query": "..."}\n\n'}}},
               401: {"model": ErrorResponse}, 413: {"model": ErrorResponse}, 415: {"model": ErrorResponse},
               422: {"model": ErrorResponse}},
)
async def chat(body: ChatRequest, request: Request, compact: bool = COMPACT_QUERY, state: ApiState = Depends(get_state)):
    t0 = time.perf_counter()
    asked, query = _questions(body)  # bad input is a 422 before any stream starts
    check_options(body.k, body.mode)
    compact = compact or body.compact
    root = request.scope.get("root_path", "")

    async def answer() -> tuple[dict, dict[str, float]]:
        result, stages = await run_in_threadpool(run_answer, state, query, body.k, body.mode)  # CPU-bound
        return state.answer_json(result, compact=compact, root_path=root), stages

    if not body.stream:
        result, stages = await answer()
        total = (time.perf_counter() - t0) * 1e3
        result.update(question=asked, timing_ms=round(total, 2))
        return KoreanJSONResponse(result, headers={"Server-Timing": server_timing(stages, total)})

    async def events() -> AsyncIterator[bytes]:
        try:
            result, _ = await answer()
            yield _sse("citations", result["citations"])
            for piece in split_pieces(result["answer"]):
                yield _sse("delta", {"text": piece})
            yield _sse("answer", {key: result[key] for key in ("answer", "answerable", "reason", "related")})
            yield _sse("done", {"timing_ms": round((time.perf_counter() - t0) * 1e3, 2), "query": result["query"]})
        except Exception as exc:  # headers are sent: report in-band, keep the server up
            log.exception("chat stream failed")
            code = "invalid_question" if isinstance(exc, QuestionError) else "internal_error"
            message = str(exc) if isinstance(exc, QuestionError) else f"the answer failed: {type(exc).__name__}"
            yield _sse("error", {"error": {"code": code, "message": one_line(message)}})

    return StreamingResponse(events(), media_type="text/event-stream; charset=utf-8",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
