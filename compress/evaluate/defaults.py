"""Defaults of sampling and evaluation, and the seed check, in a module without torch: the CLI reads them."""

from __future__ import annotations

from collections.abc import Sequence

from compress.errors import CompressError

DEFAULT_SEEDS = (0, 1, 2)  # `compress eval` reports the mean and std over these sampling runs
SAMPLER_NAMES = ("ddim", "ddpm", "euler", "lcm")  # `compress.evaluate.sampling.SAMPLERS` maps them to schedulers


def check_seeds(seeds: Sequence[int]) -> tuple[int, ...]:
    """The seeds as a tuple: at least one, none repeated (a repeat would count one run twice in the spread)."""
    seeds = tuple(seeds)
    if not seeds:
        raise CompressError("seeds must name at least one seed")
    if len(set(seeds)) != len(seeds):
        raise CompressError(f"seeds {','.join(map(str, seeds))} repeats a value; each seed must differ")
    return seeds
