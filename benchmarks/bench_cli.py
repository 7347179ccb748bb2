"""How fast the CLI answers, and how long block-importance scoring takes at each granularity.

    python benchmarks/bench_cli.py          # ~3 min on 2 idle CPU cores

1. `compress --help` and `compress CMD --help` for every command, each in a fresh process (`python -m compress`,
   imports included), `--repeats` times: median and max seconds against the 1-second target.
2. Bad input answered before any work: a refused invocation of every command that loads a model or trains,
   timed the same way.
3. `compress prune --model toy --ratio 0.3` at `--granularity diffusers` and `block`: the denoiser calls scoring
   makes (printed by prune before it starts) and the wall time, `--repeats` runs each, interleaved.
Writes benchmarks/results/cli.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from compress.bench.host import cpu_name

RESULTS = Path(__file__).resolve().parent / "results"
HELP_COMMANDS = ["", "models", "prune", "recover", "distill", "sample", "eval", "export", "bench", "compare",
                 "npu-check", "sr", "sr train", "sr eval", "sr upscale", "sr info", "sr export-official"]
REFUSED = {  # one option check per command that takes a model or trains: each must answer before torch loads
    "prune --ratio 1.5": ["prune", "--model", "toy", "--ratio", "1.5", "--out", "never"],
    "prune --model sd99": ["prune", "--model", "sd99", "--ratio", "0.3", "--out", "never"],
    "recover --ema 2": ["recover", "--teacher", "toy", "--student", ".", "--out", "never", "--ema", "2"],
    "distill --w-min 9 --w-max 2": ["distill", "--teacher", "toy", "--out", "never", "--w-min", "9", "--w-max", "2"],
    "distill --resume (nothing to resume)": ["distill", "--teacher", "toy", "--out", "never", "--resume"],
    "export --opset 5": ["export", "toy", "--format", "onnx", "--opset", "5", "--out", "never"],
    "sample --out x.gif": ["sample", "--model", "toy", "--out", "x.gif"],
    "eval --json under a file": ["eval", "--model", "toy", "--json", "/etc/hostname/x.json"],
    "eval --seeds 0,0": ["eval", "--model", "toy", "--seeds", "0,0"],
    "bench --runs 0": ["bench", "--backend", "ort-cpu", "--runs", "0", "toy"],
    "sr train --lr -1": ["sr", "train", "--scale", "2", "--data", ".", "--steps", "5", "--out", "never", "--lr", "-1"],
    "sr upscale --tile 0": ["sr", "upscale", "--model", "span-x2", "--tile", "0", "in.png", "out.png"],
}


def _timed(args: list[str], cwd: str) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "compress", *args], capture_output=True, text=True, cwd=cwd)
    return time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for cli.{json,md}")
    args = parser.parse_args()
    helps, refused, prune_runs = {}, {}, {"diffusers": [], "block": []}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            for command in HELP_COMMANDS:
                seconds, result = _timed([*command.split(), "--help"], tmp)
                assert result.returncode == 0 and "Usage:" in result.stdout, result.stderr
                helps.setdefault(f"compress {command} --help".replace("  ", " "), []).append(seconds)
            for name, argv in REFUSED.items():
                seconds, result = _timed(argv, tmp)
                assert result.returncode == 2 and result.stderr.startswith("error: "), result.stderr
                refused.setdefault(name, []).append(seconds)
        for _ in range(args.repeats):
            for granularity in prune_runs:
                seconds, result = _timed(["prune", "--model", "toy", "--ratio", "0.3", "--granularity", granularity,
                                          "--out", f"{tmp}/{granularity}", "--overwrite"], tmp)
                assert result.returncode == 0, result.stderr[-2000:]
                calls = int(re.search(r"(\d+) calls in all", result.stderr).group(1))
                prune_runs[granularity].append({"seconds": seconds, "calls": calls})

    def summary(values: list[float]) -> dict:
        return {"median_s": round(statistics.median(values), 3), "max_s": round(max(values), 3),
                "runs": [round(v, 3) for v in values]}

    host = {"cpu": cpu_name(), "threads": torch.get_num_threads(), "python": sys.version.split()[0]}
    data = {"command": f"python benchmarks/bench_cli.py --repeats {args.repeats}", "host": host,
            "help": {name: summary(v) for name, v in helps.items()},
            "refused": {name: summary(v) for name, v in refused.items()},
            "prune_toy": {g: {"calls": runs[0]["calls"], **summary([r["seconds"] for r in runs])}
                          for g, runs in prune_runs.items()}}
    slowest = max(v["max_s"] for v in data["help"].values())
    data["checks"] = {"every_help_under_1s_median": all(v["median_s"] < 1 for v in data["help"].values()),
                      "every_refusal_under_1s_median": all(v["median_s"] < 1 for v in data["refused"].values())}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cli.json").write_text(json.dumps(data, indent=2) + "\n")
    lines = ["# How fast the CLI answers", "",
             f"Command: `{data['command']}`; host {host['cpu']}, {host['threads']} threads, Python {host['python']}. "
             "Each figure is a fresh `python -m compress` process, imports included.", "",
             "| command | median s | max s |", "|---|---:|---:|"]
    lines += [f"| `{name}` | {v['median_s']:.2f} | {v['max_s']:.2f} |" for name, v in data["help"].items()]
    lines += ["", "| refused bad input | median s | max s |", "|---|---:|---:|"]
    lines += [f"| `{name}` | {v['median_s']:.2f} | {v['max_s']:.2f} |" for name, v in data["refused"].items()]
    lines += ["", "`compress prune --model toy --ratio 0.3` (scoring, search, surgery, save; wall time):", "",
              "| granularity | denoiser calls | median s | max s |", "|---|---:|---:|---:|"]
    lines += [f"| {g} | {v['calls']} | {v['median_s']:.1f} | {v['max_s']:.1f} |" for g, v in data["prune_toy"].items()]
    lines += ["", f"Slowest help: {slowest:.2f} s.", ""]
    lines += [f"- {name}: {'PASS' if ok else 'FAIL'}" for name, ok in data["checks"].items()]
    (args.out / "cli.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
