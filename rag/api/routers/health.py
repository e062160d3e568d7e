"""``GET /health``: liveness plus what index is loaded (cheap: no disk reads beyond a few stat calls).

Public, so that probes need no key. What it tells depends on who asks: everyone gets the
status (``ok``, or ``stale`` when the corpus changed since the server loaded the index) and
the counts of chunks and documents; the build, model, dates and the index folder's path
only a caller who may see everything (:func:`rag.api.auth.is_authorized`: the server has
no key, or the caller sent it). A keyed server never shows a filesystem path to an
anonymous caller.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from rag.api.auth import is_authorized
from rag.api.models import HealthResponse
from rag.api.responses import KoreanJSONResponse
from rag.api.state import ApiState, get_state

router = APIRouter(tags=["health"])

#: What an anonymous caller of a server with a key sees of ``index``.
PUBLIC_INDEX_FIELDS = ("chunks", "documents")


@router.get("/health", response_model=HealthResponse, summary="서버 상태와 색인 정보",
            description="인증 없이 호출할 수 있습니다. `status`는 ok, 또는 서버 시작 뒤 코퍼스가 바뀌었으면 stale입니다. "
                        "키가 설정된 서버에서 키 없이 부르면 구절·문서 수만 알려 주고, 색인 경로·빌드·모델은 "
                        "키를 보낸 호출자(또는 키가 없는 서버)에게만 알려 줍니다.")
async def health(request: Request, state: ApiState = Depends(get_state)) -> KoreanJSONResponse:
    info = state.index_info()
    status = "stale" if info["stale"] else "ok"
    if not is_authorized(request):
        info = {key: info[key] for key in PUBLIC_INDEX_FIELDS}
    return KoreanJSONResponse({"status": status, "index": info})
