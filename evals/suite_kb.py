"""Suites over a knowledge base of real documents: runbook recommendation (real alert rules →
the runbook their own ``runbook_url`` named) and root-cause category (real cloud postmortems,
leave-one-out)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from copilot.config import Settings
from copilot.errors import EvalError
from evals.harness import SHARED, CaseResult, Suite, register

RUNBOOK_VARIANTS = ("with_name", "without_name")


def kb_settings(settings: Settings, kbs: Sequence[Path], kind: str) -> Settings:
    """A data folder per set of knowledge-base folders: evals never touch the user's index,
    and a rerun reuses the embeddings (ingest is incremental)."""
    key = hashlib.sha256("|".join([kind, *sorted(str(k.resolve()) for k in kbs)]).encode())
    return settings.model_copy(update={
        "data_dir": settings.data_dir / "evals" / f"{kind}-{key.hexdigest()[:10]}"})


def build_kb(settings: Settings, kbs: Sequence[Path], kind: str, progress: Callable[[str], None],
             embedder: Any = None) -> Any:
    from ingest.pipeline import run_ingest
    from retrieval.retriever import build_retriever

    settings = kb_settings(settings, kbs, kind)
    retriever = build_retriever(settings, embedder=embedder)
    progress(f"indexing {', '.join(map(str, kbs))}")
    # a runbook or postmortem suite's folder holds that kind only; a mixed knowledge base (the
    # incident suites') keeps each document's own kind, as `copilot ingest` does, so that the
    # tasks find its runbooks and postmortems
    report = run_ingest(list(kbs), index=retriever.index, settings=settings,
                        kind=kind if kind in ("runbook", "postmortem") else None, prune=True)
    if not report.documents:
        raise EvalError(f"no {kind} documents found in {', '.join(map(str, kbs))}")
    return retriever, report


def copilot_for(settings: Settings, backend: str, retriever: Any, store: Any = None) -> Any:
    from copilot.llm.factory import build_llm
    from copilot.runner import Copilot

    return Copilot(settings, llm=build_llm(settings, backend=backend), retriever=retriever,
                   store=store)


def without_name(alert: dict[str, Any]) -> dict[str, Any]:
    """The alert as the without-name variant sees it: annotations only, with the alert's
    name scrubbed from their text (no labels, no expression)."""
    name = str((alert.get("labels") or {}).get("alertname") or "")
    notes = {}
    for key, value in (alert.get("annotations") or {}).items():
        text = str(value)
        if name:
            text = re.sub(re.escape(name), " ", text, flags=re.IGNORECASE)
        notes[key] = text
    return {"labels": {}, "annotations": notes, "expr": "", "status": "firing"}


@dataclass
class RunbookContext:
    copilot: Any
    paths: dict[str, str]
    notes: list[str] = field(default_factory=list)


@register
class RunbookSuite(Suite):
    name = "runbooks"
    description = ("Real alert rules → the runbook their runbook_url named, through the "
                   "copilot's runbook task; with and without the alert name.")
    default_cases = SHARED / "cases" / "runbook_recommendation.jsonl"
    default_kb = (SHARED / "kb" / "runbooks",)
    fast_sample = 60

    def load(self, path: Path) -> list[Any]:
        from evals.retrieval import load_cases

        return load_cases(path)

    def setup(self, settings: Settings, kb: Sequence[Path], backend: str,
              progress: Callable[[str], None]) -> RunbookContext:
        retriever, report = build_kb(settings, kb, "runbook", progress)
        docs = retriever.index.catalog.documents(with_chunks=False)
        copilot = copilot_for(settings, backend, retriever)
        notes = [f"{report.documents} runbooks indexed, {len(report.errors)} files skipped"]
        if copilot.llm is not None and not copilot.llm.ranks:
            notes.append(f"{copilot.llm.name} is not asked to rank (COPILOT_LLM_RANKS=true "
                         "asks it): these figures are the rules' ranking, as on grounded")
        return RunbookContext(copilot, {d: r.source for d, r in docs.items()}, notes=notes)

    def run_case(self, ctx: RunbookContext, case: Any) -> CaseResult:
        from copilot.tasks.runbooks import recommend_for_alert
        from evals.retrieval import gold_rank, source_label

        ranks: dict[str, int | None] = {}
        got: dict[str, list[str]] = {}
        degraded = []
        for variant in RUNBOOK_VARIANTS:
            alert = case.alert if variant == "with_name" else without_name(case.alert)
            result = recommend_for_alert(ctx.copilot, alert, k=5)
            docs = [r.doc_id for r in result.recommendations]
            ranks[variant] = gold_rank([ctx.paths.get(d, d) for d in docs], case.gold)
            got[variant] = docs[:3]
            if result.degraded:
                degraded.append(f"{variant}: {result.reason}")
        scores: dict[str, float] = {}
        for variant, rank in ranks.items():
            for k in (1, 3, 5):
                scores[f"{variant}.hit@{k}"] = float(rank is not None and rank <= k)
            scores[f"{variant}.rr"] = 1.0 / rank if rank else 0.0
        shown = {v: (f"rank {r}" if r else "not in the top 5") for v, r in ranks.items()}
        passed = ranks["with_name"] is not None and ranks["with_name"] <= 3
        reason = (f"gold {case.gold}: {shown['with_name']} with the alert name, "
                  f"{shown['without_name']} without")
        if not passed:
            reason += f"; top 3 with the name: {', '.join(got['with_name']) or 'none'}"
        return CaseResult(case.id, passed, reason, scores, gold=source_label(case.source),
                          details={"ranks": ranks, "top3": got, "degraded": degraded})

    def aggregate(self, results: list[CaseResult], ctx: Any) -> dict[str, float]:
        n = max(len(results), 1)
        out: dict[str, float] = {"cases": float(len(results))}
        for variant in RUNBOOK_VARIANTS:
            for k in (1, 3, 5):
                out[f"{variant}.hit@{k}"] = round(
                    sum(r.scores[f"{variant}.hit@{k}"] for r in results) / n, 3)
            out[f"{variant}.mrr"] = round(sum(r.scores[f"{variant}.rr"] for r in results) / n, 3)
        out["degraded_rate"] = round(sum(bool(r.details["degraded"]) for r in results) / n, 3)
        return out


@dataclass
class RootCauseContext:
    rows: dict[str, dict[str, Any]]
    results: dict[str, Any]
    notes: list[str] = field(default_factory=list)


@register
class RootCauseSuite(Suite):
    name = "root_cause"
    description = ("Real cloud incidents (symptoms only) → the root-cause category of their "
                   "postmortem, leave-one-out, next to majority and lexical-vote baselines.")
    default_cases = SHARED / "cases" / "root_cause.jsonl"
    default_kb = (SHARED / "kb" / "postmortems" / "cloud",)
    fast_sample = 60

    def load(self, path: Path) -> list[Any]:
        from evals.root_cause import load_cases

        return load_cases(path)

    def setup(self, settings: Settings, kb: Sequence[Path], backend: str,
              progress: Callable[[str], None]) -> RootCauseContext:
        """The whole leave-one-out run (evals/root_cause.py): each case's own postmortem is
        kept out of its evidence, its category ranking and the baselines' neighbours."""
        from evals.root_cause import run_root_cause_eval

        retriever, report = build_kb(settings, kb, "postmortem", progress)
        result = run_root_cause_eval(self.cases, retriever, k=7)
        notes = [f"{report.documents} postmortems indexed; leave-one-out"]
        if backend != "grounded":
            notes.append("the category ranking does not use the model: the backend changes "
                         "only the hypotheses' wording, so these figures equal grounded's")
        return RootCauseContext({r["id"]: r for r in result["predictions"]},
                                result["results"], notes)

    def run_case(self, ctx: RootCauseContext, case: Any) -> CaseResult:
        from evals.root_cause import cut

        row = ctx.rows[case.id]
        scores: dict[str, float] = {}
        for depth in ("full", "depth 2"):
            gold = cut(case.gold, None if depth == "full" else 2)
            for method in ("copilot", "lexical vote"):
                ranked = row[depth][method]
                key = f"{method.replace(' ', '_')}.{depth.replace(' ', '')}"
                scores[f"{key}.hit@1"] = float(bool(ranked) and ranked[0] == gold)
                scores[f"{key}.hit@3"] = float(gold in ranked[:3])
        top = row["full"]["copilot"][:1]
        passed = bool(scores["copilot.full.hit@1"])
        reason = (f"gold {case.gold}; copilot's top 3: {', '.join(row['full']['copilot'])}"
                  if not passed else f"top category {top[0]} is right")
        return CaseResult(case.id, passed, reason, scores, gold=cut(case.gold, 2),
                          predicted=(row["depth 2"]["copilot"] or [""])[0],
                          details={"calibration": row.get("calibration")})

    def aggregate(self, results: list[CaseResult], ctx: RootCauseContext) -> dict[str, float]:
        out: dict[str, float] = {"cases": float(len(results))}
        for depth, per in ctx.results.items():
            for method, s in per.items():
                for metric, value in s.items():
                    out[f"{method.replace(' ', '_')}.{depth.replace(' ', '')}.{metric}"] = value
        return out
