"""Tiled inference, x8 self-ensemble and the Enhanced wrapper (ablation.inference)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from ablation.evaluate import Bicubic, evaluate, summarize
from ablation.inference import (
    Enhanced,
    _dihedral,
    _dihedral_inverse,
    auto_overlap,
    receptive_radius,
    split_axis,
    super_resolve,
    tile_grid,
)
from ablation.models import ModelSpec, build_model
from ablation.tasks import BASELINE, SRCNN3

TOL = 1.0 / 255.0
# Task 1-3 style (bicubic input) but narrower, so the HR-size convs stay fast.
BICUBIC_INPUT = replace(SRCNN3, n_feats=16, global_residual=True)


def _net(spec: ModelSpec, scale: int, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(spec, scale).eval()


def _image(h: int, w: int, c: int = 3, seed: int = 0) -> torch.Tensor:
    """A rounded ``(1, c, h, w)`` float64 image in [0, 255] with texture and edges."""
    g = torch.Generator().manual_seed(seed)
    return torch.floor(torch.rand(1, c, h, w, generator=g, dtype=torch.float64) * 256)


@pytest.mark.parametrize("spec", [BASELINE, BICUBIC_INPUT], ids=["baseline", "bicubic_input"])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_tiled_equals_whole_image(spec, scale):
    net = _net(spec, scale)
    lr = _image(23, 17)  # odd sizes, several tiles of uneven size
    whole = super_resolve(net, lr)
    tiled = super_resolve(net, lr, tile=7, overlap=None)
    assert tiled.shape == (1, 3, 23 * scale, 17 * scale)
    assert tiled.dtype == torch.float64
    assert (tiled - whole).abs().max().item() <= TOL


def test_default_overlap_covers_the_baseline():
    net = _net(BASELINE, 2)
    lr = _image(30, 21)
    assert receptive_radius(net) <= 16
    diff = super_resolve(net, lr, tile=8, overlap=16) - super_resolve(net, lr)
    assert diff.abs().max().item() <= TOL


def test_too_small_overlap_shows_seams():
    """The check above is not vacuous: without enough context the tiles do differ."""
    net = _net(BASELINE, 2)
    lr = _image(24, 24)
    diff = super_resolve(net, lr, tile=8, overlap=1) - super_resolve(net, lr)
    assert diff.abs().max().item() > 1.0


def test_residual_blocks_radius():
    spec = replace(BASELINE, block="res", n_blocks=2, body_conv=True)
    net = _net(spec, 4)
    lr = _image(19, 26)
    diff = super_resolve(net, lr, tile=9, overlap=auto_overlap(net)) - super_resolve(net, lr)
    assert diff.abs().max().item() <= TOL


def test_tile_larger_than_image_is_exact():
    net = _net(BASELINE, 3)
    lr = _image(11, 9)
    assert torch.equal(super_resolve(net, lr, tile=512), super_resolve(net, lr))


def test_matches_plain_forward():
    net = _net(BASELINE, 2)
    lr = _image(12, 10)
    with torch.no_grad():
        ref = net(lr.float()).double()
    assert (super_resolve(net, lr, tile=5) - ref).abs().max().item() <= TOL


def test_runs_in_parameter_dtype():
    net = _net(BASELINE, 2).double()
    lr = _image(13, 11)
    with torch.no_grad():
        ref = net(lr)
    assert (super_resolve(net, lr, tile=6, overlap=None) - ref).abs().max().item() < 1e-9


def test_gray_input_for_rgb_net_stays_gray():
    net = _net(BASELINE, 2)
    gray = _image(10, 14, c=1)
    out = super_resolve(net, gray, tile=6)
    with torch.no_grad():
        ref = net(gray.float().expand(-1, 3, -1, -1)).mean(dim=1, keepdim=True).double()
    assert out.shape == (1, 1, 20, 28)
    assert (out - ref).abs().max().item() <= TOL


def test_rgb_input_for_gray_net():
    net = _net(replace(BASELINE, n_colors=1), 2)
    rgb = _image(9, 8)
    out = super_resolve(net, rgb)
    with torch.no_grad():
        ref = torch.cat([net(rgb[:, i:i + 1].float()) for i in range(3)], dim=1).double()
    assert (out - ref).abs().max().item() <= TOL


def test_uint8_input_accepted():
    net = _net(BASELINE, 2)
    lr = _image(10, 10)
    assert torch.equal(super_resolve(net, lr.to(torch.uint8), tile=4),
                       super_resolve(net, lr, tile=4))


# --------------------------------------------------------------------------- self-ensemble


def test_dihedral_transforms_are_distinct_and_invertible():
    x = torch.arange(12.0).reshape(1, 1, 3, 4)
    seen = set()
    for k in range(8):
        t = _dihedral(x, k)
        assert torch.equal(_dihedral_inverse(t, k), x)
        seen.add((tuple(t.shape), tuple(t.flatten().tolist())))
    assert len(seen) == 8


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_self_ensemble_of_equivariant_op_is_identity(scale):
    """Bicubic commutes with flips and transposes, so its ensemble is itself."""
    bic = Bicubic(scale)
    lr = _image(13, 10)
    plain = super_resolve(bic, lr)
    ens = super_resolve(bic, lr, self_ensemble=True)
    assert (ens - plain).abs().max().item() < 1e-9
    tiled = super_resolve(bic, lr, tile=4, overlap=None, self_ensemble=True)
    assert (tiled - plain).abs().max().item() < 1e-9


def test_self_ensemble_averages_the_eight_predictions():
    net = _net(BASELINE, 2)
    lr = _image(8, 6)
    ens = super_resolve(net, lr, self_ensemble=True)
    with torch.no_grad():
        preds = [_dihedral_inverse(net(_dihedral(lr.float(), k)).double(), k) for k in range(8)]
    ref = torch.stack(preds).mean(dim=0)
    assert (ens - ref).abs().max().item() <= TOL
    assert (ens - super_resolve(net, lr)).abs().max().item() > TOL  # it did something
    tiled = super_resolve(net, lr, tile=3, overlap=None, self_ensemble=True)
    assert (tiled - ens).abs().max().item() <= TOL


# --------------------------------------------------------------------------- grid, wrapper


def test_split_axis_is_balanced_and_covers():
    assert split_axis(513, 512) == [(0, 256), (256, 513)]
    assert split_axis(10, None) == [(0, 10)]
    assert split_axis(10, 10) == [(0, 10)]
    boxes = tile_grid(23, 17, 7)
    covered = np.zeros((23, 17), int)
    for y0, y1, x0, x1 in boxes:
        covered[y0:y1, x0:x1] += 1
        assert y1 - y0 <= 7 and x1 - x0 <= 7
    assert (covered == 1).all()


def test_enhanced_wrapper_attributes_and_forward():
    net = _net(BASELINE, 3)
    enh = Enhanced(net, tile=5, self_ensemble=False)
    assert (enh.scale, enh.n_colors) == (3, 3)
    lr = _image(9, 11)
    assert (enh(lr) - super_resolve(net, lr)).abs().max().item() <= TOL
    assert Enhanced(Bicubic(2)).n_colors == 0


def test_enhanced_works_with_evaluate(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "myset"
    folder.mkdir()
    for i in range(2):
        y, x = np.mgrid[0:24, 0:30]
        img = np.stack([(x * 8 + i * 20) % 256, (y * 10) % 256, (x * y) % 256], 2)
        img = np.clip(img + rng.integers(-10, 10, img.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"im{i}.png")
    net = _net(BASELINE, 2)
    plain = summarize(evaluate(net, [str(folder)], 2))
    tiled = summarize(evaluate(Enhanced(net, tile=6), [str(folder)], 2))
    assert abs(plain.psnr[0] - tiled.psnr[0]) < 0.01
    ens = summarize(evaluate(Enhanced(Bicubic(2), self_ensemble=True), [str(folder)], 2))
    bic = summarize(evaluate(Bicubic(2), [str(folder)], 2))
    assert abs(ens.psnr[0] - bic.psnr[0]) < 1e-6
