"""`evaluate`: sample a toy-family model and score the samples with the digit classifier.

Two numbers answer "did compression hurt?": `class_accuracy` (are samples the digit they
were asked for) and `fd` (do they look like real digits, in the classifier's feature space),
read against `fd_real`, the distance between two sets of real digits.
"""

from __future__ import annotations

import functools
import os
import time
from pathlib import Path

import torch

from compress.data.digits import load_digits
from compress.errors import CompressError
from compress.evaluate.classifier import classify
from compress.evaluate.frechet import frechet_distance
from compress.evaluate.images import save_grid
from compress.evaluate.sampling import resolve_sampler, sample
from compress.io import atomic_file, write_json
from compress.models.guidance import DEFAULT_GUIDANCE
from compress.models.loading import DiffusionModel
from compress.models.registry import get_spec, is_registered
from compress.models.resolve import load_diffusion_model
from compress.models.toy import NUM_CLASSES
from compress.types import EvalResult


@functools.lru_cache(maxsize=2)
def real_features(split: str) -> torch.Tensor:
    """Classifier features of the real `train` or `heldout` digits (computed once per process)."""
    return classify(load_digits(split).images)[1]


def _load_toy(model: str | os.PathLike | DiffusionModel) -> DiffusionModel:
    """Accept a loaded model, a registry name or a folder; anything but the toy family is an error."""
    if isinstance(model, DiffusionModel):
        loaded = model
    else:
        if is_registered(str(model)) and get_spec(str(model)).family != "toy":  # fail before any download
            raise CompressError(f"eval needs a toy-family model; {model} is a {get_spec(str(model)).family} model")
        loaded = load_diffusion_model(model)
    if loaded.family != "toy" or loaded.conditioner is None:
        raise CompressError(
            f"eval needs a toy-family model; {loaded.name} is a {loaded.family} model "
            "(a folder needs unet/ and conditioner/, as the toolkit writes for the toy)"
        )
    return loaded


def evaluate(
    model: str | os.PathLike | DiffusionModel,
    steps: int = 25,
    sampler: str | None = None,
    samples: int = 500,
    guidance: float = DEFAULT_GUIDANCE["toy"],
    seed: int = 0,
    json_path: str | os.PathLike | None = None,
    grid_path: str | os.PathLike | None = None,
    progress: bool = False,
) -> EvalResult:
    """Sample `samples` images (labels cycling 0..9) and score them; optionally write JSON and a PNG grid.

    `model` is a toy-family registry name, a folder the toolkit wrote (pruned, recovered,
    distilled) or a loaded `DiffusionModel`. `sampler=None` uses the scheduler saved with
    the model (DDIM if none).
    """
    if samples < 2:
        raise CompressError(f"samples must be at least 2 (a covariance needs two), got {samples}")
    start = time.perf_counter()
    loaded = _load_toy(model)
    sampler_name = resolve_sampler(loaded.scheduler_config, sampler)
    labels = torch.arange(samples) % NUM_CLASSES
    sampling_start = time.perf_counter()
    images = sample(loaded, labels, steps=steps, sampler=sampler_name, guidance=guidance, seed=seed,
                    progress=progress)
    sampling_seconds = time.perf_counter() - sampling_start
    predicted, features = classify(images)
    heldout = real_features("heldout")
    result = EvalResult(
        model=str(loaded.name),
        class_accuracy=round((predicted == labels).float().mean().item(), 4),
        fd=round(frechet_distance(features, heldout), 4),
        fd_real=round(frechet_distance(real_features("train"), heldout), 4),
        samples=samples,
        steps=steps,
        sampler=sampler_name,
        guidance=float(guidance),
        seed=seed,
        seconds=round(time.perf_counter() - start, 1),
        sampling_seconds=round(sampling_seconds, 2),
    )
    if json_path is not None:
        with atomic_file(json_path) as tmp:
            write_json(tmp, result.to_dict())
    if grid_path is not None:
        save_grid(images, grid_path)
    return result


def default_grid_path(json_path: str | os.PathLike) -> Path:
    """Where the sample grid goes when only `--json` is given: beside it, same stem."""
    return Path(json_path).with_suffix(".png")
