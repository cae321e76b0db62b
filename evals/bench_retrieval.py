"""Retrieval speed and memory: full and no-op ingest against a naive LangChain baseline, hybrid
vs dense query latency at growing index sizes, embedding backends, and peak RSS."""

from __future__ import annotations

import os
import random
import resource
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from copilot.config import Settings
from ingest.chunking import chunk_document
from ingest.documents import parse_file
from ingest.pipeline import run_ingest, walk
from retrieval.embedders import Embedder, build_embedder
from retrieval.hybrid import Filters
from retrieval.retriever import build_retriever
from retrieval.types import Chunk, DocumentRecord

QUERIES = [
    "pod keeps restarting crash loop back-off",
    "disk almost full on the node filesystem",
    "prometheus failed to reload configuration",
    "certificate expires soon renew TLS",
    "postgres replication lag is high",
    "etcd has no leader",
    "high error rate on the API service",
    "alertmanager failed to send notifications",
    "redis memory usage near the limit",
    "sidekiq queue backlog growing",
    "DNS lookups failing in the cluster",
    "node not ready kubelet down",
]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    idx = min(len(ordered) - 1, max(0, int(round(q / 100 * (len(ordered) - 1)))))
    return ordered[idx]


@dataclass
class BenchResult:
    sections: dict[str, Any] = field(default_factory=dict)

    def add(self, name: str, value: Any) -> None:
        self.sections[name] = value


def load_chunks(kb: Path, settings: Settings, embedder_name: str) -> list[Chunk]:
    """The same chunks the ingest makes, for the baseline and the synthetic fill."""
    files, _ = walk([kb])
    chunks: list[Chunk] = []
    for file, root in files:
        try:
            docs = parse_file(file, root=root, kind="runbook", max_bytes=settings.max_file_bytes)
        except Exception:
            continue
        for doc in docs:
            chunks.extend(chunk_document(doc, budget=settings.chunk_tokens,
                                         overlap=settings.chunk_overlap,
                                         min_tokens=settings.min_chunk_tokens, salt=embedder_name))
    return chunks


def bench_ingest(kb: Path, settings: Settings, embedder: Embedder, work: Path,
                 log: Callable[[str], None]) -> dict[str, Any]:
    s = settings.model_copy(update={"data_dir": work / "ours"})
    retriever = build_retriever(s, embedder=embedder)
    t0 = time.perf_counter()
    full = run_ingest([kb], index=retriever.index, settings=s, kind="runbook")
    full_s = time.perf_counter() - t0
    chunks = retriever.index.catalog.chunk_count()
    log(f"full ingest: {chunks} chunks in {full_s:.1f}s")
    t0 = time.perf_counter()
    again = run_ingest([kb], index=build_retriever(s, embedder=embedder).index, settings=s,
                       kind="runbook")
    noop_s = time.perf_counter() - t0
    log(f"re-ingest, nothing changed: {noop_s:.2f}s, {again.chunks_embedded} embedded")
    return {
        "documents": full.documents, "chunks": chunks, "seconds": round(full_s, 2),
        "chunks_per_s": round(chunks / full_s, 1),
        "noop_seconds": round(noop_s, 3), "noop_embedded": again.chunks_embedded,
        "noop_fraction": round(noop_s / full_s, 4),
    }


def bench_langchain_baseline(chunks: list[Chunk], embedder: Embedder, work: Path,
                             log: Callable[[str], None]) -> dict[str, Any]:
    """LangChain ``Chroma.from_documents`` with the same embedder and chunks."""
    from langchain_chroma import Chroma
    from langchain_core.documents import Document as LCDocument
    from langchain_core.embeddings import Embeddings

    class Wrapped(Embeddings):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return embedder.embed_documents(texts).tolist()

        def embed_query(self, text: str) -> list[float]:
            return embedder.embed_query(text).tolist()

    docs = [LCDocument(page_content=c.embed_text, metadata={"doc_id": c.doc_id}) for c in chunks]
    t0 = time.perf_counter()
    Chroma.from_documents(docs, Wrapped(), ids=[c.id for c in chunks],
                          persist_directory=str(work / "langchain"), collection_name="baseline")
    secs = time.perf_counter() - t0
    log(f"langchain Chroma.from_documents: {len(chunks)} chunks in {secs:.1f}s")
    return {"chunks": len(chunks), "seconds": round(secs, 2),
            "chunks_per_s": round(len(chunks) / secs, 1)}


def _synthetic(chunks: list[Chunk], vectors: np.ndarray, n: int, seed: int = 7
               ) -> tuple[list[tuple[DocumentRecord, list[Chunk]]], np.ndarray]:
    """``n`` chunks made from the real ones: shuffled words of real passages and their vectors
    plus noise, grouped ten to a synthetic document."""
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    out_docs: list[tuple[DocumentRecord, list[Chunk]]] = []
    vecs = np.empty((n, vectors.shape[1]), dtype=np.float32)
    current: list[Chunk] = []
    for i in range(n):
        src = rng.randrange(len(chunks))
        words = chunks[src].text.split()
        rng.shuffle(words)
        text = " ".join(words)
        doc_id = f"syn-{i // 10}"
        meta = {"kind": "runbook", "services": [f"svc-{(i // 10) % 50}"], "section": "synthetic"}
        current.append(Chunk(f"{doc_id}::{i}", doc_id, text, text, meta))
        v = vectors[src] + nrng.normal(0, 0.05, vectors.shape[1]).astype(np.float32)
        vecs[i] = v / np.linalg.norm(v)
        if len(current) == 10 or i == n - 1:
            out_docs.append((DocumentRecord(doc_id, f"synthetic://{doc_id}", "runbook", doc_id, "x",
                                            [], {"services": meta["services"]}), current))
            current = []
    return out_docs, vecs


