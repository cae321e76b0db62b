"""The load driver (tests/reliability/load.py) against a real `copilot serve` process on
loopback: clients mixing chat (SSE), search, incident reads, runbook lookups and alert
webhooks (new and repeated fingerprints, Alertmanager and generic). The CI run is small and
asserts function only: no errors, every kind exercised, every acknowledged alert stored
exactly once with every acknowledged change counted, and a report with latency and memory.
The issue's full run (50 clients for 60 s) is marked slow; its figures are in
docs/reliability.md."""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.reliability import load


def _check(report: dict[str, Any], out: Path) -> None:
    assert report["errors"] == 0, report["error_samples"]
    assert not report["server_log_errors"], report["server_log_errors"]
    for kind in load.KINDS:
        row = report["kinds"][kind]
        assert row["requests"] > 0 and row["errors"] == 0, (kind, row)
        assert {"p50_ms", "p95_ms", "p99_ms", "max_ms"} <= row.keys(), (kind, row)
    store = report["store"]
    assert store["problem_count"] == 0, store["problems"]
    assert store["acknowledged_deliveries"] > 0 and store["acknowledged_alerts"] > 0, store
    assert store["audit_entries"] >= store["acknowledged_deliveries"], store
    memory = report["memory"]
    assert {"start_mb", "mid_mb", "end_mb", "max_mb", "growth_mb"} <= memory.keys(), memory
    assert memory["start_mb"] > 0 and memory["max_mb"] >= memory["end_mb"]
    assert report["passed"]
    saved = json.loads((out / "load.json").read_text())
    assert saved["passed"] is True and saved["config"]["weights"] == load.WEIGHTS
    assert "| chat |" in (out / "load.md").read_text()


def test_twenty_clients_for_fifteen_seconds_get_no_errors(demo_env, tmp_path: Path) -> None:
    settings, _, incident_id = demo_env
    data_dir = tmp_path / "data"
    # A copy of the shared demo data: the run writes alerts, incidents and keys to its store.
    shutil.copytree(settings.data_dir, data_dir)
    out = tmp_path / "out"
    report = load.run(out=out, clients=20, seconds=15, warmup=3, timeout=60,
                      data_dir=data_dir, incident_id=incident_id)
    print(load.markdown(report))
    _check(report, out)
    assert report["kinds"]["chat"]["requests"] >= 10
    assert report["store"]["incidents_opened"] >= 1  # the webhooks opened incidents of their own


@pytest.mark.slow
def test_fifty_clients_for_sixty_seconds_get_no_errors(real_embedder, tmp_path: Path) -> None:
    """The issue's run, on a freshly built demo data folder."""
    out = tmp_path / "out"
    report = load.run(out=out, clients=50, seconds=60, warmup=5, timeout=60,
                      embedder=real_embedder)
    print(load.markdown(report))
    _check(report, out)
    assert report["memory"]["per_minute"] and "flat" in report["memory"]


def _series(shape: Callable[[float], float], seconds: int = 240) -> list[tuple[float, float]]:
    rng = random.Random(3)
    return [(float(t), 700 + shape(t) + rng.uniform(-1, 1)) for t in range(-10, seconds + 1)]


@pytest.mark.parametrize(("shape", "flat"), [
    (lambda t: 0.0, True),  # no growth
    (lambda t: 20 * (1 - math.exp(-t / 40)), True),  # caches filling up: levels off
    (lambda t: 3 * t / 60, False),  # a steady leak of 3 MB/min
    (lambda t: 200 * t / 240, False),  # a fast leak
])
def test_memory_flatness_tells_a_plateau_from_a_leak(shape: Callable[[float], float],
                                                      flat: bool) -> None:
    memory = load.memory_summary(_series(shape), 240)
    assert memory["flat"] is flat, memory
    assert [m["from_s"] for m in memory["per_minute"]] == [0, 60, 120, 180]


def test_weights_override_the_default_mix_and_reject_nonsense() -> None:
    assert load.parse_weights("webhook=0,chat=40") == {"webhook": 0, "chat": 40}
    for bad in ("webhook", "mail=3", "chat=-1", ",".join(f"{k}=0" for k in load.KINDS)):
        with pytest.raises(argparse.ArgumentTypeError):
            load.parse_weights(bad)
