"""The HTTP API's auth, audit log, incident writes, drafts workflow, sources, readiness,
metrics and bad-input handling, on the demo data with the real embedder."""

from __future__ import annotations

import hashlib
import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.app import create_app
from copilot.auth import GRANTS, ROLES
from copilot.config import Settings
from copilot.models import ApiKey, AuditEntry
from copilot.store import IncidentStore
from tests.conftest import api_key

# Every route and the permission it needs: a new route must be added here, so no route ships
# without a decision. None: public.
ROUTES: dict[tuple[str, str], str | None] = {
    ("GET", "/healthz"): None,
    ("GET", "/readyz"): None,
    ("GET", "/v1/feed/status.json"): None,
    ("GET", "/metrics"): "read",
    ("GET", "/v1/me"): "read",
    ("GET", "/v1/incidents"): "read",
    ("POST", "/v1/incidents"): "incident_write",
    ("GET", "/v1/incidents/{incident_id}"): "read",
    ("PATCH", "/v1/incidents/{incident_id}"): "incident_write",
    ("POST", "/v1/incidents/{incident_id}/status"): "incident_write",
    ("PUT", "/v1/incidents/{incident_id}/roles"): "incident_write",
    ("POST", "/v1/incidents/{incident_id}/notes"): "note",
    ("GET", "/v1/incidents/{incident_id}/sources/{source_id}"): "read",
    ("GET", "/v1/metrics/incidents"): "read",
    ("GET", "/v1/incidents/{incident_id}/root-causes"): "read",
    ("GET", "/v1/incidents/{incident_id}/runbooks"): "read",
    ("POST", "/v1/runbooks"): "read",
    ("GET", "/v1/search"): "read",
    ("POST", "/v1/incidents/{incident_id}/chat"): "chat",
    ("GET", "/v1/incidents/{incident_id}/summary"): "summary",
    ("GET", "/v1/incidents/{incident_id}/postmortem"): "summary",
    ("GET", "/v1/incidents/{incident_id}/status-draft"): "drafts",
    ("GET", "/v1/incidents/{incident_id}/drafts"): "read",
    ("POST", "/v1/incidents/{incident_id}/drafts"): "drafts",
    ("GET", "/v1/drafts/{draft_id}"): "read",
    ("PUT", "/v1/drafts/{draft_id}"): "drafts",
    ("POST", "/v1/drafts/{draft_id}/approve"): "drafts",
    ("POST", "/v1/drafts/{draft_id}/reject"): "drafts",
    ("POST", "/v1/webhooks/alerts/{source}"): "ingest",
    ("POST", "/v1/ingest/changes"): "ingest",
    ("POST", "/v1/ingest/logs"): "ingest",
    ("POST", "/v1/ingest/documents"): "ingest",
    ("GET", "/v1/admin/keys"): "admin",
    ("POST", "/v1/admin/keys"): "admin",
    ("DELETE", "/v1/admin/keys/{key_id}"): "admin",
    ("POST", "/v1/admin/webhook-tokens"): "admin",
    ("GET", "/v1/admin/audit"): "admin",
    ("GET", "/v1/admin/config"): "admin",
}
# Values that reach the permission check but do nothing harmful when allowed.
FILL = {"incident_id": "999999", "draft_id": "999999", "key_id": "999999",
        "source_id": "alert:1", "source": "generic"}


@pytest.fixture(scope="module")
def keys(demo_env) -> dict[str, str]:  # type: ignore[no-untyped-def]
    settings = demo_env[0]
    return {role: api_key(settings, role, name=f"{role}-person") for role in ROLES}


@pytest.fixture
def app(demo_env, demo_copilot):  # type: ignore[no-untyped-def]
    return create_app(demo_env[0], copilot=demo_copilot)


def as_role(app, keys, role):  # type: ignore[no-untyped-def]
    return TestClient(app, headers={"Authorization": f"Bearer {keys[role]}"})


def _routes(app) -> set[tuple[str, str]]:  # type: ignore[no-untyped-def]
    schema = app.openapi()
    return {(m.upper(), p) for p, ops in schema["paths"].items() for m in ops}


