"""Evaluation cases are data: one JSON object per line. One reader for every suite, with the
file and line named in every error."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from copilot.errors import EvalError

T = TypeVar("T")


def read_cases(path: Path, make: Callable[[dict[str, Any]], T], *, what: str) -> list[T]:
    """Each non-blank line of ``path`` through ``make``; a line it cannot read is an error
    naming ``what`` the line should have been."""
    if not path.exists():
        raise EvalError(f"cases file not found: {path}")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise EvalError(f"cannot read {path}: {exc}") from exc
    cases = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            cases.append(make(json.loads(line)))
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise EvalError(f"{path}:{n}: not {what} ({exc})") from exc
    if not cases:
        raise EvalError(f"{path}: no cases")
    return cases
