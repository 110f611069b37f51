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


# --------------------------------------------------------------------------- fast path
# The evaluation loop scores whole batches on the device the net ran on, in float32. Same
# protocol and, to within 1e-4 dB / 1e-6 SSIM, the same numbers as the float64 functions above
# (tests/test_evaluate_fast.py checks every benchmark image). What keeps float32 exact enough:
# the SR is rounded before anything else (integers are exact in float32), the HR and SR Y are
# computed by the same float32 expression (equal pixels give exactly equal Y), squared errors are
# summed in float64, and SSIM's second moments are taken about local means so that
# E[x^2] - E[x]^2 does not cancel catastrophically.


def y_float32(img: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` RGB in [0, 255] -> ``(B, 1, H, W)`` float32 BT.601 Y in [16, 235].

    A single-channel image is returned as float32 gray (scored on raw intensity, as above).
    """
    x = img.to(torch.float32)
    if x.shape[1] == 1:
        return x
    if x.shape[1] != 3:
        raise ValueError(f"expected 1 or 3 channels, got shape {tuple(img.shape)}")
    return 16.0 + _Y_COEFFS[0] * x[:, 0:1] + _Y_COEFFS[1] * x[:, 1:2] + _Y_COEFFS[2] * x[:, 2:3]


def sr_y_float32(sr_img: torch.Tensor, hr_channels: int) -> torch.Tensor:
    """The protocol's Y of an unrounded SR batch ``(B, C, H, W)``: round to 8 bits (in the SR's
    own dtype, so float64 input rounds as the float64 path does), a 3-channel SR of a gray HR is
    averaged and rounded again, then :func:`y_float32`."""
    sr = quantize(sr_img)
    if hr_channels == 1 and sr.shape[1] == 3:
        sr = quantize(sr.to(torch.float32).mean(dim=1, keepdim=True))
    return y_float32(sr)


SSIM_TILE = 32  # SSIM's moments are taken about the mean of each 32x32 block of windows


def _ssim_batch(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """SSIM of each pair of ``(B, 1, H, W)`` float32 Y maps ('valid' filtering) -> ``(B,)``
    float64.

    Why tiles: in float32, ``E[x^2] - E[x]^2`` loses the variance of a flat window to
    cancellation when x is large (Y ~ 16..235). Variance and covariance are shift-invariant,
    so each block of ``SSIM_TILE x SSIM_TILE`` windows is computed on its own ``(T+10)^2`` patch
    centred on that patch's mean: the squared terms are then of the size of the local
    variation, and the per-image SSIM agrees with float64 to ~1e-7.
    """
    if min(x.shape[-2:]) < 11:
        raise ValueError(f"image {tuple(x.shape[-2:])} is smaller than the 11x11 SSIM window")
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    b, _, h, w = x.shape
    t, halo = SSIM_TILE, 10
    oh, ow = h - halo, w - halo  # the valid windows
    nh, nw = -(-oh // t), -(-ow // t)
    pad = (0, nw * t + halo - w, 0, nh * t + halo - h)  # windows past the edge are dropped
    both = F.pad(torch.cat([x, y], dim=1), pad, mode="replicate")  # (B, 2, nh*t+10, nw*t+10)
    patches = both.unfold(2, t + halo, t).unfold(3, t + halo, t)  # (B, 2, nh, nw, t+10, t+10)
    patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(b * nh * nw, 2, t + halo, t + halo)
    shift = patches[:, 1:2].mean(dim=(2, 3), keepdim=True)  # (N, 1, 1, 1)
    n = patches.shape[0]
    maps = torch.empty((n, t + halo, t + halo, 5), dtype=torch.float32, device=x.device)
    maps = maps.permute(0, 3, 1, 2)  # channels_last: oneDNN's depthwise kernel
    xc = torch.sub(patches[:, 0:1], shift, out=maps[:, 0:1])
    yc = torch.sub(patches[:, 1:2], shift, out=maps[:, 1:2])
    del patches, both
    torch.mul(xc, xc, out=maps[:, 2:3])
    torch.mul(yc, yc, out=maps[:, 3:4])
    torch.mul(xc, yc, out=maps[:, 4:5])
    g = _gaussian_window().to(x.device, torch.float32)
    kh = g.view(1, 1, -1, 1).expand(5, 1, -1, 1)
    kw = g.view(1, 1, 1, -1).expand(5, 1, 1, -1)
    f = F.conv2d(F.conv2d(maps, kh, groups=5), kw, groups=5)  # (N, 5, t, t)
    del maps
    mu_xc, mu_yc, exx, eyy, exy = f.unbind(dim=1)
    cs_num = exy.sub_(mu_xc * mu_yc).mul_(2).add_(c2)  # 2 cov + c2
    cs_den = exx.sub_(mu_xc * mu_xc).add_(eyy.sub_(mu_yc * mu_yc)).add_(c2)  # var + var + c2
    shift = shift[:, 0]
    mu_x, mu_y = mu_xc.add_(shift), mu_yc.add_(shift)
    l_num = (mu_x * mu_y).mul_(2).add_(c1)
    l_den = mu_x.square_().add_(mu_y.square_()).add_(c1)
    ssim_map = l_num.mul_(cs_num).div_(l_den.mul_(cs_den))  # (N, t, t)
    ssim_map = ssim_map.reshape(b, nh, nw, t, t).permute(0, 1, 3, 2, 4).reshape(b, nh * t, nw * t)
    return ssim_map[:, :oh, :ow].sum(dim=(1, 2), dtype=torch.float64) / (oh * ow)


def score_batch(sr_img: torch.Tensor, hr_y: torch.Tensor, border: int,
                gray: bool = False) -> tuple[list[float], list[float]]:
    """Per-image PSNR and SSIM of an SR batch against cached HR Y maps.

    Args:
        sr_img: ``(B, C, H, W)`` unrounded SR in [0, 255] (float32 or float64), any device.
        hr_y: ``(B, 1, H, W)`` float32 :func:`y_float32` of the HR images, same device.
        border: pixels shaved from every side (the scale, in the protocol).
        gray: the HR images are single-channel (a 3-channel SR is averaged to gray first).
    """
    if sr_img.shape[-2:] != hr_y.shape[-2:] or sr_img.shape[0] != hr_y.shape[0]:
        raise ValueError(f"SR {tuple(sr_img.shape)} and HR {tuple(hr_y.shape)} differ in size")
    sr_y = sr_y_float32(sr_img, 1 if gray else 3)
    if border > 0:
        sr_y = sr_y[..., border:-border, border:-border]
        hr_y = hr_y[..., border:-border, border:-border]
    sq = (sr_y - hr_y).square().sum(dim=(1, 2, 3), dtype=torch.float64)
    mse = (sq / (sr_y.shape[-2] * sr_y.shape[-1])).tolist()
    psnrs = [math.inf if m == 0 else 10.0 * math.log10(255.0**2 / m) for m in mse]
    return psnrs, _ssim_batch(sr_y, hr_y).tolist()
