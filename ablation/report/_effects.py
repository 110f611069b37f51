"""Effects of the study: every comparison the book makes, with its 95% interval.

One aggregation rule (:data:`AGGREGATION_RULE`) holds on every page: a run's number is the mean
over every seed of it in the results folder, and an effect is computed by
:func:`ablation.stats.effect` from the runs' per-image scores (``per_image.csv``), per set and
for the equal-weight mean over the sets. Which runs are compared is :func:`comparisons`
(the task's first ``compare_to``, else bicubic, plus a variant's ``compare_also``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ablation import results as results_mod
from ablation import stats
from ablation.literature import ORIGINAL_CAVEATS, original_psnr
from ablation.planning import skip_reason
from ablation.tasks import BICUBIC, REFERENCE, TASKS, Task, get_task

from ._tables import ordered_sets

MEAN_SET = "mean"  # the set column of the equal-weight mean over the sets
AGGREGATION_RULE = (
    "Every number of a run is the mean over every seed of it in the results folder (the "
    "<i>seeds</i> column says how many). An effect is a variant's mean minus the mean of the "
    "run it is compared with, in dB, per set and for the mean of the sets (each set weighs "
    "the same), with a 95% confidence interval over seeds and benchmark images (method page). "
    "The verdict comes from the interval alone: <i>better</i> or <i>worse</i> when it excludes "
    f"zero, else <i>{stats.NO_DIFFERENCE}</i>. With one seed of a trained run the seed-to-seed "
    "spread is not estimated: the interval covers the images only and the verdict is marked "
    "<i>provisional</i>.")
EFFECT_COLUMNS = ["task", "variant", "label", "ref_task", "ref_variant", "ref_label", "scale",
                  "set", "effect", "low", "high", "verdict", "provisional", "seed_estimated",
                  "n_variant", "n_reference", "n_images", "original", "original_caveat",
                  "status", "diverged", "n_diverged"]


@dataclass(frozen=True)
class Comparison:
    """A variant and the run it is measured against."""

    task: int
    variant: str
    label: str
    ref_task: int
    ref_variant: str
    ref_label: str


NOT_IN_ORIGINAL = "not in the original study"  # how a diagnostic variant's note starts


def not_in_original(task: int, variant: str) -> bool:
    """True for a diagnostic variant the original study did not run (its note says so)."""
    return get_task(task).variant(variant).note.startswith(NOT_IN_ORIGINAL)


def primary_comparison(task: Task) -> tuple[int, str]:
    """The run a task's variants are measured against: its first compare_to, else bicubic."""
    return task.compare_to[0] if task.compare_to else (REFERENCE.number, BICUBIC.name)


def comparisons(task: int) -> list[Comparison]:
    """Every comparison a task page makes: each variant against the primary run, then against
    the runs its ``compare_also`` names."""
    t = get_task(task)
    out = []
    for v in t.variants:
        for rt, rv in (primary_comparison(t), *v.compare_also):
            out.append(Comparison(t.number, v.name, v.label, rt, rv,
                                  get_task(rt).variant(rv).label))
    return out


def per_image(profile: str, task: int, variant: str, scale: int,
              results_dir=None) -> pd.DataFrame:
    """Per-image PSNR of every finished seed of a run: columns seed, set, image, psnr (a damaged
    or unfinished seed is left out; a damaged one with its warning). ``attrs["label"]``: the
    label the run recorded."""
    frames, label = [], None
    for seed, folder in results_mod.seed_folders(profile, task, variant, scale,
                                                 results_dir).items():
        m = results_mod.read_metrics(folder)
        if m is None:
            continue
        label = label or m.get("label")
        df = pd.read_csv(folder / "per_image.csv", usecols=["set", "image", "psnr"])
        frames.append(df.assign(seed=seed))
    if not frames:
        return pd.DataFrame(columns=["seed", "set", "image", "psnr"])
    out = pd.concat(frames, ignore_index=True)[["seed", "set", "image", "psnr"]]
    out.attrs["label"] = label  # the label the run recorded (it names a substitute backbone)
    return out


def _matrix(df: pd.DataFrame, set_name: str, images: list[str]) -> np.ndarray:
    """(n_seeds, n_images) PSNR of one set, images in the given order."""
    wide = df[df.set == set_name].pivot_table(index="seed", columns="image", values="psnr")
    return wide[images].to_numpy(float)


def set_effects(v: pd.DataFrame, r: pd.DataFrame, computed: tuple[bool, bool]
                ) -> dict[str, stats.Effect]:
    """Set name -> effect of ``v`` over ``r`` (per-image frames of :func:`per_image`), plus
    :data:`MEAN_SET` over the sets both have. Only seeds scored on every common set count."""
    sets = ordered_sets(s for s in v.set.unique() if s in set(r.set))
    out: dict[str, stats.Effect] = {}
    pairs = []
    v, r = (_complete_seeds(side, sets) for side in (v, r))
    for s in sets:
        common = sorted(set(v[v.set == s].image) & set(r[r.set == s].image))
        if not common:
            continue
        pair = (_matrix(v, s, common), _matrix(r, s, common))
        pairs.append(pair)
        out[s] = stats.effect([pair], computed)
    if pairs:
        out[MEAN_SET] = stats.effect(pairs, computed)
    return out


def _complete_seeds(side: pd.DataFrame, sets: list[str]) -> pd.DataFrame:
    """The rows of the seeds scored on every one of ``sets``."""
    full = side[side.set.isin(sets)].groupby("seed").set.nunique()
    return side[side.seed.isin(full[full == len(sets)].index)]


