"""kill -9 consistency (issue 7): a real `copilot serve` killed with SIGKILL in the middle of a
burst of webhooks, and a real ingest (CLI and HTTP) killed in the middle of its batches. After
the restart, every acknowledged alert is stored exactly once, the retried burst adds no row,
and the index (Chroma, catalog, BM25 snapshot) holds exactly the chunks of a clean ingest."""

from __future__ import annotations

import datetime as dt
import json
import random
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.client import HTTPException
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from copilot.config import Settings
from copilot.context import MAX_ALERTS
from tests.conftest import (
    PG_URL,
    SHARED,
    api_key,
    in_schema,
    needs_shared,
    postgres_schema,
    write,
)
from tests.reliability._procs import COPILOT, Server, catalog_generation, copilot_env, http

BURST = 400
KILL_AFTER_ACKS = 100
SENDERS = 8
T0 = dt.datetime(2026, 11, 27, 14, 0, tzinfo=dt.UTC)


# --- the webhook burst -----------------------------------------------------------------------

@dataclass
class Delivery:
    """One webhook POST and the (source, fingerprint) of each alert it carries."""

    source: str
    payload: dict[str, Any]
    keys: list[tuple[str, str]]
    firing: bool = True


def _alertmanager(alerts: list[dict[str, Any]], status: str = "firing") -> dict[str, Any]:
    return {"version": "4", "status": status, "receiver": "copilot", "groupKey": "{}:{}",
            "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
            "externalURL": "http://127.0.0.1:9093", "alerts": alerts}


def _am_alert(n: int, fp: str, status: str = "firing") -> dict[str, Any]:
    starts = T0 + dt.timedelta(seconds=n)
    return {"status": status, "fingerprint": fp,
            "labels": {"alertname": f"Burst{n % 17}", "service": f"svc-{n % 23}",
                       "severity": ("critical", "warning", "info")[n % 3], "instance": f"i{n}"},
            "annotations": {"summary": f"burst alert {n}"},
            "startsAt": starts.isoformat().replace("+00:00", "Z"),
            "endsAt": ((starts + dt.timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
                       if status == "resolved" else "0001-01-01T00:00:00Z")}


def _generic(n: int, status: str = "firing") -> dict[str, Any]:
    starts = T0 + dt.timedelta(seconds=n)
    out: dict[str, Any] = {"name": f"Generic{n % 13}", "service": f"svc-{n % 23}",
                           "severity": "critical" if n % 2 else "warning",
                           "labels": {"instance": f"i{n}"}, "status": status,
                           "starts_at": starts.isoformat()}
    if status == "resolved":
        out["ends_at"] = (starts + dt.timedelta(minutes=5)).isoformat()
    return out


def make_burst(seed: int = 7) -> list[Delivery]:
    """``BURST`` deliveries: unique alerts from both sources (some payloads carry three), exact
    re-deliveries of earlier ones, and resolves of earlier firing alerts, in a fixed order."""
    from ingest.alerts import parse_alert_payload

    rng = random.Random(seed)
    out: list[Delivery] = []

    def add(source: str, payload: dict[str, Any], firing: bool = True) -> None:
        events = parse_alert_payload(source, json.dumps(payload))
        out.append(Delivery(source, payload, [(e.source, e.fingerprint) for e in events], firing))

    n = 0
    while len(out) < BURST:
        roll = rng.random()
        earlier = [d for d in out[:-SENDERS * 2] if d.firing]  # well behind the senders
        if roll < 0.08 and earlier:
            d = rng.choice(earlier)
            out.append(Delivery(d.source, d.payload, d.keys, d.firing))
        elif roll < 0.15 and earlier:
            d = rng.choice(earlier)
            if d.source == "alertmanager":
                resolved = [_am_alert(int(a["labels"]["instance"][1:]), a["fingerprint"],
                                      "resolved") for a in d.payload["alerts"]]
                add("alertmanager", _alertmanager(resolved, "resolved"), firing=False)
            else:
                add("generic", _generic(int(d.payload["labels"]["instance"][1:]), "resolved"),
                    firing=False)
        elif n % 2 == 0:
            size = 3 if n % 10 == 0 else 1
            alerts = [_am_alert(n + i, f"am-{n + i:05d}") for i in range(size)]
            add("alertmanager", _alertmanager(alerts))
            n += size
        else:
            add("generic", _generic(n))
            n += 1
    return out


@dataclass
class Sent:
    """What the sender saw: acknowledged deliveries (2xx) with their outcomes."""

    acked: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)


