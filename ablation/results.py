"""The results folder: where each run's files live, and reading them back.

Layout (one folder per run)::

    results/<profile>/task04/baseline/x2/seed0/
        metrics.json   per-set PSNR/SSIM, params, FLOPs, timings, config hash  (written last)
        history.csv    iteration, loss, learning_rate, val_psnr, seconds
        run.json       config, spec, data fingerprint, versions, device, wall time
        model.pt       final weights + spec (small; shipped for the cpu profile)
        state.pt       full training state for exact resume (not shipped)

A run is *done* when ``metrics.json`` exists and its ``config_hash`` matches; every file is
written atomically, and ``metrics.json`` last, so a killed run is never mistaken for a done one.
"""

from __future__ import annotations

import json
from pathlib import Path

from ablation import paths
from ablation.errors import ConfigError


def run_dir(profile: str, task: int, variant: str, scale: int, seed: int = 0,
            results_dir=None) -> Path:
    return paths.results_dir(results_dir) / profile / f"task{task:02d}" / variant / \
        f"x{scale}" / f"seed{seed}"


def read_metrics(folder: Path) -> dict | None:
    """The run's metrics, or None if the run hasn't finished (or the file is unreadable)."""
    f = Path(folder) / "metrics.json"
    try:
        return json.loads(f.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def iter_metrics(profile: str, results_dir=None):
    """Yield every finished run's metrics dict under ``results/<profile>``."""
    root = paths.results_dir(results_dir) / profile
    for f in sorted(root.glob("task*/*/x*/seed*/metrics.json")):
        m = read_metrics(f.parent)
        if m is not None:
            m["run_dir"] = str(f.parent)
            yield m


def resolve_model(name: str, scale: int, profile: str = "cpu", seed: int = 0,
                  results_dir=None) -> Path:
    """'task4/baseline' (or 'reference/edsr_baseline') -> that run's ``model.pt``."""
    from ablation.tasks import get_task

    if "/" not in name:
        raise ConfigError(f"model {name!r}: use TASK/VARIANT, e.g. task4/baseline")
    task_part, variant = name.split("/", 1)
    number = 0 if task_part in ("reference", "task0") else int(task_part.removeprefix("task"))
    task = get_task(number)
    if not task.variant(variant).trainable:
        raise ConfigError(f"model {name!r} is computed, not trained; use --model {variant}")
    path = run_dir(profile, number, variant, scale, seed, results_dir) / "model.pt"
    if not path.exists():
        raise ConfigError(f"{path}: no trained checkpoint for {name} at x{scale} ({profile}); "
                          f"run `ablation train --task {number} --variant {variant} "
                          f"--scale {scale} --profile {profile}`")
    return path


def best_model(scale: int, profile: str = "cpu", results_dir=None,
               score_set: str = "Set5") -> Path | None:
    """The finished run with the highest ``score_set`` PSNR at ``scale`` (non-perceptual)."""
    best, best_psnr = None, float("-inf")
    for m in iter_metrics(profile, results_dir):
        if m.get("scale") != scale or m.get("loss") == "perceptual":
            continue
        p = m.get("sets", {}).get(score_set, {}).get("psnr")
        ckpt = Path(m["run_dir"]) / "model.pt"
        if p is not None and p > best_psnr and ckpt.exists():
            best, best_psnr = ckpt, p
    return best
