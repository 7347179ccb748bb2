"""`evaluate`: sample a toy-family model and score the samples with the digit classifier.

Three numbers answer "did compression hurt?": `class_accuracy` (are samples the digit they were asked for),
`fd` and `kid` (do they look like real digits, in the classifier's feature space), read against `fd_real` and
`kid_real`, the distances between two sets of real digits. Each is a mean over sampling seeds with its spread:
a difference smaller than the spread is not a difference.
"""

from __future__ import annotations

import functools
import os
import statistics
import time
from collections.abc import Sequence

import torch
from tqdm import tqdm

from compress.data.digits import load_digits
from compress.errors import CompressError
from compress.evaluate.classifier import classify
from compress.evaluate.defaults import DEFAULT_SEEDS, check_seeds
from compress.evaluate.frechet import frechet_distance, kernel_distance
from compress.evaluate.images import save_grid
from compress.evaluate.sampling import load_sampling_model, resolve_sampler, sample
from compress.io import atomic_file, write_json
from compress.models.guidance import DEFAULT_GUIDANCE
from compress.models.loading import DiffusionModel
from compress.models.registry import get_spec, is_registered
from compress.models.toy import NUM_CLASSES
from compress.types import EvalResult

SAMPLING_BATCH = 250


@functools.lru_cache(maxsize=2)
def real_features(split: str) -> torch.Tensor:
    """Classifier features of the real `train` or `heldout` digits (computed once per process)."""
    return classify(load_digits(split).images)[1]


def kid(features: torch.Tensor, reference: torch.Tensor) -> float:
    """KID on features divided by one fixed scale, the RMS of the real train features.

    KID's kernel (x.y / D + 1)^3 was made for Inception features, where x.y / D is about 1; our classifier's raw
    features have norms near 70, so the cubic kernel's values (about 1e5) would swamp the estimate with noise
    (train vs held-out digits read -1178 raw, -0.012 scaled). A scale taken from real data alone changes no ranking.
    """
    scale = real_features("train").pow(2).mean().sqrt()
    return kernel_distance(features / scale, reference / scale)


def _load_toy(model: str | os.PathLike | DiffusionModel) -> DiffusionModel:
    """Accept a loaded model, a registry name, a folder or an export folder; anything but the toy family is an error."""
    if not isinstance(model, DiffusionModel) and is_registered(str(model)) and get_spec(str(model)).family != "toy":
        # fail before any download
        raise CompressError(f"eval needs a toy-family model; {model} is a {get_spec(str(model)).family} model")
    loaded = load_sampling_model(model, family="toy")
    if loaded.family != "toy" or loaded.conditioner is None:
        raise CompressError(
            f"eval needs a toy-family model; {loaded.name} is a {loaded.family} model "
            "(a folder needs unet/ and conditioner/, as the toolkit writes for the toy)"
        )
    return loaded


def mean_and_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def within_noise(a: dict, b: dict, metric: str = "fd") -> bool:
    """The project's rule for two results' `metric` (`metric` and `metric_std` keys): a difference no larger than
    the two stds together is not a difference."""
    return abs(a[metric] - b[metric]) <= a[f"{metric}_std"] + b[f"{metric}_std"]


def lower_beyond_noise(a: dict, b: dict, metric: str = "fd") -> bool:
    """`a`'s `metric` is below `b`'s by more than the two stds together (the one-sided form of `within_noise`)."""
    return a[metric] < b[metric] and not within_noise(a, b, metric)


def evaluate(
    model: str | os.PathLike | DiffusionModel,
    steps: int = 25,
    sampler: str | None = None,
    samples: int = 500,
    guidance: float = DEFAULT_GUIDANCE["toy"],
    seeds: Sequence[int] = DEFAULT_SEEDS,
    json_path: str | os.PathLike | None = None,
    grid_path: str | os.PathLike | None = None,
    progress: bool = False,
    cache_interval: int | None = None,
    cache_branch: int = 0,
) -> EvalResult:
    """Sample `samples` images (labels cycling 0..9) per seed, score each run, and report mean and spread.

    `model` is a toy-family registry name, a folder the toolkit wrote (pruned, recovered, distilled), a folder
    `compress export` wrote (sampled through its runtime) or a loaded `DiffusionModel`. `sampler=None` uses the
    scheduler saved with the model (DDIM if none). Optionally writes the JSON and a PNG grid of the first seed.
    `cache_interval` / `cache_branch`: DeepCache-style feature reuse while sampling (`sample`).
    """
    if samples < 2:
        raise CompressError(f"samples must be at least 2 (a covariance needs two), got {samples}")
    seeds = check_seeds(seeds)
    start = time.perf_counter()
    loaded = _load_toy(model)
    sampler_name = resolve_sampler(loaded.scheduler_config, sampler)
    labels = torch.arange(samples) % NUM_CLASSES
    heldout = real_features("heldout")
    runs, first_images = [], None
    batches = -(-samples // SAMPLING_BATCH)
    bar = tqdm(total=len(seeds) * batches * steps, desc=f"sample {len(seeds)} seed(s)", disable=not progress)
    for seed in seeds:
        sampling_start = time.perf_counter()
        images = sample(loaded, labels, steps=steps, sampler=sampler_name, guidance=guidance, seed=seed,
                        batch_size=SAMPLING_BATCH, bar=bar, cache_interval=cache_interval, cache_branch=cache_branch)
        sampling_seconds = time.perf_counter() - sampling_start
        predicted, features = classify(images)
        runs.append({"seed": seed, "class_accuracy": round((predicted == labels).float().mean().item(), 4),
                     "fd": round(frechet_distance(features, heldout), 4),
                     "kid": round(kid(features, heldout), 6),
                     "sampling_seconds": round(sampling_seconds, 2)})
        first_images = images if first_images is None else first_images
    bar.close()
    spread = {metric: mean_and_std([run[metric] for run in runs]) for metric in ("class_accuracy", "fd", "kid")}
    digits = {"class_accuracy": 4, "fd": 4, "kid": 6}
    result = EvalResult(
        model=str(loaded.name),
        **{key: round(value, digits[metric]) for metric, (mean, std) in spread.items()
           for key, value in ((metric, mean), (f"{metric}_std", std))},
        fd_real=round(frechet_distance(real_features("train"), heldout), 4),
        kid_real=round(kid(real_features("train"), heldout), 6),
        samples=samples,
        steps=steps,
        sampler=sampler_name,
        guidance=float(guidance),
        seeds=list(seeds),
        per_seed=runs,
        runtime=getattr(loaded.unet, "runtime", "torch"),
        precision=getattr(loaded.unet, "precision", str(loaded.unet.dtype).removeprefix("torch.")),
        seconds=round(time.perf_counter() - start, 1),
        sampling_seconds=round(sum(run["sampling_seconds"] for run in runs), 2),
        cache_interval=cache_interval,
        cache_branch=cache_branch if cache_interval is not None else None,
    )
    if json_path is not None:
        with atomic_file(json_path) as tmp:
            write_json(tmp, result.to_dict())
    if grid_path is not None:
        save_grid(first_images, grid_path)
    return result