def send_burst(url: str, burst: list[Delivery], tokens: dict[str, str], *,
               kill: Server | None = None) -> Sent:
    """Send every delivery from ``SENDERS`` threads; with ``kill``, SIGKILL that server once
    ``KILL_AFTER_ACKS`` deliveries were acknowledged (the later ones then fail to connect)."""
    sent = Sent()
    enough = threading.Event()

    def one(i: int) -> None:
        d = burst[i]
        try:
            status, body = http("POST", f"{url}/v1/webhooks/alerts/{d.source}", body=d.payload,
                                headers={"X-Webhook-Token": tokens[d.source]}, timeout=30)
        except (OSError, HTTPException) as exc:  # refused or cut off by the kill: no ack
            with sent.lock:
                sent.errors.append(type(exc).__name__)
            return
        with sent.lock:
            sent.statuses[status] += 1
            if 200 <= status < 300:
                sent.acked[i] = body["outcomes"]
                if len(sent.acked) >= KILL_AFTER_ACKS:
                    enough.set()

    with ThreadPoolExecutor(SENDERS) as pool:
        futures = [pool.submit(one, i) for i in range(len(burst))]
        if kill is not None:
            assert enough.wait(timeout=120), f"too few acks before the kill: {sent.statuses}"
            kill.kill()
        for f in futures:
            f.result(timeout=120)
    return sent


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """The incident store for `copilot serve`: its default SQLite file, or a fresh schema on
    the PostgreSQL server of COPILOT_TEST_POSTGRES_URL (skipped when unset outside CI)."""
    if request.param == "sqlite":
        yield None
        return
    with postgres_schema("crash") as schema:
        yield in_schema(PG_URL or "", schema)


def stored_alerts(settings: Settings) -> dict[tuple[str, str], dict[str, Any]]:
    """Every alert row by (source, fingerprint), read straight from the store; fails on a
    duplicate key (the unique constraint should make that impossible)."""
    from copilot.models import Alert, Incident, TimelineEntry
    from copilot.store import IncidentStore

    store = IncidentStore.open(settings, upgrade=False)
    try:
        with store.session() as s:
            incidents = {i.id for i in s.scalars(select(Incident))}
            refs: dict[int, set[int]] = {}
            for e in s.scalars(select(TimelineEntry)):
                if isinstance(e.ref, dict) and "alert_id" in e.ref:
                    refs.setdefault(int(e.ref["alert_id"]), set()).add(e.incident_id)
            rows = [(a.source, a.fingerprint, {
                "id": a.id, "status": a.status, "incident_id": a.incident_id,
                "deliveries": a.deliveries, "timeline": refs.get(a.id, set())})
                for a in s.scalars(select(Alert))]
            dangling = [r for _, _, r in rows if r["incident_id"] not in incidents | {None}]
            assert not dangling, dangling
    finally:
        store.engine.dispose()
    keys = Counter((src, fp) for src, fp, _ in rows)
    assert not [k for k, c in keys.items() if c > 1], "an alert is stored twice"
    return {(src, fp): row for src, fp, row in rows}


