"""The HTTP app: the JSON API under ``/v1`` (docs/api.md), the web panel at ``/``, health,
readiness and Prometheus metrics. Errors from the CopilotError hierarchy become HTTP responses
here and only here; clients never see a stack trace."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.deps import get_principal
from copilot import telemetry
from copilot.config import Settings, get_settings
from copilot.errors import ConfigError, CopilotError, IndexUnavailable, IngestError
from copilot.store import IncidentStore
from ingest.routing import RoutingRules, load_rules

log = logging.getLogger("copilot.api")
WEB = Path(__file__).resolve().parent / "web"
# The panel has no inline script or style: everything comes from /static and /v1.
PANEL_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
                               "form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
STATUS_BY_REASON = {"json": 400, "schema": 422, "source": 404, "oversized": 413}
RETRY_AFTER = {"Retry-After": "5"}
# The database did not answer (refused, dropped, timed out, pool exhausted): a dependency is
# down, so 503 and nothing acknowledged; a webhook sender retries.
STORE_DOWN = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.DisconnectionError,
              sa_exc.TimeoutError)


class _State:
    def __init__(self, settings: Settings, *, copilot: Any = None) -> None:
        self.settings = settings
        self.store = copilot.store if copilot is not None and copilot.store else \
            IncidentStore.open(settings)
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

    def readiness(self) -> dict[str, str]:
        """Each dependency's answer: ``ok`` or what went wrong."""
        checks: dict[str, str] = {}
        try:
            with self.store.session() as session:
                session.execute(text("SELECT 1"))
            checks["store"] = "ok"
        except Exception as exc:  # noqa: BLE001 - readiness reports any failure
            checks["store"] = f"unavailable: {type(exc).__name__}"
        try:
            index = self.copilot().retriever.index
            index.store.count()  # the vector store answers
            # what is searchable is what the catalog committed (a killed ingest can leave
            # vectors the catalog never recorded; the next ingest removes them)
            checks["index"] = ("ok" if index.catalog.chunk_count() > 0
                               else "empty: ingest a knowledge base first")
        except Exception as exc:  # noqa: BLE001
            checks["index"] = f"unavailable: {type(exc).__name__}"  # no addresses: no key here
        return checks


