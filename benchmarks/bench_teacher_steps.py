"""Can the toy metric rank samplers? The teacher's fd at 4, 10 and 25 DDIM steps, 3 seeds each, and eval's wall time.

    python benchmarks/bench_teacher_steps.py                  # ~12 min on 2 CPU cores
    python benchmarks/bench_teacher_steps.py --guidance 3     # another guidance scale
    python benchmarks/bench_teacher_steps.py --samples 2000   # a tighter spread: ~4x the time

A metric worth steering by must rank the same model's 25-step sampler above its 10-step and 4-step ones. This
runs `compress eval --model toy` (25 steps, 3 seeds) as a user would, timed from the shell (imports included), and
the same evaluation at 10 and 4 steps. Two readings of "each gap beyond the spread": unpaired, the gap larger than
the sum of the two stds; paired, since a seed gives the same initial noise at every step count, each seed's own
gap positive and their mean larger than twice their std. At the default sample count it also checks the default
eval under 5 minutes. Writes benchmarks/results/teacher_steps_gG.{json,md} (teacher_steps_gG_nN.{json,md} for a
sample count other than eval's default), G the guidance scale."""

from __future__ import annotations

import argparse
import inspect
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from compress.bench.host import cpu_name
from compress.evaluate import DEFAULT_GUIDANCE, evaluate
from compress.evaluate.quality import lower_beyond_noise, mean_and_std

RESULTS = Path(__file__).resolve().parent / "results"
STEPS = (4, 10, 25)
DEFAULT_SAMPLES = inspect.signature(evaluate).parameters["samples"].default


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--guidance", type=float, default=DEFAULT_GUIDANCE["toy"])
    parser.add_argument("--samples", type=int, default=DEFAULT_SAMPLES, help="samples per seed (eval's default)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for teacher_steps_*.{json,md}")
    args = parser.parse_args()
    default_samples = args.samples == DEFAULT_SAMPLES
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "compress", "eval", "--model", "toy", "--guidance", str(args.guidance),
                        "--samples", str(args.samples), "--json", f"{tmp}/eval.json"], check=True)
        cli_seconds = time.perf_counter() - started
        rows[25] = json.loads(Path(tmp, "eval.json").read_text())
    for steps in STEPS[:-1]:
        rows[steps] = evaluate("toy", steps=steps, guidance=args.guidance, samples=args.samples).to_dict()
    rows = dict(sorted(rows.items()))
    gaps = {}
    for fewer, more in zip(STEPS, STEPS[1:], strict=False):
        gap = rows[fewer]["fd"] - rows[more]["fd"]
        spread = rows[fewer]["fd_std"] + rows[more]["fd_std"]
        per_seed = [a["fd"] - b["fd"] for a, b in zip(rows[fewer]["per_seed"], rows[more]["per_seed"], strict=True)]
        paired_mean, paired_std = mean_and_std(per_seed)
        paired = min(per_seed) > 0 and paired_mean > 2 * paired_std
        gaps[f"{fewer}->{more}"] = {"fd_gap": round(gap, 3), "sum_of_stds": round(spread, 3),
                                    "verdict": "beyond the spread" if lower_beyond_noise(rows[more], rows[fewer])
                                    else "within noise",
                                    "paired_gaps": [round(g, 3) for g in per_seed],
                                    "paired_mean": round(paired_mean, 3), "paired_std": round(paired_std, 3),
                                    "paired_verdict": "beyond the spread" if paired else "within noise"}
    reference = rows[25]
    checks = {
        "fd_strictly_decreasing_with_steps_beyond_spread": all(g["verdict"] == "beyond the spread"
                                                               for g in gaps.values()),
        "fd_strictly_decreasing_with_steps_beyond_paired_spread": all(g["paired_verdict"] == "beyond the spread"
                                                                      for g in gaps.values()),
        "teacher_fd_at_most_3x_fd_real": reference["fd"] <= 3 * reference["fd_real"],
    }
    if default_samples:
        checks["eval_under_5_minutes"] = cli_seconds < 300
    options = f" --guidance {args.guidance:g}" + ("" if default_samples else f" --samples {args.samples}")
    result = {"command": f"python benchmarks/bench_teacher_steps.py{options}",
              "host": {"cpu": cpu_name(), "threads": torch.get_num_threads(), "precision": "fp32 (torch)"},
              "eval_settings": {k: reference[k] for k in ("samples", "guidance", "sampler", "seeds")},
              "cli_eval_seconds": round(cli_seconds, 1), "rows": {str(k): v for k, v in rows.items()},
              "gaps": gaps, "checks": checks}
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"teacher_steps_g{args.guidance:g}" + ("" if default_samples else f"_n{args.samples}")
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# The toy teacher at 4, 10 and 25 DDIM steps", "",
             f"Command: `{result['command']}`; host {result['host']['cpu']}, {result['host']['threads']} threads, "
             "fp32 torch.", "",
             f"Each figure: mean ± std over seeds {','.join(map(str, reference['seeds']))}, {reference['samples']} "
             f"samples each, guidance {reference['guidance']:g}. Real digits: fd {reference['fd_real']:.2f}, "
             f"kid {reference['kid_real']:.4f}.", "",
             "| DDIM steps | fd | kid | class_accuracy |", "|---:|---:|---:|---:|"]
    lines += [f"| {s} | {r['fd']:.2f} ± {r['fd_std']:.2f} | {r['kid']:.4f} ± {r['kid_std']:.4f} | "
              f"{r['class_accuracy']:.3f} ± {r['class_accuracy_std']:.3f} |" for s, r in rows.items()]
    lines += ["", "| fewer -> more steps | fd gap | sum of stds | unpaired verdict | per-seed gaps | paired gap "
              "(mean ± std) | paired verdict |", "|---|---:|---:|---|---|---:|---|"]
    lines += [f"| {k} | {g['fd_gap']:+.2f} | {g['sum_of_stds']:.2f} | {g['verdict']} | "
              f"{', '.join(f'{x:+.2f}' for x in g['paired_gaps'])} | {g['paired_mean']:+.2f} ± {g['paired_std']:.2f} | "
              f"{g['paired_verdict']} |" for k, g in gaps.items()]
    lines += ["", f"`compress eval --model toy{options}` (25 steps, 3 seeds, timed from the shell): "
              f"{cli_seconds:.0f} s.", "",
              *[f"- {k}: {'PASS' if v else 'FAIL'}" for k, v in checks.items()]]
    (args.out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
