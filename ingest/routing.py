"""Routing rules: when an alert attaches to an open incident, when it opens one, and with what
severity. Read from a YAML file the user writes (``COPILOT_ROUTING_FILE``); the defaults below
apply when there is none.

```yaml
window_minutes: 60        # an open incident active this recently can take the alert
match_on: [service, group]
severity:
  labels: [severity, priority, urgency]   # first label present wins
  map: {critical: SEV1, high: SEV2, warning: SEV3, info: SEV4}
  default: SEV3
rules:                    # checked in order; the first whose `match` fits decides
  - match: {alertname: Watchdog}
    action: ignore        # stored, never opens or joins an incident
  - match: {service: payments-gateway}
    severity: SEV1
```
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, Field, ValidationError

from copilot.errors import ConfigError
from copilot.models import Severity

DEFAULT_SEVERITY_MAP = {
    "critical": "SEV1", "crit": "SEV1", "page": "SEV1", "emergency": "SEV1", "p1": "SEV1",
    "s1": "SEV1", "sev1": "SEV1", "high": "SEV2", "error": "SEV2", "major": "SEV2", "p2": "SEV2",
    "s2": "SEV2", "sev2": "SEV2", "warning": "SEV3", "warn": "SEV3", "medium": "SEV3",
    "minor": "SEV3", "p3": "SEV3", "s3": "SEV3", "sev3": "SEV3", "low": "SEV4", "info": "SEV4",
    "none": "SEV4", "p4": "SEV4", "p5": "SEV4", "s4": "SEV4", "sev4": "SEV4",
}


class SeverityMapping(BaseModel):
    labels: list[str] = ["severity", "priority", "urgency"]
    map: dict[str, Severity] = Field(default_factory=lambda: {
        k: Severity(v) for k, v in DEFAULT_SEVERITY_MAP.items()})
    default: Severity = Severity.SEV3


class Rule(BaseModel):
    match: dict[str, str]
    action: Literal["route", "ignore"] = "route"
    severity: Severity | None = None


class RoutingRules(BaseModel):
    window_minutes: int = Field(default=60, ge=1, le=7 * 24 * 60)
    match_on: list[Literal["service", "group"]] = ["service", "group"]
    severity: SeverityMapping = SeverityMapping()
    rules: list[Rule] = []

    def first_rule(self, fields: dict[str, str]) -> Rule | None:
        for rule in self.rules:
            if all(fields.get(k) == v for k, v in rule.match.items()):
                return rule
        return None

    def severity_for(self, fields: dict[str, str]) -> tuple[Severity, str]:
        """The severity and a human reason for it."""
        rule = self.first_rule(fields)
        if rule and rule.severity:
            return rule.severity, f"rule {rule.match} sets {rule.severity.value}"
        lowered = {k.lower(): v for k, v in self.severity.map.items()}
        for label in self.severity.labels:
            value = fields.get(label)
            if value and value.lower() in lowered:
                sev = lowered[value.lower()]
                return sev, f"label {label}={value} maps to {sev.value}"
        return self.severity.default, f"no severity label mapped: default {self.severity.default.value}"


def load_rules(path: Path | None) -> RoutingRules:
    if path is None:
        return RoutingRules()
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"routing rules {path}: cannot read: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"routing rules {path}: invalid YAML: {exc}") from exc
    try:
        return RoutingRules.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"routing rules {path}: {problems}") from exc
