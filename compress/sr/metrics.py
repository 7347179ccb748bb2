"""Super-resolution quality the way papers report it: PSNR and SSIM on the BT.601 luma (Y) channel.

Images are 8-bit (uint8 tensors, as stored in files); `scale` pixels are cropped from every border before scoring,
and SSIM is Wang et al.'s (11x11 Gaussian window, sigma 1.5, valid region), as in MATLAB and BasicSR.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

_Y_WEIGHTS = (65.481, 128.553, 24.966)  # ITU-R BT.601 for [0, 1] RGB -> Y in [16, 235]


def rgb_to_y(image: torch.Tensor) -> torch.Tensor:
    """Luma in 0..255 scale of a (3, H, W) uint8 RGB image, as float64."""
    rgb = image.double() / 255
    weights = torch.tensor(_Y_WEIGHTS, dtype=torch.float64).view(3, 1, 1)
    return 16 + (rgb * weights).sum(0)


def _crop(y: torch.Tensor, border: int) -> torch.Tensor:
    return y[border:-border, border:-border] if border > 0 else y


def psnr_y(image: torch.Tensor, reference: torch.Tensor, border: int) -> float:
    """Y-channel PSNR in dB of two (3, H, W) uint8 images, `border` pixels cropped."""
    diff = _crop(rgb_to_y(image), border) - _crop(rgb_to_y(reference), border)
    mse = diff.pow(2).mean().item()
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).view(1, 1, size, size)


def ssim_y(image: torch.Tensor, reference: torch.Tensor, border: int) -> float:
    """Y-channel SSIM of two (3, H, W) uint8 images, `border` pixels cropped."""
    x = _crop(rgb_to_y(image), border)[None, None]
    y = _crop(rgb_to_y(reference), border)[None, None]
    window = _gaussian_window()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_x, mu_y = F.conv2d(x, window), F.conv2d(y, window)
    var_x = F.conv2d(x * x, window) - mu_x**2
    var_y = F.conv2d(y * y, window) - mu_y**2
    cov = F.conv2d(x * y, window) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ssim_map.mean().item()
