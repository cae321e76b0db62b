"""The CI gate: thresholds (a YAML file in the repo) on the metrics of an eval result. A
metric below its ``min`` (or above its ``max``) fails the gate; a metric the result lacks
fails too, so a suite cannot drop out unnoticed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from copilot.errors import EvalError
from evals.report import by_suite


def load_thresholds(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise EvalError(f"cannot read thresholds {path}: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("suites"), dict):
        raise EvalError(f"{path}: expected a mapping with 'suites'")
    return data


def check(result: dict[str, Any], thresholds: dict[str, Any]) -> list[str]:
    """Every broken threshold, as a sentence; empty when the gate passes."""
    backend = thresholds.get("backend", "grounded")
    runs = by_suite(result)
    problems = []
    for suite, limits in thresholds["suites"].items():
        run = runs.get(suite, {}).get(backend)
        if run is None:
            problems.append(f"{suite} [{backend}]: not in the result")
            continue
        for metric, bound in limits.items():
            value = run["metrics"].get(metric)
            if not isinstance(value, int | float):
                problems.append(f"{suite}: metric {metric} missing")
                continue
            if "min" in bound and value < bound["min"]:
                problems.append(f"{suite}: {metric} = {value:.3f}, below the minimum "
                                f"{bound['min']}")
            if "max" in bound and value > bound["max"]:
                problems.append(f"{suite}: {metric} = {value:.3f}, above the maximum "
                                f"{bound['max']}")
    return problems
