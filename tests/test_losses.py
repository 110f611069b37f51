"""Losses: L1/L2 on known tensors, the in-package VGG19 stack (torchvision-compatible indices,
conv5_4 before its ReLU), the perceptual loss value, and how the VGG19 weights are found,
downloaded (hash-checked, here from a loopback server) or refused."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading

import pytest
import torch
from torch import nn

import ablation.losses as losses
from ablation.errors import ConfigError, DataError
from ablation.losses import (
    CONV5_4_END,
    IMAGENET_MEAN,
    IMAGENET_STD,
    PerceptualLoss,
    load_vgg19_features,
    make_loss,
    vgg19_features,
    vgg19_weights_path,
)

CONV_INDICES = [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]
POOL_INDICES = [4, 9, 18, 27, 36]
# Same layout as VGG19 ("E"), 16x narrower: identical module indices, tiny weights.
NARROW_CFG = (4, 4, "M", 8, 8, "M", 8, 8, 8, 8, "M", 16, 16, 16, 16, "M",
              16, 16, 16, 16, "M")


# --------------------------------------------------------------------------- pixel losses


def test_l1_and_l2_on_known_values():
    sr = torch.tensor([[[[0.0, 255.0], [102.0, 51.0]]]])
    hr = torch.tensor([[[[51.0, 0.0], [102.0, 0.0]]]])
    # |diff| / 255 = 0.2, 1.0, 0.0, 0.2 -> L1 mean 0.35; squares 0.04, 1, 0, 0.04 -> 0.27
    assert make_loss("l1")(sr, hr).item() == pytest.approx(0.35, abs=1e-7)
    assert make_loss("l2")(sr, hr).item() == pytest.approx(0.27, abs=1e-7)
    assert make_loss("l1")(hr, hr).item() == 0.0


def test_pixel_loss_gradient():
    sr = torch.tensor([10.0, 20.0], requires_grad=True)
    hr = torch.tensor([0.0, 30.0])
    make_loss("l2")(sr, hr).backward()
    # d/dsr mean(((sr - hr)/255)^2) = 2 (sr - hr) / 255^2 / n
    expected = 2 * torch.tensor([10.0, -10.0]) / 255.0**2 / 2
    assert torch.allclose(sr.grad, expected)


def test_unknown_loss_and_backbone():
    with pytest.raises(ConfigError, match="valid values: l1, l2, perceptual"):
        make_loss("huber")
    with pytest.raises(ConfigError, match="valid values: vgg19"):
        make_loss("perceptual", backbone="resnet50")


# --------------------------------------------------------------------------- VGG19 stack


def test_vgg19_structure_matches_torchvision():
    full = vgg19_features(end=37)
    assert len(full) == 37
    convs = [i for i, m in enumerate(full) if isinstance(m, nn.Conv2d)]
    pools = [i for i, m in enumerate(full) if isinstance(m, nn.MaxPool2d)]
    relus = [i for i, m in enumerate(full) if isinstance(m, nn.ReLU)]
    assert convs == CONV_INDICES
    assert pools == POOL_INDICES
    assert relus == [i + 1 for i in CONV_INDICES]
    widths = [full[i].out_channels for i in convs]
    assert widths == [64, 64, 128, 128] + [256] * 4 + [512] * 8
    assert full[0].in_channels == 3
    assert all(full[i].kernel_size == (3, 3) and full[i].padding == (1, 1) for i in convs)
    assert all(full[i].kernel_size == 2 and full[i].stride == 2 for i in pools)
    # torchvision's state-dict keys and shapes (vgg19-dcbb9e9d.pth "features.*")
    keys = vgg19_features(end=37).state_dict()
    assert sorted(keys, key=lambda k: (int(k.split(".")[0]), k)) == [
        f"{i}.{p}" for i in CONV_INDICES for p in ("bias", "weight")]
    assert keys["34.weight"].shape == (512, 512, 3, 3)

    head = vgg19_features()  # features[:35]
    assert CONV5_4_END == 35
    assert len(head) == 35
    assert isinstance(head[34], nn.Conv2d)  # ends with conv5_4 ...
    assert not any(isinstance(m, nn.ReLU) for m in list(head)[34:])  # ... before its ReLU


@pytest.fixture
def narrow_vgg(monkeypatch, tmp_path):
    """A random narrow VGG19 saved like torchvision's file: (path, full stack state dict)."""
    monkeypatch.setattr(losses, "VGG19_CFG", NARROW_CFG)
    torch.manual_seed(0)
    full = vgg19_features(end=37)
    for m in full:
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.bias, std=0.1)
    state = {f"features.{k}": v for k, v in full.state_dict().items()}
    state["classifier.0.weight"] = torch.randn(10, 16)  # must be ignored
    path = tmp_path / "vgg19-narrow.pth"
    torch.save(state, path)
    return path, full.state_dict()


