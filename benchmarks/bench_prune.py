"""Time `compress prune` and measure peak memory while scoring, in one run.

    python benchmarks/bench_prune.py --model toy --ratio 0.3

Prints wall time (target: toy under 2 minutes on 2 CPU cores) and the peak resident memory during scoring as a
multiple of the fp32 model size (target: < 2x). SD-v1.4's default prune, with its cold latency table, is timed
by bench_prune_latency.py next to the speed of what it produced.
Writes benchmarks/results/prune_<model>.json. Linux only (reads /proc/self/status).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

from compress.prune import ScoreSettings, pipeline, prune

RESULTS = Path(__file__).resolve().parent / "results"


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="sd14")
    parser.add_argument("--init", default="pretrained")
    parser.add_argument("--ratio", type=float, default=0.3)
    parser.add_argument("--out", type=Path, default=None, help="keep the pruned model here (default: temp folder)")
    args = parser.parse_args()

    measured: dict[str, float] = {}
    score_units = pipeline.score_units

    def measured_score_units(model, *a, **kw):
        measured["rss_before_scoring_gib"] = _status_kib("VmRSS") / 2**20
        _reset_peak()
        t0 = time.time()
        scores = score_units(model, *a, **kw)
        measured["scoring_seconds"] = time.time() - t0
        measured["peak_rss_scoring_gib"] = _status_kib("VmHWM") / 2**20
        measured["model_fp32_gib"] = sum(p.numel() for p in model.unet.parameters()) * 4 / 2**30
        return scores

    pipeline.score_units = measured_score_units
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "pruned"
        t0 = time.time()
        report = prune(args.model, out, ratio=args.ratio, init=args.init, score=ScoreSettings(), overwrite=True)
        seconds = time.time() - t0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu_seconds = usage.ru_utime + usage.ru_stime
    result = {
        "command": f"python benchmarks/bench_prune.py --model {args.model} --init {args.init} --ratio {args.ratio}",
        "model": args.model, "ratio": args.ratio, "seconds_total": round(seconds, 1),
        "cpu_seconds": round(cpu_seconds, 1), "cores": os.cpu_count(),
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        "removed": report.removed, "params_before": report.params_before, "params_after": report.params_after,
        "params_removed_share": round(report.params_removed_share, 4),
        "macs_removed_share": round(report.macs_removed_share, 4),
        **{k: round(v, 3) for k, v in measured.items()},
        "peak_scoring_over_model_fp32": round(measured["peak_rss_scoring_gib"] / measured["model_fp32_gib"], 3),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"prune_{args.model}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"\n{args.model}: {seconds:.0f} s total ({measured['scoring_seconds']:.0f} s scoring, "
          f"{cpu_seconds:.0f} CPU-s "
          f"on {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}); removed "
          f"{report.params_removed_share:.1%} of params; peak RSS while scoring "
          f"{measured['peak_rss_scoring_gib']:.2f} GiB = {result['peak_scoring_over_model_fp32']:.2f}x the fp32 "
          f"model ({measured['model_fp32_gib']:.2f} GiB)")


if __name__ == "__main__":
    main()
