"""Measure latency on real runtimes, estimate it for NPUs we cannot reach, and gate CI on regressions.

    from compress.bench import bench, estimate, gate, list_backends, npu_check, resolve_target

    results = bench(["toy-onnx", "toy-ov"], ["ort-cpu", "ov-cpu"], warmup=5, runs=20, threads=2)
    report = gate(results, "baseline.json", max_regression=0.15)
"""

from compress.bench.backends import BACKENDS, Backend, list_backends
from compress.bench.estimate import PROFILES, DeviceProfile, estimate, get_profile
from compress.bench.gate import GateReport, gate, load_baseline, save_baseline
from compress.bench.graphs import Graph, OpCost
from compress.bench.host import peak_gemm_gflops, reference_ms
from compress.bench.npu import NPU_TARGETS, NpuReport, npu_check
from compress.bench.report import markdown, plot, write_results_json
from compress.bench.runner import bench
from compress.bench.stats import summarise
from compress.bench.targets import Target, resolve_target
from compress.types import BenchResult

__all__ = [
    "BACKENDS",
    "NPU_TARGETS",
    "PROFILES",
    "Backend",
    "BenchResult",
    "DeviceProfile",
    "GateReport",
    "Graph",
    "NpuReport",
    "OpCost",
    "Target",
    "bench",
    "estimate",
    "gate",
    "get_profile",
    "list_backends",
    "load_baseline",
    "markdown",
    "npu_check",
    "peak_gemm_gflops",
    "plot",
    "reference_ms",
    "resolve_target",
    "save_baseline",
    "summarise",
    "write_results_json",
]
