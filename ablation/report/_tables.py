"""The results folder as DataFrames: runs, seed aggregates, task and study tables.

Tables only (pandas; no HTML, figures or checkpoints): each function reads ``results/<profile>``
(metrics.json, history.csv) or takes DataFrames, and returns DataFrames, so the tests run them
on a synthetic results folder. Costs of runs not made yet come from the spec (``models``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from ablation import results as results_mod
from ablation.config import (
    BENCHMARKS,
    PROFILE_NAMES,
    PROFILES,
    SCALES,
    TrainConfig,
    make_config,
)
from ablation.costs import frame_flops
from ablation.literature import ORIGINAL_CAVEATS, ORIGINAL_README, PUBLISHED
from ablation.planning import PlannedRun, skip_reason, study_rows
from ablation.tasks import REFERENCE, get_task

RUN_COLUMNS = ["task", "variant", "label", "scale", "seed", "set", "psnr", "ssim", "params",
               "flops", "gflops_720p", "train_seconds", "iterations", "loss", "device", "run_dir"]


def load_runs(profile: str, results_dir=None, tasks: Iterable[int] | None = None) -> pd.DataFrame:
    """Every finished run under ``results/<profile>`` as one row per (run, set)."""
    wanted = None if tasks is None else set(tasks)
    rows = []
    for m in results_mod.iter_metrics(profile, results_dir):
        if wanted is not None and m.get("task") not in wanted:
            continue
        base = dict(task=m.get("task"), variant=m.get("variant"), label=m.get("label"),
                    scale=m.get("scale"), seed=m.get("seed"), params=m.get("params", 0),
                    flops=m.get("flops_per_pixel", 0.0),
                    gflops_720p=m.get("flops_1280x720", 0.0) / 1e9,
                    train_seconds=m.get("train_seconds", 0.0), iterations=m.get("iterations"),
                    loss=m.get("loss"), device=m.get("device"), run_dir=m.get("run_dir"))
        for set_name, s in (m.get("sets") or {}).items():
            rows.append(dict(base, set=set_name, psnr=s.get("psnr"), ssim=s.get("ssim")))
    return pd.DataFrame(rows, columns=RUN_COLUMNS)


def computed_mask(runs: pd.DataFrame) -> pd.Series:
    """True on the rows of a computed reference (bicubic): deterministic, it only has seed 0,
    so it counts for every selection of seeds."""
    computed = {(REFERENCE.number, v.name) for v in REFERENCE.computed}
    return pd.Series([(t, v) in computed for t, v in zip(runs.task, runs.variant, strict=True)],
                     index=runs.index, dtype=bool)


def aggregate_seeds(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean, std (NaN for one seed) and count over seeds per (task, variant, scale, set)."""
    keys = ["task", "variant", "label", "scale", "set"]
    if runs.empty:
        return pd.DataFrame(columns=keys + ["psnr", "psnr_std", "ssim", "ssim_std", "n",
                                            "params", "flops", "gflops_720p", "train_seconds",
                                            "iterations"])
    g = runs.groupby(keys, sort=False, dropna=False)
    out = g.agg(psnr=("psnr", "mean"), psnr_std=("psnr", "std"), ssim=("ssim", "mean"),
                ssim_std=("ssim", "std"), n=("seed", "nunique"), params=("params", "first"),
                flops=("flops", "first"), gflops_720p=("gflops_720p", "first"),
                train_seconds=("train_seconds", "mean"), iterations=("iterations", "first"))
    return out.reset_index()


def ordered_sets(names: Iterable[str]) -> list[str]:
    """Benchmark sets in the usual order, then any other folder names."""
    names = list(dict.fromkeys(names))
    return [s for s in BENCHMARKS if s in names] + [s for s in names if s not in BENCHMARKS]


def _spec_costs(task: int, variant: str, scale: int) -> tuple[int, float]:
    """(params, FLOPs per output pixel) from the spec: known even for a run not made."""
    from ablation.models import count_params, flops_per_output_pixel

    spec = get_task(task).variant(variant).spec
    if spec is None:  # the computed reference
        return 0, 0.0
    return count_params(spec, scale), flops_per_output_pixel(spec, scale)


