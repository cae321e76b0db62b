"""Chat: a responder's question about the incident, with the conversation so far, answered from
the evidence with citations; a polite "the context does not say" when it does not."""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field

from copilot.context import IncidentSnapshot, incident_items, knowledge_items
from copilot.guardrails.citations import extract
from copilot.tasks.answer import (
    SECTION_CUES,
    STOP,
    STORY_DOCS,
    about_future,
    expand,
    extract_answer,
    past_story,
    story_section,
)
from copilot.tasks.base import Line, OutputInvalid, Task, TaskResult
from copilot.tasks.common import SUSPECT_WINDOW, clip, join_words, section_items
from prompts.budget import ContextItem

REFUSAL = ("I'm sorry, the context does not say. I only know this incident's alerts, changes, "
           "log patterns, timeline and the runbooks and postmortems that match it.")
_REFUSAL_HINTS = ("does not say", "doesn't say", "not enough", "no information", "cannot find",
                  "can't find", "not in the context", "not mentioned")


def terms(text: str) -> list[str]:
    """Lower-case content words, lightly stemmed (plural s, -ing, -ed)."""
    out = []
    for word in re.findall(r"[a-z0-9][a-z0-9_.-]*[a-z0-9]|[a-z0-9]", text.lower()):
        if word in STOP or len(word) < 2:
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


# Which kind of document holds each section a question may ask for.
_SECTION_KINDS = {"Mitigation": "runbook", "Escalation": "runbook", "Root cause": "postmortem",
                  "Resolution": "postmortem", "Action items": "postmortem"}


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
            return expand(f"{previous[-1]} {self.question}")
        return expand(self.question)

    def evidence(self, snap: IncidentSnapshot, retriever: Any) -> list[ContextItem]:
        """The incident's items, then runbook and postmortem passages found by the question
        itself (the affected services still rank their documents first), plus the section a
        question asks for by what it holds ("what should we do" → Mitigation) from the top
        document, since a passage's words need not match the question's."""
        query = self._query()
        items = incident_items(snap) + knowledge_items(
            snap, retriever, kinds=("runbook", "postmortem"), k=3, query=query,
            chunks_per_doc=3)
        for section, cue in SECTION_CUES.items():
            if cue.search(query.lower()):
                items += section_items(retriever, items, kind=_SECTION_KINDS[section],
                                       section=section, docs=1)
        story = story_section(query)
        if story:  # "have we had X before? what happened?": the story of each likely one
            items += section_items(retriever, items, kind="postmortem", section=story,
                                   docs=STORY_DOCS)
        return items

    def prompt_vars(self, snap: IncidentSnapshot, items: list[ContextItem]) -> dict[str, Any]:
        return {"question": self.question}

    def grounded(self, snap: IncidentSnapshot, items: list[ContextItem]) -> ChatResult:
        query = self._query()
        if not items:
            return ChatResult(question=self.question, answer=REFUSAL, answered=False)
        # the records know the future only as a stated plan or estimate (extract_answer)
        future = about_future(self.question)
        direct = None if future else _direct_answer(query.lower(), snap, {i.id for i in items})
        if direct is not None:
            if not direct:  # a question about a record the incident has none of
                return ChatResult(question=self.question, answer=REFUSAL, answered=False)
            return ChatResult(question=self.question, lines=direct)
        if not terms(query):
            return ChatResult(question=self.question, answer=REFUSAL, answered=False)
        story = past_story(query, items)
        if story is not None:
            return ChatResult(question=self.question, lines=[Line(
                text=f"{story.item.title}: {story.text}", citations=[story.item.id])])
        people = snap.people | {e.actor for e in snap.timeline}
        found = extract_answer(query, items, people=people, future=future,
                               services=snap.services)
        if found is None:
            return ChatResult(question=self.question, answer=REFUSAL, answered=False)
        return ChatResult(question=self.question, lines=[
            Line(text=_sentence(p.segment.text), citations=[p.segment.item.id])
            for p in found.pieces])

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


# -- direct answers from the incident's own records ---------------------------------------
# Each fires only when the question is about that record in general ("what changed?", "who is
# the commander?"); a question that also names something specific ("who merged the 1.4.2
# deploy?", "which database error is in the logs?") goes to the extractive answer instead.

