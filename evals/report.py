"""Reports of eval results: Markdown, and one self-contained HTML page with inline SVG plots
(per-metric bars across backends, score distributions, confusion matrices). No plotting
library and no network: the page opens anywhere."""

from __future__ import annotations

import html
from collections import Counter, defaultdict
from typing import Any

PALETTE = ("#2563eb", "#d97706", "#059669", "#9333ea")
# The per-case score whose distribution each suite's report plots.
DISTRIBUTION = {"runbooks": "with_name.rr", "root_cause": "copilot.full.hit@3",
                "summaries": "fact_recall", "status_updates": "reading_grade",
                "chat": "citation_precision"}


def by_suite(data: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """suite → backend → run."""
    out: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for run in data["runs"]:
        out[run["suite"]][run["backend"]] = run
    return out


def _fmt(value: Any) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) >= 1:
        return str(int(value))
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".") if abs(value) >= 10 else f"{value:.3f}"
    return str(value)


def _metric_names(runs: dict[str, dict[str, Any]]) -> list[str]:
    names: list[str] = []
    for run in runs.values():
        names += [m for m in run["metrics"] if m not in names]
    return names


def markdown(data: dict[str, Any], *, failures: int = 10) -> str:
    lines = ["# Evaluation report", "",
             f"Created {data.get('created')} at commit {data.get('commit') or 'unknown'}"
             + (f", tier {data['tier']}" if data.get("tier") else "") + ".", ""]
    for suite, runs in by_suite(data).items():
        backends = list(runs)
        first = next(iter(runs.values()))
        lines += [f"## {suite}", "", f"Cases: `{first['cases_file']}`; knowledge base: "
                  + ", ".join(f"`{k}`" for k in first["kb"]) + ".", ""]
        lines += ["| metric | " + " | ".join(backends) + " |",
                  "|---|" + "---|" * len(backends)]
        for metric in _metric_names(runs):
            lines.append(f"| {metric} | " + " | ".join(
                _fmt(runs[b]["metrics"].get(metric, "")) for b in backends) + " |")
        for b in backends:
            run = runs[b]
            passed = sum(c["passed"] for c in run["cases"])
            lines += ["", f"**{b}**: {passed}/{len(run['cases'])} cases pass, "
                      f"{run['seconds']} s." + (" " + " ".join(run.get("notes") or [])
                                                if run.get("notes") else "")]
            failed = [c for c in run["cases"] if not c["passed"]][:failures]
            for c in failed:
                lines.append(f"- `{c['id']}`: {c['reason']}")
        lines.append("")
    return "\n".join(lines)


# -- SVG -------------------------------------------------------------------------------------


def bars_svg(runs: dict[str, dict[str, Any]], *, width: int = 760) -> str:
    """Grouped bars for the metrics that are shares (0 to 1), one colour per backend."""
    metrics = [m for m in _metric_names(runs)
               if all(0.0 <= float(r["metrics"].get(m, 0) or 0) <= 1.0 for r in runs.values())
               and m != "cases"]
    if not metrics:
        return ""
    backends = list(runs)
    row_h, pad_l, bar_h = 18 * len(backends) + 10, 190, 16
    height = row_h * len(metrics) + 40
    plot_w = width - pad_l - 60
    out = [f'<svg role="img" aria-label="metrics by backend" viewBox="0 0 {width} {height}" '
           f'width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg" '
           'font-family="sans-serif" font-size="12">']
    for t in (0, 0.25, 0.5, 0.75, 1.0):
        x = pad_l + plot_w * t
        out.append(f'<line x1="{x:.1f}" y1="10" x2="{x:.1f}" y2="{height - 25}" '
                   'stroke="#e5e7eb"/>')
        out.append(f'<text x="{x:.1f}" y="{height - 8}" text-anchor="middle" '
                   f'fill="#6b7280">{t:g}</text>')
    for i, metric in enumerate(metrics):
        y0 = 10 + i * row_h
        out.append(f'<text x="{pad_l - 8}" y="{y0 + row_h / 2 + 4:.1f}" text-anchor="end">'
                   f'{html.escape(metric)}</text>')
        for j, b in enumerate(backends):
            value = float(runs[b]["metrics"].get(metric, 0) or 0)
            y = y0 + j * 18
            out.append(f'<rect x="{pad_l}" y="{y}" width="{plot_w * value:.1f}" '
                       f'height="{bar_h}" fill="{PALETTE[j % len(PALETTE)]}">'
                       f'<title>{html.escape(b)} {html.escape(metric)} {value:.3f}</title></rect>')
            out.append(f'<text x="{pad_l + plot_w * value + 4:.1f}" y="{y + 12}" '
                       f'fill="#111827">{value:.3f}</text>')
    out.append("</svg>")
    return "\n".join(out)