class BodyTooLarge(StarletteHTTPException):
    """An HTTP error, so that FastAPI's body parsing lets it through as a 413 (it turns any
    other exception raised while reading a body into a 400)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body is over the {limit:,}-byte limit")


class LimitsAndMetrics:
    """Refuses bodies over the limit with 413 (declared or streamed) and records every
    request's count and latency by route template."""

    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500, "sent": False}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"], status["sent"] = message["status"], True
            await send(message)

        received = 0

        async def receive_wrapper() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        try:
            declared = dict(scope.get("headers") or {}).get(b"content-length", b"")
            if declared.isdigit() and int(declared) > self.limit:
                raise BodyTooLarge(self.limit)
            await self.app(scope, receive_wrapper, send_wrapper)
        except BodyTooLarge:
            if status["sent"]:
                raise
            response = JSONResponse(status_code=413, content={
                "error": f"request body is over the {self.limit:,}-byte limit"})
            await response(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            telemetry.HTTP_REQUESTS.labels(scope["method"], path, str(status["code"])).inc()
            telemetry.HTTP_LATENCY.labels(scope["method"], path).observe(
                time.perf_counter() - started)


def _detail(exc: StarletteHTTPException) -> str:
    """FastAPI answers any body it cannot parse with one 400 message; say why."""
    cause = exc.__cause__
    if exc.status_code == 400 and cause is not None:
        if isinstance(cause, UnicodeDecodeError):
            return (f"the body is not valid UTF-8 (byte {cause.start}): send UTF-8 encoded "
                    "JSON")
        if isinstance(cause, RecursionError):
            return "JSON is nested too deeply"
        if isinstance(cause, ValueError):
            return f"the body is not valid JSON: {cause}"
    return str(exc.detail)


def _field(loc: Any) -> str:
    return ".".join(str(part) for part in loc)


def create_app(settings: Settings | None = None, *, copilot: Any = None) -> FastAPI:
    """The app; ``copilot`` is a ready task runner to share (tests), else built on first use."""
    from api.admin_routes import router as admin_router
    from api.copilot_routes import router as copilot_router
    from api.draft_routes import router as draft_router
    from api.incident_routes import router as incident_router
    from api.ingest_routes import router as ingest_router
    from copilot.auth import AuthError
    from copilot.drafts import WorkflowError
    from copilot.guardrails.draft_checks import DraftError
    from copilot.incidents import IncidentError

    settings = settings or get_settings()
    app = FastAPI(
        title="Incident Copilot", version="0.1.0",
        description="Grounded, cited answers for incident response. See docs/api.md.")
    app.state.copilot = _State(settings, copilot=copilot)
    for router in (incident_router, copilot_router, draft_router, ingest_router, admin_router):
        app.include_router(router)
    app.add_middleware(LimitsAndMetrics, limit=settings.max_payload_bytes)

    @app.exception_handler(CopilotError)
    async def _copilot_error(_request: Request, exc: CopilotError) -> JSONResponse:
        content: dict[str, Any] = {"error": str(exc)}
        if isinstance(exc, AuthError):
            code = exc.status
        elif isinstance(exc, WorkflowError):
            code = exc.status
            if exc.failed:
                content["failed_checks"] = [c.model_dump() for c in exc.failed]
        elif isinstance(exc, IncidentError):
            code = 404 if "no incident" in str(exc) else 409
        elif isinstance(exc, IngestError):
            code = STATUS_BY_REASON.get(exc.reason, 422)
        elif isinstance(exc, DraftError):
            code = 422
        elif isinstance(exc, ConfigError):
            code = 503
        elif isinstance(exc, IndexUnavailable):
            log.warning("%s", exc)
            return JSONResponse(status_code=503, content=content, headers=RETRY_AFTER)
        else:
            code = 400
        headers = {"WWW-Authenticate": "Bearer"} if code == 401 else None
        return JSONResponse(status_code=code, content=content, headers=headers)

    async def _store_down(request: Request, exc: Exception) -> JSONResponse:
        log.warning("incident store unavailable on %s %s: %s", request.method,
                    request.url.path, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return JSONResponse(status_code=503, headers=RETRY_AFTER, content={
            "error": f"incident store unavailable: the database did not answer "
                     f"({type(exc).__name__}); retry later"})

    for kind in STORE_DOWN:
        app.add_exception_handler(kind, _store_down)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [{"field": _field(e.get("loc", ())), "message": e.get("msg", "invalid")}
                  for e in exc.errors()]
        first = fields[0] if fields else {"field": "body", "message": "invalid"}
        more = f" (and {len(fields) - 1} more)" if len(fields) > 1 else ""
        return JSONResponse(status_code=422, content=jsonable_encoder({
            "error": f"{first['field']}: {first['message']}{more}", "fields": fields}))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(status_code=exc.status_code, content={"error": _detail(exc)},
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(RecursionError)
    async def _nested(_request: Request, _exc: RecursionError) -> JSONResponse:
        return JSONResponse(status_code=400, content={"error": "JSON is nested too deeply"})

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        ref = uuid.uuid4().hex[:12]
        log.error("unexpected error %s on %s %s: %s", ref, request.method, request.url.path,
                  type(exc).__name__, exc_info=exc)
        return JSONResponse(status_code=500, content={
            "error": f"internal error (reference {ref}); the server log has the details"})

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        """The process is up (no key needed)."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], responses={503: {"description": "Not ready"}})
    def readyz() -> JSONResponse:
        """Ready only when the incident store and the vector index answer (no key needed)."""
        checks = app.state.copilot.readiness()
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse(status_code=200 if ready else 503,
                            content={"status": "ready" if ready else "not ready", **checks})

    @app.get("/metrics", tags=["health"], response_class=Response,
             responses={200: {"content": {"text/plain": {}}}})
    def metrics(_: Annotated[Any, Depends(get_principal)]) -> Response:
        """Prometheus metrics (any valid key)."""
        return Response(telemetry.exposition(), media_type="text/plain; version=0.0.4")

    if (WEB / "index.html").exists():
        app.mount("/static", StaticFiles(directory=WEB), name="static")

        @app.get("/", include_in_schema=False)
        def panel() -> FileResponse:
            return FileResponse(WEB / "index.html", headers=PANEL_HEADERS)

        @app.middleware("http")
        async def _panel_headers(request: Request, call_next: Any) -> Any:
            response = await call_next(request)
            if request.url.path.startswith("/static/"):
                response.headers.update(PANEL_HEADERS)
            return response

    return app

