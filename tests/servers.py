"""Small loopback HTTP servers for tests at the edge of the world: a recording proxy in front
of a real OpenAI-compatible server, misbehaving endpoints (slow, garbage), and a TCP forwarder
that can cut a database off and put it back."""

from __future__ import annotations

import socket
import threading
import time
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self


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


class TcpProxy:
    """A loopback TCP forwarder to ``(host, port)`` that a test can cut, as a network
    partition would (the listener closes and every open connection is dropped, so new
    connections are refused), and resume on the same port."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.connections = 0

    def __enter__(self) -> Self:
        self.resume()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cut()

    def resume(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.2)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        with self._lock:
            dropped, self._open = self._open, set()
        for sock in dropped:
            _close(sock)

    def _accept(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _close(client)
                continue
            client.settimeout(None)
            upstream.settimeout(None)
            with self._lock:
                if self._listener is not listener:
                    _close(client)
                    _close(upstream)
                    return
                self._open |= {client, upstream}
                self.connections += 1
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._open -= {src, dst}
            _close(src)
            _close(dst)


def tcp_proxy(host: str, port: int) -> TcpProxy:
    """A cuttable forwarder to ``host:port``; use as a context manager."""
    return TcpProxy(host, port)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
