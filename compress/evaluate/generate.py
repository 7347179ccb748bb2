"""`compress sample`: images from any model the toolkit writes, with the scheduler saved with it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from compress.errors import CompressError
from compress.evaluate.images import save_grid
from compress.evaluate.sampling import denoise, load_sampling_model, make_scheduler, sample
from compress.io import atomic_file, image_format
from compress.models.conditioning import encode_prompts
from compress.models.guidance import DEFAULT_GUIDANCE
from compress.models.loading import DiffusionModel, load_sd_text_encoder
from compress.models.toy import NUM_CLASSES


def generate(
    model: str | os.PathLike,
    out: str | os.PathLike,
    steps: int = 25,
    sampler: str | None = None,
    class_id: int | None = None,
    prompt: str | None = None,
    guidance: float | None = None,
    seed: int = 0,
    pipeline: str | os.PathLike | None = None,
    cache_interval: int | None = None,
    cache_branch: int = 0,
) -> Path:
    """Write an image (PNG or JPEG, by `out`'s extension): toy family, one digit (`class_id`) or one of each
    class; SD family, one image for `prompt`.

    `model` may be a folder `compress export` wrote: its UNet then runs in the export's runtime.
    `cache_interval` / `cache_branch`: DeepCache-style feature reuse (`compress.models.feature_cache`).
    """
    file_format = image_format(out)  # before any sampling
    loaded = load_sampling_model(model)
    guidance = DEFAULT_GUIDANCE[loaded.family] if guidance is None else guidance
    out = Path(out)
    if loaded.family == "toy":
        if prompt is not None:
            raise CompressError("toy-family models are conditioned on a digit: use --class, not --prompt")
        if class_id is not None and not 0 <= class_id < NUM_CLASSES:
            raise CompressError(f"--class must be a digit 0..{NUM_CLASSES - 1}, got {class_id}")
        labels = torch.tensor([class_id]) if class_id is not None else torch.arange(NUM_CLASSES)
        images = sample(loaded, labels, steps=steps, sampler=sampler, guidance=guidance, seed=seed,
                        cache_interval=cache_interval, cache_branch=cache_branch)
        save_grid(images, out, columns=len(labels))
        return out
    if class_id is not None or prompt is None:
        raise CompressError("SD-family models need --prompt (and no --class)")
    image = _sample_sd(loaded, prompt, steps, sampler, guidance, seed, pipeline, cache_interval, cache_branch)
    with atomic_file(out) as tmp:
        Image.fromarray(image).save(tmp, format=file_format)
    return out


@torch.inference_mode()
def _sample_sd(model: DiffusionModel, prompt: str, steps: int, sampler: str | None, guidance: float, seed: int,
               pipeline: str | os.PathLike | None, cache_interval: int | None, cache_branch: int) -> np.ndarray:
    """Encode the prompt, denoise latents, decode with the pipeline's VAE: (H, W, 3) uint8."""
    from diffusers import AutoencoderKL

    root = Path(pipeline) if pipeline is not None else model.source_dir
    if model.text_encoder is None and root is not None:
        model.text_encoder, model.tokenizer = load_sd_text_encoder(root)
    if model.text_encoder is None or root is None or not (root / "vae").is_dir():
        raise CompressError("sampling an SD-family UNet needs its pipeline's text_encoder/, tokenizer/ and vae/: "
                            "pass --pipeline PIPELINE_DIR")
    cond, uncond = encode_prompts(model, [prompt]), encode_prompts(model, [""])
    unet = model.unet
    generator = torch.Generator().manual_seed(seed)
    size = unet.config.sample_size
    noise = torch.randn((1, unet.config.in_channels, size, size), generator=generator)
    scheduler = make_scheduler(model.scheduler_config, sampler, steps)
    latents = denoise(unet, scheduler, steps, noise, cond, uncond, guidance, generator,
                      cache_interval=cache_interval, cache_branch=cache_branch)
    vae = AutoencoderKL.from_pretrained(root / "vae").eval()
    image = vae.decode(latents / vae.config.scaling_factor).sample[0]
    return ((image.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
