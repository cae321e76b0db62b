"""Raw log lines to structured records, and "what is new or spiking since the incident began".

Incident logs arrive in whatever format the system wrote: JSON, logfmt, syslog, Apache, klog,
log4j... ``parse_line`` recognises the common ones and never raises on content, so one odd line
cannot sink an upload. ``mine_patterns`` groups messages into Drain templates and ranks them by
how unusual they are in the incident window compared with the baseline before it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from copilot.errors import IngestError
from ingest.logmine import DrainMiner

LEVELS = ("TRACE", "DEBUG", "INFO", "NOTICE", "WARN", "ERROR", "CRITICAL", "FATAL")
_LEVEL_ALIASES = {"WARNING": "WARN", "ERR": "ERROR", "SEVERE": "ERROR", "CRIT": "CRITICAL",
                  "ALERT": "FATAL", "EMERG": "FATAL", "EMERGENCY": "FATAL", "PANIC": "FATAL",
                  "DBG": "DEBUG", "INF": "INFO", "WRN": "WARN", "ERRO": "ERROR", "EROR": "ERROR"}
_SYSLOG_SEVERITY = ("FATAL", "FATAL", "CRITICAL", "ERROR", "WARN", "NOTICE", "INFO", "DEBUG")
_PINO = {10: "TRACE", 20: "DEBUG", 30: "INFO", 40: "WARN", 50: "ERROR", 60: "FATAL"}
_KLOG = {"I": "INFO", "W": "WARN", "E": "ERROR", "F": "FATAL"}
_MONTHS = {m: i for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug",
                                        "Sep", "Oct", "Nov", "Dec"), start=1)}

TS_KEYS = ("ts", "time", "timestamp", "@timestamp", "t", "datetime")
LEVEL_KEYS = ("level", "lvl", "severity", "log.level", "levelname")
MESSAGE_KEYS = ("msg", "message", "log", "event")
SERVICE_KEYS = ("service", "service.name", "app", "component", "logger")

_M = r"(?P<mon>Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
_HMS = r"(?P<H>\d{2}):(?P<M>\d{2}):(?P<S>\d{2})(?:[.,](?P<frac>\d+))?"
_ISO = re.compile(r"(?P<y>\d{4})[-/](?P<m>\d{2})[-/](?P<d>\d{2})(?:[T ]" + _HMS
                  + r")?\s?(?P<tz>Z|UTC|GMT|[+-]\d{2}(?::?\d{2})?)?(?![\w:])")
_RFC5424 = re.compile(r"<(?P<pri>\d{1,3})>1 (?P<ts>\S+) \S+ (?P<app>\S+) \S+ \S+ "
                      r"(?:-|(?:\[(?:[^\]\\]|\\.)*\])+)(?: (?P<msg>.*))?$", re.DOTALL)
_RFC3164 = re.compile(r"(?:<(?P<pri>\d{1,3})>)?" + _M + r" +(?P<d>\d{1,2}) " + _HMS
                      + r" (?P<host>\S+) (?:(?P<prog>[^\s:\[]+)(?:\[\d+\])?: ?)?(?P<msg>.*)$")
_ISO_LEAD = re.compile(r"\[?" + _ISO.pattern + r"\]?\s*")
_APACHE_ERR = re.compile(r"\[(?:\w{3} )?" + _M + r" +(?P<d>\d{1,2}) " + _HMS + r" (?P<y>\d{4})\]"
                         r"\s*(?:\[(?:[\w-]+:)?(?P<lvl>\w+)\]\s*)?(?P<msg>.*)$")
_ACCESS = re.compile(r"\S+ \S+ \S+ \[(?P<d>\d{2})/" + _M + r"/(?P<y>\d{4}):" + _HMS
                     + r" (?P<tz>[+-]\d{4})\] (?P<msg>\"[^\"]*\" (?P<status>\d{3})\b.*)$")
_KLOG_RE = re.compile(r"(?P<lvl>[IWEF])(?P<m>\d{2})(?P<d>\d{2}) " + _HMS
                      + r"\s+\d+ [^\]\s]+\] ?(?P<msg>.*)$")
_HDFS = re.compile(r"(?P<y>\d{2})(?P<m>\d{2})(?P<d>\d{2}) (?P<H>\d{2})(?P<M>\d{2})(?P<S>\d{2})"
                   r" (?P<rest>.*)$")
_SYSLOG_TAG = re.compile(r"\S+ (?P<prog>[\w.\-/]+)\[\d+\]: ?(?P<msg>.*)$")
_LOGFMT = re.compile(r'([\w.@-]+)=("(?:[^"\\]|\\.)*"|\S*)')
_TOKEN = re.compile(r"\S+")


@dataclass
class ParsedLine:
    line_no: int
    ts: datetime | None  # aware, UTC
    level: str | None  # one of LEVELS
    service: str | None
    message: str
    raw: str


def normalize_level(value: Any) -> str | None:
    """Map 'warning', 'ERR', pino's 50 ... onto LEVELS so ranking and filters see one spelling."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _PINO.get(int(value))
    word = value.strip().strip("[]<>:").upper() if isinstance(value, str) else ""
    word = _LEVEL_ALIASES.get(word, word)
    return word if word in LEVELS else None


