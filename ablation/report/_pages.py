"""One call per notebook section: the task pages (results table, curves, visual comparison,
conclusion), the results page (study table, compute, cost figure), the conclusion page and
the method page. Each call reads ``results/<profile>``, builds its table or figure with the
modules beside it and returns something the notebook displays."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from ablation import results as results_mod
from ablation.config import SCALES
from ablation.planning import planned_runs
from ablation.tasks import BICUBIC, TASKS

from ._effects import AGGREGATION_RULE, effects_table
from ._figures import (
    DEFAULT_FORMATS,
    FigureFiles,
    Style,
    comparison_figure,
    cost_plot,
    curves_figure,
    figure_style,
    figures_dir,
    save_figure,
)
from ._findings import ladder_conclusion, study_hours
from ._html import (
    SMOKE_WARNING,
    Html,
    esc,
    profile_banner,
    render_study_table,
    render_task_table,
    smoke_note,
)
from ._probes import CROP_HR, body_gains, comparison_panels, pick_images
from ._prose import _overall_html, conclusion_text
from ._running import TaskRuns
from ._tables import (
    aggregate_seeds,
    computed_mask,
    final_losses,
    load_histories,
    load_runs,
    ordered_sets,
    profiles_table,
    study_table,
    task_table,
)


def results_table(runs: TaskRuns) -> Html:
    """The task's results table for a :class:`TaskRuns` (one call in the notebook)."""
    table = task_table(runs.planned, load_runs(runs.profile, runs.results_dir), runs.profile,
                       runs.status())
    return render_task_table(table, runs.profile, banner=False)  # the runs section has it


def training_curves(runs: TaskRuns, style: Style = None,
                    figsize: tuple[float, float] | None = None,
                    formats: Iterable[str] = DEFAULT_FORMATS, out_dir=None) -> FigureFiles:
    """One curves figure per scale of the page, saved (``formats``, into ``out_dir``, default
    ``results/<profile>/figures``) and shown; ``style``/``figsize`` as in
    :func:`~ablation.report.curves_figure`."""
    folder = Path(out_dir) if out_dir is not None else figures_dir(runs.profile,
                                                                     runs.results_dir)
    files = FigureFiles([], [], "Loss per logged step; one line per model and seed.")
    for scale in runs.scales:
        planned = [p for p in runs.planned if p.scale == scale]
        hist = load_histories(planned, runs.profile, runs.results_dir)
        title = (f"{smoke_note(runs.profile)}Task {runs.task}, x{scale}: training "
                 f"(profile {runs.profile}; validation = held-out training images)")
        with figure_style(style):
            fig = curves_figure(hist, title, style, figsize)
            files.add(save_figure(fig, folder / f"task{runs.task:02d}-x{scale}-curves",
                                  formats))
    return files


def visual_comparison(runs: TaskRuns, images: Sequence[Path] | None = None,
                      style: Style = None, figsize: tuple[float, float] | None = None,
                      formats: Iterable[str] = DEFAULT_FORMATS, out_dir=None) -> FigureFiles:
    """Zoomed crops of a few benchmark images: HR, bicubic and every model, PSNR per panel."""
    images = list(images) if images is not None else pick_images(runs.profile, runs.data_dir)
    folder = Path(out_dir) if out_dir is not None else figures_dir(runs.profile,
                                                                     runs.results_dir)
    files = FigureFiles([], [], "Nearest-neighbour zoom; seed 0 of each model.")
    for scale in runs.scales:
        rows = comparison_panels(runs.planned, scale, runs.profile, runs.results_dir,
                                 runs.data_dir, images)
        title = (f"{smoke_note(runs.profile)}Task {runs.task}, x{scale}, profile "
                 f"{runs.profile}: the {CROP_HR}-pixel crop where bicubic errs most "
                 "(PSNR of the crop, Y channel)")
        with figure_style(style):
            fig = comparison_figure(rows, title, style, figsize)
            files.add(save_figure(fig, folder / f"task{runs.task:02d}-x{scale}-visual",
                                  formats))
    return files


