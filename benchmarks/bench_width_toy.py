"""Width pruning on the toy: quality after recovery, beside block pruning at the same measured latency saving.

    python benchmarks/bench_width_toy.py --work /tmp/width_toy      # ~80 min on 2 cores

1. Which channels to keep (the importance choice): the narrowed UNet's denoiser output against the teacher's,
   before any recovery, on noised training digits at timesteps spread over the schedule (relative L2 of eps);
   `magnitude` against `random` over `--seeds` choice seeds.
2. `compress prune --model toy --width W` (magnitude), then `compress prune --model toy --ratio S` (block
   removal, the latency budget) where S is the narrowing's latency saving measured here; both pruned UNets are
   then timed against the original by `compress.bench.compare` on ov-cpu (paired, 95% interval over rounds),
   so "the same latency saving" is a measurement, not a prediction.
3. Both are recovered by default `compress recover` and evaluated with the teacher by `compress eval`'s
   defaults: fd, kid and class_accuracy as mean ± std over sampling seeds.
Checks: width-recovered fd <= 1.25x teacher fd and class_accuracy >= teacher - 0.03 (means). Writes
benchmarks/results/width_toy.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from compress.bench.backends import usable_backend
from compress.bench.compare import compare
from compress.bench.host import cpu_name
from compress.bench.targets import exported_target
from compress.evaluate import evaluate
from compress.evaluate.quality import within_noise
from compress.models.resolve import load_diffusion_model
from compress.prune import prune
from compress.prune.width import narrow
from compress.recover import RecoverSettings, recover
from exporters.config import UNetExportConfig

RESULTS = Path(__file__).resolve().parent / "results"


def output_error(teacher, unet: torch.nn.Module, batches: list[tuple]) -> float:
    """Relative L2 of the narrowed UNet's eps against the teacher's over the calibration batches."""
    num = den = 0.0
    with torch.no_grad():
        for xt, t, cond in batches:
            ref = teacher(xt, t, cond).sample
            num += (unet(xt, t, cond).sample - ref).pow(2).sum().item()
            den += ref.pow(2).sum().item()
    return (num / den) ** 0.5


def calibration_batches(model, count: int = 4, size: int = 64) -> list[tuple]:
    from diffusers import DDPMScheduler

    from compress.data.training import toy_training_data
    from compress.models.loading import scheduler_from_config

    data, scheduler = toy_training_data(model), scheduler_from_config(DDPMScheduler, model.scheduler_config)
    generator, batches = torch.Generator().manual_seed(1234), []
    for _ in range(count):
        x0, cond = data.batch(size, generator, 0.0)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (size,), generator=generator)
        batches.append((scheduler.add_noise(x0, torch.randn(x0.shape, generator=generator), t), t, cond))
    return batches


def measured_savings(models: dict[str, Path], threads: int) -> dict[str, dict]:
    """Each pruned UNet against the teacher's on ov-cpu: saving = -change, with its 95% interval."""
    backend, found = usable_backend("ov-cpu"), {}
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        teacher = load_diffusion_model("toy").unet
        base = exported_target(UNetExportConfig(teacher, "teacher", 1, 16, 16, 4), "openvino", Path(tmp) / "t")
        for name, folder in models.items():
            unet = load_diffusion_model(folder).unet
            target = exported_target(UNetExportConfig(unet, name, 1, 16, 16, 4), "openvino", Path(tmp) / name)
            c = compare(target, base, backend, threads=threads)
            found[name] = {"saving": round(-c.change, 4), "interval": [round(-c.change_high, 4),
                                                                       round(-c.change_low, 4)],
                           "p50_ms": round(c.candidate_p50_ms, 3), "teacher_p50_ms": round(c.baseline_p50_ms, 3),
                           "host": c.host}
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--width", type=float, default=0.3)
    parser.add_argument("--steps", type=int, default=RecoverSettings().steps, help="recovery steps")
    parser.add_argument("--seeds", type=int, default=3, help="sampling seeds per model, and random-choice seeds")
    parser.add_argument("--samples", type=int, default=500, help="eval samples per seed (compress eval's default)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    torch.set_num_threads(args.threads)

    teacher = load_diffusion_model("toy")
    batches = calibration_batches(teacher)
    errors = {"magnitude": [output_error(teacher.unet, narrow(teacher.unet, args.width)[0], batches)],
              "random": [output_error(teacher.unet, narrow(teacher.unet, args.width, "random", seed)[0], batches)
                         for seed in range(args.seeds)]}
    for name, values in errors.items():
        print(f"eps error before recovery, {name}: {statistics.mean(values):.4f}"
              + (f" ± {statistics.stdev(values):.4f}" if len(values) > 1 else ""))

    width_report = prune("toy", args.work / "width", width=args.width, progress=False)
    saving = width_report.width["latency_saving_measured"]
    print(f"{width_report.summary}: narrowing saves {saving:.1%} (prune's own paired timing)")
    block_report = prune("toy", args.work / "block", ratio=max(saving, 0.01), progress=False)
    print(f"{block_report.summary}: removed {', '.join(block_report.removed)}")
    savings = measured_savings({"width": args.work / "width", "block": args.work / "block"}, args.threads)

    seconds, rows = {}, {"teacher": evaluate("toy", samples=args.samples, seeds=range(args.seeds)).to_dict()}
    for name in ("width", "block"):
        began = time.time()
        recover("toy", args.work / name, args.work / f"{name}-recovered", settings=RecoverSettings(steps=args.steps),
                evaluate_after=False, progress=False)
        seconds[name] = round(time.time() - began, 1)
        rows[name] = evaluate(args.work / f"{name}-recovered", samples=args.samples, seeds=range(args.seeds)).to_dict()
        print(f"{name}: recovered in {seconds[name]:.0f} s; fd {rows[name]['fd']:.2f} ± {rows[name]['fd_std']:.2f}")

    t, w, b = rows["teacher"], rows["width"], rows["block"]
    checks = {"width_fd_within_1.25x_teacher": w["fd"] <= 1.25 * t["fd"],
              "width_accuracy_within_0.03_of_teacher": w["class_accuracy"] >= t["class_accuracy"] - 0.03}
    gap = w["fd"] - b["fd"]
    verdict = ("within noise" if within_noise(w, b)
               else ("block pruning is better" if gap > 0 else "width pruning is better"))
    reports = {"width": width_report, "block": block_report}
    result = {
        "command": f"python benchmarks/bench_width_toy.py --work {args.work.name} --width {args.width} "
                   f"--steps {args.steps} --seeds {args.seeds} --samples {args.samples}",
        "host": {"cpu": cpu_name(), "threads": args.threads, "precision": "fp32 (torch) for quality"},
        "importance_eps_error_before_recovery": errors,
        "pruned": {name: {"summary": r.summary, "removed": r.removed, "width": {k: v for k, v in r.width.items()
                                                                               if k != "stage_output_channels"},
                          "params_removed_share": round(r.params_removed_share, 4),
                          "macs_removed_share": round(r.total_macs_removed_share, 4),
                          "latency_measured_against_teacher": savings[name]} for name, r in reports.items()},
        "recover_steps": args.steps, "recover_seconds": seconds, "rows": rows, "checks": checks,
        "width_vs_block_fd": verdict,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "width_toy.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"# Width pruning on the toy (--width {args.width}) beside block pruning at the same latency saving", "",
             f"`{result['command']}`; host {cpu_name()}, {args.threads} threads", "",
             "Importance (eps relative L2 against the teacher before recovery, 4 x 64 noised training digits): "
             + "; ".join(f"{k} {statistics.mean(v):.4f}" + (f" ± {statistics.stdev(v):.4f} over {len(v)} seeds"
                                                          if len(v) > 1 else "") for k, v in errors.items()), "",
             "| model | what was pruned | params removed | MACs removed | ov-cpu latency saved (95% interval) | "
             "fd | kid | class_accuracy |", "|---|---|---:|---:|---:|---:|---:|---:|",
             f"| teacher | - | - | - | - | {t['fd']:.2f} ± {t['fd_std']:.2f} | {t['kid']:.4f} ± {t['kid_std']:.4f} | "
             f"{t['class_accuracy']:.3f} ± {t['class_accuracy_std']:.3f} |"]
    for name, r in reports.items():
        s, row = savings[name], rows[name]
        what = (f"widths {r.width['widths_before']} -> {r.width['widths_after']}" if name == "width"
                else ", ".join(r.removed))
        lines.append(f"| {name} + recover | {what} | {r.params_removed_share:.1%} | {r.total_macs_removed_share:.1%} "
                     f"| {s['saving']:.1%} ({s['interval'][0]:.1%} to {s['interval'][1]:.1%}) | "
                     f"{row['fd']:.2f} ± {row['fd_std']:.2f} | {row['kid']:.4f} ± {row['kid_std']:.4f} | "
                     f"{row['class_accuracy']:.3f} ± {row['class_accuracy_std']:.3f} |")
    lines += ["", f"Each quality figure: mean ± std over sampling seeds 0..{args.seeds - 1}, {args.samples} samples "
              "each (compress eval's defaults otherwise). "
              f"Recovery: {args.steps} steps, width {seconds['width']:.0f} s, block {seconds['block']:.0f} s.",
              f"Width against block fd: {verdict}.", "",
              *[f"- {k}: {'PASS' if v else 'FAIL'}" for k, v in checks.items()]]
    (RESULTS / "width_toy.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
