"""The copilot's tasks over HTTP (/v1) on the demo data: typed JSON results, chat streamed as
Server-Sent Events, clear 4xx errors, and the OpenAPI schema naming the result types."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from tests.conftest import api_key


@pytest.fixture
def client(demo_env, demo_copilot):  # type: ignore[no-untyped-def]
    settings, _, _ = demo_env
    with TestClient(create_app(settings, copilot=demo_copilot),
                    headers={"Authorization": f"Bearer {api_key(settings, 'admin')}"}) as c:
        yield c


def _events(text: str) -> list[tuple[str, dict]]:  # type: ignore[type-arg]
    out = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        out.append((lines["event"], json.loads(lines["data"])))
    return out


def test_chat_streams_server_sent_events_with_citations(client, demo_env) -> None:  # type: ignore[no-untyped-def]
    incident = demo_env[2]
    with client.stream("POST", f"/v1/incidents/{incident}/chat",
                       json={"question": "What changed before the first alert?"},
                       headers={"Accept": "text/event-stream"}) as res:
        assert res.status_code == 200
        assert res.headers["content-type"].startswith("text/event-stream")
        events = _events(res.read().decode())
    tokens = [data["text"] for kind, data in events if kind == "token"]
    kind, final = events[-1]
    assert kind == "final" and len(tokens) > 10 and final["replace"] is False
    result = final["result"]
    assert "".join(tokens) == result["answer"] and "2.84.0" in result["answer"]
    assert any(s["id"].startswith("change:") and s["title"] for s in result["sources"])
    plain = client.post(f"/v1/incidents/{incident}/chat",
                        json={"question": "Who is the commander?",
                              "history": [{"role": "user", "content": "hi"}]}).json()
    assert plain["task"] == "chat" and plain["lines"][0]["citations"]


def test_every_task_answers_with_its_typed_result(client, demo_env) -> None:  # type: ignore[no-untyped-def]
    i = demo_env[2]
    causes = client.get(f"/v1/incidents/{i}/root-causes").json()
    assert "2.84.0" in causes["hypotheses"][0]["statement"] and not causes["degraded"]
    books = client.get(f"/v1/incidents/{i}/runbooks").json()
    assert books["recommendations"][0]["sections"]
    one = client.post("/v1/runbooks", json={"labels": {"alertname": "LedgerDBConnectionsSaturated",
                                                       "service": "ledger-db"}}).json()
    assert one["recommendations"][0]["doc_id"] == "rb-ledger-db-connections-saturated"
    draft = client.get(f"/v1/incidents/{i}/status-draft",
                       params={"stage": "identified", "audience": "internal"}).json()
    assert draft["stage"] == "identified" and draft["passed"] and draft["checks"]
    summary = client.get(f"/v1/incidents/{i}/summary").json()
    assert summary["status"] and all(line["citations"] for line in summary["status"])


@pytest.mark.parametrize("method,path,body,code,needle", [
    ("get", "/v1/incidents/999/summary", None, 404, "no incident with id 999"),
    ("get", "/v1/incidents/{i}/postmortem", None, 400, "not resolved"),
    ("get", "/v1/incidents/{i}/status-draft?stage=fixed", None, 422, "stage"),
    ("get", "/v1/incidents/{i}/summary?backend=gpt5", None, 422, "backend"),
    ("post", "/v1/incidents/{i}/chat", {"question": ""}, 422, "question"),
    ("post", "/v1/runbooks", {"annotations": {}}, 422, "labels"),
])
def test_bad_requests_get_a_clear_4xx(client, demo_env, method, path, body, code, needle) -> None:  # type: ignore[no-untyped-def]
    res = getattr(client, method)(path.format(i=demo_env[2]), **({"json": body} if body else {}))
    assert res.status_code == code, res.text
    assert needle in res.text


def test_openapi_names_the_result_types(client) -> None:  # type: ignore[no-untyped-def]
    schema = client.get("/openapi.json").json()
    names = set(schema["components"]["schemas"])
    assert {"RootCauseResult", "RunbookResult", "StatusDraftResult", "SummaryResult",
            "PostmortemResult", "ChatResult", "ChatRequest"} <= names
    assert "text/event-stream" in schema["paths"]["/v1/incidents/{incident_id}/chat"]["post"][
        "responses"]["200"]["content"]
