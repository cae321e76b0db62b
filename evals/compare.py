"""Compare two eval results, case by case: metric deltas per suite and backend, and every
case whose verdict changed, with both reasons."""

from __future__ import annotations

from typing import Any

from evals.report import _fmt, by_suite


def compare(a: dict[str, Any], b: dict[str, Any], *, limit: int = 50) -> str:
    old, new = by_suite(a), by_suite(b)
    lines = [f"A: {a.get('created')} ({a.get('commit') or '?'})  →  "
             f"B: {b.get('created')} ({b.get('commit') or '?'})", ""]
    for suite in sorted(set(old) | set(new)):
        for backend in sorted(set(old.get(suite, {})) | set(new.get(suite, {}))):
            ra, rb = old.get(suite, {}).get(backend), new.get(suite, {}).get(backend)
            if ra is None or rb is None:
                lines.append(f"{suite} [{backend}]: only in {'B' if ra is None else 'A'}")
                continue
            lines.append(f"{suite} [{backend}]")
            for metric in dict.fromkeys([*ra["metrics"], *rb["metrics"]]):
                va, vb = ra["metrics"].get(metric), rb["metrics"].get(metric)
                if isinstance(va, int | float) and isinstance(vb, int | float):
                    delta = vb - va
                    mark = "" if abs(delta) < 1e-9 else f"  ({delta:+.3f})"
                    lines.append(f"  {metric:<28} {_fmt(va):>8} → {_fmt(vb):>8}{mark}")
                else:
                    lines.append(f"  {metric:<28} {_fmt(va)} → {_fmt(vb)}")
            ca = {c["id"]: c for c in ra["cases"]}
            cb = {c["id"]: c for c in rb["cases"]}
            flips = [(i, ca[i], cb[i]) for i in ca if i in cb and ca[i]["passed"] != cb[i]["passed"]]
            only = sorted(set(ca) ^ set(cb))
            lines.append(f"  {len(flips)} cases changed verdict"
                         + (f"; {len(only)} cases in only one run" if only else ""))
            for i, x, y in flips[:limit]:
                arrow = "fail → pass" if y["passed"] else "pass → FAIL"
                lines.append(f"    {i}: {arrow}\n      A: {x['reason']}\n      B: {y['reason']}")
            lines.append("")
    return "\n".join(lines)
