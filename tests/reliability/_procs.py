"""Real `copilot` processes for the crash tests: start `copilot serve` on a loopback port, wait
until it answers, kill it with SIGKILL; small HTTP helpers that never raise on an HTTP status."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from http.client import HTTPException
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
COPILOT = [str(BIN / "copilot")] if (BIN / "copilot").exists() else [sys.executable, "-m",
                                                                        "copilot.cli"]
BASE_ENV = {"HF_HUB_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False", "TOKENIZERS_PARALLELISM":
            "false", "COPILOT_ALLOW_REMOTE_LLM": "false"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def copilot_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """The parent's environment with a data folder of the test's own (no stray COPILOT_*)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COPILOT_")}
    return {**env, **BASE_ENV, "COPILOT_DATA_DIR": str(data_dir), **extra}


def http(method: str, url: str, *, body: Any = None, headers: dict[str, str] | None = None,
         timeout: float = 30) -> tuple[int, Any]:
    """(status, decoded JSON or text); raises only when no HTTP answer came at all."""
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode("utf-8", "replace")


class Server:
    """One `copilot serve` process on 127.0.0.1; its output goes to ``log`` (kept across
    restarts, for the failure message)."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, deadline_s: float = 90, ready: str = "/healthz") -> Server:
        """Start and wait for ``ready`` to answer 200 (``/readyz``: the index is loaded too)."""
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [*COPILOT, "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                env=self.env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + deadline_s
        while True:
            try:
                if http("GET", f"{self.url}{ready}", timeout=30)[0] == 200:
                    return self
            except (OSError, HTTPException):
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"copilot serve did not come up:\n{self.tail()}")
            time.sleep(0.2)

    def kill(self) -> None:
        """SIGKILL: no handler, no flush, no shutdown hook runs."""
        assert self.proc is not None and self.proc.poll() is None, "server already gone"
        self.proc.send_signal(signal.SIGKILL)
        assert self.proc.wait(timeout=30) == -signal.SIGKILL

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""


def catalog_generation(data_dir: Path) -> int:
    """The knowledge catalog's generation, read-only from another process (0 if none yet)."""
    for path in (data_dir / "kb").glob("catalog-*.sqlite3"):
        try:
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1) as db:
                row = db.execute("SELECT value FROM state WHERE key='generation'").fetchone()
                return int(row[0]) if row else 0
        except sqlite3.Error:
            return 0
    return 0
