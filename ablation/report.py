"""What the book's notebooks show: run a task, tabulate, plot, compare, conclude.

Each notebook of the book makes one call per section, and every call lands here:

- :func:`run_task` runs (or reuses) a task's variants, its ``compare_to`` baselines and the
  bicubic reference via :func:`ablation.runs.run_variant`, turning a missing resource (no VGG19
  weights, a GPU-only variant under the cpu profile) into a "not run: <reason>" row;
- :func:`results_table`, :func:`training_curves`, :func:`visual_comparison` and
  :func:`conclusion` read ``results/<profile>`` back and show it;
- :func:`study_table` and :func:`study_conclusion` do the same for the whole study, beside the
  original study's README table and published reference numbers (literature data, typed in
  below from the references in ``shared/reference``).

The functions underneath (``load_runs``, ``aggregate_seeds``, ``task_table``,
``conclusion_text``, ...) are pure: DataFrames in, DataFrames or text out, so the tests run them
on a synthetic results folder. Every page states the profile its numbers come from; a ``smoke``
profile is flagged with the admonition :data:`SMOKE_WARNING`.
"""

from __future__ import annotations

import base64
import contextlib
import html
import io
import math
import os
import textwrap
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ablation import paths
from ablation import results as results_mod
from ablation.config import BENCHMARKS, PROFILE_NAMES, PROFILES, TrainConfig, make_config
from ablation.errors import AblationError, check_choice, quiet_logger
from ablation.fs import atomic_write_bytes
from ablation.tasks import REFERENCE, TASKS, Task, get_task

if TYPE_CHECKING:
    import torch
    from matplotlib.figure import Figure

SMOKE_WARNING = "smoke run: numbers are not findings"
NOISE_RUN = (4, "baseline")  # the run whose seed spread defines the noise band
NOISE_SIGMAS = 2.0
NOISE_SEEDS = (0, 1, 2)  # the noise run always gets these seeds at NOISE_SCALE
NOISE_SCALE = 2
FRAME_720P = (1280, 720)
BICUBIC = "bicubic"
RUN_COLUMNS = ["task", "variant", "label", "scale", "seed", "set", "psnr", "ssim", "params",
               "flops", "gflops_720p", "train_seconds", "iterations", "loss", "device", "run_dir"]
# Images of the visual comparison, in order of preference (those in the profile's eval sets).
DEFAULT_IMAGES = (("Set5", "butterfly"), ("Set14", "zebra"), ("Urban100", "img_004"),
                  ("Set5", "bird"), ("B100", "img_001"), ("Set5", "woman"))
TABLE_STYLE = "overflow-x:auto; font-size:0.85em"
TABLE_CSS = ("<style>table.ablation-results td, table.ablation-study td, "
             "table.ablation-published td, table.ablation-runs td {padding: 2px 8px; "
             "vertical-align: top} .ablation-not-run {color: #b3261e; font-weight: 600}"
             "</style>")
CROP_HR = 96  # side of the zoomed crop in HR pixels (divisible by 2, 3 and 4)

# --------------------------------------------------------------------------- literature data

# The original study's README table (authierj/EDSR-PyTorch), PSNR in dB on Y; see
# shared/reference/original-study.md. Keys: (task, our variant name, scale).
ORIGINAL_README: dict[tuple[int, str, int], dict[str, float]] = {
    (1, "3layers", 2): dict(Set5=36.504, Set14=32.346, Urban100=29.275, B100=31.212),
    (1, "3layers", 3): dict(Set5=32.366, Set14=29.053, Urban100=25.858, B100=28.186),
    (1, "3layers", 4): dict(Set5=30.041, Set14=27.263, Urban100=24.126, B100=26.682),
    (2, "3layers_grc", 2): dict(Set5=36.722, Set14=32.475, Urban100=29.536, B100=31.318),
    (3, "8layers_grc", 2): dict(Set5=37.432, Set14=33.049, Urban100=30.752, B100=31.809),
    (4, "baseline", 2): dict(Set5=37.335, Set14=32.933, Urban100=30.383, B100=31.697),
    (5, "batchnorm", 2): dict(Set5=37.636, Set14=33.175, Urban100=31.119, B100=31.929),
    (6, "resblocks", 2): dict(Set5=37.629, Set14=33.208, Urban100=31.083, B100=31.938),
    (7, "leakyrelu", 2): dict(Set5=28.151, Set14=26.931, Urban100=25.078, B100=31.945),
    (7, "prelu", 2): dict(Set5=27.652, Set14=26.728, Urban100=24.922, B100=31.944),
    (8, "depth16", 2): dict(Set5=37.686, Set14=33.256, Urban100=31.348, B100=32.012),
    (8, "depth32", 2): dict(Set5=36.918, Set14=32.615, Urban100=29.682, B100=31.478),
    (8, "width96", 2): dict(Set5=37.712, Set14=33.273, Urban100=31.333, B100=31.997),
    (8, "width128", 2): dict(Set5=37.760, Set14=33.331, Urban100=31.478, B100=32.023),
    (9, "l2", 2): dict(Set5=37.533, Set14=33.160, Urban100=31.054, B100=31.902),
    (10, "rcan", 2): dict(Set5=30.119, Set14=28.830, Urban100=26.311, B100=32.215),
    (11, "perceptual", 2): dict(Set5=34.653, Set14=31.025, Urban100=28.457, B100=29.958),
}
# Rows of that table that can't be taken at face value (original-study.md, "Why ...").
ORIGINAL_CAVEATS: dict[int, str] = {
    7: "below bicubic on 3 sets: likely not the trained network",
    10: "below bicubic on 3 sets: likely not the trained network",
    11: "its test log shows BN layers the model never had",
}


@dataclass(frozen=True)
class Published:
    """One published reference row: PSNR/SSIM per set at one scale."""

    method: str
    scale: int
    params: int | None
    source: str
    sets: dict[str, tuple[float, float]]


def _pub(method: str, scale: int, params: int | None, source: str,
         *values: tuple[float, float]) -> Published:
    """Build a :class:`Published` row from values in BENCHMARKS order."""
    return Published(method, scale, params, source, dict(zip(BENCHMARKS, values, strict=True)))


