"""The page sections built on the effects: a task page's effects table and forest plot, the
one-look findings page and the compute-ladder page (the README's blocks: :mod:`._readme`).

Every number comes from :func:`._effects.effects_table` (one aggregation rule, one statistic);
figures are drawn by :mod:`._effect_figures` and saved with :func:`._figures.save_figure`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from ablation import results as results_mod
from ablation import stats
from ablation.config import LADDER, SCALES
from ablation.models import VANISHED_BODY
from ablation.tasks import LADDER_SCALE, get_task

from ._effect_figures import forest_figure, ladder_figure
from ._effects import (
    AGGREGATION_RULE,
    MEAN_SET,
    NOT_IN_ORIGINAL,
    effect_of,
    effects_table,
    not_in_original,
)
from ._figures import DEFAULT_FORMATS, FigureFiles, figures_dir, save_figure
from ._html import TABLE_STYLE, Html, esc, fmt_gain, profile_banner, smoke_note
from ._ladder import (
    CHANGE_RULE,
    NOT_YET,
    TOP_BUDGET,
    TOP_RUNG_RULE,
    ladder_body_gains,
    ladder_effects,
    ladder_points,
    ladder_sentences,
    ladder_status,
    missing_runs,
    most_moved_factor,
    original_points,
)
from ._running import TaskRuns
from ._tables import ordered_sets


def _cell(row: pd.Series) -> str:
    """'−0.83 [−1.10, −0.57]' over the verdict, or the reason it is missing."""
    if row.status != "ok":
        return f'<span class="ablation-not-run">{esc(row.status)}</span>'
    e = effect_of(row)
    return (f'<span style="white-space:nowrap">{esc(e.interval_text())}</span><br/>'
            f"<small>{esc(e.verdict_text())}</small>")


def render_effects(effects: pd.DataFrame, profile: str, banner: bool = True) -> Html:
    """One row per comparison and scale; per set and the mean of the sets: effect [95%
    interval] and verdict; seeds per side; the original study's difference on the mean."""
    sets = ordered_sets(s for s in effects.set if s != MEAN_SET)
    head = "".join(f"<th>{esc(s)}</th>" for s in sets) + "<th>mean of the sets</th>"
    body = []
    for _, g in effects.groupby(["scale", "variant", "ref_task", "ref_variant"], sort=False):
        r0 = g.iloc[0]
        by_set = {r.set: r for _, r in g.iterrows()}
        cells = "".join(f"<td>{_cell(by_set[s]) if s in by_set else '–'}</td>"
                        for s in [*sets, MEAN_SET])
        if r0.status != "ok":
            cells = f'<td colspan="{len(sets) + 1}">{_cell(r0)}</td>'
        m = by_set.get(MEAN_SET, r0)
        orig = "–" if math.isnan(m.original) else stats.signed(m.original) + (
            "*" if m.original_caveat else "")
        diag = (f"<br/><small><i>{NOT_IN_ORIGINAL}</i></small>"
                if not_in_original(int(r0.task), r0.variant) else "")
        body.append(f'<tr class="ablation-row" data-variant="{esc(r0.variant)}"><td>'
                    f"{esc(r0.label)}{diag}</td><td>{esc(r0.ref_label)}</td><td>x{r0.scale}</td>"
                    f"<td>{int(m.n_variant)} / {int(m.n_reference)}</td>{cells}"
                    f"<td>{orig}</td></tr>")
    table = (f'<div style="{TABLE_STYLE}"><table class="ablation-effects"><thead><tr>'
             f"<th>variant</th><th>against</th><th>scale</th><th>seeds</th>{head}"
             f"<th>original (mean)</th></tr></thead><tbody>{''.join(body)}</tbody></table></div>")
    note = (f"<p>Effect in dB [95% interval]. {AGGREGATION_RULE} <i>original</i>: the original "
            "study's README difference on the same sets (*: a row it reports can't be taken at "
            "face value).</p>")
    top = profile_banner(profile).html if banner else ""
    return Html(top + table + note, effects.to_string())


def effects(runs: TaskRuns) -> Html:
    """A task page's effects: every comparison at the page's scales."""
    return render_effects(_task_effects(runs), runs.profile, banner=False)


def _task_effects(runs: TaskRuns) -> pd.DataFrame:
    """The effects rows of a task page (its own task, its scales)."""
    table = effects_table(runs.profile, runs.results_dir, [runs.task], runs.scales,
                          runs.status())
    if runs.variants:
        table = table[table.variant.isin(runs.variants)]
    return table


