"""Check the evaluation data in evals/data: the incident folders and the four case files.

    .venv/bin/python evals/data/check_data.py          # from the repository root

Every incident folder must load through the same parsers the copilot uses (alert webhooks,
change payloads, log lines), and every case must be answerable from the data it points at:
``support`` strings occur verbatim in the incident's files or in demo/kb, ``planted`` values
occur verbatim in the incident's files (and every sensitive-looking value in those files is
listed), and ``match`` strings occur in the incident's data. Each generate_logs.py is re-run
to confirm it reproduces its log byte for byte. Exits 1 on any problem.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from ingest.alerts import parse_alert_payload
from ingest.changes import parse_changes
from ingest.logs import read_lines

DATA = ROOT / "evals" / "data"
KB = ROOT / "demo" / "kb"
DEMO = ROOT / "demo" / "incident"
SHARED = ROOT.parent / "shared" / "data"
DATA_FILES = ("alertmanager.json", "pagerduty.json", "changes.json", "notes.json", "roles.json")
REQUIRED_LABELS = ("alertname", "severity", "service", "namespace", "team", "cluster")
STAGES = ("investigating", "identified")

problems: list[str] = []


def bad(where: str, what: str) -> None:
    problems.append(f"{where}: {what}")


def folders() -> dict[str, Path]:
    found = {p.name: p for p in sorted((DATA / "incidents").iterdir()) if p.is_dir()}
    return {"demo": DEMO, **found}


def data_paths(folder: Path) -> list[Path]:
    """The files the copilot would load for an incident (not README.md or the generator)."""
    return [folder / n for n in DATA_FILES if (folder / n).exists()] + sorted(folder.glob("*.log"))


def corpus(folder: Path) -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in data_paths(folder))


def kb_text() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted(KB.rglob("*"))
                     if p.is_file() and p.suffix in (".md", ".yaml", ".yml"))


def catalog_services() -> set[str]:
    return set(re.findall(r"^\s*- name: ([\w-]+)", (KB / "services.yaml").read_text(), re.MULTILINE))


def check_incident(slug: str, folder: Path, services: set[str]) -> dict[str, object]:
    """Parse everything in a folder; returns counts for the report."""
    info: dict[str, object] = {}
    alerts = []
    for source in ("alertmanager", "pagerduty"):
        path = folder / f"{source}.json"
        if not path.exists():
            if source == "alertmanager":
                bad(slug, "alertmanager.json is missing")
            continue
        try:
            events = parse_alert_payload(source, path.read_bytes())
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            bad(f"{slug}/{path.name}", f"does not parse: {exc}")
            continue
        alerts += events
        if source == "alertmanager" and slug != "demo":
            if not 1 <= len(events) <= 3:
                bad(f"{slug}/{path.name}", f"{len(events)} alerts, want 1-3")
            for e in events:
                missing = [k for k in REQUIRED_LABELS if not e.labels.get(k)]
                if missing:
                    bad(f"{slug}/{path.name}", f"{e.name}: labels missing {missing}")
                if not (e.annotations.get("summary") and e.annotations.get("description")):
                    bad(f"{slug}/{path.name}", f"{e.name}: summary/description missing")
                if e.status != "firing":
                    bad(f"{slug}/{path.name}", f"{e.name}: not firing")
                if e.labels.get("service") not in services:
                    bad(f"{slug}/{path.name}", f"service {e.labels.get('service')!r} not in "
                                               f"services.yaml")
        if source == "pagerduty" and events and events[0].labels.get("event_type") \
                != "incident.triggered":
            bad(f"{slug}/{path.name}", "not an incident.triggered event")
    info["alert_events"] = len(alerts)
    try:
        changes = parse_changes((folder / "changes.json").read_bytes())
        info["changes"] = len(changes)
        if slug != "demo":
            if not 2 <= len(changes) <= 3:
                bad(f"{slug}/changes.json", f"{len(changes)} changes, want the culprit + 1-2")
            last = max(changes, key=lambda c: c.at)
            if last is not changes[-1]:
                bad(f"{slug}/changes.json", "the culprit (last entry) is not the latest change")
            for c in changes:
                if c.service not in services:
                    bad(f"{slug}/changes.json", f"service {c.service!r} not in services.yaml")
                if not (c.at.year == 2026 and c.at.month in (11, 12)):
                    bad(f"{slug}/changes.json", f"{c.at} is not in Nov/Dec 2026")
    except Exception as exc:  # noqa: BLE001
        bad(f"{slug}/changes.json", f"does not parse: {exc}")
    logs = sorted(folder.glob("*.log"))
    if len(logs) != 1:
        bad(slug, f"{len(logs)} .log files, want 1")
    for log in logs:
        lines = list(read_lines(log, default_service=log.stem))
        info["log_lines"] = len(lines)
        untimed = sum(1 for x in lines if x.ts is None)
        unlevelled = sum(1 for x in lines if x.level is None)
        if untimed or unlevelled:
            bad(f"{slug}/{log.name}", f"{untimed} lines without a time, {unlevelled} without "
                                      f"a level")
        if slug == "demo":
            continue
        if log.stem not in services:
            bad(f"{slug}/{log.name}", "log service not in services.yaml")
        if not 300 <= len(lines) <= 1500:
            bad(f"{slug}/{log.name}", f"{len(lines)} lines, want 300-1500")
        times = [x.ts for x in lines if x.ts]
        if times != sorted(times):
            bad(f"{slug}/{log.name}", "lines are not in time order")
        levels = {x.level for x in lines}
        if not {"ERROR", "WARN", "INFO"} <= levels:
            bad(f"{slug}/{log.name}", f"levels {sorted(levels)}: want INFO, WARN and ERROR")
        first_error = min((x.ts for x in lines if x.level == "ERROR" and x.ts), default=None)
        first_alert = min((a.starts_at for a in alerts if a.starts_at), default=None)
        if first_error is None or (first_alert and (first_error - first_alert).total_seconds()
                                   > 3600):
            bad(f"{slug}/{log.name}", "no ERROR line within an hour of the first alert")
        if first_error and times and (first_error - times[0]).total_seconds() < 15 * 60:
            bad(f"{slug}/{log.name}", "less than 15 minutes of normal traffic before errors")
        check_generator(slug, folder, log)
    if slug != "demo":
        check_notes_roles(slug, folder)
    return info


def check_generator(slug: str, folder: Path, log: Path) -> None:
    script = folder / "generate_logs.py"
    if not script.exists():
        bad(slug, "generate_logs.py is missing")
        return
    source = script.read_text()
    imports = set(re.findall(r"^(?:from|import) ([\w.]+)", source, re.MULTILINE))
    non_stdlib = {m for m in imports if m.split(".")[0] not in sys.stdlib_module_names}
    if non_stdlib:
        bad(f"{slug}/generate_logs.py", f"imports outside the stdlib: {sorted(non_stdlib)}")
    before = hashlib.sha256(log.read_bytes()).hexdigest()
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=False)
    after = hashlib.sha256(log.read_bytes()).hexdigest()
    if run.returncode or before != after:
        bad(f"{slug}/generate_logs.py", "does not reproduce the committed log "
                                        f"(rc {run.returncode}) {run.stderr[-300:]}")


def check_notes_roles(slug: str, folder: Path) -> None:
    try:
        notes = json.loads((folder / "notes.json").read_text())
        roles = json.loads((folder / "roles.json").read_text())
    except (OSError, ValueError) as exc:
        bad(slug, f"notes.json / roles.json: {exc}")
        return
    if not (isinstance(notes, list) and 3 <= len(notes) <= 6):
        bad(f"{slug}/notes.json", "want a list of 3-6 notes")
    for i, note in enumerate(notes):
        if set(note) != {"at", "actor", "text"} or not all(isinstance(v, str) and v
                                                            for v in note.values()):
            bad(f"{slug}/notes.json", f"[{i}] needs non-empty at, actor, text only")
            continue
        if not note["at"].endswith("Z"):
            bad(f"{slug}/notes.json", f"[{i}].at is not UTC ('Z')")
        try:
            datetime.fromisoformat(note["at"])
        except ValueError:
            bad(f"{slug}/notes.json", f"[{i}].at is not ISO 8601")
    if sorted(notes, key=lambda n: n["at"]) != notes:
        bad(f"{slug}/notes.json", "notes are not in time order")
    if set(roles) != {"commander", "tech_lead", "comms_lead"} or not all(
            isinstance(v, str) and " " in v for v in roles.values()):
        bad(f"{slug}/roles.json", "want commander, tech_lead, comms_lead as full names")


# --- sensitive values -------------------------------------------------------------------------

SENSITIVE = [
    re.compile(r"(?<![\w.+:/-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+"),       # emails, not URL creds
    re.compile(r"\b[\w.-]+\.lumenfield\.internal\b"),                 # internal hostnames
    re.compile(r"\b(?:10\.\d{1,3}|192\.168|172\.(?:1[6-9]|2\d|3[01]))\.\d{1,3}\.\d{1,3}\b"),
    re.compile(r"\bip-10(?:-\d{1,3}){3}\b"),                          # node names (private IPs)
    re.compile(r"\bsk_live_\w+"), re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    re.compile(r"://[^/\s:@]+:([^@\s]+)@"),                            # password in a URL
]


def sensitive_values(folder: Path) -> set[str]:
    text = corpus(folder)
    found: set[str] = set()
    for pattern in SENSITIVE:
        for m in pattern.finditer(text):
            found.add(m.group(1) if pattern.groups else m.group(0))
    # people: roles, note authors, paged assignees
    for name in ("roles.json",):
        if (folder / name).exists():
            found |= set(json.loads((folder / name).read_text()).values())
    if (folder / "notes.json").exists():
        found |= {n["actor"] for n in json.loads((folder / "notes.json").read_text())}
    if (folder / "pagerduty.json").exists():
        pd = json.loads((folder / "pagerduty.json").read_text())
        found |= {a["summary"] for a in pd["event"]["data"].get("assignees", [])}
    return found


# --- case files -------------------------------------------------------------------------------

def read_jsonl(name: str) -> list[dict]:
    rows = []
    for n, line in enumerate((DATA / name).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except ValueError as exc:
            bad(f"{name}:{n}", f"not valid JSON: {exc}")
    ids = [r.get("id") for r in rows]
    if len(ids) != len(set(ids)):
        bad(name, "duplicate ids")
    return rows


def check_fields(name: str, row: dict, spec: dict[str, type]) -> bool:
    ok = True
    if set(row) != set(spec):
        bad(f"{name} {row.get('id')}", f"fields {sorted(row)}, want {sorted(spec)}")
        ok = False
    for key, kind in spec.items():
        if key in row and not isinstance(row[key], kind):
            bad(f"{name} {row.get('id')}", f"{key} should be {kind.__name__}")
            ok = False
    return ok


def main() -> int:
    services = catalog_services()
    incidents = folders()
    texts = {slug: corpus(folder) for slug, folder in incidents.items()}
    kb = kb_text()
    report = {}
    for slug, folder in incidents.items():
        report[slug] = check_incident(slug, folder, services)

    # summaries
    summaries = read_jsonl("summaries.jsonl")
    for row in summaries:
        if not check_fields("summaries", row, {"id": str, "incident": str, "facts": list}):
            continue
        slug = row["incident"]
        if slug not in incidents or row["id"] != f"sum-{slug}":
            bad(f"summaries {row['id']}", "unknown incident or id not sum-<slug>")
            continue
        if not 6 <= len(row["facts"]) <= 10:
            bad(f"summaries {row['id']}", f"{len(row['facts'])} facts, want 6-10")
        for fact in row["facts"]:
            if set(fact) != {"fact", "match"} or not 1 <= len(fact.get("match", [])) <= 3:
                bad(f"summaries {row['id']}", f"bad fact {fact}")
                continue
            for term in fact["match"]:
                if term.lower() not in texts[slug].lower():
                    bad(f"summaries {row['id']}", f"match {term!r} not in the incident data")
    if {r.get("incident") for r in summaries} != set(incidents):
        bad("summaries", "want exactly one line per incident")

    # status updates
    updates = read_jsonl("status_updates.jsonl")
    spec = {"id": str, "incident": str, "stage": str, "audience": str, "planted": list}
    seen = set()
    for row in updates:
        if not check_fields("status_updates", row, spec):
            continue
        slug = row["incident"]
        if slug not in incidents or row["stage"] not in STAGES or row["audience"] != "customers" \
                or row["id"] != f"su-{slug}-{row['stage']}":
            bad(f"status_updates {row['id']}", "bad incident, stage, audience or id")
            continue
        seen.add((slug, row["stage"]))
        for value in row["planted"]:
            if value not in texts[slug]:
                bad(f"status_updates {row['id']}", f"planted {value!r} not in the incident files")
        missing = sensitive_values(incidents[slug]) - set(row["planted"])
        if missing:
            bad(f"status_updates {row['id']}", f"sensitive values not listed: {sorted(missing)}")
    if seen != {(s, st) for s in incidents for st in STAGES}:
        bad("status_updates", "want one line per incident and stage")
    planted_by = {r["incident"]: r["planted"] for r in updates if isinstance(r.get("planted"), list)}
    for slug in incidents:
        if slug == "demo":
            continue
        kinds = {"secret": any(re.search(r"sk_live_|AKIA|://\w+:[^@\s]+@", v) or
                                  re.fullmatch(r"(?=.*\d)(?=.*[A-Z])[\w!-]{12,}", v)
                                  for v in planted_by.get(slug, [])),
                 "hostname": any(v.endswith(".lumenfield.internal") for v in planted_by.get(slug, [])),
                 "ip": any(SENSITIVE[2].fullmatch(v) for v in planted_by.get(slug, [])),
                 "email": any(".example" in v and "@" in v for v in planted_by.get(slug, []))}
        if not all(kinds.values()):
            bad(f"status_updates {slug}", f"planted kinds present: {kinds}")

    # chat, and the held-out chat sets (the same checks, any size)
    chat = read_jsonl("chat.jsonl")
    spec = {"id": str, "incident": str, "question": str, "answerable": bool, "support": list}
    held_out = [read_jsonl(p.name) for p in sorted(DATA.glob("chat_holdout*.jsonl"))]
    for row in chat + [r for rows in held_out for r in rows]:
        if not check_fields("chat", row, spec):
            continue
        slug = row["incident"]
        if slug not in incidents:
            bad(f"chat {row['id']}", "unknown incident")
            continue
        if row["answerable"]:
            if not 1 <= len(row["support"]) <= 3:
                bad(f"chat {row['id']}", "answerable needs 1-3 support strings")
            for s in row["support"]:
                if s not in texts[slug] and s not in kb:
                    bad(f"chat {row['id']}", f"support {s!r} not verbatim in the incident or KB")
        elif row["support"]:
            bad(f"chat {row['id']}", "unanswerable questions have support []")
    n_ans = sum(1 for r in chat if r.get("answerable") is True)
    if not 30 <= len(chat) <= 40 or not 0.55 <= n_ans / max(1, len(chat)) <= 0.75:
        bad("chat", f"{len(chat)} questions, {n_ans} answerable: want 30-40, about 2/3")
    if {r.get("incident") for r in chat} != set(incidents):
        bad("chat", "every incident should have questions")

    copied = check_not_copied(incidents)

    print("incidents:")
    for slug, info in report.items():
        print(f"  {slug:32} " + ", ".join(f"{k} {v}" for k, v in info.items()))
    print(f"summaries.jsonl: {len(summaries)} incidents, "
          f"{sum(len(r.get('facts', [])) for r in summaries)} facts")
    print(f"status_updates.jsonl: {len(updates)} cases, "
          f"{sum(len(r.get('planted', [])) for r in updates)} planted values in all")
    print(f"chat.jsonl: {len(chat)} questions, {n_ans} answerable, {len(chat) - n_ans} not")
    print(f"overlap with ../shared/data: {copied}")
    if problems:
        print(f"\n{len(problems)} problem(s):")
        for p in problems:
            print("  - " + p)
        return 1
    print("\nall checks passed")
    return 0


def check_not_copied(incidents: dict[str, Path]) -> str:
    """No 12-word run of our prose (notes, descriptions, READMEs, cases) appears in shared data."""
    if not SHARED.is_dir():
        return "skipped (no ../shared/data)"
    ours = []
    for slug, folder in incidents.items():
        if slug == "demo":
            continue
        ours += [folder / n for n in ("README.md", "notes.json", "changes.json",
                                      "alertmanager.json")]
    ours += [DATA / n for n in ("summaries.jsonl", "chat.jsonl", "README.md")]
    words = lambda s: re.findall(r"[a-z0-9]+", s.lower())
    shingles = set()
    for p in ours:
        if p.exists():
            w = words(p.read_text(encoding="utf-8"))
            shingles |= {" ".join(w[i:i + 12]) for i in range(len(w) - 11)}
    hits = 0
    for p in SHARED.rglob("*"):
        if p.is_file() and p.stat().st_size < 5_000_000:
            w = words(p.read_text(encoding="utf-8", errors="replace"))
            if any(" ".join(w[i:i + 12]) in shingles for i in range(len(w) - 11)):
                hits += 1
                bad("copy check", f"12-word run shared with {p.relative_to(SHARED)}")
    return f"{hits} shared file(s) with a 12-word run in common"


if __name__ == "__main__":
    sys.exit(main())
