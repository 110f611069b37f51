"""Training throughput: this project's loop vs an EDSR-PyTorch-style reference loop.

Prints, side by side in one run, for the task-4 baseline and EDSR-baseline at x2 (batch 16,
LR patch 48): iterations/s of ``ablation``'s loop (on-device gather sampler, channels_last,
autocast on GPU) and of a reference loop built the way EDSR-PyTorch trains (DataLoader workers
doing per-sample numpy crops and flips on pre-decoded images, fp32, NCHW), their ratio, and the
achieved training GFLOP/s against this machine's measured 3x3-conv peak (a large conv timed in
the same run). On a CPU it then profiles each step: the time inside convolution kernels
(forward, backward) bounds what any loop around them can reach. The last two lines are
machine-readable (for the task-4 baseline).

    python benchmarks/train_throughput.py [--data-dir DIR] [--mirror DIR] [--seconds 20]

Training FLOPs are counted as 3 x the forward conv FLOPs (forward, input-grad, weight-grad).
"""

from __future__ import annotations

import argparse
import contextlib
import os

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ablation import paths
from ablation.cache import load_decoded
from ablation.config import make_config
from ablation.costs import conv_peak_gflops, time_per_call
from ablation.device import resolve_device
from ablation.fetch import fetch
from ablation.hostmem import reuse_freed_memory
from ablation.losses import make_loss
from ablation.models import build_model, flops_per_output_pixel
from ablation.resolve import split_files
from ablation.sampler import PatchSampler
from ablation.tasks import BASELINE, EDSR_BASELINE
from ablation.train import drop_small_images, train_step

BATCH, LR_PATCH, SCALE = 16, 48, 2


class ReferencePatches(Dataset):
    """EDSR-PyTorch style: per-sample random crop + flips/rot90 in numpy, then to tensor."""

    def __init__(self, hr_images, lr_images, n: int):
        self.hr, self.lr, self.n = hr_images, lr_images, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):
        k = np.random.randint(len(self.lr))
        lr, hr = self.lr[k], self.hr[k]
        y = np.random.randint(lr.shape[0] - LR_PATCH + 1)
        x = np.random.randint(lr.shape[1] - LR_PATCH + 1)
        lr = lr[y:y + LR_PATCH, x:x + LR_PATCH]
        hr = hr[SCALE * y:SCALE * (y + LR_PATCH), SCALE * x:SCALE * (x + LR_PATCH)]
        if np.random.rand() < 0.5:
            lr, hr = lr[:, ::-1], hr[:, ::-1]
        if np.random.rand() < 0.5:
            lr, hr = lr[::-1], hr[::-1]
        if np.random.rand() < 0.5:
            lr, hr = lr.transpose(1, 0, 2), hr.transpose(1, 0, 2)
        to_t = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))).float()  # noqa: E731
        return to_t(lr), to_t(hr)