_ROLES = (
    ("commander", "commander",
     re.compile(r"\bincident command(er)?\b|\bcommander\b|\bcommanding\b|\bic\b|\bin charge\b|"
                r"\bwho is (leading|running) (this|it|things|(the|this) (incident|outage|response|"
                r"call|bridge|show))\b|\bwho is (leading|running)\W*$")),
    ("tech_lead", "tech lead",
     re.compile(r"\btech(nical)? lead\b|\bwho is (leading|running|driving|handling) (the )?"
                r"(tech|technical|investigation|debugging)\b")),
    # "who is handling comms?", "who's on customer communications?"
    ("comms_lead", "comms lead",
     re.compile(r"\bcomm(s|unications?) lead\b|\bwho (is )?(handling|doing|running|on|leading|"
                r"owning|owns|has|handles|runs|leads|does|covering|writing) (the )?"
                r"(customer |external |status )?"
                r"(comms|communications?|status updates?)\b")),
)
# "next steps per the IC?" asks what the commander said, not who the commander is
_ROLE_AS_SOURCE = re.compile(
    r"\b(per|according to|from|by) (the |our )?(ic|incident commander|commander|tech lead|"
    r"comms lead)\b|\b(ic|commander|tech lead|comms lead)(['’]s| said| says| wants| asked| "
    r"decided| wrote| made| took| gave| told| chose| called| ordered|"
    r" (?!(assigned|named|appointed|listed|designated)\b)\w+ed)\b")
# "who ran comms last time?": a past incident's people, in its postmortem
_PAST_INCIDENT = re.compile(r"\b(postmortems?|previous (incident|outage)s?|past (incident|"
                            r"outage)s?|in the past|earlier (incident|outage)s?|last time|"
                            r"that time|last year|ago)\b")
# ("which DB role does the DSN use?" is a database's role, not a person's)
_ALL_ROLES = re.compile(r"(?<![\w-])(?<!db )(?<!database )(?<!postgres )(?<!sql )(?<!iam )"
                        r"(?<!user )roles?\b(?! (name|arn|binding|grant)s?\b)|"
                        r"\bwho (is|are) (assigned|involved|working on (it|this))\b")
_PAGED = re.compile(r"\b(paged|on[- ]?call)\b|\b(got|received|get|gets|has|had) (the|a) page\b")
_PAGE_WORDS = ("paged page get gets got receive received on call oncall on-call for pd pagerduty "
               "opsgenie this it")
_OVERVIEW = re.compile(r"^\W*(what'?s?|what is|what are)\s+(happening|going on|the situation|"
                       r"the (current )?state of (things|play))\W*$|\b(summari[sz]e|overview|"
                       r"catch me up|tl;?dr|sitrep)\b")
_LOGGED_INOUT = re.compile(r"\blog(ged|s|ging)? (in|out|off|on)\b")
_STARTS_WH = re.compile(r"^\W*(who|why|how)\b")
_ASKS_TIME = re.compile(r"^\W*when\b|\bwhat time\b")

# Words a general question about changes, logs or the incident's state may use besides the
# record's own name; any other content word makes the question specific.
_GENERAL = ("before after first alert alerts alerting error errors fail failure failures "
            "failing start started starting begin began shortly just today recent recently last "
            "hour hours minute minutes new any there around time problem problems outage "
            "symptom symptoms trouble thing things main top biggest most common frequent "
            "see seeing say contain lead leading up so far affected service services "
            "5xx 5xxs 500s 4xx 4xxs timeout timeouts latency slow slowness down downtime "
            "degraded degradation")
_CHANGE_WORDS = ("change changed changes deploy deployed deploys deployment deployments release "
                 "released releases rollout rollouts roll rolled config configuration flag flags "
                 "push pushed shipped")
# "what change set this off / filled up redis, and who made it?" asks for the suspect change:
# words a change question may use besides the change words (they do not make one)
_CAUSE_WORDS = ("set off trigger triggered made make author culprit suspect suspected blame "
                "blamed responsible cause caused break broke fill filled filling kicked behind")
# "which change is behind the redis memory blowup?": with one of these, the other words say the
# symptom, which the suspect change need not name
_BLAME_WORDS = ("trigger triggered culprit suspect suspected blame blamed responsible cause "
                "caused behind")
