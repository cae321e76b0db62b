"""`make run`'s demo prints a working key per role, and a new run revokes the previous ones."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api.app import create_app
from copilot.cli import app as cli
from copilot.config import Settings


def _keys(output: str) -> dict[str, str]:
    return dict(re.findall(r"^\s+(responder|commander|comms|admin)\s+(icp_\S+)$", output, re.MULTILINE))


def test_demo_prints_one_working_key_per_role(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("COPILOT_DATA_DIR", str(tmp_path / "data"))
    first = CliRunner().invoke(cli, ["demo"])
    assert first.exit_code == 0, first.output
    keys = _keys(first.output)
    assert set(keys) == {"responder", "commander", "comms", "admin"}
    client = TestClient(create_app(Settings(data_dir=tmp_path / "data")))
    for role, key in keys.items():
        me = client.get("/v1/me", headers={"Authorization": f"Bearer {key}"})
        assert me.status_code == 200 and me.json()["role"] == role
    second = CliRunner().invoke(cli, ["demo", "--no-keys"])
    assert second.exit_code == 0 and not _keys(second.output)
    third = CliRunner().invoke(cli, ["demo"])
    assert _keys(third.output) and set(_keys(third.output).values()).isdisjoint(keys.values())
    stale = client.get("/v1/me", headers={"Authorization": f"Bearer {keys['admin']}"})
    assert stale.status_code == 401 and "revoked" in stale.json()["error"]
