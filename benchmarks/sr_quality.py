"""Per-image quality of the shipped SPAN models: held-out scikit-image photos and photos from outside that source.

    python benchmarks/sr_quality.py            # writes benchmarks/results/sr_quality.{json,md}

Y-channel (BT.601) PSNR and SSIM with `scale` border pixels cropped, against bicubic upscaling of the same 8-bit
low-resolution input (`compress sr eval`'s protocol). Held out: the `test` split of compress/calib_data/sr_split.json
(none of it is trained on). Outside: matplotlib's `grace_hopper.jpg` and scikit-learn's `china.jpg` and
`flower.jpg`, which ship with those packages and were never used in training or validation.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from compress.bench.host import cpu_name
from compress.io import atomic_file, write_json
from compress.models.registry import assets_dir
from compress.sr import evaluate_sr

REPO = Path(__file__).resolve().parent.parent
MODELS = (("span-x2", 2, 1.0), ("span-x4", 4, 0.5))  # name, scale, required mean gain on the held-out split (dB)


def outside_images(folder: Path) -> Path:
    import matplotlib.cbook
    import sklearn.datasets

    folder.mkdir(parents=True)
    shutil.copy(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False), folder / "grace_hopper.jpg")
    images = Path(sklearn.datasets.__file__).parent / "images"
    for name in ("china.jpg", "flower.jpg"):
        shutil.copy(images / name, folder / name)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "sr_quality")
    args = parser.parse_args()
    command = " ".join(["python benchmarks/sr_quality.py", *sys.argv[1:]])
    with tempfile.TemporaryDirectory() as tmp:
        held_out = Path(tmp) / "held_out"
        subprocess.run([sys.executable, str(REPO / "scripts" / "export_skimage_images.py"), "test", str(held_out)],
                       check=True, stdout=subprocess.DEVNULL)
        sets = {"held-out scikit-image": held_out, "outside": outside_images(Path(tmp) / "outside")}
        results = {name: {label: evaluate_sr(name, folder, scale=scale) for label, folder in sets.items()}
                   for name, scale, _ in MODELS}

    rows, checks = [], []
    for name, _, gain in MODELS:
        for label, result in results[name].items():
            for score in [*result.images, result]:
                image = getattr(score, "name", "**mean**")
                rows.append(f"| {name} | {label} | {image} | {score.psnr:.2f} | {score.bicubic_psnr:.2f} | "
                            f"{score.psnr - score.bicubic_psnr:+.2f} | {score.ssim:.4f} | {score.bicubic_ssim:.4f} |")
        held = results[name]["held-out scikit-image"]
        outside = results[name]["outside"]
        checks.append(f"- {name}: held-out mean gain {held.psnr - held.bicubic_psnr:+.2f} dB (needs >= +{gain:.1f}): "
                      f"{'PASS' if held.psnr - held.bicubic_psnr >= gain else 'FAIL'}; beats bicubic on every "
                      f"outside image: {'PASS' if all(s.psnr > s.bicubic_psnr for s in outside.images) else 'FAIL'}")
    host = f"{cpu_name()}, torch CPU fp32"
    training = []
    for name, _, _ in MODELS:
        record = json.loads((assets_dir(name) / "training.json").read_text())
        last = record["history"][-1]
        training += [f"- {name}: `{record['command']}` ({record['train_seconds'] / 60:.1f} min of training steps; "
                     f"final validation Y-PSNR {last['psnr']:.2f} dB, bicubic {last['bicubic_psnr']:.2f} dB)"]
    md = "\n".join([
        "# Super-resolution quality of the shipped SPAN models",
        "",
        f"Written by `{command}` on {host}. Y-channel PSNR (dB) and SSIM, `scale` border",
        "pixels cropped, against bicubic upscaling of the same 8-bit low-resolution input. Held out: the `test`",
        "split of `compress/calib_data/sr_split.json`. Outside: matplotlib's grace_hopper, scikit-learn's china and",
        "flower (never used in training or validation). One number per image: the models are deterministic.",
        "",
        "| model | set | image | SPAN PSNR | bicubic PSNR | gain | SPAN SSIM | bicubic SSIM |",
        "|---|---|---|---:|---:|---:|---:|---:|",
        *rows,
        "",
        "Checks:",
        *checks,
        "",
        "Training (recorded in `compress/assets/span-x*/training.json`; the image folders come from",
        "`python scripts/export_skimage_images.py train|val DIR`):",
        *training,
        "",
    ])
    payload = {"command": command, "host": host, "threads": torch.get_num_threads(),
               "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"), "torch": torch.__version__,
               "results": {name: {label: dataclasses.asdict(r) for label, r in sets_.items()}
                           for name, sets_ in results.items()}}
    write_json(args.out.with_suffix(".json"), payload)
    with atomic_file(args.out.with_suffix(".md")) as tmp_path:
        tmp_path.write_text(md)
    print(md)
    print(json.dumps({"wrote": [str(args.out.with_suffix(".json")), str(args.out.with_suffix(".md"))]}))


if __name__ == "__main__":
    main()