def forest_rows(effects: pd.DataFrame, by_task: bool = False) -> pd.DataFrame:
    """Effects rows with a y label (``row``) and ``bold`` for the means."""
    rows = effects.copy()
    many = rows[["variant", "ref_variant"]].drop_duplicates().shape[0] > 1
    labels = []
    for _, r in rows.iterrows():
        name = "mean of the sets" if r.set == MEAN_SET else r.set
        pair = f"{r.variant} vs {r.ref_variant}"
        if by_task:
            labels.append(f"task {r.task}: {pair} (x{r.scale})")
        else:
            labels.append(f"{pair}: {name}" if many else name)
    return rows.assign(row=labels, bold=rows.set == MEAN_SET)


def forest_plot(runs: TaskRuns, style: dict | str | None = None,
                figsize: tuple[float, float] | None = None,
                formats: Iterable[str] = DEFAULT_FORMATS, out_dir=None) -> FigureFiles:
    """The task's forest plot per scale: effect and interval per set and for the mean (saved
    in ``formats`` into ``out_dir``, default ``results/<profile>/figures``)."""
    table = _task_effects(runs)
    folder = Path(out_dir) if out_dir is not None else figures_dir(runs.profile,
                                                                     runs.results_dir)
    files = FigureFiles([], [], "Dot: effect; bar: 95% interval (hollow dot: one seed, the "
                                "interval covers the images only); x: the original study.")
    for scale in runs.scales:
        rows = forest_rows(table[table.scale == scale])
        fig = forest_figure(rows, f"{smoke_note(runs.profile)}Task {runs.task}, x{scale}: "
                            f"effects with 95% intervals (profile {runs.profile})", style, figsize)
        files.add(save_figure(fig, folder / f"task{runs.task:02d}-x{scale}-effects", formats))
    return files


def findings(profile: str = "cpu", results_dir=None, scales: Iterable[int] = SCALES) -> Html:
    """The one-look findings table: task (linked to its page), change, against, effect on the
    mean of the sets with its interval, verdict."""
    table = effects_table(profile, results_dir, scales=scales)
    body = []
    for _, r in table[table.set == MEAN_SET].iterrows():
        t = get_task(int(r.task))
        link = f'<a href="../tasks/{t.page(int(r.scale))}.html">Task {t.number}</a>'
        if r.status == "ok":
            e = effect_of(r)
            eff = f'<span style="white-space:nowrap">{esc(e.interval_text())}</span>'
            verdict, seeds = esc(e.verdict_text()), f"{e.n_variant} / {e.n_reference}"
        else:
            eff, verdict, seeds = "–", f'<span class="ablation-not-run">{esc(r.status)}</span>', "–"
        body.append(f'<tr class="ablation-row"><td>{link}</td><td>{esc(r.label)}</td>'
                    f"<td>{esc(r.ref_label)}</td><td>x{r.scale}</td><td>{eff}</td>"
                    f"<td>{verdict}</td><td>{seeds}</td></tr>")
    html = (f'{profile_banner(profile).html}<div style="{TABLE_STYLE}">'
            '<table class="ablation-findings"><thead><tr><th>task</th><th>change</th>'
            "<th>against</th><th>scale</th><th>effect (dB) [95%]</th><th>verdict</th>"
            f"<th>seeds</th></tr></thead><tbody>{''.join(body)}</tbody></table></div>"
            f"<p>Effect on the mean of the sets. {AGGREGATION_RULE}</p>")
    return Html(html, table[table.set == MEAN_SET].to_string())


def findings_plot(profile: str = "cpu", results_dir=None, scales: Iterable[int] = SCALES,
                  style: dict | str | None = None,
                  figsize: tuple[float, float] | None = None,
                  formats: Iterable[str] = DEFAULT_FORMATS, out_dir=None) -> FigureFiles:
    """Effect per task (mean of the sets) with its interval: the study at one look."""
    table = effects_table(profile, results_dir, scales=scales)
    rows = forest_rows(table[table.set == MEAN_SET], by_task=True).assign(bold=False)
    fig = forest_figure(rows, f"{smoke_note(profile)}Every comparison of the study: effect on "
                        f"the mean of the sets (profile {profile})", style, figsize)
    files = FigureFiles([], [], "One row per comparison; details on each task's page.")
    folder = Path(out_dir) if out_dir is not None else figures_dir(profile, results_dir)
    files.add(save_figure(fig, folder / "study-effects", formats))
    return files


