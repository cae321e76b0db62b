"""Status-update drafts for a stage (investigating, identified, monitoring, resolved) and an
audience (customers, internal): title, body, affected components and the next update time, with
the draft checks it passed or failed.

A customer draft says what customers see (errors or slowness on a customer-facing component),
since when, what is being done in general terms and when the next update comes; it names no
host, person or cause that is not confirmed. An internal draft adds the alerts, error logs and
the suspected change, marked as suspected, citing their ids. A model draft that fails a blocking
check is rejected, so the runner falls back to the rules' draft, which passes them.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import Field

from copilot.config import Settings
from copilot.context import AlertFact, IncidentSnapshot, incident_items, knowledge_items
from copilot.guardrails.citations import extract
from copilot.guardrails.draft_checks import (
    AUDIENCES,
    STAGES,
    Check,
    DraftError,
    DraftText,
    blames,
    failures,
    normalise,
    person_terms,
    run_checks,
    scrub_secrets,
)
from copilot.tasks.base import Line, OutputInvalid, Task, TaskError, TaskResult, by_kind
from copilot.tasks.common import change_text, clip, error_patterns, leading_suspect
from prompts.budget import ContextItem

NEXT_UPDATE_MINUTES = {"investigating": 30, "identified": 30, "monitoring": 60}
STAGE_LABELS = {s: s.capitalize() for s in STAGES}
# Parts of a service name that mark it as infrastructure customers never see by name.
_INFRA = re.compile(r"(?:^|[-_.])(?:db|database|cache|pgbouncer|redis|kafka|events|etl|etcd|"
                    r"vault|queue|broker|postgres|mysql|opensearch|elasticsearch|coredns|"
                    r"worker)(?:[-_.]|$)")
_ACRONYMS = {"api": "API", "dns": "DNS", "cdn": "CDN", "sms": "SMS", "pdf": "PDF", "ui": "UI",
             "sso": "SSO", "db": "DB", "etl": "ETL"}
_LATENCY = re.compile(r"latenc|slow|p9\d|duration|response time", re.IGNORECASE)
_ERRORS = re.compile(r"5xx|error|fail|unavailab|refus|reject|down\b", re.IGNORECASE)


class StatusDraftResult(TaskResult):
    stage: str = ""
    audience: str = ""
    title: str = ""
    body: str = ""
    components: list[str] = Field(default_factory=list)
    next_update_at: dt.datetime | None = None
    lines: list[Line] = Field(default_factory=list)  # the body's statements with citations
    checks: list[Check] = Field(default_factory=list)
    passed: bool = False  # every blocking check passed

    @property
    def answer(self) -> str:
        """What the runner streams: the title, then the body."""
        return f"{self.title}\n\n{self.body}" if self.title else self.body


def component_name(service: str) -> str:
    """``checkout-api`` → ``Checkout API``: a readable name, never the raw service id."""
    parts = [p for p in re.split(r"[-_.\s]+", service) if p]
    return " ".join(_ACRONYMS.get(p.lower(), p.capitalize()) for p in parts)


def customer_components(services: Sequence[str],
                        names: Mapping[str, str] | None = None) -> list[str]:
    """Customer-facing components of the affected services: infrastructure (databases,
    caches, queues) is left out when a customer-facing service is affected."""
    names = names or {}
    facing = [s for s in services if s in names or not _INFRA.search(s.lower())]
    chosen = facing or list(services)
    out = [names.get(s) or component_name(s) for s in chosen]
    return list(dict.fromkeys(out)) or ["Platform"]


class StatusUpdate(Task[StatusDraftResult]):
    name = "status_update"
    result_type = StatusDraftResult
    max_tokens = 320

    def __init__(self, *, stage: str, audience: str = "customers",
                 internal_domains: Sequence[str] | None = None,
                 host_patterns: Sequence[str] = (),
                 component_names: Mapping[str, str] | None = None) -> None:
        try:
            self.stage = normalise(stage, STAGES, "stage")
            self.audience = normalise(audience, AUDIENCES, "audience")
        except DraftError as exc:
            raise TaskError(str(exc)) from exc
        default = Settings.model_fields["internal_domains"].get_default(call_default_factory=True)
        self.internal_domains = list(default if internal_domains is None else internal_domains)
        self.host_patterns = list(host_patterns)
        self.component_names = dict(component_names or {})

    @classmethod
    def from_settings(cls, settings: Settings, *, stage: str,
                      audience: str = "customers") -> StatusUpdate:
        """The task with the deployment's internal domains and host patterns."""
        return cls(stage=stage, audience=audience, internal_domains=settings.internal_domains,
                   host_patterns=settings.redact_hosts)

    # -- what the task needs ------------------------------------------------------------------

    def evidence(self, snap: IncidentSnapshot, retriever: Any) -> list[ContextItem]:
        """The incident's own records; internal drafts also get the best-matching runbooks."""
        items = incident_items(snap)
        if self.audience == "internal":
            items += knowledge_items(snap, retriever, kinds=("runbook",), k=2, chunks_per_doc=1)
        return items

    def prompt_vars(self, snap: IncidentSnapshot, items: list[ContextItem]) -> dict[str, Any]:
        due = self.next_update(snap)
        return {"stage": self.stage, "audience": self.audience,
                "components": ", ".join(self.components(snap)),
                "next_update": _clock(due, snap.now) if due else "",
                "cause_confirmed": self.cause_confirmed(snap)}

    def components(self, snap: IncidentSnapshot) -> list[str]:
        services = list(snap.services) or [a.service for a in snap.alerts if a.service]
        if self.audience == "internal":
            return list(dict.fromkeys(services)) or ["unknown"]
        return customer_components(list(dict.fromkeys(services)), self.component_names)

    def next_update(self, snap: IncidentSnapshot) -> dt.datetime | None:
        """Now plus the stage's cadence, rounded up to five minutes; none once resolved."""
        minutes = NEXT_UPDATE_MINUTES.get(self.stage)
        if minutes is None:
            return None
        due = snap.now + dt.timedelta(minutes=minutes)
        if due.second or due.microsecond:
            due = due.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
        return due + dt.timedelta(minutes=-due.minute % 5)

    def cause_confirmed(self, snap: IncidentSnapshot) -> bool:
        """The stage says the cause is known, and the incident itself is past investigating."""
        return self.stage != "investigating" and snap.status in ("identified", "monitoring",
                                                                 "resolved")

    # -- results ------------------------------------------------------------------------------

    def grounded(self, snap: IncidentSnapshot, items: list[ContextItem]) -> StatusDraftResult:
        ids = {i.id for i in items}
        if self.audience == "customers":
            title, lines = _customer(self.stage, snap, self.components(snap),
                                     self.next_update(snap))
        else:
            title, lines = _internal(self.stage, snap, items, self.next_update(snap))
        kept = [line.model_copy(update={"citations": [c for c in line.citations if c in ids]})
                for line in lines]
        kept = [line for line in kept if line.citations]
        return self._result(snap, title, kept)

    def parse(self, text: str, snap: IncidentSnapshot, items: list[ContextItem],
              refs: dict[str, str]) -> StatusDraftResult:
        title_match = re.search(r"^[\s*#]*title[*\s]*:\s*(.+?)\s*$", text,
                                re.IGNORECASE | re.MULTILINE)
        body_match = re.search(r"^[\s*#]*body[*\s]*:\s*(.*)", text,
                               re.IGNORECASE | re.MULTILINE | re.DOTALL)
        if not title_match or not body_match:
            raise OutputInvalid("expected a 'Title:' line and a 'Body:' line")
        title, _ = extract(title_match.group(1).strip("*# "), refs)
        body = re.split(r"^[\s*#]*(?:components|next update)[*\s]*:", body_match.group(1),
                        flags=re.IGNORECASE | re.MULTILINE)[0]
        body = re.sub(r"([.!?])\s*((?:\[[^\]]+\]\s*)+)", r" \2\1 ", " ".join(body.split()))
        lines = []
        for sentence in re.split(r"(?<=[.!?])\s+", body):
            clean, cited = extract(sentence, refs)
            if clean:
                lines.append(Line(text=clean, citations=cited, supported=bool(cited)))
        if not title or not lines:
            raise OutputInvalid("the title or the body is empty")
        return self._result(snap, title, lines)

    def check(self, result: StatusDraftResult, snap: IncidentSnapshot) -> str | None:
        """The draft checks, re-run on the final text: a blocking failure rejects the draft."""
        result.checks = self.run_checks(result, snap)
        result.passed = not failures(result.checks)
        failed = failures(result.checks)
        if not failed:
            return None
        return "draft check failed: " + "; ".join(f"{c.name} ({c.detail})" for c in failed)

    def _result(self, snap: IncidentSnapshot, title: str,
                lines: list[Line]) -> StatusDraftResult:
        result = StatusDraftResult(
            stage=self.stage, audience=self.audience, title=title,
            body=" ".join(line.text for line in lines), components=self.components(snap),
            next_update_at=self.next_update(snap), lines=lines)
        result.checks = self.run_checks(result, snap)
        result.passed = not failures(result.checks)
        return result

    def run_checks(self, draft: StatusDraftResult | DraftText,
                   snap: IncidentSnapshot) -> list[Check]:
        """The draft checks with this task's audience, stage and host settings."""
        text = DraftText(title=draft.title, body=draft.body, components=draft.components,
                         next_update_at=draft.next_update_at)
        return run_checks(text, audience=self.audience, stage=self.stage, snapshot=snap,
                          internal_domains=self.internal_domains,
                          host_patterns=self.host_patterns,
                          confirmed_root_cause=self.cause_confirmed(snap))


