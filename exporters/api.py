"""`export()`: resolve the source, write one format's files atomically, validate, and describe the result."""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from compress.errors import CompressError
from compress.io import atomic_output_dir, check_new_folder, write_json
from compress.types import ExportArtifact
from exporters import coreml, onnx, openvino
from exporters.config import ExportConfig, TensorSpec, load_export_config
from exporters.formats import DEFAULT_FP16, FORMAT_OPTIONS, MIN_OPSET, check_export_options
from exporters.utils import describe_exception, path_size, peak_memory_mb, status
from exporters.validate import REPORT_FILE, ValidationError, make_check, run_checks


def _weights(fp16: bool, options: dict[str, Any]) -> str:
    if options["palettize"] is not None:
        return f"palettized-{options['palettize']}bit"
    if options["int8_weights"]:
        return "int8"
    return "fp16" if fp16 else "fp32"


def write_format(format: str, config: ExportConfig, directory: Path, fp16: bool, seed: int, options: dict[str, Any]
           ) -> list[str]:
    """Run the format's exporter; a converter's own failure becomes one CompressError line (cause chained)."""
    try:
        return _convert(format, config, directory, fp16, seed, options)
    except CompressError:
        raise
    except Exception as exc:  # torch.export, ONNX, OpenVINO and coremltools each raise their own types
        raise CompressError(f"{format} export of {config.name} failed: {describe_exception(exc)}") from exc


def _convert(format: str, config: ExportConfig, directory: Path, fp16: bool, seed: int, options: dict[str, Any]
             ) -> list[str]:
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # tracing notes on shape asserts; shapes are static
        if format == "onnx":
            return onnx.export_onnx(config, directory, fp16=fp16, opset=options["opset"],
                                    dynamic_batch=options["dynamic_batch"], seed=seed)
        if format == "openvino":
            return openvino.export_openvino(config, directory, fp16=fp16, int8_weights=options["int8_weights"],
                                            seed=seed)
        return coreml.export_coreml(config, directory, fp16=fp16, target=options["minimum_deployment_target"],
                                    attention=options["attention"], palettize=options["palettize"],
                                    chunk=options["chunk"], seed=seed)


def write_model_files(config: ExportConfig, format: str, directory: Path, seed: int = 0, fp16: bool | None = None
                      ) -> list[str]:
    """Only the model files of `format` with its default options, unvalidated (what a latency table times)."""
    options = {name: value for defaults in FORMAT_OPTIONS.values() for name, value in defaults.items()}
    check_export_options(format, options)
    return write_format(format, config, directory, DEFAULT_FP16[format] if fp16 is None else fp16, seed, options)


def _io_dtype(spec: TensorSpec, format: str, fp16: bool) -> str:
    """What the runtime's port takes: integers stay integers; an fp16 ONNX graph has fp16 float I/O."""
    if not spec.dtype.is_floating_point:
        return str(spec.dtype).removeprefix("torch.")
    return "float16" if fp16 and format == "onnx" else "float32"


def describe_export(format: str, config: ExportConfig, directory: Path, files: list[str], fp16: bool,
                    options: dict[str, Any], export_seconds: float, peak: float, init: str = "pretrained",
                    seed: int = 0) -> ExportArtifact:
    """The `ExportArtifact` of `config`'s files written in `directory` (not yet validated)."""
    sizes = {name: path_size(directory / name) for name in files}
    return ExportArtifact(
        format=format, model=config.name, family=config.family, directory=str(directory.resolve()), path=files[0],
        files=files, input_names=[s.name for s in config.inputs],
        input_shapes=[s.signature_shape for s in config.inputs],
        input_dtypes=[_io_dtype(s, format, fp16) for s in config.inputs],
        output_names=[s.name for s in config.outputs], output_shapes=[s.signature_shape for s in config.outputs],
        output_dtypes=[_io_dtype(s, format, fp16) for s in config.outputs], fp16=fp16,
        weights=_weights(fp16, options), options=_format_options(format, files, options), file_sizes=sizes,
        total_bytes=sum(sizes.values()), export_seconds=export_seconds, peak_memory_mb=peak, init=init, seed=seed,
        model_info=config.describe(),
    )


def _format_options(format: str, files: list[str], options: dict[str, Any]) -> dict[str, Any]:
    """The options recorded in the report: this format's own, plus what a consumer needs to find the files."""
    recorded = {name: options[name] for name in FORMAT_OPTIONS[format]}
    if format == "onnx":
        recorded["external_data"] = any(f.endswith(onnx.EXTERNAL_DATA_SUFFIX) for f in files)
    elif format == "openvino":
        recorded["validation_precision"] = sorted({"f32", openvino.default_precision()})
    else:
        recorded["packages"] = [f for f in files if f.endswith(".mlpackage")]
    return recorded


def export(
    model: Any,
    format: str,
    out: str | os.PathLike,
    *,
    batch: int = 1,
    height: int | None = None,
    width: int | None = None,
    sequence_length: int | None = None,
    fp16: bool | None = None,
    init: str = "pretrained",
    seed: int = 0,
    validate: bool = True,
    overwrite: bool = False,
    opset: int = MIN_OPSET,
    dynamic_batch: bool = False,
    int8_weights: bool = False,
    minimum_deployment_target: str = "iOS16",
    attention: str = "original",
    palettize: int | None = None,
    chunk: bool = False,
) -> ExportArtifact:
    """Export a UNet or SPAN model (registry name, folder, checkpoint or model object) to one format in `out`.

    `height`/`width` are the model input's size: the latent for a UNet (default: its `sample_size`), the
    low-resolution image for SPAN (default: 256). `fp16` defaults to False for ONNX and OpenVINO and to True
    (compute precision) for Core ML. The folder appears only when the export succeeded; a failed validation
    still writes it (with `export_report.json` saying what failed) and then raises `ValidationError`.
    """
    options = {"opset": opset, "dynamic_batch": dynamic_batch, "int8_weights": int8_weights,
               "minimum_deployment_target": minimum_deployment_target, "attention": attention,
               "palettize": palettize, "chunk": chunk}
    check_export_options(format, options)
    fp16 = DEFAULT_FP16[format] if fp16 is None else fp16
    out = Path(out)
    check_new_folder(out, overwrite)
    config = load_export_config(model, batch=batch, height=height, width=width, sequence_length=sequence_length,
                                init=init, seed=seed)
    if format == "coreml":
        coreml.check_family(config.family, attention, chunk)
    shapes = " ".join(f"{s.name}{list(s.shape)}" for s in config.inputs)
    status(f"exporting {config.name} ({config.family}) to {format}: {shapes}")
    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        started = time.time()
        files = write_format(format, config, tmp, fp16, seed, options)
        export_seconds = round(time.time() - started, 2)
        peak = peak_memory_mb()
        files += config.write_extras(format, tmp)
        artifact = describe_export(format, config, tmp, files, fp16, options, export_seconds, peak, init, seed)
        artifact.directory = str(out.resolve())
        if validate:
            status(f"validating {artifact.path} against torch")
            run_checks(artifact, config, tmp)
            artifact.checks.append(make_check("validation_peak_memory_mb", None, peak_memory_mb()))
        write_json(tmp / REPORT_FILE, artifact.to_dict())
    if artifact.validated is False:
        raise ValidationError(artifact)
    return artifact
