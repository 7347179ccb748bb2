"""Export configs: what a model family looks like from outside (optimum's per-architecture `OnnxConfig` idea).

A config owns the torch module to export, the names, shapes and dtypes of its inputs and outputs, how to make
seeded inputs for tracing and validation, and where each format's files go. The format modules only read it,
so ONNX, OpenVINO and Core ML artifacts of one model share one contract:

    UNet: sample (B, C, H, W), timestep (B,), encoder_hidden_states (B, T, D) -> out_sample (B, C, H, W)
    SPAN: image (B, 3, H, W) in [0, 1] -> upscaled (B, 3, H * s, W * s)

H and W are the sizes of the model's own input: the latent for a UNet, the low-resolution image for SPAN.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from compress.errors import CompressError
from compress.io import write_json
from compress.models.loading import public_config
from compress.models.sd import NUM_TRAIN_TIMESTEPS, SD_TEXT_TOKENS

SPAN_DEFAULT_SIZE = 256
VALIDATION_TIMESTEPS = (999, 1)  # the first and last step of a sampling trajectory


@dataclass(frozen=True)
class TensorSpec:
    """A model input or output: its traced shape, dtype, and the axes exported dynamic as (axis, name, multiple)."""

    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype = torch.float32
    dynamic: tuple[tuple[int, str, int], ...] = ()

    @property
    def signature_shape(self) -> list[int]:
        """The shape a runtime reports: -1 on a dynamic axis."""
        axes = {axis for axis, _, _ in self.dynamic}
        return [-1 if i in axes else size for i, size in enumerate(self.shape)]


class UNetModule(nn.Module):
    """The diffusers UNet with positional tensors in and one tensor out: the exported signature."""

    def __init__(self, unet: nn.Module):
        super().__init__()
        self.unet = unet

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor):
        return self.unet(sample, timestep, encoder_hidden_states, return_dict=False)[0]


class GuidanceUNetModule(UNetModule):
    """A consistency student (`time_cond_proj_dim`): the guidance-scale embedding is a fourth input, `timestep_cond`,
    as in optimum's LCM exports."""

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor,
                timestep_cond: torch.Tensor):
        return self.unet(sample, timestep, encoder_hidden_states, timestep_cond=timestep_cond, return_dict=False)[0]


class SpanModule(nn.Module):
    """The fused SPAN with its input named `image` (the traced argument name becomes the input name)."""

    def __init__(self, span: nn.Module):
        super().__init__()
        self.span = span

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.span(image)


