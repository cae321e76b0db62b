"""Monitoring-tool webhook payloads to normalized :class:`AlertEvent` values.

Each parser reads a payload exactly as its tool sends it, so the copilot can react to live
alerts without an adapter in between. Parsing is all-or-nothing: any bad field raises
``IngestError`` (reason "json", "schema", "source" or "oversized") naming that field, e.g.
``alertmanager payload: alerts[2].startsAt: not an RFC 3339 time: 'yesterday'``.

Sources:

* ``alertmanager``: Prometheus Alertmanager webhook, ``"version": "4"`` only.
* ``grafana``: Grafana (unified) alerting webhook, ``"version": "1"``. Alert ``values``,
  ``valueString`` and the non-empty URLs are kept as annotations under their own names.
* ``pagerduty``: PagerDuty V3 webhook. Only events whose ``event.data`` is an incident give an
  event; others (``service.*``, ``pagey.ping``, incident notes, responders and status
  updates, which carry no incident state) give ``[]``.
* ``generic``: our own format, one alert object or ``{"alerts": [<alert>, ...]}``::

      {"name": "CheckoutLatencyHigh",       # required, non-empty
       "status": "firing",                  # "firing" (default) | "resolved"
       "severity": "critical",              # optional; else labels.severity / .priority
       "service": "checkout",               # optional; else derived from labels (below)
       "labels": {"team": "payments"},      # optional, string values only
       "annotations": {"runbook_url": "…"}, # optional, string values only
       "summary": "…", "description": "…",  # optional, stored as annotations (they win)
       "starts_at": "2026-11-27T14:02:03Z", # optional RFC 3339 with Z or an offset
       "ends_at": null,                     # optional
       "fingerprint": "…"}                  # optional; else a hash of name + sorted labels

Mapping rules: ``severity`` is the ``severity`` label, else ``priority`` (PagerDuty: the
priority name such as "P1", else the urgency). ``service`` is the first of the labels in
``SERVICE_LABELS`` whose value is not a scrape exporter such as kube-state-metrics (in
kube-prometheus those labels name the exporter, not the broken workload), else the first
candidate at all; PagerDuty uses ``service.summary``.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from copilot.errors import IngestError

SOURCES = ("alertmanager", "grafana", "pagerduty", "generic")
SERVICE_LABELS = ("service", "app_kubernetes_io_name", "app.kubernetes.io/name", "app",
                  "application", "job", "container", "namespace")
_EXPORTERS = ("kube-state-metrics", "node-exporter", "blackbox-exporter", "kubelet", "cadvisor")
_STATUSES = ("firing", "resolved")
_PD_STATUSES = ("triggered", "acknowledged", "resolved")
_TIME = re.compile(r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
                   r"(?:([Zz])|([+-])(\d{2}):?(\d{2}))")
_KINDS: dict[type, str] = {dict: "an object", list: "a list", str: "a string", int: "an integer"}


@dataclass(frozen=True)
class AlertEvent:
    source: str  # "alertmanager" | "grafana" | "pagerduty" | "generic"
    fingerprint: str  # stable id of the alert across deliveries
    name: str  # alertname / title
    status: str  # "firing" | "resolved"
    severity: str | None  # raw severity label/priority as sent (e.g. "critical", "P1", "high")
    service: str | None  # from labels service/app/job/namespace-ish, or PagerDuty service
    group_key: str | None  # Alertmanager/Grafana groupKey, PagerDuty incident id
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime | None  # timezone-aware UTC
    ends_at: datetime | None  # timezone-aware UTC
    received_payload_index: int  # position in the payload's alert list


def _bad(field: str, problem: str) -> IngestError:
    return IngestError(f"{field}: {problem}", reason="schema")


def _describe(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _get(obj: dict[str, Any], key: str, path: str, kind: type, *, required: bool = False) -> Any:
    """``obj[key]`` checked against ``kind``; a missing or null optional field is None."""
    field = f"{path}.{key}" if path else key
    value = obj.get(key)
    if value is None:
        if required:
            raise _bad(field, "required field is missing" if key not in obj else "must not be null")
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _bad(field, f"expected {_KINDS[kind]}, got {_describe(value)}")
    return value


def _str_map(obj: dict[str, Any], key: str, path: str, *, required: bool = False) -> dict[str, str]:
    """A label/annotation map: Alertmanager and Grafana only ever send string values."""
    mapping = _get(obj, key, path, dict, required=required) or {}
    field = f"{path}.{key}" if path else key
    for k, v in mapping.items():
        if not isinstance(v, str):
            raise _bad(f"{field}.{k}", f"expected a string, got {_describe(v)}")
    return dict(mapping)


def _one_of(obj: dict[str, Any], key: str, path: str, allowed: tuple[str, ...],
            default: str | None = None) -> str:
    value = _get(obj, key, path, str, required=default is None) or default
    if value not in allowed:
        raise _bad(f"{path}.{key}" if path else key,
                   f"expected one of {', '.join(allowed)}, got {value!r}")
    return value


def parse_time(value: Any, field: str) -> datetime | None:
    """RFC 3339 / ISO 8601 with ``Z`` or an offset, as aware UTC. Go's zero time (Alertmanager's
    "no end yet") and None give None; nanoseconds are truncated to microseconds."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise _bad(field, f"expected an RFC 3339 time string, got {_describe(value)}")
    m = _TIME.fullmatch(value.strip())
    if not m:
        raise _bad(field, f"not an RFC 3339 time: {value!r}")
    year, month, day, hour, minute, second, frac, _z, sign, off_h, off_m = m.groups()
    offset = timedelta(0)
    if sign:
        offset = timedelta(hours=int(off_h), minutes=int(off_m))
        offset = -offset if sign == "-" else offset
    try:
        local = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second),
                         int((frac or "0")[:6].ljust(6, "0")), tzinfo=timezone(offset))
        if not offset and local == datetime(1, 1, 1, tzinfo=UTC):
            return None  # Go's time.Time{}: Alertmanager's "has not ended"
        return local.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise _bad(field, f"not an RFC 3339 time: {value!r} ({exc})") from exc