def ours_step(spec, decoded, device):
    """``ablation.train.train_step`` bound to a fresh model, set up as ``train`` sets it up."""
    torch.manual_seed(0)
    model = build_model(spec, SCALE).to(device, memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    loss_fn = make_loss("l1")
    gen = torch.Generator(device=device).manual_seed(0)
    sampler = PatchSampler(decoded, LR_PATCH, BATCH, device, gen)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else \
        contextlib.nullcontext()
    return lambda: train_step(model, sampler, loss_fn, opt, None, amp, True)


def ours(step, device, seconds) -> float:
    """Seconds per iteration of our training step."""
    with reuse_freed_memory(device.type == "cpu"):
        return time_per_call(step, device, seconds)


def conv_seconds(step, device, steps: int = 5) -> tuple[float, float]:
    """(forward, backward) seconds per step spent inside convolution kernels (profiled, CPU)."""
    from torch.profiler import ProfilerActivity, profile

    with reuse_freed_memory(device.type == "cpu"):
        step()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(steps):
                step()
    fwd = bwd = 0.0
    for e in prof.key_averages():
        if "convolution" in e.key:
            if "backward" in e.key:
                bwd += e.self_cpu_time_total
            else:
                fwd += e.self_cpu_time_total
    return fwd / steps / 1e6, bwd / steps / 1e6


def reference(spec, decoded, device, seconds, workers: int) -> float:
    torch.manual_seed(0)
    model = build_model(spec, SCALE).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    hr_imgs = [decoded.hr_image(i) for i in range(len(decoded.names))]
    lr_imgs = [decoded.lr_image(i) for i in range(len(decoded.names))]
    loader = DataLoader(ReferencePatches(hr_imgs, lr_imgs, 10**7), batch_size=BATCH,
                        num_workers=workers, persistent_workers=workers > 0,
                        pin_memory=device.type == "cuda")
    it = iter(loader)

    def step():
        lr, hr = next(it)
        lr, hr = lr.to(device), hr.to(device)
        sr = model(lr)
        loss = torch.nn.functional.l1_loss(sr, hr)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return time_per_call(step, device, seconds, warmup=3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--mirror", default=None)
    ap.add_argument("--seconds", type=float, default=20.0, help="timing window per loop")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1))
    args = ap.parse_args()
    device = resolve_device(args.device)
    if args.mirror:
        fetch("291", args.data_dir, args.mirror)
    files = drop_small_images(split_files(make_config("cpu"), args.data_dir)[0], SCALE,
                              LR_PATCH, strict=False)
    root = paths.data_dir(args.data_dir)
    decoded = load_decoded(files, SCALE, root / "cache", label="291", min_lr_size=LR_PATCH)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"CPU, {torch.get_num_threads()} threads"
    peak = conv_peak_gflops(device)
    print(f"device: {name}")
    print(f"measured 3x3 conv peak (fp32 fwd, channels_last): {peak:.1f} GFLOP/s")
    hr_pixels = BATCH * (LR_PATCH * SCALE) ** 2
    # every reference loop runs before any of ours: ours leaves glibc's mmap threshold raised
    # for the rest of the process (see ablation.hostmem), which would also speed up the reference
    models = (("task4 baseline", BASELINE), ("EDSR-baseline", EDSR_BASELINE))
    t_ref = {label: reference(spec, decoded, device, args.seconds, args.workers)
             for label, spec in models}
    results = {}
    bounds = []
    for label, spec in models:
        step = ours_step(spec, decoded, device)
        t_ours = ours(step, device, args.seconds)
        train_flops = 3 * flops_per_output_pixel(spec, SCALE) * hr_pixels
        gflops = train_flops / t_ours / 1e9
        results[label] = (t_ref[label] / t_ours, gflops / peak)
        print(f"{label:15s} ours {1 / t_ours:6.2f} it/s | reference (DataLoader x"
              f"{args.workers}, NCHW fp32) {1 / t_ref[label]:6.2f} it/s | speedup "
              f"{t_ref[label] / t_ours:.2f}x | {gflops:.1f} GFLOP/s = {gflops / peak:.0%} of "
              "conv peak")
        if device.type == "cpu":
            fwd, bwd = conv_seconds(step, device)
            bounds.append(
                f"{label:15s} per step: conv forward {fwd * 1e3:.0f} ms, conv backward "
                f"{bwd * 1e3:.0f} ms, everything else {(t_ours - fwd - bwd) * 1e3:.0f} ms "
                f"(profiled). With zero overhead the convs alone allow {1 / (fwd + bwd):.2f} "
                f"it/s = {t_ref[label] / (fwd + bwd):.2f}x the reference = "
                f"{train_flops / (fwd + bwd) / 1e9 / peak:.0%} of conv peak")
    print("\n".join(bounds))
    speedup, fraction = results["task4 baseline"]
    print(f"speedup_vs_reference: {speedup:.2f}")
    print(f"fraction_of_conv_peak: {fraction:.2f}")


if __name__ == "__main__":
    main()
