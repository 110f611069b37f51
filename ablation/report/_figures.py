"""Figures: matplotlib only, drawn on a Figure that never touches pyplot's global state, saved
as PNG (shown in the notebook) and SVG (for print) under ``results/<profile>/figures``."""

from __future__ import annotations

import base64
import io
import math
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ablation import paths
from ablation.fs import atomic_write_bytes

from ._html import esc

if TYPE_CHECKING:
    from matplotlib.figure import Figure

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
