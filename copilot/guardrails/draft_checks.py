"""Checks on a status-update draft before anyone posts it: no secrets, internal hosts, IPs,
emails or people's names in a customer draft, no blame, no cause stated before it is confirmed,
the required fields, a sane length and reading level.

``run_checks`` works on any draft text (a model's, the rules', or one a person edited), so the
approval step can refuse a draft while a blocking check fails. Each check names what it found;
a secret is shown only as its redacted placeholder, never its value.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel, Field

from copilot.context import IncidentSnapshot
from copilot.errors import CopilotError
from copilot.guardrails.redaction import DEFAULT_INTERNAL_HOSTS, Redactor

STAGES = ("investigating", "identified", "monitoring", "resolved")
AUDIENCES = ("customers", "internal")
MAX_WORDS = {"customers": 180, "internal": 300}
MAX_TITLE_CHARS = 120
MAX_GRADE = 10.0  # Flesch-Kincaid grade a customer update should not exceed


class DraftError(CopilotError):
    """A draft was checked with a stage or audience that does not exist."""


class DraftText(BaseModel):
    """The parts of a draft the checks read; an edited draft is checked the same way."""

    title: str = ""
    body: str = ""
    components: list[str] = Field(default_factory=list)
    next_update_at: dt.datetime | str | None = None


class Check(BaseModel):
    """One check's verdict. ``blocking`` checks must pass before the draft can be approved."""

    name: str
    passed: bool
    detail: str = ""
    blocking: bool = True


def normalise(value: str, allowed: Sequence[str], what: str) -> str:
    """``"Customer"`` → ``"customers"``; anything unknown is refused with the valid values."""
    key = value.strip().lower()
    if key == "customer":
        key = "customers"
    if key not in allowed:
        raise DraftError(f"unknown {what} {value!r}: use one of {', '.join(allowed)}")
    return key


def failures(checks: Iterable[Check]) -> list[Check]:
    """The blocking checks that failed (an empty list: the draft may be approved)."""
    return [c for c in checks if c.blocking and not c.passed]


def run_checks(
    draft: DraftText, *, audience: str, stage: str, snapshot: IncidentSnapshot | None = None,
    internal_domains: Sequence[str] = (), host_patterns: Sequence[str] = (),
    confirmed_root_cause: bool = False,
) -> list[Check]:
    """All checks for this audience. Customer drafts get every leak check (blocking) plus an
    advisory reading level; internal drafts may name hosts and people, but never secrets or
    blame."""
    audience = normalise(audience, AUDIENCES, "audience")
    stage = normalise(stage, STAGES, "stage")
    text = "\n".join([draft.title, draft.body, *draft.components])
    found = _scan(text, internal_domains=internal_domains, host_patterns=host_patterns,
                  services=_services(snapshot))
    people = person_terms(snapshot.people if snapshot else ())
    checks = [_secrets(found)]
    if audience == "customers":
        checks += [
            _listed("no_internal_hosts", found["hosts"], "internal host or service name"),
            _listed("no_ips", found["ips"], "IP address"),
            _listed("no_emails", found["emails"], "email address"),
            _listed("no_people_names", people_in(text, people), "person's name"),
        ]
    checks.append(_blame(text, people))
    if audience == "customers":
        checks.append(_cause(draft.title + "\n" + draft.body, stage=stage,
                             confirmed=confirmed_root_cause and stage != "investigating"))
    checks += [_required(draft, stage), _length(draft, audience)]
    if audience == "customers":
        grade = reading_grade(draft.body)
        checks.append(Check(name="reading_grade", passed=grade <= MAX_GRADE, blocking=False,
                            detail=f"Flesch-Kincaid grade {grade:.1f} (aim for {MAX_GRADE:g} "
                                   f"or lower)"))
    return checks


# -- leaks --------------------------------------------------------------------------------------

