"""``GET /documents``, ``/documents/{doc_id}`` and ``/documents/{doc_id}/text``: the corpus
as the citations see it (manifest entries, section trees, exact spans of normalised text).
Every number is a JSON number (``chars`` included); a citation's ``url`` points at
``/documents/{doc_id}/text``."""

from __future__ import annotations

from typing import Optional

from fastapi import APIRouter, Depends, Path, Query

from rag.api.auth import require_api_key
from rag.api.errors import ApiError
from rag.api.models import DocumentDetail, DocumentMeta, DocumentText, ErrorResponse
from rag.api.responses import KoreanJSONResponse
from rag.api.state import ApiState, get_state

router = APIRouter(tags=["documents"], dependencies=[Depends(require_api_key)])

DOC_ID = Path(description="문서 id (`GET /documents`의 `doc_id`)", examples=["001"], max_length=200)


def _doc(state: ApiState, doc_id: str):
    doc = state.docs.get(doc_id)
    if doc is None:
        raise ApiError(404, "not_found", f"no document with id {doc_id!r}; GET /documents lists them")
    return doc


@router.get("/documents", response_model=list[DocumentMeta], summary="문서 목록 (manifest)",
            responses={401: {"model": ErrorResponse}})
async def list_documents(state: ApiState = Depends(get_state)) -> KoreanJSONResponse:
    return KoreanJSONResponse([state.meta_of(doc_id) for doc_id in state.docs])


@router.get("/documents/{doc_id}", response_model=DocumentDetail, summary="문서 정보와 절 구조 트리",
            responses={401: {"model": ErrorResponse}, 404: {"model": ErrorResponse}})
async def get_document(doc_id: str = DOC_ID, state: ApiState = Depends(get_state)) -> KoreanJSONResponse:
    _doc(state, doc_id)
    return KoreanJSONResponse({**state.meta_of(doc_id), "sections": state.sections_of(doc_id)})


@router.get(
    "/documents/{doc_id}/text", response_model=DocumentText, summary="문서 본문의 정확한 구간",
    description="정규화된 본문 `text[start:end]`를 그대로 돌려줍니다 (인용 `start`/`end` 또는 "
                "`quote_start`/`quote_end`를 넣으면 인용문과 같은 글자가 나옵니다). 생략하면 처음/끝.",
    responses={401: {"model": ErrorResponse}, 404: {"model": ErrorResponse}, 422: {"model": ErrorResponse}},
)
async def get_document_text(
    doc_id: str = DOC_ID,
    start: Optional[int] = Query(None, description="시작 위치 (문자, 0 이상)", examples=[0]),
    end: Optional[int] = Query(None, description="끝 위치 (문자, 포함하지 않음, 본문 길이 이하)", examples=[200]),
    state: ApiState = Depends(get_state),
) -> KoreanJSONResponse:
    _doc(state, doc_id)
    text = state.text_of(doc_id)
    s = 0 if start is None else start
    e = len(text) if end is None else end
    if not 0 <= s < e <= len(text):
        raise ApiError(422, "invalid_range",
                       f"need 0 <= start < end <= {len(text)} for document {doc_id!r}; got start={s}, end={e}")
    return KoreanJSONResponse({"doc_id": doc_id, "start": s, "end": e, "text": text[s:e]})
