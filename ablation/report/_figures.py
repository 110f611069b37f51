"""Figures: matplotlib only, drawn on a Figure that never touches pyplot's global state, and
written by one helper, :func:`save_figure`, in any of PNG (shown in the notebook), SVG (text
kept as ``<text>``, editable in Inkscape or Illustrator) and PDF.

Every figure function takes ``style`` (a matplotlib style name, a path or an rc dict, applied
over :data:`BASE_STYLE`) and ``figsize`` (inches); the page calls also take ``formats`` and
``out_dir``. Saving is deterministic (fixed SVG ids via ``svg.hashsalt``, no dates), so an
unchanged figure redrawn by a rerun is byte-identical and leaves git clean.
"""

from __future__ import annotations

import base64
import contextlib
import io
import math
import textwrap
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ablation import paths
from ablation.errors import check_choice
from ablation.fs import atomic_write_bytes

from ._html import esc

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

FORMATS = ("png", "svg", "pdf")
DEFAULT_FORMATS = ("png", "svg")  # PNG for the page, SVG for print
# the book's look; a caller's ``style`` is applied over it (any rc key: sizes, fonts, dpi)
BASE_STYLE = {"legend.fontsize": 8, "figure.titlesize": 10, "savefig.dpi": 110}
# how every figure is written: SVG text as <text> (editable), ids from a fixed salt
SAVE_RC = {"svg.fonttype": "none", "svg.hashsalt": "sr-ablation"}
NO_DATES = {"svg": {"Date": None}, "pdf": {"CreationDate": None}, "png": {}}
Style = str | Path | dict | Sequence[str | Path | dict] | None


@dataclass
class FigureFiles:
    """Saved figure(s): the PNGs shown in the notebook (SVG inline without a PNG), and every
    file written (``files``: each format of each figure)."""

    pngs: list[Path]
    svgs: list[Path]
    caption: str = ""
    files: list[Path] = field(default_factory=list)

    def _repr_html_(self) -> str:
        shown = self.pngs or self.svgs
        imgs = "".join(
            f'<img src="data:{_mime(p)};base64,{base64.b64encode(p.read_bytes()).decode()}" '
            f'alt="{esc(p.stem)}" style="max-width:100%"/>' for p in shown)
        cap = f"<p><em>{esc(self.caption)}</em></p>" if self.caption else ""
        return f'<div class="ablation-figure">{imgs}{cap}</div>'

    def __repr__(self) -> str:
        return "\n".join(p.name for p in self.files or self.pngs)

    def add(self, written: list[Path]) -> None:
        """Record the files of one saved figure."""
        self.files += written
        self.pngs += [p for p in written if p.suffix == ".png"]
        self.svgs += [p for p in written if p.suffix == ".svg"]


def _mime(path: Path) -> str:
    return "image/svg+xml" if path.suffix == ".svg" else "image/png"


def figures_dir(profile: str, results_dir=None) -> Path:
    """``results/<profile>/figures``: where the pages' figures go."""
    return paths.results_dir(results_dir) / profile / "figures"


@contextlib.contextmanager
def figure_style(style: Style = None, base: dict | None = None) -> Iterator[None]:
    """:data:`BASE_STYLE`, then ``base`` (a figure's own defaults), then ``style`` (a style
    name such as ``"seaborn-v0_8-paper"``, a .mplstyle path, an rc dict or a list of them)."""
    import matplotlib.style

    styles: list = [BASE_STYLE, base or {}]
    styles += list(style) if isinstance(style, (list, tuple)) else [style] if style else []
    with matplotlib.style.context(styles):
        yield


