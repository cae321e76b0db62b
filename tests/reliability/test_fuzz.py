"""Schema-driven fuzzing (schemathesis) of every operation in the OpenAPI schema, on a demo
knowledge base and incident of its own: no request may get a 5xx, and together they make at
least 1,000 requests."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import settings as hsettings

from api.app import create_app
from copilot.config import Settings
from tests.conftest import api_key

EXAMPLES_PER_OPERATION = 40
calls: list[tuple[str, str, int]] = []


# The schema is read at collection; the app's data (its own demo knowledge base and
# incident) is built by the fixture before the first request. Its own store and index: the
# fuzzer creates incidents, approves drafts and ingests documents, which must not leak into
# the shared demo data other tests read.
_DIR = Path(tempfile.mkdtemp(prefix="copilot-fuzz-"))
SETTINGS = Settings(data_dir=_DIR / "data", allow_remote_llm=False)
APP = create_app(SETTINGS)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@pytest.fixture(scope="module")
def admin_key(real_embedder) -> Iterator[str]:  # type: ignore[no-untyped-def]
    from api.app import _State
    from copilot.runner import Copilot
    from copilot.store import IncidentStore
    from ingest.demo import build_demo_kb, load_demo_incident
    from retrieval.retriever import build_retriever

    retriever = build_retriever(SETTINGS, embedder=real_embedder)
    build_demo_kb(SETTINGS, retriever)
    load_demo_incident(SETTINGS)
    store = IncidentStore.open(SETTINGS)
    APP.state.copilot = _State(SETTINGS, copilot=Copilot(SETTINGS, llm=None,
                                                         retriever=retriever, store=store))
    yield api_key(SETTINGS, "admin")
    store.engine.dispose()
    shutil.rmtree(_DIR, ignore_errors=True)


@schema.parametrize()
@hsettings(max_examples=EXAMPLES_PER_OPERATION, deadline=None,
           suppress_health_check=list(HealthCheck))
def test_no_request_gets_a_server_error(case, admin_key) -> None:  # type: ignore[no-untyped-def]
    case.headers = {**(case.headers or {}), "Authorization": f"Bearer {admin_key}"}
    if case.query:
        case.query.pop("backend", None)  # model backends have their own fault tests
    if case.path_parameters and "key_id" in case.path_parameters:
        case.path_parameters["key_id"] = 10**6  # never revoke the fuzzer's own key
    res = case.call(timeout=60)
    calls.append((case.method, case.path, res.status_code))
    assert res.status_code < 500, (case.method, case.formatted_path, res.status_code,
                                   res.text[:300])
    kind = res.headers.get("content-type") or [""]
    if res.status_code >= 400 and "application/json" in (kind[0] if isinstance(kind, list) else kind):
        assert "error" in res.json() and "Traceback" not in res.text


def test_the_fuzzer_made_over_a_thousand_requests() -> None:
    if not calls:
        pytest.skip("run together with the fuzz test")
    print(f"fuzzed {len(calls)} requests, {len({(m, p) for m, p, _ in calls})} distinct method+path; "
          f"status codes: {sorted({c for _, _, c in calls})}")
    assert len(calls) >= 1_000, len(calls)
    assert len({(m, p) for m, p, _ in calls}) >= 35  # every operation was reached (and more)
