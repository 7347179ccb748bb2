"""Check `compress bench` on ov-cpu against OpenVINO's own `benchmark_app`, on the same model, in one run.

    python benchmarks/bench_vs_benchmark_app.py [--artifact DIR_OR_XML] [--threads 2 --runs 200 --rounds 2]

Both compile with the LATENCY hint and the same thread count; the two alternate `--rounds` times and the medians of
their p50s are compared (acceptance: within 15%). Without --artifact the toy UNet is exported to OpenVINO (random
weights: latency does not depend on them). Writes benchmarks/results/bench_vs_benchmark_app.{json,md}.
"""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from compress.bench import bench, resolve_target
from compress.bench.openvino_backend import compile_config
from compress.bench.report import host_info
from compress.io import write_json

RESULTS = Path(__file__).resolve().parent / "results"
TOLERANCE = 0.15


def benchmark_app_latency(xml: Path, threads: int, runs: int, work: Path) -> dict[str, float]:
    """Median / average / min / max latency in ms as `benchmark_app -hint latency` reports them.

    benchmark_app refuses `-nthreads` next to `-hint`, so the thread count goes in through `-load_config`: the
    same properties `compress bench` compiles with.
    """
    config = work / "benchmark_app_config.json"
    write_json(config, {"CPU": {key: str(value) for key, value in compile_config("CPU", threads).items()}})
    tool = shutil.which("benchmark_app") or str(Path(sys.executable).with_name("benchmark_app"))
    command = [tool, "-m", str(xml), "-d", "CPU", "-hint", "latency", "-load_config", str(config),
               "-niter", str(runs)]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    stats = {}
    for name in ("Median", "Average", "Min", "Max"):
        match = re.search(rf"{name}:\s+([\d.]+) ms", output)
        if match is None:
            raise RuntimeError(f"benchmark_app printed no {name} latency:\n{output[-2000:]}")
        stats[name.lower()] = float(match.group(1))
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact", type=Path, help="OpenVINO export folder or .xml [default: export toy]")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2, help="alternations of ours and benchmark_app")
    parser.add_argument("--out", type=Path, default=RESULTS / "bench_vs_benchmark_app")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as work:
        artifact = args.artifact
        if artifact is None:
            from exporters import export

            artifact = Path(work) / "toy-ov"
            export("toy", "openvino", artifact, init="random", validate=False)
        target = resolve_target(artifact)
        if target.format != "openvino":
            raise SystemExit(f"{artifact} is a {target.format} artifact; this compares OpenVINO runs")
        ours, theirs = [], []
        for _ in range(args.rounds):
            [result] = bench([target], ["ov-cpu"], args.warmup, args.runs, args.threads)
            ours.append(result)
            theirs.append(benchmark_app_latency(target.paths[0], args.threads, args.runs, Path(work)))

    our_p50 = statistics.median(r.p50_ms for r in ours)
    their_median = statistics.median(t["median"] for t in theirs)
    ratio = our_p50 / their_median
    summary = {
        "command": "python " + " ".join(map(shlex.quote, sys.argv)),
        "host": host_info(),
        "artifact": str(args.artifact or "toy (random init) exported to OpenVINO"),
        "threads": args.threads, "runs": args.runs, "rounds": args.rounds,
        "ours_p50_ms": our_p50, "benchmark_app_median_ms": their_median, "ratio": ratio,
        "within_tolerance": abs(ratio - 1) <= TOLERANCE, "tolerance": TOLERANCE,
        "ours_by_round": [{"p50_ms": r.p50_ms, "mean_ms": r.mean_ms, "min_ms": r.min_ms,
                           "compiled": r.detail.get("compiled")} for r in ours],
        "benchmark_app_by_round": theirs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out.with_suffix(".json"), summary)
    lines = ["# compress bench ov-cpu vs benchmark_app -hint latency", "", f"`{summary['command']}`", "",
             f"Host: {summary['host']['cpu']}, {args.threads} threads, {args.runs} timed calls, {args.rounds} rounds.",
             "", "| round | ours p50 ms | benchmark_app median ms |", "|---|---|---|"]
    rounds = enumerate(zip(ours, theirs, strict=True), start=1)
    lines += [f"| {i} | {r.p50_ms:.3f} | {t['median']:.3f} |" for i, (r, t) in rounds]
    verdict = "within" if summary["within_tolerance"] else "OUTSIDE"
    lines += ["", f"Median of rounds: ours {our_p50:.3f} ms, benchmark_app {their_median:.3f} ms, "
              f"ratio {ratio:.3f} ({verdict} {TOLERANCE:.0%})."]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[-1:]))


if __name__ == "__main__":
    main()