def check_store(settings: Settings, burst: list[Delivery], acked: dict[int, list[dict]],
                url: str, admin: str) -> dict[tuple[str, str], dict[str, Any]]:
    """Everything acknowledged is there once, with its acknowledged id; nothing was invented;
    deliveries are all-or-nothing; firing alerts sit on an incident whose timeline names them;
    the API's incidents agree with the rows."""
    rows = stored_alerts(settings)
    sent_keys = {k for d in burst for k in d.keys}
    assert set(rows) <= sent_keys, set(rows) - sent_keys
    for i, outcomes in acked.items():
        assert [(burst[i].source, o["fingerprint"]) for o in outcomes] == burst[i].keys
        for key, o in zip(burst[i].keys, outcomes, strict=True):
            assert key in rows, f"acknowledged alert {key} (delivery {i}) is missing"
            assert rows[key]["id"] == o["alert_id"], (key, rows[key], o)
    for d in burst:
        if len(d.keys) > 1:
            present = [k in rows for k in d.keys]
            assert all(present) or not any(present), f"half a delivery stored: {d.keys}"
    for key, row in rows.items():
        if row["incident_id"] is not None:
            assert row["incident_id"] in row["timeline"], f"{key}: no timeline entry names it"
        else:
            assert row["status"] == "resolved", f"firing alert {key} is on no incident"
    headers = {"Authorization": f"Bearer {admin}"}
    status, incidents = http("GET", f"{url}/v1/incidents?open_only=false", headers=headers)
    assert status == 200, incidents
    by_incident = Counter(r["incident_id"] for r in rows.values() if r["incident_id"])
    assert {i["id"]: i["alert_count"] for i in incidents} == dict(by_incident)
    for inc in incidents[:5]:  # a sample of the detail view: the same alerts (bounded)
        status, detail = http("GET", f"{url}/v1/incidents/{inc['id']}", headers=headers)
        assert status == 200, detail
        stored = sorted(r["id"] for r in rows.values() if r["incident_id"] == inc["id"])
        shown = sorted(a["id"] for a in detail["alerts"])
        assert detail["alert_count"] == len(stored)
        if len(stored) <= MAX_ALERTS:
            assert shown == stored
        else:  # an alert storm is shown bounded: its latest alerts, all of them stored ones
            assert len(shown) == MAX_ALERTS and set(shown) <= set(stored)
            assert stored[-1] in shown
    return rows


def test_webhook_burst_killed_then_retried(tmp_path: Path, database: str | None) -> None:
    """SIGKILL after ~100 of 400 concurrent deliveries; restart; every acknowledged alert is
    there exactly once; the sender's retry of the whole burst adds exactly the missing ones."""
    data = tmp_path / "data"
    extra = {"COPILOT_DATABASE_URL": database} if database else {}
    settings = Settings(data_dir=data, **({"database_url": database} if database else {}))
    tokens = {src: api_key(settings, "webhook", source=src) for src in ("alertmanager", "generic")}
    admin = api_key(settings, "admin")
    burst = make_burst()
    assert len({k for d in burst for k in d.keys}) < sum(len(d.keys) for d in burst)  # repeats

    server = Server(copilot_env(data, **extra), tmp_path / "serve.log")
    try:
        first = send_burst(server.start().url, burst, tokens, kill=server)
        assert set(first.statuses) == {200}, (first.statuses, server.tail())
        assert KILL_AFTER_ACKS <= len(first.acked) < len(burst), len(first.acked)

        server.start()  # the same data folder / schema
        rows = check_store(settings, burst, first.acked, server.url, admin)
        assert len(rows) >= len({k for i in first.acked for k in burst[i].keys})

        retry = send_burst(server.url, burst, tokens)  # the sender retries everything
        assert retry.statuses == Counter({200: len(burst)}), (retry.statuses, server.tail())
        final = check_store(settings, burst, retry.acked, server.url, admin)
    finally:
        server.stop()
    assert set(final) == {k for d in burst for k in d.keys}  # one row per fingerprint
    assert all(final[k]["id"] == row["id"] for k, row in rows.items())  # nothing re-created
    for i, outcomes in retry.acked.items():
        for key, o in zip(burst[i].keys, outcomes, strict=True):
            if key in rows:
                assert not str(o["outcome"]).startswith("new"), (key, o)
    resolved = {k for d in burst if not d.firing for k in d.keys}
    for key, row in final.items():
        assert row["status"] == ("resolved" if key in resolved else "firing"), (key, row)
        assert row["deliveries"] in ((1, 2) if key in resolved else (1,)), (key, row)
    print(f"[crash] webhooks ({database and 'postgresql' or 'sqlite'}): {len(first.acked)} of "
          f"{len(burst)} acknowledged before SIGKILL, {len(rows)} rows after restart, "
          f"{len(final)} after the retry; send errors {Counter(first.errors)}")


