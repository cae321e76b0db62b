"""Content-hash ingest: no-op re-ingest, exact replacement, prune, bad files, crash safety."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from copilot.config import Settings
from ingest.pipeline import run_ingest
from retrieval.index import KnowledgeIndex, open_index
from retrieval.vector_store import InMemoryVectorStore
from tests.conftest import write
from tests.reliability._procs import catalog_generation


def ingest(settings: Settings, *paths: Path, index: KnowledgeIndex | None = None, **kw):
    index = index or open_index(settings)
    return run_ingest(list(paths), index=index, settings=settings, **kw), index


def assert_consistent(index: KnowledgeIndex) -> None:
    """The vector store and BM25 hold exactly the catalog's chunks, one version per document."""
    catalog_ids = index.catalog.chunk_ids()
    assert index.store.ids() == catalog_ids
    assert set(index.lexical().ids) == catalog_ids
    docs = index.catalog.documents()
    assert sum(len(d.chunk_ids) for d in docs.values()) == len(catalog_ids)


def test_reingest_unchanged_embeds_nothing(settings: Settings, corpus: Path) -> None:
    first, index = ingest(settings, corpus)
    assert first.ok and first.new == 6 and first.chunks_embedded > 0
    again, _ = ingest(settings, corpus, index=open_index(settings))
    assert (again.new, again.changed, again.unchanged, again.chunks_embedded) == (0, 0, 6, 0)
    assert_consistent(open_index(settings))


def test_changed_file_replaces_exactly_its_chunks(settings: Settings, corpus: Path) -> None:
    _, index = ingest(settings, corpus)
    before = index.catalog.documents()
    path = corpus / "runbooks" / "rb-db.md"
    path.write_text(path.read_text().replace("restart it.", "restart it and page the DBA."))
    report, index = ingest(settings, corpus, index=open_index(settings))
    assert (report.changed, report.unchanged) == (1, 5)
    assert report.chunks_embedded == 1 and report.chunks_deleted == 1  # only the Mitigation chunk
    after = index.catalog.documents()
    assert {k: v.chunk_ids for k, v in after.items() if k != "rb-db"} == \
        {k: v.chunk_ids for k, v in before.items() if k != "rb-db"}
    assert after["rb-db"].chunk_ids[:-1] == before["rb-db"].chunk_ids[:-1]
    assert_consistent(index)


def test_prune_removes_deleted_sources_only_when_asked(settings: Settings, corpus: Path) -> None:
    ingest(settings, corpus)
    (corpus / "postmortems" / "pm-cert.md").unlink()
    report, index = ingest(settings, corpus)
    assert report.removed == 0 and "pm-cert" in index.catalog.documents()
    report, index = ingest(settings, corpus, prune=True)
    assert report.removed == 1 and "pm-cert" not in index.catalog.documents()
    assert_consistent(index)


def test_bad_files_are_reported_and_the_rest_ingested(settings: Settings, corpus: Path) -> None:
    write(corpus / "runbooks" / "broken.md", "---\ntitle: [oops\n---\nbody\n")
    (corpus / "runbooks" / "blob.md").write_bytes(b"\x00\x01\x02binary")
    (corpus / "runbooks" / "empty.md").write_text("")
    report, index = ingest(settings, corpus)
    assert report.documents == 6 and report.new == 6
    assert sorted(e.reason for e in report.errors) == ["binary", "empty", "frontmatter"]
    assert all(Path(e.path).name in e.message for e in report.errors)
    # a file that breaks later keeps what was already accepted, even with --prune
    good = corpus / "runbooks" / "rb-cert.md"
    good.write_bytes(b"\x00\x01 now binary")
    report, index = ingest(settings, corpus, prune=True)
    assert "rb-cert" in index.catalog.documents()
    assert any(e.path == str(good) for e in report.errors)


def test_duplicate_ids_are_refused(settings: Settings, corpus: Path) -> None:
    dup = (corpus / "runbooks" / "rb-db.md").read_text()
    write(corpus / "runbooks" / "zz-copy.md", dup)
    report, _ = ingest(settings, corpus)
    assert [e.reason for e in report.errors] == ["duplicate-id"]
    assert "already used by" in report.errors[0].message


class SimulatedCrash(BaseException):
    """Like a kill: not an Exception, so nothing on the way up handles it."""


