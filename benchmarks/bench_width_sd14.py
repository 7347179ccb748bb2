"""Does width pruning make SD-v1.4's UNet faster? `--width 0.25` against the original, timed paired on ov-cpu.

    python benchmarks/bench_width_sd14.py --work /tmp/width_sd14      # ~15 min on 2 cores

1. `compress prune --model sd14 --init random --width 0.25 --budget params` (the random-init architecture:
   no SD weights can be downloaded here; latency does not depend on the values).
2. The narrowed UNet is loaded by stock diffusers in a process that never imports `compress`; its params
   are counted there.
3. Both UNets are exported to OpenVINO IR at a 64x64 latent, batch 1, and timed against each other by
   `compress.bench.compare` (the CI gate's harness: interleaved ABBA blocks, each round loads both anew, the
   95% interval resamples whole rounds), in a fresh process.
Prints params, MACs and the speed-up original/narrowed with its interval (target: >= 1.3x). Writes
benchmarks/results/width_sd14.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
STOCK_LOAD = """
import json, sys
from diffusers import UNet2DConditionModel
unet = UNet2DConditionModel.from_pretrained(sys.argv[1])
assert not any(m == "compress" or m.startswith("compress.") for m in sys.modules), "compress was imported"
print(json.dumps({"params": sum(p.numel() for p in unet.parameters()),
                  "block_out_channels": list(unet.config.block_out_channels)}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="scratch folder (models, IR)")
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--calls", type=int, default=3)
    parser.add_argument("--time-only", action="store_true", help=argparse.SUPPRESS)  # the fresh timing process
    args = parser.parse_args()
    if args.time_only:
        return time_pair(args)
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)

    import torch

    from compress.bench.host import cpu_name
    from compress.bench.targets import exported_target
    from compress.models.resolve import load_diffusion_model
    from compress.prune import prune
    from exporters.config import UNetExportConfig

    torch.set_num_threads(args.threads)
    report = prune("sd14", args.work / "narrow", width=args.width, budget="params", init="random", progress=False)
    stock = subprocess.run([sys.executable, "-c", STOCK_LOAD, str(args.work / "narrow" / "unet")],
                           capture_output=True, text=True, check=True)
    loaded = json.loads(stock.stdout)
    for name, folder in (("original", "sd14"), ("narrowed", str(args.work / "narrow"))):
        model = load_diffusion_model(folder, init="random" if folder == "sd14" else "pretrained", seed=0)
        with torch.no_grad():
            exported_target(UNetExportConfig(model.unet, name, 1, 64, 64, 77), "openvino", args.work / "ir" / name)
        del model
    command = [sys.executable, __file__, "--work", str(args.work), "--threads", str(args.threads), "--rounds",
               str(args.rounds), "--pairs", str(args.pairs), "--calls", str(args.calls), "--time-only"]
    subprocess.run(command, check=True)
    timed = json.loads((args.work / "comparison.json").read_text())
    speedup = 1 / (1 + timed["change"])
    interval = [1 / (1 + timed["change_high"]), 1 / (1 + timed["change_low"])]
    macs = [(report.macs_before + report.attention_macs_before), (report.macs_after + report.attention_macs_after)]
    result = {
        "command": f"python benchmarks/bench_width_sd14.py --work {args.work.name} --width {args.width} "
                   f"--rounds {args.rounds} --pairs {args.pairs} --calls {args.calls}",
        "host": {"cpu": cpu_name(), **timed["host"]}, "latent": 64, "batch": 1,
        "widths_before": report.width["widths_before"], "widths_after": report.width["widths_after"],
        "importance": report.width["importance"], "stock_diffusers_load": loaded,
        "params_before": report.params_before, "params_after": report.params_after,
        "macs_before": macs[0], "macs_after": macs[1],
        "original_p50_ms": round(timed["baseline_p50_ms"], 1), "narrowed_p50_ms": round(timed["candidate_p50_ms"], 1),
        "speedup_original_over_narrowed": round(speedup, 3), "speedup_95_interval": [round(x, 3) for x in interval],
        "pair_ratios": timed["pair_ratios"], "target_speedup": 1.3, "pass": interval[0] >= 1.3,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "width_sd14.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"# SD-v1.4 UNet narrowed by --width {args.width}, against the original on ov-cpu", "",
             f"`{result['command']}`", "",
             f"Host: {result['host']}; 64x64 latent, batch 1; {args.rounds} rounds x {args.pairs} ABBA pairs of "
             f"{args.calls}-call blocks, in a fresh process.", "",
             "| | original | narrowed |", "|---|---:|---:|",
             f"| block_out_channels | {result['widths_before']} | {result['widths_after']} |",
             f"| params | {report.params_before:,} | {report.params_after:,} "
             f"({report.params_removed_share:.1%} removed) |",
             f"| MACs (conv + linear + attention) | {macs[0] / 1e9:.1f} G | {macs[1] / 1e9:.1f} G "
             f"({1 - macs[1] / macs[0]:.1%} removed) |",
             f"| ov-cpu p50 | {result['original_p50_ms']:.0f} ms | {result['narrowed_p50_ms']:.0f} ms |", "",
             f"Speed-up original/narrowed: **{speedup:.2f}x** (95% interval {interval[0]:.2f}-{interval[1]:.2f}x; "
             f"target >= 1.3x: {'PASS' if result['pass'] else 'FAIL'}).",
             f"Loaded by stock `UNet2DConditionModel.from_pretrained` without importing compress: "
             f"{loaded['params']:,} params, block_out_channels {loaded['block_out_channels']}."]
    (RESULTS / "width_sd14.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def time_pair(args: argparse.Namespace) -> None:
    """The narrowed IR against the original's, written to WORK/comparison.json."""
    from compress.bench.backends import usable_backend
    from compress.bench.compare import compare
    from compress.bench.targets import resolve_target

    ir = args.work / "ir"
    original, narrowed = (resolve_target(next((ir / n).rglob("*.xml"))) for n in ("original", "narrowed"))
    timed = compare(narrowed, original, usable_backend("ov-cpu"), threads=args.threads, rounds=args.rounds,
                    pairs=args.pairs, calls=args.calls, warmup=1, progress=print)
    (args.work / "comparison.json").write_text(json.dumps(timed.to_dict(), indent=1) + "\n")


if __name__ == "__main__":
    main()