# -- the grounded rules ------------------------------------------------------------------------


def _clock(at: dt.datetime, day: dt.datetime | None) -> str:
    """``14:03 UTC``, with the date when it is not the same day as ``day``."""
    at = at.astimezone(dt.UTC) if at.tzinfo else at
    if day is not None and at.date() == (day.astimezone(dt.UTC) if day.tzinfo else day).date():
        return at.strftime("%H:%M UTC")
    return f"{at:%H:%M} UTC on {at.day} {at:%b %Y}"


def _symptom(alerts: list[AlertFact]) -> tuple[str, str]:
    """(what customers see, what it means for a request) from the alerts' names and summaries."""
    text = " ".join(f"{a.name} {a.summary}" for a in alerts)
    errors, slow = bool(_ERRORS.search(text)), bool(_LATENCY.search(text))
    if errors and slow:
        return "elevated error rates and slow responses", "may fail or be slow"
    if slow:
        return "slow responses", "may be slow"
    if errors:
        return "elevated error rates", "may fail"
    return "a service problem", "may be affected"


def _customer(stage: str, snap: IncidentSnapshot, components: list[str],
              due: dt.datetime | None) -> tuple[str, list[Line]]:
    """Plain words about what customers see; no hosts, people, numbers from logs or causes."""
    ref = snap.ref
    where = "the " + (components[0] if len(components) == 1
                      else ", ".join(components[:-1]) + " and " + components[-1])
    facing = [a for a in snap.alerts if a.service and not _INFRA.search(a.service.lower())]
    seen = facing or snap.alerts
    symptom, effect = _symptom(seen)
    alert_ids = [f"alert:{a.id}" for a in seen] or [ref]
    first = min((a for a in snap.alerts if a.starts_at), key=lambda a: a.starts_at or snap.now,
                default=None)
    start = first.starts_at if first else snap.started_at
    start_ids = [f"alert:{first.id}"] if first else [ref]
    began = (Line(text=f"The problem started at {_clock(start, None)}.", citations=start_ids)
             if start else None)
    lines: list[Line]
    if stage == "investigating":
        lines = [Line(text=f"We are investigating {symptom} on {where}.", citations=alert_ids),
                 Line(text=f"Some requests {effect}.", citations=alert_ids)]
        lines += [began] if began else []
        lines.append(Line(text="Our engineers are working to restore normal service.",
                          citations=[ref]))
    elif stage == "identified":
        lines = [Line(text=f"We have identified the cause of {symptom} on {where} and are "
                           f"working on a fix.", citations=[ref, *alert_ids]),
                 Line(text=f"Until the fix is in place, some requests {effect}.",
                      citations=alert_ids)]
        lines += [began] if began else []
    elif stage == "monitoring":
        lines = [Line(text=f"A fix is in place for the {symptom} on {where}.",
                      citations=[ref, *alert_ids]),
                 Line(text="We are monitoring the results to make sure the service stays "
                           "healthy.", citations=[ref])]
        lines += [began] if began else []
    else:
        end = snap.resolved_at or snap.mitigated_at
        if start and end:
            span = f"Between {_clock(start, None)} and {_clock(end, start)}"
        elif start:
            span = f"From {_clock(start, None)}"
        else:
            span = "During this incident"
        lines = [Line(text="This incident has been resolved.", citations=[ref]),
                 Line(text=f"{span}, some requests to {where} {_past(effect)}.",
                      citations=[*start_ids, *alert_ids]),
                 Line(text="The service is now working normally. We are sorry for the "
                           "trouble.", citations=[ref])]
    if due is not None:
        lines.append(Line(text=f"We will post the next update by {_clock(due, snap.now)}.",
                          citations=[ref]))
    title = f"{STAGE_LABELS[stage]}: {symptom} on {where}"
    return title[:1].upper() + title[1:], lines