_LOG_WORDS = ("log logs logged error errors exception exceptions warn warning warnings message "
              "messages line lines")
_STATE_WORDS = "severity sev priority status state how bad severe serious long"
# "what's firing rn?", "which alerts fired?": the alerts themselves
_ALERT_WORDS = ("alert alerts alerting alarm alarms fire fires fired firing going off active "
                "open triggered currently now right rn still")
_ALERT_ASKED = re.compile(r"\b(alert(s|ing)?|alarms?|fir(e|es|ed|ing)|going off)\b")


def _stems(words: str) -> frozenset[str]:
    return frozenset(t for w in words.split() for t in terms(w))


_GENERAL_STEMS = _stems(_GENERAL)
_CHANGE_STEMS = _stems(_CHANGE_WORDS)
_CAUSE_STEMS = _stems(_CAUSE_WORDS)
_BLAME_STEMS = _stems(_BLAME_WORDS)
# (a question that asks which one; "did the SCA flag cause it?" asks about one named change)
_WHICH_CHANGE = re.compile(r"\b(what|which)('s)? (\w+ )?(change|deploy|deployment|release|flag|"
                           r"rollout|config|push|version)s?\b")
_LOG_STEMS = _stems(_LOG_WORDS)
_STATE_STEMS = _stems(_STATE_WORDS)
_ALERT_STEMS = _stems(_ALERT_WORDS)
MAX_ALERT_LINES = 5
_PAGE_STEMS = _stems(_PAGE_WORDS)


def _only(question: str, allowed: frozenset[str], snap: IncidentSnapshot) -> bool:
    """True when every content word of the question is in ``allowed``, general, or a part of
    an affected service's name (the question names nothing more specific)."""
    services = {t for s in snap.services for t in terms(s.replace("-", " ") + " " + s)}
    return all(t in allowed or t in _GENERAL_STEMS or t in services for t in terms(question))


def _overview(question: str, snap: IncidentSnapshot, ids: set[str]) -> list[Line] | None:
    """"What's going on?": the incident's state, then what its first alert says."""
    if snap.ref not in ids or not _OVERVIEW.search(question):
        return None
    lines = [Line(text=f"{snap.title}: {snap.severity}, {snap.status}, on "
                       f"{', '.join(snap.services) or 'unknown services'} since "
                       f"{_hhmm(snap.started_at)}.", citations=[snap.ref])]
    first = min((a for a in snap.alerts if f"alert:{a.id}" in ids),
                key=lambda a: (a.starts_at is None, a.starts_at or snap.now, a.id), default=None)
    if first is not None and first.summary != first.name:
        lines.append(Line(text=_sentence(f"{first.name}: {first.summary}"),
                          citations=[f"alert:{first.id}"]))
    return lines


def _hhmm(value: Any) -> str:
    return value.strftime("%H:%M UTC") if value else "an unknown time"


def _direct_answer(question: str, snap: IncidentSnapshot, ids: set[str]) -> list[Line] | None:
    """Questions about the incident's own records in general (roles, who was paged, what
    changed, what the logs show, severity and status) are answered from those records: None
    when the question is not one of them, no lines when the incident has no such record (the
    answer is then "the context does not say", not the nearest sentence with the same word)."""
    for rule in (_roles, _paged, _changes, _logs, _state, _firing, _overview):
        lines = rule(question, snap, ids)
        if lines is not None:
            return lines
    return None


def _roles(question: str, snap: IncidentSnapshot, ids: set[str]) -> list[Line] | None:
    if snap.ref not in ids:
        return None
    if _PAST_INCIDENT.search(question):
        return None
    question = _ROLE_AS_SOURCE.sub(" ", question)
    asked = [(attr, label) for attr, label, rx in _ROLES if rx.search(question)]
    if not asked and _ALL_ROLES.search(question):
        asked = [(attr, label) for attr, label, _ in _ROLES]
    if not asked:
        return None
    named = [f"the {label} is {getattr(snap, attr)}" for attr, label in asked
             if getattr(snap, attr)]
    missing = [label for attr, label in asked if not getattr(snap, attr)]
    text = "; ".join(named)
    text = (text[:1].upper() + text[1:] + ". ") if named else ""
    if missing:
        text += f"No {join_words(missing)} is assigned yet."
    return [Line(text=text.strip(), citations=[snap.ref])]


