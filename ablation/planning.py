"""Which runs a page needs: the plan the report shows and the sweep waits for.

A task page shows the bicubic reference, the runs its task is compared with (``compare_to``)
and its own variants, at the page's scale and seeds; :func:`planned_runs` lists them in that
order, each with its folder key and, when the profile can't run it, the reason. The sweep
plans the same runs to decide whether an executed page is still up to date, so both read this
one module. A page trains the seeds it is given (seed 0 by default); what it shows is the mean
over every seed of a run on disk (``report._effects.AGGREGATION_RULE``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ablation import results as results_mod
from ablation.config import SCALES
from ablation.tasks import REFERENCE, TASKS, get_task


@dataclass(frozen=True)
class PlannedRun:
    """One run a page needs: a task variant, a compared baseline, or a reference."""

    task: int
    variant: str
    label: str
    scale: int
    seed: int
    role: str  # "variant", "baseline" or "reference"
    skip_reason: str = ""  # non-empty: not run under this profile (shown as 'not run: ...')

    @property
    def key(self) -> str:
        """'task04/baseline/x2/seed0': the run's folder under results/<profile>."""
        return f"task{self.task:02d}/{self.variant}/x{self.scale}/seed{self.seed}"

    @property
    def trainable(self) -> bool:
        """False for the computed reference (bicubic): no history, no checkpoint."""
        return get_task(self.task).variant(self.variant).trainable

    def run_dir(self, profile: str, results_dir=None) -> Path:
        """The run's folder."""
        return results_mod.run_dir(profile, self.task, self.variant, self.scale, self.seed,
                                   results_dir)


def skip_reason(task: int, variant: str, profile: str) -> str:
    """Why a variant isn't run under ``profile`` ('' when it is)."""
    v = get_task(task).variant(variant)
    if not v.cpu and profile != "paper":
        return "needs a GPU (paper profile)"
    return ""


def planned_runs(task: int, scales: Iterable[int], seeds: Iterable[int] = (0,),
                 variants: Sequence[str] = (), profile: str = "cpu",
                 reference: bool = True) -> list[PlannedRun]:
    """The runs a task page shows, in display order: the computed reference (bicubic), the
    baselines, then the variants.

    ``variants`` (names) limits the task's own variants (empty = all). The computed reference
    is deterministic, so it runs once per scale (seed 0).
    """
    t = get_task(task)
    scales, seeds = [int(s) for s in scales], [int(s) for s in seeds] or [0]
    own = [t.variant(n) for n in variants] if variants else list(t.variants)
    out: list[PlannedRun] = []
    for scale in scales:
        if reference:
            out += [PlannedRun(REFERENCE.number, v.name, v.label, scale, seed, "reference")
                    for v in REFERENCE.computed
                    for seed in run_seeds(REFERENCE.number, v.name, scale, seeds)]
        for bt, bv in t.compare_to:
            label = get_task(bt).variant(bv).label
            out += [PlannedRun(bt, bv, label, scale, seed, "baseline",
                               skip_reason(bt, bv, profile))
                    for seed in run_seeds(bt, bv, scale, seeds)]
        out += [PlannedRun(t.number, v.name, v.label, scale, seed, "variant",
                           skip_reason(t.number, v.name, profile))
                for v in own for seed in run_seeds(t.number, v.name, scale, seeds)]
    return out


def run_seeds(task: int, variant: str, scale: int, seeds: list[int]) -> list[int]:
    """The seeds to run: ``seeds``; seed 0 only for a computed reference (deterministic)."""
    if not get_task(task).variant(variant).trainable:
        return [0]
    return list(seeds)


def study_rows(scales: Iterable[int] = SCALES) -> list[PlannedRun]:
    """Every (task, variant, scale) of the study, references first (seed 0 as placeholder)."""
    scales = [int(s) for s in scales]
    out = []
    for t in [REFERENCE, *TASKS.values()]:
        for v in [*t.computed, *t.variants]:
            out += [PlannedRun(t.number, v.name, v.label, s, 0,
                               "reference" if t is REFERENCE else "variant")
                    for s in t.scales if s in scales]
    return out