def task_table(planned: Sequence[PlannedRun], runs: pd.DataFrame, profile: str,
               status: dict[str, str] | None = None) -> pd.DataFrame:
    """The task's results, wide: one row per (model, scale), PSNR/SSIM per set, costs.

    ``runs`` is :func:`load_runs` output; every seed of a planned run on disk counts (the one
    aggregation rule of the book: the mean over every seed present), whichever seeds the page
    trained. Rows without a finished run keep their place with a 'not run: ...' status.
    """
    status = status or {}
    wanted = {(p.task, p.variant, p.scale) for p in planned}
    if not runs.empty:
        mask = [(r.task, r.variant, r.scale) in wanted for r in runs.itertuples()]
        runs = runs[mask]
    agg = aggregate_seeds(runs)
    sets = ordered_sets(agg["set"]) or list(make_config(profile).eval_sets)
    rows, seen = [], set()
    for p in planned:
        ident = (p.task, p.variant, p.scale)
        if ident in seen:
            continue
        seen.add(ident)
        row = _table_row(p, agg, sets, planned, status)
        rows.append(row)
    return pd.DataFrame(rows)


def _table_row(p: PlannedRun, agg: pd.DataFrame, sets: list[str],
               planned: Sequence[PlannedRun], status: dict[str, str]) -> dict:
    """One row of :func:`task_table` for the planned run ``p``."""
    sub = agg[(agg.task == p.task) & (agg.variant == p.variant) & (agg.scale == p.scale)]
    params, flops = _spec_costs(p.task, p.variant, p.scale)
    row = dict(role=p.role, task=p.task, variant=p.variant, label=_run_label(p, sub),
               scale=p.scale, seeds=int(sub["n"].max()) if not sub.empty else 0)
    for s in sets:
        hit = sub[sub.set == s]
        row[f"{s} PSNR"] = float(hit.psnr.iloc[0]) if not hit.empty else math.nan
        row[f"{s} PSNR std"] = float(hit.psnr_std.iloc[0]) if not hit.empty else math.nan
        row[f"{s} SSIM"] = float(hit.ssim.iloc[0]) if not hit.empty else math.nan
    row["params"] = int(sub.params.iloc[0]) if not sub.empty else params
    row["FLOPs/pixel"] = float(sub.flops.iloc[0]) if not sub.empty else flops
    row["GFLOPs@1280x720"] = frame_flops(row["FLOPs/pixel"]) / 1e9
    row["iterations"] = sub.iterations.iloc[0] if not sub.empty else None
    keys = [q.key for q in planned if (q.task, q.variant, q.scale) == (p.task, p.variant,
                                                                         p.scale)]
    not_run = [status[k] for k in keys if status.get(k, "").startswith("not run")]
    if sub.empty:
        row["status"] = not_run[0] if not_run else (
            f"not run: {p.skip_reason}" if p.skip_reason else "not run: no finished run yet")
    else:
        row["status"] = "ok" if not not_run else f"ok ({len(not_run)} seed(s) {not_run[0]})"
    return row


def _run_label(p: PlannedRun, agg_rows: pd.DataFrame) -> str:
    """The label the finished run recorded (it names a substitute perceptual backbone), else
    the planned one."""
    labels = [x for x in agg_rows.get("label", pd.Series(dtype=object)).dropna().unique()
              if isinstance(x, str) and x]
    return labels[0] if labels else p.label


def table_sets(table: pd.DataFrame) -> list[str]:
    """The set names of a :func:`task_table`, in column order."""
    return [c[:-5] for c in table.columns if c.endswith(" PSNR")]


def load_histories(planned: Sequence[PlannedRun], profile: str, results_dir=None) -> pd.DataFrame:
    """history.csv of every planned trained run, with label, scale and seed columns."""
    frames = []
    for p in planned:
        if not p.trainable:
            continue
        f = p.run_dir(profile, results_dir) / "history.csv"
        if not f.exists() or results_mod.read_metrics(f.parent) is None:
            continue
        h = pd.read_csv(f)
        frames.append(h.assign(label=p.label, role=p.role, scale=p.scale, seed=p.seed,
                               variant=p.variant, task=p.task))
    if not frames:
        return pd.DataFrame(columns=["iteration", "loss", "learning_rate", "val_psnr", "seconds",
                                     "label", "role", "scale", "seed", "variant", "task"])
    return pd.concat(frames, ignore_index=True)


def final_losses(planned: Sequence[PlannedRun], profile: str, results_dir=None,
                 tail: float = 0.1) -> dict[tuple[int, str, int], float]:
    """(task, variant, scale) -> training loss over the last ``tail`` of the logged iterations
    (mean over rows, then over seeds): how well each run fits its training data at the end."""
    hist = load_histories(planned, profile, results_dir)
    out: dict[tuple[int, str, int], list[float]] = {}
    for (task, variant, scale, _seed), h in hist.groupby(["task", "variant", "scale", "seed"]):
        last = h[h.iteration > (1 - tail) * h.iteration.max()]
        out.setdefault((int(task), str(variant), int(scale)), []).append(float(last.loss.mean()))
    return {k: float(np.mean(v)) for k, v in out.items()}