_K8S = (
    r"\b[a-z][a-z0-9]*(?:-[a-z0-9]+)*-[0-9a-f]{8,10}-[a-z0-9]{5}\b",  # pod of a deployment
    r"\b[a-z]+(?:-[a-z]+)+-\d{1,3}\b",  # pod of a statefulset: ledger-db-0
    r"\b[a-z][a-z0-9-]*[a-z0-9]:\d{2,5}\b",  # host:port
)
# The redactor's IPv4 rule misses an address that ends a sentence ("... 10.2.3.4."); this one
# does not.
_IPV4 = re.compile(r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)"
                   r"(?!\w|\.\d)")
_MENTION = re.compile(r"(?<![\w.@])@[A-Za-z][\w.-]*[\w]")


def _host_patterns(internal_domains: Sequence[str], extra: Sequence[str]) -> list[str]:
    domains = [r"[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\." + re.escape(d.strip(".")) + r"\b"
               for d in internal_domains if d.strip(".")]
    return [*domains, *extra, *DEFAULT_INTERNAL_HOSTS, *_K8S]  # the longest names first


def _services(snapshot: IncidentSnapshot | None) -> set[str]:
    """Internal service names (``checkout-api``) that the snapshot knows of."""
    if snapshot is None:
        return set()
    names = set(snapshot.services) | {c.service for c in snapshot.changes}
    names |= {a.service for a in snapshot.alerts if a.service}
    return {n for n in names if re.search(r"[-_.]", n)}


def _scan(text: str, *, internal_domains: Sequence[str], host_patterns: Sequence[str],
          services: set[str]) -> dict[str, list[str]]:
    """What the redactor would take out of ``text``: secrets (as redacted snippets), emails,
    IPs and internal hosts (with their values)."""
    redactor = Redactor(internal_hosts=_host_patterns(internal_domains, host_patterns))
    redacted = redactor.redact(text)
    out: dict[str, list[str]] = {"secrets": [], "emails": [], "ips": [], "hosts": []}
    for token, value in redactor.mapping.items():
        kind = token.strip("[]").rsplit("_", 1)[0]
        out[{"EMAIL": "emails", "IP": "ips"}.get(kind, "hosts")].append(value)
    for match in re.finditer(r"\[([A-Z_]+)_\d+\]", redacted):
        if match.group(0) not in redactor.mapping:
            start, end = max(0, match.start() - 24), match.end() + 8
            snippet = redactor.restore(redacted[start:end]).strip()
            out["secrets"].append(f"{match.group(1)} in “…{' '.join(snippet.split())}…”")
    out["ips"] += [ip for ip in _IPV4.findall(redacted) if ip not in out["ips"]]
    for name in sorted(services):
        pattern = r"(?<![\w.-])" + re.escape(name) + r"(?![\w-])"
        if re.search(pattern, redacted) and name not in out["hosts"]:
            out["hosts"].append(name)
    return out


def scrub_secrets(text: str) -> str:
    """``text`` with every secret replaced by a placeholder (emails, IPs and hosts are kept)."""
    redactor = Redactor(internal_hosts=())
    return redactor.restore(redactor.redact(text))


def _secrets(found: dict[str, list[str]]) -> Check:
    secrets = found["secrets"]
    return Check(name="no_secrets", passed=not secrets,
                 detail=f"found {len(secrets)} secret(s): {'; '.join(secrets)}" if secrets
                 else "no passwords, tokens, keys or credentials")


def _listed(name: str, values: list[str], what: str) -> Check:
    values = list(dict.fromkeys(values))
    if not values:
        return Check(name=name, passed=True, detail=f"no {what} found")
    return Check(name=name, passed=False,
                 detail=f"found {what}: " + ", ".join(f"“{v}”" for v in values[:6]))


# -- people -------------------------------------------------------------------------------------

_ROBOTS = frozenset({"copilot", "system", "argocd", "alertmanager", "pagerduty", "grafana",
                     "bot", "automation", "unknown", "unassigned"})
