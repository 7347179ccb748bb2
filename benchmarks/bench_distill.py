"""Few-step sampling on the toy model, side by side, in one run: teacher DDIM vs consistency students.

    python benchmarks/bench_distill.py --work runs/distill     # ~60 min on 2 cores (+12 to prune and recover)

Trains (or reuses, from --work) three students with `compress distill`:
  - LCM from the toy teacher (default `compress distill` settings),
  - Direct CM from the toy teacher (--direct-steps / --direct-solver-steps: its target is a full
    teacher ODE solve per step, so it gets a coarser solver and fewer steps in a similar budget),
  - LCM from the pruned-and-recovered toy (the full compression chain: `compress prune --ratio 0.3
    --granularity block`, `compress recover`, then `compress distill --student`), or from --recovered DIR.
Then evaluates each (3 sampling seeds, mean ± std) at 1, 2, 4 and 8 steps (teacher: DDIM with guidance, two
UNet passes per step; students: their saved LCMScheduler, one pass per step) and the teacher at 25 DDIM steps, all with
the same samples, guidance and seed. Prints fd, class_accuracy and sampling wall time per sample,
checks the issue's targets for the LCM student at 4 steps, and writes
benchmarks/results/distill_toy.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from compress.bench.host import cpu_name
from compress.distill import DistillSettings, distill
from compress.evaluate import evaluate
from compress.evaluate.quality import lower_beyond_noise, within_noise
from compress.prune import prune
from compress.recover import RecoverSettings, recover

RESULTS = Path(__file__).resolve().parent / "results"
FEW_STEPS = (1, 2, 4, 8)
TRAINED_FILE = "bench_trained.json"  # written beside a student once trained; its presence means "reuse"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--lcm-steps", type=int, default=DistillSettings().steps)
    parser.add_argument("--direct-steps", type=int, default=150)
    parser.add_argument("--direct-solver-steps", type=int, default=10)
    parser.add_argument("--recovered", type=Path, help="a recovered toy student to start the chain from")
    parser.add_argument("--work", type=Path, help="keep (and reuse) the students here (default: temp folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        recovered = args.recovered or _pruned_and_recovered(work)
        students = {
            "LCM student": _train(work / "lcm", "toy", DistillSettings(steps=args.lcm_steps)),
            "Direct-CM student": _train(work / "direct", "toy", DistillSettings(
                method="direct", steps=args.direct_steps, solver_steps=args.direct_solver_steps)),
            "LCM from pruned+recovered": _train(work / "chain-lcm", "toy", DistillSettings(steps=args.lcm_steps),
                                                student=recovered),
        }
        reference = evaluate("toy", steps=25, sampler="ddim", samples=args.samples).to_dict()
        rows = [_row("teacher, DDIM", reference)]
        rows += [_row("teacher, DDIM", evaluate("toy", steps=k, sampler="ddim", samples=args.samples).to_dict())
                 for k in FEW_STEPS]
        for name, (folder, _) in students.items():
            rows += [_row(name, evaluate(folder, steps=k, samples=args.samples).to_dict()) for k in FEW_STEPS]
    lcm4 = next(r for r in rows if r["model"] == "LCM student" and r["steps"] == 4)
    ddim4 = next(r for r in rows if r["model"] == "teacher, DDIM" and r["steps"] == 4)
    checks = {
        "lcm_4_step_fd_within_1.5x_teacher_25_step": lcm4["fd"] <= 1.5 * reference["fd"],
        "lcm_4_step_fd_below_teacher_4_step_ddim_beyond_spread": lower_beyond_noise(lcm4, ddim4),
        "lcm_4_step_class_accuracy_at_least_0.85": lcm4["class_accuracy"] >= 0.85,
        "lcm_training_within_20_minutes": students["LCM student"][1]["seconds"] <= 20 * 60,
    }
    command = (f"python benchmarks/bench_distill.py --samples {args.samples} --lcm-steps {args.lcm_steps} "
               f"--direct-steps {args.direct_steps} --direct-solver-steps {args.direct_solver_steps}")
    host = {"cpu": cpu_name(), "threads": torch.get_num_threads(), "precision": "fp32 (torch)"}
    result = {"command": command, "host": host, "training": {name: info for name, (_, info) in students.items()},
              "rows": rows, "checks": checks}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "distill_toy.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# Few-step sampling on the toy model", "", f"Command: `{command}`", "",
             f"Eval: {args.samples} samples per seed, guidance {reference['guidance']:g}, mean ± std over seeds "
             f"{','.join(map(str, reference['seeds']))}. Wall time per sample is sampling alone, in batches of 250 "
             f"on {host['cpu']}, {host['threads']} threads, fp32 torch. The last column compares fd with the 25-step "
             "teacher's: the difference against the sum of the two stds.", "",
             "| model | steps | fd | kid | class_accuracy | ms per sample | vs teacher, 25 steps |",
             "|---|---:|---:|---:|---:|---:|---|"]
    lines += [f"| {r['model']} | {r['steps']} | {r['fd']:.2f} ± {r['fd_std']:.2f} | "
              f"{r['kid']:.4f} ± {r['kid_std']:.4f} | {r['class_accuracy']:.3f} ± {r['class_accuracy_std']:.3f} | "
              f"{r['ms_per_sample']:.2f} | "
              f"{_versus(r, reference) if i else '(the reference)'} |" for i, r in enumerate(rows)]
    lines += ["", "| student | method | training steps | solver steps | training minutes |", "|---|---|---:|---:|---:|"]
    lines += [f"| {name} | {info['method']} | {info['steps']} | {info['solver_steps']} | {info['seconds'] / 60:.1f} |"
              for name, info in result["training"].items()]
    lines += ["", *[f"- {k}: {'PASS' if v else 'FAIL'}" for k, v in checks.items()]]
    (RESULTS / "distill_toy.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _versus(row: dict, reference: dict) -> str:
    """fd against the reference's: 'within noise' unless the difference exceeds the sum of the two stds."""
    if within_noise(row, reference):
        return "within noise"
    gap = row["fd"] - reference["fd"]
    return f"{'worse' if gap > 0 else 'better'} by {abs(gap):.2f}"


