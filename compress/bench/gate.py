"""The stored-baseline latency gate: compare each result's ratio to a reference workload with a saved baseline.

A result's `ratio` is its time over a fixed torch workload timed between its calls. That ratio only carries over
between runs on the same host class (CPU model, ISA extensions, runtime version, threads), so a baseline records
its class per entry and another class is refused unless the caller allows it. A result that looks regressed is
measured again (`confirm` times) and the median of its measurements counts, the statistic the baseline's
`--repeat` rounds use too. A baseline entry that was not measured fails (`missing`) unless explicitly allowed.

Between two builds, `compress.bench.compare` (both timed interleaved in one run) is the sounder check; this one is
for numbers stored from an earlier run.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable
from dataclasses import dataclass

from compress.bench.backends import get_backend
from compress.bench.host import cpu_name, host_class
from compress.errors import CompressError
from compress.io import read_json, write_json
from compress.types import BenchResult

BASELINE_FORMAT = "compress-latency-baseline/2"


def save_baseline(results: list[BenchResult], path: str | os.PathLike) -> None:
    """Write the measured results' ratios (estimates are not gated)."""
    entries = [{"target": r.target, "backend": r.backend, "ratio": r.ratio, "p50_ms": r.p50_ms,
                "reference_ms": r.reference_ms, "threads": r.threads,
                "host": host_class(r.threads, get_backend(r.backend))}
               for r in results if not r.estimate and r.ratio is not None]
    if not entries:
        raise CompressError("no measured results to save as a baseline")
    write_json(path, {"format": BASELINE_FORMAT, "host": cpu_name(), "entries": entries})


def load_baseline(path: str | os.PathLike) -> dict[tuple[str, str], dict]:
    data = read_json(path)
    if not isinstance(data, dict) or data.get("format") != BASELINE_FORMAT:
        raise CompressError(f"{path} is not a latency baseline of this version (write one with --save-baseline)")
    try:
        entries = {(e["target"], e["backend"]): e for e in data["entries"] if float(e["ratio"]) > 0 and e["host"]}
    except (KeyError, TypeError, ValueError):
        raise CompressError(f"{path}: every baseline entry needs target, backend, host and a positive ratio") from None
    if len(entries) != len(data["entries"]):
        raise CompressError(f"{path}: every baseline entry needs target, backend, host and a positive ratio")
    return entries


@dataclass(frozen=True)
class GateRow:
    target: str
    backend: str
    baseline_ratio: float | None
    ratio: float | None
    status: str  # ok | regression | new (not in the baseline) | missing (in the baseline, not measured)
    measurements: int = 1  # more than one when a regression was re-measured to confirm it
    allow_missing: bool = False

    @property
    def failed(self) -> bool:
        return self.status == "regression" or (self.status == "missing" and not self.allow_missing)

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
        return not any(row.failed for row in self.rows)

    def table(self) -> str:
        lines = ["| target | backend | baseline ratio | ratio | change | measurements | status |",
                 "|---|---|---|---|---|---|---|"]
        for row in self.rows:
            cells = [row.target, row.backend, _fmt(row.baseline_ratio), _fmt(row.ratio),
                     f"{row.change:+.1%}" if row.change is not None else "-", str(row.measurements), row.status]
            lines.append("| " + " | ".join(cells) + " |")
        verdict = "PASS" if self.passed else "FAIL"
        lines.append(f"\ngate {verdict}: max regression {self.max_regression:.0%} "
                     "(ratio = model time / reference workload timed between its calls; the median of the "
                     "measurements counts; a baseline entry not measured fails unless allowed)")
        return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return f"{value:.4g}" if value is not None else "-"


def gate(
    results: list[BenchResult],
    baseline: str | os.PathLike,
    max_regression: float = 0.15,
    remeasure: Callable[[BenchResult], BenchResult] | None = None,
    confirm: int = 2,
    *,
    allow_missing: bool = False,
    allow_other_host: bool = False,
) -> GateReport:
    """Fail a result whose ratio grew by more than `max_regression` (0.15 = 15% slower) against the baseline.

    With `remeasure` (times the same target on the same backend again), a regressed result is measured up to
    `confirm` more times and the median of its measurements counts. A baseline entry from another host class is
    refused (CompressError) unless `allow_other_host`; one that no result measured fails unless `allow_missing`.
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
        if not allow_other_host:
            check_host(baseline, entry, result.threads)
        ratios = [result.ratio]
        while (statistics.median(ratios) / float(entry["ratio"]) - 1 > max_regression and remeasure is not None
               and len(ratios) <= confirm):
            ratios.append(remeasure(result).ratio)
        row = GateRow(*key, float(entry["ratio"]), statistics.median(ratios), "ok", len(ratios))
        if row.change > max_regression:
            row = GateRow(*key, row.baseline_ratio, row.ratio, "regression", row.measurements)
        rows.append(row)
    rows += [GateRow(*key, float(entry["ratio"]), None, "missing", allow_missing=allow_missing)
             for key, entry in entries.items() if key not in seen]
    return GateReport(rows, max_regression)


def check_host(baseline: str | os.PathLike, entry: dict, threads: int) -> None:
    """Refuse a baseline entry measured on another host class than this one at `threads` threads."""
    here = host_class(threads, get_backend(entry["backend"]))
    if entry["host"] != here:
        raise CompressError(f"{baseline} was measured on another host class ({_host_text(entry['host'])}; "
                            f"this is {_host_text(here)}): re-save it here, or pass --allow-other-host")


def _host_text(host: dict) -> str:
    return ", ".join(f"{k} {' '.join(v) if isinstance(v, list) else v}" for k, v in host.items())