# --- the knowledge-base ingest ----------------------------------------------------------------

WORDS = ("queue", "replica", "latency", "certificate", "quota", "socket", "ledger", "shard",
         "broker", "cache", "token", "lease", "volume", "gateway", "scheduler", "webhook")


def make_corpus(root: Path, docs: int) -> Path:
    """``docs`` runbooks of four sections each, every one with a phrase of its own."""
    for n in range(docs):
        a, b = WORDS[n % len(WORDS)], WORDS[(n * 7 + 3) % len(WORDS)]
        sections = "".join(
            f"## Step {s}\n" + (f"When the {a} of component {n}-{s} stays degraded, check the "
                               f"{b} pressure and restart the worker after {s * 10 + n} minutes. ")
            * 7 + "\n\n" for s in range(4))
        write(root / "runbooks" / f"rb-{n:03d}.md",
              f"---\nid: rb-{n:03d}\ntitle: Runbook {n} for the {a} {b} fault zeta{n}q\n"
              f"services: [svc-{n % 7}]\n---\n# Runbook {n}\n\nUnique marker zeta{n}q.\n\n"
              + sections)
    return root / "runbooks"


class _Named:
    """The deterministic embedder under the real model's name: chunk ids (which hash the
    embedder's name) come out as the real model's, without loading it."""

    @staticmethod
    def make(name: str):  # type: ignore[no-untyped-def]
        from retrieval.embedders import HashEmbedder

        return type("Named", (HashEmbedder,), {"name": name})(dim=384)


def fresh_index(settings: Settings, name: str, **kw: Any):  # type: ignore[no-untyped-def]
    """The index of ``settings`` as a new process would see it (Chroma's per-process client
    cache dropped, so another process's writes are read from disk)."""
    from chromadb.api.client import SharedSystemClient

    from retrieval.index import open_index

    SharedSystemClient.clear_system_cache()
    return open_index(settings, embedder=kw.pop("embedder", None) or _Named.make(name), **kw)


def reference_chunks(corpus: Path, name: str, tmp: Path, extra_args: tuple[str, ...] = (),
                     kind: str | None = None) -> dict[str, list[str]]:
    """Chunk ids per document from a clean, uninterrupted ingest of ``corpus`` in a fresh dir
    (``extra_args``: the CLI's ``--exclude GLOB`` pairs, applied the same way)."""
    from ingest.pipeline import run_ingest
    from retrieval.index import KnowledgeIndex
    from retrieval.vector_store import InMemoryVectorStore

    settings = Settings(data_dir=tmp)
    index: KnowledgeIndex = fresh_index(settings, name, store=InMemoryVectorStore())
    exclude = [extra_args[i + 1] for i, a in enumerate(extra_args) if a == "--exclude"]
    report = run_ingest([corpus], index=index, settings=settings, kind=kind, exclude=exclude)
    assert report.ok and not report.repaired
    return {d: r.chunk_ids for d, r in index.catalog.documents().items()}


def check_index(settings: Settings, name: str, reference: dict[str, list[str]]) -> None:
    """Chroma, the catalog and the BM25 snapshot on disk hold exactly the clean ingest's
    chunks, document by document; the run is marked finished."""
    from retrieval.lexical import LexicalIndex

    index = fresh_index(settings, name)
    docs = {d: r.chunk_ids for d, r in index.catalog.documents().items()}
    assert docs == reference
    expected = {c for ids in reference.values() for c in ids}
    assert index.catalog.chunk_ids() == expected
    assert index.store.ids() == expected, "Chroma holds orphans or lacks chunks"
    assert index.store.count() == len(expected)
    snap = LexicalIndex.load(index.lexical_dir)
    assert snap is not None and snap.generation == index.catalog.generation
    assert sorted(snap.ids) == sorted(expected)
    assert index.catalog.get_state("dirty") is None


