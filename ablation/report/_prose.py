"""Generated prose: the sentences of the conclusions, computed from the tables.

Each sentence states an effect with its 95% interval and what it is measured against (the
comparison run, the original study's README), and its verdict comes from that interval alone
(:mod:`ablation.stats`), so no two sentences of a page can disagree and a page never claims
more than its results folder supports. With one seed of a trained run the verdict is called
provisional (the interval has no seed-to-seed term).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd

from ablation import stats
from ablation.models import VANISHED_BODY
from ablation.tasks import BICUBIC, REFERENCE, get_task

from ._effects import MEAN_SET, NOT_IN_ORIGINAL, effect_of, not_in_original
from ._html import SMOKE_WARNING, esc, fmt_delta, fmt_gain, is_smoke
from ._tables import aggregate_seeds, ordered_sets, table_sets


def conclusion_text(task: int, table: pd.DataFrame, profile: str, effects: pd.DataFrame,
                    losses: dict[tuple[int, str, int], float] | None = None,
                    gains: dict[tuple[int, str, int], dict[int, float]] | None = None) -> list[str]:
    """Sentences (HTML-safe text with <b>/<i>): per scale, the answer for every comparison of
    the task (``effects``: :func:`effects_table` rows of this task), then which model is best
    on each set, then the runs not run."""
    lines = []
    if is_smoke(profile):
        lines.append(f"<b>{SMOKE_WARNING}</b>: the smoke profile only checks that the "
                     "pipeline runs.")
    sets = table_sets(table)
    own = effects[effects.task == task] if len(effects) else effects
    for scale, sub in table.groupby("scale", sort=False):
        eff = own[own.scale == scale]
        for _, rows in eff.groupby(["variant", "ref_task", "ref_variant"], sort=False):
            lines.append(answer_sentence(rows, int(scale), losses, gains))
        for s in sets:
            col = f"{s} PSNR"
            ok = sub[sub[col].notna()]
            if ok.empty:
                lines.append(f"x{scale}, {esc(s)}: no finished runs yet.")
                continue
            win = ok.loc[ok[col].idxmax()]
            n = int(win.seeds)
            lines.append(f"<b>x{scale}, {esc(s)}</b>: highest PSNR: <i>{esc(win.label)}</i> at "
                         f"{win[col]:.2f} dB (mean of {n} seed{'s' if n != 1 else ''}).")
    not_run = table[table.status.str.startswith("not run")]
    for _, r in not_run.iterrows():
        lines.append(f"<i>{esc(r.label)}</i> (x{r.scale}) was {esc(r.status)}.")
    return lines


def effect_phrase(row: pd.Series) -> str:
    """'−0.83 dB [−1.10, −0.57]: <b>worse</b>' for one effects row (verdict from the interval,
    marked provisional with one seed)."""
    e = effect_of(row)
    return f"{e.interval_text()}: <b>{esc(e.verdict_text())}</b>"


def answer_sentence(rows: pd.DataFrame, scale: int,
                    losses: dict[tuple[int, str, int], float] | None = None,
                    gains: dict[tuple[int, str, int], dict[int, float]] | None = None) -> str:
    """The answer for one comparison at one scale (``rows``: its effects rows, per set and the
    mean): the mean effect with its interval and verdict, the per-set effects, why a worse
    variant loses (``losses``/``gains``, see :func:`fit_sentence`) and the original study's
    difference on the same sets, read against our interval."""
    first = rows.iloc[0]
    diag = f" ({NOT_IN_ORIGINAL})" if not_in_original(int(first.task), first.variant) else ""
    head = (f"<b>Answer (x{scale})</b>: <i>{esc(first.label)}</i>{diag} against "
            f"<i>{esc(first.ref_label)}</i>")
    mean = rows[rows.set == MEAN_SET]
    if first.status != "ok" or mean.empty:
        why = f" ({esc(first.diverged)})" if first.diverged else ""
        return f"{head}: {esc(first.status if first.status != 'ok' else 'no result yet')}{why}."
    m = mean.iloc[0]
    e = effect_of(m)
    per_set = rows[rows.set != MEAN_SET]
    n_sets = len(per_set)
    where = f"the mean of the {n_sets} sets" if n_sets != 1 else esc(per_set.set.iloc[0])
    text = f"{head}: {effect_phrase(m)} on {where} (95% interval; {esc(e.basis_text())})."
    if m.diverged:
        text += f" Not in the interval: {esc(m.diverged)}."
    if n_sets > 1:
        text += " Per set: " + "; ".join(f"{esc(r.set)} {effect_phrase(r)}"
                                         for _, r in per_set.iterrows()) + "."
    if e.verdict == stats.WORSE:
        v = pd.Series(dict(task=first.task, variant=first.variant))
        ref = pd.Series(dict(task=first.ref_task, variant=first.ref_variant))
        text += fit_sentence(v, ref, scale, losses or {}, gains)
    return text + _original_sentence(m, e)


def _original_sentence(m: pd.Series, e: stats.Effect) -> str:
    """The original study's README difference on the same sets, against our interval."""
    if isinstance(m.original, float) and math.isnan(m.original):
        return ""
    text = f" The original study's README: {fmt_delta(m.original)} dB on the same sets"
    if m.original_caveat:
        return text + f" (a row it reports can't be taken at face value: {esc(m.original_caveat)})."
    if not e.has_interval:
        return text + "."
    inside = e.low <= m.original <= e.high
    where = "inside" if inside else "outside"
    if e.verdict == stats.NO_DIFFERENCE:
        return text + f", {where} our interval (we detect no difference at this budget)."
    same = (m.original > 0) == (e.verdict == stats.BETTER)
    return text + (f", {where} our interval ("
                   f"{'same direction as' if same else 'opposite direction to'} ours).")


