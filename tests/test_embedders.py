"""The real embedder, its ONNX export, and the test fake."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from copilot.config import Settings
from retrieval.embedders import HashEmbedder, OnnxEmbedder, build_embedder


def test_hash_embedder_is_deterministic_and_normalized() -> None:
    e = HashEmbedder()
    a = e.embed(["disk full on node", "disk full on node", "certificate expired"])
    assert a.shape == (3, 64) and np.allclose(np.linalg.norm(a, axis=1), 1.0)
    assert np.allclose(a[0], a[1]) and float(a[0] @ a[2]) < 0.99
    assert e.embed([]).shape == (0, 64)
    assert isinstance(build_embedder(Settings(embedding_model="hash")), HashEmbedder)


def test_real_model_loads_offline_and_embeds_meaningfully(real_embedder) -> None:
    assert real_embedder.dim == 384 and real_embedder.name == "all-MiniLM-L6-v2"
    texts = ["the database ran out of connections", "postgres connection pool exhausted",
             "the TLS certificate expired"]
    v = real_embedder.embed(texts * 20)  # more than one batch
    assert v.shape == (60, 384) and np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert float(v[0] @ v[1]) > float(v[0] @ v[2]) + 0.2
    assert np.allclose(v[0], v[3], atol=1e-5)


def test_onnx_export_matches_torch(tmp_path: Path, real_embedder) -> None:
    pytest.importorskip("onnxruntime")
    onnx = OnnxEmbedder(cache_dir=tmp_path)
    texts = ["kafka consumer lag keeps growing", "node filesystem almost full " * 30]
    cos = (onnx.embed(texts) * real_embedder.embed(texts)).sum(axis=1)
    assert cos.min() > 0.999
    assert (tmp_path / next(tmp_path.iterdir()).name / "model.onnx").exists()
    int8 = OnnxEmbedder(cache_dir=tmp_path, quantize=True)
    assert (int8.embed(texts) * real_embedder.embed(texts)).sum(axis=1).min() > 0.9


def test_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    from copilot.errors import EmbeddingError
    from retrieval.embedders import SentenceTransformerEmbedder

    with pytest.raises(EmbeddingError, match="offline"):
        SentenceTransformerEmbedder(str(tmp_path / "no-such-model"))