def check_killed(settings: Settings, name: str, reference: dict[str, list[str]]) -> set[str]:
    """What a SIGKILLed run leaves: a dirty catalog whose documents are each complete and
    whose every chunk already has its vector (extra vectors are allowed: the next run's
    repair deletes them). Returns the committed document ids."""
    index = fresh_index(settings, name)
    docs = {d: r.chunk_ids for d, r in index.catalog.documents().items()}
    assert 0 < len(docs) < len(reference), f"not killed midway: {len(docs)} documents"
    assert index.catalog.get_state("dirty") == "1"
    for doc_id, chunk_ids in docs.items():
        assert chunk_ids == reference[doc_id], f"{doc_id} is half-written"
    missing = index.catalog.chunk_ids() - index.store.ids()
    assert not missing, f"{len(missing)} committed chunks have no vector"
    return set(docs)


def orphan_vectors(settings: Settings, name: str) -> set[str]:
    index = fresh_index(settings, name)
    return index.store.ids() - index.catalog.chunk_ids()


def kill_when(cmd: list[str], env: dict[str, str], log: Path, ready: Callable[[], bool],
              what: str) -> None:
    """Run ``cmd`` and SIGKILL it as soon as ``ready()`` holds (polled; ``what`` names the
    moment waited for)."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    try:
        while not ready():
            assert proc.poll() is None, f"ended before {what}:\n{log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, f"never reached {what}"
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            proc.send_signal(9)
        proc.wait(timeout=30)
    assert proc.returncode == -9


def kill_at_generation(cmd: list[str], env: dict[str, str], data: Path, generation: int,
                       log: Path) -> None:
    """Run ``cmd`` and SIGKILL it once the catalog reached ``generation`` (batches committed)."""
    kill_when(cmd, env, log, lambda: catalog_generation(data) >= generation,
              f"catalog generation {generation}")


# A real ingest process (real Chroma) that stops right after its first vector upsert, before
# the catalog commit that lists those vectors, so the SIGKILL lands in the one window that
# leaves orphan vectors behind. Nothing it embeds is ever committed, so it embeds with the
# deterministic embedder under the real model's name instead of loading the model.
PAUSED_INGEST = """
import os, sys, time
from pathlib import Path
from retrieval import chroma_store, index
from retrieval.embedders import HashEmbedder
real = chroma_store.ChromaVectorStore.upsert
def upsert(self, *a, **kw):
    real(self, *a, **kw)
    Path(os.environ["CRASH_PAUSE_MARKER"]).write_text("paused")
    time.sleep(600)
