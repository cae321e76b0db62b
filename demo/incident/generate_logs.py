"""Write checkout-api.log for the demo incident (deterministic: the same file on every run).

The log covers 12:50 to 14:25 UTC on 2026-11-27. checkout-api 2.84.0 rolls out from 13:56
(ledger DB pool 10 -> 40 per pod, more replicas). From about 14:02 the ledger-db connection
budget is gone: new ERROR shapes appear, the slow-query and PgBouncer-wait WARNs spike, and
the number of served requests drops. Most lines are JSON; pool, health and startup lines are
plain "<ISO time> LEVEL [component] message", as the sidecars and the pool library write them.

    python demo/incident/generate_logs.py
"""

from __future__ import annotations

import json
import random
import string
from datetime import UTC, datetime, timedelta
from pathlib import Path

OUT = Path(__file__).resolve().parent / "checkout-api.log"
START = datetime(2026, 11, 27, 12, 50, tzinfo=UTC)
END = datetime(2026, 11, 27, 14, 25, tzinfo=UTC)
DEPLOY = datetime(2026, 11, 27, 13, 56, tzinfo=UTC)
INCIDENT = datetime(2026, 11, 27, 14, 2, tzinfo=UTC)

rng = random.Random(7)
B62 = string.ascii_letters + string.digits
ROUTES = [("POST", "/v1/payments"), ("GET", "/v1/payments/{id}"),
          ("POST", "/v1/payments/{id}/confirm"), ("POST", "/v1/payments/{id}/capture")]
STATEMENTS = ["insert_ledger_entry", "select_payment_intent_for_update", "update_intent_status",
              "insert_outbox_event"]


def pid() -> str:
    return "pi_" + "".join(rng.choice(B62) for _ in range(14))


def acct() -> str:
    return "acct_" + "".join(rng.choice(B62) for _ in range(10))


def pod(version: str) -> str:
    rs = "6c4d9b7f8" if version == "2.83.2" else "7d9f8c6b5"
    return f"checkout-api-{rs}-" + "".join(rng.choice(string.ascii_lowercase + "2456789")
                                          for _ in range(5))


def stamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def js(t: datetime, level: str, msg: str) -> str:
    return json.dumps({"ts": stamp(t), "level": level, "service": "checkout-api", "msg": msg})


def plain(t: datetime, level: str, component: str, msg: str) -> str:
    return f"{stamp(t)} {level} [{component}] {msg}"


def ramp(t: datetime, full_after_s: float = 150.0) -> float:
    """0 before the incident, rising to 1 over the first minutes of it."""
    s = (t - INCIDENT).total_seconds()
    return 0.0 if s < 0 else min(1.0, 0.25 + s / full_after_s)


# --- line makers: each returns a line for time t -------------------------------------------

def served(t: datetime) -> str:
    method, route = rng.choice(ROUTES)
    ms = int(rng.lognormvariate(4.3, 0.35)) if t < INCIDENT else int(rng.lognormvariate(6.6, 0.5))
    code = 201 if route == "/v1/payments" else 200
    return js(t, "info", f"request served in {ms} ms for {method} {route.format(id=pid())} "
                         f"status {code}")


def authorised(t: datetime) -> str:
    proc = "tessera" if rng.random() < 0.93 else "corvid"
    return js(t, "info", f"payments-gateway authorised {pid()} via {proc} in "
                         f"{int(rng.lognormvariate(5.3, 0.25))} ms")


def kafka_ok(t: datetime) -> str:
    return js(t, "info", f"kafka publish ok topic payments.events partition {rng.randrange(24)} "
                         f"offset {rng.randrange(81_000_000, 82_000_000)}")


def cache_ratio(t: datetime) -> str:
    return js(t, "info", f"cache hit ratio {rng.uniform(0.91, 0.97):.3f} over last 60 s "
                         f"on redis-cache (idempotency keys)")


def outbox(t: datetime) -> str:
    return js(t, "info", f"outbox relay published {rng.randint(4, 40)} events in "
                         f"{rng.randint(9, 60)} ms")


def idempotent(t: datetime) -> str:
    return js(t, "info", f"idempotency key replayed for merchant {acct()}, returning stored "
                         f"response for {pid()}")


def health(t: datetime) -> str:
    return plain(t, "INFO", "health", f"GET /healthz 200 in {rng.randint(1, 4)} ms")


def pool_stats(t: datetime) -> str:
    if t < DEPLOY:
        active, waiting, idle = rng.randint(70, 110), 0, rng.randint(8, 30)
    elif t < INCIDENT:
        active, waiting, idle = rng.randint(160, 320), rng.randint(0, 6), rng.randint(0, 4)
    else:
        active, waiting, idle = rng.randint(380, 420), rng.randint(180, 900), 0
    return plain(t, "INFO", "pgbouncer", f"pool ledger/checkout_api stats: cl_active {active} "
                                         f"cl_waiting {waiting} sv_idle {idle}")


# routine WARNs: steady before and during the incident
def redis_slow(t: datetime) -> str:
    return js(t, "warn", f"redis-cache GET took {rng.randint(26, 90)} ms, above the 25 ms "
                         f"budget for idempotency key of {acct()}")