# Name parts that are also ordinary words: only the full name is matched for these.
_COMMON = frozenset({"will", "may", "mark", "bill", "grant", "rose", "june", "april", "august",
                     "summer", "page", "chase", "hope", "joy", "faith", "art", "ray", "dean",
                     "drew", "frank", "gene", "lee", "long", "young", "king", "brown", "green",
                     "white", "black", "price", "rich", "case", "hall", "park", "love", "day",
                     "north", "west"})


def person_terms(people: Iterable[str]) -> list[str]:
    """Full names and handles (``Jonas Weber``, ``jonas.weber``) and their distinctive parts
    (``Jonas``, ``Weber``), longest first so a full name is reported whole."""
    terms: set[str] = set()
    for name in people:
        name = name.strip()
        if not name or name.lower() in _ROBOTS:
            continue
        terms.add(name)
        parts = [p for p in re.split(r"[\s._-]+", name) if p.isalpha()]
        if len(parts) >= 2:
            terms.add(" ".join(parts))
        terms.update(p for p in parts if len(p) >= 3 and p.lower() not in _COMMON)
    return sorted(terms, key=lambda t: (-len(t), t.lower()))


def _term_pattern(term: str) -> str:
    return r"(?<![\w@])" + r"[\s._-]+".join(re.escape(p) for p in re.split(r"[\s._-]+", term)) \
        + r"(?![\w@]|\.\w)"


def people_in(text: str, terms: Sequence[str]) -> list[str]:
    """Names from ``terms`` found in ``text`` (case-insensitive, whole words), and @mentions."""
    found: list[str] = []
    rest = text
    for term in terms:
        pattern = re.compile(_term_pattern(term), re.IGNORECASE)
        for match in pattern.finditer(rest):
            found.append(match.group(0))
        rest = pattern.sub(" ", rest)
    found += _MENTION.findall(rest)
    return list(dict.fromkeys(found))


# -- blame and causes ---------------------------------------------------------------------------

_BLAME = re.compile(
    r"\bhuman error\b|\b(?:the )?fault of\b|\bat fault\b|\b(?:his|her|their) fault\b"
    r"|\bblam(?!eless)\w*|\bcareless\w*|\bnegligen\w*|\breckless\w*|\bincompeten\w*"
    r"|\bmistake (?:by|of|made by)\b|\b(?:made|make|making) a mistake\b"
    r"|\b(?:forgot|neglected|failed) to (?:check|test|review|follow|notice)\b"
    r"|\b(?:an? |the |our |one of our )?(?:engineer|developer|operator|employee|admin\w*|"
    r"on-?call|someone|somebody|team member|staff member|contractor|intern)s?\b[^.!?\n]{0,40}?"
    r"\b(?:caused|broke|messed|screwed|forgot|neglected|botched)\b", re.IGNORECASE)
_PERSON_VERBS = r"(?:caused|broke|breaks|messed|screwed|forgot|neglected|botched|is responsible)"


def blames(text: str, people: Sequence[str] = ()) -> list[str]:
    """Blaming phrases in ``text``, including a person's name next to "caused" or "broke"."""
    hits = [m.group(0) for m in _BLAME.finditer(text)]
    for term in people:
        name = _term_pattern(term)
        near = re.compile(rf"{name}(?:'s)?[^.!?\n]{{0,30}}?\b{_PERSON_VERBS}\b"
                          rf"|\b(?:caused|broken|broke) by {name}|\bblamed? on {name}",
                          re.IGNORECASE)
        hits += [m.group(0) for m in near.finditer(text)]
    return list(dict.fromkeys(h.strip() for h in hits))


def _blame(text: str, people: Sequence[str]) -> Check:
    hits = blames(text, people)
    return Check(name="no_blame", passed=not hits,
                 detail="blaming language: " + ", ".join(f"“{h}”" for h in hits[:4]) if hits
                 else "no blame of people")