def save_figure(fig: Figure, stem: str | Path, formats: Iterable[str] = DEFAULT_FORMATS
                ) -> list[Path]:
    """Write ``fig`` as ``<stem>.png`` / ``.svg`` / ``.pdf`` (atomically); returns the files.

    The one place figures are written: SVG text stays ``<text>`` (``svg.fonttype: none``),
    SVG ids come from a fixed salt and no date is embedded, so the same figure gives the same
    bytes. The dpi of the PNG is ``savefig.dpi`` of the style in effect (110 in the book's).
    """
    import matplotlib

    formats = list(dict.fromkeys(formats))
    for fmt in formats:
        check_choice("figure format", fmt, FORMATS)
    stem = Path(stem)
    out = []
    with matplotlib.rc_context(SAVE_RC):
        for fmt in formats:
            buf = io.BytesIO()
            fig.savefig(buf, format=fmt, bbox_inches="tight", metadata=NO_DATES[fmt])
            path = stem.with_name(f"{stem.name}.{fmt}")
            atomic_write_bytes(path, buf.getvalue())
            out.append(path)
    return out


def new_figure(width: float, height: float, figsize: tuple[float, float] | None = None
               ) -> Figure:
    """A matplotlib Figure that never touches pyplot's global state (no double display):
    ``figsize`` if given, else ``(width, height)`` inches."""
    from matplotlib.figure import Figure

    return Figure(figsize=figsize or (width, height), layout="constrained")


def curves_figure(hist: pd.DataFrame, title: str, style: Style = None,
                  figsize: tuple[float, float] | None = None) -> Figure:
    """Training loss (log scale) and validation PSNR against iteration, one colour per model."""
    with figure_style(style):
        return _curves(hist, title, figsize)


def _curves(hist: pd.DataFrame, title: str, figsize: tuple[float, float] | None) -> Figure:
    fig = new_figure(10, 3.6, figsize)
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
        ax_loss.legend()
    else:
        for ax in (ax_loss, ax_val):
            ax.text(0.5, 0.5, "no finished runs", ha="center", va="center",
                    transform=ax.transAxes)
    fig.suptitle(title)
    return fig


COMPARISON_STYLE = {"axes.titlesize": 7, "figure.titlesize": 9}


def comparison_figure(rows: list, title: str, style: Style = None,
                      figsize: tuple[float, float] | None = None) -> Figure:
    """Grid of zoomed crops: one row per image, one column per model, PSNR in each title."""
    with figure_style(style, COMPARISON_STYLE):
        return _comparison(rows, title, figsize)


def _comparison(rows: list, title: str, figsize: tuple[float, float] | None) -> Figure:
    n_rows, n_cols = max(1, len(rows)), max(1, max((len(r) for r in rows), default=1))
    fig = new_figure(1.75 * n_cols, 2.0 * n_rows + 0.4, figsize)
    axes = np.atleast_2d(fig.subplots(n_rows, n_cols, squeeze=False))
    for ax in axes.flat:
        ax.set_axis_off()
    for i, row in enumerate(rows):
        for j, (label, img, p) in enumerate(row):
            ax = axes[i, j]
            ax.imshow(img if img.shape[2] == 3 else img[:, :, 0], cmap="gray",
                      interpolation="nearest", vmin=0, vmax=255)
            name = "\n".join(textwrap.wrap(label, 22)[:2])
            ax.set_title(name if math.isinf(p) else f"{name}\n{p:.2f} dB")
    if not rows:
        axes[0, 0].text(0.5, 0.5, "no benchmark images available", ha="center", va="center")
    fig.suptitle(title)
    return fig


COST_STYLE = {"figure.titlesize": 9}


