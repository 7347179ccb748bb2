"""Reading and writing images and result files for super-resolution, all-or-nothing."""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from compress.errors import CompressError
from compress.io import atomic_file
from compress.optional import require
from compress.sr.settings import IMAGE_SUFFIXES

SPLIT_FILE = Path(str(resources.files("compress") / "calib_data" / "sr_split.json"))


def list_images(folder: str | os.PathLike) -> list[Path]:
    """The image files directly inside `folder`, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CompressError(f"image folder not found: {folder}")
    images = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise CompressError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return images


def read_image(path: str | os.PathLike) -> torch.Tensor:
    """Read an image as a (3, H, W) float tensor in [0, 1]; grey images are replicated, alpha is dropped."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            array = np.asarray(image.convert("RGB"))
    except FileNotFoundError:
        raise CompressError(f"image not found: {path}") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise CompressError(f"cannot read image {path}: {exc}") from None
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float() / 255


def to_uint8(image: torch.Tensor) -> torch.Tensor:
    """Clamp to [0, 1] and round to 8 bits, the way an image file stores it."""
    return (image.clamp(0, 1) * 255).round().to(torch.uint8)


def write_image(image: torch.Tensor, path: str | os.PathLike) -> None:
    """Write a (3, H, W) uint8 or [0, 1] float tensor; the format follows the suffix and `path` appears whole."""
    if image.dtype != torch.uint8:
        image = to_uint8(image)
    array = image.permute(1, 2, 0).contiguous().numpy()
    with atomic_file(path) as tmp:
        try:
            Image.fromarray(array).save(tmp)
        except (ValueError, OSError) as exc:
            raise CompressError(f"cannot write image {path}: {exc}") from None


def load_skimage(name: str) -> np.ndarray:
    """An image from `skimage.data` by name; the two views of the stereo pair are `motorcycle_left/right`."""
    data = require("skimage.data", "the shipped SR split")
    if name in ("motorcycle_left", "motorcycle_right"):
        left, right, _ = data.stereo_motorcycle()
        return left if name == "motorcycle_left" else right
    return getattr(data, name)()


def split_images(split: str) -> dict[str, torch.Tensor]:
    """The images of one split of `sr_split.json` (train, val, test) as (3, H, W) [0, 1] tensors, read offline."""
    images = {}
    for name in json.loads(SPLIT_FILE.read_text())[split]:
        array = load_skimage(name)
        array = np.repeat(array[..., None], 3, axis=2) if array.ndim == 2 else array[..., :3]
        images[name] = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).float() / 255
    return images
