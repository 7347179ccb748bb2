"""`compress export`: the command line over `exporters.export` and `exporters.validate_artifact`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from compress.clitools import user_errors
from compress.io import check_new_folder
from compress.models.registry import PIPELINE_INDEX, check_model_ref
from compress.types import ExportArtifact
from exporters.formats import (
    ATTENTION_IMPLEMENTATIONS,
    DEFAULT_FP16,
    FORMATS,
    MIN_OPSET,
    PALETTE_BITS,
    TARGETS,
    check_export_options,
)


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return "" if value is None else str(value)


def _summary(artifact: ExportArtifact | None, checks: list[dict] | None = None, prefix: str = "") -> None:
    """One line per check on stderr: ok / FAIL / info, the value, its limit."""
    for check in artifact.checks if checks is None else checks:
        mark = {True: "ok  ", False: "FAIL", None: "info"}[check["passed"]]
        text = " ".join(part for part in (_format(check["value"]), check["detail"]) if part)
        limit = f" (limit {_format(check['limit'])})" if check["limit"] is not None else ""
        click.echo(f"  {mark} {prefix}{check['name']}{': ' + text if text else ''}{limit}", err=True)


def _structural_note(validated: bool | str | None, format: str) -> None:
    from exporters.validate import STRUCTURAL_ONLY

    if validated == STRUCTURAL_ONLY:
        click.echo(f"  numerics not checked on this host: {format} cannot run here, so only the structure was "
                   "checked (validated: structural-only)", err=True)


def _export_pipeline(source: str, format_: str, out: str, fp16: bool | None, target: str, validate: bool,
                     overwrite: bool, seed: int) -> None:
    from exporters.pipeline import PipelineValidationError, export_pipeline

    def summary(report) -> None:
        for name, component in report.components.items():
            _summary(None, component["checks"], f"{name}: ")
        _summary(None, report.checks, "pipeline: ")

    try:
        half = DEFAULT_FP16[format_] if fp16 is None else fp16
        report = export_pipeline(source, format_, out, fp16=half, minimum_deployment_target=target,
                                 validate=validate, overwrite=overwrite, seed=seed)
    except PipelineValidationError as exc:
        summary(exc.report)
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    summary(report)
    _structural_note(report.validated, format_)
    size = sum(c["total_bytes"] for c in report.components.values()) / 1e6
    click.echo(f"wrote {out} ({format_} pipeline: {', '.join(report.components)}; {size:.1f} MB; loads as "
               f"{report.pipeline_class})")


@click.command("export")
@click.argument("source")
@click.option("--format", "format_", type=click.Choice(FORMATS), default=None,
              help="Target format (required unless --validate-only).")
@click.option("--out", required=True, type=click.Path(),
              help="Output folder (must not exist unless --overwrite). With --validate-only: the folder to check.")
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True,
              help="Static batch size (2 runs classifier-free guidance in one UNet call).")
@click.option("--height", type=click.IntRange(min=1), default=None,
              help="Input height: the latent for a UNet [default: its sample_size], the low-resolution image for "
                   "SPAN [default: 256]. A UNet's sizes must be divisible by its downsampling factor.")
@click.option("--width", type=click.IntRange(min=1), default=None, help="Input width, as --height.")
@click.option("--sequence-length", type=click.IntRange(min=1), default=None,
              help="Tokens of encoder_hidden_states [default: 77 for SD and plain UNet folders, 4 for toy].")
@click.option("--fp16/--fp32", "fp16", default=None,
              help="ONNX: fp16 graph, weights and I/O. OpenVINO: fp16 weights. Core ML: fp16 compute precision. "
                   "[default: fp32 for ONNX and OpenVINO, fp16 for Core ML]")
@click.option("--init", type=click.Choice(["pretrained", "random"]), default="pretrained", show_default=True,
              help="`random`: a registered diffusion model's exact architecture with seeded random weights "
                   "(offline; e.g. sd14 without downloading it).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of --init random and of the tracing inputs; validation uses seed + 1.")
@click.option("--opset", type=int, default=MIN_OPSET, show_default=True, help="ONNX opset (18 or newer).")
@click.option("--dynamic-batch", is_flag=True, help="ONNX: make the batch axis dynamic (other axes stay static).")
@click.option("--int8-weights", is_flag=True, help="OpenVINO: int8 weights through NNCF weight compression.")
@click.option("--minimum-deployment-target", type=click.Choice(TARGETS), default="iOS16", show_default=True,
              help="Core ML: oldest OS the package must run on.")
@click.option("--attention", type=click.Choice(ATTENTION_IMPLEMENTATIONS), default="original", show_default=True,
              help="Core ML UNets: `split-einsum` is Apple's Neural Engine attention on (B, C, 1, S) tensors.")
@click.option("--palettize", type=click.Choice([str(b) for b in PALETTE_BITS]), default=None,
              help="Core ML: cluster each weight tensor into 2**BITS values (k-means); 6 is Apple's choice for SD.")
@click.option("--chunk", is_flag=True,
              help="Core ML UNets: two packages (UnetChunk1/2) of about half the weights each, for iOS.")
@click.option("--no-validate", is_flag=True, help="Skip running the export against torch.")
@click.option("--validate-only", is_flag=True,
              help="Check the existing export in --out against SOURCE again (options come from its report).")
@click.option("--unet-only", is_flag=True,
              help="With a pipeline folder (one holding model_index.json): export only its UNet, as before.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output folder.")
@user_errors
def export_cmd(source, format_, out, batch, height, width, sequence_length, fp16, init, seed, opset, dynamic_batch,
               int8_weights, minimum_deployment_target, attention, palettize, chunk, no_validate, validate_only,
               unet_only, overwrite) -> None:
    """Export SOURCE (a UNet or SPAN: registry name, folder or checkpoint; or a whole SD pipeline folder) to ONNX,
    OpenVINO or Core ML.

    \b
    A pipeline folder (model_index.json: what diffusers, `compress prune`, `recover` and `distill` write) exports
    every component, with the signatures and names its consumer calls (guidance batch, dynamic shapes):
      onnx      OUT/{text_encoder,unet,vae_decoder,vae_encoder}/model.onnx + tokenizer/ scheduler/
                model_index.json                       optimum.onnxruntime.ORTStableDiffusionPipeline
      openvino  the same folders, openvino_model.xml   optimum.intel.OVStableDiffusionPipeline
      coreml    OUT/TextEncoder, Unet, VAEDecoder, VAEEncoder .mlpackage + vocab.json merges.txt (Apple's
                Swift pipeline, after `xcrun coremlcompiler compile` on macOS)
    --fp16 halves the text encoder and the UNet; the VAE stays fp32 (fp16 SD VAEs overflow). Each component is
    checked against torch, then one image (fixed prompt, seed, latents, 3 steps, guidance 7.5) is generated
    through the export and through torch: max pixel difference <= 2/255 and PSNR >= 40 dB at fp32, PSNR >= 30 dB
    at fp16 or OpenVINO's bf16.

    \b
    Layouts, as the pipelines read them:
      onnx      OUT/unet/model.onnx (+ model.onnx_data over 2 GB) + unet/config.json  (optimum ORT)
      openvino  OUT/unet/openvino_model.xml/.bin + unet/config.json                   (optimum-intel)
      coreml    OUT/Unet.mlpackage, or UnetChunk1/2.mlpackage with --chunk            (Apple's Swift pipeline)
      SPAN      OUT/span_xS.onnx, span_xS.xml/.bin, span_xS.mlpackage
    Inputs sample, timestep, encoder_hidden_states -> out_sample (SPAN: image -> upscaled) in every format.

    \b
    After exporting, the model runs on fresh seeded inputs and is compared with torch: relative L2 error at most
    1e-4 (fp32 weights), 1e-2 (fp16) or 5e-2 (int8). Core ML is compared (PSNR >= 35 dB) on macOS only;
    elsewhere its packages are checked structurally. Everything lands in OUT/export_report.json.

    \b
    Exit codes: 0 exported (and validated); 2 bad input, nothing written; 1 validation failed: OUT is kept,
    with the failed checks in its report, so it can be inspected.
    Examples:
      compress export toy --format onnx --out toy-onnx
      compress export sd14 --init random --format openvino --fp16 --out sd14-ov
      compress export toy-pruned --format coreml --attention split-einsum --chunk --out toy-coreml
    """
    options = {"opset": opset, "dynamic_batch": dynamic_batch, "int8_weights": int8_weights,
               "minimum_deployment_target": minimum_deployment_target, "attention": attention,
               "palettize": None if palettize is None else int(palettize), "chunk": chunk}
    if not validate_only:  # refused before torch is imported
        if format_ is None:
            raise click.UsageError("--format is required (or pass --validate-only)")
        check_model_ref(source)
        check_export_options(format_, options)
        check_new_folder(out, overwrite)
    if not unet_only and (Path(source) / PIPELINE_INDEX).is_file():
        given = {"--batch": batch != 1, "--height": height is not None, "--width": width is not None,
                 "--sequence-length": sequence_length is not None, "--init": init != "pretrained",
                 "--opset": opset != MIN_OPSET, "--dynamic-batch": dynamic_batch, "--int8-weights": int8_weights,
                 "--attention": attention != "original", "--palettize": palettize is not None, "--chunk": chunk,
                 "--validate-only": validate_only}
        refused = [name for name, set_ in given.items() if set_]
        if refused:
            raise click.UsageError(f"{', '.join(refused)} apply to single-model exports; {source} is a pipeline "
                                   "folder (pass --unet-only to export its UNet alone)")
        _export_pipeline(source, format_, out, fp16, minimum_deployment_target, not no_validate, overwrite, seed)
        return
    from exporters import ValidationError, export, validate_artifact

    try:
        if validate_only:
            artifact = validate_artifact(out, source)
        else:
            artifact = export(source, format_, out, batch=batch, height=height, width=width,
                              sequence_length=sequence_length, fp16=fp16, init=init, seed=seed,
                              validate=not no_validate, overwrite=overwrite, **options)
    except ValidationError as exc:
        _summary(exc.artifact)
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    _summary(artifact)
    _structural_note(artifact.validated, artifact.format)
    size = artifact.total_bytes / 1e6
    click.echo(f"wrote {out}/{artifact.path} ({artifact.format}, {size:.1f} MB, {artifact.export_seconds:.1f} s)")
