"""Can this machine export the full SD-v1.4 UNet and a pruned one? ONNX and OpenVINO at a 64x64 latent (512 px).

    python benchmarks/bench_export_sd14.py [--pruned DIR] [--work DIR] [--fp16]

Runs `compress export` once per model and format, each in its own process so that every report's peak memory is
that export's alone (the process peak: model load, export, then validation), one at a time. sd14 uses random
weights (`--init random`: export and validation do not depend on the weights). The pruned UNet comes from
--pruned, an earlier run in --work, or is made with `compress prune --model sd14 --init random --preset bk-small`
(no scoring, seconds). `--fp16` adds fp16 exports. Writes benchmarks/results/export_sd14.md from the reports.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
COMPRESS = [sys.executable, "-m", "compress"]


def pruned_folder(args: argparse.Namespace) -> tuple[Path, list[str] | None]:
    """The pruned UNet and the command that made it here (None when it already existed)."""
    for folder in (args.pruned, args.work / "sd14-bk-small"):
        if folder is not None and (folder / "unet").is_dir():
            return folder, None
    folder = args.work / "sd14-bk-small"
    command = COMPRESS + ["prune", "--model", "sd14", "--init", "random", "--preset", "bk-small", "--out", str(folder)]
    subprocess.run(command, check=True)
    return folder, command


def run_export(source: str, format: str, out: Path, extra: list[str]) -> tuple[list[str], float, int]:
    command = COMPRESS + ["export", source, "--format", format, "--out", str(out), "--overwrite", *extra]
    started = time.time()
    code = subprocess.run(command).returncode
    return command, round(time.time() - started, 1), code


def check(report: dict, name: str) -> dict:
    return next((c for c in report["checks"] if c["name"] == name), {"value": None, "passed": None})


def row(label: str, report: dict, wall: float, code: int) -> str:
    sizes = ", ".join(f"{Path(n).name} {s / 1e9:.2f} GB" for n, s in report["file_sizes"].items() if s > 1e6)
    rel, peak = check(report, "rel_l2"), check(report, "validation_peak_memory_mb")
    default = next((c["value"] for c in report["checks"] if c["name"].startswith("default_") and "rel_l2" in c["name"]),
                   None)
    default = "" if default is None else f"{default:.2e}"
    return (f"| {label} | {report['format']} | {report['weights']} | {sizes} | {report['export_seconds']:.0f} | "
            f"{wall:.0f} | {report['peak_memory_mb'] / 1024:.1f} | {peak['value'] / 1024:.1f} | "
            f"{rel['value']:.2e} | {check(report, 'max_abs')['value']:.2e} | "
            f"{default} | "
            f"{'pass' if report['validated'] is True else report['validated']} (exit {code}) |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pruned", type=Path, default=None)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "compress-export-sd14")
    parser.add_argument("--fp16", action="store_true", help="also export fp16 variants")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    pruned, prune_command = pruned_folder(args)
    runs = [("sd14", "sd14", ["--init", "random"]), ("pruned", str(pruned), [])]
    variants = [[]] + ([["--fp16"]] if args.fp16 else [])
    rows, commands = [], [" ".join(["compress", *prune_command[3:]])] if prune_command else []
    for label, source, extra in runs:
        for format in ("onnx", "openvino"):
            for variant in variants:
                out = args.work / f"{label}-{format}{''.join(v.strip('-') for v in variant)}"
                command, wall, code = run_export(source, format, out, extra + variant)
                commands.append(" ".join(["compress", *command[3:]]))
                report = json.loads((out / "export_report.json").read_text())
                rows.append(row(label, report, wall, code))
    lines = ["| model | format | weights | files | export s | wall s | peak GB (export) | peak GB (validation) | "
             "rel L2 | max abs | rel L2 at OV default precision | validation |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|", *rows]
    print("\n".join(lines))
    print("\ncommands:\n" + "\n".join(commands))


if __name__ == "__main__":
    main()
