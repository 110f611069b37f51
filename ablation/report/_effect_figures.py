"""Figures of the effects: the forest plot of a task or of the whole study, and the compute
ladder's PSNR against the HR pixels seen in training.

Each function takes DataFrames, ``style`` (a matplotlib rc dict or style name, applied while the
figure is drawn) and ``figsize`` (inches; None: sized to its rows), and returns a Figure that
never touches pyplot's global state; the page calls save it with ``save_figure``.
"""

from __future__ import annotations

import contextlib
import math
from typing import TYPE_CHECKING

import pandas as pd

from ._figures import new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

ORIGINAL_MARKER = dict(marker="x", color="#b3261e", ms=7, mew=1.8, ls="none")


def styled(style: dict | str | None):
    """A context applying ``style`` (rc dict or style name) to what is drawn inside it."""
    if style is None:
        return contextlib.nullcontext()
    import matplotlib.style

    return matplotlib.style.context(style)


def forest_figure(rows: pd.DataFrame, title: str, style: dict | str | None = None,
                  figsize: tuple[float, float] | None = None) -> Figure:
    """Effect and 95% interval per row, top to bottom, with a zero line.

    ``rows``: effects rows (``effect``, ``low``, ``high``, ``seed_estimated``, ``original``,
    ``original_caveat``) plus a ``row`` column (the y label) and an optional ``bold`` column
    (True for a mean over sets). A filled dot: the interval has the seed term; hollow: one seed
    (provisional). A red x: the original study's difference on the same sets (not drawn for
    README rows that can't be taken at face value). A row without a result is labelled so.
    """
    n = max(1, len(rows))
    with styled(style):
        fig = new_figure(*(figsize or (7.5, 0.9 + 0.28 * n)))
        ax = fig.subplots()
        ys = list(range(n, 0, -1))
        shown = set()
        for y, (_, r) in zip(ys, rows.iterrows(), strict=False):
            if isinstance(r.effect, float) and math.isnan(r.effect):
                ax.text(0, y, "  not run", va="center", fontsize=7, color="gray")
                continue
            full = bool(r.seed_estimated)
            label = "95% interval" if full else "95% interval, images only (one seed)"
            has_ci = not (math.isnan(r.low) or math.isnan(r.high))
            if has_ci:
                ax.plot([r.low, r.high], [y, y], color="C0", lw=2.2 if r.get("bold") else 1.4)
            ax.plot([r.effect], [y], "o", color="C0", mfc="C0" if full else "white",
                    ms=6 if r.get("bold") else 5, label=None if label in shown else label)
            shown.add(label)
            if not math.isnan(r.original) and not r.original_caveat:
                lab = "original study (README)"
                ax.plot([r.original], [y], label=None if lab in shown else lab,
                        **ORIGINAL_MARKER)
                shown.add(lab)
        ax.axvline(0, color="gray", lw=1, ls="--")
        ax.set_yticks(ys[:len(rows)], list(rows["row"]) if len(rows) else [])
        for tick, (_, r) in zip(ax.get_yticklabels(), rows.iterrows(), strict=False):
            if r.get("bold"):
                tick.set_fontweight("bold")
        ax.set_ylim(0.3, n + 0.7)
        ax.set_xlabel("effect on PSNR (dB), variant minus the run it is compared with")
        if shown:  # below the axes: it never covers a row
            fig.legend(fontsize=7, loc="outside lower center", ncols=3)
        if rows.empty:
            ax.text(0.5, 0.5, "no comparisons", ha="center", va="center", transform=ax.transAxes)
        fig.suptitle(title, fontsize=9)
    return fig


def ladder_figure(points: pd.DataFrame, originals: pd.DataFrame, sets: list[str], title: str,
                  style: dict | str | None = None,
                  figsize: tuple[float, float] | None = None) -> Figure:
    """PSNR against HR pixels seen in training (log x), one panel per set (B100 first), one
    line per variant over the budgets it was run at (mean over seeds, bar: min-max over seeds).

    ``points``: label, pixels, set, psnr, low, high; ``originals``: label, pixels, psnr (the
    original study's logged B100 best at its own budget, drawn on the B100 panel only).
    """
    sets = sets or ["B100"]
    with styled(style):
        fig = new_figure(*(figsize or (4.2 * min(len(sets), 2), 3.4 * math.ceil(len(sets) / 2))))
        axes = fig.subplots(math.ceil(len(sets) / 2), min(len(sets), 2), squeeze=False,
                            sharex=True).flat
        colours: dict[str, str] = {}
        for ax, s in zip(axes, sets, strict=False):
            sub = points[points.set == s]
            for label, g in sub.groupby("label", sort=False):
                c = colours.setdefault(label, f"C{len(colours) % 10}")
                g = g.sort_values("pixels")
                ax.errorbar(g.pixels, g.psnr, yerr=[g.psnr - g.low, g.high - g.psnr], color=c,
                            marker="o", ms=4, lw=1.3, capsize=2, label=label)
            if s == "B100":
                for _, o in originals.iterrows():
                    c = colours.setdefault(o.label, f"C{len(colours) % 10}")
                    ax.plot([o.pixels], [o.psnr], marker="*", ms=10, color=c, ls="none",
                            mec="black", mew=0.6)
            ax.set(xscale="log", xlabel="HR pixels seen in training", ylabel=f"{s} PSNR (dB)")
            if sub.empty:
                ax.text(0.5, 0.5, "no committed runs", ha="center", va="center",
                        transform=ax.transAxes)
        first = fig.axes[0]
        if colours:
            first.legend(fontsize=7, loc="lower right")
        fig.suptitle(title, fontsize=9)
    return fig