def conclusion(runs: TaskRuns) -> Html:
    """The task page's conclusion, computed from the results folder."""
    all_runs = load_runs(runs.profile, runs.results_dir)
    table = task_table(runs.planned, all_runs, runs.profile, runs.status())
    losses = final_losses(runs.planned, runs.profile, runs.results_dir)
    gains = body_gains(runs.planned, runs.profile, runs.results_dir)
    effects = effects_table(runs.profile, runs.results_dir, [runs.task], runs.scales,
                            runs.status())
    lines = conclusion_text(runs.task, table, runs.profile, effects, losses, gains)
    items = "".join(f"<li>{line}</li>" for line in lines)
    return Html(f'<div class="ablation-conclusion"><p>Computed from results/{esc(runs.profile)}'
                f" (profile <code>{esc(runs.profile)}</code>). {AGGREGATION_RULE}</p>"
                f"<ul>{items}</ul></div>", "\n".join(lines))


def study_results(profile: str = "cpu", results_dir=None, scales: Iterable[int] = SCALES,
                  seeds: Iterable[int] | None = None) -> Html:
    """The full-study table of the results page (one call in the notebook): every run's mean
    over every seed on disk (``seeds`` narrows it), then the aggregation rule."""
    table = render_study_table(study_table(profile, results_dir, scales, seeds), profile)
    return Html(table.html + f"<p>{AGGREGATION_RULE}</p>", table.text)


def cost_figure(profile: str, results_dir=None, scale: int = 2, set_name: str | None = None,
                seeds: Iterable[int] | None = None, style: Style = None,
                figsize: tuple[float, float] | None = None,
                formats: Iterable[str] = DEFAULT_FORMATS, out_dir=None) -> FigureFiles:
    """PSNR against GFLOPs at 1280x720 for every finished run at ``scale`` (log x), saved in
    ``formats`` into ``out_dir`` (default ``results/<profile>/figures``)."""
    runs = load_runs(profile, results_dir)
    if seeds is not None and not runs.empty:
        runs = runs[runs.seed.isin({int(s) for s in seeds}) | computed_mask(runs)]
    agg = aggregate_seeds(runs)
    agg = agg[(agg.scale == scale) & ~computed_mask(agg)] if not agg.empty else agg
    set_name = set_name or (ordered_sets(agg.set)[0] if not agg.empty else "Set5")
    sub = agg[agg.set == set_name] if not agg.empty else agg
    points = pd.DataFrame({"gflops": list(sub.gflops_720p), "psnr": list(sub.psnr),
                           "label": [f"{int(t)}: {v}" for t, v in zip(sub.task, sub.variant,
                                                                     strict=True)]})
    bic = runs[(runs.variant == BICUBIC.name) & (runs.scale == scale) & (runs.set == set_name)] \
        if not runs.empty else runs
    title = f"{smoke_note(profile)}Cost against quality at x{scale} (profile {profile})"
    folder = Path(out_dir) if out_dir is not None else figures_dir(profile, results_dir)
    files = FigureFiles([], [], "Each point: mean over seeds of one variant.")
    with figure_style(style):
        fig = cost_plot(points, set_name, title, float(bic.psnr.mean()) if len(bic) else None,
                        style, figsize)
        files.add(save_figure(fig, folder / f"study-x{scale}-cost", formats))
    return files


def study_conclusion(profile: str = "cpu", results_dir=None, scales: Iterable[int] = (2,)
                     ) -> Html:
    """Every task's computed conclusion, where the best small net stands against bicubic and
    EDSR-baseline, and what the compute ladder implies (all from the results folder; every
    seed on disk counts)."""
    runs = load_runs(profile, results_dir)
    effects = effects_table(profile, results_dir, scales=scales)
    blocks = [profile_banner(profile).html, f"<p>{AGGREGATION_RULE}</p>",
              _overall_html(runs, profile, scales)]
    for t in TASKS.values():
        sc = [s for s in t.scales if s in set(int(x) for x in scales)]
        if not sc:
            continue
        planned = planned_runs(t.number, sc, [0], (), profile)
        table = task_table(planned, runs, profile)
        lines = conclusion_text(t.number, table, profile, effects,
                                final_losses(planned, profile, results_dir),
                                body_gains(planned, profile, results_dir))
        lines = [line for line in lines if SMOKE_WARNING not in line]
        items = "".join(f"<li>{line}</li>" for line in lines)
        blocks.append(f"<h3>Task {t.number}: {esc(t.title)}</h3><p><i>{esc(t.question)}</i></p>"
                      f"<ul>{items}</ul>")
    if profile == "cpu":
        blocks.append(ladder_conclusion(results_dir).html)
    return Html("".join(blocks), f"conclusions for profile {profile}")


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