class CrashingStore(InMemoryVectorStore):
    """Raises (like a kill) at a chosen step of the write protocol."""

    def __init__(self, fail_on: str, after: int) -> None:
        super().__init__()
        self.fail_on, self.after, self.calls = fail_on, after, 0

    def _maybe_crash(self, op: str) -> None:
        if op == self.fail_on:
            self.calls += 1
            if self.calls > self.after:
                raise SimulatedCrash(f"simulated crash in {op}")

    def upsert(self, ids, vectors, metadatas, documents=None):  # type: ignore[no-untyped-def]
        super().upsert(ids, vectors, metadatas, documents)  # the write lands, then we "die"
        self._maybe_crash("upsert")

    def delete(self, ids):  # type: ignore[no-untyped-def]
        self._maybe_crash("delete")
        super().delete(ids)


@pytest.mark.parametrize("fail_on", ["upsert", "delete"])
def test_crash_at_each_step_is_repaired_by_the_next_run(
    settings: Settings, corpus: Path, fail_on: str
) -> None:
    store = CrashingStore("none", after=1)
    index = open_index(settings, store=store)
    ingest(settings, corpus, index=index)  # the initial load (no deletes happen here)
    store.calls, store.fail_on = 0, fail_on
    for p in (corpus / "runbooks").glob("*.md"):
        p.write_text(p.read_text().replace("Requests fail", "Most requests fail"))
    for p in (corpus / "postmortems").glob("*.md"):
        p.write_text(p.read_text().replace("Customers saw", "Many customers saw"))
    old_docs = index.catalog.documents()
    with pytest.raises(SimulatedCrash):
        ingest(settings, corpus, index=open_index(settings, store=store))
    # readers still see one consistent version of every document
    crashed = open_index(settings, store=store)
    docs = crashed.catalog.documents()
    assert set(docs) == set(old_docs)
    assert crashed.catalog.get_state("dirty") == "1"
    store.fail_on = "none"
    report, repaired = ingest(settings, corpus, index=open_index(settings, store=store))
    assert report.repaired  # the interrupted run was reconciled
    assert report.ok and report.new == 0
    assert_consistent(repaired)
    assert repaired.catalog.get_state("dirty") is None
    texts = [c.text for c in repaired.catalog.iter_chunks()]
    assert not any(t.startswith("Requests fail") for t in texts)


def test_sigkill_midway_then_rerun_leaves_no_duplicates_or_orphans(tmp_path: Path) -> None:
    """A real `copilot ingest` process (real model, embedded Chroma) killed with SIGKILL midway."""
    root = tmp_path / "kb" / "runbooks"
    for n in range(60):
        write(root / f"rb-{n:03d}.md",
              f"---\nid: rb-{n:03d}\ntitle: Runbook {n}\nservices: [svc-{n % 7}]\n---\n"
              + "".join(f"## Step {s}\n" + f"Check component {n}-{s} and restart it when the "
                        f"queue depth stays above {s * 100} for ten minutes. " * 6 + "\n\n"
                        for s in range(4)))
    data = tmp_path / "data"
    env = {**os.environ, "COPILOT_DATA_DIR": str(data), "COPILOT_INGEST_BATCH_CHUNKS": "16",
           "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "copilot.cli", "ingest", str(root), "--json"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 180
    while catalog_generation(data) < 3:
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
        assert time.monotonic() < deadline, "ingest made no progress"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    settings = Settings(data_dir=data)
    from retrieval.embedders import HashEmbedder

    # inspect without loading the model: the store and catalog are what they are
    class Named(HashEmbedder):
        name = "all-MiniLM-L6-v2"

    killed = open_index(settings, embedder=Named())
    committed = killed.catalog.documents()
    assert 0 < len(committed) < 60  # really midway
    assert killed.catalog.get_state("dirty") == "1"
    # every committed document is complete: all its chunks are listed together
    for doc in committed.values():
        assert len(doc.chunk_ids) >= 4

    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["unchanged"] == len(committed) and report["new"] == 60 - len(committed)
    final = open_index(settings, embedder=Named())
    assert len(final.catalog.documents()) == 60
    assert_consistent(final)
    assert final.catalog.get_state("dirty") is None
    vectors = final.store.ids()
    assert len(vectors) == final.catalog.chunk_count()
    assert all(v.split("::")[0] in final.catalog.documents() for v in vectors)
