"""Defaults of sampling and evaluation, in a module without torch: the CLI's help reads them."""

DEFAULT_SEEDS = (0, 1, 2)  # `compress eval` reports the mean and std over these sampling runs
SAMPLER_NAMES = ("ddim", "ddpm", "euler", "lcm")  # `compress.evaluate.sampling.SAMPLERS` maps them to schedulers
