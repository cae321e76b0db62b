"""Redaction: every kind of canary is removed, placeholders are stable, secrets never return."""

from __future__ import annotations

import pytest

from copilot.guardrails.redaction import Redactor

CANARIES = {
    "aws": "AKIAIOSFODNN7EXAMPLE",
    "github": "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8",
    "slack": "xoxb-123456789012-abcdefghijkl",
    "stripe": "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "password": "hunter2-very-secret",
    "email": "jonas.weber@lumenfield.example",
    "ipv4": "10.42.7.19",
    "ipv6": "fe80::1ff:fe23:4567:890a",
    "host": "ledger-db-0.ledger.svc.cluster.local",
    "host2": "pgbouncer-2.prod.internal",
    "urlpw": "s3cr3tpw",
}

TEXT = f"""
deploy by {CANARIES['email']} from {CANARIES['ipv4']} and {CANARIES['ipv6']}
conn postgresql://checkout:{CANARIES['urlpw']}@{CANARIES['host']}:5432/ledger
export AWS_ACCESS_KEY_ID={CANARIES['aws']}; GITHUB_TOKEN {CANARIES['github']}
slack {CANARIES['slack']} stripe {CANARIES['stripe']}
Authorization: Bearer {CANARIES['jwt']}
password = "{CANARIES['password']}" then retry against {CANARIES['host2']}
-----BEGIN RSA PRIVATE KEY-----
MIIEowIBAAKCAQEAtopsecretkeymaterial
-----END RSA PRIVATE KEY-----
"""


def test_no_canary_survives() -> None:
    r = Redactor()
    out = r.redact(TEXT)
    for name, value in CANARIES.items():
        assert value not in out, name
    assert "topsecretkeymaterial" not in out
    assert "[EMAIL_1]" in out and "[IP_1]" in out and "[HOST_" in out


def test_placeholders_are_stable_and_restore_only_identifiers() -> None:
    r = Redactor()
    a = r.redact("10.0.0.1 talked to 10.0.0.2, then 10.0.0.1 again; token=abcd1234xyz")
    assert a.count("[IP_1]") == 2 and "[IP_2]" in a
    back = r.restore(a)
    assert "10.0.0.1" in back and "10.0.0.2" in back
    assert "abcd1234xyz" not in back  # secrets are never restored


@pytest.mark.parametrize("text", [
    "checkout-api 2.84.0 returned 503 for 12% of requests at 14:03 UTC",
    "pool max 40, active 40, waiting 112",
    "see runbook rb-ledger-db-connections-saturated",
])
def test_ordinary_incident_text_is_left_alone(text: str) -> None:
    assert Redactor().redact(text) == text


def test_configured_internal_host_patterns() -> None:
    r = Redactor(internal_hosts=[r"[a-z0-9-]+\.lumen\.corp"])
    assert r.redact("db1.lumen.corp down") == "[HOST_1] down"
