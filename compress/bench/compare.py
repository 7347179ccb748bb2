"""Two builds of a model timed against each other on one backend, interleaved: the latency gate's decision.

Timing a baseline and then a candidate compares two moments of a machine as much as two models: load bursts, CPU
frequency and a runtime session's luck (one compiled session can run ~10% slower than the next) land on one side.
Here both sides run in the same process, in `rounds` rounds that each load both anew (in alternating order), and
within a round in ABBA blocks of `calls` calls. Each adjacent pair of blocks gives one paired ratio, candidate
median / baseline median; the estimate is the median of all paired ratios. Its 95% interval comes from resampling
whole rounds (a session's lasting offset moves all pairs of its round together, so pairs are not independent).

A regression is a median slowdown beyond `max_regression` whose interval lies wholly above no change: noise that
cannot be told from zero never fails the gate, and a slowdown the interval resolves always does.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from compress.bench.backends import Backend
from compress.bench.host import host_class, torch_threads
from compress.bench.targets import Target
from compress.errors import CompressError
from compress.types import Record

BOOTSTRAP_RESAMPLES = 4000
Progress = Callable[[str], None]


@dataclass(frozen=True)
class Comparison(Record):
    """Candidate vs baseline on one backend. `change` is the median paired slowdown (+0.2: 20% slower)."""

    candidate: str
    baseline: str
    backend: str
    threads: int
    max_regression: float
    change: float
    change_low: float  # 95% interval of `change`, resampling rounds
    change_high: float
    candidate_p50_ms: float
    baseline_p50_ms: float
    rounds: int
    calls: int  # per block
    pair_ratios: list[list[float]] = field(default_factory=list)  # one list per round
    host: dict = field(default_factory=dict)

    @property
    def status(self) -> str:
        if self.change > self.max_regression and self.change_low > 0:
            return "regression"
        if self.change < -self.max_regression and self.change_high < 0:
            return "faster"
        return "ok"

    def to_dict(self) -> dict:
        return {**super().to_dict(), "status": self.status}


def paired_change(pair_ratios: list[list[float]], seed: int = 0) -> tuple[float, float, float]:
    """Median paired ratio - 1, and its 95% interval by resampling whole rounds with replacement."""
    if not pair_ratios or not all(pair_ratios):
        raise CompressError("no paired timings to compare")
    pooled = [ratio for round_ratios in pair_ratios for ratio in round_ratios]
    rng = np.random.default_rng(seed)
    medians = []
    for _ in range(BOOTSTRAP_RESAMPLES):
        picked = rng.integers(0, len(pair_ratios), len(pair_ratios))
        medians.append(np.median(np.concatenate([pair_ratios[i] for i in picked])))
    low, high = np.percentile(medians, [2.5, 97.5])
    return statistics.median(pooled) - 1, float(low) - 1, float(high) - 1


def compare(
    candidate: Target,
    baseline: Target,
    backend: Backend,
    *,
    threads: int,
    rounds: int = 6,
    pairs: int = 8,
    calls: int = 10,
    warmup: int = 10,
    max_regression: float = 0.15,
    progress: Progress | None = None,
    baseline_backend: Backend | None = None,
) -> Comparison:
    """Time `candidate` against `baseline` on `backend` in interleaved ABBA blocks (see the module docstring).

    `baseline_backend` runs the baseline on another backend of the same device (an int8 graph at OpenVINO's
    default precision against the fp32 graph on `ov-cpu-f32`); default: `backend`."""
    backends = {"candidate": backend, "baseline": baseline_backend or backend}
    if rounds < 2 or pairs < 1 or calls < 1 or warmup < 0 or threads < 1:
        raise CompressError(f"--rounds must be >= 2; --pairs, --calls and --threads >= 1; --warmup >= 0 "
                            f"(got {rounds}, {pairs}, {calls}, {threads}, {warmup})")
    if max_regression < 0:
        raise CompressError(f"--max-regression must be >= 0, got {max_regression}")
    pair_ratios, times = [], {"candidate": [], "baseline": []}
    with torch_threads(threads):
        for round_index in range(rounds):
            sides = ["candidate", "baseline"] if round_index % 2 == 0 else ["baseline", "candidate"]
            sessions = {}
            try:
                for side in sides:  # loading order alternates between rounds, as the blocks do within one
                    sessions[side] = backends[side].load(candidate if side == "candidate" else baseline, threads)
                    for _ in range(warmup + 1):
                        sessions[side].timed_call()
                ratios = []
                for pair in range(pairs):
                    block = {}
                    for side in (sides if pair % 2 == 0 else sides[::-1]):
                        block[side] = [sessions[side].timed_call() for _ in range(calls)]
                        times[side] += block[side]
                    ratios.append(statistics.median(block["candidate"]) / statistics.median(block["baseline"]))
                pair_ratios.append(ratios)
            finally:
                for session in sessions.values():
                    session.close()
            if progress is not None:
                progress(f"round {round_index + 1}/{rounds}: candidate/baseline {statistics.median(ratios):.3f}")
    change, low, high = paired_change(pair_ratios)
    return Comparison(
        candidate=candidate.location, baseline=baseline.location, threads=threads,
        backend=backend.name if backends["baseline"] is backend else f"{backend.name} vs {backends['baseline'].name}",
        max_regression=max_regression, change=change, change_low=low, change_high=high,
        candidate_p50_ms=statistics.median(times["candidate"]) * 1e3,
        baseline_p50_ms=statistics.median(times["baseline"]) * 1e3, rounds=rounds, calls=calls,
        pair_ratios=pair_ratios, host=host_class(threads, backend))


def comparison_table(comparisons: list[Comparison]) -> str:
    """Markdown rows and a verdict line that says how the decision was made."""
    lines = ["| candidate | baseline | backend | candidate p50 ms | baseline p50 ms | change (95% interval) | status |",
             "|---|---|---|---:|---:|---:|---|"]
    for c in comparisons:
        lines.append(f"| {c.candidate} | {c.baseline} | {c.backend} | {c.candidate_p50_ms:.3g} | "
                     f"{c.baseline_p50_ms:.3g} | {c.change:+.1%} ({c.change_low:+.1%} to {c.change_high:+.1%}) "
                     f"| {c.status} |")
    failed = any(c.status == "regression" for c in comparisons)
    limit = max((c.max_regression for c in comparisons), default=0.0)
    lines.append(f"\ngate {'FAIL' if failed else 'PASS'}: a regression is a median paired slowdown above "
                 f"{limit:.0%} whose 95% interval excludes no change (interleaved ABBA blocks, rounds resampled)")
    return "\n".join(lines)
