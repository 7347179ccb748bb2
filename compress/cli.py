"""The `compress` command line: it parses arguments and calls the package's Python API."""

from __future__ import annotations

import sys

import click

from compress.bench.cli import bench_cmd, compare_cmd, npu_check_cmd
from compress.clitools import feature_cache_options, user_errors
from compress.distill.settings import LOSSES, METHODS, DistillSettings, check_distill
from compress.evaluate.cli import eval_cmd
from compress.evaluate.defaults import SAMPLER_NAMES
from compress.io import check_new_files, image_format
from compress.models.registry import check_model_ref
from compress.models.toy import NUM_CLASSES
from compress.models.units import GRANULARITIES
from compress.prune.presets import PRESETS
from compress.prune.settings import (
    BUDGETS,
    COMBINES,
    SCORE_MODES,
    WIDTH_IMPORTANCES,
    LatencySettings,
    ScoreSettings,
    check_prune,
)
from compress.recover.settings import RecoverSettings, check_recover
from compress.runs import MIXED_PRECISION
from compress.sr.cli import sr
from exporters.cli import export_cmd, quantize_cmd


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="compress")
def main() -> None:
    """Make diffusion and super-resolution models small and fast, and measure it.

    \b
    compress models                         list the models this toolkit knows
    compress prune --model sd14 --ratio 0.3 score blocks, remove the least important
    compress eval --model toy               sample and score quality (toy family)
    compress chain RECIPE.toml --out DIR    prune, recover, distill, quantize, export, bench, eval in one run
    """


@main.command("models")
@user_errors
def models_cmd() -> None:
    """List registered model names with one-line descriptions."""
    from compress.models.registry import list_models

    specs = list_models()
    width = max(len(s.name) for s in specs)
    for spec in specs:
        click.echo(f"{spec.name:<{width}}  {spec.description}")


@main.command("prune")
@click.option("--model", required=True,
              help="Registry name (see `compress models`) or a diffusers UNet/pipeline folder.")
@click.option("--weights", default=None, help="Local diffusers folder (UNet or pipeline) or hub id with real weights.")
@click.option("--init", type=click.Choice(["pretrained", "random"]), default="pretrained", show_default=True,
              help="`random`: the exact architecture with seeded random weights (offline, structural work).")
@click.option("--ratio", type=float, default=None, help="Share of the budget to remove, in (0, 1).")
@click.option("--budget", type=click.Choice(BUDGETS), default="latency", show_default=True,
              help="What the ratio is a share of. `latency`: measured on --backend (or --estimate); `macs`: "
                   "conv + linear + attention matmuls; `params`: weights.")
@click.option("--backend", default=None,
              help="Runtime the latency is measured on, a `compress bench` name (ov-cpu, ort-cpu, torch-cpu, "
                   "torch-cuda, ort-cuda, coreml-...) [default: ov-cpu, else ort-cpu, else torch-cpu].")
@click.option("--estimate", default=None,
              help="Predict latency with an NPU roofline profile instead of measuring (a17-pro-ane, "
                   "sd8gen3-hexagon, core-ultra-npu); the plan is labelled as estimate-based.")
@click.option("--latency-table", type=click.Path(), default=None,
              help="Reuse a latency table (OUT/latency_table.json of an earlier prune, or one measured on the "
                   "target device); refused if it was measured for another UNet, latent size, batch or backend.")
@click.option("--latency-size", type=int, default=None, help="Latent size latency is measured at [default: the "
              "UNet's sample_size, 64 for SD-v1.x].")
@click.option("--latency-batch", type=int, default=1, show_default=True,
              help="Batch latency is measured at (2 for a guided pipeline that batches cond + uncond).")
@click.option("--threads", type=int, default=None, help="Runtime threads for latency [default: torch's count].")
@click.option("--latency-margin", type=float, default=0.1, show_default=True,
              help="With --budget latency, aim at a predicted saving of RATIO x (1 + margin) where a removal set "
                   "reaches it, so that a prediction optimistic by up to this fraction still delivers RATIO.")
@click.option("--verify-latency", is_flag=True,
              help="After surgery, time the original and the pruned UNet interleaved on the backend and write "
                   "measured vs predicted into prune_report.json.")
@click.option("--granularity", type=click.Choice(GRANULARITIES), default="diffusers", show_default=True,
              help="`diffusers`: only removals a stock config expresses (loads in plain diffusers). "
                   "`block`: single blocks and pairs too, saved with a plan that compress.load_unet applies.")
