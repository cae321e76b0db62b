"""The evaluation harness: suites of cases (JSONL data), run through the copilot on one or
more backends, every case with its verdict and the reason, aggregated into metrics.

A suite knows its default cases and knowledge base, how to set up what it needs (an index, a
store with its incidents, a copilot on the backend asked for), how to run one case, and how
to aggregate the cases into metrics. ``run`` writes one JSON result; ``evals/report.py``
turns results into Markdown and HTML, ``evals/compare.py`` compares two.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from copilot.config import Settings
from copilot.errors import EvalError

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
DATA = Path(__file__).resolve().parent / "data"
BACKENDS = ("grounded", "local", "openai")


@dataclass
class CaseResult:
    """One case on one backend: its verdict, why, and its per-case scores."""

    id: str
    passed: bool
    reason: str
    scores: dict[str, float] = field(default_factory=dict)
    gold: str | None = None  # a class label, for confusion matrices
    predicted: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class SuiteRun:
    suite: str
    backend: str
    cases_file: str
    kb: list[str]
    metrics: dict[str, float]
    cases: list[CaseResult]
    seconds: float
    notes: list[str] = field(default_factory=list)


class Suite(ABC):
    """One kind of evaluation. Subclasses set ``name``, ``default_cases``, ``default_kb``,
    ``fast_sample`` (cases in the CI tier) and implement ``load``, ``setup``, ``run_case``
    and ``aggregate``."""

    name: ClassVar[str]
    description: ClassVar[str]
    default_cases: ClassVar[Path]
    default_kb: ClassVar[tuple[Path, ...]]
    fast_sample: ClassVar[int] = 20
    # metrics where lower is better (leaks, unsupported lines); the gate and reports use it
    lower_is_better: ClassVar[frozenset[str]] = frozenset()

    cases: list[Any]  # the cases being run, set before ``setup``

    @abstractmethod
    def load(self, path: Path) -> list[Any]:
        """The cases in ``path``; each has an ``id``."""

    @abstractmethod
    def setup(self, settings: Settings, kb: Sequence[Path], backend: str,
              progress: Callable[[str], None]) -> Any:
        """What the cases need (index, store, copilot); returned as the suite's context."""

    @abstractmethod
    def run_case(self, ctx: Any, case: Any) -> CaseResult: ...

    @abstractmethod
    def aggregate(self, results: list[CaseResult], ctx: Any) -> dict[str, float]: ...


SUITES: dict[str, type[Suite]] = {}


def register(cls: type[Suite]) -> type[Suite]:
    SUITES[cls.name] = cls
    return cls


def suites() -> dict[str, type[Suite]]:
    import evals.suite_incidents  # noqa: F401  (registers)
    import evals.suite_kb  # noqa: F401

    return SUITES


def sample(cases: list[Any], n: int | None) -> list[Any]:
    """A fixed sample of ``n`` cases: ordered by a hash of their ids, so the sample is the
    same on every run and every machine and is not a choice of easy cases."""
    if n is None or n >= len(cases):
        return cases
    return sorted(cases, key=lambda c: hashlib.sha256(str(c.id).encode()).hexdigest())[:n]


def run_suite(name: str, *, backend: str, settings: Settings, cases: Path | None = None,
              kb: Sequence[Path] = (), limit: int | None = None,
              progress: Callable[[str], None] = lambda _m: None) -> SuiteRun:
    registry = suites()
    if name not in registry:
        raise EvalError(f"unknown suite {name!r}: use one of {', '.join(registry)} or all")
    if backend not in BACKENDS:
        raise EvalError(f"unknown backend {backend!r}: use one of {', '.join(BACKENDS)}")
    suite = registry[name]()
    path = cases or suite.default_cases
    kbs = list(kb) or list(suite.default_kb)
    for folder in kbs:
        if not folder.exists():
            raise EvalError(f"{name}: knowledge base folder not found: {folder}")
    started = time.perf_counter()
    loaded = sample(suite.load(path), limit)
    suite.cases = loaded
    ctx = suite.setup(settings, kbs, backend, progress)
    results = []
    for n, case in enumerate(loaded, 1):
        t0 = time.perf_counter()
        result = suite.run_case(ctx, case)
        result.seconds = round(time.perf_counter() - t0, 3)
        results.append(result)
        if n % 25 == 0 or n == len(loaded):
            progress(f"{name} [{backend}] {n}/{len(loaded)}")
    metrics = suite.aggregate(results, ctx)
    return SuiteRun(name, backend, str(path), [str(k) for k in kbs], metrics, results,
                    round(time.perf_counter() - started, 1),
                    notes=list(getattr(ctx, "notes", [])))


def _git() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                              capture_output=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def to_json(runs: list[SuiteRun], *, tier: str | None = None) -> dict[str, Any]:
    return {"created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "commit": _git(), "tier": tier,
            "runs": [{**asdict(r), "cases": [asdict(c) for c in r.cases]} for r in runs]}


def write_result(data: dict[str, Any], out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.json"
    path.write_text(json.dumps(data, indent=1, default=str), encoding="utf-8")
    return path


def read_result(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise EvalError(f"cannot read eval result {path}: {exc}") from exc
    if not isinstance(data, dict) or "runs" not in data:
        raise EvalError(f"{path} is not an eval result (no 'runs'): "
                        "write one with copilot eval run")
    return data
