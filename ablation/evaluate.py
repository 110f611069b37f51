"""Evaluate a model on benchmark sets: the protocol of published-results.md §2.1.

For each HR image: modcrop to the scale, make the LR with MATLAB bicubic (or read the official
LR file when present), super-resolve, round to 8 bits, score PSNR/SSIM on Y with ``scale``
pixels shaved. A *model* is anything with ``model(lr) -> sr`` on ``(B, C, h, w)`` float tensors
in [0, 255] (the 'bicubic' model, a trained network, a network wrapped for tiling /
self-ensemble) plus an ``n_colors`` attribute when it needs 3-channel input.

Two implementations of the same protocol:

- :func:`evaluate` (what runs use): the LR inputs and HR Y channels come from the benchmark
  cache (:mod:`ablation.benchcache`, computed once per set and scale), images of one size run
  as one batch in channels_last (fp16 autocast on CUDA, never for bicubic), and PSNR/SSIM are
  computed in float32 on the device (:func:`ablation.metrics.score_batch`).
- :func:`evaluate_float64` (the reference): per image, decode the PNG, make the LR in float64,
  run the model in NCHW, score in float64. It is the literal protocol, kept to check the fast
  path against (tests/test_evaluate_fast.py) and to time it (benchmarks/eval_throughput.py).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ablation import data
from ablation.benchcache import (
    BenchmarkSet,
    check_size,
    load_benchmark,
    make_lr,
    set_label,
    to_tensor,
)
from ablation.degradation import bicubic_up, modcrop, quantize
from ablation.hostmem import reuse_freed_memory
from ablation.images import read_image, save_png
from ablation.metrics import psnr_ssim, score_batch

COLUMNS = ["model", "set", "scale", "image", "psnr", "ssim", "seconds"]
# LR pixels per inference batch: bounds activation memory (a 64-feature net holds a few
# float32 maps of batch * h * w * 64 values; 256 at the pixel-shuffle upsampler).
BATCH_LR_PIXELS = {"cpu": 1 << 18, "cuda": 1 << 22}


class Bicubic(torch.nn.Module):
    """The protocol's bicubic baseline as a 'model': MATLAB bicubic upsampling."""

    n_colors = 0  # takes any number of channels

    def __init__(self, scale: int):
        super().__init__()
        self.scale = scale

    def forward(self, lr_img: torch.Tensor) -> torch.Tensor:
        return bicubic_up(lr_img, self.scale)


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """``(1, C, H, W)`` float in [0, 255] -> rounded uint8 ``(H, W, C)``."""
    return quantize(img[0].detach().to("cpu", torch.float64)).permute(1, 2, 0).numpy() \
        .astype(np.uint8)


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
    precision: str = "auto",
    batch_lr_pixels: int | None = None,
) -> pd.DataFrame:
    """Score ``model`` on each set at ``scale``; one row per image.

    Columns: model, set, scale, image, psnr, ssim, seconds (the image's share of its batch's
    inference time). ``save_dir`` also writes each SR image as
    ``<save_dir>/<set>/x<scale>/<image>.png``. ``precision``: "auto" (fp16 autocast for nets on
    CUDA, fp32 elsewhere), "fp32", "fp16" or "bf16" (CUDA only); bicubic always runs in float64.
    ``device`` is where the net runs and the metrics are computed ("cpu", "cuda", "cuda:1").
    """
    dev = torch.device(device)
    net = _Inference(model, dev, precision)
    budget = batch_lr_pixels or BATCH_LR_PIXELS.get(dev.type, BATCH_LR_PIXELS["cpu"])
    rows = []
    with reuse_freed_memory(dev.type == "cpu"):  # see ablation.hostmem
        for set_name in sets:
            _evaluate_set(net, set_name, scale, model_name, data_dir, dev, save_dir,
                          use_official_lr, progress, budget, rows)
    return pd.DataFrame(rows, columns=COLUMNS)


