"""Score SPAN against plain bicubic upscaling on a folder of high-resolution images.

Protocol: each image is cropped to a multiple of the scale, downscaled with antialiased bicubic and stored in 8 bits
(the low-resolution input), upscaled by the model and by bicubic, and scored on Y with `scale` border pixels cropped.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from compress.errors import CompressError
from compress.models.span import SPAN
from compress.sr.files import list_images, read_image, to_uint8
from compress.sr.metrics import psnr_y, ssim_y
from compress.sr.upscale import DEFAULT_TILE, deploy_model, model_name, upscale_tensor


def bicubic_resize(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Antialiased bicubic resize of an (N, 3, H, W) batch (close to MATLAB's `imresize`)."""
    return F.interpolate(images, size=size, mode="bicubic", align_corners=False, antialias=True)


def degrade(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """The 8-bit low-resolution version of an (N, 3, H, W) batch whose sides are multiples of `scale`, as floats."""
    lr = bicubic_resize(hr, (hr.shape[-2] // scale, hr.shape[-1] // scale))
    return to_uint8(lr).float() / 255


def modcrop(image: torch.Tensor, scale: int) -> torch.Tensor:
    """Crop the bottom and right so both sides are multiples of `scale`."""
    height, width = image.shape[-2:]
    return image[..., : height - height % scale, : width - width % scale]


@dataclass
class SRImageScore:
    name: str
    psnr: float
    ssim: float
    bicubic_psnr: float
    bicubic_ssim: float


@dataclass
class SREvalResult:
    """Y-channel PSNR (dB) and SSIM of the model and of bicubic, averaged over `images`."""

    model: str
    scale: int
    psnr: float
    ssim: float
    bicubic_psnr: float
    bicubic_ssim: float
    images: list[SRImageScore] = field(default_factory=list)


def score_image(model: SPAN, hr: torch.Tensor, name: str, tile: int = DEFAULT_TILE) -> SRImageScore:
    """Score one (3, H, W) [0, 1] high-resolution image; `model` should be in eval mode."""
    s = model.scale
    hr = modcrop(hr, s)
    lr = degrade(hr[None], s)
    reference = to_uint8(hr)
    sr = upscale_tensor(model, lr[0], tile=tile)
    bicubic = to_uint8(bicubic_resize(lr, tuple(hr.shape[-2:]))[0])
    return SRImageScore(
        name=name,
        psnr=psnr_y(sr, reference, s),
        ssim=ssim_y(sr, reference, s),
        bicubic_psnr=psnr_y(bicubic, reference, s),
        bicubic_ssim=ssim_y(bicubic, reference, s),
    )


def summarize(model: str, scale: int, scores: Sequence[SRImageScore]) -> SREvalResult:
    def mean(attr: str) -> float:
        return sum(getattr(score, attr) for score in scores) / len(scores)

    return SREvalResult(model=model, scale=scale, psnr=mean("psnr"), ssim=mean("ssim"),
                        bicubic_psnr=mean("bicubic_psnr"), bicubic_ssim=mean("bicubic_ssim"), images=list(scores))


def scoring_model(model_ref: str | os.PathLike | SPAN, scale: int | None = None) -> SPAN:
    """The fused torch model, or for a folder `compress export` / `compress quantize` wrote, the exported graph run by
    its runtime (so the PSNR is that of what ships)."""
    from exporters.runtime import is_export_folder, load_exported_span  # the runtimes load only when asked for

    if isinstance(model_ref, SPAN) or not is_export_folder(model_ref):
        return deploy_model(model_ref, scale)
    model = load_exported_span(model_ref)
    if scale is not None and scale != model.scale:
        raise CompressError(f"the export in {model_ref} upscales x{model.scale}, but scale {scale} was requested")
    return model


def evaluate_images(model_ref: str | os.PathLike | SPAN, images: dict[str, torch.Tensor], scale: int | None = None,
                    tile: int = DEFAULT_TILE) -> SREvalResult:
    """PSNR/SSIM on Y of the model and of bicubic for named (3, H, W) [0, 1] high-resolution images."""
    model = scoring_model(model_ref, scale)
    scores = [score_image(model, image, name, tile) for name, image in images.items()]
    return summarize(model_name(model_ref), model.scale, scores)


def evaluate_sr(
    model_ref: str | os.PathLike | SPAN, data: str | os.PathLike, scale: int | None = None, tile: int = DEFAULT_TILE
) -> SREvalResult:
    """PSNR/SSIM on Y of the (fused, or exported) model and of bicubic for every image in the folder `data`."""
    return evaluate_images(model_ref, {path.name: read_image(path) for path in list_images(data)}, scale, tile)
