"""Prometheus metrics: HTTP requests and latency (recorded by the API's middleware), model
calls by backend and outcome, fallbacks to the grounded answer by reason, and tokens."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)

HTTP_REQUESTS = Counter("copilot_http_requests", "HTTP requests answered",
                        ["method", "route", "status"], registry=REGISTRY)
HTTP_LATENCY = Histogram(
    "copilot_http_request_duration_seconds", "Time to answer an HTTP request (to the last byte)",
    ["method", "route"], registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
LLM_CALLS = Counter("copilot_llm_calls", "Calls to a language model",
                    ["backend", "outcome"], registry=REGISTRY)
LLM_TOKENS = Counter("copilot_llm_tokens", "Tokens sent to (prompt) and received from "
                     "(completion) a language model, counted with cl100k_base",
                     ["backend", "kind"], registry=REGISTRY)
FALLBACKS = Counter("copilot_fallbacks", "Answers that fell back to the grounded result",
                    ["task", "reason"], registry=REGISTRY)


def llm_call(backend: str, outcome: str, prompt_tokens: int, completion_tokens: int) -> None:
    LLM_CALLS.labels(backend, outcome).inc()
    LLM_TOKENS.labels(backend, "prompt").inc(prompt_tokens)
    LLM_TOKENS.labels(backend, "completion").inc(completion_tokens)


def fallback(task: str, reason: str) -> None:
    """``reason`` is the degraded answer's reason; its label is the part before the colon
    ("model error", "model output rejected", …) so the label set stays small."""
    FALLBACKS.labels(task, reason.split(":", 1)[0].strip()[:40] or "unknown").inc()


def exposition() -> bytes:
    return generate_latest(REGISTRY)
