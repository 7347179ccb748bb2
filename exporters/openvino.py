"""OpenVINO IR (`.xml` + `.bin`) converted from a `torch.export` program, laid out as optimum-intel reads it.

Measured on the full SD-v1.4 UNet at a 64x64 latent here (2 cores), to IR on disk: `torch.export` program ->
`openvino.convert_model` 27 s; OpenVINO's default torch path (it traces with `torch.jit.trace`, deprecated in
torch 2.13) 142 s; our ONNX export plus converting that 41 + 15 s. All three agree with torch to rel L2 2.4e-6.
`--fp16` stores the weights in fp16 (`compress_to_fp16`, decompressed by the runtime); `--int8-weights`
compresses the weights of matmuls and convolutions to int8 with NNCF (data-free, per-channel asymmetric), as
optimum-intel does by default for models over 1B parameters. Inputs and outputs stay fp32.

Validation runs twice where the CPU's default differs from f32: pinned to `INFERENCE_PRECISION_HINT=f32`, which
checks the export against torch at the weights' limit, and at the runtime's default (bf16 on CPUs with
avx512_bf16 / AMX), which is what users and `compress bench` run, against its own, looser limit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from compress.optional import require
from exporters.config import ExportConfig
from exporters.formats import MIN_OPSET

DEVICE = "CPU"


def export_openvino(config: ExportConfig, directory: Path, *, fp16: bool, int8_weights: bool, seed: int
                    ) -> list[str]:
    """Write `.xml` + `.bin`; returns the written files relative to `directory`."""
    ov = require("openvino", "this export")
    if config.dynamic_shapes() is not None:
        model = _convert_through_onnx(ov, config, seed)
    else:
        program = torch.export.export(config.module, tuple(config.random_inputs(seed).values()))
        model = ov.convert_model(program, input=[ov.PartialShape(list(spec.shape)) for spec in config.inputs])
        del program
    name_ports(model, config)
    if int8_weights:
        model = require("nncf", "this export").compress_weights(model)
    path = directory / config.layout["openvino"]
    path.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(path), compress_to_fp16=fp16)
    return [config.layout["openvino"], str(Path(config.layout["openvino"]).with_suffix(".bin"))]


def name_ports(model: Any, config: ExportConfig) -> None:
    """The contract's input and output names on the IR's ports (the converters name them after traced tensors)."""
    for port, spec in zip(model.inputs, config.inputs, strict=True):
        port.get_tensor().set_names({spec.name})
    for port, spec in zip(model.outputs, config.outputs, strict=True):
        port.get_tensor().set_names({spec.name})


def _convert_through_onnx(ov: Any, config: ExportConfig, seed: int) -> Any:
    """A model with dynamic axes, converted from its ONNX export: `torch.export.export` of the UNet with a dynamic
    batch adds a guard (batch <= 63) it then reports as a constraint violation, which the ONNX exporter's
    torch.export call does not; converting the ONNX file keeps every dynamic axis."""
    import tempfile

    from exporters.onnx import export_onnx

    with tempfile.TemporaryDirectory() as tmp:
        files = export_onnx(config, Path(tmp), fp16=False, opset=MIN_OPSET, dynamic_batch=False, seed=seed)
        return ov.convert_model(str(Path(tmp) / files[0]))


def load_openvino(path: Path, precision: str | None = "f32") -> Any:
    """A compiled CPU model; `precision=None` keeps the runtime's default inference precision."""
    ov = require("openvino", "this export")
    properties = {"INFERENCE_PRECISION_HINT": precision} if precision else {}
    return ov.Core().compile_model(str(path), DEVICE, properties)


def default_precision() -> str:
    ov = require("openvino", "this export")
    return ov.Core().get_property(DEVICE, "INFERENCE_PRECISION_HINT").get_type_name()


def openvino_signature(compiled: Any) -> tuple[list[tuple[frozenset[str], list, str]],
                                                list[tuple[frozenset[str], list, str]]]:
    """(names, shape, dtype) of the inputs and outputs. A port has a set of names: compiling can merge the names of
    tensors it fuses into it (a batch-2 UNet's timestep port reads {'timestep', 'expand:0', '582'}), and any of them
    addresses it."""

    def describe(ports: list) -> list[tuple[frozenset[str], list, str]]:
        return [(frozenset(p.get_names()), [d.get_length() if d.is_static else -1 for d in p.get_partial_shape()],
                 p.get_element_type().to_dtype().name) for p in ports]

    return describe(compiled.inputs), describe(compiled.outputs)


def run_openvino(compiled: Any, inputs: dict[str, np.ndarray]) -> np.ndarray:
    return compiled(inputs)[compiled.output(0)]