# shared/reference/published-results.md section 1, (PSNR, SSIM) in Set5, Set14, B100, Urban100
# order. EDSR-baseline: torchSR's re-evaluation of the official weights (the one source that
# covers x2, x3 and x4); its parameter counts per scale are the EDSR README's.
PUBLISHED: tuple[Published, ...] = (
    _pub("Bicubic", 2, None, "EDSR paper, Table 3",
         (33.66, 0.9299), (30.24, 0.8688), (29.56, 0.8431), (26.88, 0.8403)),
    _pub("SRCNN", 2, 57_000, "EDSR paper, Table 3",
         (36.66, 0.9542), (32.42, 0.9063), (31.36, 0.8879), (29.50, 0.8946)),
    _pub("VDSR", 2, 665_000, "EDSR paper, Table 3",
         (37.53, 0.9587), (33.03, 0.9124), (31.90, 0.8960), (30.76, 0.9140)),
    _pub("EDSR-baseline", 2, 1_370_000, "torchSR re-evaluation",
         (37.98, 0.9604), (33.57, 0.9174), (32.15, 0.8993), (31.98, 0.9271)),
    _pub("Bicubic", 3, None, "EDSR paper, Table 3",
         (30.39, 0.8682), (27.55, 0.7742), (27.21, 0.7385), (24.46, 0.7349)),
    _pub("SRCNN", 3, 57_000, "EDSR paper, Table 3",
         (32.75, 0.9090), (29.28, 0.8209), (28.41, 0.7863), (26.24, 0.7989)),
    _pub("VDSR", 3, 665_000, "EDSR paper, Table 3",
         (33.66, 0.9213), (29.77, 0.8314), (28.82, 0.7976), (27.14, 0.8279)),
    _pub("EDSR-baseline", 3, 1_550_000, "torchSR re-evaluation",
         (34.37, 0.9270), (30.28, 0.8414), (29.08, 0.8051), (28.15, 0.852)),
    _pub("Bicubic", 4, None, "EDSR paper, Table 3",
         (28.42, 0.8104), (26.00, 0.7027), (25.96, 0.6675), (23.14, 0.6577)),
    _pub("SRCNN", 4, 57_000, "EDSR paper, Table 3",
         (30.48, 0.8628), (27.49, 0.7503), (26.90, 0.7101), (24.52, 0.7221)),
    _pub("VDSR", 4, 665_000, "EDSR paper, Table 3",
         (31.35, 0.8838), (28.01, 0.7674), (27.29, 0.7251), (25.18, 0.7524)),
    _pub("EDSR-baseline", 4, 1_520_000, "torchSR re-evaluation",
         (32.09, 0.8936), (28.58, 0.7804), (27.56, 0.7354), (26.03, 0.7842)),
)


# --------------------------------------------------------------------------- display helpers


@dataclass
class Html:
    """An HTML fragment that Jupyter (and the book) renders; ``str()`` gives the HTML."""

    html: str
    text: str = ""

    def _repr_html_(self) -> str:
        return self.html

    def __repr__(self) -> str:
        return self.text or self.html

    def __str__(self) -> str:
        return self.html


def esc(value) -> str:
    """HTML-escape any value."""
    return html.escape(str(value))


def is_smoke(profile: str) -> bool:
    """True for the smoke profile (its numbers are never findings)."""
    return profile == "smoke"


def profile_summary(profile: str) -> str:
    """One line: what the profile trains and evaluates (read from the config, not typed)."""
    c = make_config(profile)
    return (f"profile <code>{esc(profile)}</code>: {c.iterations:,} iterations of batch "
            f"{c.batch_size} (LR patch {c.lr_patch} px), training set {esc(c.train_set)}, "
            f"evaluated on {esc(', '.join(c.eval_sets))}")


def profile_banner(profile: str) -> Html:
    """Which profile produced this page's numbers; a smoke profile gets a warning box."""
    check_choice("profile", profile, PROFILE_NAMES)
    line = f"<p>Numbers on this page: {profile_summary(profile)}.</p>"
    if is_smoke(profile):
        body = (f'<div class="admonition warning ablation-smoke">'
                f'<p class="admonition-title">{SMOKE_WARNING}</p>{line}'
                "<p>The smoke profile trains for seconds to prove that the pipeline runs; its "
                "PSNR values say nothing about the architectures.</p></div>")
    else:
        body = f'<div class="admonition note ablation-profile">{line}</div>'
    text = (f"{SMOKE_WARNING}\n" if is_smoke(profile) else "") + f"profile {profile}"
    return Html(TABLE_CSS + body, text)


def smoke_note(profile: str) -> str:
    """The inline smoke marker for figure titles and conclusions ('' for real profiles)."""
    return f"{SMOKE_WARNING}. " if is_smoke(profile) else ""


# --------------------------------------------------------------------------- planning runs


@dataclass(frozen=True)
class PlannedRun:
    """One run a page needs: a task variant, a compared baseline, or the bicubic reference."""

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

    def run_dir(self, profile: str, results_dir=None) -> Path:
        """The run's folder."""
        return results_mod.run_dir(profile, self.task, self.variant, self.scale, self.seed,
                                   results_dir)


def skip_reason(task: int, variant: str, profile: str) -> str:
    """Why a variant isn't run under ``profile`` ('' when it is)."""
    if variant == BICUBIC:
        return ""
    v = get_task(task).variant(variant)
    if not v.cpu and profile != "paper":
        return "needs a GPU (paper profile)"
    return ""


def planned_runs(task: int, scales: Iterable[int], seeds: Iterable[int] = (0,),
                 variants: Sequence[str] = (), profile: str = "cpu",
                 reference: bool = True) -> list[PlannedRun]:
    """The runs a task page shows, in display order: bicubic, baselines, then the variants.

    ``variants`` (names) limits the task's own variants (empty = all). Bicubic is
    deterministic, so it runs once per scale (seed 0).
    """
    t = get_task(task)
    scales, seeds = [int(s) for s in scales], [int(s) for s in seeds] or [0]
    own = [t.variant(n) for n in variants] if variants else list(t.variants)
    out: list[PlannedRun] = []
    for scale in scales:
        if reference:
            out.append(PlannedRun(0, BICUBIC, "bicubic (MATLAB)", scale, 0, "reference"))
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
    """The seeds to run: ``seeds``, plus NOISE_SEEDS for the noise run (task-4 baseline at x2),
    so every build has the seed-noise band that the comparisons are read against."""
    if (task, variant) == NOISE_RUN and scale == NOISE_SCALE:
        return sorted(set(seeds) | set(NOISE_SEEDS))
    return list(seeds)


def one_line_reason(exc: BaseException, loss: str | None = None) -> str:
    """A short 'why not run' for a table cell."""
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
    if "VGG19" in msg or (loss == "perceptual" and "weights" in msg.lower()):
        return "needs VGG19 weights (vgg19-dcbb9e9d.pth; set ABLATION_VGG19)"
    return msg if len(msg) <= 200 else msg[:197] + "..."


def interactive() -> bool:
    """False under the sweep (papermill), where progress bars would flood the saved notebook."""
    return os.environ.get("ABLATION_NONINTERACTIVE", "") not in ("1", "true", "yes")