def _evaluate_set(net: _Inference, set_name: str, scale: int, model_name: str, data_dir,
                  dev: torch.device, save_dir, use_official_lr: bool, progress: bool,
                  budget: int, rows: list) -> None:
    """Score one set into ``rows`` (see :func:`evaluate`), with one progress bar: first over
    the set's inputs when their cache is built (the first run at a scale), then its images."""
    desc = f"{model_name} {set_label(set_name)} x{scale}"
    bar = _progress_bar(None, desc, progress)

    def preparing(done: int, total: int) -> None:
        if bar.total != total:
            bar.set_description_str(f"{desc} (preparing inputs)", refresh=False)
            bar.reset(total=total)
        bar.update(done - bar.n)

    bench = load_benchmark(set_name, scale, data_dir, use_official_lr, on_image=preparing)
    bar.set_description_str(desc, refresh=False)
    bar.reset(total=len(bench))
    for batch in _batches(bench, budget if net.batchable else 0):
        lr = torch.from_numpy(np.stack([bench.lr(i) for i in batch])).to(dev)
        lr = lr.permute(0, 3, 1, 2)  # (B, C, h, w) uint8
        t0 = time.perf_counter()
        sr = net(lr)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        seconds = (time.perf_counter() - t0) / len(batch)
        hr_y = torch.from_numpy(np.stack([bench.hr_y(i) for i in batch]))[:, None].to(dev)
        psnrs, ssims = score_batch(sr, hr_y, border=scale, gray=lr.shape[1] == 1)
        for k, i in enumerate(batch):
            rows.append((model_name, bench.label, scale, bench.names[i], psnrs[k], ssims[k],
                         seconds))
            if save_dir is not None:
                save_png(Path(save_dir) / bench.label / f"x{scale}" / f"{bench.names[i]}.png",
                         to_uint8(sr[k:k + 1]))
        bar.update(len(batch))
    bar.close()


class _Inference:
    """``lr (B, C, h, w) uint8 on the device -> unrounded SR (B, C', H, W)`` for any model.

    Trained nets (``nn.Module`` with parameters) run batched in channels_last, under autocast on
    CUDA; bicubic runs batched in float64 (the protocol's arithmetic); any other callable (a
    tiling / self-ensemble wrapper) gets one float64 image at a time, as it expects.
    """

    def __init__(self, model: Callable, device: torch.device, precision: str):
        self.model = model
        self.n_colors = getattr(model, "n_colors", 0)
        params = list(model.parameters()) if isinstance(model, torch.nn.Module) else []
        self.is_net = bool(params) and hasattr(model, "spec")
        self.batchable = self.is_net or isinstance(model, Bicubic)
        self.dtype = params[0].dtype if self.is_net else torch.float64
        if self.is_net and params[0].device != device:
            model.to(device)
        self.autocast = _autocast_dtype(precision, device) if self.is_net else None
        self.device = device

    def __call__(self, lr: torch.Tensor) -> torch.Tensor:
        x = lr.to(self.dtype)
        if self.n_colors == 3 and x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if self.is_net:
            x = x.contiguous(memory_format=torch.channels_last)
        amp = (torch.autocast(self.device.type, dtype=self.autocast) if self.autocast
               else contextlib.nullcontext())
        with torch.inference_mode(), amp:
            if self.batchable:
                out = self.model(x)
            else:
                out = torch.cat([self.model(x[i:i + 1]) for i in range(x.shape[0])])
        return out.float() if out.dtype in (torch.float16, torch.bfloat16) else out


def _autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """fp16 by default on CUDA: of the two half types its 11-bit mantissa keeps the rounded SR
    closest to fp32's; never on CPU (no speed-up without AMX, and bit-for-bit fp32 there)."""
    from ablation.errors import check_choice

    check_choice("precision", precision, ("auto", "fp32", "fp16", "bf16"))
    if precision == "fp32" or device.type != "cuda":
        return None
    return torch.bfloat16 if precision == "bf16" else torch.float16


def _batches(bench: BenchmarkSet, budget: int) -> Iterator[list[int]]:
    """Indices of images that share an LR size, at most ``budget`` LR pixels per batch (and
    at least one image); ``budget=0`` gives one image per batch. Set order within a size."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i in range(len(bench)):
        groups.setdefault(tuple(bench.lr_shapes[i]), []).append(i)
    for shape, idx in groups.items():
        per_batch = max(1, budget // int(shape[0] * shape[1])) if budget else 1
        for k in range(0, len(idx), per_batch):
            yield idx[k:k + per_batch]


def _progress_bar(total: int | None, desc: str, enabled: bool):
    """A bar on stderr that stays when done: one line per set, so a user sees what finished."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="img", mininterval=1.0, disable=not enabled)


def evaluate_float64(
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
    """The reference implementation of :func:`evaluate` (same arguments, same columns): one
    image at a time, everything recomputed, float64 throughout. Slow; for checks and timing."""
    rows = []
    for set_name in sets:
        files = data.benchmark_hr_files(set_name, data_dir)
        label = set_label(set_name)
        it = files
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(files, desc=f"{model_name} {label} x{scale}", leave=False, mininterval=1.0)
        for f in it:
            hr = to_tensor(read_image(f))
            check_size(hr, scale, f)
            hr = modcrop(hr, scale)
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
