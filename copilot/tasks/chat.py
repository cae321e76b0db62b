"""Chat: a responder's question about the incident, with the conversation so far, answered from
the evidence with citations; a polite "the context does not say" when it does not."""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any

from pydantic import Field

from copilot.context import IncidentSnapshot, incident_items, knowledge_items
from copilot.guardrails.citations import extract
from copilot.tasks.base import Line, OutputInvalid, Task, TaskResult
from copilot.tasks.common import clip
from prompts.budget import ContextItem

REFUSAL = ("I'm sorry, the context does not say. I only know this incident's alerts, changes, "
           "log patterns, timeline and the runbooks and postmortems that match it.")
_REFUSAL_HINTS = ("does not say", "doesn't say", "not enough", "no information", "cannot find",
                  "can't find", "not in the context", "not mentioned")
_STOP = frozenset(["a", "about", "above", "after", "again", "all", "am", "an", "and", "any", "are", "as", "at", "be", "because", "been", "before", "being", "below", "between", "both", "but", "by", "can", "could", "did", "do", "does", "doing", "down", "during", "each", "few", "for", "from", "further", "had", "has", "have", "having", "he", "her", "here", "hers", "him", "his", "how", "i", "if", "in", "into", "is", "it", "its", "itself", "just", "me", "more", "most", "my", "no", "nor", "not", "now", "of", "off", "on", "once", "only", "or", "other", "our", "out", "over", "own", "same", "she", "should", "so", "some", "such", "than", "that", "the", "their", "them", "then", "there", "these", "they", "this", "those", "through", "to", "too", "under", "until", "up", "very", "was", "we", "were", "what", "when", "where", "which", "while", "who", "whom", "why", "will", "with", "would", "you", "your", "yours", "tell", "know", "please", "give", "show", "list", "us", "happened", "happening", "going", "get", "got", "think", "right", "now", "currently", "incident"])
# Words that say which kind of evidence a question wants.
_INTENT = {
    "change": ("deploy", "deployed", "release", "rollout", "change", "changed", "config",
               "flag", "version", "push"),
    "log_pattern": ("log", "logs", "error", "errors", "exception", "message", "warn"),
    "runbook": ("runbook", "fix", "mitigate", "mitigation", "steps", "should", "do", "check"),
    "postmortem": ("before", "similar", "previous", "past", "last", "history", "postmortem"),
    "alert": ("alert", "alerts", "firing", "paged", "page", "threshold"),
    "incident": ("status", "commander", "severity", "owner", "lead", "roles", "started",
                 "impact", "who"),
}


def terms(text: str) -> list[str]:
    """Lower-case content words, lightly stemmed (plural s, -ing, -ed)."""
    out = []
    for word in re.findall(r"[a-z0-9][a-z0-9_.-]*[a-z0-9]|[a-z0-9]", text.lower()):
        if word in _STOP or len(word) < 2:
            continue
        for suffix in ("ing", "ed", "es", "s"):
            if len(word) > len(suffix) + 3 and word.endswith(suffix):
                word = word[: -len(suffix)]
                break
        out.append(word)
    return out


def sentences(text: str) -> list[str]:
    flat = [line.strip().lstrip("-*#> ").strip() for line in text.splitlines()]
    joined = "\n".join(f for f in flat if f)
    parts = re.split(r"(?<=[.!?])\s+(?=[A-Z0-9`\"'(])|\n", joined)
    return [p.strip() for p in parts if len(p.strip()) > 12]


class ChatResult(TaskResult):
    question: str = ""
    answer: str = ""
    answered: bool = True  # False: the context does not say
    lines: list[Line] = Field(default_factory=list)


