"""Helpers the summary and the postmortem draft share: times and durations, the leading
suspect change, error patterns, runbook sections and steps, reading a model's Markdown."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from copilot.context import ChangeFact, IncidentSnapshot, PatternFact, TimelineFact
from copilot.guardrails.citations import extract
from copilot.tasks.base import Line, by_kind
from prompts.budget import ContextItem

SUSPECT_WINDOW = dt.timedelta(hours=2)  # a change this soon before the first alert is a suspect
ROBOTS = frozenset({"copilot", "system", ""})  # timeline actors that are not people



def when(at: dt.datetime | None, day: dt.datetime | None) -> str:
    """``14:03 UTC``, with the date when it is not the day of ``day`` (or ``day`` is None)."""
    if at is None:
        return "an unknown time"
    if day is not None and at.date() == day.date():
        return at.strftime("%H:%M UTC")
    return at.strftime("%Y-%m-%d %H:%M UTC")


def duration(start: dt.datetime, end: dt.datetime) -> str:
    minutes = max(0, round((end - start).total_seconds() / 60))
    hours, rest = divmod(minutes, 60)
    if hours >= 48:
        return f"{hours // 24} days {hours % 24} h"
    return f"{hours} h {rest} min" if hours else f"{rest} min"


def clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rsplit(" ", 1)[0] + "…"


def join_words(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def leading_suspect(snap: IncidentSnapshot) -> ChangeFact | None:
    """The latest change to an affected service shortly before the first alert."""
    first = snap.first_alert_at
    if first is None:
        return None
    close = [c for c in snap.changes if c.service in snap.services
             and dt.timedelta(0) <= first - c.at <= SUSPECT_WINDOW]
    return max(close, key=lambda c: c.at) if close else None


def change_text(change: ChangeFact, snap: IncidentSnapshot) -> str:
    first = snap.first_alert_at
    lead = f", {round((first - change.at).total_seconds() / 60)} min before the first alert" \
        if first else ""
    version = f" {change.version}" if change.version else ""
    return (f"the {change.kind.replace('_', ' ')} of {change.service}{version} at "
            f"{when(change.at, snap.started_at)}{lead}")


def error_patterns(snap: IncidentSnapshot) -> list[PatternFact]:
    """Problem log patterns, errors before warnings, busiest first within a level."""
    severe = ("FATAL", "CRITICAL", "ERROR")
    problems = [p for p in snap.patterns if p.is_problem]
    return sorted(problems, key=lambda p: ((p.level or "").upper() not in severe, -p.count))


def pattern_text(p: PatternFact) -> str:
    shape = "new" if p.is_new else f"vs {p.baseline_count} before the incident"
    return (f"{p.count} {(p.level or 'log').upper()} log lines ({shape}): "
            f"{clip(p.template.replace('<*>', '…'), 180)}")


def entry_text(entry: TimelineFact, *, actor: bool = True) -> str:
    """A timeline entry in one short line: change entries up to their long description."""
    who = f" ({entry.actor})" if actor and entry.actor not in ROBOTS else ""
    text = entry.text.split(" — ", 1)[0] if entry.kind == "change" else entry.text
    return f"{clip(text.replace('<*>', '…'), 160)}{who}"


def keep_cited(lines: list[Line], ids: set[str]) -> list[Line]:
    """Rules never emit an uncited line: citations not in the evidence go, and so does a line
    left with none."""
    out = []
    for line in lines:
        cited = [c for c in line.citations if c in ids]
        if cited:
            out.append(line.model_copy(update={"citations": cited}))
    return out


def line_text(line: Line) -> str:
    if line.citations:
        return f"{line.text} [{', '.join(line.citations)}]"
    return line.text + ("" if line.supported else " _(unsupported)_")


def section_items(retriever: Any, items: list[ContextItem], *, kind: str, section: str,
                  docs: int = 2) -> list[ContextItem]:
    """The ``section`` passages (say "Mitigation") of the top ``docs`` documents of ``kind``
    already among ``items``, read from the knowledge catalog: retrieval ranks passages by
    likeness to the incident, but the steps to take are in a known section."""
    catalog = getattr(getattr(retriever, "index", None), "catalog", None)
    ranked: dict[str, ContextItem] = {}
    for item in sorted(by_kind(items, kind), key=lambda i: i.rank):
        ranked.setdefault(str(item.meta.get("doc_id")), item)
    top = [d for d in ranked if d != "None"][:docs]
    if catalog is None or not top:
        return []
    have = {i.id for i in items}
    chunks = catalog.get_chunks(sorted(catalog.chunk_ids_of(top)))
    out = []
    for chunk in sorted(chunks.values(), key=lambda c: (top.index(c.doc_id),
                                                        c.metadata.get("chunk_index", 0))):
        name = str(chunk.metadata.get("section", ""))
        if not name.lower().startswith(section.lower()) or f"chunk:{chunk.id}" in have:
            continue
        base = ranked[chunk.doc_id]
        out.append(ContextItem(
            f"chunk:{chunk.id}", kind, f"{base.title} — {name}\n{chunk.text}", title=base.title,
            source=base.source, rank=int(base.meta.get("doc_rank", 0)) * 10 - 1,
            meta={**base.meta, "section": name}))
    return out


_BULLET = re.compile(r"^\s{0,3}(?:\d+[.)]|[-*+•])\s+")


def bullets(text: str) -> list[str]:
    """The list items of a Markdown passage, with their indented continuation lines."""
    out: list[str] = []
    for raw in text.splitlines():
        if _BULLET.match(raw):
            out.append(_BULLET.sub("", raw).strip())
        elif out and raw.startswith((" ", "\t")) and raw.strip():
            out[-1] += " " + raw.strip()
        elif not raw.strip() and out:
            continue
    return [b for b in out if b]


def runbook_steps(items: list[ContextItem], *, section: str, docs: int,
                  per_doc: int) -> list[tuple[ContextItem, list[str]]]:
    """(passage, its first list items) for the ``section`` of the top ``docs`` documents."""
    seen: dict[str, tuple[ContextItem, list[str]]] = {}
    chosen = [i for i in items if str(i.meta.get("section", "")).lower().startswith(
        section.lower())]
    for item in sorted(chosen, key=lambda i: (i.meta.get("doc_rank", 0), i.rank)):
        doc = str(item.meta.get("doc_id"))
        if doc in seen or len(seen) >= docs:
            continue
        steps = bullets(item.text.split("\n", 1)[-1])[:per_doc]
        if steps:
            seen[doc] = (item, steps)
    return list(seen.values())


_HEADING = re.compile(r"^\s{0,3}(?:#{1,6}\s*(.+?)\s*#*|\*\*(.+?):?\*\*:?)\s*$")


def split_sections(text: str, aliases: dict[str, tuple[str, ...]]) -> dict[str, list[str]]:
    """Markdown → {section key: its non-empty lines}; headings (``## X`` or a bold line) are
    matched by ``aliases``. Text under an unknown ``#`` heading or before the first is ignored;
    an unknown bold line is content."""
    found: dict[str, list[str]] = {}
    current: str | None = None
    for raw in text.splitlines():
        match = _HEADING.match(raw)
        if match:
            title = re.sub(r"[^a-z ]", "", (match.group(1) or match.group(2)).lower()).strip()
            key = next((k for k, names in aliases.items()
                        if any(title == n or title.startswith(n + " ") for n in names)), None)
            if key is not None or match.group(1) is not None:
                current = key
                if key is not None:
                    found.setdefault(key, [])
                continue
        if current is not None and raw.strip():
            found[current].append(raw.rstrip())
    return found


def uncited(lines: list[Line]) -> str | None:
    """A reason to reject a model's answer when under half of its lines cite the context."""
    supported = sum(x.supported for x in lines)
    if supported * 2 < len(lines):
        return f"only {supported} of the {len(lines)} lines the model wrote cite the context"
    return None


def cited_lines(raw: list[str], refs: dict[str, str]) -> list[Line]:
    """Bullets (or plain lines) of a model's section, their [S1] refs mapped back to ids."""
    lines = []
    for text in raw:
        clean, cited = extract(_BULLET.sub("", text).strip(), refs)
        if clean:
            lines.append(Line(text=clean, citations=cited, supported=bool(cited)))
    return lines