SHARED_BELOW = 0.8  # a CPU run that got less of its threads' time shared the cores


def _recorded(m: dict, key: str) -> float | None:
    """``m[key]`` as a float when it is a finite number >= 0 (runs before a field was recorded
    lack it), else None."""
    x = m.get(key)
    ok = isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x >= 0
    return float(x) if ok else None


def compute_table(profile: str = "cpu", results_dir=None) -> Html:
    """Wall time of every finished run (training and evaluation) and the study's total, read
    from each run's metrics.json: what the study cost on the machine that ran it. A CPU run
    that shared the cores with other work (``cpu_share`` under ``SHARED_BELOW``) is marked:
    its minutes are not the machine's speed. The machine's measured 3x3-conv speed
    (``conv_gflops``) sits beside each run: the same budget ran on machines that far apart,
    and a run's minutes scale about inversely with it."""
    rows = []
    for m in results_mod.iter_metrics(profile, results_dir):
        rows.append(dict(task=m.get("task"), variant=m.get("variant"), scale=m.get("scale"),
                         seed=m.get("seed"), device=m.get("device", ""),
                         train_min=(m.get("train_seconds") or 0.0) / 60,
                         eval_min=(m.get("eval_seconds") or 0.0) / 60,
                         cpu_share=_recorded(m, "cpu_share"),
                         conv_gflops=_recorded(m, "conv_gflops")))
    table = pd.DataFrame(rows, columns=["task", "variant", "scale", "seed", "device",
                                        "train_min", "eval_min", "cpu_share", "conv_gflops"])
    if table.empty:
        return Html(profile_banner(profile).html + "<p>No finished runs yet.</p>", "no runs")
    table = table.sort_values(["task", "variant", "scale", "seed"])
    _, total_h = study_hours(profile, results_dir)  # the one source of the study's time

    def cores(share) -> str:
        if share is None or pd.isna(share):
            return "not recorded"
        mark = " &#8224; shared" if share < SHARED_BELOW else ""
        return f"{share:.0%}{mark}"

    def speed(gflops) -> str:
        return "not recorded" if gflops is None or pd.isna(gflops) else f"{gflops:.0f}"

    body = "".join(
        f"<tr><td>{r.task}</td><td>{esc(str(r.variant))}</td><td>x{r.scale}</td>"
        f"<td>{r.seed}</td><td>{esc(str(r.device))}</td><td>{r.train_min:.1f}</td>"
        f"<td>{r.eval_min:.1f}</td><td>{cores(r.cpu_share)}</td><td>{speed(r.conv_gflops)}</td>"
        "</tr>"
        for r in table.itertuples())
    shared = int((table.cpu_share < SHARED_BELOW).sum())
    summary = (f"<p><b>{len(table)} runs, {total_h:.2f} hours of wall time in total</b> "
               f"(training {table.train_min.sum() / 60:.2f} h, evaluation on the benchmarks "
               f"{table.eval_min.sum() / 60:.2f} h), on the devices listed. <i>CPU share</i> "
               "is the part of its threads' wall time a CPU run spent on the cores (about 90-100% "
               f"alone on the machine); &#8224; marks a run under {SHARED_BELOW:.0%}, which "
               "shared the cores with other work: its minutes overstate this machine's time "
               f"({shared or 'none'} here). <i>Conv GFLOP/s</i> is the machine's speed, measured "
               "just before the run trained (one 64-channel 3x3 conv, fp32, the kernel training "
               "spends its time in): the same recipe's minutes scale about inversely with it. "
               "Runs from before a column was recorded say so.</p>")
    html = (profile_banner(profile).html + summary +
            '<table class="ablation-compute"><thead><tr><th>task</th><th>variant</th>'
            "<th>scale</th><th>seed</th><th>device</th><th>train (min)</th>"
            "<th>eval (min)</th><th>CPU share</th><th>conv GFLOP/s</th></tr></thead>"
            f"<tbody>{body}</tbody></table>")
    return Html(html, table.to_string(index=False) + f"\ntotal: {total_h:.2f} h")