def _paged(question: str, snap: IncidentSnapshot, ids: set[str]) -> list[Line] | None:
    """"Who was paged?": the assignee of a paging alert (a responder's note may say it too, so
    without one the extractive answer looks)."""
    if not (re.match(r"^\W*who\b", question) and _PAGED.search(question)):
        return None
    # "who got paged for the redis evictions?" names an alert by words of its name or summary
    words = {a.id: set(terms(re.sub(r"(?<=[a-z])(?=[A-Z])|[-_.]", " ", f"{a.name} {a.summary}")))
             for a in snap.alerts}
    if not _only(question, _PAGE_STEMS.union(*words.values()), snap):
        return None
    asked = set(terms(question)) - _PAGE_STEMS
    best = max((len(asked & words[a.id]) for a in snap.alerts if _assignee(a)), default=0)
    named = [s for s in snap.services if s.lower() in question]
    lines = []
    for alert in snap.alerts:
        if named and alert.service not in named or len(asked & words[alert.id]) < best:
            continue
        who = _assignee(alert)
        if who and f"alert:{alert.id}" in ids:
            via = "PagerDuty" if alert.source == "pagerduty" else alert.source.capitalize()
            lines.append(Line(text=f"{via} paged {who} for {alert.name} at "
                                   f"{_hhmm(alert.starts_at)}.", citations=[f"alert:{alert.id}"]))
    return lines[:1] or None


def _assignee(alert: Any) -> str | None:
    return next((str(v) for k in ("assignee", "assigned_to", "oncall", "owner")
                 for v in (alert.labels.get(k), alert.annotations.get(k)) if v), None)


def _changes(question: str, snap: IncidentSnapshot, ids: set[str]) -> list[Line] | None:
    """"What changed?": the changes to affected services shortly before the first alert (the
    suspects) or, when there are none, the latest change before it; all of them (up to three)
    when the question asks for every change."""
    said = set(terms(question))
    if _STARTS_WH.match(question) or not said & _CHANGE_STEMS:
        return None
    blamed = said & _BLAME_STEMS and _WHICH_CHANGE.search(question) and not re.search(r"\d|\w[-_./]\w", " ".join(
        t for t in question.split() if not any(s.lower() in t for s in snap.services)))
    if not (blamed or _only(question, _CHANGE_STEMS | _CAUSE_STEMS, snap)):
        return None
    first = snap.first_alert_at
    named = [s for s in snap.services if s.lower() in question]
    if set(terms(question)) & _CAUSE_STEMS and not any(c.service in named for c in snap.changes):
        named = []  # "what change is filling redis-cache?" names the symptom, not the change
    known = sorted((c for c in snap.changes if f"change:{c.id}" in ids
                    and (not named or c.service in named)), key=lambda c: c.at, reverse=True)
    before = [c for c in known if first is None or c.at <= first]
    if not before and not re.search(r"\b(before|prior|leading up)\b", question):
        before = known  # "what changed?" also means a change made since the alerts
    if not before:
        return []
    every = re.search(r"\b(all|every|list|other|each)\b", question)
    suspects = [c for c in before if c.service in snap.services and first is not None
                and first - c.at <= SUSPECT_WINDOW]
    shown = before[:3] if every else (suspects[:2] or before[:1])
    lines = []
    for n, c in enumerate(shown):
        minutes = round((first - c.at).total_seconds() / 60) if first else None
        lead = ("" if minutes is None else f", {minutes} min before the first alert"
                if minutes >= 0 else f", {-minutes} min after the first alert")
        affected = " (an affected service)" if c.service in snap.services else ""
        prefix = ("Earlier:" if n else "The last change before the first alert was"
                  if minutes is not None and minutes >= 0 else "The latest change was")
        lines.append(Line(
            text=f"{prefix} a {c.kind.replace('_', ' ')} of {c.service}{affected} "
                 f"{c.version or ''} at {_hhmm(c.at)}{lead}"
                 f"{f' by {c.author}' if c.author else ''}: {clip(c.description or '', 220)}",
            citations=[f"change:{c.id}"]))
    return lines


