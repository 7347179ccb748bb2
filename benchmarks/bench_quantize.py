"""Does calibrated 8-bit quantization keep quality, and does it buy speed? `compress quantize`, measured.

    python benchmarks/bench_quantize.py --work /tmp/quantize        # ~45 min on 2 cores; parts resume from --work

Parts (each kept in --work as it finishes, so a stopped run resumes at the next part; `--parts` picks some):
  toy   the shipped toy teacher, w8a8 for OpenVINO and for ONNX Runtime (QDQ), 128 calibration rows from its
        own 25-step DDIM trajectories. Task check of `compress quantize`: fd and class_accuracy through the
        runtime (500 samples x seeds 0,1,2) against the fp32 torch model's. Targets: fd ratio <= 1.10
        (OpenVINO) / 1.15 (ONNX), class_accuracy >= fp32 - 0.02. The OpenVINO graph is quantized twice with
        the same seed to check that calibration is reproducible (bytes of the weights file).
  span  the shipped SPAN x4, w8a8 for both runtimes, every layer in int8 and with `--keep-sensitive 4`; Y-PSNR
        on the held-out split against fp32 torch (target: within 0.1 dB).
  sd14  SD-v1.4's UNet with random weights (no SD weights offline: its quantization error is reported as rel-L2
        on fresh calibration-distributed inputs; quality needs trained weights), batch 1, a 64x64 latent for
        OpenVINO and 32x32 for ONNX Runtime (its calibration of the 64x64 UNet does not fit in 24 GB): the fp32
        export against the w8a8 graph, timed interleaved by `compress.bench.compare` (ABBA blocks, each round
        loads both anew, the 95% interval resamples whole rounds):
          OpenVINO int8 vs fp32 graph at the CPU plugin's default precision (bf16 where the CPU has it)  ov-cpu
          OpenVINO int8 (default precision for what is not int8) vs fp32 graph at f32    ov-cpu vs ov-cpu-f32
          ONNX Runtime QDQ int8 vs fp32                                                   ort-cpu
        Target: int8 >= 1.5x faster than the default precision on a CPU with int8 matrix instructions.
Writes benchmarks/results/quantize.{json,md} with the host (CPU, ISA flags, threads).
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from compress.bench import resolve_target
from compress.bench.backends import usable_backend
from compress.bench.compare import compare
from compress.bench.host import host_class
from compress.evaluate.quality import within_noise
from compress.io import read_json, write_json
from exporters import ValidationError, export
from exporters.quantize import quantize
from exporters.validate import REPORT_FILE

RESULTS = Path(__file__).resolve().parent / "results"
PARTS = ("toy", "span", "sd14")
SPAN_KEEP = (0, 4)  # --keep-sensitive values SPAN is quantized with
# sd14 latent per format: onnxruntime's MinMax calibration holds one batch's every intermediate tensor, and at 64x64
# (4096 x 4096 attention maps, about 1 GB per self-attention) it was killed for memory on this 24 GB machine
LATENTS = {"openvino": 64, "onnx": 32}


def quantized(source: str, format: str, folder: Path, **options: Any) -> dict[str, Any]:
    """The report of `quantize(source, format)` in `folder`, made unless a finished one is there; a missed limit
    is a result too (the report says by how much), so it is kept, not raised."""
    if not (folder / REPORT_FILE).is_file():
        print(f"quantizing {source} for {format} into {folder}", flush=True)
        with contextlib.suppress(ValidationError):
            quantize(source, format, folder, overwrite=True, **options)
    return read_json(folder / REPORT_FILE)


def checks(report: dict[str, Any]) -> dict[str, Any]:
    return {c["name"]: {k: c[k] for k in ("passed", "value", "limit", "detail")} for c in report["checks"]
            if c["name"].startswith(("task", "calibration")) and c["name"].endswith(("rel_l2", "ratio", "drop",
                                                                                       "drop_db"))}


def summary(report: dict[str, Any]) -> dict[str, Any]:
    q = report["quantization"]
    return {"validated": report["validated"], "weights": report["weights"], "total_bytes": report["total_bytes"],
            "export_seconds": report["export_seconds"], "calibration": q["calibration"], "tool": q["tool"],
            "checks": checks(report), "task": q.get("task", {}), "kept_layers": q["kept_layers"]}


def toy_part(work: Path, formats: list[str]) -> dict[str, Any]:
    result = {}
    for format in formats:
        result[format] = summary(quantized("toy", format, work / f"toy-w8a8-{format}"))
    started = time.time()
    again = quantized("toy", "openvino", work / "toy-w8a8-openvino-again", task_check=False)
    first = (work / "toy-w8a8-openvino" / "unet" / "openvino_model.bin").read_bytes()
    second = (work / "toy-w8a8-openvino-again" / "unet" / "openvino_model.bin").read_bytes()
    result["reproducible"] = {"same_seed_same_weights_file": first == second, "bytes": len(first),
                              "seconds": round(time.time() - started, 1),
                              "calibration_equal": again["quantization"]["calibration"] ==
                              result["openvino"]["calibration"]}
    return result


def span_part(work: Path) -> dict[str, Any]:
    """Every layer in int8, and the 4 most sensitive kept in float (SPAN's first features are the image x 255 and
    feed its last convolution too: per-tensor 8-bit rounding of them costs dB)."""
    return {f"{format}-keep{keep}": summary(quantized("span-x4", format, work / f"span-w8a8-{format}-keep{keep}",
                                                       keep_sensitive=keep))
            for format in ("openvino", "onnx") for keep in SPAN_KEEP}


def speedup(comparison: Any) -> dict[str, Any]:
    """int8 (candidate) against fp32 (baseline): baseline / candidate time, with the interval of the change."""
    return {"speedup": 1 / (1 + comparison.change), "speedup_low": 1 / (1 + comparison.change_high),
            "speedup_high": 1 / (1 + comparison.change_low), "int8_p50_ms": comparison.candidate_p50_ms,
            "fp32_p50_ms": comparison.baseline_p50_ms, "backend": comparison.backend, "host": comparison.host,
            "rounds": comparison.rounds, "calls": comparison.calls, "pair_ratios": comparison.pair_ratios}


def sd14_part(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"samples": args.sd14_samples}
    targets = {}
    for format, latent in LATENTS.items():
        fp32 = work / f"sd14-fp32-{format}-{latent}"
        if not (fp32 / REPORT_FILE).is_file():
            print(f"exporting sd14 (random init) to {format}", flush=True)
            export("sd14", format, fp32, init="random", height=latent, width=latent, validate=False, overwrite=True)
        report = quantized("sd14", format, work / f"sd14-w8a8-{format}-{latent}", init="random", height=latent,
                           width=latent, samples=args.sd14_samples, task_check=False)
        result[format] = summary(report)
        targets[format] = (resolve_target(work / f"sd14-w8a8-{format}-{latent}"), resolve_target(fp32))
        result[format]["latent"] = latent
    timing = {"threads": args.threads, "rounds": args.rounds, "pairs": args.pairs, "calls": args.calls}
    plans = {"openvino_int8_vs_default": ("openvino", "ov-cpu", "ov-cpu"),
             "openvino_int8_vs_f32": ("openvino", "ov-cpu", "ov-cpu-f32"),
             "onnx_int8_vs_fp32": ("onnx", "ort-cpu", "ort-cpu")}
    for name, (format, candidate_backend, baseline_backend) in plans.items():
        int8, fp32 = targets[format]
        print(f"timing {name}", flush=True)
        comparison = compare(int8, fp32, usable_backend(candidate_backend), threads=args.threads,
                             rounds=args.rounds, pairs=args.pairs, calls=args.calls, warmup=2,
                             baseline_backend=usable_backend(baseline_backend),
                             progress=lambda line: print(f"  {line}", flush=True))
        result[name] = speedup(comparison)
    result["timing"] = timing
    result["host"] = host_class(args.threads, usable_backend("ov-cpu"))
    return result


def _rel_l2(part: dict[str, Any]) -> str:
    values = [c["value"] for name, c in part["checks"].items() if name.endswith("rel_l2")]
    return f"{min(values):.3f}-{max(values):.3f}" if values else "-"


def _spread(result: dict[str, Any], metric: str) -> str:
    return f"{result[metric]:.4g} ± {result[f'{metric}_std']:.2g}"


def _verdict(task: dict[str, Any], metric: str) -> str:
    """Whether int8 differs from fp32 by more than the two spreads together."""
    fp32, int8 = task["fp32"], task["quantized"]
    difference = int8[metric] - fp32[metric]
    spread = fp32[f"{metric}_std"] + int8[f"{metric}_std"]
    return (f"{difference:+.3g}, within noise (spreads sum to {spread:.2g})" if within_noise(fp32, int8, metric) else
            f"{difference:+.3g}, beyond the spreads ({spread:.2g})")


def markdown(result: dict[str, Any]) -> str:
    lines = ["# compress quantize: quality and speed of calibrated int8", "",
             f"Command: `{result['command']}`", "", f"Host: {result['host']}", ""]
    toy = result.get("toy")
    if toy:
        lines += ["## Toy teacher, w8a8, fd through the runtime (500 samples x 3 seeds, 25 DDIM steps, guidance 3)",
                  "", "| format | fp32 torch fd | int8 fd | ratio (limit) | fp32 torch kid | int8 kid | "
                  "class_accuracy fp32 -> int8 | rel-L2 on fresh calibration inputs | runtime, precision | passed |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        formats = [format for format in ("openvino", "onnx") if format in toy]
        for format in formats:
            part = toy[format]
            task = part["task"]
            ratio = part["checks"]["task_fd_ratio"]
            fp32, int8 = task["fp32"], task["quantized"]
            lines.append(f"| {format} | {fp32['fd']:.2f} ± {fp32['fd_std']:.2f} | {int8['fd']:.2f} ± "
                         f"{int8['fd_std']:.2f} | {ratio['value']:.3f} ({ratio['limit']}) | {_spread(fp32, 'kid')} | "
                         f"{_spread(int8, 'kid')} | {fp32['class_accuracy']:.3f} -> {int8['class_accuracy']:.3f} | "
                         f"{_rel_l2(part)} | "
                         f"{int8['runtime']}, {int8['precision']} | {part['validated']} |")
        lines += ["", "Means +- std over seeds 0, 1, 2. " + " ".join(
            f"{format}: fd {_verdict(toy[format]['task'], 'fd')}, kid {_verdict(toy[format]['task'], 'kid')}."
            for format in formats)]
        same = toy["reproducible"]
        lines += ["", f"Same seed, quantized again: weights file byte-identical: "
                      f"{same['same_seed_same_weights_file']} ({same['bytes']} bytes); calibration record equal: "
                      f"{same['calibration_equal']}.", ""]
    span = result.get("span")
    if span:
        lines += ["## SPAN x4 (shipped), w8a8, Y-PSNR on the held-out split", "",
                  "| format | --keep-sensitive | fp32 torch dB | int8 dB | drop dB (limit) | rel-L2 on fresh crops | "
                  "passed |", "|---|---|---|---|---|---|---|"]
        for name, part in span.items():
            if name == "seconds":
                continue
            format, keep = name.split("-keep")
            drop = part["checks"]["task_psnr_drop_db"]
            lines.append(f"| {format} | {keep} | {part['task']['fp32']['psnr']:.3f} | "
                         f"{part['task']['quantized']['psnr']:.3f} | {drop['value']:.3f} ({drop['limit']}) | "
                         f"{_rel_l2(part)} | {part['validated']} |")
        kept = span["onnx-keep4"]["kept_layers"]
        named = ", ".join(f"{k['layer']} ({k['rel_l2']:.3f})" for k in kept)
        lines += ["", f"Kept in float with --keep-sensitive 4 (their sensitivity, output rel-L2): {named}.", ""]
        lines.append("")
    sd14 = result.get("sd14")
    if sd14:
        timing = sd14["timing"]
        lines += ["## SD-v1.4 UNet (random weights), batch 1: int8 against fp32, interleaved", "",
                  f"Latent: OpenVINO {sd14['openvino']['latent']}x{sd14['openvino']['latent']}, ONNX Runtime "
                  f"{sd14['onnx']['latent']}x{sd14['onnx']['latent']} (onnxruntime's calibration of the 64x64 "
                  "UNet was killed for memory on this 24 GB machine).", "",
                  f"{timing['threads']} threads; {timing['rounds']} rounds x {timing['pairs']} ABBA pairs of "
                  f"{timing['calls']}-call blocks; ISA {', '.join(sd14['host']['isa'])}; "
                  f"{sd14['samples']} calibration rows.", "",
                  "| comparison | backends (int8 vs fp32) | int8 p50 ms | fp32 p50 ms | speed-up (95% interval) |",
                  "|---|---|---|---|---|"]
        for name in ("openvino_int8_vs_default", "openvino_int8_vs_f32", "onnx_int8_vs_fp32"):
            row = sd14[name]
            lines.append(f"| {name} | {row['backend']} | {row['int8_p50_ms']:.0f} | {row['fp32_p50_ms']:.0f} | "
                         f"**{row['speedup']:.2f}x** ({row['speedup_low']:.2f}-{row['speedup_high']:.2f}) |")
        lines += ["", "Quantization error (random weights, so a tensor check only): rel-L2 on fresh "
                      f"calibration-distributed inputs, OpenVINO {_rel_l2(sd14['openvino'])}, ONNX "
                      f"{_rel_l2(sd14['onnx'])}.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="scratch folder; finished parts are reused")
    parser.add_argument("--parts", default=",".join(PARTS), help="comma-separated parts to run (toy, span, sd14)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--calls", type=int, default=3)
    parser.add_argument("--sd14-samples", type=int, default=32, help="calibration rows of the sd14 UNet")
    parser.add_argument("--toy-formats", default="openvino,onnx", help="formats the toy is quantized for")
    args = parser.parse_args()
    parts = [p for p in args.parts.split(",") if p]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        parser.error(f"unknown parts {unknown}; choose from {', '.join(PARTS)}")
    args.work.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"command": shlex.join(["python", "benchmarks/bench_quantize.py", *sys.argv[1:]]),
                              "host": host_class(args.threads, usable_backend("ov-cpu"))}
    for part in parts:
        cached = args.work / f"{part}.json"
        if not cached.is_file():
            started = time.time()
            if part == "toy":
                value = toy_part(args.work, args.toy_formats.split(","))
            else:
                value = span_part(args.work) if part == "span" else sd14_part(args.work, args)
            value["seconds"] = round(time.time() - started, 1)
            write_json(cached, value)
        result[part] = read_json(cached)
    RESULTS.mkdir(exist_ok=True)
    write_json(RESULTS / "quantize.json", result)
    text = markdown(result)
    (RESULTS / "quantize.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
