"""The model deadline holds even when the model is silent (a local model reading a long
prompt yields nothing until it is done, and cannot be interrupted there)."""

from __future__ import annotations

import threading
import time

from copilot.tasks.chat import Chat


class _SilentModel:
    name = "silent"
    external = False
    context_window = 2048

    def __init__(self, silence: float) -> None:
        self.silence = silence
        self.lock = threading.Lock()
        self.finished = threading.Event()

    def stream(self, messages, *, max_tokens):  # type: ignore[no-untyped-def]
        with self.lock:
            try:
                time.sleep(self.silence)  # "prefill": nothing to yield yet
                yield "The deploy did it. "
            finally:
                self.finished.set()  # stopped or done: the lock is released


def test_a_silent_model_is_cut_off_at_the_deadline(demo_copilot, demo_env) -> None:  # type: ignore[no-untyped-def]
    demo_copilot.settings = demo_copilot.settings.model_copy(update={"llm_timeout": 1.0})
    model = _SilentModel(silence=4.0)
    demo_copilot.llm = model
    snap = demo_copilot.snapshot(demo_env[2])
    started = time.monotonic()
    result = demo_copilot.run(Chat("What changed before the first alert?"), snap)
    elapsed = time.monotonic() - started
    assert result.degraded and "timed out after 1 s" in result.reason
    assert "2.84.0" in result.answer  # the grounded answer stands in
    assert result.timings.model_ms < 1_500, result.timings  # waited 1 s for the model, not 4
    assert elapsed < model.silence, elapsed
    # the abandoned call still holds the model's lock: the next call waits for it, and is
    # itself answered on time
    again = demo_copilot.run(Chat("Who is paged?"), snap)
    assert again.degraded and again.timings.model_ms < 1_500, again.timings
    assert model.finished.wait(15)  # the worker stopped and released the model
