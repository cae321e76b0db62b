"""Source files to documents: Markdown (with or without YAML frontmatter), plain text, and
JSON / JSONL postmortem exports. Every way a file can be bad raises ``IngestError`` with a
reason and a message that says what to fix."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from copilot.errors import IngestError

KINDS = ("postmortem", "runbook", "document")
MARKDOWN = {".md", ".markdown", ".mdx"}
TEXT = {".txt", ".text", ".rst"}
JSON = {".json"}
JSONL = {".jsonl", ".ndjson"}
SUPPORTED = MARKDOWN | TEXT | JSON | JSONL

OVERVIEW_STEMS = frozenset({"readme", "index", "_index", "overview"})
_FRONTMATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n(?:---|\.\.\.)[ \t]*(?:\r?\n|\Z)", re.DOTALL)
_H1 = re.compile(r"^#[ \t]+(.+?)[ \t#]*$", re.MULTILINE)
_ALERT_NAME = re.compile(r"^[A-Z][a-z0-9]+(?:[A-Z]+[a-z0-9]*)+$")


@dataclass
class Document:
    doc_id: str
    kind: str
    title: str
    body: str
    source: str  # source key: absolute path, or path#record
    path: str  # the file
    content_hash: str
    metadata: dict[str, Any] = field(default_factory=dict)


def read_text(path: Path, *, max_bytes: int) -> str:
    """Read a file as text, refusing unreadable, oversized, binary, non-UTF-8 and empty input."""
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise IngestError(
                f"{path}: file is {size:,} bytes, over the {max_bytes:,}-byte limit "
                "(COPILOT_MAX_FILE_BYTES); split it or raise the limit",
                path=str(path), reason="oversized",
            )
        raw = path.read_bytes()
    except IngestError:
        raise
    except OSError as exc:
        raise IngestError(f"{path}: cannot read file: {exc.strerror or exc}", path=str(path),
                          reason="unreadable") from exc
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            text = raw.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise IngestError(f"{path}: has a UTF-16 byte-order mark but is not valid UTF-16",
                              path=str(path), reason="encoding") from exc
    else:
        body = raw[3:] if raw.startswith(b"\xef\xbb\xbf") else raw
        if b"\x00" in body[:8192]:
            raise IngestError(f"{path}: looks binary (contains NUL bytes); only text sources "
                              "are ingested", path=str(path), reason="binary")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise IngestError(
                f"{path}: not valid UTF-8 (byte 0x{body[exc.start]:02x} at offset {exc.start}); "
                "convert it to UTF-8, e.g. iconv -f latin1 -t utf-8",
                path=str(path), reason="encoding",
            ) from exc
    if not text.strip():
        raise IngestError(f"{path}: file is empty", path=str(path), reason="empty")
    return text.replace("\r\n", "\n")


def split_frontmatter(text: str, path: Path) -> tuple[dict[str, Any], str]:
    if not text.startswith("---"):
        return {}, text
    match = _FRONTMATTER.match(text)
    if not match:
        raise IngestError(f"{path}: frontmatter starts with '---' but is never closed by '---'",
                          path=str(path), reason="frontmatter")
    try:
        meta = yaml.safe_load(match.group(1))
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 2}" if where is not None else ""
        raise IngestError(f"{path}: invalid YAML frontmatter{line}: "
                          f"{getattr(exc, 'problem', None) or exc}", path=str(path),
                          reason="frontmatter") from exc
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise IngestError(f"{path}: frontmatter must be a mapping of keys to values, "
                          f"got {type(meta).__name__}", path=str(path), reason="frontmatter")
    body = text[match.end():]
    if not body.strip():
        raise IngestError(f"{path}: has frontmatter but no content", path=str(path), reason="empty")
    return meta, body


def infer_kind(given: str | None, meta: dict[str, Any], rel: Path, body: str) -> str:
    if given:
        return given
    declared = str(meta.get("kind") or meta.get("type") or "").lower().replace("-", "")
    if declared in ("postmortem", "runbook", "document"):
        return declared
    parts = " ".join(p.lower() for p in rel.parts)
    if "postmortem" in parts or "post-mortem" in parts or "incident" in parts:
        return "postmortem"
    if "runbook" in parts or "playbook" in parts:
        return "runbook"
    if meta.get("root_cause_category") or meta.get("severity"):
        return "postmortem"
    if meta.get("alerts"):
        return "runbook"
    heads = {h.strip().lower() for h in re.findall(r"^#{1,6}\s+(.+)$", body, re.MULTILINE)}
    if {"root cause", "timeline"} & heads or any("root cause" in h for h in heads):
        return "postmortem"
    if {"mitigation", "diagnosis", "meaning"} & heads:
        return "runbook"
    return "document"


def _as_list(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, (list, tuple, set)):
        return [str(v).strip() for v in value if str(v).strip()]
    return [str(value)]


def _as_date(value: Any, path: str) -> str | None:
    if value in (None, ""):
        return None
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    text = str(value).strip()
    try:
        return dt.date.fromisoformat(text[:10]).isoformat()
    except ValueError:
        pass
    # Exports from status pages and trackers: US month/day first (as in the public cloud
    # RCAs), then day/month when the first number cannot be a month, then written months.
    for fmt in ("%m/%d/%Y", "%d/%m/%Y", "%Y/%m/%d", "%d %b %Y", "%d %B %Y", "%b %d, %Y",
                "%B %d, %Y"):
        try:
            return dt.datetime.strptime(text, fmt).date().isoformat()
        except ValueError:
            continue
    raise IngestError(f"{path}: date {text!r} is not a date (YYYY-MM-DD, or M/D/YYYY)",
                      path=path, reason="frontmatter")


def normalize_metadata(meta: dict[str, Any], *, source: str) -> dict[str, Any]:
    """Frontmatter to index metadata: lists stay lists, dates become ISO strings, and the rest
    is kept when it is a scalar or a list of scalars."""
    out: dict[str, Any] = {}
    for key, value in meta.items():
        key = str(key)
        if key in ("services", "tags", "alerts"):
            out[key] = _as_list(value)
        elif key == "date":
            out[key] = _as_date(value, source)
        elif isinstance(value, (dt.date, dt.datetime)):
            out[key] = value.isoformat()
        elif isinstance(value, (str, int, float, bool)) or value is None:
            out[key] = value
        elif isinstance(value, list) and all(isinstance(v, (str, int, float)) for v in value):
            out[key] = [str(v) for v in value]
        else:
            out[key] = json.dumps(value, default=str)
    return out


def _doc_id(meta: dict[str, Any], rel_id: str) -> str:
    raw = str(meta.get("id") or "").strip()
    if raw:
        return re.sub(r"\s+", "-", raw)
    return rel_id


def _hash(*parts: str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    return h.hexdigest()


def _title(meta: dict[str, Any], body: str, path: Path) -> str:
    if meta.get("title"):
        return str(meta["title"]).strip()
    match = _H1.search(body)
    if match:
        return match.group(1).strip()
    stem = path.stem
    if stem.lower() in ("readme", "index") and path.parent.name:
        stem = path.parent.name
    return stem.replace("_", " ").replace("-", " ").strip() or path.name


def parse_file(path: Path, *, root: Path, kind: str | None, max_bytes: int) -> list[Document]:
    """All documents in one source file (several for JSON/JSONL exports)."""
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED:
        raise IngestError(f"{path}: unsupported file type {suffix or '(none)'}; expected one of "
                          f"{', '.join(sorted(SUPPORTED))}", path=str(path), reason="unsupported")
    text = read_text(path, max_bytes=max_bytes)
    rel = path.relative_to(root.parent) if root.parent in path.parents else Path(path.name)
    if suffix in JSON | JSONL:
        return _parse_export(path, text, rel=rel, kind=kind or "postmortem")
    meta, body = (split_frontmatter(text, path) if suffix in MARKDOWN else ({}, text))
    rel_id = rel.with_suffix("").as_posix()
    metadata = normalize_metadata(meta, source=str(path))
    the_kind = infer_kind(kind, meta, rel, body)
    title = _title(meta, body, path)
    if not metadata.get("services") and len(rel.parts) > 2:
        metadata["services"] = [rel.parts[-2]]
        metadata["services_inferred"] = True
    if the_kind == "runbook" and not metadata.get("alerts"):
        h1 = _H1.search(body)
        named = [n for n in (title, h1.group(1).strip() if h1 else "", path.stem) if _ALERT_NAME.match(n)]
        if named:
            metadata["alerts"] = [named[0]]
    metadata["format"] = "markdown" if suffix in MARKDOWN else "text"
    if "overview" not in metadata and path.stem.lower() in OVERVIEW_STEMS:
        metadata["overview"] = True  # a folder's landing page: the overview of its service
    return [Document(
        doc_id=_doc_id(meta, rel_id), kind=the_kind, title=title, body=body,
        source=str(path.resolve()), path=str(path.resolve()),
        content_hash=_hash(text, the_kind, json.dumps(metadata, sort_keys=True)), metadata=metadata,
    )]


_SECTION_FIELDS = [
    ("summary", "Summary"), ("impact", "Impact"), ("timeline", "Timeline"),
    ("root_cause", "Root cause"), ("resolution", "Resolution"),
    ("action_items", "Action items"), ("lessons", "Lessons learned"),
]


def _export_body(record: dict[str, Any]) -> str:
    for key in ("body", "markdown", "content", "text", "description"):
        if isinstance(record.get(key), str) and record[key].strip():
            return str(record[key])
    parts: list[str] = []
    for key, heading in _SECTION_FIELDS:
        value = record.get(key)
        if not value:
            continue
        if isinstance(value, list):
            lines = []
            for item in value:
                if isinstance(item, dict):
                    when = item.get("time") or item.get("at") or item.get("timestamp") or ""
                    what = item.get("event") or item.get("text") or item.get("description") or ""
                    owner = item.get("owner")
                    lines.append(f"- {when} {what}".strip() + (f" (owner: {owner})" if owner else ""))
                else:
                    lines.append(f"- {item}")
            value = "\n".join(lines)
        parts.append(f"## {heading}\n\n{value}")
    return "\n\n".join(parts)


def _parse_export(path: Path, text: str, *, rel: Path, kind: str) -> list[Document]:
    records: list[Any]
    if path.suffix.lower() in JSONL:
        records = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise IngestError(f"{path}: line {n} is not valid JSON: {exc.msg}", path=str(path),
                                  reason="json") from exc
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise IngestError(f"{path}: not valid JSON (line {exc.lineno}): {exc.msg}",
                              path=str(path), reason="json") from exc
        if isinstance(data, dict):
            for key in ("postmortems", "incidents", "documents", "items", "data"):
                if isinstance(data.get(key), list):
                    data = data[key]
                    break
        records = data if isinstance(data, list) else [data]
    docs: list[Document] = []
    for n, record in enumerate(records, 1):
        where = f"{path} record {n}"
        if not isinstance(record, dict):
            raise IngestError(f"{where}: expected a JSON object, got {type(record).__name__}",
                              path=str(path), reason="json")
        title = str(record.get("title") or record.get("name") or "").strip()
        body = _export_body(record)
        if not title or not body.strip():
            raise IngestError(f"{where}: a postmortem record needs a 'title' and a body "
                              "('body'/'text' or sections such as 'summary', 'root_cause')",
                              path=str(path), reason="json")
        rid = str(record.get("id") or record.get("incident_id") or n)
        meta = {k: v for k, v in record.items()
                if k not in {"body", "markdown", "content", "text", "description"}
                and k not in dict(_SECTION_FIELDS)}
        if "root_cause_category" not in meta and record.get("category"):
            meta["root_cause_category"] = record["category"]
        metadata = normalize_metadata(meta, source=where)
        metadata["format"] = "json"
        the_kind = str(record.get("kind") or kind)
        docs.append(Document(
            doc_id=str(record.get("id") or f"{rel.with_suffix('').as_posix()}#{rid}"),
            kind=the_kind if the_kind in KINDS else kind, title=title, body=body,
            source=f"{path.resolve()}#{rid}", path=str(path.resolve()),
            content_hash=_hash(json.dumps(record, sort_keys=True, default=str), the_kind),
            metadata=metadata,
        ))
    ids = [d.doc_id for d in docs]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise IngestError(f"{path}: duplicate record ids {', '.join(dupes[:5])}", path=str(path),
                          reason="json")
    return docs
