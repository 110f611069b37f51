"""Evaluate a model on benchmark sets: the protocol of published-results.md §2.1.

For each HR image: modcrop to the scale, make the LR with MATLAB bicubic (or read the official
LR file when present), super-resolve, round to 8 bits, score PSNR/SSIM on Y with ``scale``
pixels shaved. A *model* is anything with ``model(lr) -> sr`` on ``(1, C, h, w)`` float tensors
in [0, 255] (the 'bicubic' model, a trained network, a network wrapped for tiling /
self-ensemble) plus an ``n_colors`` attribute when it needs 3-channel input.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ablation import data
from ablation.config import BENCHMARKS
from ablation.degradation import bicubic_down, bicubic_up, modcrop, quantize
from ablation.images import read_image, save_png
from ablation.metrics import psnr_ssim


class Bicubic(torch.nn.Module):
    """The protocol's bicubic baseline as a 'model': MATLAB bicubic upsampling."""

    n_colors = 0  # takes any number of channels

    def __init__(self, scale: int):
        super().__init__()
        self.scale = scale

    def forward(self, lr_img: torch.Tensor) -> torch.Tensor:
        return bicubic_up(lr_img, self.scale)


def to_tensor(arr: np.ndarray) -> torch.Tensor:
    """uint8 ``(H, W, C)`` -> float64 ``(1, C, H, W)`` in [0, 255]."""
    return torch.from_numpy(np.array(arr, copy=True)).permute(2, 0, 1)[None].to(torch.float64)


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """``(1, C, H, W)`` float in [0, 255] -> rounded uint8 ``(H, W, C)``."""
    return quantize(img[0].detach().to("cpu", torch.float64)).permute(1, 2, 0).numpy() \
        .astype(np.uint8)


def make_lr(hr_img: torch.Tensor, scale: int, hr_file: Path | None = None,
            use_official_lr: bool = True) -> torch.Tensor:
    """The LR input for a modcropped HR ``(1, C, H, W)``: official file if any, else MATLAB
    bicubic rounded to 8 bits."""
    if use_official_lr and hr_file is not None:
        lr_file = data.official_lr_file(hr_file, scale)
        if lr_file is not None:
            lr = to_tensor(read_image(lr_file))
            if lr.shape[-2:] == (hr_img.shape[-2] // scale, hr_img.shape[-1] // scale):
                return lr
    return quantize(bicubic_down(hr_img, scale))


def run_model(model: Callable, lr_img: torch.Tensor, device: torch.device | str = "cpu"):
    """Apply ``model`` to a ``(1, C, h, w)`` float64 LR, handling gray input for RGB nets."""
    n_colors = getattr(model, "n_colors", 0)
    x = lr_img
    if n_colors == 3 and x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if isinstance(model, Bicubic):
        return model(x.to(device))
    dtype = next((p.dtype for p in model.parameters()), torch.float32) \
        if isinstance(model, torch.nn.Module) else torch.float32
    with torch.inference_mode():
        out = model(x.to(device, dtype))
    return out.to(torch.float64)


def evaluate(
    model: Callable,
    sets: Iterable[str],
    scale: int,
    model_name: str = "model",
    data_dir=None,
    device: torch.device | str = "cpu",
    save_dir: str | Path | None = None,
    use_official_lr: bool = True,
    progress: bool = False,
) -> pd.DataFrame:
    """Score ``model`` on each set at ``scale``; one row per image.

    Columns: model, set, scale, image, psnr, ssim, seconds. ``save_dir`` also writes each SR
    image as ``<save_dir>/<set>/x<scale>/<image>.png``.
    """
    rows = []
    for set_name in sets:
        files = data.benchmark_hr_files(set_name, data_dir)
        label = set_name if set_name in BENCHMARKS else Path(set_name).name
        it = files
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(files, desc=f"{model_name} {label} x{scale}", leave=False, mininterval=1.0)
        for f in it:
            hr = modcrop(to_tensor(read_image(f)), scale)
            lr = make_lr(hr, scale, f, use_official_lr)
            t0 = time.perf_counter()
            sr = run_model(model, lr, device).cpu()
            seconds = time.perf_counter() - t0
            p, s = psnr_ssim(sr, hr, border=scale)
            rows.append(dict(model=model_name, set=label, scale=scale, image=f.stem,
                             psnr=p, ssim=s, seconds=seconds))
            if save_dir is not None:
                save_png(Path(save_dir) / label / f"x{scale}" / f"{f.stem}.png", to_uint8(sr))
    return pd.DataFrame(rows)


def summarize(per_image: pd.DataFrame) -> pd.DataFrame:
    """Mean PSNR/SSIM per (model, set, scale), with the image count."""
    g = per_image.groupby(["model", "set", "scale"], sort=False)
    out = g.agg(psnr=("psnr", "mean"), ssim=("ssim", "mean"), n_images=("image", "count"))
    return out.reset_index()
