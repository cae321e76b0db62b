"""``copilot eval run | compare | gate``: the evaluation harness (evals/harness.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from copilot.cli import _settings, err, eval_app, out
from copilot.errors import EvalError


@eval_app.command("run")
def eval_run(
    suite: Annotated[str, typer.Option(help="A suite name or 'all'.")] = "all",
    backend: Annotated[str, typer.Option(
        help="grounded, local or openai; several comma-separated run side by side.")] = "grounded",
    cases: Annotated[Path | None, typer.Option(help="Your own cases file (JSONL) for the suite.")] = None,
    kb: Annotated[list[Path] | None, typer.Option(
        help="Knowledge-base folder(s) for the suite (repeat the option).")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="A fixed sample of N cases.")] = None,
    tier: Annotated[str | None, typer.Option(
        help="'fast': each suite's fixed CI sample on the grounded backend.")] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for results and reports.")] = Path(
        "eval-results"),
    gate: Annotated[Path | None, typer.Option(
        help="Thresholds file: exit 1 when a metric falls below it.")] = None,
) -> None:
    """Run suites through the copilot; write results.json, report.md and report.html."""
    from evals.gate import check, load_thresholds
    from evals.harness import run_suite, suites, to_json, write_result
    from evals.report import html_page, markdown

    names = list(suites()) if suite == "all" else [s.strip() for s in suite.split(",")]
    if (cases or kb) and len(names) != 1:
        raise EvalError("--cases and --kb apply to one suite: name it with --suite")
    if tier not in (None, "fast"):
        raise EvalError(f"unknown tier {tier!r}: the only tier is 'fast'")
    backends = [b.strip() for b in backend.split(",") if b.strip()]
    settings = _settings()
    runs = []
    for name in names:
        n = suites()[name].fast_sample if tier == "fast" and name in suites() else limit
        for b in backends:
            run = run_suite(name, backend=b, settings=settings, cases=cases, kb=kb or (),
                            limit=n, progress=lambda m: err.print(f"[dim]{m}[/]"))
            passed = sum(c.passed for c in run.cases)
            out.print(f"{name} [{b}]: {passed}/{len(run.cases)} pass in {run.seconds} s  "
                      + "  ".join(f"{k} {v:g}" for k, v in run.metrics.items()),
                      highlight=False)
            runs.append(run)
    data = to_json(runs, tier=tier)
    path = write_result(data, out_dir)
    (out_dir / "report.md").write_text(markdown(data), encoding="utf-8")
    (out_dir / "report.html").write_text(html_page(data), encoding="utf-8")
    out.print(f"wrote {path}, {out_dir / 'report.md'}, {out_dir / 'report.html'}")
    if gate:
        problems = check(data, load_thresholds(gate))
        for p in problems:
            err.print(f"[red]gate:[/] {p}")
        if problems:
            raise typer.Exit(1)
        out.print(f"gate passed ({gate})")


@eval_app.command("compare")
def eval_compare(
    a: Annotated[Path, typer.Argument(help="The earlier results.json.")],
    b: Annotated[Path, typer.Argument(help="The later results.json.")],
    limit: Annotated[int, typer.Option(help="Changed cases shown per suite.")] = 50,
) -> None:
    """What changed between two eval results, metric by metric and case by case."""
    from evals.compare import compare
    from evals.harness import read_result

    out.print(compare(read_result(a), read_result(b), limit=limit), highlight=False)


@eval_app.command("gate")
def eval_gate(
    result: Annotated[Path, typer.Argument(help="A results.json.")],
    thresholds: Annotated[Path, typer.Option(help="Thresholds YAML.")] = Path(
        "evals/thresholds.yaml"),
) -> None:
    """Exit 1 when a metric of the result breaks its threshold."""
    from evals.gate import check, load_thresholds
    from evals.harness import read_result

    problems = check(read_result(result), load_thresholds(thresholds))
    for p in problems:
        err.print(f"gate: {p}")
    if problems:
        raise typer.Exit(1)
    out.print(json.dumps({"gate": "passed", "thresholds": str(thresholds)}))


@eval_app.command("report")
def eval_report(
    results: Annotated[list[Path], typer.Argument(help="results.json files to merge.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the reports.")] = Path(
        "eval-results"),
) -> None:
    """One report from several results (e.g. a grounded run and a local run)."""
    from evals.harness import read_result, write_result
    from evals.report import html_page, markdown

    datas = [read_result(p) for p in results]
    merged = {**datas[0], "runs": [r for d in datas for r in d["runs"]]}
    write_result(merged, out_dir)
    (out_dir / "report.md").write_text(markdown(merged), encoding="utf-8")
    (out_dir / "report.html").write_text(html_page(merged), encoding="utf-8")
    out.print(f"wrote {out_dir / 'report.md'} and {out_dir / 'report.html'}")
