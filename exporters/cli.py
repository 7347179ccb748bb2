"""`compress export`: the command line over `exporters.export` and `exporters.validate_artifact`."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from compress.clitools import IntList, user_errors
from compress.evaluate.defaults import DEFAULT_SEEDS, check_seeds
from compress.io import check_new_folder
from compress.models.registry import PIPELINE_INDEX, check_model_ref
from compress.types import ExportArtifact
from exporters.formats import (
    ATTENTION_IMPLEMENTATIONS,
    DEFAULT_FP16,
    DEFAULT_QUANT_SAMPLES,
    FORMATS,
    MIN_OPSET,
    PALETTE_BITS,
    QUANT_MODES,
    TARGETS,
    TASK_SAMPLES,
    check_export_options,
    check_quantize_options,
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


def _checked(make: Callable[[], ExportArtifact]) -> ExportArtifact:
    """Run an export or quantization and print its checks; a failed validation prints them, its error line, and
    exits 1 (the folder is kept)."""
    from exporters import ValidationError

    try:
        artifact = make()
    except ValidationError as exc:
        _summary(exc.artifact)
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    _summary(artifact)
    _structural_note(artifact.validated, artifact.format)
    return artifact


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
    from exporters import export, validate_artifact

    if validate_only:
        artifact = _checked(lambda: validate_artifact(out, source))
    else:
        artifact = _checked(lambda: export(source, format_, out, batch=batch, height=height, width=width,
                                           sequence_length=sequence_length, fp16=fp16, init=init, seed=seed,
                                           validate=not no_validate, overwrite=overwrite, **options))
    size = artifact.total_bytes / 1e6
    click.echo(f"wrote {out}/{artifact.path} ({artifact.format}, {size:.1f} MB, {artifact.export_seconds:.1f} s)")


@click.command("quantize")
@click.argument("source")
@click.option("--format", "format_", type=click.Choice(FORMATS), required=True, help="Target runtime's format.")
@click.option("--mode", type=click.Choice(sorted({m for modes in QUANT_MODES.values() for m in modes})),
              default="w8a8", show_default=True,
              help="w8a8: int8 weights and activations, calibrated. hybrid (openvino): optimum-intel's SD recipe, "
                   "int8 weights for matmuls and w8a8 for the rest. w8: int8 weights only, data-free.")
@click.option("--out", required=True, type=click.Path(), help="Output folder (must not exist unless --overwrite).")
@click.option("--samples", type=int, default=DEFAULT_QUANT_SAMPLES, show_default=True,
              help="Calibration rows: UNet calls recorded along the model's own sampling, an equal share from every "
                   "step (SPAN: low-resolution crops).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the calibration trajectories (and of --init random); the same seed gives the same "
                   "quantized weights. Validation draws fresh inputs with seed + 1.")
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help="Sampling steps the UNet is calibrated over [default: 4 LCM steps for a consistency student, "
                   "25 for a teacher].")
@click.option("--data", type=click.Path(), default=None,
              help="SPAN: folder of high-resolution images to crop [default: the shipped training split].")
@click.option("--keep-sensitive", type=int, default=0, show_default=True,
              help="Leave this many layers unquantized: those whose int8 alone moves the output most on the "
                   "calibration set (onnx, openvino); the report lists them with their sensitivity. SPAN needs 4: "
                   "its first features feed its last convolution, and rounding them to 8 bits costs dB.")
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True,
              help="Static batch of a UNet export (2 runs guidance in one call).")
@click.option("--height", type=click.IntRange(min=1), default=None,
              help="A UNet's latent height, calibrated and exported at [default: its sample_size].")
@click.option("--width", type=click.IntRange(min=1), default=None, help="A UNet's latent width, as --height.")
@click.option("--dynamic-batch", is_flag=True, help="ONNX: make the batch axis dynamic.")
@click.option("--init", type=click.Choice(["pretrained", "random"]), default="pretrained", show_default=True,
              help="`random`: a registered model's architecture with seeded random weights (sd14 offline; its "
                   "quality then rests on the tensor check alone).")
@click.option("--task-samples", type=click.IntRange(min=2), default=TASK_SAMPLES, show_default=True,
              help="Toy: samples per seed of the fd check.")
@click.option("--task-seeds", type=IntList(), default=",".join(map(str, DEFAULT_SEEDS)), show_default=True,
              help="Toy: sampling seeds of the fd check (mean over them).")
@click.option("--no-task-check", is_flag=True, help="Skip the task metric (tensor checks only; minutes faster).")
@click.option("--overwrite", is_flag=True, help="Replace an existing output folder.")
@user_errors
def quantize_cmd(source, format_, mode, out, samples, seed, steps, data, keep_sensitive, batch, height, width,
                 dynamic_batch, init, task_samples, task_seeds, no_task_check, overwrite) -> None:
    """Quantize SOURCE (a UNet: toy, sd14, pruned, distilled; or SPAN) to 8 bits for a runtime, calibrated on
    what the model sees when it runs, and check it by tensors and by the task.

    \b
    openvino  w8a8    nncf.quantize (UNets: transformer preset, SmoothQuant; fast bias correction)
              hybrid  optimum-intel's SD recipe: int8 weights for weighted matmuls, w8a8 for the rest
              w8      nncf.compress_weights
    onnx      w8a8    onnxruntime quantize_static: QDQ, per-channel int8 weights, uint8 activations
              w8      int8 weights with DequantizeLinear (a quarter of the file; computes in fp32)
    coreml    w8      coremltools linear_quantize_weights (int8, per channel)
              w8a8    + linear_quantize_activations (iOS17+; calibrating runs Core ML: macOS only)

    \b
    Calibration: a UNet's inputs are recorded along seeded sampling trajectories of the model itself (toy
    classes or the calib_data prompts), the same number of rows from every timestep (Q-Diffusion); SPAN's are
    low-resolution crops of photographs. The graph is then checked on fresh inputs of the same distribution
    (relative L2 against fp32 torch, limit 0.15 for w8a8), and by the task through the runtime: toy fd (mean
    over --task-seeds) within 1.10x (openvino) or 1.15x (onnx) of the fp32 torch model's and class_accuracy at
    most 0.02 lower; SPAN Y-PSNR on the held-out split at most 0.1 dB lower. Everything lands in
    OUT/export_report.json under "quantization" and "checks".

    \b
    Exit codes: 0 quantized and within every limit; 1 a check missed its limit (OUT is kept and the report
    says by how much); 2 bad input, nothing written.
    Examples:
      compress quantize toy --format openvino --out toy-int8
      compress quantize span-x4 --format onnx --keep-sensitive 4 --out span-int8
      compress quantize sd14 --init random --format openvino --no-task-check --out sd14-int8
      compress eval --model toy-int8              the quantized graph's quality, sampled by its runtime
      compress bench --backend ov-cpu toy-int8    its latency
    """
    check_model_ref(source)
    check_quantize_options(format_, mode, samples, keep_sensitive, data)
    task_seeds = check_seeds(task_seeds)
    check_new_folder(out, overwrite)
    from exporters.quantize import quantize

    artifact = _checked(lambda: quantize(
        source, format_, out, mode=mode, samples=samples, seed=seed, keep_sensitive=keep_sensitive, data=data,
        steps=steps, batch=batch, height=height, width=width, dynamic_batch=dynamic_batch, init=init,
        task_check=not no_task_check, task_samples=task_samples, task_seeds=task_seeds, overwrite=overwrite))
    kept = artifact.quantization["kept_layers"]
    if kept:
        click.echo(f"  kept unquantized: {', '.join(k['layer'] for k in kept)}", err=True)
    size = artifact.total_bytes / 1e6
    click.echo(f"wrote {out}/{artifact.path} ({artifact.format} {artifact.weights}, {size:.1f} MB, "
               f"{artifact.export_seconds:.1f} s)")