def _logs(question: str, snap: IncidentSnapshot, ids: set[str]) -> list[Line] | None:
    """"What do the logs show?": the two busiest error patterns that are new or spiking (warnings
    when the question asks for them)."""
    question = _LOGGED_INOUT.sub(" ", question)  # "logged out" is not about logs
    # "when did the errors begin, as far as the logs show?" asks for a time, which is not this
    if (_STARTS_WH.match(question) or _ASKS_TIME.search(question)
            or not set(terms(question)) & _LOG_STEMS
            or not _only(question, _LOG_STEMS, snap)):
        return None
    warn = bool(re.search(r"\bwarn", question))
    severe = ("FATAL", "CRITICAL", "ERROR")

    def wanted(p: Any) -> bool:
        level = (p.level or "").upper()
        return level not in severe if warn else level in severe

    known = [p for p in snap.patterns if p.is_problem and f"pattern:{p.id}" in ids]
    chosen = sorted([p for p in known if wanted(p)] or known,  # no errors: the warnings
                    key=lambda p: (not (p.is_new or p.count >= 2 * p.baseline_count), -p.count))
    lines = []
    for p in chosen[:2]:
        shape = "new since the incident began" if p.is_new else \
            f"up from {p.baseline_count} before the incident"
        lines.append(Line(text=f"{p.count} {p.level} lines ({shape}): "
                               f"{clip(p.template.replace('<*>', '…'), 200)}",
                          citations=[f"pattern:{p.id}"]))
    return lines


def _firing(question: str, snap: IncidentSnapshot, ids: set[str]) -> list[Line] | None:
    """"What's firing?": every alert still firing, oldest first; "which alerts fired?": resolved
    ones too; "which alert fired first?": the oldest. A question about one alert names it, and
    goes to the extractive answer."""
    if (_STARTS_WH.match(question) or _ASKS_TIME.search(question)
            or not _ALERT_ASKED.search(question) or not _only(question, _ALERT_STEMS, snap)):
        return None
    named = [s for s in snap.services if s.lower() in question]
    known = sorted((a for a in snap.alerts if f"alert:{a.id}" in ids
                    and (not named or a.service in named)),
                   key=lambda a: (a.starts_at is None, a.starts_at or snap.now, a.id))
    if re.search(r"\bfirst\b", question):
        known = known[:1]
    elif re.search(r"\b(still|now|rn|currently|active|open|firing|alerting|going off)\b", question):
        known = [a for a in known if a.status == "firing"]
        if not known:
            return None  # none fires now: whether one did, and when it stopped, is in the records
    lines = []
    for a in known[:MAX_ALERT_LINES]:
        details = ", ".join(x for x in (a.severity, a.service) if x)
        said = f" {_sentence(a.summary)}" if a.summary != a.name else ""
        lines.append(Line(text=f"{a.name}{f' ({details})' if details else ''}: {a.status} since "
                               f"{_hhmm(a.starts_at)}.{said}", citations=[f"alert:{a.id}"]))
    return lines


def _state(question: str, snap: IncidentSnapshot, ids: set[str]) -> list[Line] | None:
    if snap.ref not in ids:
        return None
    severity = re.search(r"\b(severity|sev|priority|how (bad|severe|serious))\b", question)
    status = re.search(r"\b(status|state)\b(?! page)", question)
    start = re.search(r"\bwhen did (it|this|the incident|the outage|the problem|things) "
                      r"(start|begin)\b|\bstart(ed)? time\b|\bhow long\b", question)
    if not (severity or status or start) or not _only(question, _STATE_STEMS, snap):
        return None
    parts = []
    if severity:
        parts.append(f"the incident is {snap.severity}")
    if status:
        parts.append(f"its status is {snap.status}")
    if start:
        parts.append(f"it started at {_hhmm(snap.started_at)}")
    text = "; ".join(parts)
    return [Line(text=text[:1].upper() + text[1:] + ".", citations=[snap.ref])]


def _sentence(text: str) -> str:
    text = " ".join(text.split())
    if len(text) > 320:
        text = text[:319].rsplit(" ", 1)[0] + "…"
    return text if text.endswith((".", "!", "?", "…")) else text + "."
