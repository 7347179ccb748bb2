"""Class-conditional sampling for toy-family models, shared by eval, recovery and distillation.

One loop serves every diffusers scheduler: `scale_model_input`, the UNet (twice with
classifier-free guidance), then `step`. Noise comes from one seeded generator, so the same
seed gives the same images.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import torch
from diffusers import DDIMScheduler, DDPMScheduler, EulerDiscreteScheduler, LCMScheduler
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from tqdm import tqdm

from compress.errors import CompressError
from compress.evaluate.defaults import SAMPLER_NAMES
from compress.models.feature_cache import DeepFeatureCache
from compress.models.guidance import DEFAULT_GUIDANCE, guidance_embedding
from compress.models.loading import DiffusionModel, scheduler_from_config
from compress.models.resolve import load_diffusion_model
from compress.models.toy import NULL_CLASS

SAMPLERS: dict[str, type[SchedulerMixin]] = dict(zip(
    SAMPLER_NAMES, (DDIMScheduler, DDPMScheduler, EulerDiscreteScheduler, LCMScheduler), strict=True))
# Saved schedulers that choose the sampler when none is asked for. A saved DDPMScheduler is
# absent on purpose: diffusers' training scripts save it as the noise schedule, not as a
# sampling choice, and ancestral DDPM at few steps is worse than DDIM.
SAVED_SAMPLERS = {"DDIMScheduler": "ddim", "EulerDiscreteScheduler": "euler", "LCMScheduler": "lcm"}
DEFAULT_SAMPLER = "ddim"


def resolve_sampler(scheduler_config: dict[str, Any], sampler: str | None = None) -> str:
    """The sampler name to use: `sampler` if given, else the one saved with the model, else DDIM."""
    if sampler is None:
        return SAVED_SAMPLERS.get(scheduler_config.get("_class_name", ""), DEFAULT_SAMPLER)
    if sampler not in SAMPLERS:
        raise CompressError(f"unknown sampler {sampler!r}; choose from {', '.join(SAMPLERS)}")
    return sampler


def make_scheduler(scheduler_config: dict[str, Any], sampler: str | None, steps: int) -> SchedulerMixin:
    """A scheduler of the chosen kind on the model's noise schedule, with `steps` timesteps set."""
    if steps < 1:
        raise CompressError(f"steps must be at least 1, got {steps}")
    scheduler = scheduler_from_config(SAMPLERS[resolve_sampler(scheduler_config, sampler)], scheduler_config)
    try:
        scheduler.set_timesteps(steps)
    except ValueError as exc:  # e.g. LCM: more steps than its original_inference_steps
        raise CompressError(f"{type(scheduler).__name__} cannot run {steps} steps: {exc}") from None
    return scheduler


def load_sampling_model(model: str | os.PathLike | DiffusionModel, family: str | None = None) -> DiffusionModel:
    """A registry name or model folder (sampled in torch), or a folder `compress export` wrote (sampled through
    its runtime, so the quality measured is that of the exported graph). `family="toy"` refuses an export of
    another family before its runtime is loaded."""
    if isinstance(model, DiffusionModel):
        return model
    from exporters.runtime import is_export_folder, load_exported_model  # the runtimes load only when asked for

    if is_export_folder(model):
        return load_exported_model(model, family)
    return load_diffusion_model(model)


def _check_labels(labels: torch.Tensor) -> torch.Tensor:
    labels = torch.as_tensor(labels, dtype=torch.long)
    if labels.ndim != 1 or labels.numel() == 0:
        raise CompressError(f"labels must be a non-empty 1-D tensor of class ids, got shape {tuple(labels.shape)}")
    if labels.min() < 0 or labels.max() > NULL_CLASS:
        raise CompressError(f"labels must be class ids in 0..{NULL_CLASS} ({NULL_CLASS} = unconditional)")
    return labels


