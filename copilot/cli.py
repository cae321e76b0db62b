"""The ``copilot`` command. Errors from the ``CopilotError`` hierarchy become messages and exit
codes here and nowhere else.

Exit codes: 0 success; 1 error; 2 usage error; 3 finished, but some input was skipped.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from copilot.config import Settings, get_settings
from copilot.errors import CopilotError

EXIT_SKIPPED = 3

app = typer.Typer(help="Incident Copilot: grounded, cited answers for running incidents.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
kb_app = typer.Typer(help="Inspect the knowledge base.", no_args_is_help=True)
eval_app = typer.Typer(help="Measure answer quality on real data.", no_args_is_help=True)
bench_app = typer.Typer(help="Measure speed and memory.", no_args_is_help=True)
app.add_typer(kb_app, name="kb")
app.add_typer(eval_app, name="eval")
app.add_typer(bench_app, name="bench")
incidents_app = typer.Typer(help="Incidents: list, show, metrics.", no_args_is_help=True)
alerts_app = typer.Typer(help="Post alert payloads (Alertmanager, Grafana, PagerDuty, generic).",
                         no_args_is_help=True)
changes_app = typer.Typer(help="Post change events (deploys, config pushes, flags).",
                          no_args_is_help=True)
logs_app = typer.Typer(help="Post log lines to an incident.", no_args_is_help=True)
app.add_typer(incidents_app, name="incidents")
app.add_typer(alerts_app, name="alerts")
app.add_typer(changes_app, name="changes")
app.add_typer(logs_app, name="logs")

out = Console()
err = Console(stderr=True)

KINDS = ("postmortem", "runbook", "document")


def _settings() -> Settings:
    try:
        return get_settings()
    except Exception as exc:  # pydantic ValidationError: bad COPILOT_* value
        raise CopilotError(f"invalid configuration: {exc}") from exc


def _check_kind(kind: str | None) -> str | None:
    if kind is not None and kind not in KINDS:
        raise typer.BadParameter(f"must be one of {', '.join(KINDS)}", param_hint="--kind")
    return kind


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders to ingest.")],
    kind: Annotated[str | None, typer.Option(help="postmortem, runbook or document; "
                                                     "inferred when not given.")] = None,
    include: Annotated[list[str], typer.Option(help="Glob of files to take (repeatable).")] = [],
    exclude: Annotated[list[str], typer.Option(help="Glob of files to skip (repeatable).")] = [],
    prune: Annotated[bool, typer.Option(help="Remove documents whose source is gone.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Ingest postmortems, runbooks and other documents into the knowledge base."""
    from ingest.pipeline import run_ingest
    from retrieval.index import open_index

    _check_kind(kind)
    settings = _settings()
    index = open_index(settings)
    with Progress(TextColumn("[bold]ingest"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("chunks"), TimeRemainingColumn(), console=err,
                  transient=True, disable=as_json or not err.is_terminal) as bar:
        task = bar.add_task("ingest", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total or None)

        report = run_ingest(paths, index=index, settings=settings, kind=kind, include=include,
                            exclude=exclude, prune=prune, progress=progress)
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        for line in report.repaired:
            out.print(f"[yellow]repaired an interrupted run:[/] {line}")
        out.print(
            f"{report.files} files, {report.documents} documents: {report.new} new, "
            f"{report.changed} changed, {report.unchanged} unchanged, {report.removed} removed; "
            f"{report.chunks_embedded} chunks embedded, {report.chunks_reused} reused, "
            f"{report.chunks_deleted} deleted in {report.seconds:.1f}s"
        )
        for e in report.errors:
            err.print(f"[red]skipped[/] {e.path} [dim]({e.reason})[/]: "
                      f"{e.message.removeprefix(f'{e.path}: ')}", soft_wrap=True)
    if report.errors:
        err.print(f"[red]{len(report.errors)} file(s) skipped[/]; everything else was ingested.")
        raise typer.Exit(EXIT_SKIPPED)


@app.command()
def search(
    text: Annotated[str, typer.Argument(help="What to look for.")],
    kind: Annotated[str | None, typer.Option(help="Only this kind of document.")] = None,
    service: Annotated[list[str], typer.Option(help="Only documents about this service.")] = [],
    since: Annotated[dt.datetime | None, typer.Option(formats=["%Y-%m-%d"],
                                                         help="Dated on or after.")] = None,
    until: Annotated[dt.datetime | None, typer.Option(formats=["%Y-%m-%d"],
                                                         help="Dated on or before.")] = None,
    k: Annotated[int, typer.Option("-k", "--top", min=1, max=100, help="Documents.")] = 5,
    mode: Annotated[str, typer.Option(help="hybrid, dense or lexical.")] = "hybrid",
    as_json: Annotated[bool, typer.Option("--json", help="Print results as JSON.")] = False,
) -> None:
    """Hybrid (BM25 + dense) search over the knowledge base, best document first."""
    from retrieval.hybrid import Filters
    from retrieval.retriever import build_retriever

    _check_kind(kind)
    if mode not in ("hybrid", "dense", "lexical"):
        raise typer.BadParameter("must be hybrid, dense or lexical", param_hint="--mode")
    if not text.strip():
        raise typer.BadParameter("the query is empty", param_hint="TEXT")
    retriever = build_retriever(_settings())
    filters = Filters(
        kinds=(kind,) if kind else (), services=tuple(service),
        since=since.date() if since else None, until=until.date() if until else None,
    )
    hits = retriever.search(text, k=k, filters=filters, mode=mode)  # type: ignore[arg-type]
    if as_json:
        print(json.dumps({"query": text, "results": [h.to_dict() for h in hits]}, indent=2))
        return
    if not hits:
        out.print("no results" + ("" if retriever.index.catalog.chunk_count() else
                                  " (the knowledge base is empty: run `copilot ingest PATH`)"))
        return
    for n, hit in enumerate(hits, 1):
        out.print(f"[bold]{n}. {hit.title}[/]  [dim]{hit.kind} · {hit.doc_id} · "
                  f"score {hit.score:.4f}[/]")
        for c in hit.chunks[:2]:
            snippet = " ".join(c.text.split())[:220]
            out.print(f"   [cyan][{c.chunk_id}][/] {c.section or '(intro)'}: {snippet}")


def _load_demo_incident(settings: Settings, folder: Path) -> None:
    """Load the demo incident once and list the open incidents."""
    from copilot.incidents import list_incidents
    from copilot.store import IncidentStore
    from ingest.demo import load_demo_incident

    load_demo_incident(settings, folder)
    with IncidentStore.open(settings).session() as s:
        for i in list_incidents(s, open_only=True)[:3]:
            out.print(f"open incident #{i.id} {i.severity.value} {i.status.value}: {i.title} "
                      f"({len(i.alerts)} alerts, {len(i.timeline)} timeline entries)",
                      highlight=False)


@kb_app.command("stats")
def kb_stats() -> None:
    """How many documents and chunks the knowledge base holds, by kind."""
    from retrieval.index import open_index

    index = open_index(_settings())
    docs = index.catalog.documents()
    by_kind: dict[str, int] = {}
    for d in docs.values():
        by_kind[d.kind] = by_kind.get(d.kind, 0) + 1
    out.print(f"{len(docs)} documents, {index.catalog.chunk_count()} chunks, "
              f"{index.store.count()} vectors; " + ", ".join(f"{v} {k}" for k, v in sorted(by_kind.items())))


@app.command()
def demo(
    question: Annotated[str, typer.Argument(help="A question about the demo incident.")] = (
        "What changed before the first alert?"
    ),
    keys: Annotated[bool, typer.Option(help="Make and print a fresh demo API key per role.")] = True,
) -> None:
    """Build the demo knowledge base and incident (embedded defaults), then ask the copilot a
    question and for its root-cause hypotheses."""
    from rich.markup import escape

    from copilot.runner import Copilot
    from copilot.store import IncidentStore
    from copilot.tasks.chat import Chat
    from copilot.tasks.root_causes import RootCauses
    from ingest.demo import DEMO, build_demo_kb
    from retrieval.retriever import build_retriever

    settings = _settings()
    if not (DEMO / "kb").exists():
        raise CopilotError(f"demo corpus not found at {DEMO / 'kb'}")
    retriever = build_retriever(settings)
    report = build_demo_kb(settings, retriever)
    _load_demo_incident(settings, DEMO / "incident")
    out.print(f"demo knowledge base in {settings.data_dir}: {report.documents} documents "
              f"({report.new} new, {report.changed} changed, {report.unchanged} unchanged), "
              f"{retriever.index.catalog.chunk_count()} chunks")
    copilot = Copilot(settings, llm=None, retriever=retriever, store=IncidentStore.open(settings))
    with copilot.store.session() as s:
        from copilot.incidents import list_incidents

        incidents = list_incidents(s)
    if not incidents:
        return
    snap = copilot.snapshot(incidents[-1].id)
    answer = copilot.run(Chat(question), snap)
    out.print(f"\n[bold]question about incident #{snap.id}:[/] {question}")
    out.print(escape(answer.answer), highlight=False)
    causes = copilot.run(RootCauses(), snap)
    out.print("\n[bold]likely root causes[/] (copilot root-causes "
              f"{snap.id}):")
    for n, h in enumerate(causes.hypotheses[:3], 1):
        out.print(f"  {n}. {escape(h.statement)} [dim]({h.confidence_label}; "
                  f"{', '.join(h.citations)})[/]", highlight=False)
    out.print(f"\nnext: copilot summarize {snap.id} · copilot runbooks {snap.id} · "
              f"copilot draft-update {snap.id} --stage investigating --audience customers")
    if keys:
        from copilot.auth import rotate_demo_keys

        with copilot.store.session() as s:
            made = rotate_demo_keys(s)
        out.print("\n[bold]demo API keys[/] (new each run; the previous demo keys are revoked):")
        for role, key in made.items():
            out.print(f"  {role:<10} {key}", highlight=False)


@eval_app.command("retrieval")
def eval_retrieval(
    cases: Annotated[Path, typer.Option(help="JSONL of runbook-recommendation cases.")],
    kb: Annotated[Path, typer.Option(help="Folder of runbooks to index and search.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print results as JSON.")] = False,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N cases.")] = None,
    misses: Annotated[int, typer.Option(help="Also list up to N hybrid misses.")] = 0,
) -> None:
    """Hit@1/3/5 and MRR of lexical, dense and hybrid retrieval for two query variants."""
    from evals.retrieval import build_eval_index, format_table, load_cases, run_retrieval_eval

    settings = _settings()
    loaded = load_cases(cases)[:limit] if limit else load_cases(cases)
    with Progress(TextColumn("[bold]indexing {task.fields[kb]}"), BarColumn(),
                  MofNCompleteColumn(), TimeRemainingColumn(), console=err, transient=True,
                  disable=not err.is_terminal) as bar:
        task = bar.add_task("index", total=None, kb=str(kb))
        retriever, report = build_eval_index(
            settings, kb, progress=lambda d, t: bar.update(task, completed=d, total=t or None))
    result = run_retrieval_eval(loaded, retriever, keep_misses=misses)
    result.ingest = {"documents": report.documents, "chunks": retriever.index.catalog.chunk_count(),
                     "skipped_files": len(report.errors), "embedder": retriever.index.embedder.name}
    if as_json:
        print(json.dumps({"cases": len(loaded), "index": result.ingest, "results": result.results,
                          "misses": result.misses}, indent=2))
        return
    out.print(f"{len(loaded)} cases; index: {result.ingest}")
    out.print(format_table(result), highlight=False)
    for m in result.misses:
        out.print(m, highlight=False)


@eval_app.command("root-cause")
def eval_root_cause(
    cases: Annotated[Path, typer.Option(help="JSONL of root-cause cases.")],
    kb: Annotated[Path, typer.Option(help="Folder of postmortems (each case's own is left out).")],
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N cases.")] = None,
    k: Annotated[int, typer.Option(min=1, help="Similar postmortems that vote.")] = 7,
    as_json: Annotated[bool, typer.Option("--json", help="Print results as JSON.")] = False,
) -> None:
    """Root-cause category accuracy (leave-one-out) with majority and lexical-vote baselines."""
    from evals.root_cause import build_index, format_results, load_cases, run_root_cause_eval

    loaded = load_cases(cases)[:limit] if limit else load_cases(cases)
    retriever, report = build_index(_settings(), kb)
    if report.errors:
        err.print(f"{len(report.errors)} postmortems skipped: {report.errors[0]}")
    result = run_root_cause_eval(loaded, retriever, k=k)
    if as_json:
        print(json.dumps(result, indent=2))
        return
    out.print(f"{result['cases']} cases, {report.documents} postmortems, k={k}")
    out.print(format_results(result), highlight=False)


@eval_app.command("logs")
def eval_logs(
    loghub: Annotated[Path, typer.Option(help="loghub folder (System/System_2k.log_structured.csv).")],
    systems: Annotated[str, typer.Option(help="Comma-separated systems.")] = (
        "HDFS,BGL,OpenSSH,Apache,Zookeeper,Linux"
    ),
    as_json: Annotated[bool, typer.Option("--json", help="Print results as JSON.")] = False,
) -> None:
    """Grouping accuracy of the log template miner against loghub's gold templates."""
    from evals.logmine import evaluate_system

    names = [s.strip() for s in systems.split(",") if s.strip()]
    rows = {name: evaluate_system(loghub, name) for name in names}
    mean = round(sum(r["grouping_accuracy"] for r in rows.values()) / max(len(rows), 1), 4)
    if as_json:
        print(json.dumps({"systems": rows, "mean_grouping_accuracy": mean}, indent=2))
        return
    print(f"{'system':<12} {'lines':>6} {'templates':>10} {'gold':>6} {'GA':>7}")
    for name, r in rows.items():
        print(f"{name:<12} {r['lines']:>6} {r['templates']:>10} {r['gold_templates']:>6} "
              f"{r['grouping_accuracy']:>7.4f}")
    print(f"{'mean':<12} {'':>6} {'':>10} {'':>6} {mean:>7.4f}")


@bench_app.command("retrieval")
def bench_retrieval(
    kb: Annotated[Path, typer.Option(help="Folder of runbooks to ingest.")],
    sizes: Annotated[str, typer.Option(help="Index sizes (chunks) for query latency.")] = "1000,10000,100000",
    repeats: Annotated[int, typer.Option(min=1, help="Passes over the query set per size.")] = 5,
    backends: Annotated[str, typer.Option(help="Embedding backends to compare ('' for none).")] = "torch,onnx,onnx-int8",
    parts: Annotated[str, typer.Option(help="Which parts: ingest,baseline,backends,latency.")] = (
        "ingest,baseline,latency,backends"
    ),
) -> None:
    """Ingest throughput vs a naive LangChain baseline, no-op re-ingest, query latency, RSS.
    Progress goes to stderr; the results are printed as JSON."""
    from evals.bench_retrieval import run_bench

    if not kb.is_dir():
        raise CopilotError(f"knowledge base folder not found: {kb}")
    try:
        size_list = [int(x) for x in sizes.split(",") if x.strip()]
    except ValueError:
        raise typer.BadParameter("comma-separated integers, e.g. 1000,10000", param_hint="--sizes")
    from evals.bench_retrieval import PARTS

    chosen = [p.strip() for p in parts.split(",") if p.strip()]
    unknown = sorted(set(chosen) - set(PARTS))
    if unknown:
        raise typer.BadParameter(f"unknown part(s) {', '.join(unknown)}", param_hint="--parts")
    result = run_bench(kb, _settings(), sizes=size_list, repeats=repeats,
                       backends=[b for b in backends.split(",") if b.strip()], parts=chosen,
                       log=lambda m: err.print(m, highlight=False))
    print(json.dumps(result.sections, indent=2))


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port.")] = 8080,
) -> None:
    """Run the HTTP service (web panel at /, API at /v1, webhooks) with the embedded defaults."""
    import uvicorn

    from api.app import create_app

    uvicorn.run(create_app(_settings()), host=host, port=port, log_level="info")


