"""The errors a user can cause or meet, one family: the faces catch :class:`RagError` and
print or return its message as one line; anything else is a bug and keeps its traceback.
Messages are written in Korean, keeping the specifics (paths, values, the command to run).
"""

from __future__ import annotations


class RagError(Exception):
    """Base of every expected failure; the message is one Korean line and says what to do."""


class ConfigError(RagError, ValueError):
    """A setting names something that does not exist (a fusion method, a backend)."""


class InputError(RagError, ValueError):
    """Text from outside (argv, a file, stdin, an HTTP body) is not valid UTF-8 text."""


class QuestionError(InputError):
    """The question or search options are unusable; the message says why, in one line."""


class CorpusError(RagError, ValueError):
    """The corpus folder or its manifest is unusable; the message says what to fix."""


class ModelNotAvailableError(RagError, RuntimeError):
    """The requested embedding model is neither the packaged default, a local folder, nor
    already in the local Hugging Face cache (this project never downloads models)."""


class AnswerModelError(RagError, RuntimeError):
    """The trained answer models are missing or unreadable (``rag train`` makes them)."""


class IndexStoreError(RagError, RuntimeError):
    """Base of index problems; messages are one line and say what to do."""


class IndexMissingError(IndexStoreError):
    pass


class IndexCorruptError(IndexStoreError):
    pass


class IndexBusyError(IndexStoreError):
    pass


class IndexChecksumError(IndexCorruptError):
    """An artifact's bytes differ from the sha256 its build recorded; ``file`` names it
    (relative to the build folder)."""

    def __init__(self, message: str, file: str = ""):
        super().__init__(message)
        self.file = file


class IndexWriteError(IndexStoreError):
    """The index folder cannot take a new build (not writable, full disk, something that is
    not ours in the way); the published index is left as it was."""


class SearchBackendError(IndexStoreError):
    """The search backend (a Milvus server or milvus-lite file) cannot be reached, opened or
    written; one line says which and what to do."""
