"""An exported UNet, run by its runtime where the sampling loop calls a diffusers UNet.

`compress eval` and `compress sample` use it on a folder `compress export` or `compress quantize` wrote (and
`compress sr eval` on a SPAN export with dynamic sizes), so the quality they report is that of the graph that
ships (ONNX Runtime or OpenVINO; fp32, fp16 or int8) rather than of the torch model it came from. A static-batch
export is called once per `batch` rows (the last chunk padded); a `--dynamic-batch` ONNX export takes the whole
batch in one call.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from diffusers.configuration_utils import FrozenDict

from compress.errors import CompressError
from compress.io import read_json
from compress.models.class_conditioner import ClassConditioner
from compress.models.loading import DiffusionModel
from compress.optional import require
from compress.types import ExportArtifact
from exporters import onnx, openvino
from exporters.validate import REPORT_FILE, read_artifact


def _runner(directory: Path, artifact: ExportArtifact) -> tuple[Any, str, str]:
    """(run(inputs by name) -> first output, runtime, precision) of an export folder's model."""
    path = directory / artifact.path
    if artifact.format == "onnx":
        session = onnx.load_onnx(path)
        ort = require("onnxruntime", "this export")
        return (lambda inputs: onnx.run_onnx(session, inputs),
                f"onnxruntime {ort.__version__} {session.get_providers()[0]}", artifact.weights)
    if artifact.format == "openvino":
        compiled = openvino.load_openvino(path, precision=None)  # what users run: the CPU plugin's default
        ov = require("openvino", "this export")
        compute = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        return (lambda inputs: openvino.run_openvino(compiled, inputs), f"openvino {ov.get_version()} "
                f"{openvino.DEVICE}", f"{artifact.weights} weights, {compute} compute")
    if sys.platform != "darwin":
        raise CompressError(f"{directory} is a Core ML export: Core ML runs only on macOS, so it cannot be "
                            "run here (export to onnx or openvino to measure its quality on this machine)")
    if len(artifact.options.get("packages", [])) != 1:
        raise CompressError(f"{directory} is a chunked Core ML export; only unchunked packages run here")
    model = require("coremltools", "this export").models.MLModel(str(directory / artifact.path))
    output = artifact.output_names[0]
    return (lambda inputs: model.predict(inputs)[output], "coreml CPU_AND_NE",
            f"{artifact.weights} weights, {'fp16' if artifact.fp16 else 'fp32'} compute")


class ExportedUNet:
    """`unet(sample, timestep, encoder_hidden_states, timestep_cond=None).sample`, computed by the export's runtime.

    `runtime` names the runtime and device, `precision` the weights and, for OpenVINO, the inference precision
    the CPU plugin chose (bf16 on CPUs with AMX / avx512_bf16): the eval JSON records both.
    """

    dtype = torch.float32

    def __init__(self, directory: Path, artifact: ExportArtifact):
        if artifact.family != "unet" or "unet_config" not in artifact.model_info:
            raise CompressError(f"{directory} holds a {artifact.family} export, not a UNet")
        self.config = FrozenDict(artifact.model_info["unet_config"])
        self.names = artifact.input_names
        self.batch = artifact.input_shapes[0][0]
        self.dynamic_batch = bool(artifact.options.get("dynamic_batch"))
        self.io_dtype = np.dtype(artifact.input_dtypes[0])
        self._run, self.runtime, self.precision = _runner(directory, artifact)

    def __call__(self, sample: torch.Tensor, timestep: torch.Tensor | float, encoder_hidden_states: torch.Tensor,
                 timestep_cond: torch.Tensor | None = None) -> SimpleNamespace:
        rows = len(sample)
        timesteps = torch.as_tensor(timestep, dtype=torch.float32).reshape(-1).expand(rows)
        values = [sample, timesteps, encoder_hidden_states]
        if timestep_cond is not None:
            values.append(timestep_cond)
        arrays = [v.detach().float().numpy().astype(self.io_dtype) for v in values]
        step = rows if self.dynamic_batch else self.batch
        outputs = []
        for begin in range(0, rows, step):
            chunk = [a[begin:begin + step] for a in arrays]
            count = len(chunk[0])
            if count < step:  # a static batch: repeat the last row, drop its outputs
                chunk = [np.concatenate([c, np.repeat(c[-1:], step - count, axis=0)]) for c in chunk]
            result = self._run(dict(zip(self.names, chunk, strict=True)))
            outputs.append(np.asarray(result, dtype=np.float32)[:count])
        return SimpleNamespace(sample=torch.from_numpy(np.concatenate(outputs)))


def is_export_folder(path: str | Path) -> bool:
    return (Path(path) / REPORT_FILE).is_file()


def load_exported_model(directory: str | Path, family: str | None = None) -> DiffusionModel:
    """A `DiffusionModel` whose UNet is the export in `directory`, with the conditioner and scheduler saved beside.

    `family="toy"` refuses a folder without the toy's `conditioner/` before any runtime is loaded.
    """
    directory = Path(directory)
    artifact = read_artifact(directory)
    scheduler_path = directory / "scheduler" / "scheduler_config.json"
    if artifact.family != "unet":
        raise CompressError(f"{directory} holds a {artifact.family} export, not a diffusion UNet")
    has_conditioner = (directory / "conditioner").is_dir()
    if family == "toy" and not has_conditioner:
        raise CompressError(f"{directory} is an export of {artifact.model}, not of a toy-family model "
                            "(no conditioner/ beside the UNet)")
    if not scheduler_path.is_file():
        raise CompressError(f"{directory} has no scheduler/scheduler_config.json (exports before this version did "
                            "not keep it): export the model again")
    conditioner = ClassConditioner.load(directory / "conditioner") if has_conditioner else None
    return DiffusionModel(unet=ExportedUNet(directory, artifact), family="toy" if has_conditioner else "sd",
                          name=f"{artifact.model} ({artifact.format} export in {directory})",
                          scheduler_config=read_json(scheduler_path), conditioner=conditioner,
                          source_dir=directory)


class ExportedSpan(torch.nn.Module):
    """`span(image)` computed by the export's runtime, for `compress sr eval` on a SPAN export with dynamic sizes."""

    def __init__(self, directory: Path, artifact: ExportArtifact):
        super().__init__()
        if artifact.family != "span":
            raise CompressError(f"{directory} holds a {artifact.family} export, not SPAN")
        if artifact.input_shapes[0][2] != -1:
            raise CompressError(f"{directory} is a SPAN export of one static size {artifact.input_shapes[0][2:]}; "
                                "scoring whole images needs dynamic sizes (what `compress quantize` writes)")
        self.scale = artifact.model_info["span"]["scale"]
        self.name = artifact.input_names[0]
        self._run, self.runtime, self.precision = _runner(directory, artifact)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(np.asarray(self._run({self.name: image.detach().float().numpy()}), dtype=np.float32))


def load_exported_span(directory: str | Path) -> ExportedSpan:
    directory = Path(directory)
    return ExportedSpan(directory, read_artifact(directory))
