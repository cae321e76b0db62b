"""A bounded load test of the real service on loopback: N asyncio clients mix chat (SSE),
search, incident reads, runbook lookups and alert webhooks against a `copilot serve` process
for a fixed time, then the driver checks that every acknowledged alert is stored exactly once.

    .venv/bin/python -m tests.reliability.load --clients 50 --seconds 60 --out DIR

Writes ``load.json`` and ``load.md`` to DIR (with the server log) and exits 1 on any error:
a non-2xx answer, a timeout, a connection error, an SSE ``error`` event or a stream without a
``final`` event, an acknowledgement that does not match what was sent, an acknowledged alert
missing from the store, or a traceback in the server log. Latency and memory are measured and
written down, not asserted here (the machine is shared); ``--max-growth-mb`` gates memory.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import re
import statistics
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.reliability._procs import Server, copilot_env

ROOT = Path(__file__).resolve().parents[2]
KINDS = ("chat", "search", "webhook", "read", "runbooks")
WEIGHTS = {"chat": 30, "search": 25, "webhook": 30, "read": 10, "runbooks": 5}
SERVICES = tuple(f"load-svc-{i}" for i in range(5))
SHARED_FINGERPRINTS = 24
CHANGES = ("new", "resolved before firing", "resolved", "refired")  # outcomes that count
QUESTIONS = (
    "What changed before the first alert?",
    "Which runbook applies to this incident?",
    "What is the customer impact so far?",
    "Which services are affected?",
    "What do the error logs show?",
    "Who is the incident commander?",
    "Is the ledger database saturated?",
    "What should we check next?",
)
QUERIES = (
    "database connection pool exhausted", "TLS certificate expired", "kafka consumer lag",
    "roll back a bad deploy", "disk full on a broker", "checkout high error rate",
    "redis memory eviction", "DNS resolution failures", "feature flag rollback",
    "ledger-db connections saturated", "payment provider timeouts", "pod crash loop",
)


@dataclass
class Sample:
    kind: str
    phase: str  # "warmup" or "measure": the phase the request started in
    started: float
    seconds: float
    ok: bool
    status: int | None = None
    error: str | None = None
    first_byte: float | None = None


@dataclass
class Target:
    """Where and as whom the clients talk to the service."""

    base_url: str
    reader_key: str
    webhook_tokens: dict[str, str]
    incident_ids: list[int]
    run_id: str
    new_incident_share: float = 0.25  # of chats and reads that go to incidents webhooks opened


@dataclass
class Acks:
    """What the service acknowledged: (source, fingerprint) → alert ids it named."""

    alerts: dict[tuple[str, str], set[int]] = field(default_factory=dict)
    outcomes: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    deliveries: int = 0
    new_incidents: set[int] = field(default_factory=set)


# -- preparation ---------------------------------------------------------------------------


def prepare(data_dir: Path, *, embedder: Any = None, database_url: str | None = None) -> dict[str, Any]:
    """Demo knowledge base and incident in ``data_dir`` (kept if already there), plus a
    responder key and webhook tokens for alertmanager and generic made with the real key
    functions. Returns the keys and the demo incident id."""
    from sqlalchemy import select

    from copilot.auth import WEBHOOK_ROLE, create_key
    from copilot.config import Settings
    from copilot.models import Incident
    from copilot.store import IncidentStore
    from ingest.demo import build_demo_kb, load_demo_incident
    from retrieval.retriever import build_retriever

    settings = Settings(data_dir=data_dir, allow_remote_llm=False, llm_backend="grounded",
                        database_url=database_url)
    if not any(settings.kb_dir.glob("catalog-*.sqlite3")):
        build_demo_kb(settings, build_retriever(settings, embedder=embedder))
    load_demo_incident(settings)
    store = IncidentStore.open(settings)
    try:
        with store.session() as s:
            incident = s.scalars(select(Incident).order_by(Incident.id)).first()
            if incident is None:
                raise RuntimeError("the demo incident did not load")
            keys = {"reader": create_key(s, name="load-responder", role="responder")[1]}
            for source in ("alertmanager", "generic"):
                keys[source] = create_key(s, name=f"load-webhook-{source}", role=WEBHOOK_ROLE,
                                          source=source)[1]
            return {"keys": keys, "incident_id": incident.id}
    finally:
        store.engine.dispose()


def start_server(data_dir: Path, log_path: Path, *, database_url: str | None = None,
                 ready_timeout: float = 300) -> Server:
    """`copilot serve` on loopback with the data folder (grounded backend); returns once
    /readyz says 200."""
    extra = {"COPILOT_LLM_BACKEND": "grounded"}
    if database_url:
        extra["COPILOT_DATABASE_URL"] = database_url
    log_path.unlink(missing_ok=True)
    return Server(copilot_env(data_dir, **extra), log_path).start(
        deadline_s=ready_timeout, ready="/readyz")


# -- memory --------------------------------------------------------------------------------


def _tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        for task in Path(f"/proc/{p}/task").glob("*/children"):
            try:
                todo += [int(c) for c in task.read_text().split()]
            except OSError:
                pass
    return pids


def rss_mb(pid: int) -> float:
    """Resident memory of the process and its children (VmRSS), in MB."""
    total = 0
    for p in _tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


# -- the clients ---------------------------------------------------------------------------


class Client:
    """One simulated user: picks a request kind by weight and loops until the deadline."""

    def __init__(self, n: int, http: httpx.AsyncClient, target: Target, acks: Acks,
                 samples: list[Sample], seed: int, weights: dict[str, int] | None = None) -> None:
        self.n, self.http, self.target, self.acks, self.samples = n, http, target, acks, samples
        self.rng = random.Random(seed * 1000 + n)
        self.sent = 0
        self.weights = {k: w for k, w in (weights or WEIGHTS).items() if w > 0}

    async def run(self, warmup_end: float, deadline: float) -> None:
        kinds, weights = list(self.weights), list(self.weights.values())
        while (now := time.monotonic()) < deadline:
            kind = self.rng.choices(kinds, weights)[0]
            phase = "warmup" if now < warmup_end else "measure"
            sample = Sample(kind, phase, now, 0.0, False)
            try:
                await getattr(self, kind)(sample)
                sample.ok = sample.error is None
            except httpx.TimeoutException as exc:
                sample.error = f"timeout: {type(exc).__name__}"
            except httpx.HTTPError as exc:
                sample.error = f"connection: {type(exc).__name__}: {exc}"[:300]
            except Exception as exc:  # noqa: BLE001 - a bad answer is an error, not a crash
                sample.error = f"client: {type(exc).__name__}: {exc}"[:300]
            sample.seconds = time.monotonic() - now
            self.samples.append(sample)

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.target.reader_key}"}

    def _check(self, sample: Sample, res: httpx.Response) -> Any:
        sample.status = res.status_code
        if not 200 <= res.status_code < 300:
            sample.error = f"HTTP {res.status_code}: {res.text[:200]}"
            return None
        return res.json()

    def _incident(self) -> int:
        ids = self.target.incident_ids
        extra = sorted(self.acks.new_incidents)
        if extra and self.rng.random() < self.target.new_incident_share:
            return self.rng.choice(extra)
        return self.rng.choice(ids)

    async def chat(self, sample: Sample) -> None:
        body: dict[str, Any] = {"question": self.rng.choice(QUESTIONS)}
        if self.rng.random() < 0.3:
            body["history"] = [{"role": "user", "content": self.rng.choice(QUESTIONS)},
                               {"role": "assistant", "content": "See the timeline [S1]."}]
        url = f"{self.target.base_url}/v1/incidents/{self._incident()}/chat"
        headers = {**self._auth(), "Accept": "text/event-stream"}
        async with self.http.stream("POST", url, json=body, headers=headers) as res:
            sample.status = res.status_code
            if res.status_code != 200:
                await res.aread()
                sample.error = f"HTTP {res.status_code}: {res.text[:200]}"
                return
            event, finals, tokens = "", 0, 0
            async for line in res.aiter_lines():
                if sample.first_byte is None:
                    sample.first_byte = time.monotonic() - sample.started
                if line.startswith("event: "):
                    event = line[7:].strip()
                elif line.startswith("data: "):
                    data = json.loads(line[6:])
                    if event == "error":
                        sample.error = f"SSE error event: {data.get('error')}"[:300]
                        return
                    if event == "token":
                        tokens += 1
                    elif event == "final":
                        finals += 1
                        if not data["result"].get("answer"):
                            sample.error = "SSE final event without an answer"
            if finals != 1:
                sample.error = f"SSE stream ended with {finals} final events ({tokens} tokens)"

    async def search(self, sample: Sample) -> None:
        params: dict[str, Any] = {"q": self.rng.choice(QUERIES), "k": self.rng.choice((3, 5, 10))}
        if self.rng.random() < 0.3:
            params["kind"] = self.rng.choice(("runbook", "postmortem"))
        res = await self.http.get(f"{self.target.base_url}/v1/search", params=params,
                                  headers=self._auth())
        hits = self._check(sample, res)
        if hits is not None and not isinstance(hits, list):
            sample.error = "search did not answer a list"

    async def read(self, sample: Sample) -> None:
        res = await self.http.get(f"{self.target.base_url}/v1/incidents/{self._incident()}",
                                  headers=self._auth())
        body = self._check(sample, res)
        if body is not None and "timeline" not in body:
            sample.error = "incident detail without a timeline"

    async def runbooks(self, sample: Sample) -> None:
        alert = {"labels": {"alertname": self.rng.choice(("LedgerDBConnectionsSaturated",
                                                          "CheckoutHighErrorRate",
                                                          "CertificateExpiringSoon")),
                            "service": self.rng.choice(("ledger-db", "checkout-api"))},
                 "annotations": {"summary": self.rng.choice(QUERIES)}}
        res = await self.http.post(f"{self.target.base_url}/v1/runbooks", json=alert,
                                   headers=self._auth())
        body = self._check(sample, res)
        if body is not None and "recommendations" not in body:
            sample.error = "runbook answer without recommendations"

    def _alert(self, source: str) -> dict[str, Any]:
        """A new fingerprint (half the time) or one of a shared pool that every client also
        sends, firing, resolved or firing again: new, duplicate, resolved, refired, stale."""
        run = self.target.run_id
        if self.rng.random() < 0.5:
            self.sent += 1
            fp, index = f"load-{run}-c{self.n}-{self.sent}", self.sent
            status, restart = "firing", 0
        else:
            index = self.rng.randrange(SHARED_FINGERPRINTS)
            fp = f"load-{run}-shared-{index}"
            status = self.rng.choice(("firing", "firing", "resolved"))
            restart = self.rng.choice((0, 0, 20))
        base = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC) + dt.timedelta(minutes=restart)
        starts = (base + dt.timedelta(seconds=index % 60)).isoformat().replace("+00:00", "Z")
        ends = (base + dt.timedelta(minutes=10)).isoformat().replace("+00:00", "Z")
        service = SERVICES[zlib.crc32(fp.encode()) % len(SERVICES)]
        return {"fingerprint": fp, "status": status, "service": service, "starts": starts,
                "ends": ends if status == "resolved" else None,
                "name": f"LoadTest{['Latency', 'Errors', 'Saturation'][index % 3]}"}

    async def webhook(self, sample: Sample) -> None:
        source = "alertmanager" if self.rng.random() < 0.6 else "generic"
        alerts: list[dict[str, Any]] = []
        for _ in range(self.rng.choice((1, 1, 2, 3))):
            a = self._alert(source)
            if a["fingerprint"] not in {x["fingerprint"] for x in alerts}:
                alerts.append(a)
        if source == "alertmanager":
            payload: dict[str, Any] = {
                "version": "4", "groupKey": f"{{}}:{{run=\"{self.target.run_id}\"}}",
                "status": "firing", "receiver": "load", "groupLabels": {}, "commonLabels": {},
                "commonAnnotations": {}, "externalURL": "http://alertmanager.invalid",
                "alerts": [{
                    "status": a["status"], "fingerprint": a["fingerprint"],
                    "labels": {"alertname": a["name"], "service": a["service"],
                               "severity": "warning"},
                    "annotations": {"summary": f"{a['name']} on {a['service']}"},
                    "startsAt": a["starts"], "endsAt": a["ends"] or "0001-01-01T00:00:00Z",
                } for a in alerts]}
        else:
            payload = {"alerts": [{
                "name": a["name"], "status": a["status"], "fingerprint": a["fingerprint"],
                "service": a["service"], "severity": "warning", "starts_at": a["starts"],
                "ends_at": a["ends"], "summary": f"{a['name']} on {a['service']}",
            } for a in alerts]}
        token = self.target.webhook_tokens[source]
        res = await self.http.post(f"{self.target.base_url}/v1/webhooks/alerts/{source}",
                                   json=payload, headers={"Authorization": f"Bearer {token}"})
        body = self._check(sample, res)
        if body is None:
            return
        sent = [a["fingerprint"] for a in alerts]
        got = [o.get("fingerprint") for o in body.get("outcomes", [])]
        if body.get("accepted") != len(alerts) or sorted(got) != sorted(sent):
            sample.error = f"acknowledgement does not match: sent {sent}, got {got}"
            return
        self.acks.deliveries += 1
        for o in body["outcomes"]:
            key = (source, o["fingerprint"])
            self.acks.alerts.setdefault(key, set()).add(int(o["alert_id"]))
            self.acks.outcomes.setdefault(key, []).append(str(o.get("outcome")))
            if o.get("incident_id") and "opened incident" in str(o.get("outcome")):
                self.acks.new_incidents.add(int(o["incident_id"]))


async def drive(target: Target, *, clients: int, seconds: float, warmup: float,
                timeout: float, pid: int | None, seed: int = 7,
                weights: dict[str, int] | None = None,
                log: Callable[[str], None] = print) -> tuple[list[Sample], Acks, list[tuple[float, float]]]:
    """Run the clients for ``warmup + seconds`` and sample the server's RSS every second."""
    samples: list[Sample] = []
    acks = Acks()
    rss: list[tuple[float, float]] = []
    limits = httpx.Limits(max_connections=clients + 10, max_keepalive_connections=clients + 10)
    start = time.monotonic()
    warmup_end, deadline = start + warmup, start + warmup + seconds
    done = asyncio.Event()

    async def sampler() -> None:
        next_log = start + 10
        while not done.is_set():
            now = time.monotonic()
            if pid is not None:
                rss.append((now - start, rss_mb(pid)))
            if now >= next_log:
                errors = sum(1 for s in samples if not s.ok)
                log(f"  t={now - start:5.0f}s requests={len(samples)} errors={errors}"
                    + (f" rss={rss[-1][1]:.0f}MB" if rss else ""))
                next_log += 10
            try:
                await asyncio.wait_for(done.wait(), timeout=1.0)
            except TimeoutError:
                pass

    async with httpx.AsyncClient(timeout=httpx.Timeout(timeout), limits=limits) as http:
        watcher = asyncio.create_task(sampler())
        await asyncio.gather(*(Client(n, http, target, acks, samples, seed, weights)
                               .run(warmup_end, deadline) for n in range(clients)))
        done.set()
        await watcher
    if pid is not None:
        rss.append((time.monotonic() - start, rss_mb(pid)))
    return samples, acks, [(t - warmup, mb) for t, mb in rss]


