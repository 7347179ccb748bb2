"""The whole chain on the toy, timed, and the trade-off it bought (issue 19's acceptance).

    python benchmarks/bench_chain.py --work runs/toy-phone     # ~65 min on 2 CPU cores, from scratch

Runs `compress chain calib_data/recipes/toy-phone.toml --out WORK` as a user would. A finished WORK is reused (the
chain skips every stage whose inputs and options are unchanged), so the wall time is the sum of the seconds each
stage recorded when it ran. Checks, on the report's `ov-cpu` axis: the setting the chain selects (the fastest within
the quality limit) is at least 20x faster per image than the 25-step teacher with the 95% interval's low end above
20x, at fd within 1.25x the teacher's (means over the eval seeds, spreads shown); the chain within 75 minutes.
Writes benchmarks/results/chain_toy_phone.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
RECIPE = "calib_data/recipes/toy-phone.toml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="the chain folder (reused if it holds a chain)")
    parser.add_argument("--backend", default="ov-cpu", help="the report axis the targets are checked on")
    parser.add_argument("--speedup", type=float, default=20.0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    started = time.time()
    subprocess.run([sys.executable, "-m", "compress", "chain", RECIPE, "--out", str(args.work), "--no-progress"],
                   check=True, cwd=ROOT)
    this_call = time.time() - started
    report = json.loads((args.work / "chain_report.json").read_text())
    chain_seconds = sum(stage["seconds"] for stage in report["stages"].values())
    rows = {row["key"]: row for row in report["rows"]}
    teacher = rows["teacher-25"]
    selected_key = report["fronts"][args.backend]["selected"]
    selected = rows[selected_key]
    latency = selected["latency"][args.backend]
    limit = report["limits"]["fd_ratio_limit"]
    checks = {
        f"selected_at_least_{args.speedup:g}x_faster_per_image_on_{args.backend}":
            latency["speedup_low"] >= args.speedup,
        f"selected_fd_within_{limit:g}x_teacher": selected["fd"] <= limit * teacher["fd"],
        "chain_within_75_minutes": chain_seconds <= 75 * 60,
    }
    command = f"python benchmarks/bench_chain.py --work {args.work}"
    result = {"command": command, "recipe": RECIPE, "chain_seconds": round(chain_seconds, 1),
              "this_call_seconds": round(this_call, 1), "selected": selected_key, "checks": checks,
              "report": report}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "chain_toy_phone.json").write_text(json.dumps(result, indent=2) + "\n")
    shutil.copyfile(args.work / "chain_tradeoff.png", args.out / "chain_toy_phone.png")
    stages = ", ".join(f"{name} {info['seconds'] / 60:.1f}" for name, info in report["stages"].items())
    lines = [f"Command: `{command}` (runs `compress chain {RECIPE}`). Chain time: {chain_seconds / 60:.1f} min, "
             f"the sum of the seconds each stage recorded ({stages} min).", "",
             f"Selected on {args.backend}: **{selected_key}**, {latency['speedup']:.1f}x faster per image than the "
             f"25-step teacher (95% interval {latency['speedup_low']:.1f}-{latency['speedup_high']:.1f}), fd "
             f"{selected['fd']:.2f} ± {selected['fd_std']:.2f} vs the teacher's {teacher['fd']:.2f} ± "
             f"{teacher['fd_std']:.2f} ({selected['fd'] / teacher['fd']:.2f}x; limit {limit:g}x). Eval: guidance "
             f"{teacher['guidance']:g}, {teacher['samples']} samples x seeds {teacher['seeds']}.", "",
             *[f"- {name}: {'PASS' if ok else 'FAIL'}" for name, ok in checks.items()], "",
             "![trade-off](chain_toy_phone.png)", "",
             (args.work / "chain_report.md").read_text().replace("# Chain report", "## Chain report", 1)]
    (args.out / "chain_toy_phone.md").write_text("# The toy chain: prune, recover, LCM, int8, on ov-cpu\n\n"
                                                 + "\n".join(lines))
    print("\n".join(lines[:5]))


if __name__ == "__main__":
    main()
