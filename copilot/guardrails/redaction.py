"""Redaction of secrets and personal or internal identifiers before text goes to a model
outside the process.

Each distinct value becomes a stable placeholder (``[EMAIL_1]``, ``[IP_2]``...) so a model can
still tell two hosts apart; ``restore`` maps placeholders back for display inside the company.
Secrets are replaced by a placeholder that is never restored.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

# (kind, pattern, restorable). Order matters: multi-line and structured secrets first. A pattern
# with a group named ``v`` replaces only that group.
_RULES: list[tuple[str, re.Pattern[str], bool]] = [
    ("PRIVATE_KEY", re.compile(
        r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S), False),
    ("URL_CREDENTIALS", re.compile(r"(?<=://)[^/\s:@]+:[^/\s@]+(?=@)"), False),
    ("JWT", re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"), False),
    ("TOKEN", re.compile(
        r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"  # AWS access key id
        r"|\bgh[pousr]_[A-Za-z0-9]{30,}\b|\bgithub_pat_[A-Za-z0-9_]{40,}\b"
        r"|\bxox[abposr]-[A-Za-z0-9-]{10,}\b"  # Slack
        r"|\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}\b"  # Stripe-style
        r"|\bglpat-[A-Za-z0-9_-]{20,}\b|\bAIza[0-9A-Za-z_-]{35}\b"), False),
    ("BEARER", re.compile(r"(?i)(?<=\bbearer )[A-Za-z0-9._~+/=-]{12,}"), False),
    ("SECRET", re.compile(
        r"(?i)\b(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|"
        r"client[_-]?secret|auth)[\"']?\s{0,3}[:=]\s{0,3}[\"']?(?P<v>[^\s\"',;]{4,})"), False),
    ("EMAIL", re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b"), True),
    ("IP", re.compile(
        r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)(?!\w|\.\d)"
        r"|(?<![\w:])(?:[0-9a-fA-F]{1,4}:){7}[0-9a-fA-F]{1,4}(?![\w:])"
        r"|(?<![\w:])(?:[0-9a-fA-F]{1,4}:){1,6}:(?:[0-9a-fA-F]{1,4}:?){1,6}(?![\w:])"), True),
]

DEFAULT_INTERNAL_HOSTS = (
    r"[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.(?:internal|local|lan|corp|intra)\b",
    r"[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.svc(?:\.cluster\.local)?\b",
)


@dataclass
class Redactor:
    """Redacts with stable placeholders; one instance per conversation or request."""

    internal_hosts: Iterable[str] = DEFAULT_INTERNAL_HOSTS
    mapping: dict[str, str] = field(default_factory=dict)  # placeholder → original
    _by_value: dict[tuple[str, str], str] = field(default_factory=dict)
    _counts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._rules = list(_RULES)
        for pattern in self.internal_hosts:
            self._rules.append(("HOST", re.compile(pattern), True))

    def _placeholder(self, kind: str, value: str, restorable: bool) -> str:
        key = (kind, value)
        if key not in self._by_value:
            self._counts[kind] = self._counts.get(kind, 0) + 1
            token = f"[{kind}_{self._counts[kind]}]"
            self._by_value[key] = token
            if restorable:
                self.mapping[token] = value
        return self._by_value[key]

    def redact(self, text: str) -> str:
        for kind, pattern, restorable in self._rules:
            def swap(m: re.Match[str], k: str = kind, r: bool = restorable) -> str:
                if "v" in m.re.groupindex:
                    start, end = m.span("v")
                    whole = m.group(0)
                    offset = m.start()
                    return (whole[: start - offset] + self._placeholder(k, m.group("v"), r)
                            + whole[end - offset:])
                return self._placeholder(k, m.group(0), r)

            text = pattern.sub(swap, text)
        return text

    def restore(self, text: str) -> str:
        """Put back emails, IPs and hosts (never secrets) for display inside the company."""
        for token, value in self.mapping.items():
            text = text.replace(token, value)
        return text

    @property
    def findings(self) -> dict[str, int]:
        return dict(self._counts)
