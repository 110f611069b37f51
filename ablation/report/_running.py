"""Running what a task page shows: each planned run trained or reused via
:func:`ablation.runs.run_variant`, a missing resource (no VGG19 weights, a GPU-only variant
under the cpu profile) turned into a "not run: <reason>" row instead of a failed page."""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd

from ablation.config import PROFILE_NAMES
from ablation.errors import AblationError, check_choice, quiet_logger
from ablation.planning import PlannedRun, planned_runs
from ablation.tasks import REFERENCE, get_task

from ._html import esc, profile_banner


def one_line_reason(exc: BaseException, loss: str | None = None) -> str:
    """A short 'why not run' for a table cell."""
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
    if "VGG19" in msg or (loss == "perceptual" and "weights" in msg.lower()):
        return "needs VGG19 weights (vgg19-dcbb9e9d.pth; set ABLATION_VGG19)"
    return msg if len(msg) <= 200 else msg[:197] + "..."


def interactive() -> bool:
    """False under the sweep (papermill), where progress bars would flood the saved notebook."""
    return os.environ.get("ABLATION_NONINTERACTIVE", "") not in ("1", "true", "yes")


@dataclass
class TaskRuns:
    """What :func:`run_task` did; the later report calls take it as their only argument."""

    task: int
    profile: str
    scales: list[int]
    seeds: list[int]
    variants: list[str]
    results_dir: str | None
    data_dir: str | None
    records: list[dict] = field(default_factory=list)

    @property
    def planned(self) -> list[PlannedRun]:
        """The runs this page shows."""
        return planned_runs(self.task, self.scales, self.seeds, self.variants, self.profile)

    def status(self) -> dict[str, str]:
        """Run key -> status ('ran', 'reused', 'not run: ...')."""
        return {r["run"]: r["status"] for r in self.records}

    def frame(self) -> pd.DataFrame:
        """The records as a DataFrame."""
        return pd.DataFrame(self.records, columns=["run", "role", "label", "scale", "seed",
                                                   "status", "seconds"])

    def _repr_html_(self) -> str:
        """The status of every run, 'not run' ones highlighted."""
        rows = []
        for r in self.records:
            not_run = r["status"].startswith("not run")
            status = f'<span class="ablation-not-run">{esc(r["status"])}</span>' if not_run \
                else esc(r["status"])
            secs = "" if r["seconds"] is None else f"{r['seconds']:.1f}"
            rows.append(f'<tr class="{"not-run" if not_run else "ok"}"><td><code>'
                        f'{esc(r["run"])}</code></td><td>{esc(r["role"])}</td>'
                        f"<td>{esc(r['label'])}</td><td>{status}</td><td>{secs}</td></tr>")
        return (f"{profile_banner(self.profile).html}"
                '<table class="ablation-runs"><thead><tr><th>run</th><th>role</th>'
                "<th>model</th><th>status</th><th>seconds</th></tr></thead>"
                f"<tbody>{''.join(rows)}</tbody></table>")

    def __repr__(self) -> str:
        return self.frame().to_string(index=False)


def run_one(run: PlannedRun, profile: str, results_dir=None, data_dir=None,
            retrain: bool = False, progress: bool = False, **overrides) -> dict:
    """Run (or reuse) one planned run; a user-facing failure becomes a 'not run' record."""
    import time

    from ablation.runs import run_variant

    rec = dict(run=run.key, role=run.role, label=run.label, scale=run.scale, seed=run.seed,
               status="", seconds=None, task=run.task, variant=run.variant)
    if run.skip_reason:
        rec["status"] = f"not run: {run.skip_reason}"
        return rec
    loss = get_task(run.task).variant(run.variant).loss
    t0 = time.perf_counter()
    quiet = contextlib.nullcontext() if progress else quiet_logger("pooch")
    try:
        with warnings.catch_warnings(), quiet:
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            warnings.filterwarnings("ignore", message="IProgress not found")
            m = run_variant(run.task, run.variant, run.scale, profile, run.seed,
                            results_dir=results_dir, data_dir=data_dir, retrain=retrain,
                            progress=progress, **overrides)
    except AblationError as exc:
        rec["status"] = f"not run: {one_line_reason(exc, loss)}"
        return rec
    rec["status"] = "reused" if m.get("reused") else "ran"
    rec["seconds"] = time.perf_counter() - t0
    return rec


def run_task(task: int, profile: str = "cpu", scales: Sequence[int] | None = None,
             seeds: Sequence[int] = (0,), variants: Sequence[str] = (), data_dir=None,
             results_dir=None, device: str = "auto", iterations: int | None = None,
             retrain: bool = False, progress: bool | None = None) -> TaskRuns:
    """Run (or reuse) every run the task page needs and return what happened.

    Parameters are the notebook's: ``scales=None`` means the task's own scales, empty
    ``variants`` means all, ``iterations=None`` the profile's default, ``retrain`` retrains the
    task's own variants (never the shared baselines).
    """
    from ablation.runs import check_run_inputs

    t = get_task(task)
    check_choice("profile", profile, PROFILE_NAMES)
    check_run_inputs(list(seeds), results_dir, data_dir, iterations, device)  # else every
    # run would show "not run: ..." on a page that exits 0
    out = TaskRuns(t.number, profile, list(scales or t.scales), [int(s) for s in seeds] or [0],
                   list(variants or []), _str_or_none(results_dir), _str_or_none(data_dir))
    progress = interactive() if progress is None else progress
    for run in out.planned:
        out.records.append(run_one(run, profile, results_dir, data_dir,
                                   retrain=retrain and run.role == "variant",
                                   progress=progress, device=device, iterations=iterations))
    return out


def run_references(profile: str = "cpu", scales: Sequence[int] = REFERENCE.scales,
                   seeds: Sequence[int] = (0,), **kwargs) -> TaskRuns:
    """Bicubic and EDSR-baseline (pseudo-task 0) at ``scales``: the results page's references."""
    return run_task(0, profile, scales, seeds, **kwargs)


def _str_or_none(value) -> str | None:
    """``str(value)``, keeping None."""
    return None if value is None else str(value)