# --------------------------------------------------------------------------- running


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
    loss = None if run.variant == BICUBIC else get_task(run.task).variant(run.variant).loss
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
    t = get_task(task)
    check_choice("profile", profile, PROFILE_NAMES)
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


# --------------------------------------------------------------------------- loading


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

    if variant == BICUBIC:
        return 0, 0.0
    spec = get_task(task).variant(variant).spec
    return count_params(spec, scale), flops_per_output_pixel(spec, scale)


def task_table(planned: Sequence[PlannedRun], runs: pd.DataFrame, profile: str,
               status: dict[str, str] | None = None) -> pd.DataFrame:
    """The task's results, wide: one row per (model, scale), PSNR/SSIM per set, costs.

    ``runs`` is :func:`load_runs` output; only the planned seeds count. Rows without a finished
    run keep their place with a 'not run: ...' status.
    """
    status = status or {}
    wanted = {(p.task, p.variant, p.scale, p.seed) for p in planned}
    if not runs.empty:
        mask = [(r.task, r.variant, r.scale, r.seed) in wanted for r in runs.itertuples()]
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
    row["GFLOPs@1280x720"] = row["FLOPs/pixel"] * FRAME_720P[0] * FRAME_720P[1] / 1e9
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


# --------------------------------------------------------------------------- rendering tables


def fmt_count(n: float) -> str:
    """372803 -> '373 K', 1.37e6 -> '1.37 M'."""
    if n is None or (isinstance(n, float) and math.isnan(n)) or n == 0:
        return "–"
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= div:
            v = n / div
            return f"{v:.3g} {unit}" if v < 100 else f"{v:.0f} {unit}"
    return f"{n:.0f}"


def fmt_psnr(mean: float, std: float = math.nan) -> str:
    """'32.10' or '32.10 ± 0.03' ('–' when missing)."""
    if mean is None or math.isnan(mean):
        return "–"
    return f"{mean:.2f}" if math.isnan(std) else f"{mean:.2f} ± {std:.2f}"


def fmt_ssim(v: float) -> str:
    """'0.9012' ('–' when missing)."""
    return "–" if v is None or math.isnan(v) else f"{v:.4f}"


def render_task_table(table: pd.DataFrame, profile: str) -> Html:
    """HTML of :func:`task_table`: the best PSNR per set and scale in bold, not-run rows marked.

    Rows carry ``class="ablation-row ablation-<role>"`` so tests can count them.
    """
    sets = table_sets(table)
    head = "".join(f"<th>{esc(s)}<br/>PSNR / SSIM</th>" for s in sets)
    best = _best_per_scale(table, sets)
    body = []
    for _, r in table.iterrows():
        cells = []
        for s in sets:
            p = fmt_psnr(r[f"{s} PSNR"], r[f"{s} PSNR std"])
            if best.get((r.scale, s)) == r.variant and p != "–":
                p = f"<b>{p}</b>"
            cells.append(f"<td>{p} / {fmt_ssim(r[f'{s} SSIM'])}</td>")
        not_run = str(r.status).startswith("not run")
        status = f'<span class="ablation-not-run">{esc(r.status)}</span>' if not_run \
            else esc(r.status)
        gfl = "–" if not r["FLOPs/pixel"] else f"{r['GFLOPs@1280x720']:.1f}"
        body.append(
            f'<tr class="ablation-row ablation-{r.role}" data-variant="{esc(r.variant)}">'
            f"<td>{esc(r.label)}</td><td>{esc(r.role)}</td><td>x{r.scale}</td>"
            f"<td>{r.seeds}</td>{''.join(cells)}<td>{fmt_count(r.params)}</td>"
            f"<td>{fmt_count(r['FLOPs/pixel'])}</td><td>{gfl}</td><td>{status}</td></tr>")
    table_html = (
        f'<div style="{TABLE_STYLE}"><table class="ablation-results"><thead><tr><th>model</th>'
        f"<th>role</th><th>scale</th><th>seeds</th>{head}<th>params</th><th>FLOPs per "
        "pixel</th><th>GFLOPs per 1280x720</th><th>status</th></tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table></div>")
    note = ("<p>PSNR in dB and SSIM on Y (BT.601), <code>scale</code> pixels shaved, output "
            "rounded to 8 bits; mean ± std over seeds when there are several. Bold: best on the "
            "set at that scale.</p>")
    return Html(profile_banner(profile).html + table_html + note, table.to_string())


def _best_per_scale(table: pd.DataFrame, sets: list[str]) -> dict[tuple[int, str], str]:
    """(scale, set) -> variant with the highest PSNR."""
    best: dict[tuple[int, str], str] = {}
    for scale, sub in table.groupby("scale"):
        for s in sets:
            col = sub[f"{s} PSNR"]
            if col.notna().any():
                best[(scale, s)] = sub.loc[col.idxmax(), "variant"]
    return best


def results_table(runs: TaskRuns) -> Html:
    """The task's results table for a :class:`TaskRuns` (one call in the notebook)."""
    table = task_table(runs.planned, load_runs(runs.profile, runs.results_dir), runs.profile,
                       runs.status())
    return render_task_table(table, runs.profile)


# --------------------------------------------------------------------------- figures


@dataclass
class FigureFiles:
    """Saved figure(s): PNG shown in the notebook, SVG beside it for print."""

    pngs: list[Path]
    svgs: list[Path]
    caption: str = ""

    def _repr_html_(self) -> str:
        imgs = "".join(
            f'<img src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}" '
            f'alt="{esc(p.stem)}" style="max-width:100%"/>' for p in self.pngs)
        cap = f"<p><em>{esc(self.caption)}</em></p>" if self.caption else ""
        return f'<div class="ablation-figure">{imgs}{cap}</div>'

    def __repr__(self) -> str:
        return "\n".join(str(p) for p in self.pngs)


def figures_dir(profile: str, results_dir=None) -> Path:
    """``results/<profile>/figures``."""
    return paths.results_dir(results_dir) / profile / "figures"


def save_figure(fig: Figure, name: str, profile: str, results_dir=None) -> tuple[Path, Path]:
    """Write ``fig`` as PNG and SVG under ``results/<profile>/figures/`` atomically."""
    folder = figures_dir(profile, results_dir)
    out = []
    for fmt in ("png", "svg"):
        buf = io.BytesIO()
        kwargs = {"metadata": {"Date": None}} if fmt == "svg" else {"dpi": 110}
        fig.savefig(buf, format=fmt, bbox_inches="tight", **kwargs)
        path = folder / f"{name}.{fmt}"
        atomic_write_bytes(path, buf.getvalue())
        out.append(path)
    return out[0], out[1]


