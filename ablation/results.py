"""The results folder: where each run's files live, and reading them back.

Layout (one folder per run)::

    results/<profile>/task04/baseline/x2/seed0/
        metrics.json   per-set PSNR/SSIM, params, FLOPs, timings, config hash  (written last)
        history.csv    iteration, loss, learning_rate, val_psnr, seconds
        run.json       config, spec, data fingerprint, versions, device, wall time
        model.pt       final weights + spec (small; committed for seed 0 of the cpu profile)
        state.pt       full training state for exact resume (not shipped)
        diverged.json  instead of metrics.json: training diverged (where, why, config hash);
                       an outcome of the recipe, committed and shown on the pages

A run is *done* when ``metrics.json`` exists and its ``config_hash`` matches; every file is
written atomically, and ``metrics.json`` last, so a killed run is never mistaken for a done one.

Nothing read back is trusted: :func:`check_run` (the one validation every reader goes through)
accepts a run only when ``metrics.json`` is complete, well-formed, matches its folder and agrees
with ``per_image.csv``, and every file the pages need is there. Anything else is *damaged*:
reported with one line naming the file, and treated as unfinished (a rerun redoes it).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from ablation import paths
from ablation.errors import ConfigError, MissingModelError


def run_dir(profile: str, task: int, variant: str, scale: int, seed: int = 0,
            results_dir=None) -> Path:
    return paths.results_dir(results_dir) / profile / f"task{task:02d}" / variant / \
        f"x{scale}" / f"seed{seed}"


# Files a finished run needs beside metrics.json: the per-image scores it is checked against,
# and what the pages show (training curves, visual comparison). Bicubic has no training.
RUN_FILES = ("per_image.csv",)
TRAINED_RUN_FILES = ("history.csv", "model.pt")
# Seeds whose model.pt a finished run must keep: the figures use seed 0's weights; the other
# seeds' numbers stand without them (the repository commits seed 0's checkpoints only).
CHECKPOINT_SEEDS = (0,)
# per_image.csv holds floats as written by pandas (repr: they read back exactly), so the set
# means recomputed from it differ from metrics.json only by summation order (~1e-13); an edit
# of either file beyond the 6th decimal (dB) or 7th (SSIM) is caught.
PSNR_TOLERANCE = 1e-6
SSIM_TOLERANCE = 1e-7


class DamagedRunWarning(UserWarning):
    """A run folder whose files can't be trusted; it is treated as unfinished."""


@dataclass(frozen=True)
class RunCheck:
    """What :func:`check_run` found: the metrics of a finished run, or why there are none."""

    metrics: dict | None  # None: unfinished or damaged
    problem: str | None = None  # one line naming the file, the problem and the fix; None if ok


def check_run(folder: str | os.PathLike) -> RunCheck:
    """Validate a run folder: the single check behind every reader of finished runs.

    Finished means: ``metrics.json`` is UTF-8 JSON holding a dict with every field of a run
    (finite PSNR/SSIM, a positive image count per set), its task / variant / scale / seed name
    this folder, its set means and counts agree with ``per_image.csv``, and ``model.pt`` and
    ``history.csv`` exist for a trained run. No ``metrics.json``: unfinished (no problem).
    """
    folder = Path(folder)
    f = folder / "metrics.json"
    try:
        raw = f.read_bytes()
    except FileNotFoundError:
        return RunCheck(None)
    except OSError as exc:
        return _damaged(f, f"unreadable ({exc.strerror or exc})")
    try:
        m = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return _damaged(f, "not UTF-8 text")
    except json.JSONDecodeError as exc:
        return _damaged(f, f"not valid JSON ({exc.msg} at line {exc.lineno})")
    problem = _metrics_problem(m, folder)
    if problem is None:
        problem = _files_problem(m, folder)
    if problem is not None:
        return _damaged(f, problem)
    return RunCheck(m)


