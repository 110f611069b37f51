"""The compute ladder: how the contested answers move from 1x (``cpu``) to 4x (``cpu4``) and
16x (``cpu16``) the budget, read ONLY from committed runs (nothing here trains).

The factors are :data:`ablation.tasks.LADDER_FACTORS`, each against
:data:`ablation.tasks.LADDER_BASELINE` at :data:`ablation.tasks.LADDER_SCALE`; the budgets are
``cpu`` and :data:`ablation.config.LADDER`. A budget is measured in HR pixels seen in training
(iterations x batch x HR patch area), the unit that puts the original study's budget on the
same axis.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import pandas as pd

from ablation import stats
from ablation.config import LADDER, budget_multiplier, make_config
from ablation.literature import ORIGINAL_B100_BEST
from ablation.models import VANISHED_BODY
from ablation.tasks import LADDER_BASELINE, LADDER_FACTORS, LADDER_SCALE, get_task

from ._effects import MEAN_SET, per_image, set_effects
from ._html import esc
from ._probes import run_body_gains

LADDER_PROFILES = ("cpu", *LADDER)  # 1x, 4x, 16x
TOP_BUDGET = f"{budget_multiplier(LADDER_PROFILES[-1])}x"  # "16x": the baseline and one factor
SHRINKS, HOLDS, GROWS, FLIPS = "shrinks", "holds", "grows", "flips"
NOT_YET = "not yet run"
CHANGE_RULE = (
    f"<i>{HOLDS}</i>: the 1x effect lies inside the larger budget's 95% interval; "
    f"<i>{FLIPS}</i>: it does not, and the larger budget's interval excludes zero on the other "
    f"side; otherwise <i>{SHRINKS}</i> or <i>{GROWS}</i> by the size of the estimate. "
    f"<i>{NOT_YET}</i>: a run of that budget is not committed.")

TOP_RUNG_RULE = ("the factor whose effect on the mean of the sets moved most from 1x to 4x (a "
                 "move that holds, inside the 4x interval, counts only if every factor holds)")


def hr_pixels(task: int, variant: str, profile: str, scale: int = LADDER_SCALE) -> float:
    """HR pixels a run of ``profile`` sees in training: iterations x batch x (LR patch x
    scale)^2, from the config (with the variant's own overrides)."""
    c = make_config(profile, **get_task(task).variant(variant).overrides(profile))
    return float(c.iterations * c.batch_size * (c.lr_patch * scale) ** 2)


def ladder_runs() -> list[tuple[int, str]]:
    """The ladder's (task, variant) runs: the baseline, then the factors."""
    return [LADDER_BASELINE, *LADDER_FACTORS]


def ladder_status(results_dir=None, profiles: Iterable[str] = LADDER_PROFILES) -> pd.DataFrame:
    """Seeds committed per ladder run and budget (0: not yet committed)."""
    rows = []
    for task, variant in ladder_runs():
        row = dict(task=task, variant=variant, label=get_task(task).variant(variant).label)
        for p in profiles:
            df = per_image(p, task, variant, LADDER_SCALE, results_dir)
            row[f"{budget_multiplier(p)}x"] = int(df.seed.nunique())
        rows.append(row)
    return pd.DataFrame(rows)


def ladder_body_gains(results_dir=None, profiles: Iterable[str] = LADDER_PROFILES
                      ) -> pd.DataFrame:
    """Per ladder run and budget, the body gain of each committed seed ({seed: gain}, see
    :func:`._probes.run_body_gains`): whether a body that did not train at 1x trains with more
    compute (a vanished body under :data:`ablation.models.VANISHED_BODY`, as depth 16's at 1x)."""
    rows = []
    for task, variant in ladder_runs():
        row = dict(task=task, variant=variant, label=get_task(task).variant(variant).label)
        for p in profiles:
            row[f"{budget_multiplier(p)}x"] = run_body_gains(p, task, variant, LADDER_SCALE,
                                                             results_dir)
        rows.append(row)
    return pd.DataFrame(rows)


def ladder_points(results_dir=None, profiles: Iterable[str] = LADDER_PROFILES) -> pd.DataFrame:
    """PSNR per (run, budget, set): mean, min and max over the committed seeds."""
    rows = []
    for task, variant in ladder_runs():
        label = get_task(task).variant(variant).label
        for p in profiles:
            df = per_image(p, task, variant, LADDER_SCALE, results_dir)
            if df.empty:
                continue
            per_seed = df.groupby(["set", "seed"]).psnr.mean().reset_index()
            for s, g in per_seed.groupby("set"):
                rows.append(dict(task=task, variant=variant, label=label, profile=p,
                                 pixels=hr_pixels(task, variant, p), set=s, psnr=g.psnr.mean(),
                                 low=g.psnr.min(), high=g.psnr.max(), seeds=len(g)))
    return pd.DataFrame(rows, columns=["task", "variant", "label", "profile", "pixels", "set",
                                       "psnr", "low", "high", "seeds"])


def original_points() -> pd.DataFrame:
    """The original study's logged B100 best of each ladder run at its own budget."""
    rows = [dict(label=get_task(t).variant(v).label, pixels=float(o.hr_pixels), psnr=o.b100,
                 note=o.note)
            for (t, v), o in ORIGINAL_B100_BEST.items() if (t, v) in ladder_runs()]
    return pd.DataFrame(rows, columns=["label", "pixels", "psnr", "note"])


def change(first: stats.Effect | None, later: stats.Effect | None) -> str:
    """How an effect moves from 1x to a larger budget (:data:`CHANGE_RULE`)."""
    if first is None or later is None:
        return NOT_YET
    if not later.has_interval:
        return HOLDS if math.isclose(first.effect, later.effect, abs_tol=0.005) else (
            SHRINKS if abs(later.effect) < abs(first.effect) else GROWS)
    if later.low <= first.effect <= later.high:
        return HOLDS
    if later.verdict in (stats.BETTER, stats.WORSE) and (later.effect > 0) != (first.effect > 0):
        return FLIPS
    return SHRINKS if abs(later.effect) < abs(first.effect) else GROWS


def ladder_effects(results_dir=None, profiles: Iterable[str] = LADDER_PROFILES,
                   sets: tuple[str, ...] = ("B100", MEAN_SET)) -> pd.DataFrame:
    """Per factor, set (B100 and the mean of the sets) and budget: the effect against the
    baseline at that budget, and how it changed from 1x."""
    profiles = list(profiles)
    bt, bv = LADDER_BASELINE
    rows = []
    for task, variant in LADDER_FACTORS:
        found = {}
        for p in profiles:
            v = per_image(p, task, variant, LADDER_SCALE, results_dir)
            r = per_image(p, bt, bv, LADDER_SCALE, results_dir)
            found[p] = set_effects(v, r, (False, False)) if len(v) and len(r) else {}
        for s in sets:
            first = found[profiles[0]].get(s)
            for p in profiles:
                e = found[p].get(s)
                rows.append(dict(task=task, variant=variant,
                                 label=get_task(task).variant(variant).label, set=s, profile=p,
                                 budget=f"{budget_multiplier(p)}x", effect=e,
                                 change="" if p == profiles[0] else change(first, e)))
    return pd.DataFrame(rows, columns=["task", "variant", "label", "set", "profile", "budget",
                                       "effect", "change"])


def most_moved_factor(effects: pd.DataFrame, first: str = "cpu", later: str = "cpu4",
                      ) -> tuple[int, str, float] | None:
    """(task, variant, dB) of the factor whose answer moved most from ``first`` to ``later``:
    the one factor the ladder also takes to 16x. The move is |effect later - effect first| on
    the mean of the sets, and only a detected move counts: a factor whose change is *holds*
    (its ``first`` effect inside the ``later`` interval, :func:`change`) is passed over unless
    every factor holds. None until every factor has a committed run at both budgets, so the
    choice is never made on part of the ladder."""
    mean = effects[effects.set == MEAN_SET]
    moved = []
    for (task, variant), g in mean.groupby(["task", "variant"], sort=False):
        by_profile = dict(zip(g.profile, g.effect, strict=True))
        a, b = by_profile.get(first), by_profile.get(later)
        if a is None or b is None:
            return None
        moved.append((change(a, b) != HOLDS, abs(b.effect - a.effect), task, variant))
    if not moved:
        return None
    _, dist, task, variant = max(moved)
    return task, variant, dist


def top_rung(chosen: tuple[int, str, float] | None) -> set[tuple[int, str]]:
    """The (task, variant) runs planned at :data:`TOP_BUDGET`: the baseline, and the factor of
    :func:`most_moved_factor` once it is chosen."""
    return {LADDER_BASELINE, *([chosen[:2]] if chosen else [])}


def stops_below_top(task: int, variant: str, chosen: tuple[int, str, float] | None) -> bool:
    """True for a run the ladder does not take to :data:`TOP_BUDGET` (known once the factor is
    chosen)."""
    return chosen is not None and (task, variant) not in top_rung(chosen)


def missing_runs(status: pd.DataFrame, chosen: tuple[int, str, float] | None) -> list[str]:
    """'label at budget' of each planned ladder run not yet committed (``status``:
    :func:`ladder_status`): every run below the top rung, and the top rung's own."""
    budgets = [c for c in status.columns if c.endswith("x")]
    return [f"{r.label} at {b}" for _, r in status.iterrows() for b in budgets
            if not r[b] and (b != TOP_BUDGET or (r.task, r.variant) in top_rung(chosen))]


def ladder_sentences(effects: pd.DataFrame, gains: pd.DataFrame | None = None) -> list[str]:
    """Per factor, what the ladder shows on the mean of the sets, claiming no more than the
    committed runs: the effect per budget run, its change, the budgets not yet run, and (from
    ``gains``, :func:`ladder_body_gains`) whether its body trained at all."""
    out = []
    mean = effects[effects.set == MEAN_SET]
    chosen = most_moved_factor(effects)
    for (task, variant), g in mean.groupby(["task", "variant"], sort=False):
        label = g.label.iloc[0]
        done = g[g.effect.notna()]
        stops = stops_below_top(task, variant, chosen)
        missing = [b for b, e in zip(g.budget, g.effect, strict=True)
                   if e is None and not (stops and b == TOP_BUDGET)]
        head = f"<b>Task {task}, <i>{esc(label)}</i></b> against the baseline"
        if len(done) <= 1:
            out.append(f"{head}: the ladder is not yet run (no committed run at "
                       f"{', '.join(missing)}); the 1x answer stands alone.")
            continue
        parts = [f"{b}: {esc(e.interval_text())}, {esc(e.verdict_text())}"
                 for b, e in zip(done.budget, done.effect, strict=True)]
        changes = [f"{c} at {b}" for b, c in zip(done.budget, done.change, strict=True) if c]
        text = f"{head}: {'; '.join(parts)}. From 1x the effect {', '.join(changes)}"
        text += (f"; {', '.join(missing)} not yet run" if missing else "")
        text += " (the ladder stops at 4x for this factor)." if stops else "."
        orig = ORIGINAL_B100_BEST.get((task, variant)) or ORIGINAL_B100_BEST[LADDER_BASELINE]
        largest = max(hr_pixels(task, variant, p) for p in done.profile)
        text += (" This shows where the effect heads within the budgets run, not its value at "
                 f"the original study's budget ({orig.hr_pixels / largest:.0f}x the largest "
                 "run here, in HR pixels seen).")
        if gains is not None:
            text += _vanished_note(gains, task, variant, list(done.budget))
        out.append(text)
    return out


def _vanished_note(gains: pd.DataFrame, task: int, variant: str, budgets: list[str]) -> str:
    """A factor whose body vanished (body gain under :data:`VANISHED_BODY`) in some seed of the
    budgets run: how many, and what that leaves the ladder able to say."""
    row = gains[(gains.task == task) & (gains.variant == variant)]
    if row.empty:
        return ""
    per_budget = {b: row.iloc[0][b] for b in budgets if row.iloc[0][b]}
    probed = sum(len(g) for g in per_budget.values())
    dead = {b: [s for s, v in sorted(g.items()) if v < VANISHED_BODY]
            for b, g in per_budget.items()}
    n_dead = sum(len(d) for d in dead.values())
    if not n_dead:
        return ""
    if n_dead == probed:
        return (f" Its body never trained in any seed run ({probed}; body gain under "
                f"{VANISHED_BODY:g}): the ladder compares the baseline with this net's linear "
                "head-upsampler-tail path, so it says nothing about the factor itself in the "
                "original's regime.")
    where = "; ".join(f"{b}: {len(d)} of {len(per_budget[b])}" for b, d in dead.items())
    return (f" Its body vanished (body gain under {VANISHED_BODY:g}) in some seeds ({where}), "
            "so its effect mixes nets whose body trained with nets that are their linear "
            "head-upsampler-tail path.")
