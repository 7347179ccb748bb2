"""Which layers 8-bit quantization hurts most: each layer quantized alone, in torch, over the calibration set.

Every convolution and linear layer is simulated in int8 on its own (weights symmetric per output channel, its
input and output tensors asymmetric per tensor over the ranges the calibration set reaches, rounded for every
consumer, as the runtimes' QDQ graphs do) while the rest of the model stays fp32, and the model output's relative
L2 error against fp32 is its sensitivity. The pass is cheap
(one forward per layer) and runtime-independent; `--keep-sensitive N` then leaves the N worst layers unquantized in
the ONNX and OpenVINO graphs, found by the module name the exporter records on each graph node (Apple's mixed-bit
palettization and ModelOpt's quantization levels pick per-layer precision the same way).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from compress.types import Record

SENSITIVITY_ROWS = 32  # calibration rows the pass runs on: the ranking is stable well before the whole set
SENSITIVITY_BATCH = 8  # rows per torch forward (the pass runs one forward per batch and layer)
WEIGHTED_OPS = ("Conv", "Gemm", "MatMul")  # ONNX ops that carry a layer's weight


@dataclass(frozen=True)
class LayerSensitivity(Record):
    """Output rel L2 error of the model with only `layer` in simulated int8 (the model's own module name)."""

    layer: str
    kind: str  # Conv2d | Linear
    rel_l2: float


def quantizable_layers(module: nn.Module) -> dict[str, nn.Module]:
    """The convolutions and linear layers whose weights and inputs a runtime quantizes, by module name."""
    return {name: m for name, m in module.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}


def _fake_quant_weight(weight: torch.Tensor) -> torch.Tensor:
    scale = weight.abs().flatten(1).amax(1).clamp_min(1e-12) / 127
    shape = (-1,) + (1,) * (weight.ndim - 1)
    return (weight / scale.view(shape)).round().clamp(-127, 127) * scale.view(shape)


def _fake_quant_input(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    low, high = min(low, 0.0), max(high, 0.0)
    scale = max(high - low, 1e-12) / 255
    zero = round(-low / scale)
    return ((x / scale).round() + zero).clamp(0, 255).sub(zero) * scale


def _quantized_forward(layer: nn.Module, x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    x, weight = _fake_quant_input(x, low, high), _fake_quant_weight(layer.weight)
    if isinstance(layer, nn.Conv2d):
        return layer._conv_forward(x, weight, layer.bias)
    return nn.functional.linear(x, weight, layer.bias)


@torch.no_grad()
def layer_sensitivity(module: nn.Module, batches: list[dict[str, torch.Tensor]]) -> list[LayerSensitivity]:
    """Every quantizable layer's sensitivity on `batches` (model inputs by name), worst first.

    Quantizing a layer rounds, as the runtimes' QDQ graphs do, its weights, its input tensor and its output tensor,
    and a rounded tensor is what *every* consumer then reads: a layer whose input is another module's output has
    that output rounded at its producer (a long skip such as SPAN's first features, which also feed its last
    convolution, is rounded there too), so a layer's score is what its int8 costs in the deployed graph."""
    layers = quantizable_layers(module)
    inputs = [tuple(batch.values()) for batch in batches]
    ranges: dict[str, list[float]] = {}  # "name:in" / "name:out" -> [low, high] over the calibration set
    producers: dict[str, str] = {}  # layer -> the module whose output tensor is that layer's input
    made_by: dict[int, str] = {}  # id(output tensor) -> module, within one forward pass

    def widen(key: str, tensor: torch.Tensor) -> None:
        low, high = float(tensor.min()), float(tensor.max())
        seen = ranges.setdefault(key, [low, high])
        seen[0], seen[1] = min(seen[0], low), max(seen[1], high)

    def before(name: str):
        def hook(_module, args):
            widen(f"{name}:in", args[0])
            if id(args[0]) in made_by:
                producers[name] = made_by[id(args[0])]
        return hook

    def after(name: str):
        def hook(_module, _args, output):
            if isinstance(output, torch.Tensor):
                made_by[id(output)] = name
                if name in layers:
                    widen(f"{name}:out", output)
        return hook

    handles = [m.register_forward_hook(after(name)) for name, m in module.named_modules() if name]
    handles += [layer.register_forward_pre_hook(before(name)) for name, layer in layers.items()]
    try:
        references = []
        for args in inputs:
            references.append(module(*args))
            made_by.clear()
    finally:
        for handle in handles:
            handle.remove()
    modules = dict(module.named_modules())
    reference_norm = torch.cat([r.flatten() for r in references]).norm().clamp_min(1e-12)
    scores = []
    for name, layer in layers.items():
        low, high = ranges[f"{name}:in"]
        out_low, out_high = ranges[f"{name}:out"]
        handles = [layer.register_forward_hook(
            lambda m, args, _out, lo=low, hi=high, olo=out_low, ohi=out_high:
            _fake_quant_input(_quantized_forward(m, args[0], lo, hi), olo, ohi))]
        if name in producers and producers[name] != name:
            handles.append(modules[producers[name]].register_forward_hook(
                lambda _m, _args, out, lo=low, hi=high: _fake_quant_input(out, lo, hi)))
        try:
            error = torch.cat([(module(*args) - ref).flatten() for args, ref in zip(inputs, references, strict=True)])
        finally:
            for handle in handles:
                handle.remove()
        scores.append(LayerSensitivity(name, type(layer).__name__, float(error.norm() / reference_norm)))
    return sorted(scores, key=lambda s: s.rel_l2, reverse=True)


def onnx_nodes_of_layers(onnx_path: Path, layers: list[str]) -> dict[str, list[str]]:
    """The weighted ONNX nodes (Conv, Gemm, MatMul) each layer became, from the module scope torch's exporter
    records on every node (`pkg.torch.onnx.name_scopes`, whose second-to-last entry is the calling module)."""
    import onnx

    wanted = set(layers)
    found: dict[str, list[str]] = {name: [] for name in layers}
    model = onnx.load(str(onnx_path), load_external_data=False)
    for node in model.graph.node:
        if node.op_type not in WEIGHTED_OPS:
            continue
        meta = {p.key: p.value for p in node.metadata_props}
        scopes = ast.literal_eval(meta.get("pkg.torch.onnx.name_scopes", "[]"))
        if len(scopes) >= 2 and scopes[-2] in wanted:
            found[scopes[-2]].append(node.name)
    return found
