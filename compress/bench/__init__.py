"""Measure latency on real runtimes, estimate it for NPUs we cannot reach, and gate CI on regressions.

    from compress.bench import bench, estimate, gate, list_backends, npu_check, resolve_target

    results = bench(["toy-onnx", "toy-ov"], ["ort-cpu", "ov-cpu"], warmup=5, runs=20, threads=2)
    report = gate(results, "baseline.json", max_regression=0.15)
"""

from compress.lazy import lazy_exports

_EXPORTS = {
    "BACKENDS": "compress.bench.backends",
    "Backend": "compress.bench.backends",
    "BenchResult": "compress.types",
    "DeviceProfile": "compress.bench.estimate",
    "GateReport": "compress.bench.gate",
    "Graph": "compress.bench.graphs",
    "NPU_TARGETS": "compress.bench.npu",
    "NpuReport": "compress.bench.npu",
    "OpCost": "compress.bench.graphs",
    "PROFILES": "compress.bench.estimate",
    "Target": "compress.bench.targets",
    "bench": "compress.bench.runner",
    "estimate": "compress.bench.estimate",
    "gate": "compress.bench.gate",
    "get_profile": "compress.bench.estimate",
    "list_backends": "compress.bench.backends",
    "load_baseline": "compress.bench.gate",
    "markdown": "compress.bench.report",
    "npu_check": "compress.bench.npu",
    "peak_gemm_gflops": "compress.bench.host",
    "plot": "compress.bench.report",
    "reference_ms": "compress.bench.host",
    "resolve_target": "compress.bench.targets",
    "save_baseline": "compress.bench.gate",
    "summarise": "compress.bench.stats",
    "write_results_json": "compress.bench.report",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
