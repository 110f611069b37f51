"""The torch MATLAB-bicubic against a reference written straight from MATLAB's imresize.m."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ablation.degradation import (
    bicubic_down,
    bicubic_up,
    degrade,
    gaussian_blur,
    imresize,
    modcrop,
    quantize,
)


def _matlab_cubic(x: float) -> float:
    ax = abs(x)
    if ax <= 1:
        return 1.5 * ax**3 - 2.5 * ax**2 + 1
    if ax <= 2:
        return -0.5 * ax**3 + 2.5 * ax**2 - 4 * ax + 2
    return 0.0


def _matlab_contributions(in_len: int, out_len: int, scale: float, antialias: bool = True):
    """imresize.m's ``contributions``, one output pixel at a time, 1-based like MATLAB."""
    kernel_width = 4.0
    aa = scale < 1 and antialias
    if aa:
        kernel_width /= scale
    aux = list(range(1, in_len + 1)) + list(range(in_len, 0, -1))  # symmetric padding
    rows = []
    for x in range(1, out_len + 1):
        u = x / scale + 0.5 * (1 - 1 / scale)
        left = math.floor(u - kernel_width / 2)
        p = math.ceil(kernel_width) + 2
        idx = [left + j for j in range(p)]
        w = [(scale * _matlab_cubic(scale * (u - i)) if aa else _matlab_cubic(u - i)) for i in idx]
        total = sum(w)
        w = [v / total for v in w]
        src = [aux[(i - 1) % len(aux)] - 1 for i in idx]  # back to 0-based
        rows.append(list(zip(src, w, strict=True)))
    return rows


def _reference_resize(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """MATLAB imresize of a 2-D float64 array with plain loops (slow, obviously correct)."""
    in_h, in_w = img.shape
    sh, sw = out_h / in_h, out_w / in_w
    order = ["w", "h"] if sw < sh else ["h", "w"]  # smaller scale first, rows on a tie
    x = img.astype(np.float64)
    for axis in order:
        if axis == "h":
            contrib = _matlab_contributions(in_h, out_h, sh)
            y = np.zeros((out_h, x.shape[1]))
            for o, pairs in enumerate(contrib):
                for s, w in pairs:
                    y[o] += w * x[s]
        else:
            contrib = _matlab_contributions(in_w, out_w, sw)
            y = np.zeros((x.shape[0], out_w))
            for o, pairs in enumerate(contrib):
                for s, w in pairs:
                    y[:, o] += w * x[:, s]
        x = y
    return x


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("shape", [(24, 36), (27, 33), (30, 18)])
def test_downscale_matches_matlab_reference(scale, shape):
    rng = np.random.default_rng(scale * 100 + shape[0])
    h, w = (shape[0] // scale) * scale, (shape[1] // scale) * scale
    img = rng.integers(0, 256, size=(h, w)).astype(np.float64)
    ours = bicubic_down(torch.from_numpy(img), scale).numpy()
    ref = _reference_resize(img, h // scale, w // scale)
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() < 1e-4


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("shape", [(7, 9), (10, 5), (13, 13)])
def test_upscale_matches_matlab_reference(scale, shape):
    rng = np.random.default_rng(scale + shape[1])
    img = rng.integers(0, 256, size=shape).astype(np.float64)
    ours = bicubic_up(torch.from_numpy(img), scale).numpy()
    ref = _reference_resize(img, shape[0] * scale, shape[1] * scale)
    assert ours.shape == (shape[0] * scale, shape[1] * scale)
    assert np.abs(ours - ref).max() < 1e-4


def test_non_integer_size_and_odd_scale():
    rng = np.random.default_rng(0)
    img = rng.random((17, 23)) * 255
    ours = imresize(torch.from_numpy(img), size=(11, 9)).numpy()
    assert np.abs(ours - _reference_resize(img, 11, 9)).max() < 1e-4


def test_batched_and_channels_match_per_image():
    torch.manual_seed(0)
    batch = torch.rand(2, 3, 12, 18, dtype=torch.float64) * 255
    out = bicubic_down(batch, 3)
    assert out.shape == (2, 3, 4, 6)
    single = bicubic_down(batch[1, 2], 3)
    assert torch.allclose(out[1, 2], single, atol=1e-12)


def test_constant_image_is_preserved_and_weights_sum_to_one():
    img = torch.full((1, 1, 12, 12), 77.0, dtype=torch.float64)
    for s in (2, 3, 4):
        assert torch.allclose(bicubic_down(img, s), torch.full_like(bicubic_down(img, s), 77.0))
        assert torch.allclose(bicubic_up(img, s), torch.full((1, 1, 12 * s, 12 * s), 77.0,
                                                             dtype=torch.float64))


def test_float32_path_close_to_float64():
    torch.manual_seed(1)
    img = torch.rand(1, 3, 48, 48) * 255
    a = bicubic_down(img.double(), 2)
    b = bicubic_down(img, 2, dtype=torch.float32)
    assert (a - b.double()).abs().max() < 1e-3


def test_quantize_rounds_half_away_from_zero_and_clamps():
    x = torch.tensor([-3.0, 0.5, 1.5, 2.5, 254.5, 255.4, 300.0], dtype=torch.float64)
    assert quantize(x).tolist() == [0.0, 1.0, 2.0, 3.0, 255.0, 255.0, 255.0]


def test_modcrop_and_non_multiple_error():
    img = torch.zeros(1, 3, 13, 14)
    assert modcrop(img, 3).shape[-2:] == (12, 12)
    with pytest.raises(ValueError, match="multiple of scale"):
        bicubic_down(img, 3)


def test_degrade_default_is_protocol_and_noise_is_reproducible():
    torch.manual_seed(2)
    hr = torch.rand(2, 3, 24, 24, dtype=torch.float64) * 255
    assert torch.equal(degrade(hr, 2), quantize(bicubic_down(hr, 2)))
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    a = degrade(hr, 2, blur_sigma=1.0, noise_sigma=5.0, generator=g1)
    b = degrade(hr, 2, blur_sigma=1.0, noise_sigma=5.0, generator=g2)
    assert torch.equal(a, b)
    clean = degrade(hr, 2, blur_sigma=1.0)
    diff = (degrade(hr, 2, blur_sigma=1.0, noise_sigma=5.0, round_output=False,
                    generator=torch.Generator().manual_seed(3)) - bicubic_down(
        gaussian_blur(hr, 1.0), 2))
    assert 4.0 < diff.std().item() < 6.0  # the noise has the requested sigma
    assert not torch.equal(clean, a)
    with pytest.raises(ValueError, match="Generator"):
        degrade(hr, 2, noise_sigma=1.0)


def test_gaussian_blur_preserves_mean_of_constant():
    img = torch.full((1, 3, 16, 16), 10.0, dtype=torch.float64)
    assert torch.allclose(gaussian_blur(img, 1.5), img)
