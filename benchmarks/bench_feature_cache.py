"""DeepCache-style feature reuse on the toy teacher: speed-up and quality change, each with its spread.

    python benchmarks/bench_feature_cache.py                 # ~10 min on 2 CPU cores

For each seed, the 25-step teacher is sampled without reuse and with `--cache-interval N` (branch 0) back to back,
in alternating order (ABBA over the seeds), at the eval defaults (500 samples, default guidance). Per seed: the
sampling-time ratio (uncached / cached) and the fd and kid change (cached - uncached, the same initial noise, so
the pairing removes most of the seed-to-seed variation); reported as mean ± std over the seeds. A quality change is
called a loss only when its mean exceeds its std. Writes benchmarks/results/feature_cache.{json,md}.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from compress.bench.host import cpu_name
from compress.evaluate import evaluate
from compress.evaluate.quality import mean_and_std

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--intervals", default="3", help="comma-separated cache intervals")
    parser.add_argument("--branch", type=int, default=0)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    intervals = [int(i) for i in args.intervals.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    runs: dict[str, dict[int, dict]] = {"none": {}, **{str(n): {} for n in intervals}}
    for index, seed in enumerate(seeds):
        order = [None, *intervals] if index % 2 == 0 else [*intervals, None]
        for interval in order:
            result = evaluate("toy", steps=args.steps, samples=args.samples, seeds=[seed], cache_interval=interval,
                              cache_branch=args.branch).to_dict()
            runs["none" if interval is None else str(interval)][seed] = result
            print(f"seed {seed} interval {interval}: fd {result['fd']:.2f} sampling {result['sampling_seconds']:.1f} s")
    base = runs["none"]

    def spread(by_seed: dict[int, dict], metrics: tuple[str, ...]) -> dict[str, tuple[float, float]]:
        return {m: mean_and_std([by_seed[s][m] for s in seeds]) for m in metrics}

    rows = {"none": spread(base, ("fd", "kid", "sampling_seconds"))}
    for n in intervals:
        cached = runs[str(n)]
        rows[str(n)] = {
            **spread(cached, ("fd", "kid", "sampling_seconds", "class_accuracy")),
            "speedup": mean_and_std([base[s]["sampling_seconds"] / cached[s]["sampling_seconds"] for s in seeds]),
            "fd_change": mean_and_std([cached[s]["fd"] - base[s]["fd"] for s in seeds]),
            "kid_change": mean_and_std([cached[s]["kid"] - base[s]["kid"] for s in seeds]),
        }
    command = (f"python benchmarks/bench_feature_cache.py --intervals {args.intervals} --branch {args.branch} "
               f"--seeds {args.seeds} --samples {args.samples} --steps {args.steps}")
    guidance = base[seeds[0]]["guidance"]
    result = {"command": command, "host": {"cpu": cpu_name(), "threads": torch.get_num_threads(),
                                           "precision": "fp32 (torch)"},
              "settings": {"steps": args.steps, "samples": args.samples, "guidance": guidance, "seeds": seeds,
                           "branch": args.branch}, "rows": rows, "runs": runs}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "feature_cache.json").write_text(json.dumps(result, indent=2) + "\n")

    def fmt(pair: tuple[float, float], digits: int = 2) -> str:
        return f"{pair[0]:.{digits}f} ± {pair[1]:.{digits}f}"

    def verdict(change: tuple[float, float]) -> str:
        return "within noise" if abs(change[0]) <= change[1] else ("worse" if change[0] > 0 else "better")

    lines = ["# DeepCache-style feature reuse on the toy teacher", "",
             f"Command: `{command}`; host {result['host']['cpu']}, {result['host']['threads']} threads, fp32 torch.",
             "", f"The teacher at {args.steps} DDIM steps, guidance {guidance:g}, {args.samples} samples per seed, "
             f"seeds {args.seeds}; reuse of the deep feature at branch {args.branch} (the shallowest skip). Each "
             "figure is mean ± std over the seeds; changes and speed-ups are paired per seed (the same initial "
             "noise, runs back to back in alternating order).", "",
             "| cache interval | fd | kid | sampling s per seed | speed-up | fd change | kid change |",
             "|---|---:|---:|---:|---:|---:|---:|",
             f"| none | {fmt(rows['none']['fd'])} | {fmt(rows['none']['kid'], 4)} | "
             f"{fmt(rows['none']['sampling_seconds'], 1)} | 1 | | |"]
    for n in intervals:
        row = rows[str(n)]
        lines.append(f"| {n} | {fmt(row['fd'])} | {fmt(row['kid'], 4)} | {fmt(row['sampling_seconds'], 1)} | "
                     f"{fmt(row['speedup'])}x | {fmt(row['fd_change'])} ({verdict(row['fd_change'])}) | "
                     f"{fmt(row['kid_change'], 4)} ({verdict(row['kid_change'])}) |")
    (args.out / "feature_cache.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
