"""Can this machine export the full SD-v1.4 UNet and a pruned one? ONNX and OpenVINO at a 64x64 latent (512 px).

    python benchmarks/bench_export_sd14.py [--pruned DIR] [--work DIR] [--fp16]

Runs `compress export` once per model and format, each in its own process so that every report's peak memory is
that export's alone (the process peak: model load, export, then validation), one at a time. sd14 uses random
weights (`--init random`: export and validation do not depend on the weights). The pruned UNet comes from
--pruned, an earlier run in --work, or is made with `compress prune --model sd14 --init random --preset bk-small`
(no scoring, seconds). `--fp16` adds fp16 exports, `--coreml` a chunked Core ML one. Writes
benchmarks/results/export_sd14.md from the reports.
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


def _number(value: float | None, scale: float = 1.0, spec: str = ".2e") -> str:
    return "-" if value is None else format(value / scale, spec)


def row(label: str, report: dict, wall: float, code: int) -> str:
    sizes = ", ".join(f"{Path(n).name} {s / 1e9:.2f} GB" for n, s in report["file_sizes"].items() if s > 1e6)
    peak = check(report, "validation_peak_memory_mb")["value"]
    validation = "pass" if report["validated"] is True else report["validated"]
    return (f"| {label} | {report['format']} | {report['weights']} | {sizes} | {report['export_seconds']:.0f} | "
            f"{wall:.0f} | {report['peak_memory_mb'] / 1024:.1f} | {_number(peak, 1024, '.1f')} | "
            f"{_number(check(report, 'rel_l2')['value'])} | {_number(check(report, 'max_abs')['value'])} | "
            f"{_number(check(report, 'default_bf16_rel_l2')['value'])} | {validation} (exit {code}) |")


def host_line() -> str:
    """CPU model and the ISA extensions OpenVINO picks its precision by, package versions, cores."""
    import os
    from importlib.metadata import version

    from compress.bench.backends import get_backend
    from compress.bench.host import host_class

    host = host_class(2, get_backend("ov-cpu"))
    packages = ", ".join(f"{name} {version(name)}" for name in ("torch", "onnxruntime", "openvino", "onnx",
                                                               "coremltools"))
    return (f"{host['cpu']} ({' '.join(host['isa'])}), {os.cpu_count()} cores, OMP_NUM_THREADS="
            f"{os.environ.get('OMP_NUM_THREADS')}; {packages}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pruned", type=Path, default=None)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "compress-export-sd14")
    parser.add_argument("--fp16", action="store_true", help="also export fp16 variants")
    parser.add_argument("--coreml", action="store_true",
                        help="also export sd14 to Core ML, chunked, split-einsum (structural checks off macOS)")
    parser.add_argument("--out", type=Path, default=RESULTS / "export_sd14.md")
    args = parser.parse_args()
    command = " ".join(["python benchmarks/bench_export_sd14.py", *sys.argv[1:]])
    args.work.mkdir(parents=True, exist_ok=True)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    pruned, prune_command = pruned_folder(args)
    runs = [("sd14", "sd14", ["--init", "random"], "onnx"), ("sd14", "sd14", ["--init", "random"], "openvino"),
            ("pruned", str(pruned), [], "onnx"), ("pruned", str(pruned), [], "openvino")]
    variants = [[]] + ([["--fp16"]] if args.fp16 else [])
    jobs = [(label, source, extra + variant, format) for label, source, extra, format in runs for variant in variants]
    if args.coreml:
        jobs.append(("sd14", "sd14", ["--init", "random", "--chunk", "--attention", "split-einsum"], "coreml"))
    rows, commands, reports = [], [" ".join(["compress", *prune_command[3:]])] if prune_command else [], []
    for label, source, extra, format in jobs:
        out = args.work / f"{label}-{format}{''.join(v.strip('-') for v in extra if v in ('--fp16', '--chunk'))}"
        export_command, wall, code = run_export(source, format, out, extra)
        commands.append(" ".join(["compress", *export_command[3:]]))
        report = json.loads((out / "export_report.json").read_text())
        reports.append(report)
        rows.append(row(label, report, wall, code))
    bf16 = [c["value"] for r in reports for c in r["checks"] if c["name"] == "default_bf16_rel_l2"]
    peak = max(max(r["peak_memory_mb"], check(r, "validation_peak_memory_mb")["value"] or 0) for r in reports)
    lines = [
        "# Exporting the full SD-v1.4 UNet and a pruned one on this machine", "",
        f"Written by `{command}`, started {started}. Host: {host_line()}. One export at a time, each in its own "
        "process.", "",
        "- **sd14**: the full UNet, random weights (`--init random`; export and validation do not depend on them).",
        f"- **pruned**: {pruned.name}" + (f", made with `{commands[0]}`." if prune_command else " (given)."), "",
        "Shapes: batch 1, `sample` 1x4x64x64 (512x512 images), `timestep` (1,), `encoder_hidden_states` 1x77x768. "
        "Every export was validated by `compress export` itself against the fp32 torch model: onnxruntime (CPU EP), "
        "OpenVINO pinned to f32 and, where the CPU's default differs, at that default (the bf16 column), Core ML "
        "structurally off macOS.", "",
        "| model | format | weights | files | export s | wall s | peak GB (export) | peak GB (validation) | "
        "rel L2 | max abs | rel L2 at OV default precision | validation |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|", *rows, "",
        "*export s*: the conversion alone; *wall s*: the whole command (loading, building the random UNet, "
        "exporting, validating); *peak*: the process's peak resident memory (ru_maxrss) after export and after "
        "validation. Limits: rel L2 <= 1e-4 (fp32 weights), <= 1e-2 (fp16), <= 5e-2 at bf16.", "",
        f"Worst peak {peak / 1024:.1f} GB of 24 GiB." + (f" OpenVINO at its default bf16: rel L2 {min(bf16):.2e} to "
                                                        f"{max(bf16):.2e}." if bf16 else ""), "",
        "## Commands", "", "```", *commands, "```", ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