def _normalise(img):
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (img / 255.0 - mean) / std


def _conv5_4_by_hook(full_state, img):
    """conv5_4's output (pre-ReLU) captured by a hook on a separately built full stack."""
    full = vgg19_features(end=37).eval()
    full.load_state_dict(full_state)
    seen = {}
    # clone: the next module is ReLU(inplace=True), which would overwrite the captured tensor
    full[34].register_forward_hook(lambda m, i, o: seen.__setitem__("f", o.detach().clone()))
    with torch.no_grad():
        after = full(_normalise(img))
    return seen["f"], after


def test_perceptual_features_are_conv5_4_before_relu(narrow_vgg):
    path, full_state = narrow_vgg
    feats = load_vgg19_features(path)
    assert len(feats) == 35
    loss = PerceptualLoss(feats)
    img = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 255
    expected, after = _conv5_4_by_hook(full_state, img)
    with torch.no_grad():
        got = loss._feat(img)
    assert got.shape == (2, 16, 2, 2)
    assert torch.allclose(got, expected, atol=1e-6)
    assert (got < 0).any()  # pre-ReLU: negative values survive
    assert after.shape == (2, 16, 1, 1)  # the full stack goes on through ReLU and pool5


def test_perceptual_loss_value_and_pixel_term(narrow_vgg):
    path, full_state = narrow_vgg
    g = torch.Generator().manual_seed(2)
    hr = torch.rand(1, 3, 32, 32, generator=g) * 255
    sr = (hr + torch.randn(1, 3, 32, 32, generator=g) * 20).requires_grad_(True)
    f_sr, _ = _conv5_4_by_hook(full_state, sr.detach())
    f_hr, _ = _conv5_4_by_hook(full_state, hr)
    by_hand = ((f_sr - f_hr) ** 2).mean()

    loss = PerceptualLoss(load_vgg19_features(path))
    value = loss(sr, hr)
    assert value.item() == pytest.approx(by_hand.item(), rel=1e-5)
    assert value.item() > 0
    assert loss(hr, hr).item() == 0.0

    l1 = (sr.detach() - hr).abs().mean() / 255.0
    with_pixel = PerceptualLoss(load_vgg19_features(path), pixel_weight=0.5)(sr, hr)
    assert with_pixel.item() == pytest.approx(by_hand.item() + 0.5 * l1.item(), rel=1e-5)

    value.backward()
    assert sr.grad is not None and sr.grad.abs().sum() > 0
    assert all(not p.requires_grad and p.grad is None for p in loss.features.parameters())


def test_perceptual_backbone_stays_in_eval_mode(narrow_vgg):
    path, _ = narrow_vgg
    loss = PerceptualLoss(load_vgg19_features(path)).train()
    assert loss.training
    assert not loss.features.training
    assert all(not m.training for m in loss.features.modules())


def test_load_vgg19_features_is_strict(tmp_path, narrow_vgg):
    path, _ = narrow_vgg
    state = torch.load(path, weights_only=True)
    del state["features.34.weight"]
    broken = tmp_path / "broken.pth"
    torch.save(state, broken)
    # strict: a missing conv5_4 weight is an error, never a silently random layer
    # (RuntimeError today; a DataError would be friendlier, see the report)
    with pytest.raises((RuntimeError, DataError), match="34.weight"):
        load_vgg19_features(broken)


def test_make_loss_perceptual_with_local_weights(narrow_vgg):
    path, _ = narrow_vgg
    loss = make_loss("perceptual", pixel_weight=0.25, vgg_weights=str(path))
    assert isinstance(loss, PerceptualLoss)
    assert loss.pixel_weight == 0.25
    hr = torch.rand(1, 3, 32, 32) * 255
    assert loss(hr, hr).item() == 0.0