def new_figure(width: float, height: float) -> Figure:
    """A matplotlib Figure that never touches pyplot's global state (no double display)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def load_histories(planned: Sequence[PlannedRun], profile: str, results_dir=None) -> pd.DataFrame:
    """history.csv of every planned trained run, with label, scale and seed columns."""
    frames = []
    for p in planned:
        if p.variant == BICUBIC:
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


def body_gain(model: Any, size: int = 48, seed: int = 0) -> float | None:
    """``||body(f)|| / ||f||`` for ``f = head(x)`` on a fixed pseudo-random LR input ``x``
    ``(1, C, size, size)``: how much the body adds to the feature-level global residual.

    A value near 0 means the body's output vanished and the network is left with its linear
    head -> upsampler -> tail path. None for nets without a feature-level residual (LR input
    with ``global_residual``), where the body is the whole signal path.
    """
    spec = getattr(model, "spec", None)
    if spec is None or spec.input != "lr" or not spec.global_residual:
        return None
    import torch

    gen = torch.Generator().manual_seed(seed)
    x = torch.rand((1, spec.n_colors, size, size), generator=gen)
    x = x - model.rgb_mean if spec.mean_shift else x  # as SRNet.forward, after / 255
    with torch.no_grad():
        feats = model.head(x)
        return float(model.body(feats).norm() / feats.norm())


def body_gains(planned: Sequence[PlannedRun], profile: str, results_dir=None
               ) -> dict[tuple[int, str, int], float]:
    """(task, variant, scale) -> :func:`body_gain` of each finished run's model (seed mean)."""
    out: dict[tuple[int, str, int], list[float]] = {}
    for p in planned:
        model = None if p.variant == BICUBIC else _load_panel_model(p, profile, results_dir)
        gain = body_gain(model) if model is not None else None
        if gain is not None:
            out.setdefault((p.task, p.variant, p.scale), []).append(gain)
    return {k: float(np.mean(v)) for k, v in out.items()}


def curves_figure(hist: pd.DataFrame, title: str) -> Figure:
    """Training loss (log scale) and validation PSNR against iteration, one colour per model."""
    fig = new_figure(10, 3.6)
    ax_loss, ax_val = fig.subplots(1, 2)
    colours = {}
    for (label, seed), h in hist.groupby(["label", "seed"], sort=False):
        c = colours.setdefault(label, f"C{len(colours) % 10}")
        first = seed == hist[hist.label == label].seed.min()
        ax_loss.plot(h.iteration, h.loss, color=c, lw=1.2, alpha=0.9 if first else 0.4,
                     label=label if first else None)
        v = h.dropna(subset=["val_psnr"])
        ax_val.plot(v.iteration, v.val_psnr, "o-", color=c, ms=3, lw=1.2,
                    alpha=0.9 if first else 0.4)
    ax_loss.set(xlabel="iteration", ylabel="training loss", yscale="log")
    ax_val.set(xlabel="iteration", ylabel="validation PSNR (dB)")
    if colours:
        ax_loss.legend(fontsize=8)
    else:
        for ax in (ax_loss, ax_val):
            ax.text(0.5, 0.5, "no finished runs", ha="center", va="center",
                    transform=ax.transAxes)
    fig.suptitle(title, fontsize=10)
    return fig


def training_curves(runs: TaskRuns) -> FigureFiles:
    """One curves figure per scale of the page, saved and shown."""
    pngs, svgs = [], []
    for scale in runs.scales:
        planned = [p for p in runs.planned if p.scale == scale]
        hist = load_histories(planned, runs.profile, runs.results_dir)
        title = (f"{smoke_note(runs.profile)}Task {runs.task}, x{scale}: training "
                 f"(profile {runs.profile}; validation = held-out training images)")
        fig = curves_figure(hist, title)
        png, svg = save_figure(fig, f"task{runs.task:02d}-x{scale}-curves", runs.profile,
                               runs.results_dir)
        pngs.append(png)
        svgs.append(svg)
    return FigureFiles(pngs, svgs, "Loss per logged step; one line per model and seed.")


# --------------------------------------------------------------------------- visual comparison


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

    if p.variant == BICUBIC:
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


def comparison_figure(rows: list, title: str) -> Figure:
    """Grid of zoomed crops: one row per image, one column per model, PSNR in each title."""
    n_rows, n_cols = max(1, len(rows)), max(1, max((len(r) for r in rows), default=1))
    fig = new_figure(1.75 * n_cols, 2.0 * n_rows + 0.4)
    axes = np.atleast_2d(fig.subplots(n_rows, n_cols, squeeze=False))
    for ax in axes.flat:
        ax.set_axis_off()
    for i, row in enumerate(rows):
        for j, (label, img, p) in enumerate(row):
            ax = axes[i, j]
            ax.imshow(img if img.shape[2] == 3 else img[:, :, 0], cmap="gray",
                      interpolation="nearest", vmin=0, vmax=255)
            name = "\n".join(textwrap.wrap(label, 22)[:2])
            ax.set_title(name if math.isinf(p) else f"{name}\n{p:.2f} dB", fontsize=7)
    if not rows:
        axes[0, 0].text(0.5, 0.5, "no benchmark images available", ha="center", va="center")
    fig.suptitle(title, fontsize=9)
    return fig


def visual_comparison(runs: TaskRuns, images: Sequence[Path] | None = None) -> FigureFiles:
    """Zoomed crops of a few benchmark images: HR, bicubic and every model, PSNR per panel."""
    images = list(images) if images is not None else pick_images(runs.profile, runs.data_dir)
    pngs, svgs = [], []
    for scale in runs.scales:
        rows = comparison_panels(runs.planned, scale, runs.profile, runs.results_dir,
                                 runs.data_dir, images)
        title = (f"{smoke_note(runs.profile)}Task {runs.task}, x{scale}, profile "
                 f"{runs.profile}: the {CROP_HR}-pixel crop where bicubic errs most "
                 "(PSNR of the crop, Y channel)")
        fig = comparison_figure(rows, title)
        png, svg = save_figure(fig, f"task{runs.task:02d}-x{scale}-visual", runs.profile,
                               runs.results_dir)
        pngs.append(png)
        svgs.append(svg)
    return FigureFiles(pngs, svgs, "Nearest-neighbour zoom; seed 0 of each model.")


# --------------------------------------------------------------------------- conclusions


@dataclass(frozen=True)
class NoiseBand:
    """Half-width of the seed-noise band (2 x std over seeds of the task-4 baseline)."""

    width: float | None
    n_seeds: int

    def describe(self) -> str:
        """Short text for a conclusion line."""
        if self.width is None:
            return f"noise band unknown: {self.n_seeds} seed(s) of the task-4 baseline"
        return f"noise band ±{self.width:.3f} dB from {self.n_seeds} seeds"


