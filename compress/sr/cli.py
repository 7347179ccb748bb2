"""`compress sr ...`: train, evaluate, run and size SPAN models. Arguments only; the work is in `compress.sr`."""

from __future__ import annotations

from pathlib import Path

import click

from compress.clitools import command_line, deprecated_alias, user_errors
from compress.errors import CompressError
from compress.io import atomic_file, check_new_files
from compress.models.registry import check_model_ref
from compress.sr.settings import INITS, TrainConfig, check_folder_output, check_sr_train, check_tiling

MODEL_HELP = "registry name (span-x2, span-x4), a folder written by `compress sr train`, or a checkpoint file"


@click.group("sr")
def sr() -> None:
    """SPAN super-resolution (Wan et al., NTIRE 2024 efficient SR winner).

    \b
    compress sr train --scale 2 --channels 16 --data imgs/ --steps 2000 --out runs/x2
    compress sr eval --model span-x2 --data test_imgs/ --json scores.json
    compress sr upscale --model span-x4 photo.png photo_x4.png
    compress sr info --channels 48 --scale 4
    compress sr export-official --model span-x2 span_x2.pth   # for spandrel / chaiNNer / BasicSR
    """


@sr.command("train")
@click.option("--scale", type=int, required=True, help="Upscaling factor: 2, 3 or 4.")
@click.option("--channels", type=int, default=48, show_default=True, help="Feature channels C (paper: 48).")
@click.option("--data", required=True, help="Folder of high-resolution training images.")
@click.option("--steps", type=int, default=None, help="Optimiser steps (required).")
@click.option("--out", required=True,
              help="Run folder: checkpoint.pt and the log while training, the model and training.json at the end.")
@click.option("--val-data", help="Folder of validation images (default: the training images).")
@click.option("--batch-size", type=int, default=16, show_default=True, help="Per-process batch size.")
@click.option("--patch-size", type=int, default=48, show_default=True, help="Low-resolution crop side in pixels.")
@click.option("--lr", type=float, default=5e-4, show_default=True, help="Initial Adam learning rate.")
@click.option("--min-lr", type=float, default=1e-6, show_default=True, help="Learning rate at the end of the cosine.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--init", type=click.Choice(INITS), default="bilinear", show_default=True,
              help="'bilinear': start as bilinear upscaling (fast start); 'default': PyTorch's, as the authors.")
@click.option("--val-every", type=int, default=500, show_default=True, help="Validate every N steps.")
@click.option("--checkpoint-every", type=int, default=None, help="Checkpoint every N steps.  [default: 500]")
@click.option("--ckpt-dir", help="Keep checkpoint.pt and the log here instead, and write only the model to OUT.")
@click.option("--iters", type=int, default=None, hidden=True, help="Deprecated alias of --steps.")
@click.option("--ckpt-every", type=int, default=None, hidden=True, help="Deprecated alias of --checkpoint-every.")
@click.option("--resume", is_flag=True, help="Continue the run from its checkpoint.pt.")
@click.option("--overwrite", is_flag=True, help="Start over in an existing run folder (or replace OUT).")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
@user_errors
def train_cmd(data, out, val_data, ckpt_dir, resume, overwrite, no_progress, steps, iters, checkpoint_every,
              ckpt_every, **config) -> None:
    """Train SPAN on a folder of high-resolution images.

    L1 loss on random crops (flips, 90-degree rotations) whose low-resolution inputs are made by bicubic downscaling;
    Adam with cosine decay. A resumed run (--resume) ends with the same weights as an uninterrupted one.
    `--iters` and `--ckpt-every` still work as deprecated names of `--steps` and `--checkpoint-every`.
    """
    steps = deprecated_alias(steps, iters, "--steps", "--iters")
    if steps is None:
        raise click.UsageError("Missing option '--steps'.")
    checkpoint_every = deprecated_alias(checkpoint_every, ckpt_every, "--checkpoint-every", "--ckpt-every")
    train_config = TrainConfig(steps=steps, checkpoint_every=500 if checkpoint_every is None else checkpoint_every,
                               **config)
    check_sr_train(out, train_config, ckpt_dir=ckpt_dir, resume=resume, overwrite=overwrite)  # before torch
    from compress.sr import train_span

    report = train_span(data, out, train_config, val_data=val_data, ckpt_dir=ckpt_dir, resume=resume,
                        overwrite=overwrite, command=command_line(click.get_current_context()),
                        progress=not no_progress)
    if report.history:
        last = report.history[-1]
        click.echo(f"wrote {out}: val Y-PSNR {last.psnr:.2f} dB (bicubic {last.bicubic_psnr:.2f} dB)")