def kafka_retry(t: datetime) -> str:
    return js(t, "warn", f"kafka publish to payments.events retried once after "
                         f"NOT_LEADER_OR_FOLLOWER on partition {rng.randrange(24)}")


# WARNs that exist in the baseline and spike once the pool is exhausted
def slow_query(t: datetime) -> str:
    ms = rng.randint(520, 1400) if t < INCIDENT else rng.randint(1800, 29000)
    return js(t, "warn", f"slow query on ledger-db took {ms} ms for statement "
                         f"{rng.choice(STATEMENTS)}")


def pgb_wait(t: datetime) -> str:
    ms = rng.randint(150, 700) if t < INCIDENT else rng.randint(2000, 30000)
    return plain(t, "WARN", "pgbouncer", f"client waited {ms} ms for a server connection "
                                         f"on pool ledger/checkout_api")


# ERRORs that never appear before the incident
def pool_timeout(t: datetime) -> str:
    return js(t, "error", f"pool timeout after 30000 ms acquiring connection to ledger-db "
                          f"(active 40, idle 0, waiting {rng.randint(20, 140)})")


def too_many(t: datetime) -> str:
    return plain(t, "ERROR", "pgbouncer", "server login failed: FATAL: sorry, too many "
                                          "clients already (ledger-db-0.databases:5432)")


def returning_503(t: datetime) -> str:
    return js(t, "error", f"returning 503 for POST /v1/payments/{pid()}/confirm: "
                          f"error_class db_pool_timeout")


def outbox_failed(t: datetime) -> str:
    return js(t, "error", f"outbox relay could not claim batch of {rng.randint(20, 200)} "
                          f"events: ledger-db connection unavailable")


# --- rates in lines per minute, as a function of time --------------------------------------

def info_factor(t: datetime) -> float:
    """Served traffic falls away once requests queue for connections."""
    return 1.0 if t < INCIDENT else 0.35


RATES = [
    (served, lambda t: 9.0 * info_factor(t)),
    (authorised, lambda t: 5.0 * info_factor(t)),
    (kafka_ok, lambda t: 4.0 * info_factor(t)),
    (outbox, lambda t: 2.0 * info_factor(t)),
    (cache_ratio, lambda t: 2.0),
    (idempotent, lambda t: 1.2 * info_factor(t)),
    (health, lambda t: 3.0),
    (pool_stats, lambda t: 1.0),
    (redis_slow, lambda t: 0.12),
    (kafka_retry, lambda t: 0.05),
    (slow_query, lambda t: (0.1 if t < DEPLOY else 0.4) + 4.5 * ramp(t)),
    (pgb_wait, lambda t: (0.08 if t < DEPLOY else 0.4) + 5.0 * ramp(t)),
    (pool_timeout, lambda t: 6.0 * ramp(t)),
    (returning_503, lambda t: 4.5 * ramp(t)),
    (too_many, lambda t: 2.5 * ramp(t, 240)),
    (outbox_failed, lambda t: 0.8 * ramp(t)),
]


def rollout_lines() -> list[tuple[datetime, str]]:
    """2.84.0 pods replace the 12 pods of 2.83.2 and the HPA adds 12 more, 13:56 to ~14:08."""
    out = []
    for i in range(24):
        t = DEPLOY + timedelta(seconds=20 + i * 28 + rng.randint(0, 15),
                               milliseconds=rng.randint(0, 999))
        name = pod("2.84.0")
        out.append((t, plain(t, "INFO", "startup", f"starting checkout-api 2.84.0 (git 9f3c2ab) "
                                                   f"on pod {name}")))
        t2 = t + timedelta(milliseconds=rng.randint(800, 2500))
        out.append((t2, plain(t2, "INFO", "db-pool", f"ledger-db pool ready on {name}: max 40, "
                                                     f"min idle 10, target ledger-pgbouncer:6432")))
        if i < 12:
            t3 = t + timedelta(seconds=rng.randint(30, 50))
            out.append((t3, js(t3, "info", f"shutting down checkout-api 2.83.2 on pod "
                                           f"{pod('2.83.2')}, draining in-flight requests")))
    return out


def main() -> None:
    events: list[tuple[datetime, str]] = rollout_lines()
    # Each shape accumulates its per-second rate and fires when it passes a jittered threshold:
    # irregular like real traffic, but even a rare WARN shows up about as often as its rate says.
    due = [rng.uniform(0.0, 1.0) for _ in RATES]
    t = START
    while t < END:
        for n, (make, rate) in enumerate(RATES):
            due[n] -= rate(t) / 60.0
            if due[n] <= 0:
                due[n] += rng.uniform(0.3, 1.7)
                at = t + timedelta(milliseconds=rng.randint(0, 999))
                events.append((at, make(at)))
        t += timedelta(seconds=1)
    events.sort(key=lambda e: e[0])
    OUT.write_text("".join(line + "\n" for _, line in events), encoding="utf-8")
    print(f"wrote {len(events)} lines, {OUT.stat().st_size:,} bytes to {OUT}")


if __name__ == "__main__":
    main()
