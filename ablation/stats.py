"""Effects with 95% confidence intervals: one statistic for every comparison of the book.

An *effect* is the PSNR of a variant minus the PSNR of the run it is compared with, in dB, on
one benchmark set or on the equal-weight mean over several sets. Its uncertainty has two
sources, and the interval accounts for both:

- **seeds**: a second training run of the same configuration (another initialisation and patch
  order) scores differently. Estimated from the spread of each side's per-seed scores
  (``var / n_seeds``); it needs at least two seeds of a side. A computed side (bicubic) is
  deterministic and contributes nothing.
- **images**: the benchmark images are a sample of the images the network could be asked to
  upscale. Estimated from the paired per-image differences (both sides scored on the same
  images; each image's PSNR first averaged over seeds): ``var / n_images``. This term also
  carries the seed-by-image noise already counted in the seed term, which makes the interval
  slightly conservative.

The two variance components are added and the interval is ``effect ± t(df) * sqrt(var)`` with
the Welch-Satterthwaite degrees of freedom (Satterthwaite 1946; Welch 1947), so that three seeds
give the wide t(2)-like interval they deserve rather than a normal one. A percentile bootstrap
over three seeds would be too narrow (Hesterberg 2015, "narrowness bias"); the book's method
page explains the choice.

With a single seed on a trained side the seed term is *not estimated*: the interval covers the
images (and the other side's seeds) only, :attr:`Effect.seed_estimated` is False and every text
calls the verdict provisional. Tensor shapes: one ``(n_seeds, n_images)`` array per side and set.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

LEVEL = 0.95  # the confidence level of every interval in the book
BETTER, WORSE, NO_DIFFERENCE = "better", "worse", "no difference detected at this budget"
NO_INTERVAL = "no interval (no spread to estimate it from): not judged"
VERDICTS = (BETTER, WORSE, NO_DIFFERENCE, NO_INTERVAL)


@dataclass(frozen=True)
class Effect:
    """A variant minus its comparison run, in dB, with its interval and what it rests on."""

    effect: float
    low: float  # NaN when nothing could be estimated
    high: float
    n_variant: int  # seeds of the variant
    n_reference: int  # seeds of the comparison run (1 for a computed reference)
    n_images: int  # paired images, summed over the sets
    seed_estimated: bool  # False: a trained side has a single seed (seed term unknown)
    df: float = math.nan

    @property
    def has_interval(self) -> bool:
        """False when neither seeds nor images gave a variance (e.g. one image and one
        seed, or identical scores everywhere)."""
        return not (math.isnan(self.low) or math.isnan(self.high))

    @property
    def verdict(self) -> str:
        """From the interval alone: better / worse / no difference detected at this budget."""
        if not self.has_interval:
            return NO_INTERVAL
        if self.low > 0:
            return BETTER
        if self.high < 0:
            return WORSE
        return NO_DIFFERENCE

    @property
    def provisional(self) -> bool:
        """The verdict rests on an interval without the seed-to-seed term."""
        return self.has_interval and not self.seed_estimated

    def interval_text(self) -> str:
        """'+0.12 dB [−0.03, +0.27]' (the interval left out when there is none)."""
        head = f"{signed(self.effect)} dB"
        if not self.has_interval:
            return head + " (no interval)"
        return f"{head} [{signed(self.low)}, {signed(self.high)}]"

    def basis_text(self) -> str:
        """What the interval rests on: seeds per side, and the caveat with one seed."""
        seeds = f"{self.n_variant} vs {self.n_reference} seed{'s' if self.n_reference > 1 else ''}"
        if self.seed_estimated:
            return f"{seeds}, {self.n_images} images"
        return (f"{seeds}, {self.n_images} images; seed-to-seed spread not estimated "
                "(one seed), so the interval covers the images only")

    def verdict_text(self) -> str:
        """The verdict, marked provisional when the seed term is missing."""
        return f"{self.verdict} (provisional)" if self.provisional else self.verdict


def signed(x: float) -> str:
    """'+0.12', '−0.30' with a real minus sign, '±0.00' for a rounded zero."""
    text = f"{x:+.2f}"
    if text in ("+0.00", "-0.00"):
        return "±0.00"
    return text.replace("-", "−")


def effect(sets: Sequence[tuple[np.ndarray, np.ndarray]], computed: tuple[bool, bool] = (False,
           False), level: float = LEVEL) -> Effect:
    """The effect over ``sets`` (equal weight per set) with its ``level`` interval.

    ``sets``: one ``(variant, reference)`` pair per set, each an array ``(n_seeds, n_images)``
    of per-image PSNR, the images in the same order on both sides (paired) and every seed of a
    side in the same row order across sets. ``computed``: (variant, reference) sides that are
    deterministic (bicubic): they have no seed term. Raises ValueError on empty input.
    """
    from scipy.special import stdtrit  # the t quantile, without scipy.stats' overhead

    if not sets:
        raise ValueError("no sets to compare")
    arrays = [(np.atleast_2d(np.asarray(v, float)), np.atleast_2d(np.asarray(r, float)))
              for v, r in sets]
    for v, r in arrays:
        if v.shape[1] != r.shape[1] or v.shape[1] == 0 or 0 in (v.shape[0], r.shape[0]):
            raise ValueError(f"unpaired or empty arrays: {v.shape} vs {r.shape}")
    n_v, n_r = arrays[0][0].shape[0], arrays[0][1].shape[0]
    if any(v.shape[0] != n_v or r.shape[0] != n_r for v, r in arrays):
        raise ValueError("every set needs the same seeds on a side")
    w = 1.0 / len(arrays)
    est = w * sum(v.mean() - r.mean() for v, r in arrays)
    components: list[tuple[float, float]] = []  # (variance of the estimate, degrees of freedom)
    seed_estimated = True
    for side, n, is_computed in ((0, n_v, computed[0]), (1, n_r, computed[1])):
        if is_computed:
            continue
        if n < 2:
            seed_estimated = False
            continue
        per_seed = w * sum(pair[side].mean(axis=1) for pair in arrays)  # (n_seeds,)
        components.append((float(per_seed.var(ddof=1)) / n, n - 1.0))
    for v, r in arrays:
        diff = v.mean(axis=0) - r.mean(axis=0)  # (n_images,): paired by image
        if diff.size >= 2:
            components.append((w * w * float(diff.var(ddof=1)) / diff.size, diff.size - 1.0))
    n_images = sum(v.shape[1] for v, _ in arrays)
    var = sum(c for c, _ in components)
    if var == 0.0:  # nothing varies (or nothing to vary): a zero-width interval is no estimate
        return Effect(float(est), math.nan, math.nan, n_v, n_r, n_images, seed_estimated)
    df = var * var / sum(c * c / d for c, d in components if c > 0)
    half = float(stdtrit(df, 0.5 + level / 2)) * math.sqrt(var)
    return Effect(float(est), float(est - half), float(est + half), n_v, n_r, n_images,
                  seed_estimated, float(df))