@sr.command("eval")
@click.option("--model", required=True, help=MODEL_HELP + ".")
@click.option("--data", required=True, help="Folder of high-resolution test images.")
@click.option("--scale", type=int, help="Expected scale; an error if the model's differs.")
@click.option("--json", "json_path", help="Also write the scores to this JSON file.")
@click.option("--tile", type=int, default=256, show_default=True, help="Low-resolution tile side.")
@user_errors
def eval_cmd(model, data, scale, json_path, tile) -> None:
    """Score a model against bicubic (Y-channel PSNR and SSIM).

    Each image is downscaled (bicubic, 8 bits), upscaled by the model and by bicubic, and scored on the BT.601 Y
    channel with SCALE pixels of border cropped; per image and mean.
    """
    check_model_ref(model)
    check_tiling(tile)
    check_new_files([json_path], overwrite=True)  # the named file may be replaced; an unwritable one fails now
    from compress.io import write_json
    from compress.sr import evaluate_sr

    result = evaluate_sr(model, data, scale=scale, tile=tile)
    width = max(len("mean"), *(len(score.name) for score in result.images))
    header = f"{'image':<{width}}  {'PSNR':>7} {'SSIM':>7}  {'bicubic':>7} {'SSIM':>7}"
    click.echo(f"{header}   (x{result.scale}, Y channel, dB)")
    for row in [*result.images, result]:
        name = getattr(row, "name", "mean")
        click.echo(f"{name:<{width}}  {row.psnr:7.2f} {row.ssim:7.4f}  {row.bicubic_psnr:7.2f} {row.bicubic_ssim:7.4f}")
    if json_path:
        write_json(json_path, result)


@sr.command("upscale")
@click.argument("input_path", metavar="IN")
@click.argument("output_path", metavar="OUT")
@click.option("--model", required=True, help=MODEL_HELP + ".")
@click.option("--scale", type=int, help="Expected scale; an error if the model's differs.")
@click.option("--tile", type=int, default=256, show_default=True, help="Low-resolution tile side (bounds memory).")
@click.option("--overlap", type=int, default=24, show_default=True, help="Context pixels around each tile.")
@click.option("--overwrite", is_flag=True, help="Replace an existing OUT.")
@user_errors
def upscale_cmd(input_path, output_path, model, scale, tile, overlap, overwrite) -> None:
    """Upscale an image, or a folder of images.

    IN and OUT are image files, or folders (every image in IN becomes a PNG of the same name in OUT). Output is
    clamped to [0, 1] and rounded to 8 bits; grey images come out as RGB and alpha is dropped. Tiles of TILE pixels
    with OVERLAP pixels of context keep memory bounded on large images.
    """
    check_model_ref(model)
    check_tiling(tile, overlap)
    if Path(input_path).is_dir():
        check_folder_output(input_path, output_path, overwrite)
    else:
        check_new_files([output_path], overwrite)
    from compress.sr import upscale_folder, upscale_image

    options = dict(scale=scale, tile=tile, overlap=overlap, overwrite=overwrite)
    if Path(input_path).is_dir():
        outputs = upscale_folder(model, input_path, output_path, **options)
        click.echo(f"wrote {len(outputs)} images to {output_path}")
    else:
        upscale_image(model, input_path, output_path, **options)
        click.echo(f"wrote {output_path}")


@sr.command("export-official")
@click.argument("output_path", metavar="OUT")
@click.option("--model", required=True, help=MODEL_HELP + ".")
@click.option("--no-params", is_flag=True, help="Save the bare state dict instead of BasicSR's {'params': ...}.")
@click.option("--overwrite", is_flag=True, help="Replace an existing OUT.")
@user_errors
def export_official_cmd(output_path, model, no_params, overwrite) -> None:
    """Write a model in the official SPAN training layout, for spandrel, chaiNNer, ComfyUI and BasicSR.

    \b
    OUT is a .pth (under `params` unless --no-params) or a .safetensors file. Every re-parameterisable conv gets
    its training branches (exact stand-ins for a fused model) and `eval_conv` filled by the exact fuse:
      compress sr export-official --model span-x4 span_x4_official.pth
    """
    out = Path(output_path)
    if out.suffix not in (".pth", ".pt", ".safetensors"):
        raise CompressError(f"OUT must end in .pth or .safetensors, not {out.name!r}")
    check_model_ref(model)
    check_new_files([out], overwrite)
    from compress.sr import export_official, load_span

    if out.suffix == ".safetensors":
        no_params = True  # safetensors holds tensors only
    span = load_span(model)
    with atomic_file(out) as tmp:
        export_official(span, tmp, wrapper=None if no_params else "params")
    click.echo(f"wrote {out} (official SPAN layout, C={span.channels}, x{span.scale})")


@sr.command("info")
@click.option("--channels", type=int, default=48, show_default=True, help="Feature channels C.")
@click.option("--scale", type=int, default=4, show_default=True, help="Upscaling factor: 2, 3 or 4.")
@click.option("--model", help=MODEL_HELP + " (overrides --channels/--scale).")
@click.option("--size", type=int, default=256, show_default=True, help="Input side for the MAC count.")
@user_errors
def info_cmd(channels, scale, model, size) -> None:
    """Fused parameter count and MACs.

    MACs count convolutions only (fvcore style) on a 1x3xSIZExSIZE low-resolution input.
    """
    if size < 1:
        raise CompressError(f"--size must be positive, not {size}")
    if model is not None:
        check_model_ref(model)
    from compress.sr import load_span, span_cost

    if model is not None:
        loaded = load_span(model)
        channels, scale = loaded.channels, loaded.scale
    cost = span_cost(channels, scale, size, size)
    click.echo(f"SPAN C={channels} x{scale} (fused)")
    click.echo(f"params: {cost.params:,} ({cost.params / 1e6:.3f} M)")
    click.echo(f"MACs at 1x3x{size}x{size}: {cost.macs:,} ({cost.macs / 1e9:.2f} G)")
