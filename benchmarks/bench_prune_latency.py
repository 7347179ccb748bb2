"""Does `compress prune` make SD faster? Every budget and the BK presets, timed interleaved in one run.

    python benchmarks/bench_prune_latency.py --work /tmp/prune_latency

1. `compress prune --model sd14 --init random --ratio 0.3` with the default budget (latency on the best local
   runtime) and a cold latency table (a fresh cache under --work): wall time, scoring time, peak RSS.
2. The same scores drive `--budget macs` and `--budget params` at 0.3; the BK-SDM presets need none.
3. All seven UNets are exported to OpenVINO IR and timed on ov-cpu, 2 threads, batch 1, at the default 64x64
   latent, by `compress bench`'s `bench`, in a fresh process (one that pruned six models and ran torch runs
   OpenVINO 10-50% slower) and in rounds: each round loads every model anew, in an order rotated from round to
   round, and a model's ratio is the median over rounds of original p50 / its p50 in the same round (one
   compiled session can run 10% slower than the next, so one round decides nothing).
Prints each model's latency ratio original/pruned with its range over rounds (target for the default budget:
>= 1.43) and the default prune's predicted saving against the measured one (target: within 10%). Writes
benchmarks/results/prune_latency_sd14.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="scratch folder (models, IR, latency cache)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3, help="timed calls per model per round")
    parser.add_argument("--reuse", action="store_true",
                        help="keep the pruned models already in --work (their reports hold the cold-run figures)")
    parser.add_argument("--time-only", type=Path, help=argparse.SUPPRESS)  # the fresh timing process's output
    args = parser.parse_args()
    if args.time_only:
        return time_rounds(args.work / "ir", args.rounds, args.runs, args.threads, args.time_only)
    if args.work.exists() and not args.reuse:
        shutil.rmtree(args.work)
    args.work.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(args.work / "ir", ignore_errors=True)
    os.environ["COMPRESS_CACHE"] = str(args.work / "cache")  # a cold table

    import torch

    from compress.bench.host import cpu_name
    from compress.bench.targets import exported_target
    from compress.models.resolve import load_diffusion_model
    from compress.prune import LatencySettings, ScoreSettings, pipeline, prune
    from compress.types import UnitScore
    from exporters.config import UNetExportConfig

    torch.set_num_threads(args.threads)
    measured: dict[str, float] = {}
    score_units = pipeline.score_units

    def timed_scores(model, *a, **kw):
        began = time.time()
        scores = score_units(model, *a, **kw)
        measured["scoring_seconds"] = round(time.time() - began, 1)
        measured["model_fp32_gib"] = sum(p.numel() for p in model.unet.parameters()) * 4 / 2**30
        return scores

    pipeline.score_units = timed_scores
    from compress.models.pruned import read_prune_report

    reused = args.reuse and (args.work / "latency-0.3" / "prune_report.json").is_file()
    began = time.time()
    if reused:  # the cold run's figures, written by this script's earlier run
        default = read_prune_report(args.work / "latency-0.3")
        cold = args.work / "cold_run.json"
        measured.update(json.loads(cold.read_text()) if cold.is_file() else
                        {"cold_seconds": default.seconds, "peak_gib": None, "scoring_seconds": None,
                         "model_fp32_gib": None})  # an earlier run without the record: its report's own time
    else:
        default = prune("sd14", args.work / "latency-0.3", ratio=0.3, init="random", score=ScoreSettings(),
                        latency=LatencySettings(threads=args.threads))
        measured["cold_seconds"] = round(time.time() - began, 1)
        measured["peak_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        (args.work / "cold_run.json").write_text(json.dumps(measured))
    cold_seconds, peak_gib = measured["cold_seconds"], measured["peak_gib"]
    cached = [UnitScore.from_dict(s) for s in default.scores]
    pipeline.score_units = lambda *a, **kw: cached
    variants = {"latency-0.3": default}
    for name, kwargs in (("macs-0.3", {"ratio": 0.3, "budget": "macs"}),
                         ("params-0.3", {"ratio": 0.3, "budget": "params"}),
                         ("bk-base", {"preset": "bk-base"}), ("bk-small", {"preset": "bk-small"}),
                         ("bk-tiny", {"preset": "bk-tiny"})):  # the warm table gives every variant a prediction
        if reused and (args.work / name / "prune_report.json").is_file():
            variants[name] = read_prune_report(args.work / name)
            continue
        variants[name] = prune("sd14", args.work / name, init="random", progress=False, overwrite=True,
                               latency=LatencySettings(backend=default.backend, threads=args.threads), **kwargs)
    for name, folder in [("original", "sd14"), *((n, str(args.work / n)) for n in variants)]:
        model = load_diffusion_model(folder, init="random" if folder == "sd14" else "pretrained", seed=0)
        config = UNetExportConfig(model.unet, name, 1, 64, 64, 77)
        with torch.no_grad():
            exported_target(config, "openvino", args.work / "ir" / name)
        del model, config
    timings = args.work / "timings.json"
    subprocess.run([sys.executable, __file__, "--work", str(args.work), "--threads", str(args.threads), "--rounds",
                    str(args.rounds), "--runs", str(args.runs), "--time-only", str(timings)], check=True)
    rounds = json.loads(timings.read_text())
    base = statistics.median(r["p50_ms"]["original"] for r in rounds)
    rows = []
    for name, report in variants.items():
        ratios = [r["p50_ms"]["original"] / r["p50_ms"][name] for r in rounds]
        ratio = statistics.median(ratios)
        measured_saving = 1 - 1 / ratio
        predicted = report.latency_saving_predicted
        rows.append({
            "variant": name, "removed": report.removed,
            "p50_ms": round(statistics.median(r["p50_ms"][name] for r in rounds), 1),
            "ratio_original_over_pruned": round(ratio, 3),
            "round_ratios": [round(x, 3) for x in ratios],
            "params_removed": round(report.params_removed_share, 4),
            "macs_removed_incl_attention": round(report.total_macs_removed_share, 4),
            "latency_saving_predicted": predicted, "latency_saving_measured": round(measured_saving, 4),
            "prediction_error_of_saving": round((predicted - measured_saving) / measured_saving, 4),
        })
    result = {
        "command": (f"python benchmarks/bench_prune_latency.py --work {args.work} --rounds {args.rounds} "
                    f"--runs {args.runs}" + " --reuse" * args.reuse),
        "host": {"cpu": cpu_name(), "threads": args.threads, "cores": os.cpu_count(),
                 "runtime": rounds[0]["runtime"], "inference_precision": rounds[0]["inference_precision"]},
        "latent": 64, "batch": 1, "rounds": args.rounds, "runs_per_round": args.runs,
        "original_p50_ms": round(base, 1),
        "default_prune": {"summary": default.summary, "cold_table_seconds_total": cold_seconds,
                          "scoring_seconds": measured["scoring_seconds"], "peak_rss_gib": peak_gib,
                          "model_fp32_gib": measured["model_fp32_gib"],
                          "peak_over_model_fp32": peak_gib and round(peak_gib / measured["model_fp32_gib"], 2)},
        "variants": rows,
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "prune_latency_sd14.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# Pruned SD-v1.4 UNets on ov-cpu, timed interleaved", "", f"`{result['command']}`", "",
             f"Host: {result['host']}; 64x64 latent, batch 1; {args.rounds} rounds (order rotated) x {args.runs} "
             f"timed calls, in a fresh process; original p50 {base:.0f} ms (median over rounds). "
             f"Default prune: {default.summary}; cold table + scoring + surgery "
             f"{cold_seconds:.0f} s (scoring {measured['scoring_seconds']} s), peak RSS {peak_gib} GiB = "
             f"{result['default_prune']['peak_over_model_fp32']}x the fp32 model.", "",
             "| variant | removed | params removed | MACs removed (incl. attention) | ratio original/pruned | "
             "range over rounds | saving predicted | saving measured |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['variant']} | {', '.join(row['removed'])} | {row['params_removed']:.1%} | "
                     f"{row['macs_removed_incl_attention']:.1%} | **{row['ratio_original_over_pruned']:.2f}x** | "
                     f"{min(row['round_ratios']):.2f}-{max(row['round_ratios']):.2f} | "
                     f"{row['latency_saving_predicted']:.1%} | {row['latency_saving_measured']:.1%} |")
    (RESULTS / "prune_latency_sd14.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def time_rounds(ir: Path, rounds: int, runs: int, threads: int, out: Path) -> None:
    """p50 of every model in `ir` in each round, each round in a rotated order; written to `out` as JSON."""
    from compress.bench import bench
    from compress.bench.targets import resolve_target

    names = sorted((p.name for p in ir.iterdir()), key=lambda n: (n != "original", n))
    targets = {n: resolve_target(next((ir / n).rglob("*.xml"))) for n in names}
    measured = []
    for index in range(rounds):
        order = names[index % len(names):] + names[:index % len(names)]
        results = {n: bench([targets[n]], ["ov-cpu"], warmup=1, runs=runs, threads=threads, strict=True)[0]
                   for n in order}
        original = results["original"]
        measured.append({"order": order, "p50_ms": {n: r.p50_ms for n, r in results.items()},
                         "runtime": original.detail.get("runtime"), "inference_precision": str(
                             original.detail.get("compiled", {}).get("INFERENCE_PRECISION_HINT"))})
        print(f"round {index + 1}/{rounds}: " + ", ".join(f"{n} {r.p50_ms:.0f} ms" for n, r in results.items()),
              flush=True)
    out.write_text(json.dumps(measured, indent=1) + "\n")


if __name__ == "__main__":
    main()
