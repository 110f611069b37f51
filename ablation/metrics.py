"""PSNR and SSIM exactly as the SR literature reports them.

Protocol (EDSR / BasicSR / the published tables): the SR image is clamped and rounded to 8 bits,
converted to the Y channel of ITU-R BT.601 in studio range (MATLAB ``rgb2ycbcr``: 16..235),
``scale`` pixels are shaved from every border, and PSNR = 10 log10(255^2 / MSE) is computed per
image in float64; a set's score is the mean of its per-image values. Single-channel images are
scored on their raw gray values (MATLAB's convention for Set14's grayscale image).

SSIM: Wang et al., 11x11 Gaussian window (sigma 1.5), K = (0.01, 0.03), L = 255, population
statistics, mean over the valid (unpadded) region, on the same Y crop. Checked against
``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=255)`` in the tests.

Images are ``(C, H, W)`` or ``(B, C, H, W)`` tensors with values in [0, 255], C = 3 or 1.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ablation.degradation import quantize

# MATLAB rgb2ycbcr on [0, 1] input: Y = 16 + 65.481 R + 128.553 G + 24.966 B.
_Y_COEFFS = (65.481 / 255.0, 128.553 / 255.0, 24.966 / 255.0)


def to_y(img: torch.Tensor) -> torch.Tensor:
    """``(..., 3, H, W)`` RGB in [0, 255] -> ``(..., 1, H, W)`` BT.601 luma in [16, 235].

    A single-channel image is returned as is (scored on raw intensity).
    """
    if img.shape[-3] == 1:
        return img.to(torch.float64)
    if img.shape[-3] != 3:
        raise ValueError(f"expected 1 or 3 channels, got shape {tuple(img.shape)}")
    x = img.to(torch.float64)
    r, g, b = x[..., 0:1, :, :], x[..., 1:2, :, :], x[..., 2:3, :, :]
    return 16.0 + _Y_COEFFS[0] * r + _Y_COEFFS[1] * g + _Y_COEFFS[2] * b


def _prepare(sr_img: torch.Tensor, hr_img: torch.Tensor, border: int, round_sr: bool):
    if sr_img.shape[-2:] != hr_img.shape[-2:]:
        raise ValueError(f"SR {tuple(sr_img.shape)} and HR {tuple(hr_img.shape)} differ in size")
    sr = quantize(sr_img.to(torch.float64)) if round_sr else sr_img.to(torch.float64)
    if hr_img.shape[-3] == 1 and sr.shape[-3] == 3:
        # a 3-channel net ran on a replicated gray image: score the mean of its channels
        sr = quantize(sr.mean(dim=-3, keepdim=True)) if round_sr else sr.mean(-3, keepdim=True)
    sr_y, hr_y = to_y(sr), to_y(hr_img)
    if border > 0:
        sr_y = sr_y[..., border:-border, border:-border]
        hr_y = hr_y[..., border:-border, border:-border]
    return sr_y, hr_y


def psnr(sr_img: torch.Tensor, hr_img: torch.Tensor, border: int = 0,
         round_sr: bool = True) -> float:
    """PSNR in dB of one image pair on Y with ``border`` pixels shaved (inf if identical)."""
    sr_y, hr_y = _prepare(sr_img, hr_img, border, round_sr)
    mse = torch.mean((sr_y - hr_y) ** 2).item()
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(sr_img: torch.Tensor, hr_img: torch.Tensor, border: int = 0,
         round_sr: bool = True) -> float:
    """SSIM of one image pair on Y with ``border`` pixels shaved."""
    sr_y, hr_y = _prepare(sr_img, hr_img, border, round_sr)
    return _ssim_y(sr_y.reshape(1, 1, *sr_y.shape[-2:]), hr_y.reshape(1, 1, *hr_y.shape[-2:]))


def _ssim_y(x: torch.Tensor, y: torch.Tensor) -> float:
    """SSIM of two ``(1, 1, H, W)`` float64 tensors, 'valid' filtering (no padding)."""
    if min(x.shape[-2:]) < 11:
        raise ValueError(f"image {tuple(x.shape[-2:])} is smaller than the 11x11 SSIM window")
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    g = _gaussian_window().to(x.device)
    kh, kw = g.view(1, 1, -1, 1), g.view(1, 1, 1, -1)

    def filt(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(t, kh), kw)

    mu_x, mu_y = filt(x), filt(y)
    sxx = filt(x * x) - mu_x**2
    syy = filt(y * y) - mu_y**2
    sxy = filt(x * y) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2)
    return (num / den).mean().item()


def psnr_ssim(sr_img: torch.Tensor, hr_img: torch.Tensor, border: int) -> tuple[float, float]:
    """Both metrics with one Y conversion; what :mod:`ablation.evaluate` calls per image."""
    sr_y, hr_y = _prepare(sr_img, hr_img, border, True)
    mse = torch.mean((sr_y - hr_y) ** 2).item()
    p = math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)
    s = _ssim_y(sr_y.reshape(1, 1, *sr_y.shape[-2:]), hr_y.reshape(1, 1, *hr_y.shape[-2:]))
    return p, s
