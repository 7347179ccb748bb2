"""Core ML `mlprogram` packages from a `torch.export` program, laid out as Apple's Swift pipeline reads them.

Converting a `torch.export` program of the diffusers UNet works where `torch.jit.trace` failed (DESIGN.md
section 7). Compute precision is fp16 unless `--fp32`; inputs and outputs are fp32 (Core ML casts inside).
`--attention split-einsum` swaps in Apple's Neural Engine attention (exporters/attention.py), `--chunk` writes
`UnetChunk1/2.mlpackage` (exporters/chunks.py) and `--palettize BITS` clusters each weight tensor into 2**BITS
values with k-means (coremltools.optimize.coreml). Core ML runs only on Apple platforms, so elsewhere a package is
checked by reading its specification (exporters/validate.py).
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from compress.errors import CompressError
from compress.optional import require
from exporters.attention import attention_implementation
from exporters.chunks import first_chunk_outputs, split_unet
from exporters.config import ExportConfig, TensorSpec

CHUNK_WEIGHT_LIMIT = 1024**3  # iOS maps at most about 1 GB of weights per model
WEIGHTS_FILE = "Data/com.apple.CoreML/weights/weight.bin"


def coremltools() -> Any:
    """coremltools, without the warnings it logs on import where its native runtime is missing (Linux)."""
    logger = logging.getLogger("coremltools")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        return require("coremltools", "this export")
    finally:
        logger.setLevel(level)


def target_version(name: str) -> int:
    """The specification version a deployment target name stands for (iOS16 -> 7)."""
    return int(getattr(coremltools().target, name))


def check_family(family: str, attention: str, chunk: bool) -> None:
    """The options that depend on the model: attention and chunking are UNet-only."""
    if family != "unet" and (attention != "original" or chunk):
        raise CompressError("--attention and --chunk apply to UNets only")


def chunk_paths(main: str) -> list[str]:
    """Apple's names for the two halves: Unet.mlpackage -> UnetChunk1.mlpackage, UnetChunk2.mlpackage."""
    stem = Path(main).stem
    return [str(Path(main).with_name(f"{stem}Chunk{i}.mlpackage")) for i in (1, 2)]


def _packages(config: ExportConfig, chunk: bool) -> list[tuple[torch.nn.Module, str, list[TensorSpec],
                                                               list[TensorSpec]]]:
    """(module, package path, inputs, outputs) of each package: the whole model, or the two chunks of a UNet."""
    if not chunk:
        return [(config.module, config.layout["coreml"], config.inputs, config.outputs)]
    (first, second), (first_inputs, second_inputs) = split_unet(config.unet, config.inputs)
    first_path, second_path = chunk_paths(config.layout["coreml"])
    return [(first, first_path, first_inputs, first_chunk_outputs(second_inputs)),
            (second, second_path, second_inputs, config.outputs)]


def export_coreml(config: ExportConfig, directory: Path, *, fp16: bool, target: str, attention: str,
                  palettize: int | None, chunk: bool, seed: int) -> list[str]:
    """Convert and save each package; returns the package paths relative to `directory`."""
    ct = coremltools()
    unet = getattr(config, "unet", None)
    with attention_implementation(unet, attention) if unet is not None else contextlib.nullcontext():
        generator = torch.Generator().manual_seed(seed)
        written = []
        for module, name, inputs, outputs in _packages(config, chunk):
            args = tuple(config.draw_input(spec, generator) for spec in inputs)
            program = _aliases_as_clones(torch.export.export(module, args).run_decompositions({}))
            mlmodel = ct.convert(
                program, convert_to="mlprogram", minimum_deployment_target=getattr(ct.target, target),
                compute_precision=ct.precision.FLOAT16 if fp16 else ct.precision.FLOAT32,
                inputs=[ct.TensorType(name=s.name, shape=s.shape, dtype=np.float32) for s in inputs],
                outputs=[ct.TensorType(name=s.name, dtype=np.float32) for s in outputs],
                skip_model_load=True,
            )
            del program
            if palettize is not None:
                mlmodel = _palettize(mlmodel, palettize)
            mlmodel.save(str(directory / name))
            written.append(name)
    return written


def _aliases_as_clones(program: torch.export.ExportedProgram) -> torch.export.ExportedProgram:
    """Turn `aten.alias` nodes, which coremltools cannot convert, into clones (identity in Core ML).

    A block-pruned UNet's pass-through resnet returns `x[:, :C]` with C all channels, a no-op slice that
    decomposes to an alias of its input. The node keeps its name, which the program's signature may refer to.
    """
    for node in program.graph_module.graph.nodes:
        if node.op == "call_function" and node.target is torch.ops.aten.alias.default:
            node.target = torch.ops.aten.clone.default
    program.graph_module.recompile()
    return program


def _palettize(mlmodel: Any, bits: int) -> Any:
    from coremltools.optimize.coreml import OpPalettizerConfig, OptimizationConfig, palettize_weights

    config = OptimizationConfig(global_config=OpPalettizerConfig(mode="kmeans", nbits=bits))
    return palettize_weights(mlmodel, config)


def _ops(block: Any) -> list[str]:
    types = []
    for op in block.operations:
        types.append(op.type)
        for inner in op.blocks:
            types += _ops(inner)
    return types


def read_package(path: Path) -> dict[str, Any]:
    """What a package declares, read from its specification: I/O, versions, op types, weight bytes."""
    ct = coremltools()
    from coremltools.proto.FeatureTypes_pb2 import ArrayFeatureType

    spec = ct.utils.load_spec(str(path))

    def describe(features: Any) -> list[tuple[str, list, str]]:
        return [(f.name, list(f.type.multiArrayType.shape),
                 ArrayFeatureType.ArrayDataType.Name(f.type.multiArrayType.dataType).lower()) for f in features]

    function = spec.mlProgram.functions["main"]
    ops = sorted({t for block in function.block_specializations.values() for t in _ops(block)})
    weights = path / WEIGHTS_FILE
    return {"inputs": describe(spec.description.input), "outputs": describe(spec.description.output),
            "specification_version": spec.specificationVersion, "opset": function.opset, "ops": ops,
            "weight_bytes": weights.stat().st_size if weights.is_file() else 0}


def unavailable_ops(ops: list[str], target: str) -> list[str]:
    """Op types that the deployment target's MIL op set does not define."""
    from coremltools.converters.mil.mil.ops.registry import SSAOpRegistry

    version = target_version(target)
    return [op for op in ops if not any(v <= version for v in SSAOpRegistry.core_ops.get(op, {}))]


def predict_coreml(paths: list[Path], inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run the package(s) in order, each seeing the original inputs plus the previous outputs (macOS only)."""
    ct = coremltools()
    features = dict(inputs)
    for path in paths:
        model = ct.models.MLModel(str(path))
        names = [feature.name for feature in model.get_spec().description.input]  # predict rejects extra keys
        features.update(model.predict({name: features[name] for name in names}))
    return features