def test_every_route_needs_a_key_and_each_role_gets_exactly_its_permissions(app, keys) -> None:  # type: ignore[no-untyped-def]
    assert _routes(app) == set(ROUTES), "a route was added or removed: decide its permission"
    anonymous = TestClient(app)
    for (method, path), permission in ROUTES.items():
        url = path.format(**FILL) + ("?q=x&incident=999999" if method != "DELETE" else "")
        body = {} if method in ("POST", "PUT", "PATCH") else None
        res = anonymous.request(method, url, json=body)
        if permission is None:
            assert res.status_code == 200, (method, path, res.text)
            continue
        assert res.status_code == 401, (method, path, res.status_code)
        assert "API key" in res.json()["error"]
        for role in ROLES:
            res = as_role(app, keys, role).request(method, url, json=body)
            allowed = permission in GRANTS[role]
            if allowed:
                assert res.status_code not in (401, 403), (role, method, path, res.text)
                assert res.status_code < 500, (role, method, path, res.text)
            else:
                assert res.status_code == 403, (role, method, path, res.status_code)
                assert permission in res.json()["error"] and role in res.json()["error"]


def test_keys_are_stored_hashed_and_revocable(app, keys, demo_env) -> None:  # type: ignore[no-untyped-def]
    admin = as_role(app, keys, "admin")
    made = admin.post("/v1/admin/keys", json={"name": "carol", "role": "responder"})
    assert made.status_code == 201
    plain = made.json()["key"]
    store = IncidentStore.open(demo_env[0])
    with store.session() as s:
        rows = list(s.scalars(select(ApiKey)))
        assert all(plain not in json.dumps([r.key_hash, r.prefix, r.name]) for r in rows)
        row = next(r for r in rows if r.name == "carol")
        assert row.key_hash == hashlib.sha256(plain.encode()).hexdigest()
    carol = TestClient(app, headers={"Authorization": f"Bearer {plain}"})
    assert carol.get("/v1/me").json() == {
        "name": "carol", "role": "responder", "permissions": ["chat", "note", "read"]}
    assert admin.delete(f"/v1/admin/keys/{made.json()['id']}").json()["revoked_at"]
    refused = carol.get("/v1/me")
    assert refused.status_code == 401 and "revoked" in refused.json()["error"]
    assert "key" not in admin.get("/v1/admin/keys").json()[0]
    with store.session() as s:
        actions = [e.action for e in s.scalars(select(AuditEntry).where(
            AuditEntry.target == f"key:{made.json()['id']}"))]
    assert actions == ["key.create", "key.revoke"]


def test_webhook_tokens_are_per_source(app, keys) -> None:  # type: ignore[no-untyped-def]
    admin = as_role(app, keys, "admin")
    token = admin.post("/v1/admin/webhook-tokens", json={"source": "grafana"}).json()["key"]
    hook = TestClient(app)
    body = {"status": "firing", "alerts": []}
    ok = hook.post("/v1/webhooks/alerts/grafana", json=body, headers={"X-Webhook-Token": token})
    assert ok.status_code in (200, 422), ok.text  # authenticated; an empty batch is refused
    wrong = hook.post("/v1/webhooks/alerts/alertmanager", json=body,
                      headers={"Authorization": f"Bearer {token}"})
    assert wrong.status_code == 403 and "grafana" in wrong.json()["error"]
    assert hook.post("/v1/webhooks/alerts/grafana", json=body,
                     headers={"X-Webhook-Token": "icp_forged"}).status_code == 401
    # a webhook token is not an API key for anything else
    assert hook.get("/v1/incidents", headers={"Authorization": f"Bearer {token}"}).status_code == 403


