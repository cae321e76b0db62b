"""The project's one exception hierarchy.

Every error a user can cause derives from :class:`CopilotError`. The CLI translates these to
messages and exit codes in exactly one place (``copilot.cli``); the HTTP API will do the same.
"""

from __future__ import annotations


class CopilotError(Exception):
    """Base class: a problem the user can act on, with a message that says what to do."""


class ConfigError(CopilotError):
    """A setting is missing, malformed, or names something that does not exist."""


class IngestError(CopilotError):
    """A source file could not be turned into documents (bad encoding, frontmatter, size...)."""

    def __init__(self, message: str, *, path: str | None = None, reason: str = "invalid") -> None:
        super().__init__(message)
        self.path = path
        self.reason = reason


class StoreError(CopilotError):
    """The vector store or lexical index could not be read or written."""


class IndexUnavailable(StoreError):
    """The vector index (a Chroma server) did not answer: a dependency is down, not a bad
    request, so the API answers 503 and the caller retries; the incident store is unaffected."""


class EmbeddingError(CopilotError):
    """The embedding model could not be loaded or run."""


class EvalError(CopilotError):
    """An evaluation dataset or run is malformed."""
