"""Upscale images with SPAN tile by tile, so the memory needed does not grow with the image size.

Each tile is run with `overlap` low-resolution pixels of real context on every side and only its centre is kept.
An output pixel of SPAN depends on 21 input pixels around it (21 stacked 3x3 convolutions), so with the default
overlap of 24 the tiled result equals the untiled one up to float rounding.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from pathlib import Path

import torch

from compress.errors import CompressError
from compress.io import atomic_output_dir, check_new_files
from compress.models.resolve import load_span
from compress.models.span import SPAN
from compress.sr.files import list_images, read_image, to_uint8, write_image
from compress.sr.settings import check_folder_output, check_tiling

DEFAULT_TILE = 256
DEFAULT_OVERLAP = 24


def model_name(model_ref: str | os.PathLike | SPAN) -> str:
    """How messages and reports name a model reference."""
    return f"SPAN C={model_ref.channels} x{model_ref.scale}" if isinstance(model_ref, SPAN) else str(model_ref)


def deploy_model(model_ref: str | os.PathLike | SPAN, scale: int | None = None) -> SPAN:
    """Load a model for inference, check its scale if one is requested, and return its fused form.

    A `SPAN` passed in is not modified: an unfused one is copied before fusing.
    """
    model = load_span(model_ref)
    if scale is not None and scale != model.scale:
        raise CompressError(f"model {model_name(model_ref)} upscales x{model.scale}, but scale {scale} was requested")
    return model if model.is_fused else copy.deepcopy(model).fuse().eval()


def _tiles(length: int, tile: int, overlap: int) -> Iterator[tuple[int, int, int, int]]:
    """(start, stop) of each tile along one axis, and the (start, stop) of the context it is run with."""
    for start in range(0, length, tile):
        stop = min(start + tile, length)
        yield start, stop, max(0, start - overlap), min(length, stop + overlap)


@torch.inference_mode()
def upscale_tensor(
    model: SPAN, image: torch.Tensor, tile: int = DEFAULT_TILE, overlap: int = DEFAULT_OVERLAP
) -> torch.Tensor:
    """Upscale a (3, H, W) [0, 1] image; returns the (3, H * s, W * s) uint8 result, clamped and rounded."""
    check_tiling(tile, overlap)
    s = model.scale
    _, height, width = image.shape
    device = next(model.parameters(), torch.empty(0)).device  # an exported graph has no torch parameters
    out = torch.empty(3, height * s, width * s, dtype=torch.uint8)
    for y0, y1, cy0, cy1 in _tiles(height, tile, overlap):
        for x0, x1, cx0, cx1 in _tiles(width, tile, overlap):
            context = image[None, :, cy0:cy1, cx0:cx1].to(device)
            result = model(context)[0, :, (y0 - cy0) * s : (y1 - cy0) * s, (x0 - cx0) * s : (x1 - cx0) * s]
            out[:, y0 * s : y1 * s, x0 * s : x1 * s] = to_uint8(result).cpu()
    return out


def upscale_image(
    model_ref: str | os.PathLike | SPAN,
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    scale: int | None = None,
    tile: int = DEFAULT_TILE,
    overlap: int = DEFAULT_OVERLAP,
    overwrite: bool = False,
) -> Path:
    """Upscale one image file into `output_path` (format from its suffix), which appears only when complete."""
    output_path = Path(output_path)
    check_new_files([output_path], overwrite)
    check_tiling(tile, overlap)
    image = read_image(input_path)  # an unreadable image is refused before the model loads
    write_image(upscale_tensor(deploy_model(model_ref, scale), image, tile, overlap), output_path)
    return output_path


def upscale_folder(
    model_ref: str | os.PathLike | SPAN,
    input_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    scale: int | None = None,
    tile: int = DEFAULT_TILE,
    overlap: int = DEFAULT_OVERLAP,
    overwrite: bool = False,
) -> list[Path]:
    """Upscale every image in `input_dir` to a PNG of the same stem in `output_dir` (created whole or not at all)."""
    check_folder_output(input_dir, output_dir, overwrite)
    inputs = list_images(input_dir)
    stems = [path.stem for path in inputs]
    duplicates = sorted({stem for stem in stems if stems.count(stem) > 1})
    if duplicates:
        raise CompressError(f"{input_dir} has several images named {duplicates[0]}.* (outputs would collide)")
    model = deploy_model(model_ref, scale)
    with atomic_output_dir(output_dir, overwrite=overwrite) as tmp:
        for path in inputs:
            write_image(upscale_tensor(model, read_image(path), tile, overlap), tmp / f"{path.stem}.png")
    return [Path(output_dir) / f"{stem}.png" for stem in stems]
