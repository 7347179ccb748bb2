"""Time SPAN's training form against its fused (deploy) form on CPU, in one run, and write the ratio.

    python benchmarks/bench_span_fuse.py [--channels 48 --scale 4 --size 256 --repeats 5 --threads 1]

Both forms hold the same weights (outputs agree to 1e-4); the fused one runs one 3x3 convolution where the training
form runs a 1x1 skip and a 1x1 -> 3x3 -> 1x1 chain at twice the width.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from compress.bench.host import cpu_name
from compress.io import write_json
from compress.sr import SPAN

RESULT = Path(__file__).resolve().parent / "results" / "span_fuse.json"


@torch.inference_mode()
def median_seconds(models: list[SPAN], x: torch.Tensor, repeats: int) -> list[float]:
    """Median forward time of each model; runs alternate between models so load changes hit both alike."""
    times: list[list[float]] = [[] for _ in models]
    for model in models:
        model(x)  # warm-up: allocations and oneDNN kernel selection
    for _ in range(repeats):
        for model, model_times in zip(models, times, strict=True):
            began = time.perf_counter()
            model(x)
            model_times.append(time.perf_counter() - began)
    return [statistics.median(model_times) for model_times in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, default=48)
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--size", type=int, default=256, help="input height and width")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (set, and recorded)")
    parser.add_argument("--out", type=Path, default=RESULT)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    unfused = SPAN(args.channels, args.scale).eval()
    fused = copy.deepcopy(unfused).fuse()
    x = torch.rand(1, 3, args.size, args.size)
    with torch.inference_mode():
        max_diff = (unfused(x) - fused(x)).abs().max().item()
    unfused_s, fused_s = median_seconds([unfused, fused], x, args.repeats)

    result = {
        "command": " ".join(["python benchmarks/bench_span_fuse.py", *sys.argv[1:]]),
        "model": f"SPAN C={args.channels} x{args.scale}",
        "input": [1, 3, args.size, args.size],
        "unfused_s": unfused_s,
        "fused_s": fused_s,
        "speedup": unfused_s / fused_s,
        "max_abs_diff": max_diff,
        "repeats": args.repeats,
        "threads": torch.get_num_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "torch": torch.__version__,
        "cpu": cpu_name(),
    }
    write_json(args.out, result)
    print(f"{result['model']} at {args.size}x{args.size} on CPU ({result['threads']} threads): "
          f"unfused {unfused_s * 1e3:.0f} ms, fused {fused_s * 1e3:.0f} ms, speedup {result['speedup']:.2f}x "
          f"(max |diff| {max_diff:.1e}) -> {args.out}")


if __name__ == "__main__":
    main()
