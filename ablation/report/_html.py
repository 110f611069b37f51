"""HTML for the book: the fragment type, escaping, number formats, the profile banner and the
rendering of the result tables (DataFrames from :mod:`._tables` in, HTML out)."""

from __future__ import annotations

import html
import math
from dataclasses import dataclass

import pandas as pd

from ablation.config import BENCHMARKS, PROFILE_NAMES, make_config
from ablation.errors import check_choice
from ablation.models import VANISHED_BODY

from ._tables import table_sets

SMOKE_WARNING = "smoke run: numbers are not findings"
TABLE_STYLE = "overflow-x:auto; max-width:100%; font-size:0.85em"  # a wide table scrolls
_TABLES = ("table.ablation-results", "table.ablation-study", "table.ablation-published",
           "table.ablation-runs", "table.ablation-compute")
# numbers never wrap inside a cell (the table scrolls instead); only notes and statuses wrap
TABLE_CSS = ("<style>" + ", ".join(f"{t} td, {t} th" for t in _TABLES)
             + " {padding: 2px 8px; vertical-align: top; white-space: nowrap} "
             "td.ablation-wrap {white-space: normal; min-width: 12em} "
             ".ablation-not-run {color: #b3261e; font-weight: 600}</style>")


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


def fmt_delta(d: float) -> str:
    """Signed dB difference without a negative zero."""
    text = f"{d:+.2f}"
    return "±0.00" if text in ("+0.00", "-0.00") else text


def fmt_gain(gain: float) -> str:
    """A body gain: ``0.82``, or ``1.3e-07`` for a vanished body (under
    :data:`ablation.models.VANISHED_BODY`), whose size is the point."""
    return f"{gain:.2f}" if gain >= VANISHED_BODY else f"{gain:.1e}"


def _is_missing(value) -> bool:
    """True for None and NaN."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def render_task_table(table: pd.DataFrame, profile: str, banner: bool = True) -> Html:
    """HTML of :func:`task_table`: the best PSNR per set and scale in bold, not-run rows marked.

    Rows carry ``class="ablation-row ablation-<role>"`` so tests can count them. ``banner``:
    start with :func:`profile_banner` (a task page shows it once, above its runs).
    """
    sets = table_sets(table)
    head = "".join(f"<th>{esc(s)}</th>" for s in sets)
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
            f"<td>{fmt_count(r['FLOPs/pixel'])}</td><td>{gfl}</td>"
            f'<td class="ablation-wrap">{status}</td></tr>')
    table_html = (
        f'<div style="{TABLE_STYLE}"><table class="ablation-results"><thead><tr><th>model</th>'
        f"<th>role</th><th>scale</th><th>seeds</th>{head}<th>params</th><th>FLOPs/px</th>"
        "<th>GFLOPs</th><th>status</th></tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table></div>")
    note = ("<p>Each set: PSNR (dB) / SSIM on Y (BT.601), <code>scale</code> pixels shaved, "
            "output rounded to 8 bits; mean ± std over seeds when there are several. Bold: best "
            "on the set at that scale. FLOPs/px: per output pixel; GFLOPs: per 1280x720 "
            "output frame.</p>")
    top = profile_banner(profile).html if banner else TABLE_CSS
    return Html(top + table_html + note, table.to_string())


def _best_per_scale(table: pd.DataFrame, sets: list[str]) -> dict[tuple[int, str], str]:
    """(scale, set) -> variant with the highest PSNR."""
    best: dict[tuple[int, str], str] = {}
    for scale, sub in table.groupby("scale"):
        for s in sets:
            col = sub[f"{s} PSNR"]
            if col.notna().any():
                best[(scale, s)] = sub.loc[col.idxmax(), "variant"]
    return best


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
            f'<td>{fmt_count(ours.params)}</td><td>{gfl}</td><td class="ablation-wrap">{note}'
            "</td></tr>")


def _published_html(sub: pd.DataFrame) -> str:
    """The published reference rows of one scale as an HTML table."""
    rows = "".join(
        f'<tr class="ablation-row ablation-literature"><td>{esc(r.model)}</td>'
        + "".join(f"<td>{_psnr_ssim_cell(r, s)}</td>" for s in BENCHMARKS)
        + f'<td>{fmt_count(r.params)}</td><td class="ablation-wrap">{esc(r.source)}</td></tr>'
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
                     f"<th>seeds</th>{head}<th>params</th><th>GFLOPs</th>"
                     f"<th>note</th></tr></thead><tbody>{body}</tbody></table></div>")
        published = sub[sub.model.str.endswith("(published)")]
        if len(published):
            parts.append(_published_html(published))
    parts.append(f"<p>Cells: PSNR (dB) / SSIM on Y (BT.601), <code>scale</code> pixels shaved, "
                 f"this study's runs under profile <code>{esc(profile)}</code> (mean over "
                 "seeds). <i>orig.</i>: the original study's README (PSNR only, checkpoints "
                 "selected on test sets, non-standard test files: see <i>Differences from the "
                 "original study</i>). Published rows: the papers and re-evaluations named in "
                 "the source column. GFLOPs: per 1280x720 output frame.</p>")
    return Html("".join(parts), table.to_string())