def histogram_svg(values_by_backend: dict[str, list[float]], *, title: str,
                  bins: int = 10, width: int = 360, height: int = 160) -> str:
    allv = [v for vs in values_by_backend.values() for v in vs]
    if not allv:
        return ""
    lo, hi = min(allv), max(allv)
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    step = (hi - lo) / bins
    counts = {b: Counter(min(int((v - lo) / step), bins - 1) for v in vs)
              for b, vs in values_by_backend.items()}
    top = max(max(c.values(), default=0) for c in counts.values()) or 1
    plot_w, plot_h = width - 40, height - 45
    slot = plot_w / bins
    out = [f'<svg role="img" aria-label="{html.escape(title)}" viewBox="0 0 {width} {height}" '
           f'width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg" '
           'font-family="sans-serif" font-size="11">',
           f'<text x="4" y="12" fill="#111827">{html.escape(title)}</text>']
    n = len(counts)
    for j, (b, c) in enumerate(counts.items()):
        for k in range(bins):
            h = plot_h * c.get(k, 0) / top
            x = 30 + k * slot + j * slot / n
            out.append(f'<rect x="{x:.1f}" y="{20 + plot_h - h:.1f}" width="{slot / n - 1:.1f}" '
                       f'height="{h:.1f}" fill="{PALETTE[j % len(PALETTE)]}">'
                       f'<title>{html.escape(b)}: {c.get(k, 0)} cases in '
                       f'[{lo + k * step:.2f}, {lo + (k + 1) * step:.2f})</title></rect>')
    out.append(f'<text x="30" y="{height - 8}" fill="#6b7280">{lo:.2f}</text>')
    out.append(f'<text x="{width - 10}" y="{height - 8}" text-anchor="end" '
               f'fill="#6b7280">{hi:.2f}</text>')
    out.append("</svg>")
    return "\n".join(out)


def confusion_html(cases: list[dict[str, Any]], *, title: str) -> str:
    """Gold (rows) × predicted (columns) counts as a shaded table."""
    pairs = [(c["gold"], c["predicted"] or "(none)") for c in cases if c.get("gold")
             and c.get("predicted") is not None]
    if not pairs:
        return ""
    gold = sorted({g for g, _ in pairs})
    pred = sorted({p for _, p in pairs} | set(gold))
    counts = Counter(pairs)
    top = max(counts.values())
    rows = [f"<table class='cm'><caption>{html.escape(title)} (rows: gold, columns: "
            "predicted)</caption><tr><th></th>"
            + "".join(f"<th class='rot'><span>{html.escape(p)}</span></th>" for p in pred)
            + "</tr>"]
    for g in gold:
        cells = []
        for p in pred:
            n = counts.get((g, p), 0)
            alpha = n / top if n else 0
            colour = "5, 150, 105" if g == p else "220, 38, 38"
            cells.append(f"<td style='background:rgba({colour},{alpha:.2f})' "
                         f"title='{html.escape(g)} → {html.escape(p)}: {n}'>{n or ''}</td>")
        rows.append(f"<tr><th>{html.escape(g)}</th>{''.join(cells)}</tr>")
    rows.append("</table>")
    return "\n".join(rows)


CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2rem auto;padding:0 1rem;
color:#111827;line-height:1.45}
table{border-collapse:collapse;margin:.5rem 0 1rem}td,th{border:1px solid #e5e7eb;
padding:.25rem .5rem;text-align:left;font-size:.9rem}
.cm td{text-align:center;min-width:1.6rem}.cm th{font-weight:normal;font-size:.75rem}
.rot{height:9rem;white-space:nowrap;vertical-align:bottom}.rot span{writing-mode:vertical-rl;
transform:rotate(180deg)}.legend span{display:inline-block;margin-right:1rem}
.legend i{display:inline-block;width:.8rem;height:.8rem;margin-right:.3rem}
.fail{color:#b91c1c}.plots{display:flex;flex-wrap:wrap;gap:1rem}
"""


def html_page(data: dict[str, Any], *, failures: int = 25) -> str:
    parts = ["<!doctype html><html lang='en'><head><meta charset='utf-8'>",
             "<title>Incident Copilot evaluation</title>", f"<style>{CSS}</style></head><body>",
             "<h1>Evaluation report</h1>",
             f"<p>Created {html.escape(str(data.get('created')))} at commit "
             f"{html.escape(str(data.get('commit') or 'unknown'))}"
             + (f", tier {html.escape(str(data['tier']))}" if data.get("tier") else "")
             + ".</p>"]
    for suite, runs in by_suite(data).items():
        backends = list(runs)
        parts.append(f"<h2>{html.escape(suite)}</h2>")
        parts.append("<p class='legend'>" + "".join(
            f"<span><i style='background:{PALETTE[j % len(PALETTE)]}'></i>{html.escape(b)}"
            "</span>" for j, b in enumerate(backends)) + "</p>")
        parts.append("<table><tr><th>metric</th>" + "".join(
            f"<th>{html.escape(b)}</th>" for b in backends) + "</tr>")
        for metric in _metric_names(runs):
            parts.append(f"<tr><td>{html.escape(metric)}</td>" + "".join(
                f"<td>{html.escape(_fmt(runs[b]['metrics'].get(metric, '')))}</td>"
                for b in backends) + "</tr>")
        parts.append("</table>")
        parts.append(bars_svg(runs))
        key = DISTRIBUTION.get(suite)
        plots = []
        if key:
            values = {b: [float(c["scores"][key]) for c in runs[b]["cases"]
                          if key in c.get("scores", {})] for b in backends}
            plots.append(histogram_svg(values, title=f"distribution of {key} per case"))
        parts.append("<div class='plots'>" + "".join(plots) + "</div>")
        for b in backends:
            parts.append(confusion_html(runs[b]["cases"], title=f"{suite}, {b}"))
            failed = [c for c in runs[b]["cases"] if not c["passed"]]
            parts.append(f"<details><summary>{html.escape(b)}: {len(failed)} of "
                         f"{len(runs[b]['cases'])} cases fail</summary><ul>")
            parts += [f"<li class='fail'><code>{html.escape(c['id'])}</code>: "
                      f"{html.escape(c['reason'])}</li>" for c in failed[:failures]]
            parts.append("</ul></details>")
    parts.append("</body></html>")
    return "\n".join(p for p in parts if p)
