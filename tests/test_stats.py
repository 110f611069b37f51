"""ablation.stats on synthetic runs with a known effect: the interval's coverage, the verdict of
a zero effect, and what one seed or one image leave of the interval."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ablation import stats


def synthetic(rng: np.random.Generator, delta: float, n_v: int, n_r: int,
              images: tuple[int, ...], seed_sd: float, image_sd: float, noise_sd: float):
    """Per-image PSNR of two runs: image difficulty shared by both, a per-image effect around
    ``delta`` (sd ``image_sd``), a per-seed offset shared by a seed's images (``seed_sd``) and
    seed-by-image noise (``noise_sd``); one (variant, reference) pair per set."""
    b_v, b_r = rng.normal(0, seed_sd, n_v), rng.normal(0, seed_sd, n_r)
    sets = []
    for m in images:
        difficulty = rng.normal(30, 2, m)
        d = rng.normal(delta, image_sd, m)
        v = difficulty + d + b_v[:, None] + rng.normal(0, noise_sd, (n_v, m))
        r = difficulty + b_r[:, None] + rng.normal(0, noise_sd, (n_r, m))
        sets.append((v, r))
    return sets


@pytest.mark.parametrize("delta, images, seed_sd, image_sd", [
    (0.3, (5, 14), 0.05, 0.05),  # seeds and images matter alike
    (-0.2, (5, 14, 20, 20), 0.02, 0.15),  # the images dominate
])
def test_interval_covers_the_true_effect_about_95_percent(delta, images, seed_sd, image_sd):
    rng = np.random.default_rng(1234)
    draws = 1000
    hits = sum(e.low <= delta <= e.high for e in (
        stats.effect(synthetic(rng, delta, 3, 3, images, seed_sd, image_sd, 0.01))
        for _ in range(draws)))
    assert 0.92 <= hits / draws <= 0.98


def test_a_zero_effect_is_called_no_difference_about_95_percent():
    rng = np.random.default_rng(99)
    draws = 1000
    verdicts = [stats.effect(synthetic(rng, 0.0, 3, 3, (5, 14), 0.05, 0.05, 0.01)).verdict
                for _ in range(draws)]
    share = verdicts.count(stats.NO_DIFFERENCE) / draws
    assert 0.92 <= share <= 0.98
    # the rest split between the two false calls, neither always
    assert verdicts.count(stats.BETTER) > 0 and verdicts.count(stats.WORSE) > 0


def test_a_large_effect_is_detected_and_signed():
    rng = np.random.default_rng(5)
    e = stats.effect(synthetic(rng, -1.0, 3, 3, (5, 14), 0.05, 0.05, 0.01))
    assert e.verdict == stats.WORSE and e.high < 0 and e.seed_estimated
    assert e.effect == pytest.approx(-1.0, abs=0.15)


def test_two_seeds_against_three_use_the_t_distribution():
    # seeds only (every image equal): var = s_v^2/2 + s_r^2/3, Welch-Satterthwaite df
    v = np.array([[37.0] * 4, [37.2] * 4])
    r = np.array([[36.9] * 4, [37.0] * 4, [37.1] * 4])
    e = stats.effect([(v, r)])
    assert e.effect == pytest.approx(0.1)
    c_v, c_r = 0.02 / 2, 0.01 / 3  # sample variances 0.02 and 0.01
    df = (c_v + c_r) ** 2 / (c_v ** 2 / 1 + c_r ** 2 / 2)
    from scipy import stats as sps

    half = sps.t.ppf(0.975, df) * math.sqrt(c_v + c_r)
    assert (e.low, e.high) == pytest.approx((0.1 - half, 0.1 + half))
    assert e.df == pytest.approx(df) and e.verdict == stats.NO_DIFFERENCE


def test_one_seed_leaves_the_seed_term_out_and_says_so():
    rng = np.random.default_rng(7)
    sets = synthetic(rng, 0.5, 1, 3, (14,), 0.05, 0.05, 0.01)
    e = stats.effect(sets)
    assert not e.seed_estimated and e.has_interval and e.provisional
    assert "seed-to-seed spread not estimated" in e.basis_text()
    assert e.verdict_text().endswith("(provisional)")
    # against a computed (deterministic) reference, one seed of it is all there is
    bicubic = stats.effect([(sets[0][0], sets[0][1][:1])], computed=(False, True))
    assert not bicubic.seed_estimated  # the variant still has one seed
    three = synthetic(rng, 0.5, 3, 1, (14,), 0.05, 0.05, 0.01)
    assert stats.effect(three, computed=(False, True)).seed_estimated


def test_one_image_and_one_seed_give_no_interval():
    e = stats.effect([(np.array([[30.5]]), np.array([[30.0]]))])
    assert e.effect == pytest.approx(0.5) and not e.has_interval
    assert e.verdict == stats.NO_INTERVAL and "no interval" in e.interval_text()


def test_mean_over_sets_weights_each_set_equally():
    v1, r1 = np.full((2, 5), 31.0), np.full((2, 5), 30.0)  # +1 on a 5-image set
    v2, r2 = np.full((2, 100), 30.0), np.full((2, 100), 30.0)  # 0 on a 100-image set
    assert stats.effect([(v1, r1), (v2, r2)]).effect == pytest.approx(0.5)
    with pytest.raises(ValueError):
        stats.effect([(v1, r1[:, :4])])
    assert stats.signed(-0.304) == "−0.30" and stats.signed(0.001) == "±0.00"
