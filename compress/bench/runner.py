"""Time targets on backends: load, first call, warm-up, timed calls; then FLOPs, efficiency and the gate's ratio."""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable

import torch

from compress.bench.backends import DEFAULT_BACKEND, Backend, get_backend
from compress.bench.host import (
    REFERENCE_BLOCKS,
    REFERENCE_RUNS,
    PeakMemory,
    ReferenceWorkload,
    cpu_name,
    peak_gemm_gflops,
    torch_threads,
)
from compress.bench.stats import summarise
from compress.bench.targets import Target, resolve_target
from compress.errors import CompressError
from compress.types import BenchResult

Warn = Callable[[str], None]


def warn_stderr(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def resolve_backends(names: list[str], strict: bool = False, warn: Warn = warn_stderr) -> list[Backend]:
    """The available backends among `names`; an unavailable one is an error alone or with `strict`, else skipped."""
    backends = [get_backend(name) for name in names]
    usable = []
    for backend in backends:
        reason = backend.unavailable()
        if reason is None:
            usable.append(backend)
        elif strict or len(backends) == 1:
            raise CompressError(f"backend {backend.name} is not available: {reason}")
        else:
            warn(f"skipping backend {backend.name}: not available: {reason}")
    if not usable:
        raise CompressError(f"none of the backends {', '.join(names)} is available here (see --list-backends)")
    return usable


def _blocks(total: int, count: int) -> list[int]:
    """`total` split into at most `count` near-equal positive parts."""
    count = min(count, total)
    return [total // count + (i < total % count) for i in range(count)]


def bench_one(target: Target, backend: Backend, *, warmup: int, runs: int, threads: int) -> BenchResult:
    """Load `target` on `backend`, time the first call, `warmup` more, then `runs` timed calls.

    The reference workload is timed in blocks between the timed calls. Each block of model calls is divided by
    the reference block next to it, and `ratio` is the median of those block ratios: a burst of load that slows
    one block slows its reference too, and one odd block cannot move a median.
    """
    flops = target.graph().flops or None  # read before timing: reading a large graph is not the model's cost
    reference = ReferenceWorkload(threads)
    times, reference_times, block_ratios = [], [], []
    with torch_threads(threads), PeakMemory() as memory:
        began = time.perf_counter()
        session = backend.load(target, threads)
        load_s = time.perf_counter() - began
        try:
            first = session.timed_call()
            for _ in range(warmup):
                session.timed_call()
            for block in _blocks(runs, REFERENCE_BLOCKS):
                block_times = [session.timed_call() for _ in range(block)]
                block_reference = reference.timings(REFERENCE_RUNS // REFERENCE_BLOCKS)
                block_ratios.append(statistics.median(block_times) / statistics.median(block_reference))
                times += block_times
                reference_times += block_reference
            device_mb = session.device_peak_mb()
            detail = dict(session.detail)
        finally:
            session.close()
    stats = summarise(times)
    peak = floor_ms = efficiency = None
    if backend.on_host_cpu:
        peak = peak_gemm_gflops(threads)
        if flops:
            floor_ms = flops / (peak * 1e9) * 1e3
            efficiency = floor_ms / stats["p50_ms"]
    reference_ms = statistics.median(reference_times) * 1e3
    if device_mb is not None:
        detail["host_peak_memory_mb"] = memory.mb
    return BenchResult(
        target=target.name, path=target.location, format=target.format, backend=backend.name,
        device=detail.get("device") or (cpu_name() if backend.on_host_cpu else backend.device), threads=threads,
        warmup=warmup, runs=runs, load_ms=load_s * 1e3, first_call_ms=first * 1e3, **stats,
        peak_memory_mb=device_mb if device_mb is not None else memory.mb, flops=flops, peak_gflops=peak,
        floor_ms=floor_ms, efficiency=efficiency, reference_ms=reference_ms, ratio=statistics.median(block_ratios),
        detail=detail, times_ms=[t * 1e3 for t in times])


def runnable_backends(target: Target, chosen: list[Backend] | None, strict: bool = False,
                      warn: Warn = warn_stderr) -> list[Backend]:
    """The backends among `chosen` (default: its format's CPU backend) that run `target`.

    A backend that can also load another format (OpenVINO reads ONNX) is used for it only when no chosen backend
    runs that format natively. None is an error with `strict`, else a warning.
    """
    runnable = chosen if chosen is not None else resolve_backends([DEFAULT_BACKEND[target.format]])
    matching = ([b for b in runnable if target.format in b.formats]
                or [b for b in runnable if target.format in b.reads])  # e.g. an ONNX file on ov-cpu alone
    if not matching:
        message = f"no backend among {', '.join(b.name for b in runnable)} runs {target.name} ({target.format})"
        if strict:
            raise CompressError(message)
        warn(message + "; skipped")
    return matching


def bench(
    targets: list[str | os.PathLike | Target],
    backends: list[str] | None = None,
    warmup: int = 5,
    runs: int = 20,
    threads: int | None = None,
    *,
    size: int | None = None,
    init: str = "pretrained",
    seed: int = 0,
    strict: bool = False,
    repeat: int = 1,
    warn: Warn = warn_stderr,
) -> list[BenchResult]:
    """Time every target on every given backend that runs its format (default: its format's CPU backend).

    A backend that can also load another format (OpenVINO reads ONNX) is used for it only when no listed backend
    runs that format natively, so `a.onnx b.xml --backend ort-cpu,ov-cpu` times a on ORT and b on OpenVINO.

    `threads` defaults to torch's intra-op thread count (the physical cores). `size`, `init` and `seed` apply to
    targets that are torch models. An unavailable backend in a list is skipped with a warning (an error alone or
    with `strict`); so is a target that no listed backend runs. With `repeat` above 1 every pair is measured in
    that many rounds (a fresh session each) and the round with the median ratio is reported.
    """
    if warmup < 0 or runs < 1 or repeat < 1:
        raise CompressError(f"--warmup must be >= 0, --runs and --repeat >= 1 (got {warmup}, {runs} and {repeat})")
    threads = torch.get_num_threads() if threads is None else threads
    if threads < 1:
        raise CompressError(f"--threads must be positive, got {threads}")
    resolved = [t if isinstance(t, Target) else resolve_target(t, size=size, init=init, seed=seed) for t in targets]
    chosen = resolve_backends(backends, strict, warn) if backends else None
    pairs = [(target, backend) for target in resolved for backend in runnable_backends(target, chosen, strict, warn)]
    if not pairs:
        raise CompressError("nothing to run: no backend given runs any of the targets")
    if any(backend.on_host_cpu for _, backend in pairs):
        peak_gemm_gflops(threads)  # measured up front so it does not disturb a model's timings or memory
    rounds = [[bench_one(target, backend, warmup=warmup, runs=runs, threads=threads) for target, backend in pairs]
              for _ in range(repeat)]
    return [_median_measurement(list(measurements)) for measurements in zip(*rounds, strict=True)]


def _median_measurement(measurements: list[BenchResult]) -> BenchResult:
    """The measurement with the median ratio, whole (its statistics stay consistent), noting every ratio seen.

    Rounds run one after another over all pairs, so a slow spell of a shared machine lands on different
    pairs in different rounds, and the median round of each pair is one the spell missed.
    """
    if len(measurements) == 1:
        return measurements[0]
    ordered = sorted(measurements, key=lambda r: r.ratio)
    chosen = ordered[(len(ordered) - 1) // 2]
    chosen.detail["round_ratios"] = [r.ratio for r in measurements]
    return chosen