def fit_sentence(v: pd.Series, ref: pd.Series, scale: int,
                 losses: dict[tuple[int, str, int], float],
                 gains: dict[tuple[int, str, int], dict[int, float]] | None = None) -> str:
    """Why a variant scores lower, from its final training loss against the comparison's:
    higher = it fits the training patches worse (under-trained at this budget), lower = it
    fits them better but generalises worse; plus, for the seeds whose body output vanished
    (:func:`~ablation.models.body_gain` under :data:`VANISHED_BODY`, ``gains``: {seed: gain} per
    run), that the body never trained, and in how many of the probed seeds. Empty when
    nothing applies."""
    key_v = (int(v.task), str(v.variant), scale)
    key_r = (int(ref.task), str(ref.variant), scale)
    return _body_sentence(key_v, key_r, gains or {}) + _loss_comparison(key_v, key_r, losses)




def _body_sentence(key_v: tuple[int, str, int], key_r: tuple[int, str, int],
                   gains: dict[tuple[int, str, int], dict[int, float]]) -> str:
    """The vanished-body part of :func:`fit_sentence`."""
    probed = gains.get(key_v, {})
    dead = {s: g for s, g in sorted(probed.items()) if g < VANISHED_BODY}
    if not dead:
        return ""
    ref = gains.get(key_r, {})
    ref_gain = f" (the comparison's: {np.mean(list(ref.values())):.2f})" if ref else ""
    sizes = ", ".join(fmt_gain(g) for g in dead.values())
    why = (" With PyTorch's default initialisation each conv-ReLU layer shrinks the signal, so "
           "a deep plain body starts near zero, its gradients vanish and it never trains: the "
           "network is left with its linear head-upsampler-tail path.")
    if len(dead) == len(probed):
        where = "" if len(probed) == 1 else f" in all {len(probed)} seeds probed"
        return (f" Its body adds almost nothing{where}: its output is {sizes} times the size "
                f"of its input{ref_gain}.{why}")
    alive = {s: g for s, g in sorted(probed.items()) if g >= VANISHED_BODY}
    return (f" In {len(dead)} of its {len(probed)} seeds probed ({_seeds(dead)}) its body adds "
            f"almost nothing: its output is {sizes} times the size of its input{ref_gain}."
            f"{why} In {_seeds(alive)} the body does train (output "
            f"{', '.join(fmt_gain(g) for g in alive.values())} times its input): at this budget "
            "whether a deep plain body trains at all depends on the seed.")


def _seeds(gains: dict[int, float]) -> str:
    """'seed 1' / 'seeds 0 and 2' / 'seeds 0, 1 and 2'."""
    names = [str(s) for s in gains]
    if len(names) == 1:
        return f"seed {names[0]}"
    return f"seeds {', '.join(names[:-1])} and {names[-1]}"


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


def _overall_html(runs: pd.DataFrame, profile: str, scales: Iterable[int]) -> str:
    """Best small net per scale and set (mean over every seed), against bicubic and our
    EDSR-baseline."""
    if runs.empty:
        return "<p>No finished runs yet: run <code>ablation sweep</code>.</p>"
    agg = aggregate_seeds(runs)
    items = []
    for scale in scales:
        for s in ordered_sets(agg.set):
            sub = agg[(agg.scale == scale) & (agg.set == s)]
            small = sub[sub.task != REFERENCE.number]
            if small.empty:
                continue
            best = small.loc[small.psnr.idxmax()]
            text = (f"<b>x{scale}, {esc(s)}</b>: the best small net is <i>{esc(best.label)}</i> "
                    f"(task {int(best.task)}) at {best.psnr:.2f} dB (mean of {int(best.n)} "
                    f"seed{'s' if best.n != 1 else ''})")
            for variant, name in ((BICUBIC.name, "bicubic"),
                                  ("edsr_baseline", "our EDSR-baseline")):
                ref = sub[sub.variant == variant]
                if len(ref):
                    text += f", {fmt_delta(best.psnr - float(ref.psnr.iloc[0]))} dB against {name}"
            items.append(f"<li>{text}.</li>")
    smoke = f"<p><b>{SMOKE_WARNING}.</b></p>" if is_smoke(profile) else ""
    return f"{smoke}<h3>Overall</h3><ul>{''.join(items)}</ul>"
