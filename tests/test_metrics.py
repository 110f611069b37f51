"""PSNR/SSIM on hand-computable cases, against scikit-image, and the published bicubic row."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from ablation.evaluate import Bicubic, evaluate, summarize
from ablation.metrics import psnr, psnr_ssim, ssim, to_y

# EDSR paper Table 3 (bicubic), PSNR / SSIM, see shared/reference/published-results.md
PUBLISHED_BICUBIC = {
    ("Set5", 2): (33.66, 0.9299), ("Set5", 3): (30.39, 0.8682), ("Set5", 4): (28.42, 0.8104),
    ("Set14", 2): (30.24, 0.8688), ("Set14", 3): (27.55, 0.7742), ("Set14", 4): (26.00, 0.7027),
    ("B100", 2): (29.56, 0.8431), ("B100", 3): (27.21, 0.7385), ("B100", 4): (25.96, 0.6675),
    ("Urban100", 2): (26.88, 0.8403), ("Urban100", 3): (24.46, 0.7349),
    ("Urban100", 4): (23.14, 0.6577),
}


def test_y_channel_is_matlab_bt601_studio_range():
    black = torch.zeros(1, 3, 1, 1)
    white = torch.full((1, 3, 1, 1), 255.0)
    red = torch.tensor([255.0, 0, 0]).view(1, 3, 1, 1)
    assert to_y(black).item() == pytest.approx(16.0)
    assert to_y(white).item() == pytest.approx(235.0, abs=1e-9)
    assert to_y(red).item() == pytest.approx(16 + 65.481)
    gray = torch.full((1, 1, 2, 2), 100.0)
    assert torch.equal(to_y(gray), gray.double())  # single channel: raw intensity


def test_psnr_hand_computed():
    hr = torch.full((1, 1, 10, 10), 100.0)
    sr = hr.clone()
    sr[..., 0, 0] = 110.0  # one pixel off by 10 -> MSE = 100 / 100 = 1
    assert psnr(sr, hr) == pytest.approx(10 * math.log10(255**2 / 1.0))
    assert psnr(sr, hr, border=1) == math.inf  # the bad pixel is in the shaved border
    assert psnr(hr, hr) == math.inf


def test_psnr_on_rgb_scales_difference_by_luma_weights():
    hr = torch.full((1, 3, 8, 8), 50.0)
    sr = hr + torch.tensor([2.0, 0.0, 0.0]).view(1, 3, 1, 1)
    dy = 2.0 * 65.481 / 255
    assert psnr(sr, hr) == pytest.approx(10 * math.log10(255**2 / dy**2))


def test_sr_is_rounded_before_scoring():
    hr = torch.full((1, 1, 4, 4), 100.0)
    assert psnr(hr + 0.4, hr) == math.inf  # rounds back to 100
    assert psnr(hr + 0.4, hr, round_sr=False) < 100


def test_ssim_matches_skimage_gaussian_protocol():
    rng = np.random.default_rng(0)
    hr = rng.integers(0, 256, (1, 1, 40, 48)).astype(np.float64)
    sr = np.clip(hr + rng.normal(0, 12, hr.shape), 0, 255).round()
    ours = ssim(torch.from_numpy(sr), torch.from_numpy(hr))
    ref = structural_similarity(sr[0, 0], hr[0, 0], gaussian_weights=True, sigma=1.5,
                                use_sample_covariance=False, data_range=255)
    assert ours == pytest.approx(ref, abs=1e-6)
    assert ssim(torch.from_numpy(hr), torch.from_numpy(hr)) == pytest.approx(1.0)


def test_gray_hr_with_rgb_sr_scores_channel_mean():
    hr = torch.full((1, 1, 16, 16), 80.0)
    sr = torch.full((1, 3, 16, 16), 80.0)
    p, s = psnr_ssim(sr, hr, border=0)
    assert p == math.inf and s == pytest.approx(1.0)


def _check_cells(data_dir, sets):
    rows = []
    for scale in (2, 3, 4):
        table = summarize(evaluate(Bicubic(scale), sets, scale, "bicubic", data_dir))
        for r in table.itertuples():
            want_psnr, want_ssim = PUBLISHED_BICUBIC[(r.set, scale)]
            tol = 0.03 if r.set == "Set5" else 0.02
            rows.append((r.set, scale, r.psnr, r.ssim))
            assert abs(r.psnr - want_psnr) <= tol, (r.set, scale, r.psnr, want_psnr)
            assert abs(r.ssim - want_ssim) <= 0.002, (r.set, scale, r.ssim, want_ssim)
    return rows


def test_bicubic_reproduces_published_set5_set14(data_dir):
    rows = _check_cells(data_dir, ["Set5", "Set14"])
    assert len(rows) == 6


@pytest.mark.slow
def test_bicubic_reproduces_all_12_published_cells(data_dir):
    rows = _check_cells(data_dir, ["Set5", "Set14", "B100", "Urban100"])
    assert len(rows) == 12
    for r in rows:
        print(f"bicubic {r[0]:8s} x{r[1]} PSNR {r[2]:.2f} SSIM {r[3]:.4f}")