@torch.inference_mode()
def sample(
    model: DiffusionModel,
    labels: torch.Tensor,
    steps: int = 25,
    sampler: str | None = None,
    guidance: float = DEFAULT_GUIDANCE["toy"],
    seed: int = 0,
    batch_size: int = 250,
    progress: bool = False,
    bar: tqdm | None = None,
    cache_interval: int | None = None,
    cache_branch: int = 0,
) -> torch.Tensor:
    """Generate one image per class id in `labels`: (N, C, H, W) in [-1, 1].

    `sampler` is ddim | ddpm | euler | lcm, or None for the scheduler saved with the model.
    `guidance` is the classifier-free guidance scale (1 = conditional only, one UNet pass).
    The same seed and batch size give identical images. The initial noise is drawn for all
    samples at once, so with deterministic samplers `batch_size` changes them only by rounding. `bar` (one
    update per batch and step) lets a caller show several sampling runs on one progress bar. `cache_interval`
    (with `cache_branch`) reuses deep UNet features between full calls (`compress.models.feature_cache`).
    """
    if model.conditioner is None:
        raise CompressError(f"sampling needs a toy-family model with a class conditioner; {model.name} has none")
    labels = _check_labels(labels)
    if batch_size < 1:
        raise CompressError(f"batch_size must be at least 1, got {batch_size}")
    scheduler = make_scheduler(model.scheduler_config, sampler, steps)
    unet = model.unet
    size = unet.config.sample_size
    height, width = (size, size) if isinstance(size, int) else size
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn((len(labels), unet.config.in_channels, height, width), generator=generator, dtype=unet.dtype)
    uncond = model.conditioner(torch.tensor([NULL_CLASS])).to(unet.dtype)

    chunks = list(zip(noise.split(batch_size), labels.split(batch_size), strict=True))
    images = []
    with contextlib.nullcontext(bar) if bar is not None else tqdm(
            total=len(chunks) * steps, desc="sample", disable=not progress) as bar:
        for x, chunk_labels in chunks:
            cond = model.conditioner(chunk_labels).to(unet.dtype)
            images.append(denoise(unet, scheduler, steps, x, cond, uncond, guidance, generator, bar,
                                  cache_interval, cache_branch).clamp(-1.0, 1.0))
    return torch.cat(images)


def denoise(
    unet: Any,
    scheduler: SchedulerMixin,
    steps: int,
    noise: torch.Tensor,
    cond: torch.Tensor,
    uncond: torch.Tensor,
    guidance: float,
    generator: torch.Generator,
    bar: tqdm | None = None,
    cache_interval: int | None = None,
    cache_branch: int = 0,
) -> torch.Tensor:
    """One sampling run from `noise` with classifier-free guidance.

    A consistency student (a UNet with `time_cond_proj_dim`) takes the guidance scale as an
    embedding instead, so it needs one UNet pass per step. With `cache_interval`, every UNet call goes through
    one `DeepFeatureCache` (the conditional and unconditional passes as two streams); None calls the UNet as is.
    """
    cache = DeepFeatureCache(unet, cache_interval, cache_branch) if cache_interval is not None else None

    def call(step: int, stream: str, *args: Any, **kwargs: Any) -> torch.Tensor:
        return cache(step, stream, *args, **kwargs) if cache is not None else unet(*args, **kwargs).sample

    scheduler.set_timesteps(steps)  # resets the step counter of stateful schedulers
    x = noise * scheduler.init_noise_sigma
    embed_dim = unet.config.get("time_cond_proj_dim")
    w_embedding = guidance_embedding(torch.full((len(x),), float(guidance)), embed_dim).to(x) if embed_dim else None
    uncond_batch = uncond.expand(len(x), -1, -1)
    for step, t in enumerate(scheduler.timesteps):
        model_input = scheduler.scale_model_input(x, t)
        prediction = call(step, "cond", model_input, t, cond, timestep_cond=w_embedding)
        if guidance != 1.0 and w_embedding is None:  # cond and uncond as two batches: faster on CPU than one
            uncond_prediction = call(step, "uncond", model_input, t, uncond_batch)
            prediction = uncond_prediction + guidance * (prediction - uncond_prediction)
        x = scheduler.step(prediction, t, x, generator=generator).prev_sample
        if bar is not None:
            bar.update()
    return x