def effects_table(profile: str, results_dir=None, tasks: Iterable[int] | None = None,
                  scales: Iterable[int] | None = None,
                  status: dict[str, str] | None = None) -> pd.DataFrame:
    """One row per (comparison, scale, set or :data:`MEAN_SET`): the effect, its interval, the
    verdict, the seeds it rests on and the original study's difference. A comparison without
    results gets one row with a ``not run: ...`` status (``status``: run key -> a page's
    'not run: <reason>' record, e.g. missing VGG19 weights)."""
    cache: dict[tuple[int, str, int], pd.DataFrame] = {}

    def load(t: int, v: str, s: int) -> pd.DataFrame:
        if (t, v, s) not in cache:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", results_mod.DamagedRunWarning)
                cache[(t, v, s)] = per_image(profile, t, v, s, results_dir)
        return cache[(t, v, s)].copy()

    rows = []
    for t in (TASKS[n] for n in (tasks if tasks is not None else TASKS)):
        for scale in (s for s in t.scales if scales is None or s in set(scales)):
            for c in comparisons(t.number):
                base = dict(task=c.task, variant=c.variant, label=c.label, ref_task=c.ref_task,
                            ref_variant=c.ref_variant, ref_label=c.ref_label, scale=scale,
                            **_diverged(profile, c, scale, results_dir))
                v, r = load(c.task, c.variant, scale), load(c.ref_task, c.ref_variant, scale)
                base.update(label=v.attrs.get("label") or c.label,
                            ref_label=r.attrs.get("label") or c.ref_label)
                computed = (False, not get_task(c.ref_task).variant(c.ref_variant).trainable)
                found = set_effects(v, r, computed) if len(v) and len(r) else {}
                if not found:
                    rows.append(dict(base, set=MEAN_SET, effect=math.nan, low=math.nan,
                                     high=math.nan, verdict="", provisional=False,
                                     seed_estimated=False, n_variant=v.seed.nunique(),
                                     n_reference=r.seed.nunique(), n_images=0,
                                     original=math.nan, original_caveat="",
                                     status=_missing(c, scale, profile, v, r, status or {})))
                    continue
                rows += [dict(base, set=s, **_effect_fields(e), **_original(c, scale, s, found),
                              status="ok") for s, e in found.items()]
    return pd.DataFrame(rows, columns=EFFECT_COLUMNS)


def _diverged(profile: str, c: Comparison, scale: int, results_dir=None) -> dict:
    """The ``diverged`` and ``n_diverged`` columns: which seeds of either side diverged in
    training (their ``diverged.json``), e.g. 'seed 2 of PReLU (per channel) diverged in
    training (loss exploded at iteration 475: ...)', and how many. Such a seed has no scores:
    the interval rests on the others."""
    parts = []
    for task, variant, label in ((c.task, c.variant, c.label),
                                 (c.ref_task, c.ref_variant, c.ref_label)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", results_mod.DamagedRunWarning)
            found = results_mod.diverged_seeds(profile, task, variant, scale, results_dir)
        parts += [f"seed {seed} of {label} diverged in training ({d['message']})"
                  for seed, d in found.items()]
    return dict(diverged="; ".join(parts), n_diverged=len(parts))


def _effect_fields(e: stats.Effect) -> dict:
    """The columns of one :class:`ablation.stats.Effect`."""
    return dict(effect=e.effect, low=e.low, high=e.high, verdict=e.verdict,
                provisional=e.provisional, seed_estimated=e.seed_estimated,
                n_variant=e.n_variant, n_reference=e.n_reference, n_images=e.n_images)


def _original(c: Comparison, scale: int, set_name: str, found: dict) -> dict:
    """The original study's README difference for the same set (or mean of the same sets)."""
    ov, orr = original_psnr(c.task, c.variant, scale), original_psnr(c.ref_task, c.ref_variant,
                                                                     scale)
    caveat = ORIGINAL_CAVEATS.get(c.task) or ORIGINAL_CAVEATS.get(c.ref_task) or ""
    if not (ov and orr):
        return dict(original=math.nan, original_caveat="")
    sets = [s for s in found if s != MEAN_SET] if set_name == MEAN_SET else [set_name]
    if not all(s in ov and s in orr for s in sets):
        return dict(original=math.nan, original_caveat="")
    return dict(original=float(np.mean([ov[s] - orr[s] for s in sets])), original_caveat=caveat)


def _missing(c: Comparison, scale: int, profile: str, v: pd.DataFrame, r: pd.DataFrame,
             status: dict[str, str]) -> str:
    """'not run: <why>' for a comparison with no result: which side is missing and why."""
    parts = []
    for task, variant, frame in ((c.task, c.variant, v), (c.ref_task, c.ref_variant, r)):
        if len(frame):
            continue
        key = f"task{task:02d}/{variant}/x{scale}/seed0"
        reason = skip_reason(task, variant, profile) or status.get(key, "").removeprefix(
            "not run: ") or "no finished run yet"
        parts.append(f"{get_task(task).variant(variant).label}: {reason}")
    return "not run: " + "; ".join(parts)


def mean_rows(effects: pd.DataFrame) -> pd.DataFrame:
    """The rows of the mean over sets (one per comparison and scale; missing ones included)."""
    return effects[effects.set == MEAN_SET]


def effect_of(row: pd.Series) -> stats.Effect:
    """A row of :func:`effects_table` back as an :class:`ablation.stats.Effect` (for its
    texts)."""
    return stats.Effect(float(row.effect), float(row.low), float(row.high), int(row.n_variant),
                        int(row.n_reference), int(row.n_images), bool(row.seed_estimated))