def _store():  # type: ignore[no-untyped-def]
    from copilot.store import IncidentStore

    return IncidentStore.open(_settings())


def _read_payload(path: Path) -> bytes:
    if str(path) == "-":
        return sys.stdin.buffer.read()
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CopilotError(f"{path}: cannot read: {exc.strerror or exc}") from exc


class _PayloadFiles:
    """Read and parse each payload file; a bad one is reported (and counted), never fatal."""

    def __init__(self, files: list[Path], parse) -> None:  # type: ignore[no-untyped-def]
        self.files, self.parse, self.failed = files, parse, 0

    def __iter__(self):  # type: ignore[no-untyped-def]
        for path in self.files:
            try:
                yield path, self.parse(_read_payload(path))
            except CopilotError as exc:
                err.print(f"[red]rejected[/] {path}: {exc}", soft_wrap=True)
                self.failed += 1


@alerts_app.command("post")
def alerts_post(
    source: Annotated[str, typer.Option(help="alertmanager, grafana, pagerduty or generic.")],
    files: Annotated[list[Path], typer.Argument(help="JSON payload files ('-' for stdin).")],
) -> None:
    """Record alert payloads; open or attach incidents by the routing rules."""
    from ingest.alerts import parse_alert_payload
    from ingest.intake import record_alerts
    from ingest.routing import load_rules

    settings = _settings()
    rules = load_rules(settings.routing_file)
    store = _store()
    parsed = _PayloadFiles(files, lambda raw: parse_alert_payload(
        source, raw, max_bytes=settings.max_payload_bytes))
    for path, events in parsed:
        result = record_alerts(store, events, rules)
        for o in result.outcomes:
            print(f"{path}: {o['name']} [{o['status']}] → {o['outcome']}"
                  + (f" (incident {o['incident_id']})" if o["incident_id"] else ""))
    if parsed.failed:
        raise typer.Exit(EXIT_SKIPPED)


