"""MATLAB-exact bicubic resizing and the study's LR degradation, as batched torch functions.

The benchmark protocol makes LR images with MATLAB's ``imresize(hr, 1/scale, 'bicubic')``:
a cubic kernel with a = -0.5, widened by ``1/scale`` when shrinking (antialiasing), symmetric
border padding, computed in double precision and rounded to uint8. Torch's ``F.interpolate``
differs (a = -0.75, no antialias), which shifts PSNR by up to 0.8 dB, so we rebuild MATLAB's
algorithm: each axis is a dense ``(out, in)`` weight matrix, and a resize is two matmuls.

All functions take tensors shaped ``(..., H, W)`` (any leading batch/channel dims), on any device.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F


def cubic(x: torch.Tensor) -> torch.Tensor:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's ``cubic``)."""
    ax = x.abs()
    ax2, ax3 = ax * ax, ax * ax * ax
    near = (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2))
    return near + far


@lru_cache(maxsize=256)
def _resize_matrix_cpu(in_len: int, out_len: int, scale: float, antialias: bool) -> torch.Tensor:
    kernel_width = 4.0
    shrink_aa = scale < 1 and antialias
    if shrink_aa:
        kernel_width /= scale
    x = torch.arange(1, out_len + 1, dtype=torch.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)  # 1-based source coordinate of each output pixel
    left = torch.floor(u - kernel_width / 2)
    taps = math.ceil(kernel_width) + 2
    ind = left[:, None] + torch.arange(taps, dtype=torch.float64)[None, :]
    dist = u[:, None] - ind
    weights = scale * cubic(scale * dist) if shrink_aa else cubic(dist)
    weights = weights / weights.sum(dim=1, keepdim=True)
    # symmetric padding: index sequence 1..n, n..1 repeated
    pos = torch.remainder(ind.long() - 1, 2 * in_len)
    src = torch.where(pos < in_len, pos, 2 * in_len - 1 - pos)
    rows = torch.arange(out_len)[:, None].expand_as(src)
    mat = torch.zeros(out_len, in_len, dtype=torch.float64)
    mat.index_put_((rows.reshape(-1), src.reshape(-1)), weights.reshape(-1), accumulate=True)
    return mat


