"""`compress eval`: parse arguments and call `compress.evaluate.evaluate`."""

from __future__ import annotations

from pathlib import Path

import click

from compress.clitools import IntList, feature_cache_options, user_errors
from compress.evaluate.defaults import DEFAULT_SEEDS, SAMPLER_NAMES, check_seeds
from compress.io import check_new_files, image_format
from compress.models.guidance import DEFAULT_GUIDANCE
from compress.models.registry import check_model_ref


@click.command("eval")
@click.option("--model", "model", required=True, metavar="NAME_OR_DIR",
              help="'toy', a folder the toolkit wrote for it (pruned, recovered, distilled), or a folder "
                   "`compress export` wrote (sampled through ONNX Runtime or OpenVINO: the quality of what ships).")
@click.option("--steps", type=click.IntRange(min=1), default=25, show_default=True, help="Sampling steps.")
@click.option("--sampler", type=click.Choice(SAMPLER_NAMES), default=None,
              help="Sampler; default: the scheduler saved with the model (LCM students), else ddim.")
@click.option("--samples", type=click.IntRange(min=2), default=500, show_default=True,
              help="Images to generate; labels cycle 0..9.")
@click.option("--guidance", type=click.FloatRange(min=0.0), default=DEFAULT_GUIDANCE["toy"], show_default=True,
              help="Classifier-free guidance scale (1 = no guidance, half the UNet calls).")
@click.option("--seeds", type=IntList(), default=",".join(map(str, DEFAULT_SEEDS)), show_default=True,
              help="Noise seeds, one sampling run each; the report is their mean +- std. A seed gives the same "
                   "images every time.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the result as JSON here.")
@click.option("--grid", "grid_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write a grid of the first seed's samples (one class per column) here, .png or .jpg; default: "
                   "beside --json, same stem, .png.")
@click.option("--overwrite", is_flag=True, help="Replace --json and the grid if they exist.")
@feature_cache_options
@user_errors
def eval_cmd(model: str, steps: int, sampler: str | None, samples: int, guidance: float, seeds: tuple[int, ...],
             json_path: Path | None, grid_path: Path | None, overwrite: bool, cache_interval: int | None,
             cache_branch: int) -> None:
    """Sample a toy-family model once per seed and score the samples: mean +- std over the seeds.

    \b
    class_accuracy  share of samples the digit classifier reads as their conditioning class
    fd              Frechet distance of classifier features, samples vs held-out digits
    kid             kernel (MMD^2) distance of the same features: unbiased, so it does not drift with --samples
    fd_real         fd and kid of train vs held-out digits: the floor
    kid_real

    \b
    compress eval --model toy                           3 seeds, 5 to 13 min on 2 CPU cores
    compress eval --model out/pruned --steps 10 --json out/pruned/eval.json
    compress eval --model out/toy-onnx                  an export, sampled by its runtime
    compress eval --model toy --cache-interval 3        DeepCache-style reuse of deep features
    """
    check_model_ref(model)
    check_seeds(seeds)
    if grid_path is None and json_path is not None:
        grid_path = json_path.with_suffix(".png")  # the grid goes beside the JSON, same stem
    check_new_files([json_path, grid_path], overwrite)  # before any sampling: nothing unnamed is replaced
    if grid_path is not None:
        image_format(grid_path)
    from compress.evaluate.quality import evaluate
    result = evaluate(model, steps=steps, sampler=sampler, samples=samples, guidance=guidance, seeds=seeds,
                      json_path=json_path, grid_path=grid_path, progress=True, cache_interval=cache_interval,
                      cache_branch=cache_branch)
    click.echo(f"model           {result.model}")
    click.echo(f"runtime         {result.runtime} ({result.precision})")
    click.echo(f"sampling        {result.sampler}, {result.steps} steps, guidance {result.guidance:g}, "
               f"{result.samples} samples x seeds {','.join(map(str, result.seeds))}"
               + (f", features reused: a full call every {cache_interval} steps, branch {cache_branch}"
                  if cache_interval is not None else ""))
    for metric in ("class_accuracy", "fd", "kid"):
        mean, std = getattr(result, metric), getattr(result, f"{metric}_std")
        per_seed = " ".join(f"{run[metric]:.4g}" for run in result.per_seed)
        floor = f"   (real digits: {getattr(result, f'{metric}_real'):.4g})" if metric != "class_accuracy" else ""
        click.echo(f"{metric:<15} {mean:.4g} +- {std:.2g}   [per seed: {per_seed}]{floor}")
    click.echo(f"seconds         {result.seconds} (sampling {result.sampling_seconds})")
    for label, path in (("json", json_path), ("grid", grid_path)):
        if path is not None:
            click.echo(f"wrote {label} {path}")
