"""``GET /health``: liveness plus what index is loaded (cheap: no disk reads beyond a few stat calls)."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from rag.api.models import HealthResponse
from rag.api.responses import KoreanJSONResponse
from rag.api.state import ApiState, get_state

router = APIRouter(tags=["health"])


@router.get("/health", response_model=HealthResponse, summary="서버 상태와 색인 정보",
            description="인증 없이 호출할 수 있습니다. `index.stale`이 true면 서버 시작 뒤 코퍼스가 바뀐 것입니다.")
async def health(state: ApiState = Depends(get_state)) -> KoreanJSONResponse:
    return KoreanJSONResponse({"status": "ok", "index": state.index_info()})