@click.option("--preset", type=click.Choice(sorted(PRESETS)), default=None,
              help="Build BK-SDM's architecture exactly instead of scoring.")
@click.option("--width", type=float, default=None,
              help="Narrow every stage by this share of its channels (rounded to multiples of the norm groups and "
                   "heads), saved as a stock diffusers UNet. With --ratio, blocks are then removed until RATIO of "
                   "the budget is gone in all.")
@click.option("--width-importance", type=click.Choice(WIDTH_IMPORTANCES), default="magnitude", show_default=True,
              help="Which channels --width keeps: `magnitude` (Torch-Pruning's group L2 magnitude) or `random`.")
@click.option("--score-mode", type=click.Choice(SCORE_MODES), default="step", show_default=True,
              help="`step`: one denoiser call per cached timestep (cheap). `trajectory`: final latents of a "
                   "full short sampling run per candidate (faithful, slower).")
@click.option("--combine", type=click.Choice(COMBINES), default="sum", show_default=True,
              help="How the mean and std shifts make one score.")
@click.option("--calib-samples", type=int, default=None, help="Calibration samples [default: 8 SD, 40 toy].")
@click.option("--calib-steps", type=int, default=4, show_default=True, help="DDIM steps of the calibration run.")
@click.option("--calib-resolution", type=int, default=None,
              help="Latent (or pixel) size used for scoring [default: min(sample_size, 32)].")
@click.option("--guidance", type=float, default=None, help="CFG scale of the calibration run [default: 7.5 SD, 3 toy].")
@click.option("--max-overshoot", type=float, default=0.1, show_default=True,
              help="Removal sets may exceed the ratio by less than this; the lowest total score among them wins.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", required=True, type=click.Path(), help="Output folder (must not exist unless --overwrite).")
@click.option("--overwrite", is_flag=True, help="Replace an existing output folder.")
@click.option("--no-progress", is_flag=True, help="Hide progress bars.")
@user_errors
def prune_cmd(model, weights, init, ratio, budget, backend, estimate, latency_table, latency_size, latency_batch,
              threads, latency_margin, verify_latency, granularity, preset, width, width_importance, score_mode,
              combine, calib_samples, calib_steps, calib_resolution, guidance, max_overshoot, seed, out, overwrite,
              no_progress) -> None:
    """Score every removable unit of a UNet and remove the least important ones until RATIO of the budget is gone.

    \b
    The default budget is latency on the best runtime installed here: each unit's saving comes from a latency
    table (every resnet, transformer and sampler timed alone through `compress bench`'s harness, calibrated on
    two whole UNets), cached in ~/.cache/compress/latency ($COMPRESS_CACHE) and written to OUT.
    Writes OUT/unet (diffusers format), OUT/prune_report.json, OUT/prune_report.md, OUT/importance.png
    (scores, and score against latency saving) and OUT/latency_table.json. Examples:
      compress prune --model sd14 --init random --ratio 0.3 --out sd14-pruned
      compress prune --model sd14 --init random --ratio 0.3 --verify-latency --out sd14-pruned
      compress prune --model sd14 --ratio 0.3 --latency-table phone_table.json --out sd14-phone
      compress prune --model sd14 --ratio 0.3 --estimate a17-pro-ane --out sd14-ane
      compress prune --model sd14 --ratio 0.3 --budget params --out sd14-small
      compress prune --model sd14 --init random --width 0.25 --out sd14-narrow
      compress prune --model toy --width 0.2 --ratio 0.4 --granularity block --out toy-both
    """
    settings = ScoreSettings(mode=score_mode, combine=combine, samples=calib_samples, steps=calib_steps,
                             resolution=calib_resolution, guidance=guidance, seed=seed)
    latency = LatencySettings(backend=backend, estimate=estimate, table=latency_table, resolution=latency_size,
                              batch=latency_batch, threads=threads, verify=verify_latency,
                              margin=latency_margin)
    check_model_ref(model)
    check_prune(out, ratio=ratio, preset=preset, budget=budget, granularity=granularity, score=settings,
                latency=latency, max_overshoot=max_overshoot, overwrite=overwrite, width=width,
                width_importance=width_importance)  # before torch is imported
    from compress.prune import prune

    report = prune(model, out, ratio=ratio, budget=budget, granularity=granularity, preset=preset, weights=weights,
                   init=init, score=settings, latency=latency, max_overshoot=max_overshoot, width=width,
                   width_importance=width_importance, overwrite=overwrite, progress=not no_progress)
    click.echo(report.summary)
    if report.width.get("latency_after_ms") is not None:
        w = report.width
        low, high = w["latency_saving_interval"]
        click.echo(f"narrowing measured on {w['backend']}: {w['latency_before_ms']:.1f} ms -> "
                   f"{w['latency_after_ms']:.1f} ms, {w['latency_saving_measured']:.1%} saved (paired median; "
                   f"95% interval {low:.1%} to {high:.1%})")
    click.echo(f"removed {', '.join(report.removed) or 'no blocks'}")
    click.echo(f"params {report.params_before:,} -> {report.params_after:,} "
               f"({report.params_removed_share:.1%} removed); "
               f"MACs (conv + linear + attention) {(report.macs_before + report.attention_macs_before) / 1e9:.2f} G"
               f" -> {(report.macs_after + report.attention_macs_after) / 1e9:.2f} G "
               f"({report.total_macs_removed_share:.1%} removed)")
    if report.latency_predicted_after_ms is not None:
        click.echo(f"latency predicted {report.latency_table_before_ms:.1f} ms -> "
                   f"{report.latency_predicted_after_ms:.1f} ms ({report.latency_saving_predicted:.1%} saved)")
    if report.latency_after_ms is not None:
        click.echo(f"latency measured {report.latency_before_ms:.1f} ms -> {report.latency_after_ms:.1f} ms "
                   f"({report.latency_saving_measured:.1%} saved, "
                   f"{report.latency_before_ms / report.latency_after_ms:.2f}x; prediction off by "
                   f"{report.latency_prediction_error:+.1%} of the measured saving)")
    click.echo(f"wrote {out}")


