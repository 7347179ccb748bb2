"""How often does the latency gate cry wolf, and does it still catch a slower build? Quiet and under load.

    python benchmarks/gate_stability.py --checks 10              # quiet machine
    python benchmarks/gate_stability.py --checks 10 --load 2     # two busy processes beside it (a shared runner)

Exports the toy UNet (random weights) to ONNX and OpenVINO twice (two builds of the same code) and once at a
16x24 latent (1.5x the work). Then, `--checks` times, does what benchmarks/ci_latency_gate.sh decides with:
`compress compare` of the second build against the first on ort-cpu and ov-cpu (any failure is a false
alarm), and of the slower build against the first (any pass is a miss). Writes
benchmarks/results/gate_stability{,_loadN}.{json,md} with the command, host class and every change seen.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from compress.bench import resolve_target
from compress.bench.backends import get_backend
from compress.bench.compare import compare
from compress.bench.host import host_class
from compress.io import write_json
from exporters import export

RESULTS = Path(__file__).resolve().parent / "results"
BACKENDS = {"ort-cpu": "onnx", "ov-cpu": "openvino"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checks", type=int, default=10)
    parser.add_argument("--load", type=int, default=0, help="busy processes to run alongside")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-regression", type=float, default=0.15)
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the results files")
    args = parser.parse_args()
    command = "python benchmarks/gate_stability.py " + " ".join(sys.argv[1:])
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.load)]
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            builds = {}
            for build, options in (("first", {}), ("second", {}), ("slower", {"width": 24})):
                for fmt in BACKENDS.values():
                    export("toy", fmt, work / f"{build}-{fmt}", init="random", validate=False, **options)
                    builds[build, fmt] = resolve_target(work / f"{build}-{fmt}")
            for index in range(args.checks):
                for backend_name, fmt in BACKENDS.items():
                    backend = get_backend(backend_name)
                    for kind, build in (("same build", "second"), ("1.5x work", "slower")):
                        result = compare(builds[build, fmt], builds["first", fmt], backend, threads=args.threads,
                                         max_regression=args.max_regression)
                        rows.append({"check": index, "backend": backend_name, "kind": kind,
                                     "change": result.change, "low": result.change_low, "high": result.change_high,
                                     "status": result.status})
                        print(f"check {index + 1}/{args.checks} {backend_name} {kind}: {result.change:+.1%} "
                              f"({result.change_low:+.1%} to {result.change_high:+.1%}) {result.status}", flush=True)
    finally:
        for process in busy:
            process.kill()
    summary = {"command": command, "host": {name: host_class(args.threads, get_backend(name)) for name in BACKENDS},
               "load": args.load, "max_regression": args.max_regression, "rows": [], "checks": rows}
    lines = [f"# Latency gate checks ({args.load} busy processes alongside)", "", f"Command: `{command}`", "",
             f"Host: {summary['host']['ov-cpu']['cpu']}, ISA {' '.join(summary['host']['ov-cpu']['isa'])}, "
             f"{args.threads} threads; each check is one `compress compare` (6 rounds x 8 ABBA pairs x 10 calls); "
             f"limit {args.max_regression:.0%}.", "",
             "| backend | compared | checks | failed | median change | smallest .. largest change | "
             "widest 95% interval |", "|---|---|---:|---:|---:|---:|---:|"]
    for backend_name in BACKENDS:
        for kind in ("same build", "1.5x work"):
            picked = [r for r in rows if r["backend"] == backend_name and r["kind"] == kind]
            changes = [r["change"] for r in picked]
            row = {"backend": backend_name, "kind": kind, "checks": len(picked),
                   "failed": sum(r["status"] == "regression" for r in picked),
                   "median_change": statistics.median(changes), "min_change": min(changes),
                   "max_change": max(changes), "widest_interval": max(r["high"] - r["low"] for r in picked)}
            summary["rows"].append(row)
            lines.append(f"| {backend_name} | {kind} | {row['checks']} | {row['failed']} | "
                         f"{row['median_change']:+.1%} | {row['min_change']:+.1%} .. {row['max_change']:+.1%} | "
                         f"{row['widest_interval']:.1%} |")
    lines += ["", "A failed same-build check is a false alarm; a 1.5x-work check that did not fail is a miss."]
    name = "gate_stability" + (f"_load{args.load}" if args.load else "")
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / f"{name}.json", summary)
    (args.out / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
