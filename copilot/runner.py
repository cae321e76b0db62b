"""Run a task: gather evidence, pack it to the model's window, ask the model (redacted when it
is outside the process), validate the answer and its citations, and fall back to the grounded
answer, marked ``degraded`` with the reason, whenever the model fails, times out or returns
something that does not validate.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from copilot import telemetry
from copilot.config import Settings
from copilot.context import IncidentSnapshot, snapshot_from_store
from copilot.errors import IndexUnavailable
from copilot.guardrails.citations import support, validate
from copilot.guardrails.redaction import DEFAULT_INTERNAL_HOSTS, Redactor
from copilot.llm.base import LLM, Message, ProviderError
from copilot.tasks.base import Citation, OutputInvalid, R, Task, walk_lines
from prompts.budget import ContextItem, Packed, count_tokens, pack
from prompts.loader import load_prompt

GROUNDED_BUDGET = 12_000  # tokens of evidence the rules may look at (no model window)
TOKENIZER_MARGIN = 0.8  # tiktoken counts differ from the model's own tokenizer
MIN_SUPPORT = 0.25  # a model's claim must share this share of its words with what it cites


@dataclass
class Prepared:
    """A task ready to answer: the evidence that fits and the messages for a model."""

    snap: IncidentSnapshot
    items: list[ContextItem]
    packed: Packed
    refs: dict[str, str]  # prompt ref (S1...) → evidence id
    messages: list[Message]
    redactor: Redactor | None
    prompt: str | None
    retrieval_ms: float
    started: float
    index_down: str | None = None  # the vector index did not answer: keywords only
    llm: LLM | None = None  # the model that answers (None: the rules, see Copilot.model_for)


class Copilot:
    """The tasks over one store, one knowledge base and one model (``None``: grounded)."""

    def __init__(self, settings: Settings, *, llm: LLM | None = None, retriever: Any = None,
                 store: Any = None) -> None:
        self.settings = settings
        self.llm = llm
        self.retriever = retriever
        self.store = store

    @classmethod
    def from_settings(cls, settings: Settings, *, backend: str | None = None,
                      with_store: bool = True) -> Copilot:
        from copilot.llm.factory import build_llm
        from copilot.store import IncidentStore
        from retrieval.retriever import build_retriever

        return cls(settings, llm=build_llm(settings, backend=backend),
                   retriever=build_retriever(settings),
                   store=IncidentStore.open(settings) if with_store else None)

    @property
    def backend(self) -> str:
        return self.llm.name if self.llm else "grounded"

    def snapshot(self, incident_id: int) -> IncidentSnapshot:
        if self.store is None:
            raise OutputInvalid("this copilot has no incident store")
        with self.store.session() as session:
            return snapshot_from_store(session, incident_id)

    def redactor(self) -> Redactor:
        # Configured domains first, so a whole name is replaced before a generic rule
        # (".corp") could take only part of it.
        hosts = [r"[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\." + d.replace(".", r"\.") + r"\b"
                 for d in self.settings.internal_domains]
        hosts += list(self.settings.redact_hosts) + list(DEFAULT_INTERNAL_HOSTS)
        return Redactor(internal_hosts=hosts)

    # -- preparing -------------------------------------------------------------------------

    def prepare(self, task: Task[R], snap: IncidentSnapshot) -> Prepared:
        started = time.perf_counter()
        index_down = None
        try:
            items = task.evidence(snap, self.retriever)
        except IndexUnavailable as exc:
            index_down = str(exc)
            items = task.evidence(snap, KeywordsOnly(self.retriever))
        retrieval_ms = (time.perf_counter() - started) * 1000
        prompt = load_prompt(task.name)
        system = load_prompt("system").render()
        llm = self.model_for(task)
        if llm is None:
            packed = pack(items, budget=GROUNDED_BUDGET)
        else:
            skeleton = prompt.render(items=[], left_out=0, **task.prompt_vars(snap, []))
            history = sum(count_tokens(t) + 8 for _, t in task.history())
            spare = llm.context_window * TOKENIZER_MARGIN - task.max_tokens
            budget = int(spare - count_tokens(system) - count_tokens(skeleton) - history - 32)
            packed = pack(items, budget=max(budget, 0))
        while True:
            refs, messages = self._messages(task, snap, prompt, system, packed)
            if llm is None or not packed.items:
                break
            used = sum(count_tokens(m.content) + 4 for m in messages)
            if used + task.max_tokens <= llm.context_window * TOKENIZER_MARGIN:
                break
            # Parts that grow with the items (a task's candidate list) did not fit: drop the
            # lowest-priority item and render again.
            packed.left_out.insert(0, packed.items.pop())
        redactor = None
        if llm is not None and llm.external:
            redactor = self.redactor()
            messages = [Message(m.role, redactor.redact(m.content)) for m in messages]
        return Prepared(snap, items, packed, refs, messages, redactor,
                        f"{prompt.name}@{prompt.version}", retrieval_ms, started, index_down,
                        llm)

    def _messages(self, task: Task[R], snap: IncidentSnapshot, prompt: Any, system: str,
                  packed: Packed) -> tuple[dict[str, str], list[Message]]:
        refs = {f"S{n}": item.id for n, item in enumerate(packed.items, 1)}
        view = [{"ref": f"S{n}", "id": item.id, "kind": item.kind, "title": item.title,
                 "text": item.text} for n, item in enumerate(packed.items, 1)]
        user = prompt.render(items=view, left_out=len(packed.left_out),
                             **task.prompt_vars(snap, packed.items))
        messages = [Message("system", system)]
        messages += [Message("assistant" if r == "assistant" else "user", t)
                     for r, t in task.history()]
        messages.append(Message("user", user))
        return refs, messages

    def model_for(self, task: Task[R]) -> LLM | None:
        """The model that answers ``task``: none on the grounded backend, and none for a
        ranking task when the model is not asked to rank (``COPILOT_LLM_RANKS``)."""
        if self.llm is None or (task.ranking and not self.llm.ranks):
            return None
        return self.llm

    # -- answering -------------------------------------------------------------------------

    def run(self, task: Task[R], snap: IncidentSnapshot) -> R:
        prep = self.prepare(task, snap)
        if prep.llm is None:
            return self._by_rules(task, prep)
        model_started = time.perf_counter()
        try:
            text = "".join(self._guarded(prep, task.max_tokens))
            model_ms = (time.perf_counter() - model_started) * 1000
            return self._from_model(task, prep, text, model_ms)
        except ProviderError as exc:
            model_ms = (time.perf_counter() - model_started) * 1000
            return self._fallback(task, prep, f"model error: {exc}", model_ms)

    def stream(self, task: Task[R], snap: IncidentSnapshot) -> Iterator[dict[str, Any]]:
        """Events: ``{"type": "token", "text"}`` as the answer is written, then
        ``{"type": "final", "result"}``. When the final answer differs from the streamed text
        (the model failed midway or its answer did not validate) ``final.replace`` is True."""
        prep = self.prepare(task, snap)
        parts: list[str] = []
        if prep.llm is None:
            result = self._by_rules(task, prep)
        else:
            model_started = time.perf_counter()
            try:
                for piece in self._guarded(prep, task.max_tokens):
                    parts.append(piece)
                    yield {"type": "token", "text": self._show(prep, piece)}
                model_ms = (time.perf_counter() - model_started) * 1000
                result = self._from_model(task, prep, "".join(parts), model_ms)
            except ProviderError as exc:
                model_ms = (time.perf_counter() - model_started) * 1000
                result = self._fallback(task, prep, f"model error: {exc}", model_ms)
        if not parts:  # nothing streamed yet (grounded, or the model failed at once)
            for piece in _pieces(getattr(result, "answer", "")):
                yield {"type": "token", "text": piece}
            yield {"type": "final", "result": result, "replace": False}
            return
        yield {"type": "final", "result": result, "replace": result.degraded}

    def _by_rules(self, task: Task[R], prep: Prepared) -> R:
        result = self._finish(task, prep, task.grounded(prep.snap, prep.packed.items), 0.0)
        if self.llm is not None and not prep.index_down:  # a ranking task, by the policy
            result.reason = (f"ranked by the rules: {self.llm.name} is not asked to rank "
                             f"(COPILOT_LLM_RANKS)")
        return result

    def _show(self, prep: Prepared, piece: str) -> str:
        return prep.redactor.restore(piece) if prep.redactor else piece

    def _guarded(self, prep: Prepared, max_tokens: int) -> Iterator[str]:
        """The model's pieces, stopped with a ProviderError past the deadline or in a loop."""
        llm = prep.llm
        assert llm is not None
        deadline = time.perf_counter() + self.settings.llm_timeout
        parts: list[str] = []
        outcome = "error"
        try:
            for piece in _within(llm.stream(prep.messages, max_tokens=max_tokens), deadline,
                                 f"timed out after {self.settings.llm_timeout:g} s"):
                parts.append(piece)
                yield piece
                if len(parts) % 16 == 0 and looping("".join(parts)):
                    raise ProviderError("the model is repeating itself")
            outcome = "ok"
        finally:
            telemetry.llm_call(llm.name, outcome,
                               sum(count_tokens(m.content) for m in prep.messages),
                               count_tokens("".join(parts)))

    def _from_model(self, task: Task[R], prep: Prepared, text: str, model_ms: float) -> R:
        if prep.redactor is not None:
            text = prep.redactor.restore(text)
        try:
            result = task.parse(text, prep.snap, prep.packed.items, prep.refs)
        except OutputInvalid as exc:
            return self._fallback(task, prep, f"model output did not validate: {exc}", model_ms)
        result = self._finish(task, prep, result, model_ms, backend=self.backend)
        texts = {item.id: item.text for item in prep.packed.items}
        for line in walk_lines(result):
            claim = getattr(line, "text", None) or getattr(line, "statement", None)
            if (task.faithful_lines and isinstance(claim, str) and line.citations
                    and hasattr(line, "supported")
                    and support(claim, [texts[c] for c in line.citations]) < MIN_SUPPORT):
                line.supported = False  # cites something that does not say it
        if not any(line.supported for line in walk_lines(result)):
            return self._fallback(task, prep, "model output cites nothing from the context",
                                  model_ms)
        problem = task.check(result, prep.snap)
        if problem:
            return self._fallback(task, prep, f"model output rejected: {problem}", model_ms)
        return result

    def _fallback(self, task: Task[R], prep: Prepared, reason: str, model_ms: float) -> R:
        """The grounded answer, over all the evidence (not only what fit the model's window)."""
        prep.packed = pack(prep.items, budget=GROUNDED_BUDGET)
        result = self._finish(task, prep, task.grounded(prep.snap, prep.packed.items), model_ms)
        result.degraded = True
        result.reason = f"{reason}; {result.reason}" if result.reason else reason
        telemetry.fallback(task.name, reason)
        return result

    def _finish(self, task: Task[R], prep: Prepared, result: R, model_ms: float, *,
                backend: str = "grounded") -> R:
        """Validate every citation against the packed context and resolve the sources."""
        allowed = {item.id for item in prep.packed.items}
        dropped: list[str] = []
        cited: list[str] = []
        for line in walk_lines(result):
            kept, lost = validate(line.citations, allowed)
            dropped += lost
            line.citations = kept
            if hasattr(line, "supported") and (kept or lost):
                line.supported = bool(kept)
            cited += kept
        task.render(result)
        by_id = {item.id: item for item in prep.packed.items}
        result.sources = [Citation(id=cid, kind=by_id[cid].kind, title=by_id[cid].title,
                                   source=by_id[cid].source, snippet=by_id[cid].text[:300],
                                   meta=_jsonable(by_id[cid].meta))
                          for cid in dict.fromkeys(cited)]
        result.task = task.name
        result.incident_id = prep.snap.id
        result.backend = backend
        result.prompt = prep.prompt if backend != "grounded" else None
        result.left_out = [item.id for item in prep.packed.left_out]
        result.dropped_citations = list(dict.fromkeys(dropped))
        total = (time.perf_counter() - prep.started) * 1000
        result.timings.total_ms = round(total, 2)
        result.timings.model_ms = round(model_ms, 2)
        result.timings.service_ms = round(total - model_ms, 2)
        result.timings.retrieval_ms = round(prep.retrieval_ms, 2)
        if prep.index_down:
            result.degraded = True
            result.reason = f"{prep.index_down}; the knowledge base was searched by keywords only"
        return result


