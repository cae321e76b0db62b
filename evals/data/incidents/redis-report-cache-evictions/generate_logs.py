"""Write merchant-dashboard.log for the redis-report-cache-evictions eval incident (deterministic).

The log covers 12:20 to 14:05 UTC on Tuesday 2026-12-15, from the merchant-dashboard
backend-for-frontend. Since 11:40 the flag dashboard.cache_report_exports is on for every
merchant, and report previews of 1-4 MB are cached in redis-cache under rptcache:* keys.
redis-cache memory passes 85% at 12:52 (Redis commands get slower) and reaches maxmemory at
13:22, when allkeys-lru eviction starts removing dashboard sessions, rate-limit counters and
idempotency keys along with the cache. From then on: lost-session WARNs and CSRF ERRORs, SET
timeouts and client reconnects. The flag is rolled back at 13:36 and the rptcache keys are
UNLINKed from 13:40; evictions stop at 13:47 and merchants log back in.
Lines are pino JSON (numeric "level", epoch-millisecond "time").

    python evals/data/incidents/redis-report-cache-evictions/generate_logs.py
"""

from __future__ import annotations

import json
import random
import string
from datetime import UTC, datetime, timedelta
from pathlib import Path

OUT = Path(__file__).resolve().parent / "merchant-dashboard.log"
START = datetime(2026, 12, 15, 12, 20, tzinfo=UTC)
END = datetime(2026, 12, 15, 14, 5, tzinfo=UTC)
MEM_HIGH = datetime(2026, 12, 15, 12, 52, tzinfo=UTC)
EVICTING = datetime(2026, 12, 15, 13, 22, tzinfo=UTC)
FLAG_OFF = datetime(2026, 12, 15, 13, 36, 20, tzinfo=UTC)
UNLINK = datetime(2026, 12, 15, 13, 40, tzinfo=UTC)
EVICT_STOP = datetime(2026, 12, 15, 13, 47, tzinfo=UTC)

rng = random.Random(1215)
B62 = string.ascii_letters + string.digits
PODS = ["merchant-dashboard-bff-6b8f7c9d5-" + s for s in ("r4kqz", "t7mxw", "c2jnv", "p9hsd")]
ROUTES = ["GET /bff/invoices", "GET /bff/payments", "GET /bff/payouts", "GET /bff/session",
          "GET /bff/reports/{r}/preview", "POST /bff/invoices/{r}/send"]
REPORTS = ["settlement-2026-11", "payouts-2026-11", "fees-2026-11", "disputes-2026-q4",
           "settlement-2026-12-w2"]
REDIS_URL = "redis://default:Rc4che-Pr0d-2026mX@redis-cache-0.redis.lumenfield.internal:6379/0"
LEVELS = {"debug": 20, "info": 30, "warn": 40, "error": 50}


def rid(prefix: str, n: int) -> str:
    return prefix + "".join(rng.choice(B62) for _ in range(n))


def pino(t: datetime, level: str, msg: str) -> str:
    return json.dumps({"level": LEVELS[level], "time": int(t.timestamp() * 1000), "pid": 1,
                       "hostname": rng.choice(PODS), "service": "merchant-dashboard",
                       "msg": msg})


def pressured(t: datetime) -> bool:
    """Memory above 85%: Redis commands are slower."""
    return MEM_HIGH <= t < EVICT_STOP + timedelta(minutes=4)


def evicting(t: datetime) -> bool:
    return EVICTING <= t < EVICT_STOP


def flag_on(t: datetime) -> bool:
    return t < FLAG_OFF


def relogin_wave(t: datetime) -> float:
    if EVICTING <= t < EVICT_STOP + timedelta(minutes=8):
        return 1.0
    return 0.0


# --- line makers ------------------------------------------------------------------------------

def request(t: datetime) -> str:
    route = rng.choice(ROUTES).format(r=rid("rpt_", 8))
    ms = int(rng.lognormvariate(4.1, 0.35) * (1.6 if pressured(t) else 1.0))
    return pino(t, "info", f"{route} 200 in {ms} ms")


def cache_write(t: datetime) -> str:
    return pino(t, "info", f"cached report preview rptcache:{rid('acct_', 10)}:"
                           f"{rng.choice(REPORTS)} ({rng.uniform(0.8, 4.1):.1f} MB)")