# --------------------------------------------------------------------------- weights lookup


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv("ABLATION_VGG19", raising=False)
    monkeypatch.delenv("ABLATION_DATA", raising=False)


def test_weights_path_explicit_and_env(tmp_path, monkeypatch, no_env):
    f = tmp_path / "my-vgg.pth"
    f.write_bytes(b"x")
    assert vgg19_weights_path(f, cache_dir=tmp_path / "cache", download=False) == f
    assert vgg19_weights_path(str(f), download=False) == f
    with pytest.raises(DataError, match="VGG19 weights not found"):
        vgg19_weights_path(tmp_path / "missing.pth", download=False)
    monkeypatch.setenv("ABLATION_VGG19", str(f))
    assert vgg19_weights_path(cache_dir=tmp_path / "cache", download=False) == f


def test_weights_path_finds_cached_file(tmp_path, no_env, monkeypatch):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / losses.VGG19_FILE).write_bytes(b"x")
    monkeypatch.setattr(losses, "VGG19_SHA256", hashlib.sha256(b"x").hexdigest())
    assert vgg19_weights_path(cache_dir=cache, download=False) == cache / losses.VGG19_FILE


def test_cached_file_with_wrong_hash_is_not_used(tmp_path, no_env):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / losses.VGG19_FILE).write_bytes(b"not the weights")
    with pytest.raises(DataError, match="needs VGG19 weights"):
        vgg19_weights_path(cache_dir=cache, download=False)
    assert not (cache / losses.VGG19_FILE).exists()


def test_missing_weights_offline(tmp_path, no_env, monkeypatch):
    monkeypatch.chdir(tmp_path)  # default cache: ./data/weights
    with pytest.raises(DataError) as err:
        vgg19_weights_path(download=False)
    msg = str(err.value)
    assert "needs VGG19 weights" in msg
    assert "\n" not in msg
    with pytest.raises(DataError, match="needs VGG19 weights"):
        vgg19_weights_path(cache_dir=tmp_path / "cache", download=False)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def served(narrow_vgg, monkeypatch):
    """The narrow VGG file served over http://127.0.0.1 (no network needed)."""
    path, _ = narrow_vgg
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
                "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    handler = functools.partial(_QuietHandler, directory=str(path.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/{path.name}"
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    monkeypatch.setattr(losses, "VGG19_URL", url)
    yield path, sha
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_download_with_correct_hash(served, tmp_path, monkeypatch, no_env):
    path, sha = served
    monkeypatch.setattr(losses, "VGG19_SHA256", sha)
    cache = tmp_path / "cache"
    got = vgg19_weights_path(cache_dir=cache)
    assert got == cache / losses.VGG19_FILE
    assert got.read_bytes() == path.read_bytes()
    assert len(load_vgg19_features(got)) == 35
    # a second call uses the cached file without downloading
    monkeypatch.setattr(losses, "VGG19_URL", "http://127.0.0.1:9/unreachable.pth")
    assert vgg19_weights_path(cache_dir=cache) == got


def test_download_with_wrong_hash_is_refused(served, tmp_path, monkeypatch, no_env):
    _, sha = served
    wrong = hashlib.sha256(b"not the weights").hexdigest()
    assert wrong != sha
    monkeypatch.setattr(losses, "VGG19_SHA256", wrong)
    cache = tmp_path / "cache"
    with pytest.raises(DataError) as err:
        vgg19_weights_path(cache_dir=cache)
    msg = str(err.value)
    assert "\n" not in msg
    assert "needs VGG19 weights" in msg
    left = [p for p in cache.rglob("*") if p.is_file()] if cache.exists() else []
    assert left == []  # neither the bad file nor a partial download stays in the cache


def test_download_unreachable_is_a_data_error(tmp_path, monkeypatch, no_env):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    # port 9 (discard) on loopback: connection refused, fails fast and offline
    monkeypatch.setattr(losses, "VGG19_URL", "http://127.0.0.1:9/vgg19.pth")
    with pytest.raises(DataError, match="could not download VGG19 weights"):
        vgg19_weights_path(cache_dir=tmp_path / "cache")
