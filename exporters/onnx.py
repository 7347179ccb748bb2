"""ONNX through torch's dynamo exporter (`torch.export` -> ONNX), laid out as optimum's ORT pipelines read it.

`--fp16` exports a half-precision copy of the model, so the graph, its weights and its inputs and outputs are
fp16 (what optimum's `--dtype fp16` produces for GPU runtimes). A model over protobuf's 2 GB limit keeps its
weights in `model.onnx_data` next to `model.onnx` (optimum's name for it).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch

from compress.optional import require
from exporters.config import ExportConfig

EXTERNAL_DATA_OVER = int(0.95 * 2 * 1024**3)  # protobuf's 2 GiB file limit, less headroom for the graph itself
EXTERNAL_DATA_SUFFIX = "_data"
ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(int64)": "int64"}


def export_onnx(config: ExportConfig, directory: Path, *, fp16: bool, opset: int, dynamic_batch: bool,
                seed: int) -> list[str]:
    """Write the model; returns the written files relative to `directory`."""
    import onnx_ir

    module = copy.deepcopy(config.module).half() if fp16 else config.module
    dtype = torch.float16 if fp16 else torch.float32
    dynamic_shapes = config.dynamic_shapes()  # a pipeline component declares its own dynamic axes
    batch = config.batch
    # torch.export specialises a dimension traced at size 1, so trace the dynamic axis at >= 2
    if dynamic_batch and dynamic_shapes is None:
        batch = max(2, batch)
        axis = torch.export.Dim("batch")
        dynamic_shapes = tuple({0: axis} for _ in config.inputs)
    args = tuple(config.random_inputs(seed, dtype=dtype, batch=batch).values())
    program = torch.onnx.export(
        module, args, dynamo=True, opset_version=opset, verbose=False, dynamic_shapes=dynamic_shapes,
        input_names=[spec.name for spec in config.inputs], output_names=[spec.name for spec in config.outputs],
    )
    path = directory / config.layout["onnx"]
    path.parent.mkdir(parents=True, exist_ok=True)
    external = config.weight_bytes() // (2 if fp16 else 1) > EXTERNAL_DATA_OVER
    data_name = path.name + EXTERNAL_DATA_SUFFIX
    onnx_ir.save(program.model, path, external_data=data_name if external else None)
    del program
    files = [config.layout["onnx"]]
    return files + [str(Path(config.layout["onnx"]).with_name(data_name))] if external else files


def load_onnx(path: Path) -> Any:
    """An ORT CPU session (ORT reads `model.onnx_data` from the model's folder)."""
    ort = require("onnxruntime", "this export")
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def onnx_signature(session: Any) -> tuple[list[tuple[str, list, str]], list[tuple[str, list, str]]]:
    """(name, shape, dtype) of the inputs and outputs; a dynamic axis shows as -1."""

    def describe(args: list) -> list[tuple[str, list, str]]:
        return [(a.name, [d if isinstance(d, int) else -1 for d in a.shape], ORT_TYPES.get(a.type, a.type))
                for a in args]

    return describe(session.get_inputs()), describe(session.get_outputs())


def run_onnx(session: Any, inputs: dict[str, np.ndarray]) -> np.ndarray:
    return session.run(None, inputs)[0]


def onnx_opset(path: Path) -> int:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next(op.version for op in model.opset_import if op.domain in ("", "ai.onnx"))