# -- checks and the report -----------------------------------------------------------------


def check_store(db_url: str, acks: Acks, run_id: str) -> dict[str, Any]:
    """Every acknowledged alert is in the store exactly once, under the id the service
    acknowledged, with one delivery counted per acknowledged change (new, resolved, refired:
    a lost update under concurrency shows here), and every acknowledged delivery has its
    audit entry."""
    from sqlalchemy import create_engine, text

    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT id, source, fingerprint, incident_id, status, "
                                     "deliveries "
                                     "FROM alerts WHERE fingerprint LIKE :p"),
                                {"p": f"load-{run_id}-%"}).all()
            audits = conn.execute(text("SELECT COUNT(*) FROM audit_log WHERE action = "
                                       "'ingest.alerts' AND actor LIKE 'load-webhook-%'")).scalar_one()
    finally:
        engine.dispose()
    stored: dict[tuple[str, str], list[Any]] = {}
    for row in rows:
        stored.setdefault((row.source, row.fingerprint), []).append(row)
    problems = []
    for key, ids in sorted(acks.alerts.items()):
        found = stored.get(key, [])
        if len(found) != 1:
            problems.append(f"{key}: acknowledged, stored {len(found)} times")
        elif {found[0].id} != ids:
            problems.append(f"{key}: acknowledged as alert {sorted(ids)}, stored as {found[0].id}")
        elif found[0].status == "firing" and found[0].incident_id is None:
            problems.append(f"{key}: firing but attached to no incident")
        else:
            changes = [o for o in acks.outcomes.get(key, []) if o.split(",")[0] in CHANGES]
            if found[0].deliveries != len(changes):
                problems.append(f"{key}: {len(changes)} changes acknowledged "
                                f"({', '.join(acks.outcomes[key])}), {found[0].deliveries} "
                                "deliveries stored")
    if audits < acks.deliveries:
        problems.append(f"{acks.deliveries} deliveries acknowledged, {audits} audit entries")
    return {"acknowledged_alerts": len(acks.alerts), "acknowledged_deliveries": acks.deliveries,
            "stored_alerts": len(rows), "audit_entries": audits,
            "incidents_opened": len(acks.new_incidents), "problems": problems[:50],
            "problem_count": len(problems)}


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