def ladder_curves(results_dir=None, style: dict | str | None = None,
                  figsize: tuple[float, float] | None = None,
                  formats: Iterable[str] = DEFAULT_FORMATS, out_dir=None) -> FigureFiles:
    """PSNR against HR pixels seen in training for the ladder's runs (committed runs only)."""
    points = ladder_points(results_dir)
    sets = ordered_sets(points.set) or ["B100"]
    sets = ["B100", *[s for s in sets if s != "B100"]]
    budgets = ", ".join(f"{n}x" for n in LADDER.values())
    title = (f"Task-4 baseline and the contested factors at x{LADDER_SCALE}: 1x, {budgets} "
             "the cpu budget (committed runs)")
    fig = ladder_figure(points, original_points(), sets, title, style, figsize)
    files = FigureFiles([], [], "Line: mean over the committed seeds (bar: their range). "
                                "Star (B100 panel): the original study's logged B100 best "
                                "at its own budget (its task 4 had 32 channels).")
    folder = Path(out_dir) if out_dir is not None else figures_dir("cpu", results_dir)
    files.add(save_figure(fig, folder / f"ladder-x{LADDER_SCALE}", formats))
    return files


def ladder_tables(results_dir=None) -> Html:
    """Which ladder runs are committed, then per factor: the effect at each budget with its
    interval (B100 and the mean of the sets) and whether it shrinks, holds or flips."""
    status = ladder_status(results_dir)
    eff = ladder_effects(results_dir)
    budgets = [c for c in status.columns if c.endswith("x")]
    chosen = most_moved_factor(eff)
    missing = missing_runs(status, chosen)
    parts = ["<p>Seeds committed per run and budget:</p>", status.to_html(index=False)]
    gains = ladder_body_gains(results_dir).set_index("label")[budgets]
    cells = gains.map(lambda g: ", ".join(f"{s}: {fmt_gain(v)}" for s, v in sorted(g.items()))
                      or "–")
    parts += [f"<p>Body gain per seed (<i>seed: gain</i>; the size of the body's output over its "
              "input, <code>body_gain</code> in <code>metrics.json</code>; under "
              f"{VANISHED_BODY:g} the body never trained and the net is its linear "
              "head-upsampler-tail path):</p>",
              cells.reset_index().to_html(index=False)]
    if chosen:
        task, variant, moved = chosen
        parts.append(f"<p>At {TOP_BUDGET} the ladder runs the baseline and {TOP_RUNG_RULE}"
                     f": <b>task {task}, {esc(get_task(task).variant(variant).label)}</b> (by "
                     f"{moved:.2f} dB). The other factors stop at 4x.</p>")
    else:
        parts.append(f"<p>At {TOP_BUDGET} the ladder runs the baseline and {TOP_RUNG_RULE}"
                     ", chosen once every factor has a 4x run.</p>")
    if missing:
        parts.append(f"<p><b>Ladder runs not yet committed</b>: {esc('; '.join(missing))}.</p>")
    for (task, _variant), g in eff.groupby(["task", "variant"], sort=False):
        cells = []
        for s, gs in g.groupby("set", sort=False):
            tds = "".join(f"<td>{_ladder_cell(e, c)}</td>"
                          for e, c in zip(gs.effect, gs.change, strict=True))
            name = "mean of the sets" if s == MEAN_SET else esc(s)
            cells.append(f"<tr><td>{name}</td>{tds}</tr>")
        head = "".join(f"<th>{b}</th>" for b in g.budget.unique())
        parts.append(f"<h4>Task {task}: {esc(g.label.iloc[0])} against the baseline</h4>"
                     f'<table class="ablation-ladder"><thead><tr><th>set</th>{head}</tr></thead>'
                     f"<tbody>{''.join(cells)}</tbody></table>")
    parts.append(f"<p>Effect in dB [95% interval] at each budget. {CHANGE_RULE}</p>")
    return Html("".join(parts), eff.to_string())


def _ladder_cell(e: stats.Effect | None, change: str) -> str:
    """One budget of a factor: effect [interval], verdict, change from 1x."""
    text = NOT_YET if e is None else (f"{esc(e.interval_text())}<br/>"
                                      f"<small>{esc(e.verdict_text())}</small>")
    return text + (f"<br/><i>{esc(change)}</i>" if change and e is not None else "")


def ladder_conclusion(results_dir=None) -> Html:
    """Per factor, what the ladder implies (or that it is not yet run)."""
    items = "".join(f"<li>{s}</li>" for s in ladder_sentences(
        ladder_effects(results_dir), ladder_body_gains(results_dir)))
    return Html(f"<h3>Does the answer hold with more compute?</h3><ul>{items}</ul>",
                "ladder conclusion")


def study_hours(profile: str = "cpu", results_dir=None) -> tuple[int, float]:
    """(finished runs, hours of training and evaluation) under ``results/<profile>``: the
    one source of the study's time (the compute table and the README read it)."""
    n, seconds = 0, 0.0
    for m in results_mod.iter_metrics(profile, results_dir):
        n += 1
        seconds += (m.get("train_seconds") or 0.0) + (m.get("eval_seconds") or 0.0)
    return n, seconds / 3600
