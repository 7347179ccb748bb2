"""Export configs of an SD pipeline's components, one per component and format, with the signature its consumer
calls (optimum's `UNetOnnxConfig` / `UNetOpenVINOConfig` / `VaeDecoderOnnxConfig` ..., Apple's Swift pipeline).

    onnx      (ORTStableDiffusionPipeline)  every batch, token and pixel axis dynamic; timestep a float scalar
    openvino  (OVStableDiffusionPipeline)   the same axes; timestep int64 [batch] (the pipeline reshapes it to [1]);
              the pipeline reshapes every model to dynamic shapes when it loads, so no axis may be static
    coreml    (Apple's StableDiffusionPipeline)  static shapes: text encoder float32 input_ids [1, T] ->
              last_hidden_state; UNet sample [2, C, h, w], timestep [2], encoder_hidden_states [2, D, 1, T] ->
              noise_pred; VAE decoder z -> image; VAE encoder (img2img) sample, diagonal_noise, noise,
              sqrt_alphas_cumprod, sqrt_one_minus_alphas_cumprod -> the noised, scaled latent

A dynamic axis is traced at size >= 2 (torch.export specialises an axis traced at 1) and declared in `TensorSpec.
dynamic` as (axis, name, multiple): a latent height must stay a multiple of the UNet's downsampling factor.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from exporters.config import ExportConfig, GuidanceUNetModule, TensorSpec, UNetExportConfig, UNetModule

COMPONENTS = ("text_encoder", "unet", "vae_decoder", "vae_encoder")
LAYOUTS = {  # component -> main file, per format: where each consumer looks
    "onnx": {c: f"{c}/model.onnx" for c in COMPONENTS},
    "openvino": {c: f"{c}/openvino_model.xml" for c in COMPONENTS},
    "coreml": {"text_encoder": "TextEncoder.mlpackage", "unet": "Unet.mlpackage",
               "vae_decoder": "VAEDecoder.mlpackage", "vae_encoder": "VAEEncoder.mlpackage"},
}
TRACE_BATCH = 2  # classifier-free guidance's batch, and >= 2 so that torch.export keeps the axis dynamic
COREML_GUIDANCE_BATCH = 2  # Apple's Swift UNet is called with the unconditional and the conditional latent


class TextEncoderModule(nn.Module):
    """CLIP's text model: ids -> (last_hidden_state, pooler_output). Core ML takes float ids (Apple's contract)."""

    def __init__(self, text_encoder: nn.Module, float_ids: bool):
        super().__init__()
        self.text_encoder, self.float_ids = text_encoder, float_ids

    def forward(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ids = input_ids.long() if self.float_ids else input_ids
        output = self.text_encoder(ids, return_dict=False)
        return output[0], output[1]


class VaeDecoderModule(nn.Module):
    """`vae.decode` (post_quant_conv included): latents already divided by the scaling factor -> image in [-1, 1]."""

    def __init__(self, vae: nn.Module):
        super().__init__()
        self.vae = vae

    def forward(self, latent_sample: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(latent_sample, return_dict=False)[0]


class VaeEncoderModule(nn.Module):
    """`vae.encode` -> the latent distribution's parameters (mean and log-variance), as optimum exports it."""

    def __init__(self, vae: nn.Module):
        super().__init__()
        self.vae = vae

    def forward(self, sample: torch.Tensor) -> torch.Tensor:
        return self.vae.encode(sample, return_dict=False)[0].parameters


class AppleVaeEncoderModule(nn.Module):
    """Apple's img2img encoder: sample the latent with the given noise, scale it, and noise it to the first step."""

    def __init__(self, vae: nn.Module):
        super().__init__()
        self.vae, self.scaling_factor = vae, float(vae.config.scaling_factor)

    def forward(self, sample: torch.Tensor, diagonal_noise: torch.Tensor, noise: torch.Tensor,
                sqrt_alphas_cumprod: torch.Tensor, sqrt_one_minus_alphas_cumprod: torch.Tensor) -> torch.Tensor:
        distribution = self.vae.encode(sample, return_dict=False)[0]
        latent = (distribution.mean + distribution.std * diagonal_noise) * self.scaling_factor
        return sqrt_alphas_cumprod * latent + sqrt_one_minus_alphas_cumprod * noise