def _fingerprint(name: str, labels: dict[str, str]) -> str:
    """Stable across deliveries and processes: only the name and sorted labels go in."""
    raw = json.dumps([name, sorted(labels.items())], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:16]


def _is_exporter(value: str) -> bool:
    return any(value == e or value.endswith(f"-{e}") for e in _EXPORTERS)


def service_from_labels(labels: dict[str, str]) -> str | None:
    """The affected service, skipping labels that only name the scrape exporter."""
    found = [labels[k] for k in SERVICE_LABELS if labels.get(k)]
    return next((v for v in found if not _is_exporter(v)), found[0] if found else None)


def _severity(labels: dict[str, str]) -> str | None:
    return labels.get("severity") or labels.get("priority") or None


def _prometheus_alerts(source: str, payload: dict[str, Any]) -> list[AlertEvent]:
    """Alertmanager and Grafana share the webhook shape; Grafana adds values and URLs."""
    version = _get(payload, "version", "", str, required=True)
    expected = "4" if source == "alertmanager" else "1"
    if version != expected:
        other = {"1": " (a Grafana payload? use source 'grafana')",
                 "4": " (an Alertmanager payload? use source 'alertmanager')"}.get(version, "")
        raise _bad("version", f"unsupported webhook version {version!r}; only "
                              f"{expected!r} is understood{other}")
    _one_of(payload, "status", "", _STATUSES)
    group_key = _get(payload, "groupKey", "", str, required=True)
    for key in ("receiver", "externalURL") + (("title", "state", "message")
                                              if source == "grafana" else ()):
        _get(payload, key, "", str)
    for key in ("groupLabels", "commonLabels", "commonAnnotations"):
        _str_map(payload, key, "")
    _get(payload, "truncatedAlerts", "", int)
    if source == "grafana":
        _get(payload, "orgId", "", int)
    events = []
    for i, alert in enumerate(_get(payload, "alerts", "", list, required=True)):
        path = f"alerts[{i}]"
        if not isinstance(alert, dict):
            raise _bad(path, f"expected an object, got {_describe(alert)}")
        labels = _str_map(alert, "labels", path, required=True)
        if not labels.get("alertname"):
            raise _bad(f"{path}.labels.alertname", "required label is missing or empty")
        annotations = _str_map(alert, "annotations", path)
        extras = ["generatorURL"]
        if source == "grafana":
            extras += ["silenceURL", "dashboardURL", "panelURL", "valueString"]
            values = _get(alert, "values", path, dict)
            for k, v in (values or {}).items():
                if not isinstance(v, (int, float)) or isinstance(v, bool):
                    raise _bad(f"{path}.values.{k}", f"expected a number, got {_describe(v)}")
            if values:
                annotations.setdefault("values", json.dumps(values, sort_keys=True))
        for key in extras:
            if text := _get(alert, key, path, str):
                annotations.setdefault(key, text)
        events.append(AlertEvent(
            source=source,
            fingerprint=_get(alert, "fingerprint", path, str) or _fingerprint(
                labels["alertname"], labels),
            name=labels["alertname"],
            status=_one_of(alert, "status", path, _STATUSES),
            severity=_severity(labels),
            service=service_from_labels(labels),
            group_key=group_key,
            labels=labels,
            annotations=annotations,
            starts_at=parse_time(_get(alert, "startsAt", path, str, required=True),
                                 f"{path}.startsAt"),
            ends_at=parse_time(alert.get("endsAt"), f"{path}.endsAt"),
            received_payload_index=i,
        ))
    return events


