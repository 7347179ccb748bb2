"""`quantize()`: a calibrated 8-bit graph for OpenVINO, ONNX Runtime or Core ML, checked by tensors and by the task.

One path for every format: the model is exported to fp32 ONNX (torch's exporter records each node's module, which
maps layers to graph nodes), calibrated on inputs from its own sampling (exporters/calibration.py), optionally
searched for sensitive layers (exporters/sensitivity.py), then quantized by the runtime's own tool:

    openvino  w8a8    nncf.quantize on the IR converted from that ONNX; UNets as ModelType.TRANSFORMER, which
                      applies SmoothQuant (alpha 0.95) to matmuls; fast bias correction
              hybrid  optimum-intel's SD recipe: int8 weights only for matmuls with weights, then w8a8 for the rest
                      (convolutions and activation matmuls), SmoothQuant off
              w8      nncf.compress_weights (int8 weights, data-free)
    onnx      w8a8    onnxruntime's quantize_static: QDQ, per-channel int8 weights, uint8 activations (MinMax)
              w8      int8 weights with a DequantizeLinear each (per output channel, symmetric): a quarter of the
                      file; onnxruntime folds them back to fp32 when it loads, so it computes as fp32
    coreml    w8      coremltools.optimize linear_quantize_weights (int8, per channel), from the same torch model
              w8a8    linear_quantize_activations (iOS17+), which runs the model to calibrate: macOS only

The artifact is validated on fresh calibration-distributed inputs (another seed) against the fp32 torch model, and,
for the toy and SPAN, by the task metric through the runtime against the fp32 torch model's: toy `fd` (mean over
seeds) within `FD_RATIO_LIMITS` and `class_accuracy` no more than 0.02 lower; SPAN Y-PSNR on the held-out split no
more than 0.1 dB lower. A miss writes the folder with the report saying by how much and raises ValidationError.
"""

from __future__ import annotations

import copy
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from compress.errors import CompressError
from compress.evaluate.defaults import DEFAULT_SEEDS, check_seeds
from compress.io import atomic_output_dir, check_new_folder, write_json
from compress.optional import require
from compress.types import ExportArtifact
from exporters import openvino
from exporters.api import describe_export, write_format
from exporters.calibration import CalibrationSet, span_calibration, unet_calibration
from exporters.config import ExportConfig, SpanExportConfig, load_export_config
from exporters.formats import DEFAULT_QUANT_SAMPLES, FORMAT_OPTIONS, MIN_OPSET, TASK_SAMPLES, check_quantize_options
from exporters.onnx import EXTERNAL_DATA_SUFFIX, export_onnx
from exporters.sensitivity import (
    SENSITIVITY_BATCH,
    SENSITIVITY_ROWS,
    layer_sensitivity,
    onnx_nodes_of_layers,
    quantizable_layers,
)
from exporters.utils import describe_exception, peak_memory_mb, status
from exporters.validate import REPORT_FILE, ValidationError, make_check, run_checks

VALIDATION_BATCHES = 4  # fresh calibration-distributed batches the tensor check runs
SPAN_CROP = 64  # low-resolution calibration crop; the SPAN graph is exported with dynamic sizes, traced here
FD_RATIO_LIMITS = {"openvino": 1.10, "onnx": 1.15, "coreml": 1.15}  # quantized fd / fp32 torch fd, means
ACCURACY_DROP_LIMIT = 0.02
PSNR_DROP_LIMIT_DB = 0.1
WEIGHTS = {"w8a8": "int8-w8a8", "hybrid": "int8-hybrid", "w8": "int8"}  # ExportArtifact.weights by mode


