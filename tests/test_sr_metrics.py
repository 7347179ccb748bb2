"""Y-channel PSNR/SSIM as SR papers report them, and the evaluation protocol's degradation."""

import math

import pytest
import torch

from compress.sr.evaluate import degrade, modcrop
from compress.sr.metrics import psnr_y, rgb_to_y, ssim_y


def test_bt601_luma_range():
    white = torch.full((3, 2, 2), 255, dtype=torch.uint8)
    black = torch.zeros((3, 2, 2), dtype=torch.uint8)
    assert rgb_to_y(white).allclose(torch.full((2, 2), 235.0, dtype=torch.float64))
    assert rgb_to_y(black).allclose(torch.full((2, 2), 16.0, dtype=torch.float64))


def test_psnr_known_value_and_border_crop():
    a = torch.full((3, 10, 10), 100, dtype=torch.uint8)
    b = a.clone()
    b[:, 0, :] = 120  # differs only on the top row
    assert psnr_y(a, b, border=1) == math.inf
    mse = (20 * (65.481 + 128.553 + 24.966) / 255) ** 2 / 10  # one row of ten differs
    assert psnr_y(a, b, border=0) == pytest.approx(10 * math.log10(255**2 / mse))


def test_ssim_matches_scikit_image():
    metrics = pytest.importorskip("skimage.metrics")
    torch.manual_seed(0)
    a = (torch.rand(3, 40, 50) * 255).to(torch.uint8)
    b = (a.float() + torch.randn(3, 40, 50) * 10).clamp(0, 255).round().to(torch.uint8)
    reference = metrics.structural_similarity(rgb_to_y(a[:, 2:-2, 2:-2]).numpy(), rgb_to_y(b[:, 2:-2, 2:-2]).numpy(),
                                              gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                              data_range=255)
    assert ssim_y(a, b, border=2) == pytest.approx(reference, abs=1e-10)
    assert ssim_y(a, a, border=2) == pytest.approx(1.0)


def test_degrade_is_8bit_and_downscaled():
    hr = modcrop(torch.rand(1, 3, 23, 30), 4)
    assert hr.shape[-2:] == (20, 28)
    lr = degrade(hr, 4)
    assert lr.shape == (1, 3, 5, 7)
    assert torch.equal(lr * 255, (lr * 255).round())
