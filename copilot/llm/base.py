"""The ``LLM`` interface: one abstract method (``stream``); ``complete`` is built on it.

Every backend failure (connection, timeout, HTTP error, model load) surfaces as
``ProviderError`` so that the tasks can fall back to the grounded answer with the reason.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from copilot.errors import CopilotError


class ProviderError(CopilotError):
    """The model could not answer: the reason says why (timeout, refused, bad response...)."""


@dataclass(frozen=True)
class Message:
    role: Literal["system", "user", "assistant"]
    content: str


class LLM(ABC):
    name: str = "llm"
    external: bool = False  # True when text leaves the process: it is redacted first
    context_window: int = 2048
    ranks: bool = True  # asked to re-rank candidates in ranking tasks (runbooks)

    @abstractmethod
    def stream(self, messages: list[Message], *, max_tokens: int = 512,
               temperature: float = 0.0) -> Iterator[str]:
        """Yield the answer piece by piece; raise ProviderError on any failure."""

    def complete(self, messages: list[Message], *, max_tokens: int = 512,
                 temperature: float = 0.0) -> str:
        return "".join(self.stream(messages, max_tokens=max_tokens, temperature=temperature))


class EchoLLM(LLM):
    """A deterministic fake for unit tests: answers with a fixed text, or fails on demand."""

    name = "echo"

    def __init__(self, answer: str = "ok", *, fail: str | None = None) -> None:
        self.answer = answer
        self.fail = fail
        self.calls: list[list[Message]] = []

    def stream(self, messages: list[Message], *, max_tokens: int = 512,
               temperature: float = 0.0) -> Iterator[str]:
        self.calls.append(messages)
        if self.fail:
            raise ProviderError(self.fail)
        yield from (w + " " for w in self.answer.split(" "))