def quantize(
    model: Any,
    format: str,
    out: str | os.PathLike,
    *,
    mode: str = "w8a8",
    samples: int = DEFAULT_QUANT_SAMPLES,
    seed: int = 0,
    keep_sensitive: int = 0,
    data: str | os.PathLike | None = None,
    steps: int | None = None,
    batch: int = 1,
    height: int | None = None,
    width: int | None = None,
    dynamic_batch: bool = False,
    init: str = "pretrained",
    task_check: bool = True,
    task_samples: int = TASK_SAMPLES,
    task_seeds: Sequence[int] = DEFAULT_SEEDS,
    overwrite: bool = False,
) -> ExportArtifact:
    """Quantize a UNet (toy, SD, pruned, distilled) or SPAN to 8 bits in `out` and validate it.

    `samples` calibration rows come from the model's own sampling at `steps` (default: 4 LCM steps for a
    consistency student, 25 for a teacher) or, for SPAN, from crops of `data` (default: the shipped training
    split), drawn with `seed`. `keep_sensitive` leaves that many of the most sensitive layers unquantized.
    `height` and `width`: a UNet's latent size (default: its sample_size), which calibration samples at too.
    Raises ValidationError (folder written) when the tensor or the task check misses its limit.
    """
    check_quantize_options(format, mode, samples, keep_sensitive, None if data is None else str(data))
    task_seeds = check_seeds(task_seeds)
    out = Path(out)
    check_new_folder(out, overwrite)
    source, config = _load(model, batch, height, width, init, seed)
    layers = quantizable_layers(config.module)
    if keep_sensitive > len(layers):
        raise CompressError(f"--keep-sensitive {keep_sensitive} is more than the {len(layers)} quantizable layers "
                            f"(convolutions and linear layers) of {config.name}")
    started = time.time()
    status(f"calibrating {config.name}: {samples} rows, seed {seed}")
    calibration = _calibration(source, config, samples, seed, data, steps)
    fresh = _calibration(source, config, VALIDATION_BATCHES * config.batch, seed + 1, data, steps)
    calibration_seconds = round(time.time() - started, 2)
    sensitivity = []
    if keep_sensitive:
        status(f"sensitivity pass over {len(layers)} layers")
        sensitivity = layer_sensitivity(config.module, calibration.batches(SENSITIVITY_BATCH)[
            :SENSITIVITY_ROWS // SENSITIVITY_BATCH])
    kept = [s.layer for s in sensitivity[:keep_sensitive]]
    options = {name: value for defaults in FORMAT_OPTIONS.values() for name, value in defaults.items()}
    options["dynamic_batch"] = dynamic_batch
    if format == "coreml" and mode == "w8a8":
        options["minimum_deployment_target"] = "iOS17"  # linear quantization of activations needs iOS17
    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        started = time.time()
        files, excluded = _write_quantized(format, mode, config, tmp, calibration, kept, seed, options)
        export_seconds = round(time.time() - started, 2)
        files += config.write_extras(format, tmp)
        artifact = describe_export(format, config, tmp, files, False, options, export_seconds, peak_memory_mb(),
                                   init, seed)
        artifact.directory = str(out.resolve())
        artifact.weights = WEIGHTS[mode]
        artifact.quantization = {
            "mode": mode, "calibration": calibration.info, "calibration_seconds": calibration_seconds,
            "validation_inputs": fresh.info, "kept_layers": [s.to_dict() for s in sensitivity[:keep_sensitive]],
            "excluded_nodes": excluded, "sensitivity": [s.to_dict() for s in sensitivity],
            "tool": _tool(format, mode)}
        config.validation_inputs = [(f"calibration{i}_", b) for i, b in enumerate(fresh.batches(config.batch))]
        status(f"validating {artifact.path} on fresh calibration inputs")
        run_checks(artifact, config, tmp)
        write_json(tmp / REPORT_FILE, artifact.to_dict())  # the task check loads the folder through its report
        if task_check:  # also after a missed tensor limit: the report then says what it costs the task
            checks, artifact.quantization["task"] = _task_checks(format, source, tmp, task_samples, task_seeds,
                                                                 steps)
            artifact.checks += checks
            if any(c["passed"] is False for c in checks):
                artifact.validated = False
        write_json(tmp / REPORT_FILE, artifact.to_dict())
    if artifact.validated is False:
        raise ValidationError(artifact)
    return artifact


def _load(model: Any, batch: int, height: int | None, width: int | None, init: str, seed: int
          ) -> tuple[Any, ExportConfig]:
    """The model object and its export config; SPAN gets dynamic batch and image sizes."""
    from compress.models.resolve import create
    from compress.sr import SPAN, deploy_model

    source = create(model, init=init, seed=seed) if isinstance(model, (str, os.PathLike)) else model
    if isinstance(source, SPAN):
        name = str(model) if isinstance(model, (str, os.PathLike)) else f"span-x{source.scale}"
        return source, SpanExportConfig(deploy_model(source), name, max(2, batch), SPAN_CROP, SPAN_CROP, dynamic=True)
    return source, load_export_config(source, batch=batch, height=height, width=width, seed=seed)


def _calibration(source: Any, config: ExportConfig, samples: int, seed: int, data: str | os.PathLike | None,
                 steps: int | None) -> CalibrationSet:
    if config.family == "span":
        return span_calibration(config.scale, SPAN_CROP, samples, seed, data)
    if data is not None:
        raise CompressError("--data applies to SPAN; a UNet is calibrated on its own sampling trajectories")
    calibration = unet_calibration(source, config.inputs[0].shape[1:], samples, seed, steps)
    sequence = config.inputs[2].shape[1]
    if calibration.rows[0]["encoder_hidden_states"].shape[1] != sequence:
        raise CompressError(f"the calibration conditioning has {calibration.rows[0]['encoder_hidden_states'].shape[1]} "
                            f"tokens, the export {sequence}")
    return calibration


def _tool(format: str, mode: str) -> str:
    if format == "openvino":
        return f"nncf {require('nncf').__version__}, openvino {require('openvino').get_version()}"
    if format == "onnx":
        return f"onnxruntime.quantization {require('onnxruntime').__version__}" if mode == "w8a8" else "compress"
    return f"coremltools {require('coremltools').__version__}"


def _write_quantized(format: str, mode: str, config: ExportConfig, directory: Path, calibration: CalibrationSet,
                     kept: list[str], seed: int, options: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The quantized model files (relative to `directory`) and the graph nodes left unquantized."""
    try:
        if format == "coreml":
            return _coreml(mode, config, directory, calibration, seed, options), []
        with tempfile.TemporaryDirectory() as scratch, torch.no_grad():
            onnx_files = export_onnx(config, Path(scratch), fp16=False, opset=MIN_OPSET,
                                     dynamic_batch=options["dynamic_batch"], seed=seed)
            fp32 = Path(scratch) / onnx_files[0]
            nodes = onnx_nodes_of_layers(fp32, kept)
            unmapped = [layer for layer, found in nodes.items() if not found]
            if unmapped:
                raise CompressError(f"layers {unmapped} have no weighted node in the exported graph")
            excluded = [name for found in nodes.values() for name in found]
            batches = [{k: v.numpy() for k, v in b.items()} for b in calibration.batches(config.batch)]
            target = directory / config.layout[format]
            target.parent.mkdir(parents=True, exist_ok=True)
            if format == "onnx":
                _onnx(mode, fp32, target, batches, excluded, Path(scratch))
                return [config.layout["onnx"]], excluded
            _openvino(mode, config, fp32, target, batches, excluded)
            return [config.layout["openvino"], str(Path(config.layout["openvino"]).with_suffix(".bin"))], \
                [f"{name} (onnx)" for name in excluded]
    except CompressError:
        raise
    except Exception as exc:  # nncf, onnxruntime and coremltools raise their own types
        raise CompressError(f"{format} {mode} quantization of {config.name} failed: {describe_exception(exc)}") \
            from exc


def _openvino(mode: str, config: ExportConfig, onnx_path: Path, target: Path, batches: list[dict[str, np.ndarray]],
              excluded: list[str]) -> None:
    ov, nncf = require("openvino", "openvino quantization"), require("nncf", "openvino quantization")
    model = ov.convert_model(str(onnx_path))
    openvino.name_ports(model, config)
    # the IR's ops carry their ONNX node's name, a suffix after "/" for the pieces one node became
    ignored = [op.get_friendly_name() for op in model.get_ops() if op.get_friendly_name().split("/")[0] in excluded]
    scope = nncf.IgnoredScope(names=ignored, validate=False)
    dataset = nncf.Dataset(batches)
    transformer = nncf.ModelType.TRANSFORMER if config.family == "unet" else None
    if mode == "w8":
        model = nncf.compress_weights(model, ignored_scope=scope)
    elif mode == "w8a8":
        model = nncf.quantize(model, dataset, subset_size=len(batches), model_type=transformer, ignored_scope=scope)
    else:  # hybrid, as optimum-intel: weight-only for matmuls with a constant operand, full int8 for the rest
        matmuls = [op.get_friendly_name() for op in model.get_ops() if op.get_type_name() == "MatMul"
                   and any(_reaches_constant(value.get_node()) for value in op.input_values())]
        model = nncf.compress_weights(model, ignored_scope=nncf.IgnoredScope(
            names=ignored, types=["Convolution"], validate=False))
        advanced = nncf.AdvancedQuantizationParameters(
            smooth_quant_alphas=nncf.AdvancedSmoothQuantParameters(matmul=-1))
        model = nncf.quantize(model, dataset, subset_size=len(batches), model_type=transformer,
                              ignored_scope=nncf.IgnoredScope(names=ignored + matmuls, validate=False),
                              advanced_parameters=advanced)
    ov.save_model(model, str(target), compress_to_fp16=False)


def _reaches_constant(node: Any) -> bool:
    """A MatMul operand that is a weight: a Constant, possibly behind Convert / Reshape / FakeQuantize."""
    while node.get_type_name() in ("Convert", "Reshape", "FakeQuantize") and node.inputs():
        node = node.input_value(0).get_node()
    return node.get_type_name() == "Constant"


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over the calibration batches, with the `__len__` and
    `set_range` its strided MinMax calibration reads them by."""

    def __init__(self, batches: list[dict[str, np.ndarray]]):
        self.batches = batches
        self.items = iter(batches)

    def __len__(self) -> int:
        return len(self.batches)

    def set_range(self, start_index: int, end_index: int) -> None:
        self.items = iter(self.batches[start_index:end_index])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.items, None)


def _onnx(mode: str, source: Path, target: Path, batches: list[dict[str, np.ndarray]], excluded: list[str],
          scratch: Path) -> None:
    if mode == "w8":
        _dequantized_weights(source, target, excluded)
        return
    import onnx

    quantization = require("onnxruntime.quantization", "onnx quantization")
    prepared = scratch / "prepared.onnx"
    # an fp32 model over protobuf's 2 GB (SD's UNet) is read and written with its weights in a side file
    large = source.with_name(source.name + EXTERNAL_DATA_SUFFIX).exists()
    # shape inference only: the optimizer would rename the nodes that --keep-sensitive excludes by name
    quantization.quant_pre_process(str(source), str(prepared), skip_optimization=True, save_as_external_data=large,
                                   all_tensors_to_one_file=True)
    quantized = scratch / "quantized.onnx"
    quantization.quantize_static(
        str(prepared), str(quantized), _Reader(batches), quant_format=quantization.QuantFormat.QDQ,
        per_channel=True, activation_type=quantization.QuantType.QUInt8, weight_type=quantization.QuantType.QInt8,
        op_types_to_quantize=["Conv", "Gemm", "MatMul"], nodes_to_exclude=excluded,
        calibrate_method=quantization.CalibrationMethod.MinMax, use_external_data_format=large,
        # ranges folded in batch by batch: keeping every batch's intermediate tensors (SD's 4096 x 4096 attention
        # maps among them) until the end does not fit in memory; min and max fold to the same ranges
        extra_options={"CalibStridedMinMax": 1})
    onnx.save(onnx.load(str(quantized)), str(target))  # int8 weights fit in one file (SD's UNet: 0.9 GB)


def _dequantized_weights(source: Path, target: Path, excluded: list[str]) -> None:
    """Store each Conv / Gemm / MatMul weight as int8 with a per-output-channel scale and a DequantizeLinear node."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(source))
    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    consumers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            consumers[name] = consumers.get(name, 0) + 1
    added = []
    for node in graph.node:
        if node.op_type not in ("Conv", "Gemm", "MatMul") or node.name in excluded or len(node.input) < 2:
            continue
        name = node.input[1]
        init = initializers.get(name)
        if init is None or consumers[name] != 1 or init.data_type != onnx.TensorProto.FLOAT or len(init.dims) < 2:
            continue
        weight = numpy_helper.to_array(init)
        transposed = node.op_type == "Gemm" and any(a.name == "transB" and a.i for a in node.attribute)
        axis = 0 if node.op_type == "Conv" or transposed else weight.ndim - 1  # the output channel
        reduce = tuple(i for i in range(weight.ndim) if i != axis)
        scale = (np.abs(weight).max(axis=reduce) / 127).clip(min=1e-12).astype(np.float32)
        shape = [1] * weight.ndim
        shape[axis] = -1
        quantized = np.clip(np.round(weight / scale.reshape(shape)), -127, 127).astype(np.int8)
        graph.initializer.remove(init)
        graph.initializer.extend([numpy_helper.from_array(quantized, f"{name}_int8"),
                                  numpy_helper.from_array(scale, f"{name}_scale")])
        added.append(helper.make_node("DequantizeLinear", [f"{name}_int8", f"{name}_scale"], [name], axis=axis,
                                      name=f"{name}_dequantize"))
    for node in reversed(added):
        graph.node.insert(0, node)
    onnx.save(model, str(target))


def _coreml(mode: str, config: ExportConfig, directory: Path, calibration: CalibrationSet, seed: int,
            options: dict[str, Any]) -> list[str]:
    """The fp32 Core ML package, then coremltools' int8 weight quantization (and activations on macOS)."""
    ct = require("coremltools", "coreml quantization")
    files = write_format("coreml", config, directory, False, seed, options)
    package = directory / files[0]
    model = ct.models.MLModel(str(package), skip_model_load=sys.platform != "darwin")
    weights = ct.optimize.coreml.OptimizationConfig(global_config=ct.optimize.coreml.OpLinearQuantizerConfig(
        mode="linear_symmetric", dtype="int8", granularity="per_channel"))
    if mode == "w8a8":  # runs the model on the calibration set: check_quantize_options allows it on macOS only
        activations = ct.optimize.coreml.OptimizationConfig(global_config=ct.optimize.coreml.experimental.
                                                            OpActivationLinearQuantizerConfig(mode="linear_symmetric"))
        samples = [{k: v.numpy() for k, v in b.items()} for b in calibration.batches(config.batch)]
        model = ct.optimize.coreml.experimental.linear_quantize_activations(model, activations, samples)
    model = ct.optimize.coreml.linear_quantize_weights(model, weights)
    shutil.rmtree(package)
    model.save(str(package))
    return files


def _task_checks(format: str, source: Any, directory: Path, samples: int, seeds: tuple[int, ...],
                 steps: int | None) -> tuple[list[dict], dict[str, Any]]:
    """The task metric through the runtime against the fp32 torch model's (toy fd and accuracy, SPAN Y-PSNR): the
    checks, and both models' results for the report."""
    from compress.models.loading import DiffusionModel
    from compress.sr import SPAN

    if format == "coreml" and sys.platform != "darwin":
        return [make_check("task_metric", None, detail="not run: Core ML prediction needs macOS")], {}
    if isinstance(source, SPAN):
        return _span_task_checks(source, directory)
    if isinstance(source, DiffusionModel) and source.conditioner is not None:
        return _toy_task_checks(format, source, directory, samples, seeds, steps)
    return [make_check("task_metric", None, detail="none for this model (the toy's fd and SPAN's PSNR are the task "
                                                   "metrics; an SD UNet is checked by tensors only)")], {}


def _toy_task_checks(format: str, source: Any, directory: Path, samples: int, seeds: tuple[int, ...],
                     steps: int | None) -> tuple[list[dict], dict[str, Any]]:
    from compress.evaluate import evaluate
    from exporters.calibration import sampling_defaults

    steps, sampler, guidance = sampling_defaults(source, steps, None, None)
    settings = {"steps": steps, "sampler": sampler, "guidance": guidance, "samples": samples, "seeds": seeds}
    status(f"task check: fd of the fp32 torch model and of the export, {samples} samples x {len(seeds)} seeds, "
           f"{steps} {sampler} steps")
    reference = evaluate(source, **settings)
    quantized = evaluate(directory, **settings)
    ratio, drop = quantized.fd / reference.fd, reference.class_accuracy - quantized.class_accuracy
    accuracy = f"class_accuracy {quantized.class_accuracy:.3f} vs fp32 torch {reference.class_accuracy:.3f}"
    detail = (f"fd {quantized.fd:.2f} ± {quantized.fd_std:.2f} vs fp32 torch {reference.fd:.2f} ± "
              f"{reference.fd_std:.2f} ({quantized.runtime}, {quantized.precision})")
    return [make_check("task_fd_ratio", bool(ratio <= FD_RATIO_LIMITS[format]), ratio, FD_RATIO_LIMITS[format],
                       detail),
            make_check("task_class_accuracy_drop", bool(drop <= ACCURACY_DROP_LIMIT), drop, ACCURACY_DROP_LIMIT,
                       accuracy)], \
        {"metric": "fd", "fp32": reference.to_dict(), "quantized": quantized.to_dict()}


def _span_task_checks(source: Any, directory: Path) -> tuple[list[dict], dict[str, Any]]:
    from compress.sr.evaluate import evaluate_images
    from compress.sr.files import split_images

    images = split_images("test")
    reference = evaluate_images(copy.deepcopy(source), images)
    quantized = evaluate_images(directory, images)
    drop = reference.psnr - quantized.psnr
    detail = f"Y-PSNR {quantized.psnr:.3f} dB vs fp32 torch {reference.psnr:.3f} dB on the held-out split"
    return [make_check("task_psnr_drop_db", bool(drop <= PSNR_DROP_LIMIT_DB), drop, PSNR_DROP_LIMIT_DB, detail)], \
        {"metric": "y_psnr", "fp32": asdict(reference), "quantized": asdict(quantized)}
