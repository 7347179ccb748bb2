"""scikit-learn's 8x8 digits, upsampled to 16x16, with the fixed train / held-out split.

The split is shipped as `digits16.npz` (made by `scripts/make_digits.py`) so that the
runtime needs no scikit-learn and every machine sees the same images.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import numpy as np
import torch
import torch.nn.functional as F

DIGITS_FILE = "digits16.npz"


@dataclass(frozen=True)
class DigitSplit:
    images: torch.Tensor  # (N, 1, 16, 16) in [-1, 1]
    labels: torch.Tensor  # (N,) int64


def upsample_digits(raw: np.ndarray) -> torch.Tensor:
    """(N, 8, 8) values 0..16 -> (N, 1, 16, 16) in [-1, 1] by bilinear upsampling."""
    x = torch.from_numpy(raw.astype(np.float32) / 16.0).unsqueeze(1)
    x = F.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False)
    return (x * 2.0 - 1.0).clamp(-1.0, 1.0)


def load_digits(split: str) -> DigitSplit:
    """Return the `train` or `heldout` split."""
    if split not in ("train", "heldout"):
        raise ValueError(f"unknown digits split {split!r}; expected 'train' or 'heldout'")
    with resources.files("compress.data").joinpath(DIGITS_FILE).open("rb") as f:
        data = np.load(f)
        raw, labels = data[f"{split}_images"], data[f"{split}_labels"]
    return DigitSplit(upsample_digits(raw), torch.from_numpy(labels.astype(np.int64)))
