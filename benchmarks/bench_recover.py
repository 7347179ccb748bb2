"""Recovery on the toy model, side by side, in one run: does KD beat plain finetuning?

    python benchmarks/bench_recover.py          # prune toy at 0.3, then two recoveries (~50 min on 2 cores)

Prunes the toy with `compress prune`'s latency budget on the best local runtime (block units), then prints
teacher, pruned-before-recovery, recovered-with-KD (default `compress recover` settings) and
finetuned-with-task-loss-only (same steps, --kd-out 0 --kd-feat 0), all with the same eval settings, each as
the mean and standard deviation over `--seeds` sampling seeds. Checks the targets on the means: recovered fd
<= 1.25 x teacher fd, class_accuracy >= teacher - 0.03, KD fd < task-only fd (reported as supported only when
the gap exceeds the two spreads together). Writes benchmarks/results/recover_toy.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from compress.bench.host import cpu_name
from compress.evaluate import evaluate
from compress.evaluate.quality import lower_beyond_noise
from compress.prune import prune
from compress.recover import RecoverSettings, recover

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=RecoverSettings().steps)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--seeds", type=int, default=3, help="sampling seeds per model (0..N-1)")
    parser.add_argument("--ratio", type=float, default=0.3, help="prune ratio (the issue's acceptance uses 0.3)")
    parser.add_argument("--granularity", choices=("diffusers", "block"), default="block",
                        help="prune units (block, as bench_distill: on some hosts the diffusers units cannot reach 0.3 "
                             "of the latency)")
    parser.add_argument("--work", type=Path, default=None, help="keep the models here (default: temp folder)")
    args = parser.parse_args()
    rows, seconds = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        report = prune("toy", work / "pruned", ratio=args.ratio, granularity=args.granularity, overwrite=True)
        print(report.summary)
        runs = {
            "teacher": "toy",
            "pruned (no recovery)": work / "pruned",
            "recovered with KD": _recover(work, "kd", args.steps, seconds),
            "finetuned, task loss only": _recover(work, "task", args.steps, seconds, kd_out=0.0, kd_feat=0.0),
        }
        for name, model in runs.items():
            rows[name] = evaluate(model, samples=args.samples, seeds=range(args.seeds)).to_dict()
            print(f"{name}: fd {rows[name]['fd']:.2f} ± {rows[name]['fd_std']:.2f}")
    teacher, kd, task = rows["teacher"], rows["recovered with KD"], rows["finetuned, task loss only"]
    checks = {
        "kd_fd_within_1.25x_teacher": kd["fd"] <= 1.25 * teacher["fd"],
        "kd_accuracy_within_0.03_of_teacher": kd["class_accuracy"] >= teacher["class_accuracy"] - 0.03,
        "kd_beats_task_only_fd_beyond_spread": lower_beyond_noise(kd, task),  # else: noise
        "kd_recovery_within_15_minutes": seconds["kd"] <= 15 * 60,
    }
    command = (f"python benchmarks/bench_recover.py --steps {args.steps} --samples {args.samples} "
               f"--seeds {args.seeds} --ratio {args.ratio} --granularity {args.granularity}")
    result = {"command": command, "host": {"cpu": cpu_name(), "precision": "fp32 (torch)"},
              "prune": {"summary": report.summary, "budget": report.budget, "backend": report.backend,
                        "removed": report.removed, "params_removed_share": report.params_removed_share,
                        "latency_saving_predicted": report.latency_saving_predicted},
              "recover_steps": args.steps, "recover_seconds": seconds, "rows": rows, "checks": checks}
    RESULTS.mkdir(exist_ok=True)
    stem = "recover_toy" + ("" if args.ratio == 0.3 else f"_ratio{args.ratio}")
    (RESULTS / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"# Recovery on the toy model ({report.summary}: removed {', '.join(report.removed)}, "
             f"{report.params_removed_share:.1%} of params)", "",
             f"Command: `{result['command']}`; host {result['host']['cpu']}", "",
             f"Each figure: mean ± std over sampling seeds 0..{args.seeds - 1}, {args.samples} samples each.", "",
             "| model | fd | kid | class_accuracy | eval seconds (all seeds) |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {name} | {r['fd']:.2f} ± {r['fd_std']:.2f} | {r['kid']:.4f} ± {r['kid_std']:.4f} | "
              f"{r['class_accuracy']:.3f} ± {r['class_accuracy_std']:.3f} | {r['seconds']:.0f} |"
              for name, r in rows.items()]
    lines += ["", f"Real digits (train vs held-out): fd {teacher['fd_real']:.3f}, kid {teacher['kid_real']:.4f}."]
    lines += ["", f"Recovery wall time, {args.steps} steps: KD {seconds['kd']:.0f} s, "
              f"task-only {seconds['task']:.0f} s.",
              "", *[f"- {k}: {'PASS' if v else 'FAIL'}" for k, v in checks.items()]]
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _recover(work: Path, name: str, steps: int, seconds: dict[str, float], **weights: float) -> Path:
    started = time.time()
    out = work / f"recovered-{name}"
    recover("toy", work / "pruned", out, settings=RecoverSettings(steps=steps, **weights), overwrite=True,
            evaluate_after=False)
    seconds[name] = round(time.time() - started, 1)
    print(f"{name}: {steps} steps in {seconds[name]:.0f} s")
    return out


if __name__ == "__main__":
    main()