class ExportConfig:
    """One model's export contract; subclasses fill in the family-specific parts."""

    family: str
    layout: dict[str, str]  # format -> main file, relative to the output folder
    # (check-name prefix, inputs) that replace `validation_sets` when set: `compress quantize` checks its graph on
    # fresh calibration-distributed batches instead of N(0, 1) ones
    validation_inputs: list[tuple[str, dict[str, torch.Tensor]]] | None = None

    def __init__(self, name: str, module: nn.Module, inputs: list[TensorSpec], outputs: list[TensorSpec]):
        self.name = name
        self.module = module.eval()
        self.inputs = inputs
        self.outputs = outputs

    @property
    def batch(self) -> int:
        return self.inputs[0].shape[0]

    def random_inputs(self, seed: int, dtype: torch.dtype | None = None, batch: int | None = None
                      ) -> dict[str, torch.Tensor]:
        """Seeded inputs in the model's input distribution, optionally cast and with another batch size."""
        generator = torch.Generator().manual_seed(seed)
        tensors = {}
        for spec in self.inputs:
            shape = (batch or spec.shape[0], *spec.shape[1:]) if spec.shape else ()
            cast = dtype if dtype is not None and spec.dtype.is_floating_point else spec.dtype
            tensors[spec.name] = self._draw(spec.name, shape, generator).to(cast)
        return tensors

    def draw_input(self, spec: TensorSpec, generator: torch.Generator) -> torch.Tensor:
        """One seeded input of `spec`'s shape and dtype (a chunk's inputs too), from the model's input distribution."""
        return self._draw(spec.name, spec.shape, generator).to(spec.dtype)

    def _draw(self, name: str, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def validation_sets(self, seed: int) -> list[tuple[str, dict[str, torch.Tensor]]]:
        """(check-name prefix, inputs) to validate an export with: the random batch, plus inputs in the model's
        real distribution where the config knows it."""
        return [("", self.random_inputs(seed))]

    @torch.no_grad()
    def reference(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The torch output (fp32) that exported models are compared with."""
        return self.module(*(t.float() if t.is_floating_point() else t for t in inputs.values()))

    def dynamic_shapes(self) -> tuple[dict[int, Any], ...] | None:
        """torch.export's `dynamic_shapes` for the inputs' dynamic axes (one `Dim` per axis name), or None."""
        if not any(spec.dynamic for spec in self.inputs):
            return None
        dims: dict[str, Any] = {}
        shapes = []
        for spec in self.inputs:
            axes = {}
            for axis, name, multiple in spec.dynamic:
                dim = dims.setdefault(name, torch.export.Dim(name))
                axes[axis] = dim * multiple if multiple > 1 else dim
            shapes.append(axes)
        return tuple(shapes)

    def weight_bytes(self) -> int:
        return sum(p.numel() * p.element_size() for p in self.module.parameters())

    def write_extras(self, format: str, directory: Path) -> list[str]:
        """Files a runtime expects next to the model (relative paths); none by default."""
        return []

    def describe(self) -> dict[str, Any]:
        return {}


class UNetExportConfig(ExportConfig):
    """A diffusers `UNet2DConditionModel`, stock or block-pruned (bypass modules trace like any module)."""

    family = "unet"
    layout = {"onnx": "unet/model.onnx", "openvino": "unet/openvino_model.xml", "coreml": "Unet.mlpackage"}

    def __init__(self, unet: nn.Module, name: str, batch: int = 1, height: int | None = None,
                 width: int | None = None, sequence_length: int = SD_TEXT_TOKENS,
                 conditioning: Callable[[int], torch.Tensor] | None = None,
                 scheduler_config: dict[str, Any] | None = None, conditioner: nn.Module | None = None):
        self.unet = unet
        self.conditioning = conditioning  # batch -> the model's own encoder_hidden_states (toy classes, SD prompts)
        self.scheduler_config = scheduler_config  # saved beside the model, so the export can be sampled as trained
        self.conditioner = conditioner  # the toy's class table, saved so `compress eval` can sample the export
        size = unet.config.sample_size
        default_h, default_w = (size, size) if isinstance(size, int) else tuple(size)
        height, width = _default(height, default_h), _default(width, default_w)
        factor = self.downsampling_factor(unet)
        _check_sizes(batch, height, width)
        if height % factor or width % factor:
            raise CompressError(f"{name}: height and width ({height}x{width}, latent size) must be divisible by "
                                f"{factor}, the UNet's downsampling factor")
        if sequence_length < 1:
            raise CompressError(f"--sequence-length must be positive, got {sequence_length}")
        dim = unet.config.cross_attention_dim
        dim = dim[0] if isinstance(dim, (list, tuple)) else dim
        inputs = [TensorSpec("sample", (batch, unet.config.in_channels, height, width)),
                  TensorSpec("timestep", (batch,)),
                  TensorSpec("encoder_hidden_states", (batch, sequence_length, dim))]
        guidance_dim = unet.config.get("time_cond_proj_dim")
        if guidance_dim:
            inputs.append(TensorSpec("timestep_cond", (batch, guidance_dim)))
        outputs = [TensorSpec("out_sample", (batch, unet.config.out_channels, height, width))]
        super().__init__(name, (GuidanceUNetModule if guidance_dim else UNetModule)(unet), inputs, outputs)

    @staticmethod
    def downsampling_factor(unet: nn.Module) -> int:
        """2 ** (stages that downsample); a block-pruned UNet may have lost a stage."""
        return 2 ** sum(getattr(block, "downsamplers", None) is not None for block in unet.down_blocks)

    def _draw(self, name: str, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        if name == "timestep":
            return torch.randint(0, NUM_TRAIN_TIMESTEPS, shape, generator=generator).float()
        return torch.randn(shape, generator=generator)

    def validation_sets(self, seed: int) -> list[tuple[str, dict[str, torch.Tensor]]]:
        """The random batch, then, where the model's own conditioning is known, that conditioning at both ends of
        the sampling trajectory (t = 999 and t = 1), which random N(0, 1) embeddings and timesteps do not cover."""
        sets = super().validation_sets(seed)
        states = self.conditioning(self.batch) if self.conditioning is not None else None
        if states is None or tuple(states.shape) != self.inputs[2].shape:
            return sets
        for timestep in VALIDATION_TIMESTEPS:
            inputs = self.random_inputs(seed + timestep)
            inputs["timestep"] = torch.full_like(inputs["timestep"], timestep)
            inputs["encoder_hidden_states"] = states.to(inputs["encoder_hidden_states"].dtype)
            sets.append((f"conditioned_t{timestep}_", inputs))
        return sets

    def write_extras(self, format: str, directory: Path) -> list[str]:
        """optimum's pipelines read `unet/config.json` next to the ONNX / OpenVINO model; `scheduler/` (and the
        toy's `conditioner/`) let `compress eval` and `compress sample` run the export as the model was sampled."""
        files = []
        if format != "coreml":
            self.unet.save_config(directory / "unet")
            files.append("unet/config.json")
        if self.scheduler_config is not None:
            write_json(directory / "scheduler" / "scheduler_config.json", self.scheduler_config)
            files.append("scheduler/scheduler_config.json")
        if self.conditioner is not None:
            self.conditioner.save(directory / "conditioner")
            files += ["conditioner/config.json", "conditioner/model.safetensors"]
        return files

    def describe(self) -> dict[str, Any]:
        return {"unet_config": public_config(self.unet.config)}


class SpanExportConfig(ExportConfig):
    """SPAN super-resolution in its fused deploy form (one 3x3 convolution per `Conv3XC`)."""

    family = "span"

    def __init__(self, span: nn.Module, name: str, batch: int = 1, height: int | None = None,
                 width: int | None = None, dynamic: bool = False):
        """`dynamic`: batch, height and width dynamic (traced at the given sizes), so whole images of any size
        run in one call (what `compress quantize` writes, and what `compress sr eval` can score)."""
        height, width = _default(height, SPAN_DEFAULT_SIZE), _default(width, SPAN_DEFAULT_SIZE)
        _check_sizes(batch, height, width)
        self.scale, self.channels = span.scale, span.channels
        stem = f"span_x{span.scale}"
        self.layout = {"onnx": f"{stem}.onnx", "openvino": f"{stem}.xml", "coreml": f"{stem}.mlpackage"}
        axes = ((0, "batch", 1), (2, "height", 1), (3, "width", 1)) if dynamic else ()
        inputs = [TensorSpec("image", (batch, 3, height, width), dynamic=axes)]
        outputs = [TensorSpec("upscaled", (batch, 3, height * span.scale, width * span.scale), dynamic=axes)]
        super().__init__(name, SpanModule(span), inputs, outputs)

    def _draw(self, name: str, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        return torch.rand(shape, generator=generator)

    def describe(self) -> dict[str, Any]:
        return {"span": {"scale": self.scale, "channels": self.channels}}


class ModuleExportConfig(ExportConfig):
    """Any module called with positional float tensors: a part of a UNet timed alone for a latency table."""

    family = "module"
    layout = {"onnx": "model.onnx", "openvino": "model.xml", "coreml": "model.mlpackage"}

    def __init__(self, name: str, module: nn.Module, input_shapes: list[tuple[int, ...]]):
        inputs = [TensorSpec(f"input_{i}", tuple(shape)) for i, shape in enumerate(input_shapes)]
        super().__init__(name, module, inputs, [TensorSpec("output", ())])

    def _draw(self, name: str, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        return torch.randn(shape, generator=generator)


def _default(value: int | None, default: int) -> int:
    return default if value is None else value


def _check_sizes(batch: int, height: int, width: int) -> None:
    if batch < 1 or height < 1 or width < 1:
        raise CompressError(f"batch, height and width must be positive, got {batch}, {height}, {width}")


def load_export_config(source: Any, *, batch: int = 1, height: int | None = None, width: int | None = None,
                       sequence_length: int | None = None, init: str = "pretrained", seed: int = 0) -> ExportConfig:
    """Resolve a registry name, folder, checkpoint or model object to its export config.

    Names, folders and files resolve through `compress.models.create` (so block-pruned UNets get their bypass
    modules); SPAN is exported fused.
    """
    from diffusers import UNet2DConditionModel

    from compress.models.conditioning import calibration_conditioning, text_tokens
    from compress.models.loading import DiffusionModel
    from compress.models.resolve import create
    from compress.sr import SPAN, deploy_model

    name = str(source) if isinstance(source, (str, os.PathLike)) else None
    if name is not None:
        source = create(name, init=init, seed=seed)
    if isinstance(source, SPAN):
        if sequence_length is not None:
            raise CompressError("--sequence-length applies to UNets, not SPAN")
        return SpanExportConfig(deploy_model(source), name or f"span-x{source.scale}", batch, height, width)
    if isinstance(source, DiffusionModel):
        tokens = sequence_length or text_tokens(source)
        known = source.conditioner is not None or source.text_encoder is not None
        conditioning = (lambda n: calibration_conditioning(source, n, seed)[0]) if known else None
        return UNetExportConfig(source.unet, source.name, batch, height, width, tokens, conditioning,
                                source.scheduler_config, source.conditioner)
    if isinstance(source, UNet2DConditionModel):
        return UNetExportConfig(source.eval(), "unet", batch, height, width, sequence_length or SD_TEXT_TOKENS)
    raise CompressError(f"cannot export a {type(source).__name__}; pass a registry name, a folder, a SPAN or a "
                        "diffusers UNet2DConditionModel")
