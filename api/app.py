"""The HTTP app: webhook receivers, and the copilot's tasks under ``/v1`` (api/copilot_routes.py). Errors from the CopilotError hierarchy become HTTP responses here and only here."""

from __future__ import annotations

import threading
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from copilot.config import Settings, get_settings
from copilot.errors import ConfigError, CopilotError, IngestError
from copilot.store import IncidentStore
from ingest.routing import RoutingRules, load_rules

STATUS_BY_REASON = {"json": 400, "schema": 422, "source": 404, "oversized": 413}


class _State:
    def __init__(self, settings: Settings, *, copilot: Any = None) -> None:
        self.settings = settings
        self.store = IncidentStore.open(settings)
        self.rules: RoutingRules = load_rules(settings.routing_file)
        self._copilots: dict[str | None, Any] = {None: copilot} if copilot else {}
        self._lock = threading.Lock()

    def copilot(self, backend: str | None = None) -> Any:
        """The task runner, built on first use (it loads the embedding model) and shared;
        one per backend asked for."""
        from copilot.llm.factory import build_llm
        from copilot.runner import Copilot
        from retrieval.retriever import build_retriever

        with self._lock:
            if None not in self._copilots:
                self._copilots[None] = Copilot(
                    self.settings, llm=build_llm(self.settings),
                    retriever=build_retriever(self.settings), store=self.store)
            base = self._copilots[None]
            if backend and backend not in self._copilots:
                self._copilots[backend] = Copilot(
                    self.settings, llm=build_llm(self.settings, backend=backend),
                    retriever=base.retriever, store=self.store)
            return self._copilots[backend] if backend else base


def get_state(request: Request) -> _State:
    return request.app.state.copilot  # type: ignore[no-any-return]


StateDep = Annotated[_State, Depends(get_state)]


def create_app(settings: Settings | None = None, *, copilot: Any = None) -> FastAPI:
    """The app; ``copilot`` is a ready task runner to share (tests), else built on first use."""
    from api.copilot_routes import router

    settings = settings or get_settings()
    app = FastAPI(title="Incident Copilot", version="0.1.0")
    app.state.copilot = _State(settings, copilot=copilot)
    app.include_router(router)

    @app.exception_handler(CopilotError)
    async def _copilot_error(_request: Request, exc: CopilotError) -> JSONResponse:
        from copilot.incidents import IncidentError

        if isinstance(exc, IncidentError):
            code = 404 if "no incident" in str(exc) else 409
        elif isinstance(exc, IngestError):
            code = STATUS_BY_REASON.get(exc.reason, 422)
        elif isinstance(exc, ConfigError):
            code = 500
        else:
            code = 400
        return JSONResponse(status_code=code, content={"error": str(exc)})

    async def body(request: Request, limit: int) -> bytes:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise IngestError(f"payload is {int(declared):,} bytes, over the {limit:,}-byte limit",
                              reason="oversized")
        data = bytearray()
        async for part in request.stream():
            data += part
            if len(data) > limit:
                raise IngestError(f"payload is over the {limit:,}-byte limit", reason="oversized")
        return bytes(data)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/webhooks/alerts/{source}")
    async def post_alerts(source: str, request: Request, st: StateDep) -> dict[str, Any]:
        """Alertmanager (v4), Grafana, PagerDuty (V3) or generic JSON, exactly as sent."""
        from ingest.alerts import parse_alert_payload
        from ingest.intake import record_alerts

        raw = await body(request, st.settings.max_payload_bytes)
        events = parse_alert_payload(source, raw, max_bytes=st.settings.max_payload_bytes)
        result = record_alerts(st.store, events, st.rules)  # committed before we answer
        return {"accepted": len(events), "outcomes": result.outcomes}

    @app.post("/webhooks/changes")
    async def post_changes(request: Request, st: StateDep) -> dict[str, Any]:
        from ingest.changes import parse_changes, record_changes

        raw = await body(request, st.settings.max_payload_bytes)
        changes = parse_changes(raw, max_bytes=st.settings.max_payload_bytes)
        results = record_changes(st.store, changes, window_minutes=st.rules.window_minutes)
        return {"accepted": len(changes), "results": results}

    @app.post("/webhooks/logs")
    async def post_logs(incident: int, request: Request, st: StateDep,
                        service: str | None = None) -> dict[str, Any]:
        """Plain-text or JSON log lines in the body, one per line, for incident ``incident``."""
        from ingest.log_intake import record_logs
        from ingest.logs import read_lines

        raw = await body(request, st.settings.max_payload_bytes)
        lines = list(read_lines(raw.decode("utf-8", "replace").splitlines(),
                                default_service=service))
        return record_logs(st.store, incident_id=incident, lines=lines)

    return app