class KeywordsOnly:
    """The retriever while the vector index is down: BM25 over the local catalog, no vectors,
    so a responder still gets the incident's own evidence and keyword-matched runbooks."""

    def __init__(self, retriever: Any) -> None:
        self._retriever = retriever
        self.index = _NoVectors(retriever.index)

    def search(self, query: str, **kwargs: Any) -> Any:
        return self._retriever.search(query, **{**kwargs, "mode": "lexical"})

    def __getattr__(self, name: str) -> Any:
        return getattr(self._retriever, name)


class _NoVectors:
    """The index with an empty vector store (nothing to compare passages with)."""

    def __init__(self, index: Any) -> None:
        self._index = index
        self.store = self

    def query(self, *_args: Any, **_kwargs: Any) -> list[Any]:
        return []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._index, name)


def _within(pieces: Iterator[str], deadline: float, message: str) -> Iterator[str]:
    """The model's pieces, read on a worker thread, so the deadline holds even while the model
    is still reading its prompt (a local model yields nothing until its prefill is done, and
    cannot be interrupted there). Past the deadline: ProviderError; the worker stops at its
    next piece and the model's own lock keeps the next call waiting until it has."""
    box: queue.Queue[tuple[str, Any]] = queue.Queue()
    stop = threading.Event()

    def work() -> None:
        try:
            for piece in pieces:
                if stop.is_set():
                    break
                box.put(("piece", piece))
            box.put(("end", None))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            box.put(("error", exc))
        finally:
            close = getattr(pieces, "close", None)
            if close:
                close()

    threading.Thread(target=work, name="llm-call", daemon=True).start()
    try:
        while True:
            try:
                kind, value = box.get(timeout=max(deadline - time.perf_counter(), 0.001))
            except queue.Empty:
                raise ProviderError(message) from None
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
            if time.perf_counter() > deadline:
                raise ProviderError(message)
    finally:
        stop.set()


def looping(text: str, *, window: int = 60, times: int = 3) -> bool:
    """True when the tail of ``text`` already appeared ``times`` times: a degenerate loop."""
    tail = text[-window:]
    return len(text) > window * times and len(tail.strip()) > 20 and text.count(tail) >= times


def _pieces(text: str) -> Iterator[str]:
    """Grounded answers stream word by word too, so every client reads one kind of stream."""
    words = text.split(" ")
    for n, word in enumerate(words):
        yield word if n == len(words) - 1 else word + " "


def _jsonable(meta: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in meta.items():
        if isinstance(value, str | int | float | bool) or value is None:
            out[key] = value
        elif isinstance(value, list | tuple):
            out[key] = [str(v) for v in value]
        else:
            out[key] = str(value)
    return out
