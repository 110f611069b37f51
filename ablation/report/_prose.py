"""Generated prose: the sentences of the conclusions, computed from the tables.

Each sentence states a number and what it is measured against (the comparison run, the
seed-noise band, the original study's README), so a page never claims more than its results
folder supports.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd

from ablation.literature import ORIGINAL_CAVEATS, original_psnr
from ablation.planning import NOISE_RUN_NAME, NOISE_SCALE
from ablation.tasks import BICUBIC, REFERENCE, Task, get_task

from ._html import SMOKE_WARNING, esc, fmt_delta, is_smoke
from ._tables import NoiseBand, aggregate_seeds, computed_mask, ordered_sets, table_sets

NOISE_EXPLAINED = (
    "A difference counts as a finding only when it is larger than the seed-noise band: twice "
    f"the standard deviation over seeds of the {NOISE_RUN_NAME} at the same scale and set. The "
    "band is unknown while fewer than two seeds of that baseline exist (run with "
    "<code>seeds = [0, 1, 2]</code>).")


def primary_comparison(task: Task) -> tuple[int, str]:
    """The run a task's variants are measured against: its first compare_to, else bicubic."""
    return task.compare_to[0] if task.compare_to else (REFERENCE.number, BICUBIC.name)


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
    return get_task(task).variant(variant).loss


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


def noise_band_text(bands: dict[tuple[int, str], NoiseBand]) -> str:
    """One sentence listing the seed-noise band per scale and set."""
    known = {k: b for k, b in bands.items() if b.width is not None}
    if not known:
        return (f"<b>Seed-noise band</b>: unknown (fewer than two seeds of the {NOISE_RUN_NAME}); "
                "no difference in the table can be called a finding yet.")
    parts = []
    for scale in sorted({k[0] for k in known}):
        cells = ", ".join(f"{esc(s)} ±{known[(scale, s)].width:.2f} dB"
                          for s in ordered_sets(k[1] for k in known if k[0] == scale))
        n = max(b.n_seeds for k, b in known.items() if k[0] == scale)
        parts.append(f"x{scale} ({n} seeds): {cells}")
    return ("<b>Seed-noise band</b> (twice the standard deviation over seeds of the "
            f"{NOISE_RUN_NAME}; a difference smaller than this is not a finding): "
            + "; ".join(parts) + ".")


def _overall_html(runs: pd.DataFrame, profile: str, scales: Iterable[int],
                  seeds: list[int]) -> str:
    """Best small net per scale and set, against bicubic and our EDSR-baseline."""
    if runs.empty:
        return "<p>No finished runs yet: run <code>ablation sweep</code>.</p>"
    agg = aggregate_seeds(runs[runs.seed.isin(seeds) | computed_mask(runs)])
    items = []
    for scale in scales:
        for s in ordered_sets(agg.set):
            sub = agg[(agg.scale == scale) & (agg.set == s)]
            small = sub[sub.task != REFERENCE.number]
            if small.empty:
                continue
            best = small.loc[small.psnr.idxmax()]
            text = (f"<b>x{scale}, {esc(s)}</b>: the best small net is <i>{esc(best.label)}</i> "
                    f"(task {int(best.task)}) at {best.psnr:.2f} dB")
            for variant, name in ((BICUBIC.name, "bicubic"),
                                  ("edsr_baseline", "our EDSR-baseline")):
                ref = sub[sub.variant == variant]
                if len(ref):
                    text += f", {fmt_delta(best.psnr - float(ref.psnr.iloc[0]))} dB against {name}"
            items.append(f"<li>{text}.</li>")
    smoke = f"<p><b>{SMOKE_WARNING}.</b></p>" if is_smoke(profile) else ""
    return f"{smoke}<h3>Overall</h3><ul>{''.join(items)}</ul>"
