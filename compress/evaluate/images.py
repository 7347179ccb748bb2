"""Save a batch of generated images as one grid image, for a quick look at what a model makes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from compress.io import atomic_file, image_format


def save_grid(images: torch.Tensor, path: str | os.PathLike, columns: int = 10, max_rows: int = 10,
              scale: int = 4) -> Path:
    """Write the first `columns * max_rows` images ((N, C, H, W) in [-1, 1]) as a grid, PNG or JPEG by extension.

    With labels cycling 0..9 and 10 columns, each column shows one class. Pixels are
    enlarged `scale` times (nearest) so that 16x16 samples are visible. Written atomically.
    """
    images = images[: columns * max_rows].detach().float().cpu()
    n, channels, height, width = images.shape
    rows = -(-n // columns)
    grid = torch.full((channels, rows * (height + 1) + 1, columns * (width + 1) + 1), 0.0)  # grey lines
    for i, image in enumerate(images):
        top, left = 1 + (i // columns) * (height + 1), 1 + (i % columns) * (width + 1)
        grid[:, top : top + height, left : left + width] = image
    pixels = ((grid.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
    pixels = np.repeat(np.repeat(pixels, scale, axis=0), scale, axis=1)
    picture = Image.fromarray(pixels[..., 0] if channels == 1 else pixels)
    with atomic_file(path) as tmp:
        picture.save(tmp, format=image_format(path))
    return Path(path)
