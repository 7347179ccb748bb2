"""Training data for recovery and distillation, as tensors in memory.

toy family: the digits train split; `cond` is the (frozen) class conditioner's output per image.
SD family: an image-caption folder (images plus `captions.jsonl`, see compress/calib_data/README.md)
encoded once with the pipeline's VAE and text encoder into a safetensors cache on disk.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

from compress.errors import CompressError
from compress.io import load_safetensors
from compress.models.conditioning import class_conditioning, encode_prompts
from compress.models.loading import DiffusionModel
from compress.models.toy import NULL_CLASS

CAPTIONS = "captions.jsonl"


@dataclass
class TrainingData:
    """x0: clean latents (or pixels for the toy); cond: encoder_hidden_states per item; uncond: one."""

    x0: torch.Tensor
    cond: torch.Tensor
    uncond: torch.Tensor

    def batch(self, size: int, generator: torch.Generator, cfg_dropout: float) -> tuple[torch.Tensor, torch.Tensor]:
        """A random batch; a share `cfg_dropout` of items get the unconditional embedding."""
        idx = torch.randint(0, len(self.x0), (size,), generator=generator)
        cond = self.cond[idx].clone()
        drop = torch.rand(size, generator=generator) < cfg_dropout
        cond[drop] = self.uncond[0]
        return self.x0[idx], cond


def toy_training_data(model: DiffusionModel) -> TrainingData:
    from compress.data.digits import load_digits

    digits = load_digits("train")
    return TrainingData(digits.images, class_conditioning(model, digits.labels),
                        class_conditioning(model, torch.tensor([NULL_CLASS])))


def read_captions(folder: Path) -> list[tuple[Path, str]]:
    if not folder.is_dir():
        raise CompressError(f"data folder not found: {folder}")
    index = folder / CAPTIONS
    if not index.is_file():
        raise CompressError(f"data folder {folder} has no {CAPTIONS} (one JSON object per line: "
                            '{"file_name": "0001.png", "text": "a caption"})')
    items = []
    for n, line in enumerate(index.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            items.append((folder / record["file_name"], str(record["text"])))
        except (json.JSONDecodeError, KeyError, TypeError):
            raise CompressError(f"{index} line {n}: expected {{\"file_name\": ..., \"text\": ...}}") from None
    if not items:
        raise CompressError(f"data folder {folder} is empty: {CAPTIONS} lists no images")
    return items


def _load_image(path: Path, size: int) -> torch.Tensor:
    """Center-cropped, resized RGB image in [-1, 1], (3, size, size)."""
    try:
        image = Image.open(path).convert("RGB")
    except (OSError, ValueError):
        raise CompressError(f"cannot read image {path}") from None
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    image = image.crop((left, top, left + side, top + side)).resize((size, size), Image.BICUBIC)
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 127.5 - 1.0).permute(2, 0, 1)


@torch.no_grad()
def sd_training_data(model: DiffusionModel, folder: Path, cache: Path) -> TrainingData:
    """Encode the image-caption folder once (VAE latents, text embeddings); reuse the cache after."""
    if cache.is_file():
        tensors = load_safetensors(cache)
        return TrainingData(tensors["x0"], tensors["cond"], tensors["uncond"])
    items = read_captions(Path(folder))
    root = model.source_dir
    if root is None or not (root / "vae").is_dir() or model.text_encoder is None:
        raise CompressError("SD recovery data needs the teacher as a pipeline folder with vae/, text_encoder/ "
                            "and tokenizer/ to encode images and captions")
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(root / "vae").eval()
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    size = model.unet.config.sample_size * factor
    latents, texts = [], []
    for path, text in items:
        image = _load_image(path, size).unsqueeze(0)
        latents.append(vae.encode(image).latent_dist.mean * vae.config.scaling_factor)
        texts.append(text)
    data = TrainingData(torch.cat(latents), encode_prompts(model, texts), encode_prompts(model, [""]))
    cache.parent.mkdir(parents=True, exist_ok=True)
    save_file({"x0": data.x0.contiguous(), "cond": data.cond.contiguous(), "uncond": data.uncond.contiguous()},
              str(cache))
    return data


def training_data(teacher: DiffusionModel, data: str | Path | None, out: Path) -> TrainingData:
    """The digits for the toy family; for SD, the image-caption folder `data` encoded into `out`'s cache."""
    if teacher.family == "toy":
        if data is not None:
            raise CompressError("toy-family models train on the shipped digits; leave out --data")
        return toy_training_data(teacher)
    if data is None:
        raise CompressError("SD-family models need --data IMAGE_CAPTION_FOLDER (see compress/calib_data/README.md)")
    return sd_training_data(teacher, Path(data), out / "data_cache.safetensors")