@main.command("recover")
@click.option("--teacher", required=True, help="The unpruned model: registry name or folder.")
@click.option("--student", required=True, type=click.Path(), help="A folder written by `compress prune`.")
@click.option("--out", required=True, type=click.Path(), help="Run folder: checkpoints, log, final unet/.")
@click.option("--data", default=None, type=click.Path(),
              help="SD family: image-caption folder (compress/calib_data/README.md). "
                   "Toy: the digits train split (default).")
@click.option("--steps", type=int, default=1000, show_default=True, help="Optimizer steps.")
@click.option("--lr", type=float, default=2e-4, show_default=True, help="AdamW learning rate (constant).")
@click.option("--batch-size", type=int, default=32, show_default=True, help="Per-process micro-batch size.")
@click.option("--grad-accum", type=int, default=1, show_default=True, help="Micro-batches per optimizer step.")
@click.option("--task", type=float, default=1.0, show_default=True, help="Weight of MSE(eps_student, noise).")
@click.option("--kd-out", type=float, default=1.0, show_default=True, help="Weight of MSE(eps_student, eps_teacher).")
@click.option("--kd-feat", type=float, default=1.0, show_default=True,
              help="Weight of the stage-output feature losses (mapping from the prune report).")
@click.option("--feat-norm", is_flag=True, help="Divide each feature loss by the teacher feature's mean square.")
@click.option("--mixed-precision", type=click.Choice(MIXED_PRECISION), default="no", show_default=True)
@click.option("--gradient-checkpointing", is_flag=True, help="Trade compute for activation memory.")
@click.option("--ema", type=float, default=None,
              help="EMA decay of the student's weights (e.g. 0.999); off by default.")