def resize_matrix(
    in_len: int,
    out_len: int,
    scale: float,
    antialias: bool = True,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """The ``(out_len, in_len)`` matrix that resizes one axis the way MATLAB's imresize does."""
    return _resize_matrix_cpu(in_len, out_len, float(scale), antialias).to(device, dtype)


def imresize(
    img: torch.Tensor,
    scale: float | None = None,
    size: tuple[int, int] | None = None,
    antialias: bool = True,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """MATLAB ``imresize(img, scale, 'bicubic')`` on the last two dims.

    Args:
        img: ``(..., H, W)`` tensor, integer or float, values in any range (not rescaled).
        scale: factor (``0.5`` shrinks by 2); output size is ``ceil(H * scale)``, as in MATLAB.
        size: output ``(H', W')`` instead of ``scale``; per-axis scale is then ``H'/H``.
        antialias: widen the kernel when shrinking (MATLAB's default; the protocol's choice).
        dtype: compute precision; float64 reproduces MATLAB to ~1e-10 gray levels.

    Returns:
        ``(..., H', W')`` float tensor of ``dtype``, *not* rounded (see :func:`quantize`).
    """
    if (scale is None) == (size is None):
        raise ValueError("give exactly one of scale or size")
    in_h, in_w = img.shape[-2:]
    if size is None:
        out_h, out_w = math.ceil(in_h * scale), math.ceil(in_w * scale)
        scale_h = scale_w = float(scale)
    else:
        out_h, out_w = size
        scale_h, scale_w = out_h / in_h, out_w / in_w
    x = img.to(dtype)
    mat_h = resize_matrix(in_h, out_h, scale_h, antialias, x.device, dtype)
    mat_w = resize_matrix(in_w, out_w, scale_w, antialias, x.device, dtype)
    # MATLAB resizes the axis with the smaller scale first; rows first on a tie.
    if scale_w < scale_h:
        x = torch.matmul(x, mat_w.T)
        return torch.matmul(mat_h, x)
    x = torch.matmul(mat_h, x)
    return torch.matmul(x, mat_w.T)


def quantize(img: torch.Tensor, max_val: float = 255.0) -> torch.Tensor:
    """Clamp to ``[0, max_val]`` and round half away from zero, as MATLAB's uint8 conversion.

    Torch rounds half to even; MATLAB (and ``im2uint8``) rounds half away from zero. Values
    are non-negative after the clamp, so ``floor(x + 0.5)`` is MATLAB's rounding.
    """
    return torch.floor(img.clamp(0.0, max_val) + 0.5)


def bicubic_down(hr_img: torch.Tensor, scale: int, dtype: torch.dtype = torch.float64):
    """HR ``(..., s*h, s*w)`` -> LR ``(..., h, w)`` as in the protocol (float, unrounded)."""
    h, w = hr_img.shape[-2:]
    if h % scale or w % scale:
        raise ValueError(f"HR size {h}x{w} is not a multiple of scale {scale}; modcrop it first")
    return imresize(hr_img, 1.0 / scale, dtype=dtype)


def bicubic_up(lr_img: torch.Tensor, scale: int, dtype: torch.dtype = torch.float64):
    """LR ``(..., h, w)`` -> ``(..., s*h, s*w)``: the protocol's bicubic baseline (unrounded)."""
    h, w = lr_img.shape[-2:]
    return imresize(lr_img, size=(h * scale, w * scale), dtype=dtype)


def modcrop(img: torch.Tensor, scale: int) -> torch.Tensor:
    """Crop the bottom/right so H and W are multiples of ``scale`` (never resize the HR)."""
    h, w = img.shape[-2:]
    return img[..., : h - h % scale, : w - w % scale]


def gaussian_kernel1d(sigma: float, dtype=torch.float64, device=None) -> torch.Tensor:
    """Normalised 1-D Gaussian, radius ``ceil(3 sigma)``."""
    radius = max(1, math.ceil(3.0 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(img: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(B, C, H, W)`` float images with reflect padding."""
    if sigma <= 0:
        return img
    k = gaussian_kernel1d(sigma, img.dtype, img.device)
    r = k.numel() // 2
    b, c, h, w = img.shape
    x = img.reshape(b * c, 1, h, w)
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
    x = F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1))
    return x.reshape(b, c, h, w)


def degrade(
    hr_img: torch.Tensor,
    scale: int,
    blur_sigma: float = 0.0,
    noise_sigma: float = 0.0,
    generator: torch.Generator | None = None,
    round_output: bool = True,
) -> torch.Tensor:
    """The study's degradation: optional blur, MATLAB bicubic down, optional Gaussian noise.

    The default (no blur, no noise, rounded to 8 bits) *is* the benchmark protocol; the original
    study's README described blur + noise but its code used pure bicubic, so both are available.

    Args:
        hr_img: ``(B, C, s*h, s*w)`` float in [0, 255].
        blur_sigma: Gaussian blur std in HR pixels before downsampling (0 = none).
        noise_sigma: additive white Gaussian noise std in gray levels after downsampling.
        generator: the explicit RNG for the noise (required when ``noise_sigma > 0``).

    Returns:
        ``(B, C, h, w)`` LR in [0, 255], same dtype as the input.
    """
    x = gaussian_blur(hr_img, blur_sigma) if blur_sigma > 0 else hr_img
    lr_img = bicubic_down(x, scale, dtype=hr_img.dtype if hr_img.is_floating_point() else
                          torch.float64)
    if noise_sigma > 0:
        if generator is None:
            raise ValueError("noise_sigma > 0 needs an explicit torch.Generator")
        noise = torch.randn(lr_img.shape, generator=generator, device=lr_img.device,
                            dtype=lr_img.dtype)
        lr_img = lr_img + noise_sigma * noise
    return quantize(lr_img) if round_output else lr_img
