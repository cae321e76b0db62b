"""Template mining quality on loghub: grouping accuracy as the loghub papers define it (a line
counts as right only when the set of lines grouped with it equals its gold group)."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

from copilot.errors import EvalError
from ingest.logmine import DrainMiner

SYSTEMS = ("HDFS", "BGL", "OpenSSH", "Apache", "Zookeeper", "Linux")


def grouping_accuracy(predicted: list[int], gold: list[str]) -> float:
    by_pred: dict[int, set[int]] = defaultdict(set)
    by_gold: dict[str, set[int]] = defaultdict(set)
    for i, (p, g) in enumerate(zip(predicted, gold)):
        by_pred[p].add(i)
        by_gold[g].add(i)
    correct = sum(len(lines) for lines in by_pred.values()
                  if by_gold[gold[next(iter(lines))]] == lines)
    return correct / len(gold) if gold else 0.0


def evaluate_system(folder: Path, system: str, **miner_args: float) -> dict[str, float]:
    path = folder / system / f"{system}_2k.log_structured.csv"
    if not path.exists():
        raise EvalError(f"loghub file not found: {path}")
    with path.open(newline="", encoding="utf-8", errors="replace") as f:
        rows = list(csv.DictReader(f))
    miner = DrainMiner(**miner_args)  # type: ignore[arg-type]
    predicted = [miner.add(r["Content"], line_id=n, level=r.get("Level")).id
                 for n, r in enumerate(rows)]
    gold = [r["EventId"] for r in rows]
    return {"lines": len(rows), "templates": len(miner.templates),
            "gold_templates": len(set(gold)),
            "grouping_accuracy": round(grouping_accuracy(predicted, gold), 4)}
