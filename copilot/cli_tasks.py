"""The copilot's task commands: ``ask``, ``root-causes``, ``runbooks``, ``draft-update``,
``summarize`` and ``postmortem``. Each prints a readable answer with its sources (or ``--json``),
and says when the answer is degraded and why."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from copilot.cli import _settings, app, bench_app, err, out
from copilot.errors import CopilotError

Backend = Annotated[str | None, typer.Option(
    help="grounded, local or openai (default: COPILOT_LLM_BACKEND, else grounded).")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the typed result as JSON.")]
IncidentArg = Annotated[int, typer.Argument(help="Incident id (see `copilot incidents list`).")]


def _copilot(backend: str | None):  # type: ignore[no-untyped-def]
    from copilot.runner import Copilot

    if backend not in (None, "grounded", "local", "openai"):
        raise typer.BadParameter("must be grounded, local or openai", param_hint="--backend")
    return Copilot.from_settings(_settings(), backend=backend)


def _run(task: Any, incident: int, backend: str | None, as_json: bool) -> Any:
    copilot = _copilot(backend)
    result = copilot.run(task, copilot.snapshot(incident))
    _emit(result, as_json)
    return result


def _emit(result: Any, as_json: bool) -> None:
    if as_json:
        print(result.model_dump_json(indent=2))
        return
    head = f"[bold]{result.task}[/] · backend {result.backend}"
    if result.incident_id is not None:
        head += f" · incident #{result.incident_id}"
    out.print(head)
    if result.degraded:
        out.print(f"[yellow]degraded:[/] {escape(result.reason or '')}")
    _BODY.get(result.task, _generic)(result)
    _sources(result)


def _sources(result: Any) -> None:
    if result.sources:
        out.print("\n[bold underline]sources[/]")
        for s in result.sources:
            where = f" — {s.source}" if s.source else ""
            out.print(f"  [cyan]\\[{escape(s.id)}][/] {s.kind}: {escape(s.title)}{escape(where)}",
                      highlight=False)
    if result.dropped_citations:
        out.print(f"[yellow]dropped citations not in the context:[/] "
                  f"{', '.join(result.dropped_citations)}")
    if result.left_out:
        out.print(f"[dim]{len(result.left_out)} context items left out to fit the model[/]")
    t = result.timings
    out.print(f"[dim]{t.total_ms:.0f} ms (model {t.model_ms:.0f} ms, service "
              f"{t.service_ms:.0f} ms)[/]")


def _line(line: Any, indent: str = "  ") -> None:
    cites = f" [cyan]\\[{escape(', '.join(line.citations))}][/]" if line.citations else ""
    mark = "" if line.supported else " [red](unsupported)[/]"
    out.print(f"{indent}- {escape(line.text)}{cites}{mark}", highlight=False)


def _generic(result: Any) -> None:
    data = result.model_dump(exclude={"sources", "timings", "left_out", "dropped_citations",
                                      "task", "backend", "degraded", "reason", "prompt",
                                      "incident_id"})
    out.print_json(json.dumps(data, default=str))


def _chat(result: Any) -> None:
    out.print(escape(result.answer), highlight=False)


def _root_causes(result: Any) -> None:
    if result.abstained:
        out.print(f"[yellow]abstained:[/] {escape(result.abstain_reason or '')}")
    for n, h in enumerate(result.hypotheses, 1):
        out.print(f"\n[bold]{n}. {escape(h.statement)}[/]", highlight=False)
        out.print(f"   category {h.category} · confidence {h.confidence:.2f} "
                  f"({h.confidence_label})" + ("" if h.supported else " [red](unsupported)[/]"))
        for e in h.evidence:
            out.print(f"   evidence [cyan]\\[{escape(e.id)}][/] {escape(e.why)}", highlight=False)
        out.print(f"   check: {escape(h.check)}", highlight=False)


def _runbooks(result: Any) -> None:
    for n, rec in enumerate(result.recommendations, 1):
        out.print(f"\n[bold]{n}. {escape(rec.title)}[/] [dim]({rec.doc_id}, {rec.source})[/]",
                  highlight=False)
        out.print(f"   why: {escape(rec.reason)}", highlight=False)
        for sec in rec.sections:
            out.print(f"   [cyan]\\[chunk:{escape(sec.chunk_id)}][/] {escape(sec.heading)}",
                      highlight=False)
            for step in sec.steps[:5]:
                out.print(f"     · {escape(step)}", highlight=False)


def _draft(result: Any) -> None:
    out.print(f"[bold]{escape(result.title)}[/]  [dim]({result.stage}, {result.audience})[/]",
              highlight=False)
    out.print(escape(result.body), highlight=False)
    out.print(f"\ncomponents: {', '.join(result.components) or '-'} · next update: "
              f"{result.next_update_at or '-'}")
    out.print("[bold underline]checks[/]")
    for check in result.checks:
        mark = "[green]pass[/]" if check.passed else "[red]FAIL[/]"
        detail = f" — {escape(check.detail)}" if check.detail else ""
        out.print(f"  {mark} {check.name}{detail}", highlight=False)


def _markdown(result: Any) -> None:
    out.print(escape(result.markdown), highlight=False)


_BODY = {"chat": _chat, "root_causes": _root_causes, "runbooks": _runbooks,
         "status_update": _draft, "summary": _markdown, "postmortem": _markdown}


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="Your question about the incident.")],
    incident: Annotated[int | None, typer.Option(
        help="Incident id; default: the newest open incident (none: knowledge base only).")] = None,
    backend: Backend = None,
    as_json: AsJson = False,
) -> None:
    """Ask a question; the answer streams as it is written, with its citations."""
    from copilot.context import IncidentSnapshot
    from copilot.incidents import list_incidents
    from copilot.tasks.chat import Chat

    copilot = _copilot(backend)
    if incident is None:
        with copilot.store.session() as s:
            open_ = list_incidents(s, open_only=True)
            incident = open_[0].id if open_ else None
    snap = copilot.snapshot(incident) if incident is not None else IncidentSnapshot(
        id=None, title="No open incident")
    final: Any = None
    for event in copilot.stream(Chat(question), snap):
        if event["type"] == "token" and not as_json:
            out.print(escape(event["text"]), end="", highlight=False)
        elif event["type"] == "final":
            final = event
    if as_json:
        print(final["result"].model_dump_json(indent=2))
        return
    result = final["result"]
    out.print("")
    if final["replace"]:
        out.print(f"\n[yellow]the model's answer was replaced ({escape(result.reason or '')}):[/]")
        out.print(escape(result.answer), highlight=False)
    elif result.degraded:
        out.print(f"[yellow]degraded:[/] {escape(result.reason or '')}")
    _sources(result)


@app.command("root-causes")
def root_causes(incident: IncidentArg, backend: Backend = None, as_json: AsJson = False) -> None:
    """Ranked root-cause hypotheses with evidence and a check for each (or an abstention)."""
    from copilot.tasks.root_causes import RootCauses

    _run(RootCauses(), incident, backend, as_json)


@app.command()
def runbooks(
    incident: Annotated[int | None, typer.Argument(help="Incident id.")] = None,
    alert: Annotated[Path | None, typer.Option(
        help="One alert as JSON: {labels, annotations, expr} or an Alertmanager/Grafana/"
             "PagerDuty/generic webhook body (its first alert is used).")] = None,
    backend: Backend = None,
    as_json: AsJson = False,
) -> None:
    """Runbooks to open for an incident, or for one alert, with the sections that apply."""
    from copilot.context import snapshot_from_alert
    from copilot.tasks.runbooks import Runbooks

    if (incident is None) == (alert is None):
        raise typer.BadParameter("give an INCIDENT id or --alert FILE (one of them)")
    if incident is not None:
        _run(Runbooks(), incident, backend, as_json)
        return
    assert alert is not None
    copilot = _copilot(backend)
    result = copilot.run(Runbooks(), snapshot_from_alert(read_alert_file(alert)))
    _emit(result, as_json)


def read_alert_file(path: Path) -> dict[str, Any]:
    """An alert from a file: a bare alert, or any webhook body the intake understands."""
    from ingest.alerts import parse_alert_payload

    try:
        raw = path.read_bytes()
        data = json.loads(raw)
    except OSError as exc:
        raise CopilotError(f"cannot read {path}: {exc.strerror}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CopilotError(f"{path} is not valid JSON: {exc}") from exc
    if isinstance(data, dict) and isinstance(data.get("alert"), dict):
        data = data["alert"]  # an evaluation case line
    if isinstance(data, dict) and isinstance(data.get("labels"), dict) and "alerts" not in data:
        return data
    for source in ("alertmanager", "grafana", "pagerduty", "generic"):
        try:
            events = parse_alert_payload(source, raw)
        except CopilotError:
            continue
        if events:
            e = events[0]
            return {"labels": {"alertname": e.name, **e.labels}, "annotations": e.annotations,
                    "status": e.status}
    raise CopilotError(f"{path}: no alert found (expected labels/annotations, or an "
                       f"Alertmanager, Grafana, PagerDuty or generic webhook body)")


@app.command("draft-update")
def draft_update(
    incident: IncidentArg,
    stage: Annotated[str, typer.Option(help="investigating, identified, monitoring or resolved.")],
    audience: Annotated[str, typer.Option(help="customers or internal.")] = "customers",
    backend: Backend = None,
    as_json: AsJson = False,
) -> None:
    """Draft a status update for a stage and an audience, with the leak checks it passed."""
    from copilot.tasks.status_update import StatusUpdate

    copilot = _copilot(backend)
    task = StatusUpdate.from_settings(copilot.settings, stage=stage, audience=audience)
    _emit(copilot.run(task, copilot.snapshot(incident)), as_json)


@app.command()
def summarize(incident: IncidentArg, backend: Backend = None, as_json: AsJson = False) -> None:
    """Catch the commander up: status, impact, timeline, actions, open questions, owners,
    next steps, each line cited."""
    from copilot.tasks.summary import Summary

    _run(Summary(), incident, backend, as_json)


@app.command()
def postmortem(
    incident: IncidentArg,
    backend: Backend = None,
    as_json: AsJson = False,
    output: Annotated[Path | None, typer.Option("--out", help="Also write the Markdown here.")] = None,
) -> None:
    """Draft a postmortem for a resolved incident, in the knowledge base's own shape."""
    from copilot.tasks.postmortem import Postmortem

    result = _run(Postmortem(), incident, backend, as_json)
    if output is not None:
        output.write_text(result.markdown)
        err.print(f"written to {output}")


@bench_app.command("tasks")
def bench_tasks_command(
    backends: Annotated[str, typer.Option(help="Comma-separated: grounded,local,openai.")] = (
        "grounded,local"),
    runs: Annotated[int, typer.Option(min=1, help="Timed runs per task on grounded.")] = 20,
    model_runs: Annotated[int, typer.Option(min=1, help="Timed runs per task with a model.")] = 5,
    data_dir: Annotated[Path | None, typer.Option(
        help="Where to build the demo data (default: the configured data folder).")] = None,
    as_json: AsJson = False,
) -> None:
    """Latency of every task on the demo incident: p50/p95 total, model and service time."""
    from evals.bench_tasks import bench_tasks, format_rows

    chosen = [b.strip() for b in backends.split(",") if b.strip()]
    bad = sorted(set(chosen) - {"grounded", "local", "openai"})
    if bad:
        raise typer.BadParameter(f"unknown backend(s) {', '.join(bad)}", param_hint="--backends")
    rows = bench_tasks(_settings(), backends=chosen, runs=runs, local_runs=model_runs,
                       data_dir=data_dir, progress=lambda m: err.print(m, highlight=False))
    print(json.dumps(rows, indent=2) if as_json else format_rows(rows))
