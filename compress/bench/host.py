"""What this machine can do, measured in the benchmarking process: peak GEMM rate, a reference workload, memory.

Measuring these next to the model (same process, same thread count) is what makes `efficiency` and the CI gate's
`ratio` comparable across machines: a slower or busier host slows the reference as much as the model.
"""

from __future__ import annotations

import contextlib
import functools
import platform
import re
import resource
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import torch

GEMM_SIZE = 512
GEMM_REPEATS = 40
REFERENCE_RUNS = 200  # calls of the reference workload per result, in REFERENCE_BLOCKS blocks
REFERENCE_BLOCKS = 10


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run torch's intra-op pool with `threads` threads inside the block, then restore it."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _timings(fn, repeats: int, warmup: int = 2) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return times


@functools.cache
def peak_gemm_gflops(threads: int) -> float:
    """The best fp32 matmul rate torch reaches with `threads` threads (measured once per process and count).

    The fastest of many short calls counts: a call another process preempted is only slower, and a 512 x 512
    product (a few ms, operands in L2) finishes inside a scheduler time slice. Here it reaches ~100 GFLOP/s per
    core where 1024 x 1024 calls, preempted under load, measure a third of that.
    """
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(GEMM_SIZE, GEMM_SIZE, generator=generator)
    b = torch.randn(GEMM_SIZE, GEMM_SIZE, generator=generator)
    with torch_threads(threads), torch.inference_mode():
        return 2 * GEMM_SIZE**3 / min(_timings(lambda: torch.mm(a, b), GEMM_REPEATS)) / 1e9


class ReferenceWorkload:
    """A fixed torch workload (a 3x3 convolution and a matmul, 23 MFLOP) that results are divided by.

    Its calls are short (well under a scheduler time slice) and timed in blocks between a model's timed calls, so
    both medians see the same machine state: the gate's ratio then moves with the model, not with the load.
    """

    def __init__(self, threads: int):
        generator = torch.Generator().manual_seed(0)
        self.threads = threads
        self.x = torch.randn(1, 32, 32, 32, generator=generator)
        self.weight = torch.randn(32, 32, 3, 3, generator=generator)
        self.m = torch.randn(128, 128, generator=generator)

    def __call__(self) -> None:
        torch.nn.functional.conv2d(self.x, self.weight, padding=1)
        torch.mm(self.m, self.m)

    def timings(self, calls: int) -> list[float]:
        with torch_threads(self.threads), torch.inference_mode():
            return _timings(self, calls)


def reference_ms(threads: int, runs: int = REFERENCE_RUNS) -> float:
    """Median time of the reference workload in milliseconds, timed on its own."""
    return statistics.median(ReferenceWorkload(threads).timings(runs)) * 1e3


def _high_water_kib() -> int | None:
    try:
        match = re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text())
    except OSError:
        return None
    return int(match.group(1)) if match else None


class PeakMemory:
    """Peak resident memory of this process while the block runs, in MiB.

    On Linux the high-water mark is reset on entry (`/proc/self/clear_refs`), so the peak belongs to the block
    (plus what the process already held). Elsewhere it is the process's lifetime peak (`ru_maxrss`).
    """

    def __enter__(self) -> PeakMemory:
        with contextlib.suppress(OSError):
            Path("/proc/self/clear_refs").write_text("5")
        return self

    def __exit__(self, *exc: object) -> None:
        kib = _high_water_kib()
        if kib is None:  # ru_maxrss is KiB on Linux, bytes on macOS
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            kib = peak // 1024 if sys.platform == "darwin" else peak
        self.mb = round(kib / 1024, 1)


ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")  # what runtimes pick kernels by
RUNTIME_PACKAGES = {"torch": "torch", "ort": "onnxruntime", "openvino": "openvino", "coreml": "coremltools"}


def host_class(threads: int, backend) -> dict:
    """What a latency ratio depends on besides the model: CPU model, the ISA extensions runtimes choose kernels by
    (OpenVINO computes bf16 where avx512_bf16 / AMX exist), the backend's runtime version and the thread count."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        flags = set(re.search(r"flags\s*:\s*(.+)", Path("/proc/cpuinfo").read_text()).group(1).split())
    except (OSError, AttributeError):
        flags = set()
    try:
        runtime = f"{RUNTIME_PACKAGES[backend.family]} {version(RUNTIME_PACKAGES[backend.family])}"
    except PackageNotFoundError:
        runtime = None
    return {"cpu": cpu_name(), "isa": [f for f in ISA_FLAGS if f in flags], "backend": backend.name,
            "runtime": runtime, "threads": threads}


def cpu_name() -> str:
    try:
        match = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
    except OSError:
        match = None
    return match.group(1).strip() if match else (platform.processor() or platform.machine())