def bench_latency(chunks: list[Chunk], embedder: Embedder, settings: Settings, work: Path,
                  sizes: Sequence[int], repeats: int, log: Callable[[str], None]) -> dict[str, Any]:
    from retrieval.index import vector_metadata

    base_vectors = embedder.embed_documents([c.embed_text for c in chunks[:2000]])
    base = chunks[:2000]
    results: dict[str, Any] = {}
    for size in sizes:
        s = settings.model_copy(update={"data_dir": work / f"lat-{size}"})
        retriever = build_retriever(s, embedder=embedder)
        index = retriever.index
        docs, vecs = _synthetic(base, base_vectors, size)
        t0 = time.perf_counter()
        flat = [c for _, cs in docs for c in cs]
        index.store.upsert([c.id for c in flat], vecs, [vector_metadata(c) for c in flat])
        index.catalog.replace_documents(docs)
        index.lexical()
        build_s = time.perf_counter() - t0
        timings: dict[str, list[float]] = {"hybrid": [], "dense": [], "hybrid_filtered": []}
        for mode in ("hybrid", "dense"):  # warm-up
            retriever.search(QUERIES[0], k=5, mode=mode)  # type: ignore[arg-type]
        for _ in range(repeats):
            for q in QUERIES:
                for mode in ("hybrid", "dense"):
                    t = time.perf_counter()
                    retriever.search(q, k=5, mode=mode)  # type: ignore[arg-type]
                    timings[mode].append((time.perf_counter() - t) * 1000)
                t = time.perf_counter()
                retriever.search(q, k=5, filters=Filters(services=("svc-3",)))
                timings["hybrid_filtered"].append((time.perf_counter() - t) * 1000)
        results[str(size)] = {
            "build_seconds": round(build_s, 1),
            **{f"{m}_p50_ms": round(statistics.median(v), 1) for m, v in timings.items()},
            **{f"{m}_p95_ms": round(percentile(v, 95), 1) for m, v in timings.items()},
            "queries_per_mode": len(timings["dense"]), "peak_rss_mb": round(peak_rss_mb()),
        }
        log(f"{size} chunks: {results[str(size)]}")
        shutil.rmtree(work / f"lat-{size}", ignore_errors=True)
    return results


def bench_backends(chunks: list[Chunk], settings: Settings, backends: Sequence[str],
                   sample: int, log: Callable[[str], None]) -> dict[str, Any]:
    """Passages per second of each embedding backend on the same real ~180-word passages."""
    words = " ".join(c.text for c in chunks).split()
    texts = [" ".join(words[i : i + 180]) for i in range(0, len(words), 180)][:sample]
    out: dict[str, Any] = {}
    reference: np.ndarray | None = None
    for backend in backends:
        emb = build_embedder(settings.model_copy(update={"embedding_backend": backend}))
        emb.embed_documents(texts[:32])  # warm-up (and the one-time ONNX export)
        t0 = time.perf_counter()
        vecs = emb.embed_documents(texts)
        secs = time.perf_counter() - t0
        words = sum(len(t.split()) for t in texts) / len(texts)
        row: dict[str, Any] = {"passages": len(texts), "avg_words": round(words),
                               "passages_per_s": round(len(texts) / secs, 1)}
        if reference is None:
            reference = vecs
        else:
            cos = (vecs * reference).sum(axis=1)
            row["cosine_to_torch_min"] = round(float(cos.min()), 4)
            row["cosine_to_torch_mean"] = round(float(cos.mean()), 4)
        out[backend] = row
        log(f"backend {backend}: {row}")
    return out


PARTS = ("ingest", "baseline", "backends", "latency")


def run_bench(kb: Path, settings: Settings, *, sizes: Sequence[int], repeats: int,
              backends: Sequence[str], parts: Sequence[str] = PARTS,
              log: Callable[[str], None]) -> BenchResult:
    result = BenchResult()
    result.add("machine", {"cpus": os.cpu_count(), "embedder_backend": settings.embedding_backend})
    embedder = build_embedder(settings)
    work = Path(tempfile.mkdtemp(prefix="copilot-bench-"))
    try:
        if "ingest" in parts:
            result.add("ingest", {**bench_ingest(kb, settings, embedder, work, log),
                                  "peak_rss_mb_so_far": round(peak_rss_mb())})
        chunks = load_chunks(kb, settings, embedder.name)
        if "baseline" in parts:
            result.add("langchain_baseline", bench_langchain_baseline(chunks, embedder, work, log))
        if "latency" in parts and sizes:
            result.add("query_latency", bench_latency(chunks, embedder, settings, work, sizes,
                                                      repeats, log))
        if "backends" in parts and backends:
            result.add("embedding_backends", bench_backends(chunks, settings, backends, 256, log))
        result.add("peak_rss_mb", round(peak_rss_mb()))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return result
