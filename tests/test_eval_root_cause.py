"""The root-cause evaluation on a tiny written corpus: leave-one-out holds, the baselines and
metrics are computed as documented, bad case files get a clear error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from copilot.errors import EvalError
from evals.root_cause import build_index, cut, load_cases, macro_f1, run_root_cause_eval
from tests.conftest import write

DOCS = {
    "pm-a": ("internal/config", "Config push broke routing", "A bad config push to the router "
             "fleet dropped requests. Rolled back the config."),
    "pm-b": ("internal/config", "Config change broke auth", "A config change to the auth "
             "service rejected tokens. Rolled back the config change."),
    "pm-c": ("external/power", "Power loss in a zone", "Utility power failed in one zone and "
             "generators did not start. Servers went down."),
    "pm-d": ("external/power", "Generator failure", "A generator failed during a power event; "
             "racks lost power."),
}


def _corpus(root: Path) -> Path:
    for doc, (category, title, body) in DOCS.items():
        write(root / f"{doc}.md", f"---\nid: {doc}\ntitle: {title}\ndate: 3/1/2020\n"
                                  f"root_cause_category: {category}\n---\n\n# {title}\n\n{body}\n")
    return root


def _cases(path: Path) -> Path:
    lines = [{"id": f"rc-{doc}", "postmortem_id": doc,
              "incident": {"title": title, "services": ["svc"], "description": body},
              "gold": {"category": category}} for doc, (category, title, body) in DOCS.items()]
    return write(path, "\n".join(json.dumps(x) for x in lines))


def test_leave_one_out_and_baselines(settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    retriever, report = build_index(settings, _corpus(tmp_path / "kb"))
    assert report.documents == 4 and not report.errors  # M/D/YYYY dates are accepted
    cases = load_cases(_cases(tmp_path / "cases.jsonl"))
    result = run_root_cause_eval(cases, retriever, k=3)
    full = result["results"]["full"]
    # each case's own postmortem is out, so its one same-category neighbour must carry it
    assert full["lexical vote"]["acc@3"] == 1.0
    assert 0.0 <= full["copilot"]["acc@1"] <= 1.0 and full["copilot"]["acc@3"] == 1.0
    # majority of the *other* cases: the own label is always the minority (1 vs 2)
    assert full["majority"]["acc@1"] == 0.0
    assert result["results"]["depth 2"]["copilot"]["acc@1"] == full["copilot"]["acc@1"]
    assert len(result["predictions"]) == 4


def test_metrics_and_bad_input(tmp_path: Path) -> None:
    assert cut("a/b/c", 2) == "a/b" and cut("a/b/c", None) == "a/b/c"
    assert macro_f1([("x", "x"), ("y", "y")]) == 1.0
    assert macro_f1([("x", "y"), ("y", "x")]) == 0.0
    assert macro_f1([("x", "x"), ("x", "y")]) == pytest.approx((2 / 3 + 0) / 2)
    with pytest.raises(EvalError, match="cases.jsonl:2: not a root-cause case"):
        load_cases(write(tmp_path / "cases.jsonl", '{"id": "1", "postmortem_id": "p", '
                         '"incident": {}, "gold": {"category": "c"}}\n{"id": 2}\n'))
    with pytest.raises(EvalError, match="knowledge base folder not found"):
        from copilot.config import Settings

        build_index(Settings(data_dir=tmp_path / "d", embedding_model="hash"), tmp_path / "nope")
