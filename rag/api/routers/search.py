"""``POST /search``: ranked passages, the JSON of one line of ``rag search --json`` with each
passage's ``url``, ``date`` and ``publisher`` added (and no ``text`` when ``compact``)."""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, Query, Request

from rag.api.auth import require_api_key
from rag.api.models import ErrorResponse, SearchRequest, SearchResponse
from rag.api.responses import KoreanJSONResponse, server_timing
from rag.api.state import ApiState, get_state
from rag.query.checks import check_question

router = APIRouter(tags=["search"], dependencies=[Depends(require_api_key)])


@router.post(
    "/search", response_model=SearchResponse, summary="질문과 관련된 문서 구절 검색",
    description="질문에 가장 관련 있는 구절을 순위순으로 돌려줍니다. 각 구절의 `url`(또는 `doc_id`·`start`·`end`로 "
                "만든 `GET /documents/{doc_id}/text?start=…&end=…`)에서 원문 구간을 그대로 가져올 수 있고, "
                "`date`·`publisher`는 문서의 manifest 값입니다. `compact`=true면 구절 본문(`text`)이 빠집니다. "
                "아주 긴 질문은 앞부분(모델 토큰 128개, 한국어 약 230자)만 읽습니다. "
                "응답 헤더 `Server-Timing`에 단계별 처리 시간(ms)이 있습니다.",
    responses={401: {"model": ErrorResponse}, 413: {"model": ErrorResponse}, 415: {"model": ErrorResponse},
               422: {"model": ErrorResponse}},
)
def search(body: SearchRequest, request: Request,
           compact: bool = Query(False, description="`compact`와 같음: 구절 본문(`text`) 없이 돌려줌"),
           state: ApiState = Depends(get_state)) -> KoreanJSONResponse:
    # a plain def: FastAPI runs it in the thread pool, so the event loop keeps serving
    t0 = time.perf_counter()
    question = check_question(body.question)
    result = state.retriever.search(state.query_of(question), k=body.k, mode=body.mode)
    compact = compact or body.compact
    root = request.scope.get("root_path", "")
    passages = [state.passage_json(p.to_dict(), compact=compact, root_path=root) for p in result.passages]
    payload = {"question": body.question, "mode": body.mode, "passages": passages}
    total = (time.perf_counter() - t0) * 1e3
    return KoreanJSONResponse(payload, headers={"Server-Timing": server_timing(result.timings_ms, total)})
