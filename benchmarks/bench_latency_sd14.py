"""Does pruning buy latency? SD-v1.4's UNet against its ratio-0.3 pruned version, and SPAN fused against unfused.

    python benchmarks/bench_latency_sd14.py [--pruned DIR] [--work DIR] [--threads 2] [--runs 7]

In one process: sd14 (random init: latency does not depend on the weights) and its pruned version at a 32x32
latent (256 px images), exported to ONNX and OpenVINO and timed on ort-cpu and ov-cpu; then SPAN x4 (48 channels)
in its training form and its fused deploy form on torch-cpu, ort-cpu and ov-cpu. For each pair it prints the
latency ratio next to the FLOP ratio (convolutions, linear layers and attention: the same ratio as MACs) and each
model's efficiency. The pruned UNet comes from --pruned, an earlier run in --work, or is made here with
`compress prune --model sd14 --init random --ratio 0.3` (several minutes). Exports are reused from --work.
Writes benchmarks/results/latency_sd14.{json,md}.
"""

from __future__ import annotations

import argparse
import copy
import shlex
import sys
import tempfile
from pathlib import Path

import torch

from compress.bench import Target, bench, resolve_target
from compress.bench.report import host_info, markdown
from compress.io import read_json, write_json
from compress.types import BenchResult

RESULTS = Path(__file__).resolve().parent / "results"
LATENT = 32
FORMATS = {"onnx": "ort-cpu", "openvino": "ov-cpu"}


def pruned_folder(args: argparse.Namespace) -> Path:
    for folder in (args.pruned, args.work / "sd14-pruned"):
        if folder is not None and (folder / "prune_report.json").is_file():
            return folder
    from compress.prune import prune

    print("pruning sd14 at ratio 0.3 (random init; several minutes)", flush=True)
    prune("sd14", args.work / "sd14-pruned", ratio=0.3, init="random", progress=False)
    return args.work / "sd14-pruned"


def exported(source: str | Path, name: str, format: str, work: Path, **options) -> Target:
    """The export of `source` in `work/name-format`, made unless a finished one is there."""
    from exporters import export

    folder = work / f"{name}-{format}"
    if not (folder / "export_report.json").is_file():
        print(f"exporting {name} to {format}", flush=True)
        export(source, format, folder, validate=False, overwrite=True, **options)
    return resolve_target(folder)


def plain_export(module: torch.nn.Module, example: torch.Tensor, folder: Path) -> dict[str, Target]:
    """ONNX (torch's dynamo exporter) and OpenVINO (converted from that ONNX) of a module the exporters do not
    write: the exporters always fuse SPAN, and both SPAN forms must take the same path to compare fairly."""
    import openvino as ov

    onnx_path, xml_path = folder / "model.onnx", folder / "model.xml"
    if not xml_path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        torch.onnx.export(module, (example,), str(onnx_path), dynamo=True, input_names=["image"],
                          output_names=["upscaled"], verbose=False)
        ov.save_model(ov.convert_model(str(onnx_path)), str(xml_path), compress_to_fp16=False)
    return {"onnx": resolve_target(onnx_path), "openvino": resolve_target(xml_path)}


def compare(label: str, big: BenchResult, small: BenchResult) -> dict:
    row = {"pair": label, "backend": big.backend, "p50_ms": [big.p50_ms, small.p50_ms],
           "latency_ratio": big.p50_ms / small.p50_ms, "flop_ratio": big.flops / small.flops,
           "efficiency": [big.efficiency, small.efficiency]}
    row["latency_over_flop_ratio"] = row["latency_ratio"] / row["flop_ratio"]
    return row


def time_pairs(label: str, pair: dict[str, list[Target]], args: argparse.Namespace) -> tuple[list, list[dict]]:
    """Bench (big, small) per format on that format's backend; returns the results and the comparisons."""
    results, rows = [], []
    for format, (big, small) in pair.items():
        backend = FORMATS.get(format, "torch-cpu")
        timed = bench([big, small], [backend], args.warmup, args.runs, args.threads)
        results += timed
        rows.append(compare(label, *timed))
    return results, rows


def sd14_section(args: argparse.Namespace) -> tuple[list, list[dict], dict]:
    pruned = pruned_folder(args)
    report = read_json(pruned / "prune_report.json")
    size = {"height": LATENT, "width": LATENT}
    pair = {format: [exported("sd14", "sd14", format, args.work, init="random", **size),
                     exported(str(pruned), "sd14-pruned", format, args.work, **size)] for format in FORMATS}
    results, rows = time_pairs("sd14 / sd14-pruned-0.3", pair, args)
    prune_info = {"folder": str(pruned), "macs_resolution": report.get("macs_resolution"),
                  "prune_report_mac_ratio": report["macs_before"] / report["macs_after"],
                  "removed": report["removed"]}
    return results, rows, prune_info


def span_section(args: argparse.Namespace) -> tuple[list, list[dict]]:
    from compress.sr import SPAN

    torch.manual_seed(0)
    unfused = SPAN(channels=48, scale=4).eval()
    fused = copy.deepcopy(unfused).fuse().eval()
    example = torch.rand(1, 3, args.span_size, args.span_size)
    forms = {"span-x4-unfused": unfused, "span-x4-fused": fused}
    exports = {name: plain_export(module, example, args.work / name) for name, module in forms.items()}
    pair = {format: [exports[name][format] for name in forms] for format in FORMATS}
    pair["torch"] = [Target.from_module(name, module, {"image": example}) for name, module in forms.items()]
    return time_pairs("span-x4 unfused / fused", pair, args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pruned", type=Path, help="folder written by compress prune (ratio 0.3 of sd14)")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "compress-latency-sd14",
                        help="exports go here")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--span-size", type=int, default=128, help="SPAN low-resolution input size")
    parser.add_argument("--skip-sd14", action="store_true", help="only the SPAN comparison")
    parser.add_argument("--out", type=Path, default=RESULTS / "latency_sd14")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)

    results, rows, prune_info = [], [], None
    if not args.skip_sd14:
        results, rows, prune_info = sd14_section(args)
    span_results, span_rows = span_section(args)
    results += span_results
    rows += span_rows

    command = "python " + " ".join(map(shlex.quote, sys.argv))
    write_json(args.out.with_suffix(".json"), {"command": command, "host": host_info(), "threads": args.threads,
                                               "latent": LATENT, "span_size": args.span_size, "prune": prune_info,
                                               "comparisons": rows, "results": [r.to_dict() for r in results]})
    lines = ["# Latency: pruned vs original sd14 UNet, fused vs unfused SPAN", "", f"`{command}`", "",
             "| pair | backend | p50 ms (big / small) | latency ratio | FLOP ratio | latency / FLOP ratio "
             "| efficiency (big / small) |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        eff = " / ".join(f"{e:.1%}" if e is not None else "-" for e in row["efficiency"])
        lines.append(f"| {row['pair']} | {row['backend']} | {row['p50_ms'][0]:.1f} / {row['p50_ms'][1]:.1f} "
                     f"| {row['latency_ratio']:.3f} | {row['flop_ratio']:.3f} | {row['latency_over_flop_ratio']:.2f} "
                     f"| {eff} |")
    if prune_info:
        mac_ratio, resolution = prune_info["prune_report_mac_ratio"], prune_info["macs_resolution"]
        lines += ["", f"Pruned: {prune_info['folder']} (prune report MAC ratio {mac_ratio:.3f} at "
                  f"{resolution}x{resolution}; removed {', '.join(prune_info['removed'])})."]
    lines += ["", "## All results", "", markdown(results)]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:len(rows) + 6]))


if __name__ == "__main__":
    main()