def _past(effect: str) -> str:
    return {"may fail or be slow": "failed or were slow", "may be slow": "were slow",
            "may fail": "failed"}.get(effect, "were affected")


def _quote(text: str, people: list[str], limit: int = 160) -> str | None:
    """Evidence text fit to repeat internally: secrets scrubbed, never a blaming sentence."""
    clean = scrub_secrets(clip(text.replace("<*>", "…"), limit))
    return None if blames(clean, people) else clean


def _internal(stage: str, snap: IncidentSnapshot, items: list[ContextItem],
              due: dt.datetime | None) -> tuple[str, list[Line]]:
    """The responders' view: alerts, error logs, the suspected change (marked suspected), the
    runbook being followed, roles, and the next update; every line cites its record."""
    ref, day = snap.ref, snap.started_at
    people = person_terms(snap.people)
    title = f"[{snap.severity}] {STAGE_LABELS[stage]}: " + (
        _quote(snap.title, people, 90) or ", ".join(snap.services) or "incident")
    started = _clock(snap.first_alert_at, None) if snap.first_alert_at else "an unknown time"
    lines = [Line(text=f"{snap.severity}, recorded as {snap.status}; services "
                       f"{', '.join(snap.services) or 'unknown'}; first alert at {started}.",
                  citations=[ref])]
    alerts = [a for a in snap.alerts if a.status == "firing"] or snap.alerts
    for alert in alerts[:3]:
        said = _quote(alert.summary, people) if alert.summary != alert.name else None
        since = _clock(alert.starts_at, day) if alert.starts_at else "an unknown time"
        lines.append(Line(text=f"{alert.name} ({alert.status}, {alert.service or 'no service'}) "
                               f"since {since}" + (f": {said}." if said else "."),
                          citations=[f"alert:{alert.id}"]))
    for p in error_patterns(snap)[:2]:
        template = _quote(p.template, people, 140)
        if template:
            shape = "new" if p.is_new else f"vs {p.baseline_count} before"
            lines.append(Line(text=f"Logs: {p.count} {(p.level or 'log').upper()} lines "
                                   f"({shape}): {template.rstrip('.')}.",
                              citations=[f"pattern:{p.id}"]))
    suspect = leading_suspect(snap)
    if suspect is not None:
        mark = "confirm in the postmortem" if stage == "resolved" else "not confirmed"
        lines.append(Line(text=f"Suspected cause ({mark}): {change_text(suspect, snap)}.",
                          citations=[f"change:{suspect.id}"]))
    firing = [a for a in snap.alerts if a.status == "firing"]
    doing = {"investigating": "Responders are investigating",
             "identified": "The cause is identified and a fix is being applied",
             "monitoring": "A fix is in place and the alerts are being watched",
             "resolved": "Resolved; the postmortem comes next"}[stage]
    state = (f"{snap.firing_count} of {snap.alert_count} alerts still firing" if snap.alerts
             else "no alerts recorded")
    if firing and stage in ("monitoring", "resolved"):
        state = f"check before posting: {state}"
    lines.append(Line(text=f"{doing}; {state}.",
                      citations=[ref] + [f"alert:{a.id}" for a in snap.alerts]))
    runbooks = sorted(by_kind(items, "runbook"), key=lambda i: i.rank)
    if runbooks and stage in ("investigating", "identified"):
        name = _quote(runbooks[0].title, people, 80)
        if name:
            lines.append(Line(text=f"Runbook: “{name}”.", citations=[runbooks[0].id]))
    roles = ", ".join(f"{label} {value or 'unassigned'}" for label, value in (
        ("commander", snap.commander), ("tech lead", snap.tech_lead),
        ("comms lead", snap.comms_lead)))
    lines.append(Line(text=f"Roles: {roles}.", citations=[ref]))
    if due is not None:
        lines.append(Line(text=f"Next update by {_clock(due, snap.now)}.", citations=[ref]))
    return title, lines
