"""What a SPAN training run is asked to do, and its checks that need no images: torch-free, so `compress sr train`
refuses a bad option before torch is imported."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from compress.errors import CompressError
from compress.io import check_new_folder
from compress.runs import check_run

INITS = ("bilinear", "default")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


@dataclass
class TrainConfig:
    """Everything that determines the trained weights (with the data); a resumed run must use the same."""

    scale: int
    channels: int
    steps: int
    batch_size: int = 16
    patch_size: int = 48  # low-resolution crop side
    lr: float = 5e-4
    min_lr: float = 1e-6
    seed: int = 0
    val_every: int = 500
    checkpoint_every: int = 500
    init: str = "bilinear"  # or "default" (PyTorch's, as the official code)

    def check(self) -> None:
        for name in ("steps", "batch_size", "patch_size", "val_every", "checkpoint_every", "channels"):
            if getattr(self, name) < 1:
                raise CompressError(f"--{name.replace('_', '-')} must be positive, not {getattr(self, name)}")
        if not 0 <= self.min_lr <= self.lr or self.lr <= 0:
            raise CompressError(f"--lr must be above 0 and --min-lr in [0, --lr], got {self.lr:g} and {self.min_lr:g}")
        if self.init not in INITS:
            raise CompressError(f"--init must be one of {', '.join(INITS)}, not {self.init!r}")
        if self.init == "bilinear" and self.channels < 3:
            raise CompressError("--init bilinear needs at least 3 channels (it carries the RGB input in 3 of them)")


def run_folder(out: str | os.PathLike, ckpt_dir: str | os.PathLike | None) -> Path:
    """Where checkpoint.pt and the log live: `ckpt_dir` when given, else the output folder itself."""
    return Path(ckpt_dir) if ckpt_dir is not None else Path(out)


def check_sr_train(out: str | os.PathLike, config: TrainConfig, *, ckpt_dir: str | os.PathLike | None,
                   resume: bool, overwrite: bool) -> None:
    """Every check of a training request that needs no images; `train_span()` and the CLI both run it first."""
    config.check()
    run_dir = run_folder(out, ckpt_dir)
    if run_dir != Path(out):
        check_new_folder(out, overwrite)
    check_run(run_dir, steps=config.steps, checkpoint_every=config.checkpoint_every, resume=resume,
              overwrite=overwrite)


def check_tiling(tile: int, overlap: int = 0) -> None:
    if tile < 1 or overlap < 0:
        raise CompressError(f"tile must be positive and overlap non-negative (got tile={tile}, overlap={overlap})")


def check_folder_output(input_dir: str | os.PathLike, output_dir: str | os.PathLike, overwrite: bool) -> None:
    """A folder of images is upscaled into a folder: OUT must not name an image file, nor replace one unasked."""
    if Path(output_dir).suffix.lower() in IMAGE_SUFFIXES:
        raise CompressError(f"{input_dir} is a folder, so OUT must be a folder too; {output_dir} names an image file")
    check_new_folder(output_dir, overwrite)
