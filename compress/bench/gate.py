"""The CI latency gate: compare each result's ratio to a reference workload against a saved baseline.

A result's `ratio` is its time over a fixed torch workload timed between its calls, so a slower or busier CI
machine moves both and the ratio stays put; an actual regression of the model or runtime moves only the model.
A result that looks regressed is measured again (`confirm` times) and fails only if every measurement regresses:
a real regression reproduces, a burst of load on a shared runner does not.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from compress.bench.host import cpu_name
from compress.errors import CompressError
from compress.io import read_json, write_json
from compress.types import BenchResult

BASELINE_FORMAT = "compress-latency-baseline/1"


def save_baseline(results: list[BenchResult], path: str | os.PathLike) -> None:
    """Write the measured results' ratios (estimates are not gated)."""
    entries = [{"target": r.target, "backend": r.backend, "ratio": r.ratio, "p50_ms": r.p50_ms,
                "reference_ms": r.reference_ms, "threads": r.threads}
               for r in results if not r.estimate and r.ratio is not None]
    if not entries:
        raise CompressError("no measured results to save as a baseline")
    write_json(path, {"format": BASELINE_FORMAT, "host": cpu_name(), "entries": entries})


def load_baseline(path: str | os.PathLike) -> dict[tuple[str, str], dict]:
    data = read_json(path)
    if not isinstance(data, dict) or data.get("format") != BASELINE_FORMAT:
        raise CompressError(f"{path} is not a latency baseline (written by --save-baseline)")
    try:
        return {(e["target"], e["backend"]): e for e in data["entries"] if float(e["ratio"]) > 0}
    except (KeyError, TypeError, ValueError):
        raise CompressError(f"{path}: every baseline entry needs target, backend and a positive ratio") from None


@dataclass(frozen=True)
class GateRow:
    target: str
    backend: str
    baseline_ratio: float | None
    ratio: float | None
    status: str  # ok | regression | new (not in the baseline) | missing (in the baseline, not measured)
    measurements: int = 1  # more than one when a regression was re-measured to confirm it

    @property
    def change(self) -> float | None:
        """Relative slowdown against the baseline: +0.2 is 20% slower."""
        if self.baseline_ratio is None or self.ratio is None:
            return None
        return self.ratio / self.baseline_ratio - 1


@dataclass(frozen=True)
class GateReport:
    rows: list[GateRow]
    max_regression: float

    @property
    def passed(self) -> bool:
        return not any(row.status == "regression" for row in self.rows)

    def table(self) -> str:
        lines = ["| target | backend | baseline ratio | ratio | change | measurements | status |",
                 "|---|---|---|---|---|---|---|"]
        for row in self.rows:
            cells = [row.target, row.backend, _fmt(row.baseline_ratio), _fmt(row.ratio),
                     f"{row.change:+.1%}" if row.change is not None else "-", str(row.measurements), row.status]
            lines.append("| " + " | ".join(cells) + " |")
        verdict = "PASS" if self.passed else "FAIL"
        lines.append(f"\ngate {verdict}: max regression {self.max_regression:.0%} "
                     "(ratio = model time / reference workload timed between its calls; the best of the "
                     "measurements counts)")
        return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return f"{value:.4g}" if value is not None else "-"


def gate(
    results: list[BenchResult],
    baseline: str | os.PathLike,
    max_regression: float = 0.15,
    remeasure: Callable[[BenchResult], BenchResult] | None = None,
    confirm: int = 2,
) -> GateReport:
    """Fail a result whose ratio grew by more than `max_regression` (0.15 = 15% slower) against the baseline.

    With `remeasure` (times the same target on the same backend again), a regressed result is measured up to
    `confirm` more times and the lowest ratio counts, so only a regression that reproduces fails the gate.
    """
    if max_regression < 0:
        raise CompressError(f"--max-regression must be >= 0, got {max_regression}")
    if confirm < 0:
        raise CompressError(f"--confirm must be >= 0, got {confirm}")
    entries = load_baseline(baseline)
    rows, seen = [], set()
    for result in results:
        if result.estimate or result.ratio is None:
            continue
        key = (result.target, result.backend)
        seen.add(key)
        entry = entries.get(key)
        if entry is None:
            rows.append(GateRow(*key, None, result.ratio, "new"))
            continue
        row = GateRow(*key, float(entry["ratio"]), result.ratio, "ok")
        while row.change > max_regression and remeasure is not None and row.measurements <= confirm:
            row = GateRow(*key, row.baseline_ratio, min(row.ratio, remeasure(result).ratio), "ok", row.measurements + 1)
        if row.change > max_regression:
            row = GateRow(*key, row.baseline_ratio, row.ratio, "regression", row.measurements)
        rows.append(row)
    rows += [GateRow(*key, float(entry["ratio"]), None, "missing") for key, entry in entries.items() if key not in seen]
    return GateReport(rows, max_regression)
