"""Latency of each copilot task on the demo incident, per backend: p50 / p95 of the total time,
of the model's time and of the service's own time (evidence gathering, retrieval, packing,
rules, validation). ``copilot bench tasks`` runs it and prints a Markdown table."""

from __future__ import annotations

import dataclasses
import datetime as dt
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from copilot.config import Settings


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def demo_copilot(settings: Settings) -> tuple[Any, int]:
    """A grounded copilot over the demo knowledge base and incident, built in ``settings``'s
    data folder (reused when already there)."""
    from copilot.runner import Copilot
    from copilot.store import IncidentStore
    from ingest.demo import build_demo_kb, load_demo_incident
    from retrieval.retriever import build_retriever

    retriever = build_retriever(settings)
    build_demo_kb(settings, retriever)
    load_demo_incident(settings)
    store = IncidentStore.open(settings)
    with store.session() as s:
        from copilot.incidents import list_incidents

        incident = list_incidents(s)[-1].id  # the first incident: the demo's
    return Copilot(settings, llm=None, retriever=retriever, store=store), incident


def task_cases(copilot: Any, incident: int) -> dict[str, Callable[[], tuple[Any, Any]]]:
    """Task name → a factory of (task, snapshot); chat rotates through three questions."""
    from copilot.context import snapshot_from_alert
    from copilot.tasks.chat import Chat
    from copilot.tasks.postmortem import Postmortem
    from copilot.tasks.root_causes import RootCauses
    from copilot.tasks.runbooks import Runbooks
    from copilot.tasks.status_update import StatusUpdate
    from copilot.tasks.summary import Summary

    snap = copilot.snapshot(incident)
    end = (snap.first_alert_at or snap.now) + dt.timedelta(minutes=50)
    resolved = dataclasses.replace(snap, status="resolved", mitigated_at=end,
                                   resolved_at=end + dt.timedelta(minutes=20))
    one_alert = snapshot_from_alert({"labels": {"alertname": snap.alerts[-1].name,
                                                **snap.alerts[-1].labels},
                                     "annotations": snap.alerts[-1].annotations})
    questions = ["What changed before the first alert?", "How do I check the PgBouncer pools?",
                 "What do the error logs show?"]
    counter = {"n": 0}

    def chat() -> tuple[Any, Any]:
        counter["n"] += 1
        return Chat(questions[counter["n"] % len(questions)]), snap

    return {
        "chat": chat,
        "root_causes": lambda: (RootCauses(), snap),
        "runbooks (incident)": lambda: (Runbooks(), snap),
        "runbooks (one alert)": lambda: (Runbooks(), one_alert),
        "status_update (customers)": lambda: (StatusUpdate(stage="investigating",
                                                           audience="customers"), snap),
        "summary": lambda: (Summary(), snap),
        "postmortem": lambda: (Postmortem(), resolved),
    }


def run_bench(copilot: Any, incident: int, *, backends: dict[str, Any], runs: dict[str, int],
              progress: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """One row per (backend, task): p50/p95 of total, model and service milliseconds, and how
    many answers were degraded (fell back to grounded)."""
    rows = []
    cases = task_cases(copilot, incident)
    for backend, llm in backends.items():
        copilot.llm = llm
        for name, make in cases.items():
            task, snap = make()
            copilot.run(task, snap)  # warm-up: caches, first model call
            samples = []
            for _ in range(runs[backend]):
                task, snap = make()
                started = time.perf_counter()
                result = copilot.run(task, snap)
                wall = (time.perf_counter() - started) * 1000
                samples.append((wall, result.timings.model_ms, result.timings.service_ms,
                                result.degraded))
            if progress:
                progress(f"{backend} {name}: {statistics.median(s[0] for s in samples):.0f} ms")
            rows.append({
                "backend": backend, "task": name, "runs": len(samples),
                **{f"{key}_{q}": round(_pct([s[i] for s in samples], p), 1)
                   for key, i in (("total", 0), ("model", 1), ("service", 2))
                   for q, p in (("p50", 0.5), ("p95", 0.95))},
                "degraded": sum(1 for s in samples if s[3]),
            })
    copilot.llm = None
    return rows


def format_rows(rows: list[dict[str, Any]]) -> str:
    header = ("| backend | task | runs | total p50 / p95 ms | model p50 / p95 ms | "
              "service p50 / p95 ms | degraded |")
    lines = [header, "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['backend']} | {r['task']} | {r['runs']} | {r['total_p50']:.0f} / "
            f"{r['total_p95']:.0f} | {r['model_p50']:.0f} / {r['model_p95']:.0f} | "
            f"{r['service_p50']:.0f} / {r['service_p95']:.0f} | {r['degraded']}/{r['runs']} |")
    return "\n".join(lines)


def bench_tasks(settings: Settings, *, backends: list[str], runs: int, local_runs: int,
                progress: Callable[[str], None] | None = None,
                data_dir: Path | None = None) -> list[dict[str, Any]]:
    from copilot.llm.factory import build_llm

    if data_dir is not None:
        settings = settings.model_copy(update={"data_dir": data_dir})
    copilot, incident = demo_copilot(settings)
    llms = {b: build_llm(settings, backend=b) for b in backends}
    return run_bench(copilot, incident, backends=llms,
                     runs={b: (local_runs if b != "grounded" else runs) for b in backends},
                     progress=progress)
