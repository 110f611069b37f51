"""What the report reads from trained models: checkpoints loaded, run on crops of benchmark
images (the visual comparison) and probed (how much a net's body adds to its residual)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ablation import results as results_mod
from ablation.config import make_config
from ablation.errors import AblationError
from ablation.planning import PlannedRun

if TYPE_CHECKING:
    import torch

# Images of the visual comparison, in order of preference (those in the profile's eval sets).
DEFAULT_IMAGES = (("Set5", "butterfly"), ("Set14", "zebra"), ("Urban100", "img_004"),
                  ("Set5", "bird"), ("B100", "img_001"), ("Set5", "woman"))


CROP_HR = 96  # side of the zoomed crop in HR pixels (divisible by 2, 3 and 4)


def body_gains(planned: Sequence[PlannedRun], profile: str, results_dir=None
               ) -> dict[tuple[int, str, int], dict[int, float]]:
    """(task, variant, scale) -> :func:`run_body_gains` of each planned trained run that has
    any."""
    out: dict[tuple[int, str, int], dict[int, float]] = {}
    for p in planned:
        key = (p.task, p.variant, p.scale)
        if p.trainable and key not in out and (gains := run_body_gains(profile, *key,
                                                                       results_dir)):
            out[key] = gains
    return out


def run_body_gains(profile: str, task: int, variant: str, scale: int, results_dir=None
                   ) -> dict[int, float]:
    """{seed: :func:`~ablation.models.body_gain`} over EVERY finished seed folder of a run (not
    only the planned seeds): the value training recorded in ``metrics.json``, else the probe of
    the committed ``model.pt``. Seeds with neither (older runs without a model) or without a
    feature-level residual are left out."""
    from ablation.checkpoint import load_model
    from ablation.models import body_gain

    gains: dict[int, float] = {}
    for folder in results_mod.seed_folders(profile, task, variant, scale, results_dir).values():
        m = results_mod.read_metrics(folder)
        if m is None:
            continue
        if "body_gain" in m:
            gain = m["body_gain"]
        elif (folder / "model.pt").is_file():
            gain = body_gain(load_model(folder / "model.pt", expect_scale=scale)[0])
        else:
            continue
        if gain is not None:
            gains[int(m["seed"])] = float(gain)
    return gains


def pick_images(profile: str, data_dir=None, n: int = 3,
                candidates: Sequence[tuple[str, str]] = DEFAULT_IMAGES) -> list[Path]:
    """Up to ``n`` HR files of the preferred images whose set the profile evaluates."""
    from ablation import data

    sets = make_config(profile).eval_sets
    out: list[Path] = []
    for set_name, stem in candidates:
        if set_name not in sets or len(out) >= n:
            continue
        try:
            files = data.benchmark_hr_files(set_name, data_dir)
        except AblationError:
            continue
        out += [f for f in files if f.stem == stem]
    return out[:n]


def best_crop(err: np.ndarray, side: int, step: int, margin: int) -> tuple[int, int]:
    """Top-left (y, x), multiples of ``step``, of the ``side`` window with the largest summed
    error, at least ``margin`` pixels from the border (the zoom shows where methods differ)."""
    h, w = err.shape
    ii = np.pad(err.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    best, pos = -1.0, (max(0, (h - side) // 2) // step * step,
                       max(0, (w - side) // 2) // step * step)
    for y in range(margin, h - side - margin + 1, step):
        for x in range(margin, w - side - margin + 1, step):
            s = ii[y + side, x + side] - ii[y, x + side] - ii[y + side, x] + ii[y, x]
            if s > best:
                best, pos = s, (y, x)
    return pos


def sr_crop(model: Any, lr: torch.Tensor, scale: int, box: tuple[int, int, int],
            radius: int | None) -> torch.Tensor:
    """Super-resolve only the LR region of the HR box ``(y, x, side)`` plus context.

    ``radius`` LR pixels of context make the crop equal whole-image inference (see
    :mod:`ablation.inference`); unknown radius (channel attention) uses 16 (approximate).
    """
    from ablation.evaluate import run_model

    y, x, side = box
    ly, lx, ls = y // scale, x // scale, side // scale
    m = (radius if radius is not None else 16) + 2
    y0, x0 = max(0, ly - m), max(0, lx - m)
    y1, x1 = min(lr.shape[-2], ly + ls + m), min(lr.shape[-1], lx + ls + m)
    out = run_model(model, lr[..., y0:y1, x0:x1])
    oy, ox = (ly - y0) * scale, (lx - x0) * scale
    return out[..., oy:oy + side, ox:ox + side]


def _load_panel_model(p: PlannedRun, profile: str, results_dir) -> Any:
    """The finished model of a planned run (bicubic as a model), or None."""
    from ablation.checkpoint import load_model
    from ablation.evaluate import Bicubic

    if not p.trainable:  # the computed reference: the protocol's bicubic
        return Bicubic(p.scale)
    path = p.run_dir(profile, results_dir) / "model.pt"
    if not path.exists() or results_mod.read_metrics(path.parent) is None:
        return None
    model, _ = load_model(path, expect_scale=p.scale)
    return model


def comparison_panels(planned: Sequence[PlannedRun], scale: int, profile: str,
                      results_dir=None, data_dir=None, images: Sequence[Path] = (),
                      crop: int = CROP_HR) -> list[list[tuple[str, np.ndarray, float]]]:
    """For each image: [(title, uint8 crop, PSNR of the crop)] for HR and every model.

    One model per planned (task, variant) at ``scale`` (the first seed); models without a
    finished run are left out.
    """
    import torch

    from ablation.degradation import modcrop
    from ablation.evaluate import Bicubic, make_lr, run_model, to_tensor, to_uint8
    from ablation.images import read_image
    from ablation.inference import receptive_radius
    from ablation.metrics import psnr

    models, seen = [], set()
    for p in planned:
        if p.scale != scale or (p.task, p.variant) in seen:
            continue
        seen.add((p.task, p.variant))
        model = _load_panel_model(p, profile, results_dir)
        if model is not None:
            models.append((p.label, model))
    rows = []
    for f in images:
        hr = modcrop(to_tensor(read_image(f)), scale)
        lr = make_lr(hr, scale, f)
        err = (run_model(Bicubic(scale), lr) - hr).abs().mean(1)[0].numpy()
        side = min(crop, hr.shape[-2] - 2 * scale, hr.shape[-1] - 2 * scale) // scale * scale
        y, x = best_crop(err, side, scale, scale)
        hr_crop = hr[..., y:y + side, x:x + side]
        row = [(f"HR ({f.parent.parent.name}/{f.stem})", to_uint8(hr_crop), math.inf)]
        with torch.inference_mode():
            for label, model in models:
                sr = sr_crop(model, lr, scale, (y, x, side), receptive_radius(model))
                row.append((label, to_uint8(sr), psnr(sr, hr_crop, border=0)))
        rows.append(row)
    return rows
