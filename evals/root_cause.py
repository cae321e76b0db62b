"""Root-cause category evaluation, leave-one-out: each case's own postmortem is kept out of
retrieval for that case, so the score measures inference from similar incidents, not lookup.

Reported at the full label depth and at depth 2: accuracy at 1 and at 3 and macro-F1 for the
copilot's category ranking, next to two baselines computed in the same run: the majority class
(of the other cases' labels) and a BM25 nearest-neighbour vote (7 postmortems, one vote each).
Gold labels are read only to score.

"copilot" is the product path: ``RootCauses(exclude_docs=(own postmortem,))`` gathers its
evidence and composes its grounded answer, and ``RootCauseResult.categories`` is scored (its
probabilities summed per depth-2 prefix for the depth-2 rows). Leave-one-out is checked twice per
case: the own postmortem must be neither in the evidence nor among the documents the category
ranking rests on (its votes, class counts, prior and calibration).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from copilot.config import Settings
from copilot.context import IncidentSnapshot
from copilot.errors import EvalError

DEPTHS = {"full": None, "depth 2": 2}


@dataclass(frozen=True)
class RootCauseCase:
    id: str
    postmortem_id: str
    incident: dict[str, Any]
    gold: str


def load_cases(path: Path) -> list[RootCauseCase]:
    from evals.cases import read_cases

    return read_cases(path, lambda raw: RootCauseCase(
        str(raw["id"]), str(raw["postmortem_id"]), dict(raw["incident"]),
        str(raw["gold"]["category"])), what="a root-cause case")


def snapshot(case: RootCauseCase) -> IncidentSnapshot:
    """What a responder would know: title, services, impact and the symptoms as written."""
    inc = case.incident

    def flat(value: Any) -> str:
        if isinstance(value, dict):
            return " ".join(f"{k} {flat(v)}" for k, v in value.items())
        if isinstance(value, list):
            return " ".join(flat(v) for v in value)
        return str(value)

    extra = " ".join(flat(inc.get(k, "")) for k in ("impact", "manifestation",
                                                      "recent_operations"))
    return IncidentSnapshot(id=None, title=str(inc.get("title", "")),
                            services=[str(s) for s in inc.get("services") or []],
                            description=f"{inc.get('description', '')} {extra}".strip())


def cut(label: str, depth: int | None) -> str:
    return "/".join(label.split("/")[:depth]) if depth else label


def macro_f1(pairs: Sequence[tuple[str, str]]) -> float:
    labels = {g for g, _ in pairs} | {p for _, p in pairs}
    scores = []
    for label in labels:
        tp = sum(1 for g, p in pairs if g == label and p == label)
        fp = sum(1 for g, p in pairs if g != label and p == label)
        fn = sum(1 for g, p in pairs if g == label and p != label)
        if tp + fp + fn:
            scores.append(2 * tp / (2 * tp + fp + fn))
    return sum(scores) / len(scores) if scores else 0.0


@dataclass
class MethodScores:
    at1: int = 0
    at3: int = 0
    pairs: list[tuple[str, str]] = field(default_factory=list)

    def add(self, gold: str, ranked: Sequence[str]) -> None:
        self.at1 += int(bool(ranked) and ranked[0] == gold)
        self.at3 += int(gold in ranked[:3])
        self.pairs.append((gold, ranked[0] if ranked else ""))

    def summary(self, n: int) -> dict[str, float]:
        return {"acc@1": round(self.at1 / n, 3), "acc@3": round(self.at3 / n, 3),
                "macro_f1": round(macro_f1(self.pairs), 3)}


def run_root_cause_eval(
    cases: Iterable[RootCauseCase], retriever: Any, *, k: int = 7,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Per depth and method: acc@1, acc@3, macro-F1; plus each case's predictions."""
    from copilot.tasks.categorize import at_depth
    from copilot.tasks.root_causes import RootCauses
    from retrieval.hybrid import Filters

    cases = list(cases)
    methods = ("copilot", "majority", "lexical vote")
    scores = {d: {m: MethodScores() for m in methods} for d in DEPTHS}
    rows = []
    for n, case in enumerate(cases, 1):
        snap = snapshot(case)
        task = RootCauses(kb_k=k, exclude_docs=(case.postmortem_id,))
        items = task.evidence(snap, retriever)
        if any(i.meta.get("doc_id") == case.postmortem_id for i in items):
            raise EvalError(f"{case.id}: its own postmortem reached the evidence")
        if task.ranking is not None and case.postmortem_id in task.ranking.used:
            raise EvalError(f"{case.id}: its own postmortem reached the category ranking")
        categories = task.grounded(snap, items).categories
        query = f"{snap.title} {snap.description}"
        hits = [h for h in retriever.search(query, k=k + 1, mode="lexical",
                                            filters=Filters(kinds=("postmortem",)))
                if h.doc_id != case.postmortem_id][:k]
        others = [c.gold for c in cases if c.id != case.id]
        row: dict[str, Any] = {"id": case.id, "gold": case.gold}
        if task.ranking is not None:  # tau is infinite (null) when the base rates won
            row["calibration"] = {k: None if v == float("inf") else v
                                  for k, v in vars(task.ranking.params).items()}
        for depth_name, depth in DEPTHS.items():
            gold = cut(case.gold, depth)
            ours = [c for c, _ in at_depth(categories, depth)]
            majority = [c for c, _ in Counter(cut(o, depth) for o in others).most_common(3)]
            votes = Counter(cut(str(h.metadata.get("root_cause_category", "")), depth)
                            for h in hits if h.metadata.get("root_cause_category"))
            first = {}
            for rank, h in enumerate(hits):
                first.setdefault(cut(str(h.metadata.get("root_cause_category", "")), depth), rank)
            lexical = sorted(votes, key=lambda c: (-votes[c], first.get(c, 99)))
            for method, ranked in zip(methods, (ours, majority, lexical), strict=True):
                scores[depth_name][method].add(gold, ranked)
            row[depth_name] = {"copilot": ours[:3], "lexical vote": lexical[:3]}
        rows.append(row)
        if progress:
            progress(n, len(cases))
    return {"cases": len(cases), "k": k,
            "results": {d: {m: s.summary(len(cases)) for m, s in per.items()}
                        for d, per in scores.items()},
            "predictions": rows}


def build_index(settings: Settings, kb: Path, *, embedder: Any = None,
                progress: Callable[[int, int], None] | None = None) -> tuple[Any, Any]:
    from evals.retrieval import eval_settings
    from ingest.pipeline import run_ingest
    from retrieval.retriever import build_retriever

    if not kb.is_dir():
        raise EvalError(f"knowledge base folder not found: {kb}")
    settings = eval_settings(settings, kb)
    retriever = build_retriever(settings, embedder=embedder)
    report = run_ingest([kb], index=retriever.index, settings=settings, kind="postmortem",
                        prune=True, progress=progress)
    return retriever, report


def format_results(result: dict[str, Any]) -> str:
    lines = ["| depth | method | acc@1 | acc@3 | macro-F1 |", "|---|---|---|---|---|"]
    for depth, per in result["results"].items():
        for method, s in per.items():
            lines.append(f"| {depth} | {method} | {s['acc@1']:.3f} | {s['acc@3']:.3f} | "
                         f"{s['macro_f1']:.3f} |")
    return "\n".join(lines)