def _damaged(f: Path, what: str) -> RunCheck:
    return RunCheck(None, f"{f}: damaged run ({what}); treated as unfinished: rerun its "
                          "`ablation train` (or the sweep) to redo it")


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _metrics_problem(m, folder: Path) -> str | None:
    """Why the parsed ``metrics.json`` is not a finished run's, or None."""
    if not isinstance(m, dict):
        return f"holds a JSON {type(m).__name__}, not an object"
    fields = dict(task=_int, variant=lambda x: isinstance(x, str) and x,
                  scale=lambda x: _int(x) and x in (2, 3, 4), seed=lambda x: _int(x) and x >= 0,
                  config_hash=lambda x: isinstance(x, str) and x,
                  label=lambda x: isinstance(x, str), params=_int, flops_per_pixel=_number,
                  train_seconds=_number, iterations=_int,
                  sets=lambda x: isinstance(x, dict) and x)
    for name, ok in fields.items():
        if name not in m:
            return f"no {name!r}"
        if not ok(m[name]):
            return f"bad {name!r}: {str(m[name])[:40]!r}"
    # optional fields (runs before they were recorded have none)
    for name, ok in (("body_gain", lambda x: x >= 0), ("conv_gflops", lambda x: x > 0)):
        x = m.get(name)
        if x is not None and not (_number(x) and ok(x)):
            return f"bad {name!r}: {str(x)[:40]!r}"
    key = f"task{m['task']:02d}/{m['variant']}/x{m['scale']}/seed{m['seed']}"
    if "/".join(folder.parts[-4:]) != key:
        return f"it describes {key}, not this folder"
    for name, s in m["sets"].items():
        if not (isinstance(s, dict) and _number(s.get("psnr")) and _number(s.get("ssim"))
                and _int(s.get("n_images")) and s["n_images"] > 0):
            return f"set {str(name)[:40]!r} lacks a finite psnr, ssim or a positive n_images"
    return None


def _files_problem(m: dict, folder: Path) -> str | None:
    """Why the run's other files don't back ``metrics.json`` up, or None."""
    needed = RUN_FILES + (() if m["variant"] == "bicubic" else TRAINED_RUN_FILES)
    if m["seed"] not in CHECKPOINT_SEEDS:
        needed = tuple(n for n in needed if n != "model.pt")
    missing = [n for n in needed if not (folder / n).is_file()]
    if missing:
        return f"{', '.join(missing)} missing"
    import pandas as pd

    try:
        per_image = pd.read_csv(folder / "per_image.csv")
        g = per_image.groupby("set", sort=False)
        means = g.agg(psnr=("psnr", "mean"), ssim=("ssim", "mean"), n=("image", "count"))
    except Exception as exc:  # unparsable, wrong columns, non-numeric scores
        return f"per_image.csv unreadable ({exc.__class__.__name__})"
    if sorted(map(str, means.index)) != sorted(m["sets"]):
        return "its sets differ from per_image.csv's"
    for name, s in m["sets"].items():
        row = means.loc[name]
        if int(row.n) != s["n_images"]:
            return f"{name}: {s['n_images']} images, per_image.csv has {int(row.n)}"
        if not (abs(row.psnr - s["psnr"]) <= PSNR_TOLERANCE
                and abs(row.ssim - s["ssim"]) <= SSIM_TOLERANCE):
            return (f"{name}: PSNR/SSIM {s['psnr']:.4f}/{s['ssim']:.4f} differ from the "
                    f"per-image mean {row.psnr:.4f}/{row.ssim:.4f} in per_image.csv")
    return None


def read_metrics(folder: Path) -> dict | None:
    """The run's metrics, or None if it hasn't finished or is damaged (see :func:`check_run`;
    a damaged run also gets a :class:`DamagedRunWarning` naming the file)."""
    check = check_run(folder)
    if check.problem:
        warnings.warn(check.problem, DamagedRunWarning, stacklevel=2)
    return check.metrics


DIVERGED_FILE = "diverged.json"


def read_diverged(folder: Path) -> dict | None:
    """The run's divergence record (:data:`DIVERGED_FILE`: ``config_hash``, ``iteration``,
    ``message``), or None: none, or the run has since finished. A malformed record is ignored
    with a :class:`DamagedRunWarning` naming the file (the run then counts as not run)."""
    f = Path(folder) / DIVERGED_FILE
    if not f.is_file() or (Path(folder) / "metrics.json").is_file():
        return None
    try:
        d = json.loads(f.read_text(encoding="utf-8"))
        ok = (isinstance(d, dict) and isinstance(d.get("config_hash"), str)
              and isinstance(d.get("message"), str)
              and (d.get("iteration") is None or _int(d["iteration"])))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        ok = False
    if not ok:
        warnings.warn(f"{f}: damaged divergence record; ignored: delete it or rerun the run",
                      DamagedRunWarning, stacklevel=2)
        return None
    return d


def seed_folders(profile: str, task: int, variant: str, scale: int, results_dir=None
                 ) -> dict[int, Path]:
    """{seed: folder} of every ``seed<k>`` folder of a run on disk, by seed (whatever state)."""
    parent = run_dir(profile, task, variant, scale, 0, results_dir).parent
    return {int(f.name.removeprefix("seed")): f for f in sorted(parent.glob("seed*"))
            if f.name.removeprefix("seed").isdigit()}


