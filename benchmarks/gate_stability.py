"""How often does the latency gate cry wolf? Repeated self-checks on the toy artifacts, quiet and under load.

    python benchmarks/gate_stability.py --checks 20              # quiet machine
    python benchmarks/gate_stability.py --checks 20 --load 2     # two busy processes beside it (a shared runner)

Exports the toy UNet (random weights) to ONNX and OpenVINO once. Then, `--checks` times, does what
benchmarks/ci_latency_gate.sh does: measures and saves a baseline, measures again and gates against it.
A failure there is a false alarm (same code, same machine). Each check is judged twice from the same
measurements: raw (`--confirm 0`, one measurement decides) and with re-measurement (`--confirm 2`, the
default: a regression must reproduce). Finally the gate must still fail against a baseline 30% faster than
reality. `--repeat` rounds make each measurement (baseline included) the median of that many.
Writes benchmarks/results/gate_stability_repeatR{,_loadN}.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from compress.bench import bench, gate, resolve_target, save_baseline
from compress.io import read_json, write_json
from exporters import export

RESULTS = Path(__file__).resolve().parent / "results"
BACKENDS = ["ort-cpu", "ov-cpu"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checks", type=int, default=20)
    parser.add_argument("--load", type=int, default=0, help="busy processes to run alongside")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3, help="rounds per measurement, as ci_latency_gate.sh")
    parser.add_argument("--max-regression", type=float, default=0.15)
    args = parser.parse_args()
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.load)]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            for fmt in ("onnx", "openvino"):
                export("toy", fmt, work / f"toy-{fmt}", init="random", validate=False)
            targets = [resolve_target(work / f"toy-{fmt}") for fmt in ("onnx", "openvino")]

            def measure(chosen=targets, backends=BACKENDS):
                return bench(chosen, backends, args.warmup, args.runs, args.threads, strict=True, repeat=args.repeat)

            def remeasure(result):
                return measure([t for t in targets if t.name == result.target], [result.backend])[0]

            checks = []
            for index in range(args.checks):
                baseline = work / "baseline.json"
                save_baseline(measure(), baseline)
                results = measure()
                raw = gate(results, baseline, args.max_regression)
                confirmed = gate(results, baseline, args.max_regression, remeasure=remeasure, confirm=2)
                checks.append({"raw_passed": raw.passed, "confirmed_passed": confirmed.passed,
                               "raw_changes": {f"{r.target}/{r.backend}": r.change for r in raw.rows},
                               "measurements": max(r.measurements for r in confirmed.rows)})
                print(f"check {index + 1}/{args.checks}: raw {'PASS' if raw.passed else 'FAIL'}, confirmed "
                      f"{'PASS' if confirmed.passed else 'FAIL'}, changes "
                      + ", ".join(f"{k} {v:+.1%}" for k, v in checks[-1]["raw_changes"].items()), flush=True)
            faster = work / "faster.json"
            data = read_json(baseline)
            for entry in data["entries"]:
                entry["ratio"] *= 0.7
            write_json(faster, data)
            against_faster = gate(measure(), faster, args.max_regression, remeasure=remeasure, confirm=2)
    finally:
        for process in busy:
            process.kill()
    changes = [abs(v) for check in checks for v in check["raw_changes"].values()]
    summary = {
        "command": f"python benchmarks/gate_stability.py --checks {args.checks} --load {args.load} "
                   f"--threads {args.threads} --warmup {args.warmup} --runs {args.runs} --repeat {args.repeat}",
        "false_alarms_raw": sum(not c["raw_passed"] for c in checks),
        "false_alarms_confirmed": sum(not c["confirmed_passed"] for c in checks),
        "median_abs_change": statistics.median(changes), "max_abs_change": max(changes),
        "fails_against_30_percent_faster_baseline": not against_faster.passed, "checks": checks,
    }
    name = f"gate_stability_repeat{args.repeat}" + (f"_load{args.load}" if args.load else "")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(summary, indent=2) + "\n")
    lines = [f"# Latency gate self-checks (--repeat {args.repeat}, {args.load} busy processes alongside)", "",
             f"Command: `{summary['command']}`", "",
             "| checks | false alarms, raw (--confirm 0) | false alarms, --confirm 2 | median abs change | "
             "max abs change | fails vs 30%-faster baseline |", "|---:|---:|---:|---:|---:|---|",
             f"| {args.checks} | {summary['false_alarms_raw']} | {summary['false_alarms_confirmed']} | "
             f"{summary['median_abs_change']:.1%} | {summary['max_abs_change']:.1%} | "
             f"{summary['fails_against_30_percent_faster_baseline']} |"]
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