def _slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope in MB per minute."""
    if len(points) < 3:
        return 0.0
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return 60 * sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


FLAT_SHARE = 0.05  # memory is "flat" if the last half of the run grew by at most this share
FLAT_NEGLIGIBLE = 0.005  # ... and either by at most this share or by half the first half's growth
FLAT_WINDOW = 10.0  # seconds of RSS samples whose median stands for one point in time


def _median_between(points: list[tuple[float, float]], lo: float, hi: float) -> float | None:
    inside = [mb for t, mb in points if lo <= t < hi]
    return statistics.median(inside) if inside else None


def memory_summary(rss: list[tuple[float, float]], seconds: float) -> dict[str, Any]:
    """RSS over the measured window (t = 0 is the end of the warm-up), a slope per minute,
    and the flatness verdict. With medians of 10 s of samples at the start (after the
    warm-up), the middle and the end: the last half grew by at most 5 % of the start, and
    either by at most 0.5 % of it or by at most half of what the first half grew (the curve
    levels off). A steady leak grows both halves alike and fails the second part."""
    window = [p for p in rss if 0 <= p[0] <= seconds]
    memory: dict[str, Any] = {"samples": len(rss)}
    if not window:
        return memory
    quarter = max(1, len(window) // 4)
    half = window[len(window) // 2:]
    memory.update({
        "start_mb": round(window[0][1], 1),
        "mid_mb": round(window[len(window) // 2][1], 1),
        "end_mb": round(window[-1][1], 1),
        "max_mb": round(max(p[1] for p in rss), 1),
        "growth_mb": round(statistics.fmean(p[1] for p in window[-quarter:])
                           - statistics.fmean(p[1] for p in window[:quarter]), 1),
        "slope_mb_per_min_second_half": round(_slope(half), 2),
        "slope_mb_per_min_first_half": round(_slope(window[:len(window) // 2]), 2),
    })
    minutes = []
    for m in range(int(seconds // 60) + 1):
        lo, hi = 60.0 * m, min(60.0 * (m + 1), seconds)
        part = [p for p in window if lo <= p[0] < hi or (hi == seconds and p[0] == hi)]
        if hi - lo >= 30 and len(part) >= 3:
            minutes.append({"from_s": lo, "to_s": hi, "slope_mb_per_min": round(_slope(part), 2),
                            "mean_mb": round(statistics.fmean(p[1] for p in part), 1)})
    memory["per_minute"] = minutes
    first = _median_between(window, 0, FLAT_WINDOW)
    mid = _median_between(window, seconds / 2 - FLAT_WINDOW / 2, seconds / 2 + FLAT_WINDOW / 2)
    last = _median_between(window, seconds - FLAT_WINDOW, seconds + 1)
    if first is not None and mid is not None and last is not None and seconds >= 4 * FLAT_WINDOW:
        memory["after_warmup_mb"] = round(first, 1)
        memory["last_half_growth_mb"] = round(last - mid, 1)
        memory["flat_limit_mb"] = round(FLAT_SHARE * first, 1)
        memory["first_half_growth_mb"] = round(mid - first, 1)
        memory["flat"] = last - mid <= FLAT_SHARE * first and (
            last - mid <= FLAT_NEGLIGIBLE * first or last - mid <= 0.5 * (mid - first))
    return memory


def summarize(samples: list[Sample], rss: list[tuple[float, float]], seconds: float,
              store: dict[str, Any], server_errors: list[str], config: dict[str, Any]) -> dict[str, Any]:
    measured = [s for s in samples if s.phase == "measure"]
    kinds: dict[str, Any] = {}
    for kind in KINDS:
        mine = [s for s in measured if s.kind == kind]
        ok = [s.seconds for s in mine if s.ok]
        row: dict[str, Any] = {"requests": len(mine), "errors": sum(1 for s in mine if not s.ok),
                               "per_second": round(len(mine) / seconds, 2)}
        if ok:
            row.update({f"p{int(q * 100)}_ms": round(_pct(ok, q) * 1000, 1)
                        for q in (0.5, 0.95, 0.99)})
            row["max_ms"] = round(max(ok) * 1000, 1)
        ttfb = [s.first_byte for s in mine if s.ok and s.first_byte is not None]
        if ttfb:
            row["first_byte_p50_ms"] = round(_pct(ttfb, 0.5) * 1000, 1)
            row["first_byte_p99_ms"] = round(_pct(ttfb, 0.99) * 1000, 1)
        kinds[kind] = row
    ok_all = [s.seconds for s in measured if s.ok]
    total = {"requests": len(measured), "errors": sum(1 for s in measured if not s.ok),
             "per_second": round(len(measured) / seconds, 2)}
    if ok_all:
        total.update({f"p{int(q * 100)}_ms": round(_pct(ok_all, q) * 1000, 1)
                      for q in (0.5, 0.95, 0.99)})
        total["max_ms"] = round(max(ok_all) * 1000, 1)
    kinds["all"] = total
    warm = [s for s in samples if s.phase == "warmup"]
    errors = [f"{s.phase} {s.kind}: {s.error}" for s in samples if not s.ok]
    memory = memory_summary(rss, seconds)
    return {"config": config, "kinds": kinds, "warmup_requests": len(warm),
            "errors": len(errors), "error_samples": errors[:30], "memory": memory,
            "rss_series": [[round(t, 1), round(mb, 1)] for t, mb in rss],
            "store": store, "server_log_errors": server_errors[:20],
            "passed": not errors and not store["problem_count"] and not server_errors}


def server_log_errors(log_path: Path) -> list[str]:
    text = log_path.read_text(errors="replace") if log_path.exists() else ""
    return [line for line in text.splitlines()
            if re.search(r"Traceback|\bERROR\b|database is locked|Exception in ASGI", line)]


def markdown(report: dict[str, Any]) -> str:
    cfg, mem = report["config"], report["memory"]
    mix = ", ".join(f"{k}={w}" for k, w in cfg.get("weights", WEIGHTS).items())
    out = [(f"Load: {cfg['clients']} clients for {cfg['seconds']:.0f} s (after a "
            f"{cfg['warmup']:.0f} s warm-up), request timeout {cfg['timeout']:.0f} s, backend "
            f"grounded, store {cfg['store']}, weights {mix}."), "",
           "| kind | requests | errors | req/s | p50 ms | p95 ms | p99 ms | max ms |",
           "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for kind, row in report["kinds"].items():
        out.append(f"| {kind} | {row['requests']} | {row['errors']} | {row['per_second']} | "
                   f"{row.get('p50_ms', '-')} | {row.get('p95_ms', '-')} | "
                   f"{row.get('p99_ms', '-')} | {row.get('max_ms', '-')} |")
    chat = report["kinds"]["chat"]
    if "first_byte_p50_ms" in chat:
        out += ["", (f"Chat first byte: p50 {chat['first_byte_p50_ms']} ms, "
                     f"p99 {chat['first_byte_p99_ms']} ms.")]
    if "start_mb" in mem:
        out += ["", (f"Server RSS (process and children): start {mem['start_mb']} MB, mid "
                     f"{mem['mid_mb']} MB, end {mem['end_mb']} MB, max {mem['max_mb']} MB; "
                     f"last quarter minus first quarter {mem['growth_mb']:+} MB; slope "
                     f"{mem['slope_mb_per_min_first_half']:+} MB/min (first half), "
                     f"{mem['slope_mb_per_min_second_half']:+} MB/min (second half).")]
        if mem.get("per_minute"):
            out.append("Slope per minute: " + ", ".join(
                f"{m['from_s']:.0f}-{m['to_s']:.0f} s {m['slope_mb_per_min']:+} MB/min"
                for m in mem["per_minute"]) + ".")
        if "flat" in mem:
            out.append(f"Memory {'flat' if mem['flat'] else 'NOT flat'}: first half grew "
                       f"{mem['first_half_growth_mb']:+} MB, last half "
                       f"{mem['last_half_growth_mb']:+} MB (limit {FLAT_SHARE:.0%} of "
                       f"{mem['after_warmup_mb']} MB after warm-up = {mem['flat_limit_mb']} MB, "
                       f"and at most {FLAT_NEGLIGIBLE:.1%} or half the first half's growth).")
    st = report["store"]
    out += ["", (f"Store: {st['acknowledged_deliveries']} webhook deliveries acknowledged, "
                 f"{st['acknowledged_alerts']} distinct alerts acknowledged, "
                 f"{st['stored_alerts']} stored, {st['incidents_opened']} incidents opened, "
                 f"{st['audit_entries']} audit entries; problems: {st['problem_count']}."),
            (f"Errors: {report['errors']} (plus {len(report['server_log_errors'])} error lines "
             f"in the server log). Result: {'PASS' if report['passed'] else 'FAIL'}.")]
    for line in report["error_samples"][:10] + report["store"]["problems"][:10] \
            + report["server_log_errors"][:10]:
        out.append(f"- {line}")
    return "\n".join(out) + "\n"


def run(*, out: Path, clients: int, seconds: float, warmup: float = 5.0, timeout: float = 60.0,
        data_dir: Path | None = None, database_url: str | None = None, embedder: Any = None,
        incident_id: int | None = None, seed: int = 7, weights: dict[str, int] | None = None,
        new_incident_share: float = 0.25, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Prepare, start the server, drive the load, check the store, write the report."""
    weights = {**WEIGHTS, **(weights or {})}
    out.mkdir(parents=True, exist_ok=True)
    data_dir = (data_dir or out / "data").resolve()
    t0 = time.monotonic()
    prep = prepare(data_dir, embedder=embedder, database_url=database_url)
    log(f"prepared {data_dir} in {time.monotonic() - t0:.0f}s")
    t0 = time.monotonic()
    server_log = out / "server.log"
    server = start_server(data_dir, server_log, database_url=database_url)
    proc, port = server.proc, server.port
    assert proc is not None
    log(f"server pid {proc.pid} ready on port {port} in {time.monotonic() - t0:.0f}s")
    run_id = f"{int(time.time())}{random.Random().randrange(1000):03d}"
    keys = prep["keys"]
    target = Target(base_url=f"http://127.0.0.1:{port}", reader_key=keys["reader"],
                    webhook_tokens={s: keys[s] for s in ("alertmanager", "generic")},
                    incident_ids=[incident_id or prep["incident_id"]], run_id=run_id,
                    new_incident_share=new_incident_share)
    try:
        samples, acks, rss = asyncio.run(drive(target, clients=clients, seconds=seconds,
                                               warmup=warmup, timeout=timeout, pid=proc.pid,
                                               seed=seed, weights=weights, log=log))
        alive = proc.poll() is None
    finally:
        server.stop()
    db_url = database_url or f"sqlite:///file:{data_dir / 'incidents.sqlite3'}?mode=ro&uri=true"
    if db_url.startswith("postgresql://"):
        db_url = "postgresql+psycopg://" + db_url.removeprefix("postgresql://")
    store = check_store(db_url, acks, run_id)
    errors = server_log_errors(server_log)
    if not alive:
        errors.insert(0, "the server process died during the run")
    config = {"clients": clients, "seconds": seconds, "warmup": warmup, "timeout": timeout,
              "seed": seed, "run_id": run_id, "store": "postgresql" if database_url else "sqlite",
              "weights": weights, "new_incident_share": new_incident_share, "cpus": os.cpu_count(),
              "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    report = summarize(samples, rss, seconds, store, errors, config)
    (out / "load.json").write_text(json.dumps(report, indent=2))
    (out / "load.md").write_text(markdown(report))
    return report


def parse_weights(text: str) -> dict[str, int]:
    """``chat=30,webhook=0``: the kinds named get these weights, the others keep theirs."""
    weights: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        kind, _, value = part.partition("=")
        if kind not in KINDS or not value.strip().isdigit():
            raise argparse.ArgumentTypeError(f"bad weight {part!r}: want KIND=N, KIND one of "
                                             f"{', '.join(KINDS)}")
        weights[kind] = int(value)
    if not any({**WEIGHTS, **weights}.values()):
        raise argparse.ArgumentTypeError("all weights are 0")
    return weights


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--warmup", type=float, default=5)
    p.add_argument("--timeout", type=float, default=60, help="per request, seconds")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--data-dir", type=Path, help="reuse a data folder (default: OUT/data)")
    p.add_argument("--database-url", help="PostgreSQL URL for the incident store (default: "
                                          "SQLite in the data folder)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--weights", type=parse_weights, default={},
                   help="request mix, e.g. chat=30,search=25,webhook=0 (default "
                        + ",".join(f"{k}={w}" for k, w in WEIGHTS.items()) + ")")
    p.add_argument("--new-incident-share", type=float, default=0.25,
                   help="share of chats and reads sent to the incidents the webhooks opened "
                        "(they grow during the run; 0 keeps reads on the fixed demo incident)")
    p.add_argument("--require-flat-memory", action="store_true",
                   help=f"fail unless memory was flat: the last half of the run grew RSS by at most "
                        f"{FLAT_SHARE * 100:.0f}%% of the RSS after the warm-up")
    p.add_argument("--max-growth-mb", type=float, help="fail if RSS grew more than this "
                                                         "(last quarter minus first quarter)")
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    report = run(out=args.out, clients=args.clients, seconds=args.seconds, warmup=args.warmup,
                 timeout=args.timeout, data_dir=args.data_dir, database_url=args.database_url,
                 seed=args.seed, weights=args.weights,
                 new_incident_share=args.new_incident_share)
    print(markdown(report))
    growth = report["memory"].get("growth_mb", 0.0)
    if args.max_growth_mb is not None and growth > args.max_growth_mb:
        print(f"FAIL: memory grew {growth} MB (limit {args.max_growth_mb} MB)")
        return 1
    if args.require_flat_memory and not report["memory"].get("flat", False):
        print("FAIL: memory not flat")
        return 1
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