def test_incident_writes_are_audited_with_before_and_after(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # A store of its own: the demo store's newest open incident must stay the demo incident.
    settings = Settings(data_dir=tmp_path / "data")
    app = create_app(settings)
    keys = {role: api_key(settings, role, name=f"{role}-person") for role in ROLES}
    cmd = as_role(app, keys, "commander")
    made = cmd.post("/v1/incidents", json={"title": "Checkout latency", "severity": "SEV2",
                                           "services": ["checkout"]})
    assert made.status_code == 201
    iid = made.json()["id"]
    assert cmd.patch(f"/v1/incidents/{iid}", json={"severity": "SEV1"}).json()["severity"] == "SEV1"
    assert cmd.post(f"/v1/incidents/{iid}/status", json={"status": "identified"}).status_code == 200
    back = cmd.post(f"/v1/incidents/{iid}/status", json={"status": "investigating"})
    assert back.status_code == 409 and "cannot go back" in back.json()["error"]
    assert cmd.put(f"/v1/incidents/{iid}/roles",
                   json={"role": "comms_lead", "person": "Dana"}).json()["comms_lead"] == "Dana"
    note = as_role(app, keys, "responder").post(f"/v1/incidents/{iid}/notes",
                                                 json={"text": "rolled back canary"})
    assert note.status_code == 201 and note.json()["actor"] == "responder-person"
    detail = cmd.get(f"/v1/incidents/{iid}").json()
    assert [e["kind"] for e in detail["timeline"]][-1] == "note"
    log = as_role(app, keys, "admin").get("/v1/admin/audit",
                                           params={"target": f"incident:{iid}"}).json()
    assert [e["action"] for e in log][::-1] == [
        "incident.create", "incident.update", "incident.status", "incident.role", "incident.note"]
    status = next(e for e in log if e["action"] == "incident.status")
    assert status["actor"] == "commander-person" and status["role"] == "commander"
    assert status["before"]["status"] == "investigating" and status["after"]["status"] == "identified"


def test_drafts_generate_edit_approve_publish(app, keys, demo_env) -> None:  # type: ignore[no-untyped-def]
    incident = demo_env[2]
    comms = as_role(app, keys, "comms")
    made = comms.post(f"/v1/incidents/{incident}/drafts",
                      json={"stage": "investigating", "audience": "customers"})
    assert made.status_code == 201, made.text
    draft = made.json()
    assert draft["version"] == 1 and draft["state"] == "draft" and draft["checks"]
    assert draft["passed"], draft["checks"]
    did = draft["id"]
    edited = comms.put(f"/v1/drafts/{did}", json={
        "title": draft["title"], "body": draft["body"] + " We will update you within the hour.",
        "base_version": 1})
    assert edited.status_code == 200 and edited.json()["version"] == 2
    stale = comms.put(f"/v1/drafts/{did}", json={"title": "x", "body": "y", "base_version": 1})
    assert stale.status_code == 409 and "version 2" in stale.json()["error"]
    approved = comms.post(f"/v1/drafts/{did}/approve", json={})
    assert approved.status_code == 200, approved.text
    body = approved.json()
    assert body["state"] == "approved" and body["approved_by"] == "comms-person"
    assert body["published_at"] and [v["version"] for v in body["versions"]] == [1, 2]
    feed = TestClient(app).get("/v1/feed/status.json").json()
    assert feed["updates"][0]["id"] == did and "within the hour" in feed["updates"][0]["body"]
    again = comms.put(f"/v1/drafts/{did}", json={"title": "x", "body": "y", "base_version": 2})
    assert again.status_code == 409 and "approved" in again.json()["error"]


def test_approval_refused_while_a_leak_check_fails_unless_a_commander_overrides(app, keys, demo_env) -> None:  # type: ignore[no-untyped-def]
    incident = demo_env[2]
    comms = as_role(app, keys, "comms")
    draft = comms.post(f"/v1/incidents/{incident}/drafts",
                       json={"stage": "identified", "audience": "customers"}).json()
    leaky = comms.put(f"/v1/drafts/{draft['id']}", json={
        "title": draft["title"], "body": draft["body"] + " The fault is on db-7.lumenfield.internal.",
        "base_version": 1}).json()
    failed = [c for c in leaky["checks"] if not c["passed"] and c["blocking"]]
    assert not leaky["passed"] and failed and "db-7.lumenfield.internal" in json.dumps(failed)
    refused = comms.post(f"/v1/drafts/{draft['id']}/approve", json={})
    assert refused.status_code == 409 and refused.json()["failed_checks"]
    assert "override" in refused.json()["error"]
    not_yours = comms.post(f"/v1/drafts/{draft['id']}/approve",
                           json={"override_reason": "customers already know this host name"})
    assert not_yours.status_code == 403 and "commander" in not_yours.json()["error"]
    cmd = as_role(app, keys, "commander")
    short = cmd.post(f"/v1/drafts/{draft['id']}/approve", json={"override_reason": "ok"})
    assert short.status_code == 422 and "reason" in short.json()["error"]
    assert TestClient(app).get("/v1/feed/status.json").json()["updates"][0]["id"] != draft["id"]
    ok = cmd.post(f"/v1/drafts/{draft['id']}/approve",
                  json={"override_reason": "host name is public in our status docs"})
    assert ok.status_code == 200 and ok.json()["override_reason"].startswith("host name")
    entry = as_role(app, keys, "admin").get(
        "/v1/admin/audit", params={"target": f"draft:{draft['id']}"}).json()[0]
    assert entry["action"] == "draft.approve_override" and entry["actor"] == "commander-person"
    assert entry["before"]["state"] == "draft" and entry["after"]["state"] == "approved"
    assert entry["after"]["failed_checks"]


def test_reject_keeps_every_version(app, keys, demo_env) -> None:  # type: ignore[no-untyped-def]
    comms = as_role(app, keys, "comms")
    draft = comms.post(f"/v1/incidents/{demo_env[2]}/drafts",
                       json={"stage": "investigating", "audience": "internal"}).json()
    assert comms.post(f"/v1/drafts/{draft['id']}/reject", json={"reason": ""}).status_code == 422
    out = comms.post(f"/v1/drafts/{draft['id']}/reject", json={"reason": "too early"}).json()
    assert out["state"] == "rejected" and out["reject_reason"] == "too early"
    assert comms.get(f"/v1/drafts/{draft['id']}").json()["versions"][0]["body"] == draft["body"]


def test_citations_resolve_to_their_sources(app, keys, demo_env) -> None:  # type: ignore[no-untyped-def]
    incident = demo_env[2]
    responder = as_role(app, keys, "responder")
    answer = responder.post(f"/v1/incidents/{incident}/chat",
                            json={"question": "What changed before the first alert?"}).json()
    causes = responder.get(f"/v1/incidents/{incident}/root-causes").json()
    ids = {s["id"] for s in answer["sources"] + causes["sources"]}
    assert {i.split(":")[0] for i in ids} >= {"change", "alert"}
    for sid in ids:
        res = responder.get(f"/v1/incidents/{incident}/sources/{sid}")
        assert res.status_code == 200, (sid, res.text)
        assert res.json()["id"] == sid and res.json()["text"]
    missing = responder.get(f"/v1/incidents/{incident}/sources/alert:99999")
    assert missing.status_code == 404 and "alert:N" in missing.json()["error"]


def test_readiness_metrics_and_bad_input(app, keys, tmp_path) -> None:  # type: ignore[no-untyped-def]
    client = as_role(app, keys, "responder")
    assert TestClient(app).get("/readyz").json() == {"status": "ready", "store": "ok", "index": "ok"}
    empty = create_app(Settings(data_dir=tmp_path / "empty"))
    not_ready = TestClient(empty).get("/readyz")
    assert not_ready.status_code == 503 and "empty" in not_ready.json()["index"]
    client.get("/v1/search", params={"q": "ledger connections"})
    assert TestClient(app).get("/metrics").status_code == 401
    text = client.get("/metrics").text
    assert 'copilot_http_requests_total{method="GET",route="/v1/search",status="200"}' in text
    assert "copilot_http_request_duration_seconds_bucket" in text
    bad = client.post("/v1/incidents/1/chat", json={"question": ""})
    assert bad.status_code == 422 and bad.json()["error"].startswith("body.question")
    assert "Traceback" not in bad.text
    deep = client.post("/v1/runbooks", content=b'{"labels":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
                       headers={"content-type": "application/json"})
    assert 400 <= deep.status_code < 500, deep.text
    utf = client.post("/v1/incidents/1/chat", content=b'{"question": "\xff\xfe"}',
                      headers={"content-type": "application/json"})
    assert 400 <= utf.status_code < 500
    big = client.post("/v1/incidents/1/chat", content=b"x" * 2_000_000,
                      headers={"content-type": "application/json"})
    assert big.status_code == 413 and "limit" in big.json()["error"]
    ids = client.post("/v1/incidents/0/chat", json={"question": "why?"})
    assert ids.status_code == 422 and ids.json()["error"].startswith("path.incident_id")


def test_metrics_count_model_calls_fallbacks_and_tokens(app, keys, demo_env, demo_copilot) -> None:  # type: ignore[no-untyped-def]
    from copilot.llm.openai_backend import OpenAICompatibleLLM
    from tests.servers import garbage_server

    client = as_role(app, keys, "responder")
    with garbage_server() as server:
        demo_copilot.llm = OpenAICompatibleLLM(base_url=server.url, model="m", api_key=None,
                                               timeout=2, retries=0)
        answer = client.post(f"/v1/incidents/{demo_env[2]}/chat",
                             json={"question": "What changed before the first alert?"}).json()
    assert answer["degraded"] and answer["reason"].startswith("model error")
    text = client.get("/metrics").text
    lines = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
             for line in text.splitlines() if line and not line.startswith("#")}
    name = demo_copilot.llm.name
    assert lines[f'copilot_llm_calls_total{{backend="{name}",outcome="error"}}'] >= 1
    assert lines[f'copilot_llm_tokens_total{{backend="{name}",kind="prompt"}}'] > 100
    assert lines['copilot_fallbacks_total{reason="model error",task="chat"}'] >= 1


