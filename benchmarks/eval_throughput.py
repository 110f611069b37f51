"""Evaluation throughput: the reference float64 path against the cached, batched float32 one.

For bicubic, the task-4 baseline and EDSR-baseline at x2 on the four benchmark sets, times in
one run, side by side: ``evaluate_float64`` (per image: decode the PNG, float64 MATLAB-bicubic
LR, NCHW fp32 forward, float64 PSNR/SSIM; what every run did before) and ``evaluate`` (cached LR
and HR Y, batched channels_last forward, float32 metrics on the device). Prints per-set seconds,
the time inside the forward passes, the evaluation's overhead over its forward passes, and the
largest per-image difference between the two paths. Nets use the committed ``cpu`` checkpoints
when present (else freshly initialised weights: same speed). The benchmark cache is built
first (a one-off per data dir, printed) so that the timed runs see what every run after the
first sees. The last line is machine-readable: total reference time / total fast time.

    python benchmarks/eval_throughput.py [--sets Set5,Set14] [--data-dir DIR] [--mirror DIR]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from ablation.benchcache import load_benchmark
from ablation.checkpoint import load_model
from ablation.config import BENCHMARKS
from ablation.evaluate import Bicubic, evaluate, evaluate_float64
from ablation.fetch import fetch
from ablation.models import build_model
from ablation.tasks import BASELINE, EDSR_BASELINE

SCALE = 2
ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS = {"task4-baseline": "results/cpu/task04/baseline/x2/seed0/model.pt",
               "edsr-baseline": "results/cpu/task00/edsr_baseline/x2/seed0/model.pt"}


def models(device: torch.device) -> dict:
    """name -> model, trained weights where the committed checkpoint exists."""
    out = {"bicubic": Bicubic(SCALE)}
    for name, spec in (("task4-baseline", BASELINE), ("edsr-baseline", EDSR_BASELINE)):
        ckpt = ROOT / CHECKPOINTS[name]
        net = load_model(ckpt, expect_scale=SCALE)[0] if ckpt.exists() \
            else build_model(spec, SCALE)
        out[name] = net.eval().to(device)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sets", default=",".join(BENCHMARKS), help="comma-separated")
    p.add_argument("--models", default="bicubic,task4-baseline,edsr-baseline")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--mirror", default=None, help="fetch the benchmark sets from this mirror")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    if args.mirror:
        fetch("benchmark", args.data_dir, args.mirror)
    device = torch.device(args.device)
    what = f"CPU, {torch.get_num_threads()} threads" if device.type == "cpu" \
        else torch.cuda.get_device_name(device)
    print(f"device: {what}; scale x{SCALE}; sets {', '.join(sets)}")

    t0 = time.perf_counter()
    for s in sets:
        load_benchmark(s, SCALE, args.data_dir)
    print(f"benchmark cache ready in {time.perf_counter() - t0:.1f} s (built once per data dir;"
          " 0 when it already existed)")

    nets = models(device)
    totals = {"reference": 0.0, "fast": 0.0}
    for name in [m.strip() for m in args.models.split(",")]:
        model = nets[name]
        evaluate(model, [sets[0]], SCALE, data_dir=args.data_dir, device=device)  # warm-up
        ref_s = fast_s = ref_fwd = fast_fwd = 0.0
        worst_psnr = worst_ssim = 0.0
        for s in sets:
            t = time.perf_counter()
            ref = evaluate_float64(model, [s], SCALE, data_dir=args.data_dir, device=device)
            t_ref = time.perf_counter() - t
            t = time.perf_counter()
            fast = evaluate(model, [s], SCALE, data_dir=args.data_dir, device=device)
            t_fast = time.perf_counter() - t
            both = ref.merge(fast, on=["set", "image"], suffixes=("_ref", "_fast"))
            worst_psnr = max(worst_psnr, float((both.psnr_ref - both.psnr_fast).abs().max()))
            worst_ssim = max(worst_ssim, float((both.ssim_ref - both.ssim_fast).abs().max()))
            print(f"{name:15s} {s:9s} reference {t_ref:7.2f} s | fast {t_fast:7.2f} s "
                  f"(forward {fast.seconds.sum():6.2f} s) | {t_ref / t_fast:5.2f}x")
            ref_s, fast_s = ref_s + t_ref, fast_s + t_fast
            ref_fwd, fast_fwd = ref_fwd + ref.seconds.sum(), fast_fwd + fast.seconds.sum()
        print(f"{name:15s} all sets  reference {ref_s:7.2f} s (forward {ref_fwd:.2f} s) | fast "
              f"{fast_s:7.2f} s (forward {fast_fwd:.2f} s; evaluation = forward + "
              f"{100 * (fast_s / fast_fwd - 1):.0f}%) | max |dPSNR| {worst_psnr:.1e} dB, "
              f"max |dSSIM| {worst_ssim:.1e}")
        print(f"eval_speedup[{name}]: {ref_s / fast_s:.2f}")
        totals["reference"] += ref_s
        totals["fast"] += fast_s
    print(f"eval_speedup: {totals['reference'] / totals['fast']:.2f}")


if __name__ == "__main__":
    main()
