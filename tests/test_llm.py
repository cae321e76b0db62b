"""LLM backends: the real local model in process, and the OpenAI-compatible client against a
real `llama_cpp.server` on loopback serving the same GGUF (streaming included)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from copilot.llm.base import EchoLLM, Message, ProviderError
from copilot.llm.openai_backend import OpenAICompatibleLLM

ASK = [Message("system", "You answer in one short sentence."),
       Message("user", "What colour is the sky on a clear day?")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_fake_backend() -> None:
    llm = EchoLLM("pool exhausted")
    assert llm.complete(ASK).strip() == "pool exhausted" and len(llm.calls) == 1
    with pytest.raises(ProviderError, match="down"):
        EchoLLM(fail="down").complete(ASK)


def test_unreachable_endpoint_is_a_provider_error() -> None:
    llm = OpenAICompatibleLLM(base_url=f"http://127.0.0.1:{_free_port()}/v1", model="m",
                              api_key=None, timeout=2, retries=0)
    with pytest.raises(ProviderError, match="cannot connect"):
        llm.complete(ASK)


def test_openai_backend_against_a_real_server_streams(llama_server: str) -> None:
    llm = OpenAICompatibleLLM(base_url=llama_server, model="smollm2", api_key=None, timeout=60)
    pieces = list(llm.stream(ASK, max_tokens=24))
    assert len(pieces) > 1  # token by token, not one blob
    assert "".join(pieces).strip()


def test_local_backend_in_process(gguf: Path) -> None:
    from copilot.llm.local import LocalLLM

    llm = LocalLLM(gguf)
    text = llm.complete(ASK, max_tokens=24)
    assert text.strip()
    with pytest.raises(ProviderError):
        llm.complete([Message("user", "word " * 5000)], max_tokens=8)  # over the window