def cache_hit(t: datetime) -> str:
    return pino(t, "info", f"report preview cache hit rptcache:{rid('acct_', 10)}:"
                           f"{rng.choice(REPORTS)}")


def cache_miss(t: datetime) -> str:
    return pino(t, "info", f"report preview cache miss rptcache:{rid('acct_', 10)}:"
                           f"{rng.choice(REPORTS)}; export job queued")


def login(t: datetime) -> str:
    return pino(t, "info", f"dashboard login for {rid('usr_', 10)} via SSO")


def session_lost(t: datetime) -> str:
    return pino(t, "warn", f"session {rid('sess:', 16)} not found in redis-cache, redirecting "
                           f"{rid('usr_', 10)} to /login")


def redis_slow(t: datetime) -> str:
    ms = rng.randint(60, 240) if pressured(t) else rng.randint(26, 60)
    return pino(t, "warn", f"redis-cache {rng.choice(['GET', 'SET', 'EXPIRE'])} took {ms} ms, "
                           f"above the 25 ms budget")


def csrf_fail(t: datetime) -> str:
    route = rng.choice(["POST /bff/payouts/schedule", "POST /bff/invoices/{r}/send",
                        "POST /bff/api-keys"]).format(r=rid("inv_", 8))
    return pino(t, "error", f"csrf check failed for {route}: session {rid('sess:', 16)} "
                            f"missing (evicted or expired mid-request), returning 403")


def set_timeout(t: datetime) -> str:
    return pino(t, "error", f"redis-cache SET rptcache:{rid('acct_', 10)}:{rng.choice(REPORTS)} "
                            f"timed out after 250 ms")


def reconnect(t: datetime) -> str:
    return pino(t, "warn", f"redis client reconnecting to {REDIS_URL} after 3 consecutive "
                           f"command timeouts")


def evicted_miss(t: datetime) -> str:
    return pino(t, "warn", f"report preview rptcache:{rid('acct_', 10)}:{rng.choice(REPORTS)} "
                           f"was cached 4 min ago but is gone (evicted?); export job queued")


RATES = [
    (request, lambda t: 6.0),
    (cache_write, lambda t: 1.6 if flag_on(t) else 0.0),
    (cache_hit, lambda t: 1.2 if flag_on(t) and not evicting(t) else 0.0),
    (cache_miss, lambda t: 0.8 if flag_on(t) else 0.4),
    (login, lambda t: 0.6 + 4.0 * relogin_wave(t)),
    (session_lost, lambda t: 0.2 + (6.0 if evicting(t) else 0.0)),
    (redis_slow, lambda t: 1.8 if evicting(t) else (0.6 if pressured(t) else 0.1)),
    (csrf_fail, lambda t: 1.8 if evicting(t) else 0.0),
    (set_timeout, lambda t: 1.2 if evicting(t) and flag_on(t) else 0.0),
    (reconnect, lambda t: 0.25 if evicting(t) else 0.0),
    (evicted_miss, lambda t: 1.5 if evicting(t) and flag_on(t) else 0.0),
]


def one_off_lines() -> list[tuple[datetime, str]]:
    out = []
    for i, pod in enumerate(PODS):
        t = FLAG_OFF + timedelta(seconds=i * 4 + rng.randint(0, 3), milliseconds=rng.randint(0, 999))
        out.append((t, json.dumps({"level": 30, "time": int(t.timestamp() * 1000), "pid": 1,
                                   "hostname": pod, "service": "merchant-dashboard",
                                   "msg": "flag dashboard.cache_report_exports changed to off "
                                          "(lumenflag rollback to version 7); report previews "
                                          "no longer cached"})))
    t = datetime(2026, 12, 15, 13, 29, 41, 208000, tzinfo=UTC)
    out.append((t, pino(t, "warn", "session sess:Xq7Lm2Vd9Rk4Tz8B not found in redis-cache, "
                                   "redirecting o.grady@copperleaf-studio.example to /login "
                                   "(third time in 6 minutes)")))
    t = datetime(2026, 12, 15, 13, 52, 3, 517000, tzinfo=UTC)
    out.append((t, pino(t, "info", "redis-cache command latency back under budget for 5 minutes "
                                   "(p99 14 ms)")))
    return out


def main() -> None:
    events = one_off_lines()
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