def test_documents_ingest_over_http(app, keys) -> None:  # type: ignore[no-untyped-def]
    admin = as_role(app, keys, "admin")
    doc = ("---\ntitle: Restart the quokka relay\nkind: runbook\nalerts: [QuokkaRelayDown]\n---\n"
           "# Restart the quokka relay\n\nWhen QuokkaRelayDown fires, drain and restart the relay.\n")
    bad = admin.post("/v1/ingest/documents", json={"documents": [
        {"filename": "quokka.md", "content": doc}, {"filename": "../evil.md", "content": "x"}]})
    assert bad.status_code == 422 and "documents.1.filename" in bad.json()["error"]
    assert not admin.get("/v1/search", params={"q": "quokka relay"}).json() or \
        admin.get("/v1/search", params={"q": "quokka relay"}).json()[0]["title"] != \
        "Restart the quokka relay"
    ok = admin.post("/v1/ingest/documents", json={"documents": [
        {"filename": "quokka.md", "content": doc}], "kind": "runbook"})
    assert ok.status_code == 200, ok.text
    hits = admin.get("/v1/search", params={"q": "quokka relay restart", "kind": "runbook"}).json()
    # searchable at once; its rank among the shared demo index's runbooks is not this test's
    # business (a full CI run once put it second)
    assert "Restart the quokka relay" in [h["title"] for h in hits[:3]], hits


class _BrokenModel:
    """A model whose stream breaks with an unexpected error after one token."""

    name = "broken"
    external = False
    context_window = 2048

    def stream(self, messages, *, max_tokens):  # type: ignore[no-untyped-def]
        yield "The "
        raise RuntimeError("socket closed under us")


def test_a_stream_that_fails_midway_ends_with_an_error_event(app, keys, demo_env, demo_copilot) -> None:  # type: ignore[no-untyped-def]
    demo_copilot.llm = _BrokenModel()
    with as_role(app, keys, "responder").stream(
            "POST", f"/v1/incidents/{demo_env[2]}/chat", json={"question": "What changed?"},
            headers={"Accept": "text/event-stream"}) as res:
        assert res.status_code == 200
        text = res.read().decode()
    assert text.startswith("event: token") and "event: error" in text
    assert "socket closed" not in text and "Traceback" not in text
    assert "see the server log" in text
