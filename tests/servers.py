"""Small loopback HTTP servers for tests at the edge of the world: a recording proxy in front
of a real OpenAI-compatible server, and misbehaving endpoints (slow, garbage)."""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Server:
    def __init__(self, handler: Callable[[BaseHTTPRequestHandler], None]) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                handler(self)

            do_GET = do_POST

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.bodies: list[bytes] = []
        self.lock = threading.Lock()
        _ = outer

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> _Server:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _read_body(h: BaseHTTPRequestHandler) -> bytes:
    return h.rfile.read(int(h.headers.get("Content-Length") or 0))


def recording_proxy(upstream: str) -> _Server:
    """Forwards every request to ``upstream`` (a /v1 base URL) and keeps each request body."""
    server: _Server

    def handle(h: BaseHTTPRequestHandler) -> None:
        body = _read_body(h)
        with server.lock:
            server.bodies.append(body)
        path = h.path.removeprefix("/v1")
        req = urllib.request.Request(upstream + path, data=body or None, method=h.command,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=300) as resp:
            data = resp.read()
            h.send_response(resp.status)
            h.send_header("Content-Type", resp.headers.get("Content-Type", "application/json"))
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data)

    server = _Server(handle)
    return server


def slow_server(delay: float) -> _Server:
    """Accepts a request and answers nothing for ``delay`` seconds (a hung provider)."""
    def handle(h: BaseHTTPRequestHandler) -> None:
        _read_body(h)
        time.sleep(delay)
        try:
            h.send_response(504)
            h.end_headers()
        except OSError:
            pass

    return _Server(handle)


def garbage_server() -> _Server:
    """Answers 200 with something that is not an OpenAI response."""
    def handle(h: BaseHTTPRequestHandler) -> None:
        _read_body(h)
        data = b"<html>upstream proxy error</html>\x00\xff"
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    return _Server(handle)