class Chat(Task[ChatResult]):
    name = "chat"
    faithful_lines = True
    result_type = ChatResult
    max_tokens = 320

    def __init__(self, question: str, history: list[tuple[str, str]] | None = None) -> None:
        question = question.strip()
        if not question:
            raise OutputInvalid("the question is empty")
        self.question = question
        self.turns = list(history or [])[-6:]

    def history(self) -> list[tuple[str, str]]:
        return self.turns

    def _query(self) -> str:
        """Short follow-ups ("and before that?") borrow the previous question's words."""
        previous = [t for r, t in self.turns if r == "user"]
        if previous and len(terms(self.question)) < 3:
            return f"{previous[-1]} {self.question}"
        return self.question

    def evidence(self, snap: IncidentSnapshot, retriever: Any) -> list[ContextItem]:
        return incident_items(snap) + knowledge_items(
            snap, retriever, kinds=("runbook", "postmortem"), k=3,
            query=f"{self._query()} {' '.join(snap.services)}")

    def prompt_vars(self, snap: IncidentSnapshot, items: list[ContextItem]) -> dict[str, Any]:
        return {"question": self.question}

    def grounded(self, snap: IncidentSnapshot, items: list[ContextItem]) -> ChatResult:
        query = terms(self._query())
        if not query or not items:
            return ChatResult(question=self.question, answer=REFUSAL, answered=False)
        direct = _direct_answer(self._query().lower(), snap, {i.id for i in items})
        if direct:
            return ChatResult(question=self.question, lines=direct)
        docs = [(item, s) for item in items for s in sentences(item.text)]
        df: Counter[str] = Counter()
        for _, s in docs:
            df.update(set(terms(s)))
        n = len(docs) + 1
        idf = {t: math.log(n / (1 + df.get(t, 0))) + 1 for t in set(query)}
        wanted = {kind for kind, words in _INTENT.items()
                  if any(w in self.question.lower().split() for w in words)}
        total = sum(idf.values())
        scored = []
        for order, (item, s) in enumerate(docs):
            present = set(terms(s)) | set(terms(item.title))
            cover = sum(idf[t] for t in set(query) if t in present) / total
            if item.kind in wanted:
                cover *= 1.25
            scored.append((cover, -order, item, s))
        scored.sort(key=lambda x: (-x[0], -x[1]))
        best = scored[0][0] if scored else 0.0
        if best < 0.5:
            return ChatResult(question=self.question, answer=REFUSAL, answered=False)
        lines: list[Line] = []
        seen: set[str] = set()
        for cover, _, item, s in scored:
            if cover < max(0.35, best * 0.6) or len(lines) == 3:
                break
            if s in seen:
                continue
            seen.add(s)
            lines.append(Line(text=_sentence(s), citations=[item.id]))
        return ChatResult(question=self.question, lines=lines)

    def parse(self, text: str, snap: IncidentSnapshot, items: list[ContextItem],
              refs: dict[str, str]) -> ChatResult:
        self._items = items
        text = text.strip()
        if not text:
            raise OutputInvalid("empty answer")
        if any(h in text.lower() for h in _REFUSAL_HINTS) and "[" not in text:
            return ChatResult(question=self.question, answer=text, answered=False,
                              lines=[Line(text=text, supported=True)])
        lines = []
        for s in sentences(text) or [text]:
            clean, cited = extract(s, refs)
            if clean:
                lines.append(Line(text=clean, citations=cited, supported=bool(cited)))
        if not lines:
            raise OutputInvalid("no sentences in the answer")
        return ChatResult(question=self.question, lines=lines)

    def check(self, result: ChatResult, snap: IncidentSnapshot) -> str | None:
        """A model that says "the context does not say" while the rules find a cited answer in
        the same context is wrong, not careful."""
        if not result.answered and self.grounded(snap, getattr(self, "_items", [])).answered:
            return "the model found no answer, but the context has one"
        supported = sum(1 for line in result.lines if line.supported)
        if result.answered and supported * 2 < len(result.lines):
            return (f"only {supported} of the {len(result.lines)} sentences are supported by "
                    f"what they cite")
        return None

    def render(self, result: ChatResult) -> None:
        if result.answered and result.lines:
            result.answer = " ".join(
                line.text + (f" [{', '.join(line.citations)}]" if line.citations else "")
                for line in result.lines)


