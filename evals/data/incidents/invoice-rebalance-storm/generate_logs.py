"""Write invoice-worker.log for the invoice-rebalance-storm eval incident (deterministic).

The log covers 23:20 UTC on 2026-11-30 to 01:10 UTC on 2026-12-01. invoice-worker 3.52.0 is
synced at 23:41 with MAX_POLL_RECORDS 400 (3.51.4 had 50) and eager partition assignment. The
December recurring billing run starts publishing to invoice.requested at 00:00. Full 400-record
batches take longer than max.poll.interval.ms, so from about 00:08 members are dropped from the
group and every rebalance stops the whole group: poll-timeout WARNs, revocations, failed commits,
aborted batches and redelivered invoices, with the consume rate near zero. The rollback to
3.51.4 rolls the pods from 00:41; the group is stable from 00:49 and works off the backlog.
Application lines are logfmt; the Kafka client's lines are log4j style
"<date> <time>,<ms> LEVEL [Consumer ...] message".

    python evals/data/incidents/invoice-rebalance-storm/generate_logs.py
"""

from __future__ import annotations

import random
import string
from datetime import UTC, datetime, timedelta
from pathlib import Path

OUT = Path(__file__).resolve().parent / "invoice-worker.log"
START = datetime(2026, 11, 30, 23, 20, tzinfo=UTC)
END = datetime(2026, 12, 1, 1, 10, tzinfo=UTC)
DEPLOY = datetime(2026, 11, 30, 23, 41, tzinfo=UTC)
RUN = datetime(2026, 12, 1, 0, 0, tzinfo=UTC)
INCIDENT = datetime(2026, 12, 1, 0, 8, tzinfo=UTC)
ROLLBACK = datetime(2026, 12, 1, 0, 41, tzinfo=UTC)
STABLE = datetime(2026, 12, 1, 0, 49, tzinfo=UTC)

rng = random.Random(1201)
B62 = string.ascii_letters + string.digits
DSN = ("postgres://invoice_worker:Inv0iceW0rker-9zQ@ledger-pgbouncer.databases.lumenfield.internal"
       ":6432/ledger")
COORDINATOR = "kafka-events-kafka-2 (10.48.6.21:9092)"
generation = 205


def rid(prefix: str, n: int) -> str:
    return prefix + "".join(rng.choice(B62) for _ in range(n))


def inv(t: datetime) -> str:
    return f"inv_{t:%Y_%m}_{rng.randint(1, 2_100_000 if t >= RUN else 90_000):07d}"


def pod() -> str:
    return f"invoice-worker-{rng.randint(0, 11)}"


def stamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def lf(t: datetime, level: str, msg: str, **fields: object) -> str:
    extra = "".join(f" {k}={v}" for k, v in fields.items())
    escaped = msg.replace('"', '\\"')
    return f'ts={stamp(t)} level={level} service=invoice-worker msg="{escaped}"{extra}'


def kafka(t: datetime, level: str, msg: str) -> str:
    clock = t.strftime("%Y-%m-%d %H:%M:%S,") + f"{t.microsecond // 1000:03d}"
    return (f"{clock} {level} [Consumer clientId={pod()}, groupId=invoice-worker] {msg}")


def storm(t: datetime) -> bool:
    return INCIDENT <= t < STABLE


def volume(t: datetime) -> float:
    """How much invoice work the worker gets done, relative to the quiet evening."""
    if t < RUN:
        return 1.0
    if t < INCIDENT:
        return 3.0
    if t < STABLE:
        return 0.15
    return 3.5


def batch_size(t: datetime) -> int:
    return 400 if DEPLOY + timedelta(minutes=3) <= t < ROLLBACK + timedelta(minutes=4) else 50


# --- line makers ------------------------------------------------------------------------------

def rendered(t: datetime) -> str:
    return lf(t, "info", f"invoice {inv(t)} rendered and stored", merchant=rid("acct_", 10),
              render_ms=int(rng.lognormvariate(5.4 if t >= RUN else 5.0, 0.35)),
              pdf_kb=rng.randint(40, 260))


def notify(t: datetime) -> str:
    return lf(t, "info", f"requested invoice email for {inv(t)}", topic="notifications.outbound")


def fetched(t: datetime) -> str:
    n = batch_size(t) if t >= RUN else rng.randint(3, 40)
    return lf(t, "info", f"fetched {n} records from invoice.requested partition "
                         f"{rng.randrange(48)}")


def committed(t: datetime) -> str:
    return kafka(t, "INFO", f"Committed offsets for {rng.randint(3, 5)} partitions")


def rate_line(t: datetime) -> str:
    if t < RUN:
        r = rng.randint(25, 60)
    elif t < INCIDENT:
        r = rng.randint(780, 960)
    elif t < STABLE:
        r = rng.randint(0, 35)
    else:
        r = rng.randint(1180, 1390)
    return lf(t, "info", f"consume rate {r} invoices/s over the last 60 s")


