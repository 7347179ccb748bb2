"""Quality of what ships: the toy sampled in torch and through its ONNX and OpenVINO exports, fp32 and fp16.

    python benchmarks/eval_exports.py          # ~30 min on 2 CPU cores

Exports the toy with `compress export` (ONNX with a dynamic batch, as diffusers pipelines call it; OpenVINO at a
static batch of 1, so one runtime call per sample and step) and evaluates every export with `compress eval`'s
defaults (3 seeds). Each export's fd is judged against torch's: "within the spread" when |fd - fd_torch| <= the
sum of the two stds. The same seeds draw the same noise everywhere, so the per-seed fd differences show how far
each runtime's samples moved. Writes benchmarks/results/eval_exports_toy.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from compress.bench.host import cpu_name
from compress.evaluate import evaluate
from compress.evaluate.quality import within_noise
from exporters import export

RESULTS = Path(__file__).resolve().parent / "results"
EXPORTS = {  # label -> export() options
    "onnx fp32": {"format": "onnx", "fp16": False, "dynamic_batch": True},
    "onnx fp16": {"format": "onnx", "fp16": True, "dynamic_batch": True},
    "openvino fp32 weights": {"format": "openvino", "fp16": False},
    "openvino fp16 weights": {"format": "openvino", "fp16": True},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for eval_exports_toy.{json,md}")
    args = parser.parse_args()
    rows = {"torch": evaluate("toy", samples=args.samples).to_dict()}
    print(f"torch: fd {rows['torch']['fd']:.2f} ± {rows['torch']['fd_std']:.2f}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for label, options in EXPORTS.items():
            folder = Path(tmp) / label.replace(" ", "-")
            artifact = export("toy", out=folder, **options)
            row = evaluate(folder, samples=args.samples).to_dict()
            rows[label] = {**row, "export_validated": artifact.validated, "weights": artifact.weights}
            print(f"{label}: fd {row['fd']:.2f} ± {row['fd_std']:.2f} ({row['runtime']}, {row['precision']})",
                  flush=True)
    reference = rows["torch"]
    for row in rows.values():
        difference = row["fd"] - reference["fd"]
        row["fd_difference"] = round(difference, 3)
        row["per_seed_fd_difference"] = [round(a["fd"] - b["fd"], 3)
                                         for a, b in zip(row["per_seed"], reference["per_seed"], strict=True)]
        row["verdict"] = "within the spread" if within_noise(row, reference) else "outside the spread"
    checks = {"onnx_fp32_within_torch_spread": rows["onnx fp32"]["verdict"] == "within the spread",
              "openvino_fp32_weights_within_torch_spread": rows["openvino fp32 weights"]["verdict"] ==
              "within the spread"}
    command = f"python benchmarks/eval_exports.py --samples {args.samples}"
    result = {"command": command, "host": {"cpu": cpu_name(), "torch_threads": torch.get_num_threads()},
              "rows": rows, "checks": checks}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "eval_exports_toy.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# The toy's quality through its exports", "", f"Command: `{command}`; host {result['host']['cpu']}.", "",
             f"Each figure: mean ± std over seeds {','.join(map(str, reference['seeds']))}, {reference['samples']} "
             f"samples each, {reference['steps']} {reference['sampler']} steps, guidance {reference['guidance']:g}.",
             "", "| model | runtime | precision | fd | fd - torch (per seed) | verdict | kid | class_accuracy |",
             "|---|---|---|---:|---|---|---:|---:|"]
    lines += [f"| {label} | {r['runtime']} | {r['precision']} | {r['fd']:.2f} ± {r['fd_std']:.2f} | "
              f"{r['fd_difference']:+.2f} ({', '.join(f'{d:+.2f}' for d in r['per_seed_fd_difference'])}) | "
              f"{r['verdict'] if label != 'torch' else '-'} | {r['kid']:.4f} ± {r['kid_std']:.4f} | "
              f"{r['class_accuracy']:.3f} |" for label, r in rows.items()]
    lines += ["", *[f"- {k}: {'PASS' if v else 'FAIL'}" for k, v in checks.items()]]
    (args.out / "eval_exports_toy.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
