"""The rules of a training run's folder and counts, torch-free so that `recover`, `distill` and `sr train`
refuse a bad request before torch is imported; `training.TrainingRun` applies the same rules."""

from __future__ import annotations

import os
from pathlib import Path

from compress.errors import CompressError
from compress.io import check_writable

CHECKPOINT = "checkpoint.pt"
MIXED_PRECISION = ("no", "fp16", "bf16")


def check_run(out: str | os.PathLike, *, steps: int, checkpoint_every: int, grad_accum: int = 1,
              mixed_precision: str = "no", resume: bool = False, overwrite: bool = False) -> None:
    """A run in `out` can start (a new folder, or `overwrite`) or continue (`resume` and its checkpoint)."""
    for name, value in (("steps", steps), ("checkpoint_every", checkpoint_every), ("grad_accum", grad_accum)):
        if value < 1:
            raise CompressError(f"--{name.replace('_', '-')} must be at least 1, not {value}")
    if mixed_precision not in MIXED_PRECISION:
        raise CompressError(f"--mixed-precision must be one of {', '.join(MIXED_PRECISION)}, not {mixed_precision!r}")
    out = Path(out)
    if out.exists() and not (resume or overwrite):
        raise CompressError(f"output folder {out} already exists (pass --resume to continue it or --overwrite)")
    if resume and not (out / CHECKPOINT).is_file():
        raise CompressError(f"nothing to resume: {out / CHECKPOINT} not found")
    check_writable(out / CHECKPOINT)