_ROLE_Q = re.compile(r"\b(who|commander|tech lead|comms lead|owner|owns|on[- ]call|paged|roles?)\b")
_CHANGE_Q = re.compile(r"\b(what changed|changes?|deploy\w*|releases?|rollouts?|config push|flags?)\b")
_LOG_Q = re.compile(r"\b(logs?|errors?|exceptions?)\b")
_STATUS_Q = re.compile(r"\b(status|severity|sev|how long|when did .* start|started)\b")


def _hhmm(value: Any) -> str:
    return value.strftime("%H:%M UTC") if value else "an unknown time"


def _direct_answer(question: str, snap: IncidentSnapshot, ids: set[str]) -> list[Line]:
    """Questions about the incident's own records (roles, changes, logs, status) are answered
    from those records directly rather than from whichever sentence shares the most words."""
    lines: list[Line] = []
    if snap.ref in ids and _ROLE_Q.search(question) and not _CHANGE_Q.search(question):
        roles = [(label, value) for label, value in (
            ("commander", snap.commander), ("tech lead", snap.tech_lead),
            ("comms lead", snap.comms_lead))]
        named = [f"the {label} is {value}" for label, value in roles if value]
        missing = [label for label, value in roles if not value]
        missing_text = (" or ".join([", ".join(missing[:-1]), missing[-1]]) if len(missing) > 1
                        else missing[0]) if missing else ""
        joined = "; ".join(named)
        text = ((joined[:1].upper() + joined[1:] + ". ") if named else "") + (
            f"No {missing_text} is assigned yet." if missing else "")
        if "pag" in question:
            for alert in snap.alerts:
                if alert.source == "pagerduty" and f"alert:{alert.id}" in ids:
                    who = alert.labels.get("assignee") or alert.annotations.get("assignee")
                    lines.append(Line(text=f"PagerDuty paged {who or 'the on-call responder'} "
                                           f"for {alert.name}.", citations=[f"alert:{alert.id}"]))
        lines.append(Line(text=text.strip(), citations=[snap.ref]))
        return lines
    if _CHANGE_Q.search(question):
        first = snap.first_alert_at
        before = sorted((c for c in snap.changes if f"change:{c.id}" in ids
                         and (first is None or c.at <= first)), key=lambda c: c.at, reverse=True)
        for n, c in enumerate(before[:3]):
            lead = f", {round((first - c.at).total_seconds() / 60)} min before the first alert" \
                if first else ""
            affected = " (an affected service)" if c.service in snap.services else ""
            prefix = "The last change before the first alert was" if n == 0 else "Earlier:"
            lines.append(Line(
                text=f"{prefix} a {c.kind.replace('_', ' ')} of {c.service}{affected} "
                     f"{c.version or ''} at {_hhmm(c.at)}{lead}: {clip(c.description or '', 220)}",
                citations=[f"change:{c.id}"]))
        if lines:
            return lines
    if _LOG_Q.search(question) and snap.patterns:
        problems = [p for p in snap.patterns if p.is_problem and f"pattern:{p.id}" in ids][:3]
        for p in problems:
            shape = "new since the incident began" if p.is_new else \
                f"up from {p.baseline_count} before the incident"
            lines.append(Line(text=f"{p.count} {p.level} lines ({shape}): {p.template[:200]}",
                              citations=[f"pattern:{p.id}"]))
        if lines:
            return lines
    if snap.ref in ids and _STATUS_Q.search(question):
        lines.append(Line(text=f"The incident is {snap.severity}, status {snap.status}, on "
                               f"{', '.join(snap.services) or 'unknown services'}; it started at "
                               f"{_hhmm(snap.started_at)}.", citations=[snap.ref]))
    return lines


def _sentence(text: str) -> str:
    text = " ".join(text.split())
    if len(text) > 320:
        text = text[:319].rsplit(" ", 1)[0] + "…"
    return text if text.endswith((".", "!", "?", "…")) else text + "."
