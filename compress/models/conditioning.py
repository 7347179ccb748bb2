"""`encoder_hidden_states` for a model: class tokens (toy), encoded prompts (SD), or seeded noise.

Scoring, recovery and distillation all condition through here, so every stage sees the
same conditioning for the same seed.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import torch

from compress.errors import CompressError
from compress.models.loading import DiffusionModel
from compress.models.sd import SD_TEXT_TOKENS
from compress.models.toy import NULL_CLASS, NUM_CLASSES


def calib_dir() -> Path:
    """The `calib_data/` folder shipped as package data inside `compress` (or `$COMPRESS_CALIB_DIR`)."""
    path = Path(os.environ.get("COMPRESS_CALIB_DIR", str(resources.files("compress") / "calib_data")))
    if not path.is_dir():
        raise CompressError(f"calibration folder not found: {path} (set COMPRESS_CALIB_DIR)")
    return path


def calibration_prompts() -> list[str]:
    lines = (calib_dir() / "prompts.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def text_tokens(model: DiffusionModel) -> int:
    """Sequence length of `encoder_hidden_states` for this model."""
    return model.conditioner.tokens if model.conditioner is not None else SD_TEXT_TOKENS


@torch.no_grad()
def encode_prompts(model: DiffusionModel, prompts: list[str]) -> torch.Tensor:
    length = min(model.tokenizer.model_max_length, model.text_encoder.config.max_position_embeddings)
    tokens = model.tokenizer(prompts, padding="max_length", max_length=length, truncation=True, return_tensors="pt")
    return model.text_encoder(tokens.input_ids)[0]


@torch.no_grad()
def class_conditioning(model: DiffusionModel, labels: torch.Tensor) -> torch.Tensor:
    if model.conditioner is None:
        raise CompressError(f"{model.name} has no class conditioner (toy family only)")
    return model.conditioner(labels)


@torch.no_grad()
def calibration_conditioning(model: DiffusionModel, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(cond for n samples, uncond for one) for calibration.

    toy: classes 0..9 cycled; SD with a text encoder: the calib_data prompts cycled;
    otherwise (random init, or a UNet without its pipeline): seeded Gaussian embeddings.
    """
    if model.conditioner is not None:
        labels = torch.arange(n) % NUM_CLASSES
        return class_conditioning(model, labels), class_conditioning(model, torch.tensor([NULL_CLASS]))
    if model.text_encoder is not None:
        prompts = calibration_prompts()
        return encode_prompts(model, [prompts[i % len(prompts)] for i in range(n)]), encode_prompts(model, [""])
    dim = model.unet.config.cross_attention_dim
    dim = dim[0] if isinstance(dim, (list, tuple)) else dim
    generator = torch.Generator().manual_seed(seed + 1)
    return (torch.randn(n, SD_TEXT_TOKENS, dim, generator=generator),
            torch.randn(1, SD_TEXT_TOKENS, dim, generator=generator))