chroma_store.ChromaVectorStore.upsert = upsert
named = type("Named", (HashEmbedder,), {"name": os.environ["CRASH_EMBEDDER_NAME"]})
index.build_embedder = lambda settings: named(dim=int(os.environ["CRASH_EMBEDDER_DIM"]))
from copilot.cli import main
sys.argv = ["copilot", *sys.argv[1:]]
main()
"""


def kill_between_upsert_and_commit(args: list[str], env: dict[str, str], tmp: Path,
                                   embedder: Any) -> None:
    marker = tmp / "paused"
    marker.unlink(missing_ok=True)
    env = {**env, "CRASH_PAUSE_MARKER": str(marker), "CRASH_EMBEDDER_NAME": embedder.name,
           "CRASH_EMBEDDER_DIM": str(len(embedder.embed_query("x")))}
    kill_when([sys.executable, "-c", PAUSED_INGEST, *args], env, tmp / "paused.log",
              marker.exists, "the pause after the first upsert")


def run_cli(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run([*COPILOT, *args], env=env, capture_output=True, text=True,
                          timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def crash_cycle(tmp_path: Path, corpus: Path, real_embedder: Any, *, batch: int,
                natural_kills: list[int], extra_args: tuple[str, ...] = (),
                ) -> tuple[Settings, dict[str, Any], dict[str, list[str]]]:
    """Kill `copilot ingest` at the given catalog generations, then once between a vector
    upsert and its catalog commit, then run it to the end; check each step."""
    data = tmp_path / "data"
    settings = Settings(data_dir=data)
    env = copilot_env(data, COPILOT_INGEST_BATCH_CHUNKS=str(batch))
    name = real_embedder.name
    reference = reference_chunks(corpus, name, tmp_path / "reference", extra_args)
    args = ["ingest", str(corpus), "--json", *extra_args]
    committed: set[str] = set()
    for generation in natural_kills:
        kill_at_generation([*COPILOT, *args], env, data, generation, tmp_path / "ingest.log")
        now = check_killed(settings, name, reference)
        assert committed <= now
        committed = now
    kill_between_upsert_and_commit(args, env, tmp_path, real_embedder)
    assert check_killed(settings, name, reference) == committed
    orphans = orphan_vectors(settings, name)
    assert orphans, "the kill between upsert and commit left no orphan vectors"
    assert {o.split("::")[0] for o in orphans}.isdisjoint(committed)

    report = run_cli(args, env)
    assert report["repaired"] == [f"deleted {len(orphans)} vectors no document lists"], report
    assert (report["unchanged"], report["new"], report["changed"]) == (
        len(committed), len(reference) - len(committed), 0)
    assert report["chunks_embedded"] == sum(
        len(ids) for d, ids in reference.items() if d not in committed)
    check_index(settings, name, reference)
    return settings, report, reference


def change_cycle(tmp_path: Path, corpus: Path, settings: Settings, embedder: Any,
                 old: dict[str, list[str]], *, batch: int,
                 extra_args: tuple[str, ...] = ()) -> dict[str, Any]:
    """Edit every other document, SIGKILL the re-ingest between its first vector upsert and
    the catalog commit: readers still see exactly the old version of every document; the
    re-run repairs, replaces exactly the edited documents' chunks and ends like a clean
    ingest of the edited files."""
    name = embedder.name
    edited = sorted(corpus.rglob("*.md"))[::2]
    for path in edited:
        path.write_text(path.read_text() + "\n\n## Follow-up\nPage the owning team when this "
                        "fires twice within an hour, and link the dashboard in the ticket.\n")
    new = reference_chunks(corpus, name, tmp_path / "reference-edited", extra_args)
    changed = {d for d in new if new[d] != old[d]}
    assert changed and set(new) == set(old)
    env = copilot_env(settings.data_dir, COPILOT_INGEST_BATCH_CHUNKS=str(batch))
    args = ["ingest", str(corpus), "--json", *extra_args]
    kill_between_upsert_and_commit(args, env, tmp_path, embedder)
    index = fresh_index(settings, name)
    assert {d: r.chunk_ids for d, r in index.catalog.documents().items()} == old
    orphans = index.store.ids() - index.catalog.chunk_ids()
    assert orphans and {o.split("::")[0] for o in orphans} <= changed
    report = run_cli(args, env)
    assert report["repaired"] == [f"deleted {len(orphans)} vectors no document lists"], report
    assert (report["changed"], report["new"]) == (len(changed), 0), report
    stale = {c for d in changed for c in old[d]} - {c for d in changed for c in new[d]}
    assert report["chunks_deleted"] == len(stale), report
    check_index(settings, name, new)
    return report


def check_search(settings: Settings, real_embedder: Any, doc_ids: list[str], *,
                 markers: bool = True) -> None:
    """After the crashes Chroma's vector index answers for every sampled chunk with that very
    chunk (its vector is there and is the right one), BM25 finds each document by the phrase
    only it has, and hybrid search answers from catalog documents only."""
    from retrieval.hybrid import HybridRetriever

    index = fresh_index(settings, real_embedder.name, embedder=real_embedder)
    sample = [c for c in index.catalog.iter_chunks() if c.doc_id in doc_ids]
    vectors = real_embedder.embed_documents([c.embed_text for c in sample])
    for chunk, vector in zip(sample, vectors, strict=True):
        hits = index.store.query(vector, k=1)
        assert hits and hits[0].id == chunk.id and hits[0].score > 0.99, (chunk.id, hits)
    retriever = HybridRetriever(index)
    for doc_id in doc_ids if markers else []:
        n = int(doc_id.rsplit("-", 1)[1])
        hits = retriever.search(f"unique marker zeta{n}q", k=5, mode="lexical")
        assert hits and hits[0].doc_id == doc_id, (doc_id, [h.doc_id for h in hits])
    for text in [sample[0].text[:200], "restart the worker when the queue stays degraded"]:
        hits = retriever.search(text, k=5)
        assert len(hits) == 5 and {h.doc_id for h in hits} <= set(index.catalog.documents())


def test_ingest_killed_midway_then_rerun_matches_a_clean_ingest(
    tmp_path: Path, real_embedder: Any
) -> None:
    """`copilot ingest` (real model, embedded Chroma) SIGKILLed after its second batch, then
    between a vector upsert and the catalog commit; the re-run repairs the orphans it finds,
    embeds only what is missing, and ends with exactly a clean ingest's chunks. Then the same
    for a re-ingest of edited documents: the old versions stay whole until the re-run."""
    corpus = make_corpus(tmp_path / "kb", 16)
    settings, report, reference = crash_cycle(tmp_path, corpus, real_embedder, batch=8,
                                              natural_kills=[2])
    edit = change_cycle(tmp_path, corpus, settings, real_embedder, reference, batch=8)
    check_search(settings, real_embedder, ["rb-000", "rb-007", "rb-015"])
    print(f"[crash] ingest: {len(reference)} documents, "
          f"{sum(map(len, reference.values()))} chunks; re-run {report}; edit re-run {edit}")


@pytest.mark.slow
@needs_shared()
def test_shared_kb_ingest_killed_three_times_then_edited_and_killed_again(
    tmp_path: Path, real_embedder: Any
) -> None:
    """The same on a real knowledge base (a copy of the shared prometheus-operator runbooks,
    about 110 documents): three kills on the first load, then every other document edited and
    the re-ingest killed between upsert and commit."""
    corpus = tmp_path / "kb" / "runbooks"
    shutil.copytree(SHARED / "kb" / "runbooks" / "prometheus-operator", corpus)
    extra = ("--exclude", "_index.md")
    settings, report, reference = crash_cycle(tmp_path, corpus, real_embedder, batch=32,
                                              natural_kills=[3, 7], extra_args=extra)
    check_search(settings, real_embedder, sorted(reference)[::25], markers=False)
    edit = change_cycle(tmp_path, corpus, settings, real_embedder, reference, batch=32,
                        extra_args=extra)
    check_search(settings, real_embedder, sorted(reference)[1::25], markers=False)
    print(f"[crash] shared kb: {len(reference)} documents, "
          f"{sum(map(len, reference.values()))} chunks; re-run {report}; edit re-run {edit}")


def test_ingest_over_http_killed_then_service_restarted(tmp_path: Path, real_embedder: Any) -> None:
    """`copilot serve` SIGKILLed during POST /v1/ingest/documents and started again with no
    re-run: it comes up, /readyz answers 200, search answers from the committed documents only;
    posting the documents again repairs and completes the index."""
    corpus = make_corpus(tmp_path / "kb", 12)
    name = real_embedder.name
    reference = reference_chunks(corpus, name, tmp_path / "reference", kind="runbook")
    data = tmp_path / "data"
    settings = Settings(data_dir=data)
    admin = {"Authorization": f"Bearer {api_key(settings, 'admin')}"}
    body = {"kind": "runbook", "documents": [
        {"filename": p.name, "content": p.read_text()} for p in sorted(corpus.glob("*.md"))]}
    server = Server(copilot_env(data, COPILOT_INGEST_BATCH_CHUNKS="8"), tmp_path / "serve.log")
    try:
        server.start()
        answer: list[Any] = []

        def post() -> None:
            try:
                answer.append(http("POST", f"{server.url}/v1/ingest/documents", body=body,
                                   headers=admin, timeout=600))
            except (OSError, HTTPException) as exc:
                answer.append(exc)

        poster = threading.Thread(target=post, daemon=True)
        poster.start()
        deadline = time.monotonic() + 300
        while catalog_generation(data) < 2:
            assert poster.is_alive(), f"the ingest ended before the kill: {answer}"
            assert time.monotonic() < deadline, f"no progress:\n{server.tail()}"
            time.sleep(0.02)
        server.kill()
        poster.join(timeout=30)
        assert answer and isinstance(answer[0], OSError | HTTPException), answer  # no ack
        committed = check_killed(settings, name, reference)

        server.start()  # no re-run
        status, ready = http("GET", f"{server.url}/readyz", timeout=300)
        assert status == 200 and ready == {"status": "ready", "store": "ok", "index": "ok"}, ready
        for n in (0, 11):
            status, hits = http("GET", f"{server.url}/v1/search?q=zeta{n}q&k=5", headers=admin)
            assert status == 200, hits
            assert {h["doc_id"] for h in hits} <= committed  # only what the catalog lists
            if f"rb-{n:03d}" in committed:
                assert hits[0]["doc_id"] == f"rb-{n:03d}", hits
            else:
                assert f"rb-{n:03d}" not in {h["doc_id"] for h in hits}

        status, report = http("POST", f"{server.url}/v1/ingest/documents", body=body,
                              headers=admin, timeout=600)
        assert status == 200, report
        assert (report["unchanged"], report["new"]) == (len(committed),
                                                        len(reference) - len(committed))
        status, hits = http("GET", f"{server.url}/v1/search?q=zeta11q&k=5", headers=admin)
        assert status == 200 and hits[0]["doc_id"] == "rb-011", hits
    finally:
        server.stop()
    check_index(settings, name, reference)
    print(f"[crash] http ingest: {len(committed)} of {len(reference)} documents committed at "
          f"the kill; re-post {report}")


# --- the incident store's schema migration -------------------------------------------------

# A real `copilot` process that SIGKILLs itself right after its Nth schema statement (CREATE,
# ALTER, DROP) has run: a kill during the first start on a fresh data folder, or during an
# upgrade, at a chosen point.
KILLED_AT_DDL = """
import os, signal, sys
from sqlalchemy import event
from sqlalchemy.engine import Engine
seen = [0]
@event.listens_for(Engine, "after_cursor_execute")
def after(conn, cursor, statement, *args):
    if statement.lstrip().upper().startswith(("CREATE", "ALTER", "DROP")):
        seen[0] += 1
        if seen[0] == int(os.environ["CRASH_KILL_AT_DDL"]):
            os.kill(os.getpid(), signal.SIGKILL)