@click.option("--checkpoint-every", type=int, default=250, show_default=True)
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@click.option("--overwrite", is_flag=True, help="Start over in an existing --out.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--no-eval", is_flag=True, help="Skip the final `compress eval` (toy family).")
@click.option("--no-progress", is_flag=True)
@user_errors
def recover_cmd(teacher, student, out, data, steps, lr, batch_size, grad_accum, task, kd_out, kd_feat, feat_norm,
                mixed_precision, gradient_checkpointing, ema, checkpoint_every, resume, overwrite, seed, no_eval,
                no_progress) -> None:
    """Bring a pruned UNet's quality back by distilling from its teacher (BK-SDM).

    \b
    Single process (CPU or one GPU):
      compress recover --teacher toy --student toy-pruned --out toy-recovered
    Several GPUs (or CPU processes), unchanged; --batch-size is per process:
      accelerate launch --multi_gpu --num_processes 2 -m compress recover --teacher DIR --student PRUNED \\
          --data CAPTIONS --out RUN
    """
    settings = RecoverSettings(steps=steps, lr=lr, batch_size=batch_size, grad_accum=grad_accum, task=task,
                               kd_out=kd_out, kd_feat=kd_feat, feat_norm=feat_norm, mixed_precision=mixed_precision,
                               gradient_checkpointing=gradient_checkpointing, ema=ema,
                               checkpoint_every=checkpoint_every, seed=seed)
    check_model_ref(teacher)
    check_model_ref(student)
    check_recover(out, settings, resume=resume, overwrite=overwrite)  # before torch is imported
    from compress.recover import recover

    result = recover(teacher, student, out, data=data, settings=settings, resume=resume, overwrite=overwrite,
                     evaluate_after=not no_eval, progress=not no_progress)
    click.echo(f"matched stage features: {', '.join(result.feature_pairs)}")
    if result.eval:
        click.echo(f"class_accuracy {result.eval['class_accuracy']:.3f}  fd {result.eval['fd']:.3f}  "
                   f"fd_real {result.eval['fd_real']:.3f}")
    click.echo(f"wrote {out}/unet")


@main.command("distill")
@click.option("--teacher", required=True, help="Registry name or folder of the model to distil.")
@click.option("--method", type=click.Choice(METHODS), default="lcm", show_default=True,
              help="`lcm`: latent consistency distillation (one teacher DDIM step, EMA target). "
                   "`direct`: regress onto the teacher's full ODE solution (Direct CM).")
@click.option("--student", default=None, type=click.Path(),
              help="Start from this pruned or recovered student instead of the teacher's weights.")
@click.option("--out", required=True, type=click.Path(), help="Run folder; the student lands in OUT/unet.")
@click.option("--data", default=None, type=click.Path(), help="SD family: image-caption folder. Toy: digits.")
@click.option("--steps", type=int, default=1000, show_default=True, help="Optimizer steps.")
@click.option("--lr", type=float, default=1e-4, show_default=True)
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--solver-steps", type=int, default=50, show_default=True,
              help="DDIM timesteps of the teacher solver (skip = 1000 / this).")
@click.option("--w-min", type=float, default=None, help="Lowest guidance scale sampled [default: 1.5 toy, 5 SD].")
@click.option("--w-max", type=float, default=None, help="Highest guidance scale sampled [default: 5 toy, 15 SD].")
@click.option("--loss", type=click.Choice(LOSSES), default="huber", show_default=True)
@click.option("--ema", type=float, default=0.95, show_default=True, help="Target network EMA decay.")
@click.option("--mixed-precision", type=click.Choice(MIXED_PRECISION), default="no", show_default=True,
              help="accelerate's mixed precision for the student and teacher forward passes.")
@click.option("--checkpoint-every", type=int, default=250, show_default=True)
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@click.option("--overwrite", is_flag=True, help="Start over in an existing --out.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--no-progress", is_flag=True)
@user_errors
def distill_cmd(teacher, method, student, out, data, steps, lr, batch_size, solver_steps, w_min, w_max, loss, ema,
                mixed_precision, checkpoint_every, resume, overwrite, seed, no_progress) -> None:
    """Distil a UNet into a 1-4 step consistency model (OUT/unet + an LCMScheduler in OUT/scheduler).

    \b
      compress distill --teacher toy --out toy-lcm
      compress eval --model toy-lcm --steps 4        # samples with the saved LCMScheduler
      accelerate launch --multi_gpu --num_processes 2 -m compress distill --teacher PIPELINE --data CAPTIONS --out RUN
    """
    settings = DistillSettings(method=method, steps=steps, lr=lr, batch_size=batch_size, solver_steps=solver_steps,
                               w_min=w_min, w_max=w_max, loss=loss, ema=ema, mixed_precision=mixed_precision,
                               checkpoint_every=checkpoint_every, seed=seed)
    for ref in (teacher, student):
        if ref is not None:
            check_model_ref(ref)
    check_distill(out, settings, resume=resume, overwrite=overwrite)  # before torch is imported
    from compress.distill import distill

    result = distill(teacher, out, student=student, data=data, settings=settings, resume=resume, overwrite=overwrite,
                     progress=not no_progress)
    click.echo(f"{result.method}: {result.steps} steps, final loss {result.final_loss:.5f}; wrote {out}/unet")


