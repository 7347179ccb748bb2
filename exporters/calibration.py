"""Calibration inputs for 8-bit quantization, drawn from what the model will actually see.

A UNet is calibrated on the inputs its own sampler feeds it: seeded trajectories of the model (toy classes, the
calib_data prompts, or seeded embeddings for a random-weight model) are run in torch and every UNet call is
recorded, then the same number of rows is kept from every timestep, so the set is spread over the sampling schedule
(Q-Diffusion and PTQ4DM showed that calibrating on one timestep fails). A consistency student is calibrated at its
own few LCM steps with its guidance embedding; a teacher over its DDIM schedule, conditional and unconditional
calls both. SPAN is calibrated on low-resolution crops of a folder of photographs (default: the shipped training
split), made the way `compress sr eval` makes its inputs. One seed gives the same set.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

import torch

from compress.errors import CompressError
from compress.models.guidance import DEFAULT_GUIDANCE
from compress.models.loading import DiffusionModel

TEACHER_STEPS = 25  # `compress eval`'s default
STUDENT_STEPS = 4  # what a consistency student is distilled for and sampled at


@dataclass
class CalibrationSet:
    """Rows of model inputs (each a dict of input name -> tensor with a leading axis of 1) and how they were made."""

    rows: list[dict[str, torch.Tensor]]
    info: dict[str, Any] = field(default_factory=dict)

    def batches(self, batch: int) -> list[dict[str, torch.Tensor]]:
        """The rows grouped into the export's static batch (the last group repeats its final row to fill it)."""
        groups = []
        for begin in range(0, len(self.rows), batch):
            chunk = self.rows[begin:begin + batch]
            chunk += [chunk[-1]] * (batch - len(chunk))
            groups.append({name: torch.cat([row[name] for row in chunk]) for name in chunk[0]})
        return groups


class _RecordingUNet:
    """Stands in for the UNet in the sampling loop and records every call's inputs, one row per batch item."""

    def __init__(self, unet: Any):
        self.unet, self.config, self.dtype = unet, unet.config, unet.dtype
        self.calls: list[tuple[float, list[dict[str, torch.Tensor]]]] = []

    def __call__(self, sample: torch.Tensor, timestep: Any, encoder_hidden_states: torch.Tensor,
                 timestep_cond: torch.Tensor | None = None) -> Any:
        rows = len(sample)
        t = torch.as_tensor(timestep, dtype=torch.float32).reshape(-1).expand(rows)
        inputs = {"sample": sample, "timestep": t, "encoder_hidden_states": encoder_hidden_states.expand(rows, -1, -1)}
        if timestep_cond is not None:
            inputs["timestep_cond"] = timestep_cond
        self.calls.append((float(t[0]), [{k: v[i:i + 1].detach().float().clone() for k, v in inputs.items()}
                                         for i in range(rows)]))
        return self.unet(sample, timestep, encoder_hidden_states, timestep_cond=timestep_cond)


def sampling_defaults(model: DiffusionModel, steps: int | None, sampler: str | None, guidance: float | None
                      ) -> tuple[int, str, float]:
    """(steps, sampler, guidance) the model is sampled with: a consistency student LCM at its 4 steps, a teacher its
    saved sampler (DDIM by default) at 25, each family's default guidance."""
    from compress.evaluate.sampling import resolve_sampler

    student = bool(model.unet.config.get("time_cond_proj_dim"))
    sampler = resolve_sampler(model.scheduler_config, sampler or ("lcm" if student else None))
    steps = steps or (STUDENT_STEPS if student else TEACHER_STEPS)
    return steps, sampler, DEFAULT_GUIDANCE[model.family] if guidance is None else guidance


@torch.no_grad()
def unet_calibration(model: DiffusionModel, sample_shape: tuple[int, int, int], samples: int, seed: int,
                     steps: int | None = None, sampler: str | None = None, guidance: float | None = None
                     ) -> CalibrationSet:
    """`samples` UNet input rows from seeded sampling trajectories of `model`, the same count from every step."""
    from compress.evaluate.sampling import denoise, make_scheduler
    from compress.models.conditioning import calibration_conditioning

    if samples < 1:
        raise CompressError(f"calibration samples must be at least 1, got {samples}")
    steps, sampler, guidance = sampling_defaults(model, steps, sampler, guidance)
    scheduler = make_scheduler(model.scheduler_config, sampler, steps)
    trajectories = math.ceil(samples / steps)
    cond, uncond = calibration_conditioning(model, trajectories, seed)
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn((trajectories, *sample_shape), generator=generator)
    recorder = _RecordingUNet(model.unet)
    denoise(recorder, scheduler, steps, noise, cond.float(), uncond.float(), guidance, generator)
    by_step: dict[float, list[dict[str, torch.Tensor]]] = {}
    for t, rows in recorder.calls:
        by_step.setdefault(t, []).extend(rows)
    timesteps = list(by_step)
    picks = torch.Generator().manual_seed(seed + 1)
    chosen = []
    for index, t in enumerate(timesteps):  # an equal share per step; the first steps take the remainder
        share = samples // len(timesteps) + (index < samples % len(timesteps))
        order = torch.randperm(len(by_step[t]), generator=picks)[:share]
        chosen += [by_step[t][i] for i in order.tolist()]
    info = {"source": "sampling trajectories", "samples": len(chosen), "seed": seed, "trajectories": trajectories,
            "steps": steps, "sampler": sampler, "guidance": guidance, "timesteps": [round(t, 3) for t in timesteps]}
    return CalibrationSet(chosen, info)


def span_calibration(scale: int, crop: int, samples: int, seed: int, folder: str | os.PathLike | None = None
                     ) -> CalibrationSet:
    """`samples` low-resolution crops (crop x crop pixels, 8-bit like `compress sr eval`'s inputs) of random
    places in the high-resolution images of `folder` (default: the shipped SPAN training split) that are large
    enough to hold one."""
    from compress.sr.evaluate import degrade
    from compress.sr.files import list_images, read_image, split_images

    if samples < 1:
        raise CompressError(f"calibration samples must be at least 1, got {samples}")
    images = split_images("train") if folder is None else {p.name: read_image(p) for p in list_images(folder)}
    hr = crop * scale
    pool = [image for image in images.values() if min(image.shape[-2:]) >= hr]  # smaller ones cannot be cropped
    if not pool:
        raise CompressError(f"no calibration image is {hr} pixels on its shorter side, which the {crop}-pixel "
                            f"calibration input at x{scale} needs")
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(samples):
        image = pool[int(torch.randint(len(pool), (1,), generator=generator))]
        top = int(torch.randint(image.shape[1] - hr + 1, (1,), generator=generator))
        left = int(torch.randint(image.shape[2] - hr + 1, (1,), generator=generator))
        rows.append({"image": degrade(image[None, :, top:top + hr, left:left + hr], scale)})
    info = {"source": "training split" if folder is None else str(folder), "samples": samples, "seed": seed,
            "crop": crop, "images": len(pool), "images_too_small": len(images) - len(pool)}
    return CalibrationSet(rows, info)