NOISE_EXPLAINED = (
    "A difference counts as a finding only when it is larger than the seed-noise band: twice "
    "the standard deviation over seeds of the task-4 baseline at the same scale and set. The "
    "band is unknown while fewer than two seeds of that baseline exist (run with "
    "<code>seeds = [0, 1, 2]</code>).")


def fmt_delta(d: float) -> str:
    """Signed dB difference without a negative zero."""
    text = f"{d:+.2f}"
    return "±0.00" if text in ("+0.00", "-0.00") else text


def noise_bands(runs: pd.DataFrame) -> dict[tuple[int, str], NoiseBand]:
    """(scale, set) -> the noise band from the task-4 baseline's seeds in ``runs``."""
    t, v = NOISE_RUN
    base = runs[(runs.task == t) & (runs.variant == v)] if not runs.empty else runs
    out = {}
    for (scale, set_name), sub in base.groupby(["scale", "set"]):
        n = int(sub.seed.nunique())
        width = NOISE_SIGMAS * float(sub.psnr.std()) if n >= 2 else None
        out[(int(scale), set_name)] = NoiseBand(width, n)
    return out


def primary_comparison(task: Task) -> tuple[int, str]:
    """The run a task's variants are measured against: its first compare_to, else bicubic."""
    return task.compare_to[0] if task.compare_to else (0, BICUBIC)


def conclusion_text(task: int, table: pd.DataFrame, profile: str,
                    bands: dict[tuple[int, str], NoiseBand],
                    losses: dict[tuple[int, str, int], float] | None = None,
                    gains: dict[tuple[int, str, int], float] | None = None) -> list[str]:
    """Sentences (HTML-safe text with <b>/<i>) stating, per scale and set, which model wins and
    by how much each variant differs from the comparison run, against the noise band."""
    t = get_task(task)
    ref_task, ref_variant = primary_comparison(t)
    lines = []
    if is_smoke(profile):
        lines.append(f"<b>{SMOKE_WARNING}</b>: the smoke profile only checks that the "
                     "pipeline runs.")
    sets = table_sets(table)
    for scale, sub in table.groupby("scale", sort=False):
        ref = sub[(sub.task == ref_task) & (sub.variant == ref_variant)]
        own = sub[sub.role == "variant"]
        if not ref.empty:
            lines += [answer_sentence(v, ref.iloc[0], int(scale), sets, bands, losses, gains)
                      for _, v in own.iterrows()]
        for s in sets:
            col = f"{s} PSNR"
            ok = sub[sub[col].notna()]
            if ok.empty:
                lines.append(f"x{scale}, {esc(s)}: no finished runs yet.")
                continue
            win = ok.loc[ok[col].idxmax()]
            band = bands.get((int(scale), s), NoiseBand(None, 0))
            head = (f"<b>x{scale}, {esc(s)}</b>: best is <i>{esc(win.label)}</i> at "
                    f"{win[col]:.2f} dB ({band.describe()}).")
            if ref.empty or math.isnan(ref[col].iloc[0]):
                deltas = ["The comparison run has no result yet."]
            else:
                r = float(ref[col].iloc[0])
                deltas = [_delta_sentence(v, col, r, ref.label.iloc[0], band)
                          for _, v in own.iterrows()]
            items = "".join(f"<li>{d}</li>" for d in deltas)
            lines.append(head + (f"<ul>{items}</ul>" if items else ""))
    not_run = table[table.status.str.startswith("not run")]
    for _, r in not_run.iterrows():
        lines.append(f"<i>{esc(r.label)}</i> (x{r.scale}) was {esc(r.status)}.")
    return lines


def original_psnr(task: int, variant: str, scale: int) -> dict[str, float] | None:
    """The original study's PSNR per set for a run (its README table; bicubic: the published
    bicubic row it compared against), or None."""
    if variant == BICUBIC:
        pub = [p for p in PUBLISHED if p.method == "Bicubic" and p.scale == scale]
        return {s: v[0] for s, v in pub[0].sets.items()} if pub else None
    return ORIGINAL_README.get((task, variant, scale))


def answer_sentence(v: pd.Series, ref: pd.Series, scale: int, sets: list[str],
                    bands: dict[tuple[int, str], NoiseBand],
                    losses: dict[tuple[int, str, int], float] | None = None,
                    gains: dict[tuple[int, str, int], float] | None = None) -> str:
    """The task's answer for one variant: mean PSNR change over the sets against the comparison
    run, how many per-set changes exceed the noise band, whether the original study's README
    moved the same way, and (for a significant loss of PSNR, ``losses`` from
    :func:`final_losses`) whether the variant under-fits or over-fits its training data."""
    deltas = {s: float(v[f"{s} PSNR"]) - float(ref[f"{s} PSNR"]) for s in sets
              if not (math.isnan(v[f"{s} PSNR"]) or math.isnan(ref[f"{s} PSNR"]))}
    head = f"<b>Answer (x{scale})</b>: <i>{esc(v.label)}</i> against <i>{esc(ref.label)}</i>"
    if not deltas:
        status = str(v.get("status", ""))
        return f"{head}: {esc(status) if status.startswith('not run') else 'no result yet'}."
    mean = float(np.mean(list(deltas.values())))
    band_scale = scale
    if not any(bands.get((scale, s), NoiseBand(None, 0)).width is not None for s in deltas):
        band_scale = NOISE_SCALE  # no seeds at this scale: the x2 band is the best proxy
    known = {s: d for s, d in deltas.items()
             if bands.get((band_scale, s), NoiseBand(None, 0)).width is not None}
    outside = [s for s, d in known.items() if abs(d) > bands[(band_scale, s)].width]
    signs = {np.sign(round(d, 2)) for d in deltas.values()}
    direction = ("better on every set" if signs == {1.0} else "worse on every set"
                 if signs == {-1.0} else "mixed across sets")
    text = (f"{head}: {fmt_delta(mean)} dB on average over {len(deltas)} sets ({direction}); ")
    if not known:
        text += "noise band unknown, so not a finding yet."
        significant = False
    else:
        proxy = f" (the x{band_scale} band, as no seeds were run at x{scale})" \
            if band_scale != scale else ""
        text += (f"{len(outside)} of {len(known)} per-set differences exceed the seed-noise band"
                 + proxy + (": not a finding." if not outside else "."))
        significant = bool(outside)
    if significant and mean < 0:
        text += fit_sentence(v, ref, scale, losses or {}, gains)
    orig_v = original_psnr(int(v.task), str(v.variant), scale)
    orig_r = original_psnr(int(ref.task), str(ref.variant), scale)
    if orig_v and orig_r:
        orig_mean = float(np.mean([orig_v[s] - orig_r[s] for s in deltas]))
        caveat = ORIGINAL_CAVEATS.get(int(v.task)) or ORIGINAL_CAVEATS.get(int(ref.task))
        agree = np.sign(round(orig_mean, 2)) == np.sign(round(mean, 2))
        text += f" The original study's README: {fmt_delta(orig_mean)} dB on the same sets"
        if caveat:
            text += f" (a row it reports can't be taken at face value: {esc(caveat)})."
        elif agree:
            text += " (same direction)."
        else:
            text += (" (opposite direction" + (", and ours exceeds the noise band)." if significant
                                               else "; ours is inside the noise band).")
                     )
    return text