def _row(name: str, result: dict) -> dict:
    return {"model": name, "steps": result["steps"], "sampler": result["sampler"], "fd": result["fd"],
            "fd_std": result["fd_std"], "kid": result["kid"], "kid_std": result["kid_std"],
            "class_accuracy": result["class_accuracy"], "class_accuracy_std": result["class_accuracy_std"],
            "ms_per_sample": 1000 * result["sampling_seconds"] / (result["samples"] * len(result["seeds"]))}


def _train(out: Path, teacher: str, settings: DistillSettings, student: Path | None = None) -> tuple[Path, dict]:
    """Distil into `out` unless a finished run with the same settings is there; (folder, training record)."""
    record = {"method": settings.method, "steps": settings.steps, "solver_steps": settings.solver_steps,
              "student_init": str(student) if student else teacher}
    done = out / TRAINED_FILE
    if done.is_file():
        previous = json.loads(done.read_text())
        if {k: previous.get(k) for k in record} == record:
            print(f"reusing {out} ({previous['seconds']:.0f} s of training)")
            return out, previous
    started = time.time()
    distill(teacher, out, student=student, settings=settings, overwrite=True)
    record["seconds"] = round(time.time() - started, 1)
    done.write_text(json.dumps(record) + "\n")
    return out, record


def _pruned_and_recovered(work: Path) -> Path:
    """`compress prune --model toy --ratio 0.3 --granularity block` (the README's and toy-phone recipe's prune: on
    some hosts the diffusers-granularity units cannot reach 0.3 of ov-cpu latency), then `compress recover` with
    its defaults (reused if there)."""
    out = work / "recovered"
    if not (out / "unet").is_dir():
        prune("toy", work / "pruned", ratio=0.3, granularity="block", overwrite=True)
        recover("toy", work / "pruned", out, settings=RecoverSettings(), overwrite=True, evaluate_after=False)
    return out


if __name__ == "__main__":
    main()
