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

from ablation.config import PROFILE_NAMES, SCALES
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
    to_train: list[str] = field(default_factory=list)  # run keys without a matching finished run
    estimate_s: float | None = None  # their expected wall time (None: nothing to go by)

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
        return (f"{profile_banner(self.profile).html}<p class=\"ablation-plan\">"
                f"{esc(self.plan_line())}</p>"
                '<table class="ablation-runs"><thead><tr><th>run</th><th>role</th>'
                "<th>model</th><th>status</th><th>seconds</th></tr></thead>"
                f"<tbody>{''.join(rows)}</tbody></table>")

    def __repr__(self) -> str:
        return self.plan_line() + "\n" + self.frame().to_string(index=False)

    def plan_line(self) -> str:
        """'Task 4 at x3 (profile cpu, seed 0): 2 runs to train (about 8 min, ...), 3 found.'"""
        scales = ", ".join(f"x{s}" for s in self.scales)
        seeds = ", ".join(str(s) for s in self.seeds)
        name = f"Task {self.task}" if self.task else "Reference runs"
        what = f"{name} at {scales} (profile {self.profile}, seeds {seeds})"
        found = sum(not r.skip_reason for r in self.planned) - len(self.to_train)
        if not self.to_train:
            return f"{what}: all {found} runs finished, nothing to train."
        return (f"{what}: {len(self.to_train)} run(s) to train "
                f"({estimate_text(self.estimate_s)}), {found} finished.")


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
    scales = [int(s) for s in (scales or t.scales)]
    for s in scales:  # an unsupported scale fails in one line before anything is written
        check_choice("scale", s, SCALES)
    check_run_inputs(list(seeds), results_dir, data_dir, iterations, device)  # else every
    # run would show "not run: ..." on a page that exits 0
    out = TaskRuns(t.number, profile, scales, [int(s) for s in seeds] or [0],
                   list(variants or []), _str_or_none(results_dir), _str_or_none(data_dir))
    progress = interactive() if progress is None else progress
    overrides = dict(device=device, iterations=iterations)
    out.to_train = [r.key for r in out.planned
                    if needs_training(r, profile, results_dir, data_dir,
                                      retrain and r.role == "variant", **overrides)]
    out.estimate_s = estimate_seconds([r for r in out.planned if r.key in out.to_train],
                                      profile, results_dir)
    if out.to_train:
        print(out.plan_line(), flush=True)  # before minutes of training: what and how long
    bar = _runs_bar(len(out.to_train), progress and bool(out.to_train))
    for run in out.planned:
        out.records.append(run_one(run, profile, results_dir, data_dir,
                                   retrain=retrain and run.role == "variant",
                                   progress=progress, **overrides))
        if run.key in out.to_train:
            bar.update(1)
    bar.close()
    return out


def needs_training(run: PlannedRun, profile: str, results_dir=None, data_dir=None,
                   retrain: bool = False, **overrides) -> bool:
    """True when :func:`run_one` will train ``run``: no finished run with its config hash
    (computed from the data fingerprint the finished run recorded, so no data is listed)."""
    from ablation import results as results_mod
    from ablation.resolve import resolve_run

    if run.skip_reason:
        return False
    done = results_mod.read_metrics(run.run_dir(profile, results_dir))
    if retrain or done is None:
        return True
    try:
        v = get_task(run.task).variant(run.variant)
        resolved = resolve_run(v, run.scale, profile, data_dir=data_dir, seed=run.seed,
                               fingerprint=done.get("data_fingerprint"),
                               **{k: x for k, x in overrides.items() if x is not None})
    except AblationError:
        return True  # run_one reports why
    return done.get("config_hash") != resolved.config_hash


def estimate_seconds(runs: Sequence[PlannedRun], profile: str, results_dir=None
                     ) -> float | None:
    """Expected wall time of ``runs``: per run, the median training + evaluation time of the
    finished runs of the same variant under ``profile`` (any scale), else of every finished
    run of the profile; None when the profile has no finished run to go by."""
    import statistics

    from ablation import results as results_mod

    if not runs:
        return 0.0
    times: dict[tuple[int, str], list[float]] = {}
    for m in results_mod.iter_metrics(profile, results_dir):
        secs = (m.get("train_seconds") or 0.0) + (m.get("eval_seconds") or 0.0)
        times.setdefault((m.get("task"), m.get("variant")), []).append(secs)
    every = [x for v in times.values() for x in v]
    if not every:
        return None
    return sum(statistics.median(times.get((r.task, r.variant)) or every) for r in runs)


def estimate_text(seconds: float | None) -> str:
    """'about 8 min, from the finished runs here' / 'time unknown: no finished run yet'."""
    if seconds is None:
        return "time unknown: no finished run of this profile to go by"
    about = f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"
    return f"about {about}, from the wall time of the finished runs of this profile here"


def _runs_bar(total: int, show: bool):
    """A progress bar over the runs to train (tqdm's notebook widget in JupyterLab)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="runs to train", unit="run", disable=not show)


def run_references(profile: str = "cpu", scales: Sequence[int] = REFERENCE.scales,
                   seeds: Sequence[int] = (0,), **kwargs) -> TaskRuns:
    """Bicubic and EDSR-baseline (pseudo-task 0) at ``scales``: the results page's references."""
    return run_task(0, profile, scales, seeds, **kwargs)


def _str_or_none(value) -> str | None:
    """``str(value)``, keeping None."""
    return None if value is None else str(value)