def cost_plot(points: pd.DataFrame, set_name: str, title: str, bicubic: float | None = None,
              style: Style = None, figsize: tuple[float, float] | None = None) -> Figure:
    """PSNR against GFLOPs per 1280x720 frame (log x), one labelled point per row of
    ``points`` (columns ``gflops``, ``psnr``, ``label``); labels placed so none overlaps."""
    with figure_style(style, COST_STYLE):
        fig = new_figure(7, 4.2, figsize)
        ax = fig.subplots()
        xy = [(max(float(g), 1e-3), float(p)) for g, p in zip(points.gflops, points.psnr,
                                                               strict=True)]
        for i, (x, y) in enumerate(xy):
            ax.scatter(x, y, color=f"C{i % 10}", zorder=3)
        if bicubic is not None:
            ax.axhline(bicubic, color="gray", ls="--", lw=1, label="bicubic")
            ax.legend(loc="lower right")
        ax.set(xscale="log", xlabel="GFLOPs per 1280x720 output frame",
               ylabel=f"{set_name} PSNR (dB)")
        if not xy:
            ax.text(0.5, 0.5, "no finished runs", ha="center", va="center",
                    transform=ax.transAxes)
        else:
            ax.margins(x=0.15, y=0.12)  # room for the labels at the edges
        fig.suptitle(title)
        place_labels(ax, xy, list(points.label))
    return fig


# label offsets tried in turn (points): right, above, left, below, then diagonals, further out
_DIRECTIONS = ((1, 0), (0, 1), (-1, 0), (0, -1), (1, 1), (-1, 1), (1, -1), (-1, -1))
_RADII = (4, 9, 15, 22, 30, 40)


def place_labels(ax: Axes, xy: Sequence[tuple[float, float]], texts: Sequence[str]) -> list:
    """Annotate each point with its text where no label overlaps another label, a marker or
    the axes' edge (greedy over :data:`_DIRECTIONS` x :data:`_RADII`, measured with the
    renderer's text bounding boxes); a far label gets a thin leader line. Returns the
    annotations. The figure is laid out first, so the positions hold when it is saved."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.transforms import Bbox

    fig = ax.figure
    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    fig.canvas.draw()  # constrained layout settles the axes before anything is measured
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    to_px = fig.dpi / 72
    markers = [Bbox.from_bounds(px - 4 * to_px, py - 4 * to_px, 8 * to_px, 8 * to_px)
               for px, py in ax.transData.transform(np.asarray(xy, dtype=float).reshape(-1, 2))]
    placed: list[Bbox] = []
    out = []
    for (x, y), text in zip(xy, texts, strict=True):
        ann = ax.annotate(text, (x, y), xytext=(0, 0), textcoords="offset points",
                          fontsize="x-small", annotation_clip=False)
        ann.set_in_layout(False)  # labels never resize the axes after placement
        best, best_cost = None, math.inf
        for r in _RADII:
            for dx, dy in _DIRECTIONS:
                ann.xyann = (dx * r, dy * r)
                ann.set_ha("left" if dx > 0 else "right" if dx < 0 else "center")
                ann.set_va("bottom" if dy > 0 else "top" if dy < 0 else "center")
                box = ann.get_window_extent(renderer)
                cost = sum(_overlap(box, b) for b in placed + markers) + \
                    _outside(box, frame)
                if cost < best_cost:
                    best, best_cost = (ann.xyann, ann.get_ha(), ann.get_va(), box, r), cost
                if cost == 0:
                    break
            if best_cost == 0:
                break
        xyann, ha, va, box, r = best
        ann.remove()  # the probe; the label is drawn with its final place (and leader line)
        arrow = dict(arrowstyle="-", lw=0.5, color="0.5", shrinkA=0, shrinkB=3) \
            if r > _RADII[1] else None
        ann = ax.annotate(text, (x, y), xytext=xyann, textcoords="offset points", ha=ha,
                          va=va, fontsize="x-small", annotation_clip=False, arrowprops=arrow)
        ann.set_in_layout(False)  # labels never resize the axes after placement
        placed.append(box)
        out.append(ann)
    return out


def _overlap(a, b) -> float:
    """Area (px^2) where two boxes overlap."""
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return w * h if w > 0 and h > 0 else 0.0


def _outside(box, frame) -> float:
    """Area (px^2) of ``box`` outside the axes (weighted: a label must stay readable)."""
    return 10 * (box.width * box.height - _overlap(box, frame))