@main.command("sample")
@click.option("--model", required=True,
              help="Registry name or any folder the toolkit writes, an export folder included (its UNet then runs "
                   "in ONNX Runtime or OpenVINO).")
@click.option("--steps", type=click.IntRange(min=1), default=25, show_default=True)
@click.option("--sampler", type=click.Choice(SAMPLER_NAMES), default=None,
              help="Override the scheduler saved with the model (default: the saved one, else DDIM).")
@click.option("--class", "class_id", type=click.IntRange(0, NUM_CLASSES - 1), default=None,
              help="Toy family: the digit (default: one of each).")
@click.option("--prompt", default=None, help="SD family: the text prompt.")
@click.option("--guidance", type=float, default=None, help="CFG scale [default: 3 toy, 7.5 SD].")
@click.option("--pipeline", default=None, type=click.Path(),
              help="SD family: pipeline folder whose text_encoder/, tokenizer/ and vae/ to use.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", required=True, type=click.Path(), help="Image file to write: .png, .jpg or .jpeg.")
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists.")
@feature_cache_options
@user_errors
def sample_cmd(model, steps, sampler, class_id, prompt, guidance, pipeline, seed, out, overwrite, cache_interval,
               cache_branch) -> None:
    """Sample images from a model with the scheduler saved with it (LCM for distilled students).

    \b
      compress sample --model toy-lcm --steps 4 --class 7 --out seven.png
      compress sample --model out/toy-onnx --out digits.png      # an export, run by onnxruntime
      compress sample --model sd14-lcm --pipeline ./sd-v1-4 --prompt "a red bus" --steps 4 --out bus.png
      compress sample --model toy --cache-interval 3 --out cached.png   # DeepCache-style reuse
    """
    check_model_ref(model)
    check_new_files([out], overwrite)
    image_format(out)  # before torch is imported; generate() checks it too
    from compress.evaluate.generate import generate

    path = generate(model, out, steps=steps, sampler=sampler, class_id=class_id, prompt=prompt, guidance=guidance,
                    seed=seed, pipeline=pipeline, cache_interval=cache_interval, cache_branch=cache_branch)
    click.echo(f"wrote {path}")


@main.command("chain")
@click.argument("recipe", type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Chain folder: each stage writes OUT/NN-stage/; rerunning into it skips the stages whose inputs "
                   "and options are unchanged and continues a stopped one.")
@click.option("--dry-run", is_flag=True, help="Check the recipe, print the plan and what a run would skip, stop.")
@click.option("--no-progress", is_flag=True, help="Hide progress bars.")
@user_errors
def chain_cmd(recipe: str, out: str, dry_run: bool, no_progress: bool) -> None:
    """Run a recipe: prune, recover, distill, quantize, export, bench, eval (each optional, in that order).

    \b
    Each stage calls the library function of its subcommand with the recipe's options (TOML tables named
    after the stages), writes OUT/NN-stage/ and records a hash of its inputs and options there. The report
    (OUT/chain_report.{json,md}, chain_tradeoff.png) plots quality against latency per image on each bench
    backend, marks the Pareto front and selects the fastest setting within the quality limit.

    \b
      compress chain calib_data/recipes/toy-phone.toml --out runs/toy-phone
      compress chain calib_data/recipes/toy-phone.toml --out runs/toy-phone --dry-run
      compress chain calib_data/recipes/sd14-structure.toml --out runs/sd14
    """
    from compress.chain.api import check_out, describe_plan

    check_out(out)
    for line in describe_plan(recipe, out):
        click.echo(line)
    if dry_run:
        return
    from compress.chain.api import run_chain
    from exporters.validate import ValidationError

    try:
        run_chain(recipe, out, say=click.echo, progress=not no_progress)
    except ValidationError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


def run() -> None:
    """Console entry point: click usage errors also become one `error:` line and exit code 2; a group called with
    no command prints its help and exits 0."""
    try:
        code = main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("error: aborted", err=True)
        sys.exit(1)
    except click.exceptions.NoArgsIsHelpError as exc:  # a bare `compress` or `compress sr` asks for its help
        click.echo(exc.format_message())
        sys.exit(0)
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(2)
    sys.exit(code or 0)


# Sub-command groups that live next to their package.
main.add_command(sr)
main.add_command(eval_cmd)
main.add_command(bench_cmd)
main.add_command(compare_cmd)
main.add_command(npu_check_cmd)
main.add_command(export_cmd)
main.add_command(quantize_cmd)
