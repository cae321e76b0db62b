"""Log line parsing (JSON, logfmt, syslog, Apache, klog, log4j...), reading with limits, and the
new-or-spiking pattern ranking."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pytest

from copilot.errors import IngestError
from ingest.logmine import DrainMiner
from ingest.logs import ParsedLine, mine_patterns, parse_line, read_lines, score_pattern
from tests.conftest import SHARED

T = datetime(2026, 11, 27, 14, 2, 3, tzinfo=UTC)
EPOCH = int(T.timestamp())


def ms(n: int) -> timedelta:
    return timedelta(milliseconds=n)


def parse(raw: str, **kw: object) -> ParsedLine:
    return parse_line(raw, line_no=7, default_year=2026, **kw)  # type: ignore[arg-type]


PLAIN = [
    # raw, ts, level, service, message
    ("2026-11-27T14:02:03.123Z ERROR db timeout after 30s",
     T + ms(123), "ERROR", None, "db timeout after 30s"),
    ("2026-11-27T15:02:03+01:00 WARN replica lag high",
     T, "WARN", None, "replica lag high"),
    ("2026-11-27 14:02:03,123 WARN [main] Pool exhausted",
     T + ms(123), "WARN", None, "[main] Pool exhausted"),
    ("2026-11-27 14:02:03,123 - payments.db - WARNING - slow query",
     T + ms(123), "WARN", "payments.db", "slow query"),
    ("[2026-11-27 09:02:03.5 -0500] [info] started",
     T + ms(500), "INFO", None, "started"),
    ("2026-11-27T14:02:03Z level=error msg=\"db down\" service=api",
     T, "ERROR", "api", "db down"),
    ("2026-11-27T16:02:03+02:00 node-1 kubelet[812]: Started pod",
     T, None, "kubelet", "Started pod"),
    ("2026/11/27 14:02:03 [error] 31#31: *1 connect() failed (111: Connection refused)",
     T, "ERROR", None, "31#31: *1 connect() failed (111: Connection refused)"),
    ("Nov 27 14:02:03 web-1 sshd[123]: Failed password for root from 10.0.0.1 port 22 ssh2",
     T, None, "sshd", "Failed password for root from 10.0.0.1 port 22 ssh2"),
    ("Nov 27 14:02:03 web-1 sshd[123]: error: kex_exchange_identification: closed",
     T, "ERROR", "sshd", "kex_exchange_identification: closed"),
    ("Nov  7 14:02:03 web-1 CRON[9]: (root) CMD (run-parts)",
     T.replace(day=7), None, "CRON", "(root) CMD (run-parts)"),
    ("<11>Nov 27 14:02:03 web-1 app: disk failed",
     T, "ERROR", "app", "disk failed"),
    ("<34>1 2026-11-27T14:02:03Z host app - - - msg",
     T, "CRITICAL", "app", "msg"),
    (('<165>1 2026-11-27T16:02:03.5+02:00 host.example evntslog 77 ID47 '
      '[exampleSDID@32473 iut="3" eventSource="Application"] \ufeffAn application event'),
     T + ms(500), "NOTICE", "evntslog", "An application event"),
    ("<14>1 - host - - - - no timestamp here", None, "INFO", None, "no timestamp here"),
    ("[Fri Nov 27 14:02:03.123 2026] [proxy:error] [pid 42] AH00940: backend down",
     T + ms(123), "ERROR", None, "[pid 42] AH00940: backend down"),
    ("[Sun Dec 04 04:47:44 2005] [notice] workerEnv.init() ok /etc/httpd/conf/workers2.properties",
     datetime(2005, 12, 4, 4, 47, 44, tzinfo=UTC), "NOTICE", None,
     "workerEnv.init() ok /etc/httpd/conf/workers2.properties"),
    ('127.0.0.1 - - [27/Nov/2026:14:02:03 +0000] "GET / HTTP/1.1" 503 197 "-" "curl/8.0"',
     T, "ERROR", None, '"GET / HTTP/1.1" 503 197 "-" "curl/8.0"'),
    ('10.1.2.3 - bob [27/Nov/2026:15:02:03 +0100] "POST /login HTTP/2.0" 404 0',
     T, "WARN", None, '"POST /login HTTP/2.0" 404 0'),
    ('10.1.2.3 - - [27/Nov/2026:09:02:03 -0500] "GET /health HTTP/1.1" 200 2 "-" "kube-probe"',
     T, "INFO", None, '"GET /health HTTP/1.1" 200 2 "-" "kube-probe"'),
    ("E1127 14:02:03.123456    1 reflector.go:42] failed to list *v1.Pod",
     T + timedelta(microseconds=123456), "ERROR", None, "failed to list *v1.Pod"),
    ("W1127 14:02:03.000001   17 leader.go:9] lease lost",
     T + timedelta(microseconds=1), "WARN", None, "lease lost"),
    ("I1127 14:02:03.5 1 main.go:1] ok", T + ms(500), "INFO", None, "ok"),
    ("F1127 14:02:03.000000 1 main.go:1] cannot start", T, "FATAL", None, "cannot start"),
    ("081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 terminating",
     datetime(2008, 11, 9, 20, 36, 15, tzinfo=UTC), "INFO", None,
     "dfs.DataNode$PacketResponder: PacketResponder 1 terminating"),
    ("ERROR something broke", None, "ERROR", None, "something broke"),
    ("[warn] disk at 91%", None, "WARN", None, "disk at 91%"),
    ("WARNING: deprecated flag", None, "WARN", None, "deprecated flag"),
    ('ts=2026-11-27T14:02:03Z level=error msg="db down: \\"primary\\"" service=billing',
     T, "ERROR", "billing", 'db down: "primary"'),
    ("time=2026-11-27T14:02:03.123Z lvl=warn msg=retrying attempt=3",
     T + ms(123), "WARN", None, "retrying"),
]


@pytest.mark.parametrize(("raw", "ts", "level", "service", "message"), PLAIN,
                         ids=[p[0][:40] for p in PLAIN])
def test_plain_text_formats(raw: str, ts: datetime | None, level: str | None,
                            service: str | None, message: str) -> None:
    line = parse(raw + "\n")
    assert (line.ts, line.level, line.service, line.message) == (ts, level, service, message)
    assert line.raw == raw and line.line_no == 7
    assert line.ts is None or line.ts.utcoffset() == timedelta(0)


JSON = [
    ('{"ts": "2026-11-27T14:02:03.123456789Z", "level": "INFO", "msg": "hello"}',
     T + timedelta(microseconds=123456), "INFO", None, "hello"),
    (f'{{"time": {EPOCH}, "lvl": "warning", "message": "disk", "app": "billing"}}',
     T, "WARN", "billing", "disk"),
    ((f'{{"timestamp": {EPOCH * 1000 + 250}, "severity": "ERROR", "log": "boom", '
      '"component": "db"}'), T + ms(250), "ERROR", "db", "boom"),
    (f'{{"ts": "{EPOCH * 1000}", "level": "debug", "msg": "string epoch ms"}}',
     T, "DEBUG", None, "string epoch ms"),
    (f'{{"ts": {EPOCH}.5, "level": "info", "msg": "float seconds"}}',
     T + ms(500), "INFO", None, "float seconds"),
    (('{"@timestamp": "2026-11-27T15:02:03+01:00", "log.level": "error", "message": "ecs flat",'
      ' "service.name": "api"}'), T, "ERROR", "api", "ecs flat"),
    (('{"@timestamp": "2026-11-27T14:02:03Z", "log": {"level": "warn", "logger": "x"},'
      ' "message": "ecs nested", "service": {"name": "checkout"}}'),
     T, "WARN", "checkout", "ecs nested"),
    (('{"t": "2026-11-27T14:02:03Z", "levelname": "CRITICAL", "event": "e1", '
      '"logger": "app.core"}'), T, "CRITICAL", "app.core", "e1"),
    ('{"datetime": "2026-11-27 14:02:03", "level": 50, "msg": "pino numeric"}',
     T, "ERROR", None, "pino numeric"),
    ('{"ts": "2026-11-27T14:02:03Z", "level": "info", "user": "bob", "action": "login"}',
     T, "INFO", None, "user=bob action=login"),
    ('{"msg": "no time, odd level", "level": "verbose"}', None, None, None,
     "no time, odd level"),
]


@pytest.mark.parametrize(("raw", "ts", "level", "service", "message"), JSON)
def test_json_lines(raw: str, ts: datetime | None, level: str | None, service: str | None,
                    message: str) -> None:
    line = parse(raw)
    assert (line.ts, line.level, line.service, line.message) == (ts, level, service, message)


@pytest.mark.parametrize("raw", [
    "just some text", "   indented text  ", "{not json at all", '{"msg": "truncated',
    "{", "[]", "42", "Feb 30 10:00:00 host app: impossible date",
    "2026-02-30T10:00:00Z ERROR impossible date", "081399 256199 x",
    '{"ts": 1e400, "msg": "inf"}', '{"ts": -1e30, "msg": "far past"}',
    '{"ts": "2026-13-45T99:99:99Z", "msg": "bad iso"}', '{"ts": true, "msg": "bool"}',
    "<999>1 2026-11-27T14:02:03Z h a - - - big pri", "E9999 99:99:99.1 1 f.go:1] bad klog",
    '{"a":' * 3000 + "1" + "}" * 3000, "\x00\x01\ufffd binary junk", "Error connecting to db",
])
def test_unrecognised_or_malformed_lines_never_raise(raw: str) -> None:
    line = parse(raw)
    assert isinstance(line.message, str) and line.message
    assert line.ts is None or line.ts.tzinfo is not None


def test_fallback_keeps_the_whole_stripped_line() -> None:
    line = parse("   Error connecting to db  \n")
    assert (line.ts, line.level, line.service, line.message) == (
        None, None, None, "Error connecting to db")
    assert parse("{not json").message == "{not json"
    assert parse("2026-02-30T10:00:00Z ERROR x").ts is None


def test_default_service_fills_only_gaps() -> None:
    assert parse("ERROR x", default_service="web").service == "web"
    assert parse("Nov 27 14:02:03 h sshd[1]: x", default_service="web").service == "sshd"


def test_syslog_without_year_is_not_in_the_future() -> None:
    now = datetime.now(UTC)
    line = parse_line(f"{now:%b} {now.day:2d} 00:00:01 h app: x", line_no=1)
    assert line.ts is not None and line.ts.year == now.year and line.ts <= now
    later = now + timedelta(days=40)
    line = parse_line(f"{later:%b} {later.day:2d} 00:00:01 h app: x", line_no=1)
    assert line.ts is not None and line.ts <= now + timedelta(days=2)


# --- reading ---------------------------------------------------------------------------------

def test_read_lines_from_file(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    path.write_bytes(b"2026-11-27T14:02:03Z INFO ok\r\n\n   \nbad \xff byte\n"
                     + b"x" * 200 + b"\n" + "é".encode() * 100 + b"\n" + b"y" * 100 + b"\n"
                     + b"ERROR last line without newline")
    lines = list(read_lines(path, max_line_bytes=101))
    assert [n.line_no for n in lines] == [1, 4, 5, 6, 7, 8]
    assert lines[0].ts == T and lines[0].raw == "2026-11-27T14:02:03Z INFO ok"
    assert lines[1].message == "bad \ufffd byte"
    assert lines[2].raw == "x" * 101 + " [...truncated 99 bytes]"
    assert lines[3].raw == "é" * 50 + " [...truncated 100 bytes]"  # cut on a char boundary
    assert lines[4].raw == "y" * 100  # at the limit: untouched
    assert (lines[5].level, lines[5].message) == ("ERROR", "last line without newline")
    assert [n.raw for n in read_lines(str(path), max_line_bytes=101)] == [n.raw for n in lines]


def test_read_lines_from_iterable_matches_file() -> None:
    source = ["2026-11-27T14:02:03Z INFO ok\n", "", "  ", "bad \udcff byte", "x" * 200,
              "é" * 100, "ERROR last"]
    lines = list(read_lines(iter(source), max_line_bytes=101, default_service="svc"))
    assert [n.line_no for n in lines] == [1, 4, 5, 6, 7]
    assert lines[1].message == "bad ? byte"
    assert lines[2].raw.endswith(" [...truncated 99 bytes]")
    assert lines[3].raw == "é" * 50 + " [...truncated 100 bytes]"
    assert {n.service for n in lines} == {"svc"}


def test_read_lines_over_max_lines_is_an_error(tmp_path: Path) -> None:
    source = [f"INFO line {i}" for i in range(5)]
    assert len(list(read_lines(source, max_lines=5))) == 5
    with pytest.raises(IngestError) as err:
        list(read_lines(source, max_lines=4))
    assert err.value.reason == "oversized" and "4" in str(err.value)
    path = tmp_path / "big.log"
    path.write_text("\n".join(source))
    with pytest.raises(IngestError) as err:
        list(read_lines(path, max_lines=3))
    assert (err.value.reason, err.value.path) == ("oversized", str(path))


def test_missing_file_is_unreadable(tmp_path: Path) -> None:
    missing = tmp_path / "nope.log"
    with pytest.raises(IngestError) as err:
        read_lines(missing)  # at call time, not on first next()
    assert err.value.reason == "unreadable" and err.value.path == str(missing)
    assert str(missing) in str(err.value)
    with pytest.raises(IngestError) as err:
        read_lines(tmp_path)
    assert err.value.reason == "unreadable"


# --- pattern mining --------------------------------------------------------------------------

START = datetime(2026, 11, 27, 13, 0, tzinfo=UTC)
INCIDENT = datetime(2026, 11, 27, 14, 0, tzinfo=UTC)
END = datetime(2026, 11, 27, 14, 10, tzinfo=UTC)


def synthetic_log() -> list[tuple[datetime, str, str, str]]:
    """(when, kind, level, message): an hour of steady traffic, then ten incident minutes."""
    events = []

    def every(seconds: int, begin: datetime, end: datetime, kind: str, level: str,
              fmt: str) -> None:
        t, n = begin, 0
        while t < end:
            events.append((t, kind, level, fmt.format(n=n, ms=100 + n % 900)))
            t, n = t + timedelta(seconds=seconds), n + 1

    every(2, START, END, "steady_get", "INFO", "GET /api/users/{n} 200 in {ms} ms")
    every(10, START, END, "steady_cache", "INFO", "cache hit ratio 0.{ms} for shard {n}")
    every(300, START, INCIDENT, "spike", "WARN", "slow query on table orders took {ms} ms")
    every(5, INCIDENT, END, "spike", "WARN", "slow query on table orders took {ms} ms")
    every(4, INCIDENT + timedelta(minutes=1), END, "new", "ERROR",
          "payment gateway timeout after {ms} ms for order ord-{n}")
    events.sort(key=lambda e: e[0])
    return events


def test_new_error_then_spike_then_steady() -> None:
    events = synthetic_log()
    assert 2500 < len(events) < 5000
    raw = [f"{t:%Y-%m-%dT%H:%M:%SZ} {level} {msg}" for t, _, level, msg in events]
    stats = mine_patterns(read_lines(raw), incident_start=INCIDENT)
    assert len(stats) == 4
    new, spike, *steady = stats

    new_events = [(n, t) for n, (t, kind, _, _) in enumerate(events, start=1) if kind == "new"]
    assert new.template == "payment gateway timeout after <*> ms for order ord-<*>"
    assert (new.is_new, new.level, new.baseline_count) == (True, "ERROR", 0)
    assert new.count == new.incident_count == len(new_events) == 135
    assert (new.first_seen, new.last_seen) == (new_events[0][1], new_events[-1][1])
    assert new.sample_line_nos == [n for n, _ in new_events[:5]]

    spike_events = [(n, t) for n, (t, kind, _, _) in enumerate(events, start=1)
                    if kind == "spike"]
    assert spike.template == "slow query on table orders took <*> ms"
    assert (spike.is_new, spike.level) == (False, "WARN")
    assert (spike.baseline_count, spike.incident_count, spike.count) == (12, 120, 132)
    assert (spike.first_seen, spike.last_seen) == (START, spike_events[-1][1])
    assert spike.sample_line_nos == [n for n, _ in spike_events[:5]]

    assert {s.template for s in steady} == {"GET /api/users/<*> <*> in <*> ms",
                                            "cache hit ratio <*> for shard <*>"}
    assert all(not s.is_new and s.level == "INFO" for s in steady)
    get = next(s for s in steady if s.template.startswith("GET"))
    assert (get.baseline_count, get.incident_count, get.first_seen) == (1800, 300, START)
    assert new.score > spike.score > max(s.score for s in steady)
    assert all(s.score < 1.0 for s in steady)  # rate unchanged: log1p(~1) * 1
    assert [s.score for s in stats] == sorted((s.score for s in stats), reverse=True)


def test_untimestamped_lines_count_as_incident_and_miner_is_reused() -> None:
    raw = ["2026-11-27T13:00:00Z INFO tick 1", "2026-11-27T13:30:00Z INFO tick 2",
           "2026-11-27T14:01:00Z INFO tick 3", "Traceback (most recent call last):",
           "Traceback (most recent call last):"]
    miner = DrainMiner(max_samples=1)
    stats = mine_patterns(read_lines(raw), incident_start=INCIDENT.replace(tzinfo=None),
                          miner=miner)
    trace = next(s for s in stats if s.template.startswith("Traceback"))
    assert (trace.is_new, trace.incident_count, trace.first_seen) == (True, 2, None)
    assert trace.sample_line_nos == [4] and stats[0] is trace
    tick = next(s for s in stats if s.template.startswith("tick"))
    assert (tick.baseline_count, tick.incident_count, tick.is_new) == (2, 1, False)
    assert len(miner.templates) == 2


def test_without_incident_start_everything_is_new_ranked_by_level_and_volume() -> None:
    raw = ["INFO a b 1"] * 10 + ["ERROR disk failed on sda"] * 2 + ["WARN cpu hot 9"] * 3
    stats = mine_patterns(read_lines(raw), incident_start=None)
    assert [s.level for s in stats] == ["ERROR", "WARN", "INFO"]
    louder = mine_patterns(read_lines(raw + ["INFO a b 1"] * 90), incident_start=None)
    assert [s.level for s in louder] == ["ERROR", "INFO", "WARN"]  # 100 INFO beat 3 WARN
    assert all(s.is_new and s.baseline_count == 0 for s in stats)
    assert mine_patterns([], incident_start=INCIDENT) == []


def test_score_is_monotone() -> None:
    kw = {"incident_minutes": 10.0, "baseline_minutes": 60.0}
    for level in ("INFO", "WARN", "ERROR", None):
        for b in range(30):
            scores = [score_pattern(i, b, level=level, **kw) for i in range(200)]
            assert all(x < y for x, y in pairwise(scores))
        for i in range(1, 50):
            scores = [score_pattern(i, b, level=level, **kw) for b in range(100)]
            assert all(x > y for x, y in pairwise(scores))
    # a short baseline cannot bury a new pattern under a steady one
    short = {"incident_minutes": 60.0, "baseline_minutes": 1.0}
    assert score_pattern(1, 0, level="INFO", **short) > score_pattern(60, 1, level="INFO", **short)
    assert (score_pattern(5, 0, level="ERROR", **kw) > score_pattern(5, 0, level="WARN", **kw)
            > score_pattern(5, 0, level="INFO", **kw))


# --- real logs -------------------------------------------------------------------------------

LOGHUB = SHARED / "logs" / "loghub"


@pytest.mark.skipif(not SHARED.exists(), reason=f"shared data not found at {SHARED}")
@pytest.mark.parametrize("system", ["Apache", "Linux", "OpenSSH", "Zookeeper", "HDFS"])
def test_loghub_timestamp_coverage(system: str) -> None:
    files = sorted((LOGHUB / system).glob("*_2k.log"))
    if not files:
        pytest.skip(f"no {system}/*_2k.log under {LOGHUB}")
    lines = list(read_lines(files[0]))
    assert len(lines) >= 1000
    with_ts = sum(n.ts is not None for n in lines)
    assert with_ts / len(lines) >= 0.95, f"{system}: {with_ts}/{len(lines)} lines have a time"
    if system in ("Apache", "Zookeeper", "HDFS"):  # these formats carry a level on every line
        assert sum(n.level is not None for n in lines) / len(lines) >= 0.95
