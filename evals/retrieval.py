"""Runbook recommendation: does retrieval put an alert's own runbook first?

Cases are real alert rules with the runbook their ``runbook_url`` pointed to (the link itself is
removed from the input). Two query variants: the whole alert (name, labels, annotations,
expression), and the annotations alone with the alert name scrubbed from their text. Each is
scored for the lexical, dense and hybrid rankers, overall and per source.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from copilot.config import Settings
from copilot.errors import EvalError
from ingest.pipeline import IngestReport, run_ingest
from retrieval.alert_query import build_alert_query
from retrieval.embedders import Embedder
from retrieval.hybrid import Filters, HybridRetriever
from retrieval.retriever import build_retriever

MODES = ("lexical", "dense", "hybrid")
VARIANTS = {
    "with_name": dict(include_name=True, include_labels=True, include_expr=True),
    "without_name": dict(include_name=False, include_labels=False, include_expr=False),
}
DEPTH = 10


@dataclass
class Case:
    id: str
    alert: dict[str, Any]
    gold: str
    source: str


@dataclass
class Scores:
    n: int = 0
    hit1: int = 0
    hit3: int = 0
    hit5: int = 0
    rr: float = 0.0

    def add(self, rank: int | None) -> None:
        self.n += 1
        if rank is not None:
            self.hit1 += rank <= 1
            self.hit3 += rank <= 3
            self.hit5 += rank <= 5
            self.rr += 1.0 / rank

    def as_dict(self) -> dict[str, float]:
        n = max(self.n, 1)
        return {"n": self.n, "hit@1": round(self.hit1 / n, 3), "hit@3": round(self.hit3 / n, 3),
                "hit@5": round(self.hit5 / n, 3), "mrr": round(self.rr / n, 3)}


@dataclass
class RetrievalEval:
    results: dict[str, dict[str, dict[str, dict[str, float]]]] = field(default_factory=dict)
    ingest: dict[str, Any] = field(default_factory=dict)
    misses: list[dict[str, Any]] = field(default_factory=list)


def load_cases(path: Path) -> list[Case]:
    from evals.cases import read_cases

    return read_cases(path, lambda raw: Case(raw["id"], raw["alert"], raw["gold"]["runbook"],
                                             raw.get("source", "")), what="a runbook case")


def source_label(source: str) -> str:
    s = source.lower()
    if "kube-prometheus" in s or "prometheus-operator" in s:
        return "kube-prometheus"
    if "openshift" in s:
        return "OpenShift"
    if "gitlab" in s:
        return "GitLab.com"
    return source or "unknown"


def gold_rank(sources: Sequence[str], gold: str) -> int | None:
    """1-based rank of the gold runbook among result sources (matched by path suffix)."""
    suffix = "/" + gold.strip("/")
    for n, src in enumerate(sources, 1):
        if Path(src).as_posix().endswith(suffix):
            return n
    return None


def eval_settings(settings: Settings, kb: Path) -> Settings:
    """A separate data folder per knowledge-base path, so evals never touch the user's KB."""
    key = hashlib.sha256(str(kb.resolve()).encode()).hexdigest()[:10]
    return settings.model_copy(update={"data_dir": settings.data_dir / "evals" / f"kb-{key}"})


def build_eval_index(
    settings: Settings, kb: Path, *, embedder: Embedder | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[HybridRetriever, IngestReport]:
    if not kb.is_dir():
        raise EvalError(f"knowledge base folder not found: {kb}")
    settings = eval_settings(settings, kb)
    retriever = build_retriever(settings, embedder=embedder)
    report = run_ingest([kb], index=retriever.index, settings=settings, kind="runbook",
                        prune=True, progress=progress)
    return retriever, report


def run_retrieval_eval(
    cases: Iterable[Case], retriever: HybridRetriever, *, modes: Sequence[str] = MODES,
    variants: Sequence[str] = tuple(VARIANTS), keep_misses: int = 0,
) -> RetrievalEval:
    out = RetrievalEval()
    cases = list(cases)
    filters = Filters(kinds=("runbook",))
    known = set(retriever.index.fields().by_service)
    for variant in variants:
        per: dict[str, dict[str, Scores]] = {m: {} for m in modes}
        for case in cases:
            query = build_alert_query(case.alert, **VARIANTS[variant])
            services = query.resolve_services(known)
            for mode in modes:
                hits = retriever.search(query.dense, lexical_query=query.lexical, k=DEPTH,
                                        filters=filters, mode=mode,  # type: ignore[arg-type]
                                        prefer_services=services, alerts=query.alerts)
                rank = gold_rank([h.source for h in hits], case.gold)
                for group in ("overall", source_label(case.source)):
                    per[mode].setdefault(group, Scores()).add(rank)
                if mode == "hybrid" and (rank is None or rank > 1) and len(out.misses) < keep_misses:
                    out.misses.append({"variant": variant, "case": case.id, "gold": case.gold,
                                       "rank": rank, "got": [h.source for h in hits[:3]]})
        out.results[variant] = {m: {g: s.as_dict() for g, s in groups.items()}
                                for m, groups in per.items()}
    return out


def format_table(result: RetrievalEval) -> str:
    lines = []
    for variant, modes in result.results.items():
        lines.append(f"\n{variant.replace('_', ' ')}")
        lines.append(f"{'group':<16} {'n':>4} | " + " | ".join(
            f"{m:^27}" for m in modes))
        lines.append(f"{'':<16} {'':>4} | " + " | ".join(
            f"{'h@1':>6}{'h@3':>7}{'h@5':>7}{'MRR':>7}" for _ in modes))
        groups = list(next(iter(modes.values())).keys())
        groups = ["overall"] + sorted(g for g in groups if g != "overall")
        for g in groups:
            n = next(iter(modes.values()))[g]["n"]
            cells = []
            for m in modes:
                s = modes[m][g]
                cells.append(f"{s['hit@1']:>6.3f}{s['hit@3']:>7.3f}{s['hit@5']:>7.3f}{s['mrr']:>7.3f}")
            lines.append(f"{g:<16} {n:>4} | " + " | ".join(cells))
    return "\n".join(lines)
