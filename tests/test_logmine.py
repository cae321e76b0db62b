"""The Drain-style template miner and its loghub grouping accuracy."""

from __future__ import annotations

import pytest

from evals.logmine import SYSTEMS, evaluate_system, grouping_accuracy
from ingest.logmine import DrainMiner, mask
from tests.conftest import SHARED, needs_shared


def test_masks_cover_common_variables() -> None:
    masked = mask("conn from 10.0.0.12:5432 id 0x1f at 2026-11-27T10:00:01Z took 12.5 ms "
                  "req 123e4567-e89b-12d3-a456-426614174000")
    assert masked == "conn from <IP> id <HEX> at <TIME> took <*> ms req <UUID>"


def test_lines_become_templates_with_counts_times_levels_samples() -> None:
    miner = DrainMiner(max_samples=2)
    lines = [("Received block blk_1 of size 67108864 from 10.1.1.1", 1, "INFO"),
             ("Received block blk_2 of size 1024 from 10.1.1.2", 5, "WARN"),
             ("Deleting block blk_3 file /data/blk_3", 3, "INFO"),
             ("Received block blk_9 of size 7 from 10.1.1.9", 2, "INFO")]
    ids = [miner.add(text, line_id=n, when=t, level=lvl).id for n, (text, t, lvl) in enumerate(lines)]
    assert ids[0] == ids[1] == ids[3] != ids[2]
    received = miner.templates[ids[0]]
    assert received.text == "Received block blk_<*> of size <*> from <IP>"
    assert (received.count, received.first_seen, received.last_seen) == (3, 1, 5)
    assert received.level == "WARN" and received.samples == [0, 1]


def test_grouping_accuracy_definition() -> None:
    assert grouping_accuracy([0, 0, 1, 1], ["a", "a", "b", "b"]) == 1.0
    # a merged group makes all of its lines wrong; a split group likewise
    assert grouping_accuracy([0, 0, 0, 1], ["a", "a", "b", "c"]) == 0.25
    assert grouping_accuracy([0, 1, 2, 2], ["a", "a", "b", "b"]) == 0.5


@needs_shared()
def test_loghub_grouping_accuracy_average_at_least_090() -> None:
    results = {s: evaluate_system(SHARED / "logs" / "loghub", s) for s in SYSTEMS}
    mean = sum(r["grouping_accuracy"] for r in results.values()) / len(results)
    assert mean >= 0.90, results
    assert results["HDFS"]["grouping_accuracy"] > 0.99


def test_missing_loghub_is_a_clear_error(tmp_path) -> None:
    from copilot.errors import EvalError

    with pytest.raises(EvalError, match="loghub file not found"):
        evaluate_system(tmp_path, "HDFS")
