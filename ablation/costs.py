"""Cost accounting for every variant: parameters, FLOPs and measured CPU latency.

FLOPs are 2 x multiply-accumulates of the convolutions (closed form in
:func:`ablation.models.macs_per_output_pixel`), per HR output pixel and for a 1280x720 output.
Latency is measured, not modelled: one forward pass on this machine's CPU for a small
``LATENCY_FRAME`` output (keeps ``ablation tasks`` fast), median of a few runs.

:func:`conv_peak_gflops` measures the machine itself: the throughput of one large 3x3 conv,
the kernel a training step spends its time in. Every training run records it next to its wall
time, because the same 2-core budget has run on machines three times apart in speed.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import pandas as pd
import torch

from ablation.models import build_model, count_params, flops_per_output_pixel
from ablation.tasks import all_variants

FRAME_720P = (1280, 720)  # output width, height of the FLOPs-per-frame columns
LATENCY_FRAME = (320, 180)  # output width, height for the latency column


def frame_flops(flops_per_pixel: float, frame: tuple[int, int] = FRAME_720P) -> float:
    """FLOPs to produce one ``frame`` (W, H) output from FLOPs per output pixel."""
    return flops_per_pixel * frame[0] * frame[1]


@torch.inference_mode()
def cpu_latency_ms(model: torch.nn.Module, scale: int, frame=LATENCY_FRAME,
                   repeats: int = 2) -> float:
    """Median wall time (ms) of one forward pass producing a ``frame`` (W, H) output."""
    w, h = frame
    x = torch.rand(1, 3, h // scale, w // scale) * 255
    model = model.eval().to(memory_format=torch.channels_last)
    x = x.contiguous(memory_format=torch.channels_last)
    model(x)  # warm-up (allocations, oneDNN primitive creation)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        model(x)
        times.append(time.perf_counter() - t0)
    return 1000.0 * statistics.median(times)


PEAK_INPUT = (16, 64, 96, 96)  # (B, C, H, W) of the peak probe: a 64->64 3x3 conv


def time_per_call(step: Callable[[], object], device: torch.device, seconds: float,
                  warmup: int = 2) -> float:
    """Seconds per call of ``step``: the median of calls made for about ``seconds`` (at least
    three) after ``warmup`` calls; waits for the GPU, so a CUDA step is timed to its end."""
    for _ in range(warmup):
        step()
    _sync(device)
    times, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < 3:
        t0 = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def conv_peak_gflops(device: torch.device, seconds: float = 3.0) -> float:
    """Forward GFLOP/s (2 FLOPs per MAC) of a 64->64 3x3 conv on a (16, 64, 96, 96)
    channels_last fp32 input: this machine's speed at the kernel training is bound by.

    Seeded and self-contained (no global RNG touched): it can run before a training run
    without changing it."""
    b, c, h, w = PEAK_INPUT
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(PEAK_INPUT, generator=gen).to(device).contiguous(
        memory_format=torch.channels_last)
    weight = (torch.randn(c, c, 3, 3, generator=gen) * 0.05).to(device).contiguous(
        memory_format=torch.channels_last)
    flops = 2 * b * h * w * c * c * 9
    step = lambda: torch.nn.functional.conv2d(x, weight, padding=1)  # noqa: E731
    return flops / time_per_call(step, device, seconds) / 1e9


def cost_table(latency: bool = True) -> pd.DataFrame:
    """One row per (task, variant, scale) with params, FLOPs and optionally CPU latency."""
    rows = []
    for task, variant, scale in all_variants(include_reference=True):
        fpp = flops_per_output_pixel(variant.spec, scale)
        row = dict(task=task.number, variant=variant.name, scale=scale,
                   params=count_params(variant.spec, scale), flops_per_pixel=fpp,
                   gflops_1280x720=frame_flops(fpp) / 1e9,
                   n_convs=variant.spec.n_convs, loss=variant.loss,
                   spec=variant.spec.to_dict())
        if latency:
            torch.manual_seed(0)
            row[f"cpu_ms_{LATENCY_FRAME[0]}x{LATENCY_FRAME[1]}"] = cpu_latency_ms(
                build_model(variant.spec, scale), scale)
        rows.append(row)
    return pd.DataFrame(rows)
