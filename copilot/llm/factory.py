"""Build the LLM backend one setting names (``None`` for ``grounded``: no model at all)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from urllib.parse import urlparse

from copilot.config import Settings
from copilot.errors import ConfigError
from copilot.llm.base import LLM

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def is_loopback(url: str | None) -> bool:
    host = urlparse(url or "https://api.openai.com/v1").hostname or ""
    return host in _LOOPBACK or host.startswith("127.")


def build_llm(settings: Settings, *, backend: str | None = None) -> LLM | None:
    """The model behind the tasks; ``None`` means answers are composed without one."""
    choice = backend or settings.llm_backend
    if choice == "grounded":
        return None
    if choice == "local":
        return _local(settings.local_model_path, settings.llm_context_window,
                      bool(settings.llm_ranks))
    if choice == "openai":
        from copilot.llm.openai_backend import OpenAICompatibleLLM

        if not settings.allow_remote_llm and not is_loopback(settings.openai_base_url):
            raise ConfigError(f"COPILOT_ALLOW_REMOTE_LLM is false and the OpenAI endpoint "
                              f"{settings.openai_base_url or 'api.openai.com'} is not on loopback")
        key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
        if key is None and not is_loopback(settings.openai_base_url):
            raise ConfigError("the openai backend needs COPILOT_OPENAI_API_KEY for a remote "
                              "endpoint (or COPILOT_OPENAI_BASE_URL of a local server)")
        llm = OpenAICompatibleLLM(base_url=settings.openai_base_url, model=settings.openai_model,
                                  api_key=key, timeout=settings.llm_timeout,
                                  retries=settings.llm_retries)
        llm.ranks = settings.llm_ranks is not False
        return llm
    raise ConfigError(f"unknown LLM backend {choice!r}; use grounded, local or openai")


@lru_cache(maxsize=2)
def _local(path: Path | None, n_ctx: int, ranks: bool) -> LLM:
    """One loaded model per process: loading costs about a second and 150 MB."""
    from copilot.llm.local import LocalLLM

    return LocalLLM(path, n_ctx=n_ctx, ranks=ranks)
