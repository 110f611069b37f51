"""A finished run's files written directly (no training), in the format of
``ablation.runs.run_variant``: metrics.json consistent with per_image.csv, history.csv and a
real (untrained) model.pt, so :func:`ablation.results.check_run` accepts it.

Not a test module; tests import it as ``fake_runs`` (tests/ is on sys.path).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import torch

from ablation import results as results_mod
from ablation.checkpoint import save_checkpoint
from ablation.models import build_model, count_params, flops_per_output_pixel
from ablation.tasks import get_task

N_IMAGES = 5  # images per set in per_image.csv


def fake_run(root: Path, task: int, variant: str, scale: int, seed: int,
             psnr: dict[str, float], profile: str = "cpu", config_hash: str | None = None,
             label: str | None = None, spread: float = 0.0, model: bool = True) -> Path:
    """Write a finished run under ``root``; each set's images score ``psnr[set]`` plus
    ``spread * (i - 2)`` for image i (0 by default: all the same; the offsets sum to zero), SSIM
    ``0.9 + psnr / 1000``, so the set means are the given numbers. ``model=False`` leaves out
    ``model.pt`` (a finished run needs it for seed 0 only)."""
    folder = results_mod.run_dir(profile, task, variant, scale, seed, root)
    folder.mkdir(parents=True, exist_ok=True)
    bicubic = variant == "bicubic"
    spec = None if bicubic else get_task(task).variant(variant).spec
    flops = 0.0 if bicubic else flops_per_output_pixel(spec, scale)
    name = f"task{task:02d}/{variant}"
    rows = [dict(model=name, set=s, scale=scale, image=f"img{i}", psnr=p + spread * (i - 2),
                 ssim=0.9 + p / 1000, seconds=0.1) for s, p in psnr.items()
            for i in range(N_IMAGES)]
    per_image = pd.DataFrame(rows)
    per_image.to_csv(folder / "per_image.csv", index=False)
    means = per_image.groupby("set", sort=False)[["psnr", "ssim"]].mean()
    metrics = dict(
        task=task, task_key=f"task{task:02d}", variant=variant, scale=scale, seed=seed,
        label=label or ("bicubic (MATLAB)" if bicubic else get_task(task).variant(variant).label),
        profile=profile, config_hash=config_hash or f"hash-{task}-{variant}-{scale}",
        params=0 if bicubic else count_params(spec, scale), flops_per_pixel=flops,
        flops_1280x720=flops * 1280 * 720, iterations=0 if bicubic else 100,
        train_seconds=1.5, eval_seconds=0.5, device="cpu", loss=None if bicubic else "l1",
        spec=None if bicubic else spec.to_dict(),
        sets={s: dict(psnr=float(means.loc[s, "psnr"]), ssim=float(means.loc[s, "ssim"]),
                      n_images=N_IMAGES) for s in psnr})
    (folder / "metrics.json").write_text(json.dumps(metrics))
    if not bicubic:
        pd.DataFrame(dict(iteration=[50, 100], loss=[0.1, 0.05], learning_rate=[1e-3, 1e-4],
                          val_psnr=[30.0 + seed, 31.0 + seed], seconds=[1.0, 2.0])) \
            .to_csv(folder / "history.csv", index=False)
        if model:
            torch.manual_seed(seed)
            save_checkpoint(folder / "model.pt", build_model(spec, scale))
    return folder