def study_table(profile: str, results_dir=None, scales: Iterable[int] = SCALES,
                seeds: Iterable[int] | None = None, original: bool = True,
                published: bool = True) -> pd.DataFrame:
    """Every variant x set x scale of this study (mean over every seed on disk, or over
    ``seeds`` when given), with the original study's README numbers and published reference
    rows beside it (long rows; ``source`` says where a number comes from)."""
    runs = load_runs(profile, results_dir)
    if seeds is not None and not runs.empty:
        seeds = {int(s) for s in seeds}
        runs = runs[runs.seed.isin(seeds) | computed_mask(runs)]
    agg = aggregate_seeds(runs)
    rows = []
    for p in study_rows(scales):
        sub = agg[(agg.task == p.task) & (agg.variant == p.variant) & (agg.scale == p.scale)]
        params, flops = _spec_costs(p.task, p.variant, p.scale)
        row = dict(scale=p.scale, task=p.task, variant=p.variant, model=_run_label(p, sub),
                   source=f"this study ({profile})", seeds=int(sub["n"].max()) if len(sub) else 0,
                   params=params, gflops_720p=frame_flops(flops) / 1e9,
                   note=_run_note(p, profile) if len(sub) else _not_run_note(p, profile))
        for s in BENCHMARKS:
            hit = sub[sub.set == s]
            row[f"{s} PSNR"] = float(hit.psnr.iloc[0]) if len(hit) else math.nan
            row[f"{s} SSIM"] = float(hit.ssim.iloc[0]) if len(hit) else math.nan
        rows.append(row)
        orig = ORIGINAL_README.get((p.task, p.variant, p.scale))
        if original and orig:
            rows.append(dict(scale=p.scale, task=p.task, variant=p.variant, model=p.label,
                             source="original study (README)", seeds=1, params=None,
                             gflops_720p=None, note=ORIGINAL_CAVEATS.get(p.task, ""),
                             **{f"{s} PSNR": orig[s] for s in BENCHMARKS},
                             **{f"{s} SSIM": math.nan for s in BENCHMARKS}))
    if published:
        for pub in PUBLISHED:
            if pub.scale in set(int(s) for s in scales):
                rows.append(dict(scale=pub.scale, task=None, variant=None,
                                 model=f"{pub.method} (published)", source=pub.source, seeds=None,
                                 params=pub.params, gflops_720p=None, note="",
                                 **{f"{s} PSNR": pub.sets[s][0] for s in BENCHMARKS},
                                 **{f"{s} SSIM": pub.sets[s][1] for s in BENCHMARKS}))
    return pd.DataFrame(rows)


def _run_note(p: PlannedRun, profile: str) -> str:
    """The study table's note for a finished run: the variant's note when it trains with its
    own settings under ``profile`` (e.g. EDSR-baseline's lower cpu learning rate)."""
    v = get_task(p.task).variant(p.variant)
    return v.note if v.overrides(profile) else ""


def _not_run_note(p: PlannedRun, profile: str) -> str:
    """The study table's note for a run without results."""
    reason = skip_reason(p.task, p.variant, profile)
    return f"not run: {reason}" if reason else "not run"


def profiles_table() -> pd.DataFrame:
    """The three profiles' training settings, read from ablation.config (never typed)."""
    defaults = TrainConfig()
    rows = []
    for name in PROFILE_NAMES:
        c = make_config(name)
        rows.append({
            "profile": name,
            "iterations": f"{c.iterations:,}",
            "batch": c.batch_size,
            "LR patch (px)": c.lr_patch,
            "peak learning rate": f"{c.learning_rate:g}",
            "schedule": c.schedule if c.schedule == "onecycle"
            else f"step (halved after {c.step_at:.0%})",
            "HR pixels seen in training (x2)":
                f"{c.iterations * c.batch_size * (2 * c.lr_patch) ** 2 / 1e9:.3g} G",
            "training set": c.train_set,
            "validation images": c.val_images,
            "evaluated on": ", ".join(c.eval_sets),
            "overrides of the defaults": ", ".join(sorted(k for k in PROFILES[name]
                                                          if getattr(defaults, k, None)
                                                          != PROFILES[name][k])) or "none",
        })
    return pd.DataFrame(rows).set_index("profile")