def fit_sentence(v: pd.Series, ref: pd.Series, scale: int,
                 losses: dict[tuple[int, str, int], float],
                 gains: dict[tuple[int, str, int], float] | None = None) -> str:
    """Why a variant scores lower, from its final training loss against the comparison's:
    higher = it fits the training patches worse (under-trained at this budget), lower = it
    fits them better but generalises worse; plus, when its body's output vanished
    (:func:`body_gain` < 1e-3), that the body never trained. Empty when nothing applies."""
    key_v = (int(v.task), str(v.variant), scale)
    key_r = (int(ref.task), str(ref.variant), scale)
    gains = gains or {}
    text = ""
    if key_v in gains and gains[key_v] < 1e-3:
        ref_gain = f" (the comparison's: {gains[key_r]:.2f})" if key_r in gains else ""
        text = (f" Its body adds almost nothing: its output is {gains[key_v]:.1e} times the "
                f"size of its input{ref_gain}. With PyTorch's default initialisation each "
                "conv-ReLU layer shrinks the signal, so a deep plain body starts near zero, its "
                "gradients vanish and it never trains: the network is left with its linear "
                "head-upsampler-tail path.")
    return text + _loss_comparison(key_v, key_r, losses)


def _loss_comparison(key_v: tuple[int, str, int], key_r: tuple[int, str, int],
                     losses: dict[tuple[int, str, int], float]) -> str:
    """The final-training-loss part of :func:`fit_sentence`."""
    if key_v not in losses or key_r not in losses or _loss_kind(key_v) != _loss_kind(key_r):
        return ""
    lv, lr = losses[key_v], losses[key_r]
    if lv > 1.02 * lr:
        return (f" Its final training loss is higher ({lv:.4f} vs {lr:.4f}): it fits the "
                "training patches worse, so at this budget it is under-trained, not "
                "over-fitting.")
    if lv < 0.98 * lr:
        return (f" Its final training loss is lower ({lv:.4f} vs {lr:.4f}): it fits the "
                "training patches better but generalises worse.")
    return f" Its final training loss is about the same ({lv:.4f} vs {lr:.4f})."


def _loss_kind(key: tuple[int, str, int]) -> str | None:
    """The training loss of a (task, variant, scale) run; None for bicubic."""
    task, variant, _ = key
    return None if variant == BICUBIC else get_task(task).variant(variant).loss


def _delta_sentence(v: pd.Series, col: str, ref_psnr: float, ref_label: str,
                    band: NoiseBand) -> str:
    """'<variant> is +0.12 dB against <reference> (verdict)'."""
    if math.isnan(v[col]):
        return f"<i>{esc(v.label)}</i> has no result."
    d = float(v[col]) - ref_psnr
    if band.width is None:
        verdict = "noise band unknown"
    elif abs(d) > band.width:
        verdict = "outside the seed-noise band"
    else:
        verdict = "within the seed-noise band: not a finding"
    return (f"<i>{esc(v.label)}</i> is {fmt_delta(d)} dB against <i>{esc(ref_label)}</i> "
            f"({verdict}).")


def conclusion(runs: TaskRuns) -> Html:
    """The task page's conclusion, computed from the results folder."""
    all_runs = load_runs(runs.profile, runs.results_dir)
    table = task_table(runs.planned, all_runs, runs.profile, runs.status())
    losses = final_losses(runs.planned, runs.profile, runs.results_dir)
    gains = body_gains(runs.planned, runs.profile, runs.results_dir)
    lines = conclusion_text(runs.task, table, runs.profile, noise_bands(all_runs), losses, gains)
    items = "".join(f"<li>{line}</li>" for line in lines)
    return Html(f'<div class="ablation-conclusion"><p>Computed from results/{esc(runs.profile)}'
                f" (profile <code>{esc(runs.profile)}</code>). {NOISE_EXPLAINED}</p>"
                f"<ul>{items}</ul></div>", "\n".join(lines))


# --------------------------------------------------------------------------- the whole study


def study_rows(scales: Iterable[int] = (2, 3, 4)) -> list[PlannedRun]:
    """Every (task, variant, scale) of the study, references first (seed 0 as placeholder)."""
    scales = [int(s) for s in scales]
    out = [PlannedRun(0, BICUBIC, "bicubic (MATLAB)", s, 0, "reference") for s in scales]
    for t in [REFERENCE, *TASKS.values()]:
        for v in t.variants:
            out += [PlannedRun(t.number, v.name, v.label, s, 0,
                               "reference" if t.number == 0 else "variant")
                    for s in t.scales if s in scales]
    return out