def _pagerduty(payload: dict[str, Any]) -> list[AlertEvent]:
    """One V3 webhook carries one event; only incident state changes become alerts."""
    event = _get(payload, "event", "", dict, required=True)
    event_type = _get(event, "event_type", "event", str, required=True)
    data = _get(event, "data", "event", dict)
    if _get(event, "resource_type", "event", str) != "incident" or data is None \
            or data.get("type") != "incident":
        return []
    path = "event.data"
    incident_id = _get(data, "id", path, str)
    incident_key = _get(data, "incident_key", path, str)
    if not (incident_id or incident_key):
        raise _bad(f"{path}.id", "required field is missing (and no incident_key either)")
    pd_status = _one_of(data, "status", path, _PD_STATUSES)
    title = _get(data, "title", path, str, required=True)
    service = _get(data, "service", path, dict) or {}
    priority = _get(data, "priority", path, dict) or {}
    priority_name = _get(priority, "summary", f"{path}.priority", str)
    urgency = _get(data, "urgency", path, str)
    number = _get(data, "number", path, int)
    resolved = event_type == "incident.resolved" or pd_status == "resolved"
    labels = {"event_type": event_type, "pagerduty_status": pd_status}
    for key, value in (("urgency", urgency), ("priority", priority_name),
                       ("service_id", _get(service, "id", f"{path}.service", str)),
                       ("incident_number", None if number is None else str(number))):
        if value:
            labels[key] = value
    assignees = [a.get("summary") for a in data.get("assignees") or []
                 if isinstance(a, dict) and isinstance(a.get("summary"), str)]
    if assignees:  # who was paged: needed to keep their names out of customer drafts
        labels["assignee"] = ", ".join(assignees)
    annotations = {"summary": title}
    for key in ("html_url", "incident_key", "resolve_reason"):
        if value := _get(data, key, path, str):
            annotations[key] = value
    occurred_at = parse_time(_get(event, "occurred_at", "event", str), "event.occurred_at")
    return [AlertEvent(
        source="pagerduty",
        fingerprint=f"pagerduty:{incident_id or incident_key}",
        name=title,
        status="resolved" if resolved else "firing",
        severity=priority_name or urgency,
        service=_get(service, "summary", f"{path}.service", str),
        group_key=incident_id,
        labels=labels,
        annotations=annotations,
        starts_at=parse_time(_get(data, "created_at", path, str), f"{path}.created_at"),
        ends_at=occurred_at if resolved else None,
        received_payload_index=0,
    )]


def _generic(payload: dict[str, Any]) -> list[AlertEvent]:
    """Our documented format (module docstring): the fallback for tools without a parser."""
    if "alerts" in payload:
        items = _get(payload, "alerts", "", list, required=True)
        paths = [f"alerts[{i}]" for i in range(len(items))]
    else:
        items, paths = [payload], [""]
    events = []
    for i, (alert, path) in enumerate(zip(items, paths, strict=True)):
        if not isinstance(alert, dict):
            raise _bad(path, f"expected an object, got {_describe(alert)}")
        name = _get(alert, "name", path, str, required=True).strip()
        if not name:
            raise _bad(f"{path}.name" if path else "name", "must not be empty")
        labels = _str_map(alert, "labels", path)
        annotations = _str_map(alert, "annotations", path)
        for key in ("summary", "description"):
            if text := _get(alert, key, path, str):
                annotations[key] = text
        prefix = f"{path}." if path else ""
        events.append(AlertEvent(
            source="generic",
            fingerprint=_get(alert, "fingerprint", path, str) or _fingerprint(name, labels),
            name=name,
            status=_one_of(alert, "status", path, _STATUSES, default="firing"),
            severity=_get(alert, "severity", path, str) or _severity(labels),
            service=_get(alert, "service", path, str) or service_from_labels(labels),
            group_key=None,
            labels=labels,
            annotations=annotations,
            starts_at=parse_time(alert.get("starts_at"), f"{prefix}starts_at"),
            ends_at=parse_time(alert.get("ends_at"), f"{prefix}ends_at"),
            received_payload_index=i,
        ))
    return events


def _load(body: bytes | str | dict[str, Any], max_bytes: int) -> dict[str, Any]:
    """Size-check then decode. A dict was already decoded by the caller, so has no size here."""
    if isinstance(body, dict):
        payload: Any = body
    elif isinstance(body, (bytes, bytearray, str)):
        raw = body.encode("utf-8") if isinstance(body, str) else bytes(body)
        if len(raw) > max_bytes:
            raise IngestError(f"body is {len(raw):,} bytes, over the {max_bytes:,}-byte limit",
                              reason="oversized")
        try:
            payload = json.loads(raw)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
            raise IngestError(f"not valid JSON: {exc}", reason="json") from exc
    else:
        raise IngestError(f"body must be bytes, str or dict, got {_describe(body)}",
                          reason="schema")
    if not isinstance(payload, dict):
        raise _bad("(top level)", f"expected a JSON object, got {_describe(payload)}")
    return payload


def parse_alert_payload(source: str, body: bytes | str | dict[str, Any], *,
                        max_bytes: int = 1_000_000) -> list[AlertEvent]:
    """All alerts in one webhook delivery from ``source``, or ``IngestError`` and nothing."""
    if source not in SOURCES:
        raise IngestError(f"unknown alert source {source!r}; known sources: "
                          f"{', '.join(SOURCES)}", reason="source")
    try:
        payload = _load(body, max_bytes)
        if source == "pagerduty":
            return _pagerduty(payload)
        if source == "generic":
            return _generic(payload)
        return _prometheus_alerts(source, payload)
    except IngestError as exc:
        raise IngestError(f"{source} payload: {exc}", path=exc.path, reason=exc.reason) from exc
