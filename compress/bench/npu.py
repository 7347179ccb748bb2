"""`compress npu-check`: what would keep an exported model off a phone or laptop NPU, found from the graph alone.

Checks, each with the documented rule it applies: static shapes, ops outside the target's documented op list,
tensor ranks and layouts, weight and compute precision, and package size. A "blocker" keeps the model (or part of
it) off the NPU; a "warning" costs speed or needs confirming on the device.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from compress.bench.graphs import Graph
from compress.bench.targets import Target, resolve_target
from compress.errors import CompressError
from compress.types import Record

GIB = 1024**3

# ONNX Runtime QNN Execution Provider, "Supported ONNX operators" (HTP backend):
# https://onnxruntime.ai/docs/execution-providers/QNN-ExecutionProvider.html#supported-onnx-operators
# An op outside this list runs on ORT's CPU provider instead, splitting the graph.
QNN_ONNX_OPS = frozenset({
    "Abs", "Add", "And", "ArgMax", "ArgMin", "Asin", "Atan", "AveragePool", "BatchNormalization", "Cast", "Ceil",
    "Clip", "Concat", "Conv", "ConvTranspose", "Cos", "CumSum", "DepthToSpace", "DequantizeLinear", "Div", "Einsum",
    "Elu", "Equal", "Exp", "Expand", "Flatten", "Floor", "Gather", "GatherElements", "GatherND", "Gelu", "Gemm",
    "GlobalAveragePool", "GlobalMaxPool", "Greater", "GreaterOrEqual", "GridSample", "HardSigmoid", "HardSwish",
    "Identity", "InstanceNormalization", "IsInf", "LayerNormalization", "LeakyRelu", "Less", "LessOrEqual", "Log",
    "LogSoftmax", "LpNormalization", "LRN", "MatMul", "Max", "MaxPool", "Mean", "Min", "Mul", "Neg", "Not",
    "OneHot", "Or", "Pad", "Pow", "PRelu", "QuantizeLinear", "ReduceL2", "ReduceMax", "ReduceMean", "ReduceMin",
    "ReduceProd", "ReduceSum", "Relu", "Reshape", "Resize", "Round", "ScatterND", "Selu", "Sigmoid", "Sign", "Sin",
    "Slice", "Softmax", "SpaceToDepth", "Split", "Sqrt", "Squeeze", "Sub", "Sum", "Tanh", "Tile", "TopK",
    "Transpose", "Unsqueeze", "Where", "Xor"
})

# Core ML ops reported not to run on the Neural Engine (Core ML moves them, and what follows, to the CPU or GPU):
# https://github.com/hollance/neural-engine/blob/master/docs/unsupported-layers.md (RNNs, gather, dilated
# convolutions, custom layers; Apple publishes no official list).
ANE_UNSUPPORTED_OPS = frozenset({
    "lstm", "gru", "rnn", "gather", "gather_nd", "gather_along_axis", "scatter", "scatter_nd", "scatter_along_axis",
    "while_loop", "cond", "non_maximum_suppression", "custom_op"
})

# The OpenVINO NPU plugin compiles static graphs only and has no fallback device ("Dynamic shapes: No",
# "Heterogeneous execution: No"): https://docs.openvino.ai/2025/documentation/compatibility-and-support/
# supported-devices.html. Control flow and data-dependent shapes therefore fail to compile.
INTEL_NPU_UNSUPPORTED_OPS = frozenset({
    "Loop", "If", "TensorIterator", "NonZero", "NonMaxSuppression", "Unique", "Bucketize", "ReadValue", "Assign"
})


@dataclass(frozen=True)
class NpuTarget:
    name: str
    title: str
    formats: tuple[str, ...]  # graph formats the checks read
    export_hint: str
    wants: str  # the weight and compute precisions the NPU runs at full rate
    package_limit: int | None = None  # bytes per package


NPU_TARGETS = {t.name: t for t in (
    NpuTarget("ane", "Apple Neural Engine (Core ML)", ("coreml",), "compress export --format coreml",
              "fp16 compute (the ANE has no fp32), weights fp16 or palettized", package_limit=GIB),
    NpuTarget("qnn", "Qualcomm Hexagon HTP (ONNX Runtime QNN EP)", ("onnx",), "compress export --format onnx",
              "int8/int16 QDQ-quantised (fp16 on v73+ HTPs)"),
    NpuTarget("intel-npu", "Intel NPU (OpenVINO)", ("openvino", "onnx"), "compress export --format openvino",
              "fp16 or int8 weights (fp32 is compiled to fp16)"),
)}


@dataclass
class NpuReport(Record):
    artifact: str
    target: str
    format: str
    findings: list[dict] = field(default_factory=list)  # check, severity (ok | warning | blocker), detail, remedy

    @property
    def blockers(self) -> list[dict]:
        return [f for f in self.findings if f["severity"] == "blocker"]

    def add(self, check: str, severity: str, detail: str, remedy: str = "") -> None:
        self.findings.append({"check": check, "severity": severity, "detail": detail, "remedy": remedy})

    def text(self) -> str:
        lines = [f"npu-check {self.artifact} --target {self.target} ({NPU_TARGETS[self.target].title})"]
        for f in self.findings:
            lines.append(f"  [{f['severity']}] {f['check']}: {f['detail']}" + (f" -> {f['remedy']}" if f["remedy"]
                                                                                  else ""))
        verdict = (f"{len(self.blockers)} blocker(s) keep this model off the NPU" if self.blockers
                   else "nothing found that keeps this model off the NPU")
        return "\n".join(lines + [verdict])


def _check_shapes(report: NpuReport, graph: Graph) -> None:
    dynamic = [i.name for i in graph.inputs if i.dynamic]
    dynamic_ops = sum("dynamic" in op.flags for op in graph.ops)
    if dynamic or dynamic_ops:
        report.add("static shapes", "blocker",
                   f"dynamic inputs {dynamic or '-'}, {dynamic_ops} ops with dynamic shapes; NPUs compile one shape",
                   "export with fixed shapes (no --dynamic-batch)")
    else:
        omitted = [op.type for op in graph.ops if "omitted-input" in op.flags]
        note = (f" ({len(omitted)} {'/'.join(sorted(set(omitted)))} op(s) leave an optional input out, e.g. "
                "Resize's roi; ONNX Runtime's check_onnx_model_mobile_usability counts each as a node whose input "
                "has a dynamic shape)") if omitted else ""
        report.add("static shapes", "ok", "every input and op shape is static" + note)


def _check_ops(report: NpuReport, graph: Graph, npu: NpuTarget) -> None:
    types = set(graph.op_counts)
    if npu.name == "qnn":
        bad = sorted(types - QNN_ONNX_OPS)
        remedy = "these run on ORT's CPU provider; rewrite them with listed ops or fold them before export"
    elif npu.name == "ane":
        bad = sorted(types & ANE_UNSUPPORTED_OPS)
        remedy = "replace them (e.g. gather by a matmul with one-hot weights) or run that part elsewhere"
    else:
        bad = sorted(types & INTEL_NPU_UNSUPPORTED_OPS)
        remedy = "the NPU plugin has no fallback: remove control flow and data-dependent shapes"
    if bad:
        listed = ", ".join(f"{op} x{graph.op_counts[op]}" for op in bad)
        report.add("supported ops", "blocker", f"ops outside {npu.title}'s documented list: {listed}", remedy)
    else:
        report.add("supported ops", "ok", f"all {len(types)} op types are in the documented list")
    dilated = sum("dilated" in op.flags for op in graph.ops)
    if dilated and npu.name == "ane":
        report.add("dilated convolutions", "blocker", f"{dilated} dilated convolutions (reported to leave the ANE)",
                   "use undilated kernels")


def _check_layout(report: NpuReport, graph: Graph, npu: NpuTarget) -> None:
    high = [op for op in graph.ops if op.rank > 4]
    if any(op.rank > 5 for op in high):
        report.add("tensor rank", "blocker", f"{sum(op.rank > 5 for op in high)} ops on tensors of rank > 5",
                   "reshape to at most 4 dimensions")
    elif high:
        report.add("tensor rank", "warning", f"{len(high)} ops on rank-5 tensors; NPU kernels are built for 4-D",
                   "reshape to 4 dimensions (N, C, H, W)")
    else:
        report.add("tensor rank", "ok", "every tensor has rank <= 4")
    if npu.name == "ane" and graph.op_counts.get("matmul") and not graph.op_counts.get("einsum"):
        report.add("attention layout", "warning",
                   f"{graph.op_counts['matmul']} matmuls on (B, S, C) tensors; Apple's ANE guidance is (B, C, 1, S) "
                   "tensors with split-einsum attention",
                   "export with --attention split-einsum")


def _check_precision(report: NpuReport, graph: Graph, npu: NpuTarget) -> None:
    total = sum(graph.weight_bytes.values())
    fp32 = graph.weight_bytes.get("float32", 0)
    compute_fp32 = sum(op.dtype == "float32" for op in graph.ops)
    share = compute_fp32 / len(graph.ops) if graph.ops else 0.0
    if npu.name == "ane" and share > 0.5:
        report.add("precision", "blocker", f"{share:.0%} of ops compute in fp32; the ANE computes fp16 only",
                   "export with fp16 compute precision (the Core ML default)")
    elif total and fp32 / total > 0.5:
        severity = "blocker" if npu.name == "ane" else "warning"
        report.add("precision", severity, f"{fp32 / total:.0%} of {total / 2**20:.1f} MiB of weights are fp32; "
                   f"the NPU wants {npu.wants}", "store fp16 weights, or quantise to int8 (NNCF / ORT QDQ)")
    else:
        report.add("precision", "ok", "weights by dtype: " + ", ".join(
            f"{dtype} {size / 2**20:.1f} MiB" for dtype, size in sorted(graph.weight_bytes.items())))


def _check_size(report: NpuReport, target: Target, npu: NpuTarget) -> None:
    if npu.package_limit is None:
        return
    sizes = {path.name: sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) for path in target.paths}
    over = {name: size for name, size in sizes.items() if size > npu.package_limit}
    if over:
        listed = ", ".join(f"{name} {size / GIB:.2f} GiB" for name, size in over.items())
        report.add("package size", "blocker", f"{listed} over the {npu.package_limit / GIB:.0f} GiB iOS limit",
                   "export with --chunk (two packages) and/or --palettize 6")
    else:
        report.add("package size", "ok", ", ".join(f"{n} {s / 2**20:.1f} MiB" for n, s in sizes.items()))


def npu_check(artifact: str | os.PathLike | Target, target: str) -> NpuReport:
    """Inspect an exported model for what would keep it off the NPU `target` (ane, qnn or intel-npu)."""
    try:
        npu = NPU_TARGETS[target]
    except KeyError:
        raise CompressError(f"unknown NPU target {target!r}; choose one of {', '.join(NPU_TARGETS)}") from None
    resolved = artifact if isinstance(artifact, Target) else resolve_target(artifact)
    if resolved.format not in npu.formats:
        raise CompressError(f"--target {target} checks a {' or '.join(npu.formats)} artifact, and {resolved.name} "
                            f"is {resolved.format}; make one with `{npu.export_hint}`")
    graph = resolved.graph()
    report = NpuReport(resolved.location, target, resolved.format)
    _check_shapes(report, graph)
    _check_ops(report, graph, npu)
    _check_layout(report, graph, npu)
    _check_precision(report, graph, npu)
    _check_size(report, resolved, npu)
    return report