def study_table(profile: str, results_dir=None, scales: Iterable[int] = (2, 3, 4),
                seeds: Iterable[int] | None = None, original: bool = True,
                published: bool = True) -> pd.DataFrame:
    """Every variant x set x scale of this study, with the original study's README numbers and
    published reference rows beside it (long rows; ``source`` says where a number comes from)."""
    runs = load_runs(profile, results_dir)
    if seeds is not None and not runs.empty:
        seeds = {int(s) for s in seeds}
        runs = runs[runs.seed.isin(seeds) | (runs.variant == BICUBIC)]
    agg = aggregate_seeds(runs)
    rows = []
    for p in study_rows(scales):
        sub = agg[(agg.task == p.task) & (agg.variant == p.variant) & (agg.scale == p.scale)]
        params, flops = _spec_costs(p.task, p.variant, p.scale)
        row = dict(scale=p.scale, task=p.task, variant=p.variant, model=_run_label(p, sub),
                   source=f"this study ({profile})", seeds=int(sub["n"].max()) if len(sub) else 0,
                   params=params, gflops_720p=flops * FRAME_720P[0] * FRAME_720P[1] / 1e9,
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
    if p.variant == BICUBIC:
        return ""
    v = get_task(p.task).variant(p.variant)
    return v.note if v.overrides(profile) else ""


def _not_run_note(p: PlannedRun, profile: str) -> str:
    """The study table's note for a run without results."""
    reason = skip_reason(p.task, p.variant, profile)
    return f"not run: {reason}" if reason else "not run"


def _is_missing(value) -> bool:
    """True for None and NaN."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def _psnr_ssim_cell(r: pd.Series, s: str) -> str:
    """'PSNR / SSIM' of one set in a study-table row."""
    ssim = r[f"{s} SSIM"]
    return fmt_psnr(r[f"{s} PSNR"]) + ("" if _is_missing(ssim) else f" / {fmt_ssim(ssim)}")


def _study_row_html(ours: pd.Series, orig: pd.Series | None) -> str:
    """One model at one scale: our PSNR / SSIM per set, the original study's PSNR below."""
    cells = []
    for s in BENCHMARKS:
        ssim = ours[f"{s} SSIM"]
        cell = fmt_psnr(ours[f"{s} PSNR"]) + ("" if _is_missing(ssim)
                                              else f" <small>/ {fmt_ssim(ssim)}</small>")
        if orig is not None:
            cell += f'<br/><small style="opacity:0.7">orig. {fmt_psnr(orig[f"{s} PSNR"])}</small>'
        cells.append(f'<td style="white-space:nowrap">{cell}</td>')
    task = "ref" if int(ours.task) == 0 else str(int(ours.task))
    gfl = "–" if _is_missing(ours.gflops_720p) or not ours.gflops_720p \
        else f"{ours.gflops_720p:.1f}"
    notes = [esc(ours.note)] if ours.note else []
    if orig is not None and orig.note:
        notes.append(f"orig.: {esc(orig.note)}")
    note = "; ".join(notes)
    if str(ours.note).startswith("not run"):
        note = f'<span class="ablation-not-run">{note}</span>'
    return (f'<tr class="ablation-row ablation-ours" data-variant="{esc(ours.variant)}">'
            f"<td>{task}</td><td>{esc(ours.model)}</td><td>{int(ours.seeds)}</td>"
            f"{''.join(cells)}"
            f"<td>{fmt_count(ours.params)}</td><td>{gfl}</td><td>{note}</td></tr>")


def _published_html(sub: pd.DataFrame) -> str:
    """The published reference rows of one scale as an HTML table."""
    rows = "".join(
        f'<tr class="ablation-row ablation-literature"><td>{esc(r.model)}</td>'
        + "".join(f"<td>{_psnr_ssim_cell(r, s)}</td>" for s in BENCHMARKS)
        + f"<td>{fmt_count(r.params)}</td><td>{esc(r.source)}</td></tr>"
        for _, r in sub.iterrows())
    head = "".join(f"<th>{s}</th>" for s in BENCHMARKS)
    return (f'<div style="{TABLE_STYLE}"><table class="ablation-published"><thead><tr>'
            f"<th>published</th>{head}<th>params</th><th>source</th></tr></thead>"
            f"<tbody>{rows}</tbody></table></div>")


def render_study_table(table: pd.DataFrame, profile: str) -> Html:
    """The results page's table: per scale, one row per model (ours, with the original study's
    PSNR under it), then the published reference rows."""
    parts = [profile_banner(profile).html]
    head = "".join(f"<th>{s}</th>" for s in BENCHMARKS)
    for scale, sub in table.groupby("scale", sort=True):
        ours = sub[sub.source.str.startswith("this study")]
        orig = sub[sub.source == "original study (README)"].set_index(["task", "variant"])
        body = "".join(
            _study_row_html(r, orig.loc[(r.task, r.variant)]
                            if (r.task, r.variant) in orig.index else None)
            for _, r in ours.iterrows())
        parts.append(f"<h3>x{int(scale)}</h3><div style=\"{TABLE_STYLE}\">"
                     f'<table class="ablation-study"><thead><tr><th>task</th><th>model</th>'
                     f"<th>seeds</th>{head}<th>params</th><th>GFLOPs per 1280x720</th>"
                     f"<th>note</th></tr></thead><tbody>{body}</tbody></table></div>")
        published = sub[sub.model.str.endswith("(published)")]
        if len(published):
            parts.append(_published_html(published))
    parts.append(f"<p>Cells: PSNR (dB) / SSIM on Y (BT.601), <code>scale</code> pixels shaved, "
                 f"this study's runs under profile <code>{esc(profile)}</code> (mean over "
                 "seeds). <i>orig.</i>: the original study's README (PSNR only, checkpoints "
                 "selected on test sets, non-standard test files: see <i>Differences from the "
                 "original study</i>). Published rows: the papers and re-evaluations named in "
                 "the source column.</p>")
    return Html("".join(parts), table.to_string())


def study_results(profile: str = "cpu", results_dir=None, scales: Iterable[int] = (2, 3, 4),
                  seeds: Iterable[int] | None = None) -> Html:
    """The full-study table of the results page (one call in the notebook), followed by the
    seed-noise band every difference in it is read against."""
    table = render_study_table(study_table(profile, results_dir, scales, seeds), profile)
    band = noise_band_text(noise_bands(load_runs(profile, results_dir)))
    return Html(table.html + f"<p>{band}</p>", table.text + "\n" + band)


def noise_band_text(bands: dict[tuple[int, str], NoiseBand]) -> str:
    """One sentence listing the seed-noise band per scale and set."""
    known = {k: b for k, b in bands.items() if b.width is not None}
    if not known:
        return ("<b>Seed-noise band</b>: unknown (fewer than two seeds of the task-4 baseline); "
                "no difference in the table can be called a finding yet.")
    parts = []
    for scale in sorted({k[0] for k in known}):
        cells = ", ".join(f"{esc(s)} ±{known[(scale, s)].width:.2f} dB"
                          for s in ordered_sets(k[1] for k in known if k[0] == scale))
        n = max(b.n_seeds for k, b in known.items() if k[0] == scale)
        parts.append(f"x{scale} ({n} seeds): {cells}")
    return ("<b>Seed-noise band</b> (twice the standard deviation over seeds of the task-4 "
            "baseline; a difference smaller than this is not a finding): " + "; ".join(parts)
            + ".")


def cost_figure(profile: str, results_dir=None, scale: int = 2, set_name: str | None = None,
                seeds: Iterable[int] | None = None) -> FigureFiles:
    """PSNR against GFLOPs at 1280x720 for every finished run at ``scale`` (log x)."""
    runs = load_runs(profile, results_dir)
    if seeds is not None and not runs.empty:
        runs = runs[runs.seed.isin({int(s) for s in seeds}) | (runs.variant == BICUBIC)]
    agg = aggregate_seeds(runs)
    agg = agg[(agg.scale == scale) & (agg.variant != BICUBIC)] if not agg.empty else agg
    set_name = set_name or (ordered_sets(agg.set)[0] if not agg.empty else "Set5")
    sub = agg[agg.set == set_name] if not agg.empty else agg
    fig = new_figure(7, 4.2)
    ax = fig.subplots()
    for i, (_, r) in enumerate(sub.iterrows()):
        ax.scatter(max(r.gflops_720p, 1e-3), r.psnr, color=f"C{i % 10}")
        ax.annotate(f"{int(r.task)}: {r.variant}", (max(r.gflops_720p, 1e-3), r.psnr),
                    fontsize=7, xytext=(3, 3), textcoords="offset points")
    bic = runs[(runs.variant == BICUBIC) & (runs.scale == scale) & (runs.set == set_name)] \
        if not runs.empty else runs
    if len(bic):
        ax.axhline(float(bic.psnr.mean()), color="gray", ls="--", lw=1, label="bicubic")
        ax.legend(fontsize=8)
    ax.set(xscale="log", xlabel="GFLOPs per 1280x720 output frame",
           ylabel=f"{set_name} PSNR (dB)")
    if sub.empty:
        ax.text(0.5, 0.5, "no finished runs", ha="center", va="center", transform=ax.transAxes)
    fig.suptitle(f"{smoke_note(profile)}Cost against quality at x{scale} (profile {profile})",
                 fontsize=9)
    png, svg = save_figure(fig, f"study-x{scale}-cost", profile, results_dir)
    return FigureFiles([png], [svg], "Each point: mean over seeds of one variant.")


def study_conclusion(profile: str = "cpu", results_dir=None, scales: Iterable[int] = (2,),
                     seeds: Iterable[int] | None = None) -> Html:
    """Every task's computed conclusion, plus where the best small net stands against bicubic
    and EDSR-baseline (all from ``results/<profile>``)."""
    runs = load_runs(profile, results_dir)
    bands = noise_bands(runs)
    seeds = sorted({int(s) for s in seeds}) if seeds is not None else \
        (sorted(int(s) for s in runs.seed.unique()) if not runs.empty else [0])
    blocks = [profile_banner(profile).html, f"<p>{NOISE_EXPLAINED}</p>",
              _overall_html(runs, profile, scales, seeds)]
    for t in TASKS.values():
        sc = [s for s in t.scales if s in set(int(x) for x in scales)]
        if not sc:
            continue
        planned = planned_runs(t.number, sc, seeds, (), profile)
        table = task_table(planned, runs, profile)
        lines = conclusion_text(t.number, table, profile, bands,
                                final_losses(planned, profile, results_dir),
                                body_gains(planned, profile, results_dir))
        lines = [line for line in lines if SMOKE_WARNING not in line]
        items = "".join(f"<li>{line}</li>" for line in lines)
        blocks.append(f"<h3>Task {t.number}: {esc(t.title)}</h3><p><i>{esc(t.question)}</i></p>"
                      f"<ul>{items}</ul>")
    return Html("".join(blocks), f"conclusions for profile {profile}")


def _overall_html(runs: pd.DataFrame, profile: str, scales: Iterable[int],
                  seeds: list[int]) -> str:
    """Best small net per scale and set, against bicubic and our EDSR-baseline."""
    if runs.empty:
        return "<p>No finished runs yet: run <code>ablation sweep</code>.</p>"
    agg = aggregate_seeds(runs[runs.seed.isin(seeds) | (runs.variant == BICUBIC)])
    items = []
    for scale in scales:
        for s in ordered_sets(agg.set):
            sub = agg[(agg.scale == scale) & (agg.set == s)]
            small = sub[(sub.task != 0) & (sub.variant != BICUBIC)]
            if small.empty:
                continue
            best = small.loc[small.psnr.idxmax()]
            text = (f"<b>x{scale}, {esc(s)}</b>: the best small net is <i>{esc(best.label)}</i> "
                    f"(task {int(best.task)}) at {best.psnr:.2f} dB")
            for variant, name in ((BICUBIC, "bicubic"), ("edsr_baseline", "our EDSR-baseline")):
                ref = sub[sub.variant == variant]
                if len(ref):
                    text += f", {fmt_delta(best.psnr - float(ref.psnr.iloc[0]))} dB against {name}"
            items.append(f"<li>{text}.</li>")
    smoke = f"<p><b>{SMOKE_WARNING}.</b></p>" if is_smoke(profile) else ""
    return f"{smoke}<h3>Overall</h3><ul>{''.join(items)}</ul>"


# --------------------------------------------------------------------------- method page


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


def method_profiles(profile: str = "cpu") -> Html:
    """The profiles table with the page's profile highlighted."""
    table = profiles_table().T
    head = "".join(f"<th>{esc(p)}{' (this book)' if p == profile else ''}</th>"
                   for p in table.columns)
    body = "".join(f"<tr><th>{esc(k)}</th>" + "".join(f"<td>{esc(v)}</td>" for v in r) + "</tr>"
                   for k, r in table.iterrows())
    return Html(profile_banner(profile).html +
                f'<table class="ablation-profiles"><thead><tr><th></th>{head}</tr></thead>'
                f"<tbody>{body}</tbody></table>", table.to_string())


def compute_table(profile: str = "cpu", results_dir=None) -> Html:
    """Wall time of every finished run (training and evaluation) and the study's total, read
    from each run's metrics.json: what the study cost on the machine that ran it."""
    rows = []
    for m in results_mod.iter_metrics(profile, results_dir):
        rows.append(dict(task=m.get("task"), variant=m.get("variant"), scale=m.get("scale"),
                         seed=m.get("seed"), device=m.get("device", ""),
                         train_min=(m.get("train_seconds") or 0.0) / 60,
                         eval_min=(m.get("eval_seconds") or 0.0) / 60))
    table = pd.DataFrame(rows, columns=["task", "variant", "scale", "seed", "device",
                                        "train_min", "eval_min"])
    if table.empty:
        return Html(profile_banner(profile).html + "<p>No finished runs yet.</p>", "no runs")
    table = table.sort_values(["task", "variant", "scale", "seed"])
    total_h = (table.train_min.sum() + table.eval_min.sum()) / 60
    body = "".join(
        f"<tr><td>{r.task}</td><td>{esc(str(r.variant))}</td><td>x{r.scale}</td>"
        f"<td>{r.seed}</td><td>{esc(str(r.device))}</td><td>{r.train_min:.1f}</td>"
        f"<td>{r.eval_min:.1f}</td></tr>" for r in table.itertuples())
    summary = (f"<p><b>{len(table)} runs, {total_h:.2f} hours of wall time in total</b> "
               f"(training {table.train_min.sum() / 60:.2f} h, evaluation on the benchmarks "
               f"{table.eval_min.sum() / 60:.2f} h), on the devices listed.</p>")
    html = (profile_banner(profile).html + summary +
            '<table class="ablation-compute"><thead><tr><th>task</th><th>variant</th>'
            "<th>scale</th><th>seed</th><th>device</th><th>train (min)</th>"
            f"<th>eval (min)</th></tr></thead><tbody>{body}</tbody></table>")
    return Html(html, table.to_string(index=False) + f"\ntotal: {total_h:.2f} h")