_CAUSE = re.compile(
    r"\bcaused by\b|\bdue to\b|\broot[- ]cause\b|\bbecause\b|\b(?:the|a|as a) result of\b"
    r"|\bresulted from\b|\btriggered by\b|\bstemm(?:ed|ing) from\b|\btraced (?:\w+ )?to\b"
    r"|\battributed to\b|\bowing to\b"
    r"|\b(?:deploy\w*|release|rollout|roll-out|config\w*(?: change| push)?|database|"
    r"migration|upgrade|(?:software |code |recent )?change)\b[^.!?\n]{0,40}?"
    r"\b(?:caused|led to|leads to|triggered|broke|resulted in|is responsible)\b", re.IGNORECASE)
_KNOWN_CAUSE = re.compile(r"\b(?:identified|found|know|determined|confirmed) (?:the|its) "
                          r"(?:root )?cause\b|\bcause (?:has been|was|is) (?:identified|found|"
                          r"known|confirmed)\b", re.IGNORECASE)


def _cause(text: str, *, stage: str, confirmed: bool) -> Check:
    if confirmed:
        return Check(name="no_unconfirmed_root_cause", passed=True,
                     detail="the cause is confirmed: the draft may state it")
    hits = [m.group(0) for m in _CAUSE.finditer(text)]
    if stage == "investigating":
        hits += [m.group(0) for m in _KNOWN_CAUSE.finditer(text)]
    hits = list(dict.fromkeys(h.strip() for h in hits))
    return Check(name="no_unconfirmed_root_cause", passed=not hits,
                 detail="states a cause that is not confirmed: " + ", ".join(
                     f"“{h}”" for h in hits[:4]) if hits else "states no unconfirmed cause")


# -- shape --------------------------------------------------------------------------------------


def _required(draft: DraftText, stage: str) -> Check:
    missing = [name for name, value in (("title", draft.title.strip()),
                                        ("body", draft.body.strip()),
                                        ("components", [c for c in draft.components if c.strip()]))
               if not value]
    when = draft.next_update_at
    if isinstance(when, str) and when.strip():
        try:
            dt.datetime.fromisoformat(when.strip())
        except ValueError:
            missing.append(f"next_update_at (not an ISO time: {when!r})")
    elif when in (None, "") and stage != "resolved":
        missing.append("next_update_at")
    return Check(name="required_fields", passed=not missing,
                 detail="missing: " + ", ".join(missing) if missing
                 else "title, body, components" + (", next update time"
                                                   if stage != "resolved" else ""))


def _length(draft: DraftText, audience: str) -> Check:
    words = len(draft.body.split())
    limit = MAX_WORDS[audience]
    ok = words <= limit and len(draft.title) <= MAX_TITLE_CHARS
    return Check(name="length", passed=ok,
                 detail=f"body {words} words (limit {limit}), title {len(draft.title)} "
                        f"characters (limit {MAX_TITLE_CHARS})")


_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?|\d[\d:.,%]*")


def syllables(word: str) -> int:
    """A rough English syllable count (vowel groups, silent final e); numbers count one."""
    word = word.lower()
    if not word.isalpha():
        return 1
    groups = len(re.findall(r"[aeiouy]+", word))
    if word.endswith("e") and not word.endswith(("le", "ee", "ye")) and groups > 1:
        groups -= 1
    return max(1, groups)


def reading_grade(text: str) -> float:
    """Flesch-Kincaid grade level: 0.39 words/sentence + 11.8 syllables/word - 15.59."""
    words = _WORD.findall(text)
    if not words:
        return 0.0
    sentences = max(1, len([s for s in re.split(r"[.!?]+(?:\s|$)", text) if _WORD.search(s)]))
    total = sum(syllables(w) for w in words)
    return round(0.39 * len(words) / sentences + 11.8 * total / len(words) - 15.59, 1)


def as_draft(value: Any) -> DraftText:
    """A ``DraftText`` from anything with title/body/components/next_update_at (a result)."""
    return DraftText(title=getattr(value, "title", ""), body=getattr(value, "body", ""),
                     components=list(getattr(value, "components", []) or []),
                     next_update_at=getattr(value, "next_update_at", None))
