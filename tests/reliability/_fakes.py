"""Loopback helpers for the security and bad-input tests: the app served by a real uvicorn in a
thread, an OpenAI-compatible model that obeys whatever it is told (and records every request),
a listener that records anything sent to it, and an app on a store of its own."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from copilot.config import Settings
from tests.conftest import PG_URL, in_schema, postgres_schema
from tests.servers import _Server


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """``app`` behind a real uvicorn on 127.0.0.1 (real HTTP parsing, chunked bodies);
    yields its base URL."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextmanager
def store_settings(tmp: Path, kind: str, **extra: Any) -> Iterator[Settings]:
    """Settings on a data folder of their own, with the incident store on SQLite or on a fresh
    PostgreSQL schema (the convention of tests/conftest.py: CI fails without PostgreSQL)."""
    if kind == "sqlite":
        yield Settings(data_dir=tmp / "data", allow_remote_llm=False, **extra)
        return
    with postgres_schema() as schema:
        yield Settings(data_dir=tmp / "data", allow_remote_llm=False,
                       database_url=in_schema(PG_URL or "", schema), **extra)


def _sse(h: BaseHTTPRequestHandler, text: str) -> None:
    """An OpenAI chat.completions stream of ``text``, in a few chunks."""
    h.send_response(200)
    h.send_header("Content-Type", "text/event-stream")
    h.end_headers()
    words = text.split(" ")
    pieces = [" ".join(words[i:i + 8]) + " " for i in range(0, len(words), 8)]
    for n, piece in enumerate(pieces + [None]):
        chunk = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0,
                 "model": "fake", "choices": [{
                     "index": 0, "delta": {"content": piece} if piece else {},
                     "finish_reason": None if piece else "stop"}]}
        if n == 0:
            chunk["choices"][0]["delta"]["role"] = "assistant"
        h.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
    h.wfile.write(b"data: [DONE]\n\n")
    h.wfile.flush()


class Recorder(_Server):
    """A loopback server that keeps every request: ``requests`` holds (method, path, headers,
    body)."""

    requests: list[tuple[str, str, dict[str, str], bytes]]


def _recording(reply: Callable[[BaseHTTPRequestHandler, bytes], None]) -> Recorder:
    server: Recorder

    def handle(h: BaseHTTPRequestHandler) -> None:
        body = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        with server.lock:
            server.requests.append((h.command, h.path, dict(h.headers), body))
            server.bodies.append(body)
        reply(h, body)

    server = Recorder(handle)  # type: ignore[assignment]
    server.requests = []
    return server


def obeying_model(answer: Callable[[dict[str, Any]], str]) -> Recorder:
    """An OpenAI-compatible endpoint that answers every chat completion with
    ``answer(request_json)``: the model a prompt injection would hope for."""
    def reply(h: BaseHTTPRequestHandler, body: bytes) -> None:
        if not h.path.endswith("/chat/completions"):
            h.send_response(404)
            h.end_headers()
            return
        _sse(h, answer(json.loads(body)))

    return _recording(reply)


def listener() -> Recorder:
    """Records anything sent to it and answers 200: the planted exfiltration endpoint."""
    def reply(h: BaseHTTPRequestHandler, _body: bytes) -> None:
        h.send_response(200)
        h.send_header("Content-Length", "2")
        h.end_headers()
        h.wfile.write(b"ok")

    return _recording(reply)