def tax_cache(t: datetime) -> str:
    return lf(t, "warn", f"tax rate cache miss for region {rng.choice(['DE-BY', 'FR-IDF', 'NL-NH', 'US-CA', 'GB-ENG'])}, "
                         f"loaded from ledger-db in {rng.randint(30, 90)} ms")


def s3_retry(t: datetime) -> str:
    return lf(t, "warn", f"object-storage PUT lumenfield-invoices-prod/{inv(t)}.pdf retried after "
                         f"SlowDown")


def poll_timeout(t: datetime) -> str:
    return kafka(t, "WARN", "consumer poll timeout has expired: time between poll() calls "
                            "exceeded max.poll.interval.ms (300000 ms); sending LeaveGroup")


def revoking(t: datetime) -> str:
    parts = sorted(rng.sample(range(48), 4))
    return kafka(t, "INFO", "Revoking previously assigned partitions "
                            f"[{', '.join(f'invoice.requested-{p}' for p in parts)}]")


def joined(t: datetime) -> str:
    global generation
    if rng.random() < 0.25:
        generation = min(generation + 1, 218)
    return kafka(t, "INFO", f"Successfully joined group with generation {generation}")


def commit_failed(t: datetime) -> str:
    return lf(t, "error", "offset commit failed: group has already rebalanced and assigned "
                          "the partitions to another member", batch_size=400)


def batch_aborted(t: datetime) -> str:
    return lf(t, "error", "batch aborted after partition revoke; records will be redelivered",
              processed=rng.randint(60, 390), batch_size=400,
              elapsed_ms=rng.randint(301_000, 420_000))


def redelivered(t: datetime) -> str:
    return lf(t, "warn", f"invoice {inv(t)} already stored (redelivered after rebalance), "
                         f"skipping render")


def ledger_aborted(t: datetime) -> str:
    return lf(t, "error", f"tax ledger lookup aborted: connection closed during pool shutdown "
                          f"on partition revoke (dsn={DSN})")


def coordinator(t: datetime) -> str:
    return kafka(t, "INFO", f"Discovered group coordinator {COORDINATOR}")


RATES = [
    (rendered, lambda t: 3.4 * volume(t)),
    (notify, lambda t: 1.2 * volume(t)),
    (fetched, lambda t: 1.0 * (0.3 if storm(t) else 1.0)),
    (committed, lambda t: 0.8 * (0.2 if storm(t) else 1.0)),
    (rate_line, lambda t: 1.0),
    (tax_cache, lambda t: 0.15),
    (s3_retry, lambda t: 0.08 if t < RUN else 0.25),
    (poll_timeout, lambda t: 2.2 if storm(t) else 0.0),
    (revoking, lambda t: 2.5 if storm(t) else 0.0),
    (joined, lambda t: 1.5 if storm(t) else 0.0),
    (commit_failed, lambda t: 1.6 if storm(t) else 0.0),
    (batch_aborted, lambda t: 1.3 if storm(t) else 0.0),
    (redelivered, lambda t: 1.0 if storm(t) or STABLE <= t < STABLE + timedelta(minutes=6) else 0.0),
    (ledger_aborted, lambda t: 0.25 if storm(t) else 0.0),
    (coordinator, lambda t: 0.3 if storm(t) else 0.0),
]


def rollout(version: str, git: str, records: int, at: datetime, old: str) -> list[tuple[datetime, str]]:
    out = []
    for i in range(12):
        t = at + timedelta(seconds=15 + i * 22 + rng.randint(0, 8), milliseconds=rng.randint(0, 999))
        out.append((t, lf(t, "info", f"shutting down invoice-worker {old}, closing consumer",
                          pod=f"invoice-worker-{i}")))
        t2 = t + timedelta(seconds=rng.randint(12, 25))
        out.append((t2, lf(t2, "info", f"starting invoice-worker {version} (git {git})",
                           pod=f"invoice-worker-{i}", MAX_POLL_RECORDS=records,
                           RENDER_THREADS=8 if records == 400 else 4,
                           max_poll_interval_ms=300000, assignment="eager")))
    return out


def one_off_lines() -> list[tuple[datetime, str]]:
    out = rollout("3.52.0", "5d2e8f1", 400, DEPLOY, "3.51.4")
    out += rollout("3.51.4", "0b7a4c9", 50, ROLLBACK, "3.52.0")
    t = datetime(2026, 12, 1, 0, 27, 14, 806000, tzinfo=UTC)
    out.append((t, lf(t, "warn", "invoice inv_2026_12_0418822 for ap@oakridge-property.example "
                                 "queued for email after 3 redeliveries")))
    t = STABLE + timedelta(seconds=12)
    out.append((t, kafka(t, "INFO", "Successfully joined group with generation 219; assigned "
                                    "4 partitions, no rebalance in the last 60 s")))
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