def _tz(text: str | None) -> timezone:
    if not text or text in ("Z", "UTC", "GMT"):
        return UTC  # no offset written: assume UTC, the only safe guess for a server log
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    return timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:4] or 0)))


def _dt(y: int, mo: int, d: int, g: dict[str, str | None], tz: str | None = None) -> datetime:
    frac = (g.get("frac") or "")[:6].ljust(6, "0")
    local = datetime(y, mo, d, int(g.get("H") or 0), int(g.get("M") or 0), int(g.get("S") or 0),
                     int(frac), tzinfo=_tz(tz))
    return local.astimezone(UTC)


def _year(mon: int, day: int, default_year: int | None) -> int:
    """Formats without a year (syslog, klog): the given year, else the latest not in the future."""
    if default_year is not None:
        return default_year
    now = datetime.now(UTC)
    return now.year - 1 if (mon, day) > (now.month, now.day + 1) else now.year


def parse_timestamp(value: Any) -> datetime | None:
    """An RFC 3339 / ISO-8601 string or epoch seconds/ms/us/ns number as an aware UTC datetime."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str) and re.fullmatch(r"\d{9,19}(?:\.\d+)?", value.strip()):
        value = float(value)
    if isinstance(value, int | float):
        v = float(value)
        for limit, scale in ((1e17, 1e9), (1e14, 1e6), (1e11, 1e3)):
            if abs(v) >= limit:
                v /= scale
                break
        return datetime.fromtimestamp(v, UTC)
    m = _ISO.match(value.strip()) if isinstance(value, str) else None
    return _dt(int(m["y"]), int(m["m"]), int(m["d"]), m.groupdict(), m["tz"]) if m else None


def _get(fields: dict[str, Any], key: str) -> Any:
    """A flat key ("log.level") or the same path through nested objects ({"log": {"level"}})."""
    if key in fields:
        return fields[key]
    node: Any = fields
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _first(fields: dict[str, Any], keys: Iterable[str]) -> tuple[str | None, Any]:
    for key in keys:
        value = _get(fields, key)
        if value is not None and not isinstance(value, dict | list):
            return key, value
    return None, None


def _from_fields(fields: dict[str, Any], line: str) -> tuple[Any, ...]:
    """JSON objects and logfmt pairs share one key vocabulary."""
    used: set[str] = set()
    ts_key, ts_val = _first(fields, TS_KEYS)
    ts = parse_timestamp(ts_val)
    level_key, level_val = _first(fields, LEVEL_KEYS)
    msg_key, msg = _first(fields, MESSAGE_KEYS)
    svc_key, service = _first(fields, SERVICE_KEYS)
    used.update(k.split(".")[0] for k in (ts_key, level_key, msg_key, svc_key) if k)
    if msg is None:  # no message field: keep the rest of the record, so it can still be mined
        rest = {k: v for k, v in fields.items() if k not in used}
        msg = " ".join(f"{k}={json.dumps(v) if isinstance(v, dict | list) else v}"
                       for k, v in rest.items()) or line
    return ts, normalize_level(level_val), str(service) if service is not None else None, str(msg)


def _logfmt(text: str) -> dict[str, Any] | None:
    pairs = _LOGFMT.findall(text)
    if len(pairs) < 2:
        return None
    fields: dict[str, Any] = {}
    for key, value in pairs:
        if value.startswith('"'):
            try:
                value = json.loads(value)
            except ValueError:
                value = value.strip('"')
        fields[key] = value
    known = set(TS_KEYS) | set(LEVEL_KEYS) | set(MESSAGE_KEYS)
    return fields if known & fields.keys() else None


def _level_rest(rest: str, *, scan: int = 4) -> tuple[str | None, str | None, str]:
    """Find the level among the first tokens after a timestamp ("WARN [main] ...", "- app -
    WARNING - ...", "[error] ...", "level=warn ..."). Words count only when upper-case,
    bracketed, colon-ended or key=value, so prose like "Error connecting" keeps its word."""
    for i, tok in enumerate(_TOKEN.finditer(rest)):
        if i >= scan:
            break
        word = tok.group()
        key, _, val = word.partition("=")
        keyed = key.lower() in ("level", "lvl", "severity") and bool(val)
        candidate = val if keyed else word
        if not (keyed or candidate.startswith("[") or candidate.endswith(":")
                or candidate.isupper()):
            continue
        level = normalize_level(candidate)
        if level:
            prefix = [t for t in rest[: tok.start()].split()
                      if t not in ("-", "|", ":") and not t.isdigit() and not t.startswith("[")]
            service = prefix[0] if len(prefix) == 1 else None
            return level, service, rest[tok.end():].lstrip(" -:|\t")
    return None, None, rest


def _parse(text: str, default_year: int | None) -> tuple[Any, ...] | None:
    """(ts, level, service, message) for the first format that matches, or None."""
    if text.startswith("{"):
        try:
            fields = json.loads(text)
        except ValueError:
            fields = None
        if isinstance(fields, dict):
            return _from_fields(fields, text)
    if m := _RFC5424.match(text):
        app = m["app"] if m["app"] != "-" else None
        return (parse_timestamp(m["ts"]), _SYSLOG_SEVERITY[int(m["pri"]) % 8], app,
                (m["msg"] or "").lstrip("\ufeff"))
    if m := _ISO_LEAD.match(text):
        ts = _dt(int(m["y"]), int(m["m"]), int(m["d"]), m.groupdict(), m["tz"])
        rest = text[m.end():]
        if (fields := _logfmt(rest)) is not None:
            return (ts, *_from_fields(fields, rest)[1:])
        level, service, msg = _level_rest(rest)
        if level is None and (tag := _SYSLOG_TAG.match(rest)):
            return ts, None, tag["prog"], tag["msg"]
        return ts, level, service, msg
    if m := _KLOG_RE.match(text):
        mon, day = int(m["m"]), int(m["d"])
        ts = _dt(_year(mon, day, default_year), mon, day, m.groupdict())
        return ts, _KLOG[m["lvl"]], None, m["msg"]
    if m := _HDFS.match(text):
        ts = _dt(2000 + int(m["y"]), int(m["m"]), int(m["d"]), m.groupdict())
        level, _, msg = _level_rest(m["rest"], scan=2)
        return ts, level, None, msg if level else m["rest"]
    if m := _APACHE_ERR.match(text):
        ts = _dt(int(m["y"]), _MONTHS[m["mon"]], int(m["d"]), m.groupdict())
        return ts, normalize_level(m["lvl"]), None, m["msg"]
    if m := _ACCESS.match(text):
        ts = _dt(int(m["y"]), _MONTHS[m["mon"]], int(m["d"]), m.groupdict(), m["tz"])
        status = int(m["status"])
        level = "ERROR" if status >= 500 else "WARN" if status >= 400 else "INFO"
        return ts, level, None, m["msg"]
    if m := _RFC3164.match(text):
        mon, day = _MONTHS[m["mon"]], int(m["d"])
        ts = _dt(_year(mon, day, default_year), mon, day, m.groupdict())
        if m["pri"]:
            return ts, _SYSLOG_SEVERITY[int(m["pri"]) % 8], m["prog"], m["msg"]
        level, _, msg = _level_rest(m["msg"], scan=1)
        return ts, level, m["prog"], msg
    if (fields := _logfmt(text)) is not None:
        return _from_fields(fields, text)
    level, _, msg = _level_rest(text, scan=1)
    return (None, level, None, msg) if level else None


def parse_line(raw: str, *, line_no: int, default_year: int | None = None,
               default_service: str | None = None) -> ParsedLine:
    """One line to a ParsedLine. Unrecognised or malformed content (bad JSON, Feb 30, absurd
    epochs) degrades to ``ts=None, level=None, message=<the line>`` rather than raising."""
    raw = raw.rstrip("\r\n")
    text = raw.strip()
    try:
        parsed = _parse(text, default_year)
    except (ValueError, TypeError, KeyError, OverflowError, OSError, RecursionError):
        parsed = None
    ts, level, service, message = parsed or (None, None, None, text)
    return ParsedLine(line_no=line_no, ts=ts, level=level, service=service or default_service,
                      message=str(message).strip() or text, raw=raw)


def _clip(data: bytes, size: int, limit: int) -> str:
    """Cut at a UTF-8 boundary and say how much was dropped, so nobody mistakes it for the end.
    ``size`` is the line's full length; ``data`` may be only its head."""
    if size <= limit:
        return data.decode("utf-8", "replace")
    cut = min(limit, len(data) - 1)
    while cut > 0 and (data[cut] & 0xC0) == 0x80:
        cut -= 1
    return data[:cut].decode("utf-8", "replace") + f" [...truncated {size - cut} bytes]"


def _file_lines(path: Path, limit: int) -> Iterator[tuple[bytes, int]]:
    """(head, full length) per line, holding at most ``limit + 1`` bytes of a line in memory
    so one huge line cannot exhaust it."""
    try:
        with path.open("rb") as fh:
            while chunk := fh.readline(limit + 1):
                size = len(chunk)
                if size > limit and not chunk.endswith(b"\n"):
                    while more := fh.readline(1 << 16):
                        size += len(more.rstrip(b"\r\n"))
                        if more.endswith(b"\n"):
                            break
                    yield chunk, size
                else:
                    line = chunk.rstrip(b"\r\n")
                    yield line, len(line)
    except OSError as exc:
        raise IngestError(f"cannot read log file {path}: {exc.strerror or exc}", path=str(path),
                          reason="unreadable") from exc


def read_lines(source: str | Path | Iterable[str], *, max_lines: int = 1_000_000,
               max_line_bytes: int = 64_000, default_year: int | None = None,
               default_service: str | None = None) -> Iterator[ParsedLine]:
    """Parse a log file (a ``str``/``Path`` is a path) or an iterable of lines, lazily.

    ``line_no`` is the 1-based physical line, blank lines included (and skipped). Bytes that are
    not UTF-8 become U+FFFD. Reading more than ``max_lines`` lines raises IngestError "oversized"
    once the limit is passed; a missing file raises "unreadable" at call time."""
    path: str | None = None
    if isinstance(source, str | Path):
        p = Path(source)
        path = str(p)
        if not p.is_file():
            raise IngestError(f"log file not found or not a file: {p}", path=path,
                              reason="unreadable")
        chunks: Iterable[tuple[bytes, int]] = _file_lines(p, max_line_bytes)
    else:
        encoded = (s.rstrip("\r\n").encode("utf-8", "replace") for s in source)
        chunks = ((b, len(b)) for b in encoded)
    return _iter(chunks, path, max_lines, max_line_bytes, default_year, default_service)


def _iter(chunks: Iterable[tuple[bytes, int]], path: str | None, max_lines: int, max_line_bytes: int,
          default_year: int | None, default_service: str | None) -> Iterator[ParsedLine]:
    for n, (data, size) in enumerate(chunks, start=1):
        if n > max_lines:
            raise IngestError(f"log has more than {max_lines} lines; split it or raise max_lines",
                              path=path, reason="oversized")
        text = _clip(data, size, max_line_bytes)
        if text.strip():
            yield parse_line(text, line_no=n, default_year=default_year,
                             default_service=default_service)


LEVEL_WEIGHT = {"TRACE": 0.5, "DEBUG": 0.5, "INFO": 1.0, "NOTICE": 1.25, "WARN": 2.0,
                "ERROR": 3.0, "CRITICAL": 4.0, "FATAL": 4.0}


@dataclass
class PatternStat:
    template_id: int
    template: str
    count: int
    baseline_count: int
    incident_count: int
    first_seen: datetime | None
    last_seen: datetime | None
    level: str | None
    sample_line_nos: list[int] = field(default_factory=list)
    score: float = 0.0
    is_new: bool = False


def score_pattern(incident_count: int, baseline_count: int, *, incident_minutes: float,
                  baseline_minutes: float, level: str | None) -> float:
    """How unusual a pattern is in the incident window.

    ``ratio = ((i + 1) / Ti) / ((b + 1) / Tb)``: the add-one-smoothed per-minute rate in the
    incident window over the rate in the baseline (Ti, Tb = window spans in minutes, each at
    least 1). ``score = w(level) * log1p(ratio)``, w = 0.5 TRACE/DEBUG, 1 INFO, 1.25 NOTICE,
    2 WARN, 3 ERROR, 4 CRITICAL/FATAL (1 if unknown). A steady pattern scores ~0.69 w.
    A new pattern (b = 0) scores ``w * max(log1p(ratio), 1 + log1p(i))``: the floor keeps
    novelty on top when the baseline is short. Monotone: up in i, down in b, including the step
    from b = 0 to b = 1 (the b = 0 ratio is at least twice the b = 1 one).
    """
    ti, tb = max(incident_minutes, 1.0), max(baseline_minutes, 1.0)
    ratio = ((incident_count + 1) / ti) / ((baseline_count + 1) / tb)
    base = math.log1p(ratio)
    if baseline_count == 0 and incident_count > 0:
        base = max(base, 1.0 + math.log1p(incident_count))
    return LEVEL_WEIGHT.get(level or "", 1.0) * base


def mine_patterns(lines: Iterable[ParsedLine], *, incident_start: datetime | None,
                  miner: DrainMiner | None = None) -> list[PatternStat]:
    """Group messages into templates and rank them new-or-spiking first (see score_pattern).

    Lines before ``incident_start`` are baseline; lines at/after it, and lines without a
    timestamp, are incident. With no ``incident_start`` every line is incident, so every pattern
    is "new" and the ranking is by level and volume."""
    miner = miner or DrainMiner()
    if incident_start is not None and incident_start.tzinfo is None:
        incident_start = incident_start.replace(tzinfo=UTC)
    baseline: dict[int, int] = {}
    incident: dict[int, int] = {}
    first: datetime | None = None
    last: datetime | None = None
    for line in lines:
        tpl = miner.add(line.message, line_id=line.line_no, when=line.ts, level=line.level)
        if line.ts is not None:
            first = line.ts if first is None else min(first, line.ts)
            last = line.ts if last is None else max(last, line.ts)
        before = incident_start is not None and line.ts is not None and line.ts < incident_start
        counts = baseline if before else incident
        counts[tpl.id] = counts.get(tpl.id, 0) + 1
    tb = ti = 1.0
    if incident_start is not None and first is not None and last is not None:
        tb = (incident_start - first).total_seconds() / 60
        ti = (last - incident_start).total_seconds() / 60
    stats = []
    for tpl in miner.templates:
        b, i = baseline.get(tpl.id, 0), incident.get(tpl.id, 0)
        if b + i == 0:
            continue  # a template a caller-supplied miner learned from other lines
        stats.append(PatternStat(
            template_id=tpl.id, template=tpl.text, count=b + i, baseline_count=b,
            incident_count=i, first_seen=tpl.first_seen, last_seen=tpl.last_seen,
            level=tpl.level, sample_line_nos=list(tpl.samples), is_new=b == 0,
            score=score_pattern(i, b, incident_minutes=ti, baseline_minutes=tb, level=tpl.level)))
    stats.sort(key=lambda s: (-s.score, -s.count, s.template_id))
    return stats