class AppleUNetModule(nn.Module):
    """Apple's UNet signature: encoder_hidden_states as (B, D, 1, T), the layout its text-encoder output is put in."""

    def __init__(self, unet: nn.Module):
        super().__init__()
        self.unet = unet

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor
                ) -> torch.Tensor:
        states = encoder_hidden_states.squeeze(2).transpose(1, 2)
        return self.unet(sample, timestep, states, return_dict=False)[0]


class ComponentExportConfig(ExportConfig):
    """One pipeline component in one format's signature; its consumer reads `config.json` beside the model."""

    family = "component"

    def __init__(self, component: str, module: nn.Module, inputs: list[TensorSpec],
                 outputs: list[TensorSpec], write_config: Callable[[Path], None],
                 draw: dict[str, Callable] | None = None):
        self.component = component
        self.layout = {name: layout[component] for name, layout in LAYOUTS.items()}
        self.write_config = write_config  # writes the diffusers or transformers config.json into a folder
        self.draws = draw or {}
        super().__init__(component, module, inputs, outputs)

    def _draw(self, name: str, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        draw = self.draws.get(name)
        return draw(shape, generator) if draw is not None else torch.randn(shape, generator=generator)

    def reference(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The first output: the one the pipeline uses (a text encoder's last_hidden_state)."""
        output = super().reference(inputs)
        return output[0] if isinstance(output, tuple) else output

    def write_extras(self, format: str, directory: Path) -> list[str]:
        if format == "coreml":
            return []
        self.write_config(directory / self.component)
        return [f"{self.component}/config.json"]

    def describe(self) -> dict[str, Any]:
        return {"component": self.component}


def _ids(vocab_size: int):
    return lambda shape, generator: torch.randint(0, vocab_size, shape, generator=generator)


def _timesteps(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    return torch.randint(1, 1000, shape, generator=generator)


def text_encoder_config(text_encoder: nn.Module, format: str, tokens: int) -> ComponentExportConfig:
    config = text_encoder.config
    width = config.hidden_size
    if format == "coreml":
        inputs = [TensorSpec("input_ids", (1, tokens))]
        outputs = [TensorSpec("last_hidden_state", (1, tokens, width)), TensorSpec("pooled_outputs", (1, width))]
    else:
        axes = ((0, "batch", 1), (1, "sequence", 1))
        inputs = [TensorSpec("input_ids", (TRACE_BATCH, tokens), torch.int64, axes)]
        outputs = [TensorSpec("last_hidden_state", (TRACE_BATCH, tokens, width), dynamic=axes),
                   TensorSpec("pooler_output", (TRACE_BATCH, width), dynamic=axes[:1])]
    return ComponentExportConfig("text_encoder", TextEncoderModule(text_encoder, format == "coreml"),
                                 inputs, outputs, config.save_pretrained, {"input_ids": _ids(config.vocab_size)})


def unet_config(unet: nn.Module, format: str, height: int, width: int, tokens: int) -> ComponentExportConfig:
    """The UNet as the pipeline calls it: guidance batch, optimum's timestep per format, Apple's layout for Core ML."""
    channels, dim = unet.config.in_channels, unet.config.cross_attention_dim
    factor = UNetExportConfig.downsampling_factor(unet)
    guidance_dim = unet.config.get("time_cond_proj_dim")
    if format == "coreml":
        batch = COREML_GUIDANCE_BATCH
        inputs = [TensorSpec("sample", (batch, channels, height, width)), TensorSpec("timestep", (batch,)),
                  TensorSpec("encoder_hidden_states", (batch, dim, 1, tokens))]
        outputs = [TensorSpec("noise_pred", (batch, unet.config.out_channels, height, width))]
        return ComponentExportConfig("unet", AppleUNetModule(unet), inputs, outputs, unet.save_config,
                                     {"timestep": lambda s, g: _timesteps(s, g).float()})
    batch = ((0, "batch", 1),)
    image = ((0, "batch", 1), (2, "height", factor), (3, "width", factor))
    timestep = (TensorSpec("timestep", (), torch.float32) if format == "onnx"
                else TensorSpec("timestep", (TRACE_BATCH,), torch.int64, batch))
    inputs = [TensorSpec("sample", (TRACE_BATCH, channels, height, width), dynamic=image), timestep,
              TensorSpec("encoder_hidden_states", (TRACE_BATCH, tokens, dim),
                         dynamic=((0, "batch", 1), (1, "sequence", 1)))]
    if guidance_dim:
        inputs.append(TensorSpec("timestep_cond", (TRACE_BATCH, guidance_dim), dynamic=batch))
    outputs = [TensorSpec("out_sample", (TRACE_BATCH, unet.config.out_channels, height, width), dynamic=image)]
    module_class = GuidanceUNetModule if guidance_dim else UNetModule
    draw = {"timestep": (lambda s, g: _timesteps(s, g).float()) if format == "onnx" else _timesteps}
    return ComponentExportConfig("unet", module_class(unet), inputs, outputs, unet.save_config, draw)


def vae_factor(vae: nn.Module) -> int:
    return 2 ** (len(vae.config.block_out_channels) - 1)


def vae_decoder_config(vae: nn.Module, format: str, height: int, width: int) -> ComponentExportConfig:
    """`height`/`width` are the latent's; the image is `vae_factor` times larger."""
    latents, factor = vae.config.latent_channels, vae_factor(vae)
    if format == "coreml":
        inputs = [TensorSpec("z", (1, latents, height, width))]
        outputs = [TensorSpec("image", (1, 3, height * factor, width * factor))]
    else:
        axes = ((0, "batch", 1), (2, "latent_height", 1), (3, "latent_width", 1))
        inputs = [TensorSpec("latent_sample", (TRACE_BATCH, latents, height, width), dynamic=axes)]
        outputs = [TensorSpec("sample", (TRACE_BATCH, 3, height * factor, width * factor),
                              dynamic=((0, "batch", 1), (2, "height", factor), (3, "width", factor)))]
    return ComponentExportConfig("vae_decoder", VaeDecoderModule(vae), inputs, outputs, vae.save_config)


def vae_encoder_config(vae: nn.Module, format: str, height: int, width: int) -> ComponentExportConfig:
    """`height`/`width` are the latent's; the image input is `vae_factor` times larger."""
    latents, factor = vae.config.latent_channels, vae_factor(vae)
    image = (3, height * factor, width * factor)
    uniform = {"sample": lambda s, g: torch.rand(s, generator=g) * 2 - 1}
    if format == "coreml":
        latent = (1, latents, height, width)
        inputs = [TensorSpec("sample", (1, *image)), TensorSpec("diagonal_noise", latent), TensorSpec("noise", latent),
                  TensorSpec("sqrt_alphas_cumprod", (1, 1)), TensorSpec("sqrt_one_minus_alphas_cumprod", (1, 1))]
        return ComponentExportConfig("vae_encoder", AppleVaeEncoderModule(vae), inputs,
                                     [TensorSpec("latent", latent)], vae.save_config, uniform)
    axes = ((0, "batch", 1), (2, "height", factor), (3, "width", factor))
    inputs = [TensorSpec("sample", (TRACE_BATCH, *image), dynamic=axes)]
    outputs = [TensorSpec("latent_parameters", (TRACE_BATCH, 2 * latents, height, width),
                          dynamic=((0, "batch", 1), (2, "latent_height", 1), (3, "latent_width", 1)))]
    return ComponentExportConfig("vae_encoder", VaeEncoderModule(vae), inputs, outputs, vae.save_config,
                                 uniform)


def component_configs(unet: nn.Module, text_encoder: nn.Module, vae: nn.Module, format: str, tokens: int
                      ) -> list[ComponentExportConfig]:
    """Every component's config at the UNet's own sample size (the size the pipeline generates by default)."""
    size = unet.config.sample_size
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    return [text_encoder_config(text_encoder, format, tokens), unet_config(unet, format, height, width, tokens),
            vae_decoder_config(vae, format, height, width), vae_encoder_config(vae, format, height, width)]
