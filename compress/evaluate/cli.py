"""`compress eval`: parse arguments and call `compress.evaluate.evaluate`."""

from __future__ import annotations

from pathlib import Path

import click

from compress.clitools import user_errors
from compress.evaluate.quality import default_grid_path, evaluate
from compress.evaluate.sampling import SAMPLERS
from compress.models.guidance import DEFAULT_GUIDANCE


@click.command("eval")
@click.option("--model", "model", required=True, metavar="NAME_OR_DIR",
              help="'toy' or a folder the toolkit wrote for it (pruned, recovered, distilled).")
@click.option("--steps", type=click.IntRange(min=1), default=25, show_default=True, help="Sampling steps.")
@click.option("--sampler", type=click.Choice(list(SAMPLERS)), default=None,
              help="Sampler; default: the scheduler saved with the model (LCM students), else ddim.")
@click.option("--samples", type=click.IntRange(min=2), default=500, show_default=True,
              help="Images to generate; labels cycle 0..9.")
@click.option("--guidance", type=click.FloatRange(min=0.0), default=DEFAULT_GUIDANCE["toy"], show_default=True,
              help="Classifier-free guidance scale (1 = no guidance, half the UNet calls).")
@click.option("--seed", type=int, default=0, show_default=True, help="Noise seed; the same seed gives the same images.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the result as JSON here.")
@click.option("--grid", "grid_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write a PNG grid of samples (one class per column) here; default: beside --json.")
@user_errors
def eval_cmd(model: str, steps: int, sampler: str | None, samples: int, guidance: float, seed: int,
             json_path: Path | None, grid_path: Path | None) -> None:
    """Sample a toy-family model and score the samples.

    \b
    class_accuracy  share of samples the digit classifier reads as their conditioning class
    fd              Frechet distance of classifier features, samples vs held-out digits
    fd_real         the same for train vs held-out digits: the floor

    \b
    compress eval --model toy
    compress eval --model out/pruned --steps 10 --json out/pruned/eval.json
    """
    if grid_path is None and json_path is not None:
        grid_path = default_grid_path(json_path)
    result = evaluate(model, steps=steps, sampler=sampler, samples=samples, guidance=guidance, seed=seed,
                      json_path=json_path, grid_path=grid_path, progress=True)
    for key, value in result.to_dict().items():
        click.echo(f"{key:<15} {value}")
    for label, path in (("json", json_path), ("grid", grid_path)):
        if path is not None:
            click.echo(f"wrote {label} {path}")
