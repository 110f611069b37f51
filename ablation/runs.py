"""``run_variant``: train (or reuse), evaluate on the benchmarks, write the run's folder.

A run with the same config hash that already has ``metrics.json`` is reused, not retrained.
A per-run lock file stops two processes (two sweeps, a sweep and a notebook) from writing the
same run; the second one waits (``wait=True``) or fails with a one-line error.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

from ablation import results as results_mod
from ablation.config import SCALES, config_hash, make_config
from ablation.costs import frame_flops
from ablation.device import resolve_device
from ablation.errors import AblationError, check_choice
from ablation.evaluate import Bicubic, evaluate, summarize
from ablation.fs import atomic_write_bytes, atomic_write_text, exclusive_lock
from ablation.models import count_params, flops_per_output_pixel
from ablation.tasks import get_task
from ablation.train import RunResult, data_fingerprint, split_files, train


class RunLocked(AblationError):
    """Another process holds this run's lock."""


def run_lock(folder: Path, wait: bool = True, timeout: float = 24 * 3600):
    """Exclusive lock on ``folder/.lock`` (released if the holder dies: it's an flock)."""
    def busy(_holder: str) -> RunLocked:
        return RunLocked(f"{folder}: another process is running this run; wait for it to "
                         "finish or stop it")

    return exclusive_lock(folder / ".lock", busy, wait=wait, timeout=timeout)


def _bicubic_metrics(scale: int, config, data_dir, device) -> dict:
    per_image = evaluate(Bicubic(scale), config.eval_sets, scale, "bicubic", data_dir)
    return dict(per_image=per_image, params=0, flops_per_pixel=0.0, train_seconds=0.0,
                device="cpu", spec=None, loss=None, label="bicubic (MATLAB)", history=None)


def run_variant(task: int, variant: str, scale: int, profile: str = "cpu", seed: int = 0,
                results_dir=None, data_dir=None, retrain: bool = False, wait: bool = True,
                **overrides) -> dict:
    """Train + evaluate one run (or reuse it) and return its metrics dict.

    Writes ``results/<profile>/task<NN>/<variant>/x<scale>/seed<k>/`` (see ablation.results).
    ``overrides`` are :class:`~ablation.config.TrainConfig` fields (e.g. ``iterations=...``).
    ``task=0`` are the reference models: ``bicubic`` and ``edsr_baseline``.
    """
    t = get_task(task)
    is_bicubic = task == 0 and variant == "bicubic"
    v = None if is_bicubic else t.variant(variant)
    check_choice("scale", scale, SCALES)
    config = make_config(profile, seed=seed, **{**(v.overrides(profile) if v else {}),
                                                 **overrides})
    folder = results_mod.run_dir(profile, task, variant, scale, seed, results_dir)
    train_files, val_files = split_files(config, data_dir) if not is_bicubic else ([], [])
    fingerprint = data_fingerprint(train_files + val_files) if not is_bicubic else "none"
    chash = config_hash(config, spec=v.spec.to_dict() if v else None, scale=scale,
                        loss=v.loss if v else None, data=fingerprint)
    if is_bicubic:  # bicubic depends on the eval sets only
        chash = config_hash(make_config(profile, eval_sets=config.eval_sets), model="bicubic",
                            scale=scale)
    done = results_mod.read_metrics(folder)
    if done is not None and done.get("config_hash") == chash and not retrain:
        done["reused"] = True
        return done
    with run_lock(folder, wait=wait):
        done = results_mod.read_metrics(folder)  # another process may have finished it
        if done is not None and done.get("config_hash") == chash and not retrain:
            done["reused"] = True
            return done
        for stale in folder.glob(".*.tmp"):  # left by a process killed mid-write
            stale.unlink(missing_ok=True)
        if retrain:
            for name in ("metrics.json", "state.pt"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(folder / name)
        t0 = time.perf_counter()
        if is_bicubic:
            info = _bicubic_metrics(scale, config, data_dir, resolve_device(config.device))
        else:
            res: RunResult = train(v, scale, profile, out_dir=folder, data_dir=data_dir,
                                   seed=seed, **overrides)
            t1 = time.perf_counter()
            per_image = evaluate(res.model, config.eval_sets, scale, f"{t.key}/{variant}",
                                 data_dir, device=res.device)
            label = v.label
            if v.loss == "perceptual" and config.perceptual_backbone != "vgg19":
                label += f" [substitute backbone: {config.perceptual_backbone}, not VGG19]"
            info = dict(per_image=per_image, params=count_params(v.spec, scale),
                        flops_per_pixel=flops_per_output_pixel(v.spec, scale),
                        train_seconds=res.seconds, eval_seconds=time.perf_counter() - t1,
                        device=res.device, spec=v.spec.to_dict(), loss=v.loss, label=label)
        per_image = info.pop("per_image")
        atomic_write_text(folder / "per_image.csv", per_image.to_csv(index=False))
        summary = summarize(per_image)
        metrics = dict(
            task=task, task_key=t.key, variant=variant, label=info["label"], scale=scale,
            seed=seed, profile=profile, config_hash=chash, data_fingerprint=fingerprint,
            loss=info["loss"], spec=info["spec"], params=info["params"],
            perceptual_backbone=config.perceptual_backbone if info["loss"] == "perceptual"
            else None,
            flops_per_pixel=info["flops_per_pixel"],
            flops_1280x720=frame_flops(info["flops_per_pixel"]),
            iterations=config.iterations if not is_bicubic else 0,
            train_seconds=info["train_seconds"],
            eval_seconds=info.get("eval_seconds", time.perf_counter() - t0),
            device=info["device"],
            sets={r.set: dict(psnr=r.psnr, ssim=r.ssim, n_images=int(r.n_images))
                  for r in summary.itertuples()},
        )
        atomic_write_bytes(folder / "metrics.json", json.dumps(metrics, indent=2).encode())
        metrics["reused"] = False
        metrics["run_dir"] = str(folder)
        return metrics
