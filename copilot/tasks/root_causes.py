"""Root causes: ranked, cited hypotheses from the changes shortly before the first alert, similar
past postmortems and the new or spiking error logs; it abstains when the evidence is thin.

The grounded rules never invent: a change becomes a suspect only when it is on an affected (or
mentioned) service within ``CHANGE_WINDOW`` before the first alert, and a postmortem becomes an
analogue only when it shares distinctive terms with what the incident shows.

``RootCauseResult.categories`` ranks the likely root-cause categories with the knowledge base's
own labelled postmortems (``copilot.tasks.categorize``: a calibrated kernel nearest-neighbour
vote, symptoms against symptoms); the retrieved postmortems' ``category_vote`` stands in only
when the knowledge base has no labelled postmortems, and still picks the analogues.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from copilot.context import (
    ChangeFact,
    IncidentSnapshot,
    incident_items,
    knowledge_items,
)
from copilot.tasks.base import OutputInvalid, Task, TaskResult, by_kind, first_sentences
from copilot.tasks.categorize import Ranking, rank_categories
from copilot.tasks.common import clip, section_items
from copilot.tasks.similar import category_vote, with_similarity
from copilot.tasks.terms import and_list, distinctive, key_terms, shown
from prompts.budget import ContextItem

CHANGE_WINDOW = dt.timedelta(hours=2)  # a change this soon before the first alert is a suspect
MAX_HYPOTHESES = 5
KEEP_AT_LEAST = 0.25  # weaker hypotheses are not shown
ABSTAIN_BELOW = 0.4  # the best hypothesis must reach this, or the task abstains
MAX_ANALOGUES = 3
# Cosine similarity (all-MiniLM-L6-v2) of the incident to a postmortem's best passage. On the
# demo corpus unrelated texts score below 0.3, the same domain 0.5-0.6, the same failure 0.7+.
RELATED = 0.5  # below this a postmortem is no analogue
STRONG = 0.6  # a strong match: enough on its own to suggest a cause
ANALOGY_ALONE = 0.65  # the most an analogue with no live alert or log behind it gets
STRONG_MATCH = 3  # without similarities: distinctive terms a postmortem must share
SPIKE_RATIO = 3.0  # a pattern at this multiple of its baseline counts as spiking
KIND_CATEGORY = {"deploy": "deploy-regression", "config": "config-change",
                 "feature_flag": "feature-flag"}
KIND_WORDS = {"deploy": ("deploy", "release", "regression", "rollout"),
              "config": ("config",), "feature_flag": ("flag",)}


Analogue = tuple["Hypothesis", str, float]  # the hypothesis, its postmortem, its similarity


class Evidence(BaseModel):
    id: str
    why: str = ""


class Hypothesis(BaseModel):
    """One suspected cause, the evidence it rests on and a check that would settle it."""

    statement: str
    category: str
    confidence: float = Field(ge=0.0, le=1.0)
    confidence_label: Literal["low", "medium", "high"] = "low"
    evidence: list[Evidence] = Field(default_factory=list)
    check: str = ""
    citations: list[str] = Field(default_factory=list)
    supported: bool = True


class RootCauseResult(TaskResult):
    hypotheses: list[Hypothesis] = Field(default_factory=list)
    abstained: bool = False
    abstain_reason: str | None = None
    # likely root-cause categories with their probabilities, best first (see categorize.py)
    categories: list[tuple[str, float]] = Field(default_factory=list)
    answer: str = ""


# English glue and words every alert or log line uses: they say nothing about the cause.
def label(confidence: float) -> Literal["low", "medium", "high"]:
    return "high" if confidence >= 0.7 else "medium" if confidence >= 0.4 else "low"


class RootCauses(Task[RootCauseResult]):
    name = "root_causes"
    result_type = RootCauseResult
    max_tokens = 448

    def __init__(self, *, kb_k: int = 5, exclude_docs: Sequence[str] = ()) -> None:
        self.postmortems = kb_k
        self.exclude_docs = tuple(exclude_docs)
        self.ranking: Ranking | None = None  # set by ``evidence``

    def evidence(self, snap: IncidentSnapshot, retriever: Any) -> list[ContextItem]:
        """Alerts, changes and problem log patterns (no timeline: it repeats them), similar
        postmortems, and the root-cause and resolution passages of the best of them."""
        own = [i for i in incident_items(snap) if i.kind in ("incident", "alert", "change")
               or (i.kind == "log_pattern" and _problem(i))]
        items = own + knowledge_items(snap, retriever, kinds=("postmortem",),
                                      k=self.postmortems, exclude_docs=self.exclude_docs,
                                      chunks_per_doc=2)
        for section in ("Root cause", "Resolution"):
            items += section_items(retriever, items, kind="postmortem", section=section, docs=3)
        self.ranking = rank_categories(snap, retriever, exclude=self.exclude_docs)
        return with_similarity(items, snap, retriever)

    def categories(self, items: list[ContextItem]) -> list[tuple[str, float]]:
        """The calibrated ranking over the labelled postmortems, else the retrieved ones' vote."""
        return self.ranking.categories if self.ranking is not None else category_vote(items)

    def grounded(self, snap: IncidentSnapshot, items: list[ContextItem]) -> RootCauseResult:
        return compose(snap, items, categories=self.categories(items))

    def parse(self, text: str, snap: IncidentSnapshot, items: list[ContextItem],
              refs: dict[str, str]) -> RootCauseResult:
        raw = _json_array(text)
        try:
            found = _MODEL_OUTPUT.validate_python(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise OutputInvalid(f"hypotheses failed validation at {where}: {first['msg']}") \
                from exc
        if not found:
            raise OutputInvalid("the model listed no hypotheses")
        if any(h.statement.lower().startswith(_EXAMPLE) for h in found):
            raise OutputInvalid("the model copied the prompt's example")
        by_id = {i.id: i for i in items}
        hypotheses = []
        for h in found[:MAX_HYPOTHESES]:
            cited = list(dict.fromkeys(refs.get(r, r) for r in (_ref(e) for e in h.evidence) if r))
            hypotheses.append(Hypothesis(
                statement=h.statement.strip(), category=h.category.strip().lower(),
                confidence=h.confidence, confidence_label=label(h.confidence),
                evidence=[Evidence(id=c, why=_describe(by_id[c]) if c in by_id else "")
                          for c in cited],
                check=h.check.strip(), citations=cited, supported=bool(cited)))
        hypotheses.sort(key=lambda h: -h.confidence)
        return RootCauseResult(hypotheses=hypotheses, categories=self.categories(items))

    def render(self, result: RootCauseResult) -> None:
        """Evidence follows the validated citations; the answer text is rebuilt from them."""
        for h in result.hypotheses:
            h.evidence = [e for e in h.evidence if e.id in h.citations]
        if result.abstained:
            result.answer = f"No root-cause hypothesis: {result.abstain_reason}"
            return
        parts = []
        for n, h in enumerate(result.hypotheses, 1):
            refs = f" [{', '.join(h.citations)}]" if h.citations else " (unsupported)"
            parts.append(f"{n}. ({h.confidence_label}, {h.confidence:.2f}, {h.category}) "
                         f"{h.statement}{refs}" + (f"\n   Check: {h.check}" if h.check else ""))
        result.answer = "\n".join(parts)


# -- the grounded rules ------------------------------------------------------------------------


class _Signal:
    """What the incident shows, as terms: alerts, problem log patterns, title, description."""

    def __init__(self, snap: IncidentSnapshot, items: list[ContextItem]) -> None:
        ids = {i.id for i in items}
        self.alerts = [a for a in snap.alerts if f"alert:{a.id}" in ids]
        self.patterns = [p for p in snap.patterns if p.is_problem and f"pattern:{p.id}" in ids
                         and (p.is_new or p.count >= SPIKE_RATIO * max(p.baseline_count, 1))]
        self.alert_terms = {f"alert:{a.id}": key_terms(f"{a.name} {a.summary} {a.description}")
                            for a in self.alerts}
        self.pattern_terms = {f"pattern:{p.id}": key_terms(p.template) for p in self.patterns}
        text = " ".join([snap.title, snap.description, " ".join(snap.services)])
        self.terms: dict[str, str] = key_terms(text)
        for found in (*self.alert_terms.values(), *self.pattern_terms.values()):
            self.terms.update({k: v for k, v in found.items() if k not in self.terms})
        self.observed = set().union(*self.alert_terms.values(), *self.pattern_terms.values()) \
            if self.alerts or self.patterns else set(self.terms)
        self.mentioned = " ".join([f"{a.name} {a.service or ''} {a.summary} {a.description}"
                                   for a in self.alerts] + [p.template for p in self.patterns]
                                  ).lower()

    def supporting(self, terms: set[str], *, limit: int = 3, need: int = 2
                   ) -> list[tuple[str, str]]:
        """(id, why) of the alerts and log patterns that share ``need`` terms with ``terms``."""
        out: list[tuple[int, str, str]] = []
        for cid, found in {**self.alert_terms, **self.pattern_terms}.items():
            shared = terms & set(found)
            if len(shared) >= need:
                what = "alert" if cid.startswith("alert:") else "log pattern"
                out.append((len(shared), cid, f"{what} shares: {shown(shared, found)}"))
        alerts = [x for x in out if x[1].startswith("alert:")]
        patterns = [x for x in out if x[1].startswith("pattern:")]
        pick = sorted(alerts, key=lambda x: -x[0])[:limit] + sorted(patterns,
                                                                     key=lambda x: -x[0])[:limit]
        return [(cid, why) for _, cid, why in pick]


def compose(snap: IncidentSnapshot, items: list[ContextItem], *,
            categories: list[tuple[str, float]] | None = None) -> RootCauseResult:
    """Change suspects and postmortem analogues, merged, ranked, or an abstention.
    ``categories`` is the ranking to report (default: the retrieved postmortems' vote)."""
    signal = _Signal(snap, items)
    votes = category_vote(items)
    categories = votes if categories is None else categories
    analogues = _analogues(signal, items, votes)
    changes = _change_hypotheses(snap, signal, items, votes, analogues)
    merged = list(changes)
    change_categories = {h.category for h in merged}
    for hypothesis, _, _ in analogues:
        if hypothesis.category in change_categories:
            continue  # the change hypothesis already carries this analogue as evidence
        merged.append(hypothesis)
    merged = [h for h in sorted(merged, key=lambda h: -h.confidence) if h.citations]
    kept = [h for h in merged if h.confidence >= KEEP_AT_LEAST][:MAX_HYPOTHESES]
    closest = max((sim for _, _, sim in analogues), default=0.0)
    live = bool(signal.alerts or signal.patterns or changes)
    if not kept or kept[0].confidence < ABSTAIN_BELOW or (not live and closest < STRONG):
        return RootCauseResult(abstained=True, categories=categories,
                               abstain_reason=_abstain_reason(snap, signal, items, merged))
    return RootCauseResult(hypotheses=kept, categories=categories)


def _change_hypotheses(snap: IncidentSnapshot, signal: _Signal, items: list[ContextItem],
                       votes: list[tuple[str, float]],
                       analogues: list[Analogue]) -> list[Hypothesis]:
    ids = {i.id for i in items}
    first = snap.first_alert_at
    rare = distinctive(_doc_terms(items))
    out = []
    for change in snap.changes:
        cid = f"change:{change.id}"
        if cid not in ids:
            continue
        lead = None if first is None else (first - change.at).total_seconds() / 60
        if lead is not None and not 0 <= lead <= CHANGE_WINDOW.total_seconds() / 60:
            continue
        affected = change.service in snap.services
        if not affected and change.service.lower() not in signal.mentioned:
            continue
        own = key_terms(" ".join([change.description or "", change.version or "",
                                  change.service]))
        shared = set(own) & signal.observed
        proximity = 0.3 if lead is None else 1 - lead / (CHANGE_WINDOW.total_seconds() / 60)
        confidence = min(0.95, 0.2 + 0.3 * proximity + 0.25 * affected
                         + 0.25 * min(1.0, len(shared) / 4))
        category = _change_category(change, votes)
        evidence = [(cid, f"{change.kind.replace('_', ' ')} "
                          f"{'on an affected service' if affected else 'on a mentioned service'}"
                          + (f", {lead:.0f} min before the first alert" if lead is not None
                             else ""))]
        evidence += signal.supporting(set(own), need=1 if affected else 2)
        for analogue, doc, _ in analogues:
            if analogue.category == category or len(shared & rare & _terms_of(items, doc)) >= 2:
                evidence.append((analogue.evidence[0].id,
                                 f"similar past incident ({analogue.category})"))
        out.append(_hypothesis(
            statement=_change_statement(change, snap, lead, shared, own),
            category=category, confidence=confidence, evidence=evidence,
            check=_change_check(change, signal)))
    return out


def _change_category(change: ChangeFact, votes: list[tuple[str, float]]) -> str:
    """The postmortems' own word for this kind of change when they have one."""
    words = KIND_WORDS.get(change.kind, (change.kind,))
    known = next((c for c, _ in votes if any(w in c.lower() for w in words)), None)
    return known or KIND_CATEGORY.get(change.kind, change.kind.replace("_", "-"))


def _change_statement(change: ChangeFact, snap: IncidentSnapshot, lead: float | None,
                      shared: set[str], own: dict[str, str]) -> str:
    kind = change.kind.replace("_", " ")
    version = f" {change.version}" if change.version else ""
    when = f" at {change.at:%H:%M} UTC" + (f", {lead:.0f} min before the first alert"
                                          if lead is not None else "")
    alerts = list(dict.fromkeys(a.name for a in snap.alerts))[:3]
    effect = f"the {and_list(alerts)} alert{'s' if len(alerts) > 1 else ''}" if alerts \
        else "the failure"
    why = (f": the change touches {shown(shared, own)}, which the alerts and error logs also "
           f"name" if shared else ", though nothing in its description matches the alerts or logs")
    verb = "likely caused" if shared else "may have caused"
    return f"The {kind} of {change.service}{version}{when}, {verb} {effect}{why}."


def _change_check(change: ChangeFact, signal: _Signal) -> str:
    watch = ", ".join(dict.fromkeys(a.name for a in signal.alerts)) or "the error rate"
    top = clip(signal.patterns[0].template.replace("<*>", "…"), 80) if signal.patterns else ""
    version = change.version or "the change"
    if change.kind == "deploy":
        logs = f" and the rate of “{top}”" if top else ""
        return (f"Compare the error rate{logs} before and after the rollout of {version}; roll "
                f"back (or halt the canary) and watch whether {watch} clear.")
    if change.kind == "config":
        return f"Diff {version} against the previous revision; revert it and watch {watch}."
    if change.kind == "feature_flag":
        return f"Turn {version} back to its previous value and watch {watch}."
    return f"Undo the {change.kind} ({version}) and watch {watch}."


def _analogues(signal: _Signal, items: list[ContextItem], votes: list[tuple[str, float]]
               ) -> list[Analogue]:
    """One hypothesis per voted category, from its best-ranked postmortem, when that postmortem
    is close enough to the incident."""
    docs: dict[str, list[ContextItem]] = {}
    for item in sorted(by_kind(items, "postmortem"), key=lambda i: i.rank):
        docs.setdefault(str(item.meta.get("doc_id")), []).append(item)
    doc_terms = _doc_terms(items)
    rare = distinctive(doc_terms)
    share = dict(votes)
    out = []
    for category, _ in votes:
        doc = next((d for d, group in docs.items()
                    if group[0].meta.get("root_cause_category") == category), None)
        if doc is None:
            continue
        shared = signal.observed & doc_terms[doc] & rare
        similarity = similarity_of(docs[doc], shared)
        if similarity < RELATED:
            continue
        group = docs[doc]
        best = group[0]
        cause = next((i for i in group if _section(i).startswith("root cause")), None)
        fix = next((i for i in group if _section(i).startswith("resolution")), None)
        sentence = first_sentences(_body(cause), 2, limit=260) if cause else _cause_sentence(group)
        statement = f"As in “{best.title}” ({category}): {sentence}"
        live = signal.supporting(shared, need=2)
        confidence = (0.1 + 0.5 * min(1.0, (similarity - 0.4) / 0.4)
                      + 0.2 * share.get(category, 0.0) + 0.15 * bool(live))
        if not live:  # an analogy alone, with no live alert or log sharing its terms
            confidence = min(confidence, ANALOGY_ALONE)
        terms = f", shares {shown(shared, signal.terms)}" if shared else ""
        evidence = [(best.id, f"similar postmortem (similarity {similarity:.2f}{terms})")]
        if cause is not None:
            evidence.append((cause.id, "its root cause"))
        if fix is not None:
            evidence.append((fix.id, "how it was resolved"))
        evidence += live
        check = (f"Check whether the same fix applies here: {first_sentences(_body(fix), 1)}"
                 if fix is not None else
                 f"Check whether the failure mode of “{best.title}” is present here.")
        out.append((_hypothesis(statement=statement, category=category, confidence=confidence,
                                evidence=evidence, check=check), doc, similarity))
    return sorted(out, key=lambda x: -x[0].confidence)[:MAX_ANALOGUES]


_CAUSE = (re.compile(r"\b(caused by|due to|triggered by|root cause (?:was|is|of)|root cause\s*[-:–])",
                     re.IGNORECASE),
          re.compile(r"\b(root cause|the cause)\b", re.IGNORECASE))


def _cause_sentence(group: list[ContextItem]) -> str:
    """Without a "Root cause" section: the first sentence of the postmortem that states a
    cause, else one that mentions it, else its opening sentences."""
    sentences = [s for item in group
                 for s in re.split(r"(?<=[.!?])\s+", " ".join(_body(item).split()))]
    for pattern in _CAUSE:
        found = next((s for s in sentences if pattern.search(s) and len(s) > 30), None)
        if found:
            return clip(found, 260)
    return first_sentences(_body(group[0]), 2, limit=260)


def similarity_of(group: list[ContextItem], shared: set[str]) -> float:
    """The stored similarity, or without one (no embedder) an estimate from shared terms."""
    stored = group[0].meta.get("similarity")
    if stored is not None:
        return float(stored)
    return min(0.8, 0.45 + 0.03 * len(shared)) if len(shared) >= STRONG_MATCH else 0.0


def _hypothesis(*, statement: str, category: str, confidence: float,
                evidence: list[tuple[str, str]], check: str) -> Hypothesis:
    unique = list(dict.fromkeys(cid for cid, _ in evidence))
    why = {cid: w for cid, w in reversed(evidence)}
    return Hypothesis(statement=statement, category=category,
                      confidence=round(confidence, 3), confidence_label=label(confidence),
                      evidence=[Evidence(id=c, why=why[c]) for c in unique], check=check,
                      citations=unique)


def _abstain_reason(snap: IncidentSnapshot, signal: _Signal, items: list[ContextItem],
                    weak: list[Hypothesis]) -> str:
    window = f"{CHANGE_WINDOW.total_seconds() / 3600:g} h"
    missing = [text for absent, text in (
        (not signal.alerts, "no firing alerts"),
        (not signal.patterns, "no new or spiking error/warning log patterns"),
        (not snap.changes, "no recorded changes"),
        (bool(snap.changes), f"no change on an affected service within {window} before it"),
    ) if absent]
    pms = sorted(by_kind(items, "postmortem"), key=lambda i: -float(
        i.meta.get("similarity") or 0.0))
    if not pms:
        missing.append("no similar postmortems")
    else:
        sim = pms[0].meta.get("similarity")
        how = f" (similarity {float(sim):.2f})" if sim is not None else ""
        missing.append(f"the closest postmortem, “{pms[0].title}”, is only a weak match{how}")
    best = f"; the best hypothesis reached only {weak[0].confidence:.2f}" if weak else ""
    return "evidence too thin: " + "; ".join(missing) + best + "."


def _terms_of(items: list[ContextItem], doc: str) -> set[str]:
    found: set[str] = set()
    for item in items:
        if str(item.meta.get("doc_id")) == doc:
            found.update(key_terms(item.text))
    return found


def _doc_terms(items: list[ContextItem]) -> dict[str, set[str]]:
    docs = {str(i.meta.get("doc_id")) for i in by_kind(items, "postmortem")}
    return {d: _terms_of(items, d) for d in docs}


def _problem(item: ContextItem) -> bool:
    return str(item.meta.get("level") or "").upper() in {"ERROR", "WARN", "WARNING", "FATAL",
                                                           "CRITICAL"}


def _section(item: ContextItem) -> str:
    return str(item.meta.get("section", "")).lower()


def _body(item: ContextItem | None) -> str:
    """A knowledge passage without its "title — section" first line."""
    return "" if item is None else item.text.split("\n", 1)[-1]


def _describe(item: ContextItem) -> str:
    return f"{item.kind.replace('_', ' ')}: {clip(item.title or item.text, 80)}"


# -- reading a model's answer ------------------------------------------------------------------


class _ModelHypothesis(BaseModel):
    model_config = ConfigDict(extra="ignore")

    statement: str = Field(min_length=8)
    category: str = Field(min_length=2)
    confidence: float = Field(ge=0.0, le=1.0)
    evidence: list[str] = Field(min_length=1)
    check: str = ""

    @field_validator("evidence", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return re.findall(r"[^,;\s\[\]]+", value) if isinstance(value, str) else value

    @field_validator("confidence", mode="before")
    @classmethod
    def _words(cls, value: Any) -> Any:
        return _WORDS.get(value.strip().lower(), value) if isinstance(value, str) else value


_EXAMPLE = "what probably caused it"  # the statement in the prompt's example
_WORDS = {"low": 0.3, "medium": 0.55, "high": 0.8}
_MODEL_OUTPUT = TypeAdapter(list[_ModelHypothesis])
_REF = re.compile(r"S\d+|[a-z_]+:\S+")


def _json_array(text: str) -> Any:
    """The JSON in the answer (models wrap it in fences or prose); one object is a list of one."""
    body = re.sub(r"^```[a-z]*\s*$", "", text.strip(), flags=re.MULTILINE).strip()
    starts = [i for i in (body.find("["), body.find("{")) if i >= 0]
    if not starts:
        raise OutputInvalid("no JSON array of hypotheses in the answer (validation failed)")
    start = min(starts)
    end = body.rfind("]" if body[start] == "[" else "}")
    try:
        data = json.loads(body[start:end + 1])
    except json.JSONDecodeError as exc:
        raise OutputInvalid(f"hypotheses are not valid JSON, validation failed: {exc.msg}") \
            from exc
    return [data] if isinstance(data, dict) else data


def _ref(value: str) -> str:
    match = _REF.search(value.strip().strip("[]"))
    return match.group(0).rstrip(".,;]") if match else ""