@changes_app.command("post")
def changes_post(
    files: Annotated[list[Path], typer.Argument(help="JSON change payloads ('-' for stdin).")],
) -> None:
    """Record deploys and config changes; note them on related open incidents."""
    from ingest.changes import parse_changes, record_changes
    from ingest.routing import load_rules

    settings = _settings()
    window = load_rules(settings.routing_file).window_minutes
    store = _store()
    parsed = _PayloadFiles(files, lambda raw: parse_changes(
        raw, max_bytes=settings.max_payload_bytes))
    for path, changes in parsed:
        for r in record_changes(store, changes, window_minutes=window):
            print(f"{path}: change {r['id']} → {r['outcome']}")
    if parsed.failed:
        raise typer.Exit(EXIT_SKIPPED)


@logs_app.command("post")
def logs_post(
    incident: Annotated[int, typer.Option("--incident", help="Incident id.")],
    files: Annotated[list[Path], typer.Argument(help="Log files (plain text or JSON lines).")],
    service: Annotated[str | None, typer.Option(help="Service, when lines do not say.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Add log lines to an incident and show its top new or spiking patterns."""
    from ingest.log_intake import record_logs
    from ingest.logs import read_lines

    lines = []
    for path in files:
        lines.extend(read_lines(path, default_service=service))  # all read before any write
    result = record_logs(_store(), incident_id=incident, lines=lines)
    if as_json:
        print(json.dumps(result, indent=2, default=str))
        return
    out.print(f"{result['lines']} lines added; {result['patterns']} patterns over "
              f"{result['total_lines']} lines")
    for p in result["top"]:
        print(f"  {'NEW ' if p['new'] else '    '}{p['level'] or '-':<5} x{p['count']:<5} "
              f"(before: {p['baseline']}) score {p['score']:.2f}  {p['template']}")


@incidents_app.command("list")
def incidents_list(
    open_only: Annotated[bool, typer.Option("--open", help="Only unresolved incidents.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Incidents, newest first."""
    from copilot.incidents import list_incidents

    with _store().session() as s:
        rows = [{"id": i.id, "title": i.title, "severity": i.severity.value,
                 "status": i.status.value, "services": i.services,
                 "started_at": i.started_at.isoformat() if i.started_at else None}
                for i in list_incidents(s, open_only=open_only)]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        out.print("no incidents")
    for r in rows:
        print(f"#{r['id']} {r['severity']} {r['status']:<13} {r['title']}  "
              f"({', '.join(r['services'])} · {r['started_at']})")


@incidents_app.command("show")
def incidents_show(
    incident_id: Annotated[int, typer.Argument(help="Incident id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """One incident: fields, alerts and timeline."""
    from copilot.incidents import get_incident

    with _store().session() as s:
        i = get_incident(s, incident_id)
        data = {
            "id": i.id, "title": i.title, "severity": i.severity.value, "status": i.status.value,
            "services": i.services, "commander": i.commander, "tech_lead": i.tech_lead,
            "comms_lead": i.comms_lead,
            **{k: (getattr(i, k).isoformat() if getattr(i, k) else None) for k in (
                "started_at", "detected_at", "acknowledged_at", "mitigated_at", "resolved_at")},
            "alerts": [{"id": a.id, "name": a.name, "status": a.status, "source": a.source,
                        "service": a.service} for a in i.alerts],
            "timeline": [{"at": e.at.isoformat(), "kind": e.kind, "actor": e.actor,
                          "text": e.text} for e in i.timeline],
        }
    if as_json:
        print(json.dumps(data, indent=2))
        return
    out.print(f"[bold]#{data['id']} {data['title']}[/]  {data['severity']} · {data['status']}")
    out.print(f"services: {', '.join(data['services']) or '-'}; commander: "
              f"{data['commander'] or '-'}; started {data['started_at']}")
    for a in data["alerts"]:
        print(f"  alert {a['name']} [{a['status']}] from {a['source']}")
    for e in data["timeline"]:
        print(f"  {e['at']}  {e['text']}  ({e['actor']})")


@incidents_app.command("metrics")
def incidents_metrics(
    since: Annotated[dt.datetime | None, typer.Option(formats=["%Y-%m-%d"])] = None,
    until: Annotated[dt.datetime | None, typer.Option(formats=["%Y-%m-%d"])] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """MTTD, MTTA, MTTM and MTTR over incidents started in a period (minutes)."""
    from copilot.incidents import metrics

    utc = dt.UTC
    with _store().session() as s:
        m = metrics(s, since=since.replace(tzinfo=utc) if since else None,
                    until=until.replace(tzinfo=utc) if until else None)
    if as_json:
        print(json.dumps(m, indent=2))
        return
    out.print(f"{m['incidents']} incidents")
    for key in ("mttd", "mtta", "mttm", "mttr"):
        v = m[key]
        out.print(f"  {key.upper()}: mean {v['mean']} min, median {v['median']} min (n={v['n']})")


from copilot import cli_eval, cli_keys, cli_tasks  # noqa: F401,E402  (register their commands)


def main() -> None:
    try:
        app()
    except CopilotError as exc:
        err.print(f"[red]error:[/] {exc}")
        sys.exit(1)


if __name__ == "__main__":
    main()
