"""The HTTP face of the Q&A system (FastAPI): ``create_app()`` builds the app,
``serve()`` runs it with uvicorn. Only calls the core; the core knows nothing of HTTP."""

from rag.api.app import create_app
from rag.api.server import serve

__all__ = ["create_app", "serve"]
