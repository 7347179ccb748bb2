"""Latency statistics over timed calls, all in milliseconds."""

from __future__ import annotations

import numpy as np

STAT_NAMES = ("mean_ms", "std_ms", "min_ms", "p50_ms", "p90_ms", "p99_ms", "max_ms")


def summarise(seconds: list[float]) -> dict[str, float]:
    """Mean, sample standard deviation, min, p50, p90, p99 and max of `seconds`, in milliseconds.

    Percentiles interpolate linearly between the two nearest timings (numpy's default), so p99 over 20 runs
    lies between the two slowest calls instead of jumping to the maximum.
    """
    if not seconds:
        raise ValueError("no timings to summarise")
    ms = np.asarray(seconds, dtype=np.float64) * 1e3
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    values = (ms.mean(), ms.std(ddof=1) if len(ms) > 1 else 0.0, ms.min(), p50, p90, p99, ms.max())
    return {name: float(value) for name, value in zip(STAT_NAMES, values, strict=True)}