from copilot.cli import main
sys.argv = ["copilot", *sys.argv[1:]]
main()
"""


@pytest.mark.parametrize("statement", [9, 20])  # of 31: mid-way through 0001, and 0002
def test_kill_during_schema_migration_leaves_a_store_that_opens(
    tmp_path: Path, database: str | None, statement: int
) -> None:
    """A process killed in the middle of creating the incident store's schema must leave
    either no schema or the whole of it: the next start migrates and serves webhooks
    (SQLite used to keep the tables made so far without the version stamp, and every later
    start failed with "table ... already exists")."""
    data = tmp_path / "data"
    extra = {"COPILOT_DATABASE_URL": database} if database else {}
    env = {**copilot_env(data, **extra), "CRASH_KILL_AT_DDL": str(statement)}
    done = subprocess.run([sys.executable, "-c", KILLED_AT_DDL, "incidents", "list", "--json"],
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == -9, f"not killed at schema statement {statement}: {done.stderr}"

    settings = Settings(data_dir=data, **({"database_url": database} if database else {}))
    token = api_key(settings, "webhook", source="generic")  # opens (and migrates) the store
    server = Server(copilot_env(data, **extra), tmp_path / "serve.log")
    try:
        server.start()
        status, body = http("POST", f"{server.url}/v1/webhooks/alerts/generic",
                            body={"name": "AfterCrash", "service": "svc"},
                            headers={"X-Webhook-Token": token})
        assert status == 200 and body["outcomes"][0]["outcome"] == "new, opened incident", body
    finally:
        server.stop()
