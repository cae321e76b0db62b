"""Queries built from an alert: labels, annotations and its expression, as monitoring tools
send them. The dense side gets readable prose; the lexical side also gets identifiers."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_TEMPLATE = re.compile(r"\{\{.*?\}\}", re.DOTALL)
_URL = re.compile(r"https?://\S+")
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
_METRIC = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?=\{|\[|\)|\s*(?:[<>=!]=?|$))")
_PROMQL_WORDS = frozenset(
    ["sum", "by", "without", "on", "ignoring", "group_left", "group_right", "rate", "irate", "increase", "avg", "min", "max", "count", "topk", "bottomk", "quantile", "histogram_quantile", "absent", "absent_over_time", "max_over_time", "min_over_time", "avg_over_time", "sum_over_time", "count_over_time", "delta", "deriv", "predict_linear", "label_replace", "label_join", "vector", "scalar", "time", "clamp_min", "clamp_max", "and", "or", "unless", "offset", "bool", "le", "job", "instance"]
)
# Labels that say how to route or page, not what is wrong: they add noise to a query.
_ROUTING_LABELS = frozenset(
    {"severity", "pager", "alert_type", "window", "slo_alert", "user_impacting", "aggregation",
     "rules_domain", "incident_project", "env", "environment", "prometheus", "receiver",
     "alertstate", "namespace", "instance", "job", "pod", "container"}
)
_LINK_ANNOTATIONS = ("runbook_url", "runbook", "grafana_dashboard_link", "dashboard_url",
                     "link", "url", "promql_template_1", "promql_query")


_SERVICE_LABELS = ("service", "type", "app", "application", "component", "service_name")
_SERVICE_IN_TEXT = re.compile(r"\b(?:the\s+)?`?([A-Za-z][\w.-]{1,40})`?\s+service\b", re.IGNORECASE)


@dataclass(frozen=True)
class AlertQuery:
    dense: str
    lexical: str
    services: tuple[str, ...] = ()  # service names the alert states (labels, "the X service")
    alerts: tuple[str, ...] = ()  # the alert name, when the query may use it

    def resolve_services(self, known: set[str]) -> tuple[str, ...]:
        """The stated services that the knowledge base knows, compared by normalized name.
        (Guessing a service from the alert name's first words was measured and hurt.)"""
        norm = [re.sub(r"[^a-z0-9]", "", s.lower()) for s in self.services]
        return tuple(dict.fromkeys(n for n in norm if n in known))


def split_identifier(name: str) -> str:
    """``KubePodCrashLooping`` → ``Kube Pod Crash Looping``; snake_case likewise."""
    words: list[str] = []
    for part in re.split(r"[_\-.:\s]+", name):
        words.extend(_CAMEL.findall(part) or [part])
    return " ".join(w for w in words if w)


def clean_text(text: str) -> str:
    text = _TEMPLATE.sub(" ", text)
    text = _URL.sub(" ", text)
    return re.sub(r"\s+", " ", text).strip()


def expression_terms(expr: str) -> list[str]:
    """Metric names and label values from a PromQL expression, minus its operators."""
    expr = re.sub(r"#.*", " ", expr)
    names = [m for m in _METRIC.findall(expr) if m.lower() not in _PROMQL_WORDS and not m.isdigit()]
    values = re.findall(r'=~?\s*"([^"]{2,60})"', expr)
    seen: dict[str, None] = {}
    for term in names + values:
        seen.setdefault(term, None)
    return list(seen)


def build_alert_query(
    alert: Mapping[str, Any], *, include_name: bool = True, include_labels: bool = True,
    include_expr: bool = True,
) -> AlertQuery:
    """Turn an alert into query text. With ``include_name=False`` the alert name is removed
    from every field, so the query must be answered from what the alert says."""
    labels: Mapping[str, Any] = alert.get("labels") or {}
    annotations: Mapping[str, Any] = alert.get("annotations") or {}
    name = str(labels.get("alertname") or alert.get("alertname") or "")

    def scrub(text: str) -> str:
        text = clean_text(str(text))
        if not include_name and name:
            text = re.sub(re.escape(name), " ", text, flags=re.IGNORECASE)
        return text

    prose: list[str] = []
    for key in ("summary", "title", "message", "description"):
        if annotations.get(key):
            prose.append(scrub(annotations[key]))
    for key, value in annotations.items():
        if key not in ("summary", "title", "message", "description") and key not in _LINK_ANNOTATIONS \
                and isinstance(value, str) and len(value) < 300 and re.search(r"[A-Za-z]{3}", value):
            prose.append(scrub(value))
    label_terms: list[str] = []
    if include_labels:
        for key, value in labels.items():
            if key == "alertname" or key in _ROUTING_LABELS or not isinstance(value, str):
                continue
            label_terms.append(scrub(value))
    expr_terms = expression_terms(str(alert.get("expr") or "")) if include_expr else []
    if not include_name and name:
        expr_terms = [t for t in expr_terms if name.lower() not in t.lower()]

    services: list[str] = []
    if include_labels:
        services += [str(labels[k]) for k in _SERVICE_LABELS if isinstance(labels.get(k), str)]
    for text in prose:
        services += [m for m in _SERVICE_IN_TEXT.findall(text) if m.lower() not in ("the", "a")]

    head = [name, split_identifier(name)] if include_name and name else []
    dense = ". ".join(p for p in [" ".join(head[1:]), *prose, " ".join(label_terms)] if p)
    lexical = " ".join([*head, *prose, *label_terms, *expr_terms])
    return AlertQuery(dense=dense.strip() or lexical.strip(), lexical=lexical.strip(),
                      services=tuple(dict.fromkeys(services)),
                      alerts=(name,) if include_name and name else ())