def diverged_seeds(profile: str, task: int, variant: str, scale: int, results_dir=None
                   ) -> dict[int, dict]:
    """{seed: :func:`read_diverged` record} of the run's seeds that diverged in training."""
    return {seed: d for seed, folder in seed_folders(profile, task, variant, scale,
                                                      results_dir).items()
            if (d := read_diverged(folder)) is not None}


def metrics_files(profile: str, results_dir=None) -> list[Path]:
    """Every ``metrics.json`` under ``results/<profile>``, finished or not, sorted."""
    root = paths.results_dir(results_dir) / profile
    return sorted(root.glob("task*/*/x*/seed*/metrics.json"))


def iter_metrics(profile: str, results_dir=None):
    """Yield every finished run's metrics dict under ``results/<profile>`` (damaged runs are
    left out with a :class:`DamagedRunWarning` naming the file)."""
    for f in metrics_files(profile, results_dir):
        m = read_metrics(f.parent)
        if m is not None:
            m["run_dir"] = str(f.parent)
            yield m


def damaged_runs(profile: str, results_dir=None) -> list[str]:
    """One line per damaged run under ``results/<profile>`` (file, problem, fix)."""
    return [c.problem for f in metrics_files(profile, results_dir)
            if (c := check_run(f.parent)).problem]


def resolve_model(name: str, scale: int, profile: str = "cpu", seed: int = 0,
                  results_dir=None) -> Path:
    """'task4/baseline' (or 'reference/edsr_baseline') -> that run's ``model.pt``."""
    from ablation.tasks import get_task

    if "/" not in name:
        raise ConfigError(f"model {name!r}: use TASK/VARIANT, e.g. task4/baseline")
    task_part, variant = name.split("/", 1)
    try:
        number = 0 if task_part in ("reference", "task0") else int(task_part.removeprefix("task"))
    except ValueError:
        raise ConfigError(f"model {name!r}: use TASK/VARIANT, e.g. task4/baseline or "
                          "reference/edsr_baseline") from None
    task = get_task(number)
    if not task.variant(variant).trainable:
        raise ConfigError(f"model {name!r} is computed, not trained; use --model {variant}")
    path = run_dir(profile, number, variant, scale, seed, results_dir) / "model.pt"
    if not path.exists() and check_run(path.parent).metrics is not None:
        raise MissingModelError(
            f"{path}: not kept (the repository keeps the checkpoints of seed(s) "
            f"{', '.join(map(str, CHECKPOINT_SEEDS))} only); to get it, delete "
            f"{path.parent / 'metrics.json'} and run `ablation train --task {number} "
            f"--variant {variant} --scale {scale} --seed {seed} --profile {profile}`")
    if not path.exists():
        raise MissingModelError(f"{path.resolve()}: no trained checkpoint for {name} at x{scale} "
                          f"({profile}); {models_hint(scale, profile, results_dir)}, or run "
                          f"`ablation train --task {number} --variant {variant} "
                          f"--scale {scale} --profile {profile}`")
    return path


def trained_models(scale: int, profile: str = "cpu", results_dir=None) -> list[str]:
    """'taskN/variant' (or 'reference/variant') of every checkpoint at ``scale`` under
    ``results/<profile>``, sorted; what ``--model`` accepts. Looks at files only (cheap)."""
    root = paths.results_dir(results_dir) / profile
    names = set()
    for ckpt in root.glob(f"task[0-9][0-9]/*/x{scale}/seed*/model.pt"):
        number = int(ckpt.parents[3].name.removeprefix("task"))
        names.add(f"{'reference' if number == 0 else f'task{number}'}/{ckpt.parents[2].name}")
    return sorted(names, key=lambda n: (n.startswith("task"), len(n.split("/")[0]), n))


def models_hint(scale: int, profile: str = "cpu", results_dir=None) -> str:
    """Half a sentence for a missing model: the models that do exist at ``scale`` in the
    results folder (resolved, so a command run outside the repository shows where it looked)
    and how to point at another folder."""
    root = paths.results_dir(results_dir).resolve()
    found = trained_models(scale, profile, results_dir)
    shown = ", ".join(found[:8]) + (f" (+{len(found) - 8} more)" if len(found) > 8 else "")
    have = (f"models at x{scale} in {root / profile}: {shown}" if found
            else f"no models at x{scale} in {root / profile}")
    return (f"{have}; point --results (or $ABLATION_RESULTS) at the results folder of a "
            f"checkout of the project")


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
