"""One configurable SR network covering every variant of the study.

Read top to bottom: building blocks (EDSR-PyTorch's head / body / tail vocabulary), then
:class:`ModelSpec` (a frozen, JSON-friendly dataclass: every architectural axis of the study),
then :class:`SRNet`, then closed-form parameter and FLOP counts used by the tests and the cost
table. Variants are specs: ``replace(BASELINE, act="prelu")``, never a new class.

Two input styles:
- ``input="bicubic"`` (SRCNN/VDSR style): the LR is upsampled with MATLAB bicubic first (the very
  function that makes the protocol's bicubic baseline) and the net runs at HR size; the global
  residual adds the bicubic image to the output.
- ``input="lr"`` (EDSR style): the net runs at LR size and ends in a pixel-shuffle upsampler;
  the global residual is in feature space: ``body(head(x)) + head(x)``.

Tensors: ``forward`` takes ``(B, C, h, w)`` in [0, 255] and returns ``(B, C, s*h, s*w)`` in
[0, 255] (unclamped); internally the net works on [0, 1].
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Literal

import torch
from torch import nn

from ablation.config import SCALES
from ablation.degradation import bicubic_up
from ablation.errors import ConfigError, check_choice

# DIV2K RGB mean (EDSR's MeanShift), in [0, 1].
DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)

InputStyle = Literal["lr", "bicubic"]
BlockType = Literal["conv", "conv_bn", "res", "rcab"]
ActType = Literal["relu", "lrelu", "prelu"]
InitType = Literal["default", "kaiming"]


# --------------------------------------------------------------------------- blocks


def conv3x3(c_in: int, c_out: int, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, padding=1, bias=bias)


def make_act(kind: str, n_feats: int) -> nn.Module:
    if kind == "relu":
        return nn.ReLU(inplace=True)
    if kind == "lrelu":
        return nn.LeakyReLU(0.01, inplace=True)
    if kind == "prelu":
        return nn.PReLU(num_parameters=n_feats, init=0.25)
    raise ConfigError(f"unknown activation {kind!r}; valid values: relu, lrelu, prelu")


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation as in RCAN: global mean -> 1x1 F->F/r -> ReLU -> 1x1 -> sigmoid."""

    def __init__(self, n_feats: int, reduction: int):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(
            nn.Conv2d(n_feats, n_feats // reduction, 1), nn.ReLU(inplace=True),
            nn.Conv2d(n_feats // reduction, n_feats, 1), nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc(self.pool(x))


class BasicBlock(nn.Sequential):
    """conv -> [BN] -> act: one conv layer. With BN the conv has no bias (BN's beta is one)."""

    def __init__(self, n_feats: int, act: str, bias: bool, batch_norm: bool):
        layers: list[nn.Module] = [conv3x3(n_feats, n_feats, bias and not batch_norm)]
        if batch_norm:
            layers.append(nn.BatchNorm2d(n_feats))
        layers.append(make_act(act, n_feats))
        super().__init__(*layers)


class ResBlock(nn.Module):
    """EDSR residual block: x + res_scale * conv(act(conv(x))) [* channel attention = RCAB]."""

    def __init__(self, n_feats: int, act: str, bias: bool, res_scale: float = 1.0,
                 reduction: int = 0):
        super().__init__()
        layers: list[nn.Module] = [conv3x3(n_feats, n_feats, bias), make_act(act, n_feats),
                                   conv3x3(n_feats, n_feats, bias)]
        if reduction:
            layers.append(ChannelAttention(n_feats, reduction))
        self.body = nn.Sequential(*layers)
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.res_scale * self.body(x)


class ResidualGroup(nn.Module):
    """RCAN residual group: x + conv(RCAB^n(x))."""

    def __init__(self, n_blocks: int, n_feats: int, act: str, bias: bool, reduction: int):
        super().__init__()
        blocks = [ResBlock(n_feats, act, bias, 1.0, reduction) for _ in range(n_blocks)]
        self.body = nn.Sequential(*blocks, conv3x3(n_feats, n_feats, bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Upsampler(nn.Sequential):
    """Pixel shuffle: x2/x3 one stage (conv F -> s^2 F, shuffle), x4 two x2 stages."""

    def __init__(self, scale: int, n_feats: int):
        factors = [2, 2] if scale == 4 else [scale]
        layers: list[nn.Module] = []
        for f in factors:
            layers += [conv3x3(n_feats, f * f * n_feats), nn.PixelShuffle(f)]
        super().__init__(*layers)


# --------------------------------------------------------------------------- spec

# Sane maxima for a spec's sizes (a spec read from a checkpoint is untrusted: n_feats=10**6
# would try to allocate terabytes). Far above the study's nets and the published EDSR (32 res
# blocks, 256 feats, 43M parameters) and RCAN (10 groups x 20 RCABs); MAX_PARAMS bounds what
# the fields allow together.
SPEC_MAXIMA = dict(n_blocks=128, n_feats=512, n_groups=32, reduction=512)
MAX_PARAMS = 100_000_000


@dataclass(frozen=True)
class ModelSpec:
    """Every architectural axis of the study. All fields are JSON-friendly.

    ``n_blocks`` counts body blocks; a ``conv``/``conv_bn`` block is one conv, a ``res``/``rcab``
    block two. The study's "layers" are :attr:`n_convs` (head + body + tail, upsampler excluded).
    ``n_groups > 0`` arranges ``rcab`` blocks in RCAN residual groups of ``n_blocks`` each.
    """

    input: InputStyle = "lr"
    n_blocks: int = 6
    n_feats: int = 64
    block: BlockType = "conv"
    act: ActType = "relu"
    bias: bool = True
    global_residual: bool = True
    body_conv: bool = False  # EDSR/RCAN: a conv closes the body
    res_scale: float = 1.0
    reduction: int = 16  # channel attention reduction (rcab only)
    n_groups: int = 0
    mean_shift: bool = False
    n_colors: int = 3
    # body init: "default" is PyTorch's (as the original study); "kaiming" re-draws the body's
    # convs He-normal (fan_in, ReLU gain), zero bias: task 8's diagnostic, not in the original
    init: InitType = "default"

    def __post_init__(self):
        check_choice("input", self.input, ("lr", "bicubic"))
        check_choice("block", self.block, ("conv", "conv_bn", "res", "rcab"))
        check_choice("act", self.act, ("relu", "lrelu", "prelu"))
        check_choice("n_colors", self.n_colors, (1, 3))
        check_choice("init", self.init, ("default", "kaiming"))
        for name in ("bias", "global_residual", "body_conv", "mean_shift"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        for name, most in SPEC_MAXIMA.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value > most:
                raise ConfigError(f"{name} must be an integer <= {most}, got {value!r}")
        if (isinstance(self.res_scale, bool) or not isinstance(self.res_scale, (int, float))
                or not math.isfinite(self.res_scale)):
            raise ConfigError(f"res_scale must be a finite number, got {self.res_scale!r}")
        if self.n_blocks < 0 or self.n_feats < 1 or self.n_groups < 0:
            raise ConfigError(f"n_blocks, n_feats, n_groups must be positive: {self}")
        if self.n_groups and self.block != "rcab":
            raise ConfigError("n_groups > 0 (RCAN residual groups) needs block='rcab'")
        if self.reduction < 1:
            raise ConfigError(f"reduction must be a positive integer, got {self.reduction}")
        if self.block == "rcab" and self.n_feats % self.reduction:
            raise ConfigError(f"n_feats {self.n_feats} not divisible by reduction {self.reduction}")

    @property
    def n_convs(self) -> int:
        """3x3 conv layers as the study counts them: head + body + tail (no upsampler)."""
        per_block = 1 if self.block in ("conv", "conv_bn") else 2
        body = self.n_blocks * per_block
        if self.n_groups:
            body = self.n_groups * (body + 1)
        return 1 + body + int(self.body_conv) + 1

    def to_dict(self) -> dict:
        """The fields as a dict; a field added after runs were committed (``init``) appears
        only when it differs from its default, so every earlier run keeps its config hash."""
        d = asdict(self)
        for name in HASH_NEUTRAL_DEFAULTS:
            if d[name] == HASH_NEUTRAL_DEFAULTS[name]:
                del d[name]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelSpec:
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ConfigError(f"unknown ModelSpec fields {sorted(unknown)}; valid: {sorted(names)}")
        return cls(**d)


# Fields added to ModelSpec after the first committed runs, with their defaults: left out of
# ``to_dict`` (and so of config hashes and checkpoints) at the default value.
HASH_NEUTRAL_DEFAULTS = {"init": "default"}


# --------------------------------------------------------------------------- network


class SRNet(nn.Module):
    """head -> body (+ global residual) -> [upsampler] -> tail, per :class:`ModelSpec`."""

    def __init__(self, spec: ModelSpec, scale: int):
        super().__init__()
        check_choice("scale", scale, SCALES)
        self.spec, self.scale, self.n_colors = spec, scale, spec.n_colors
        s, f = spec, spec.n_feats
        head: list[nn.Module] = [conv3x3(s.n_colors, f, s.bias)]
        if s.input == "bicubic":  # SRCNN-style: every hidden conv is followed by the activation
            head.append(make_act(s.act, f))
        self.head = nn.Sequential(*head)
        if s.n_groups:
            blocks = [ResidualGroup(s.n_blocks, f, s.act, s.bias, s.reduction)
                      for _ in range(s.n_groups)]
        elif s.block in ("conv", "conv_bn"):
            blocks = [BasicBlock(f, s.act, s.bias, s.block == "conv_bn")
                      for _ in range(s.n_blocks)]
        else:
            red = s.reduction if s.block == "rcab" else 0
            blocks = [ResBlock(f, s.act, s.bias, s.res_scale, red) for _ in range(s.n_blocks)]
        if s.body_conv:
            blocks.append(conv3x3(f, f, s.bias))
        self.body = nn.Sequential(*blocks)
        self.upsampler = Upsampler(scale, f) if s.input == "lr" else nn.Identity()
        self.tail = conv3x3(f, s.n_colors, s.bias)
        mean = torch.tensor(DIV2K_RGB_MEAN if s.n_colors == 3 else (0.5,) * s.n_colors)
        self.register_buffer("rgb_mean", mean.view(1, -1, 1, 1), persistent=False)
        if s.init == "kaiming":
            kaiming_init_(self.body)

    def forward(self, lr_img: torch.Tensor) -> torch.Tensor:
        """``(B, C, h, w)`` in [0, 255] -> ``(B, C, s*h, s*w)`` in [0, 255]."""
        s = self.spec
        x = lr_img / 255.0
        if s.mean_shift:
            x = x - self.rgb_mean
        if s.input == "bicubic":
            x = bicubic_up(x, self.scale, dtype=x.dtype)
        feats = self.head(x)
        res = self.body(feats)
        if s.input == "lr" and s.global_residual:
            res = res + feats
        out = self.tail(self.upsampler(res))
        if s.input == "bicubic" and s.global_residual:
            out = out + x
        if s.mean_shift:
            out = out + self.rgb_mean
        return out * 255.0


def kaiming_init_(module: nn.Module) -> None:
    """He-normal (fan_in, ReLU gain sqrt(2)) weights and zero biases for every 3x3 conv in
    ``module``: keeps the activations' variance through a deep plain ReLU stack, where PyTorch's
    default (Kaiming-uniform with a=sqrt(5), i.e. a gain of 1/sqrt(3)) shrinks it each layer."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def build_model(spec: ModelSpec, scale: int) -> SRNet:
    """The network for ``spec`` at ``scale`` (PyTorch's default init, as the original study,
    unless ``spec.init`` says otherwise).

    Refuses (before allocating) a spec over :data:`MAX_PARAMS` parameters."""
    check_choice("scale", scale, SCALES)
    n = count_params(spec, scale)
    if n > MAX_PARAMS:
        raise ConfigError(f"spec has {n:,} parameters, over the maximum {MAX_PARAMS:,}: "
                          f"{spec}")
    return SRNet(spec, scale)


VANISHED_BODY = 1e-3  # a body_gain under this: the body's output vanished, it never trained


def body_gain(model: SRNet, size: int = 48, seed: int = 0) -> float | None:
    """``||body(f)|| / ||f||`` for ``f = head(x)`` on a fixed pseudo-random LR input ``x``
    ``(1, C, size, size)``: how much the body adds to the feature-level global residual.

    A value near 0 means the body's output vanished (a deep plain body under PyTorch's default
    init) and the network is left with its linear head -> upsampler -> tail path. None for nets
    without a feature-level residual (bicubic input, or LR input without ``global_residual``),
    where the body is the whole signal path. Runs in eval mode on the model's device; the
    model's mode is restored.
    """
    spec = getattr(model, "spec", None)
    if spec is None or spec.input != "lr" or not spec.global_residual:
        return None
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand((1, spec.n_colors, size, size), generator=gen)
    param = next(model.parameters())
    x = x.to(device=param.device, dtype=param.dtype)
    x = x - model.rgb_mean if spec.mean_shift else x  # as SRNet.forward, after / 255
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            feats = model.head(x)
            return float(model.body(feats).norm() / feats.norm())
    finally:
        model.train(was_training)


# --------------------------------------------------------------------------- costs


def _conv_params(c_in: int, c_out: int, bias: bool, k: int = 3) -> int:
    return k * k * c_in * c_out + (c_out if bias else 0)


def count_params(spec: ModelSpec, scale: int) -> int:
    """Parameter count in closed form (tests check it against the built module)."""
    s, f = spec, spec.n_feats
    n = _conv_params(s.n_colors, f, s.bias) + _conv_params(f, s.n_colors, s.bias)
    act = f if s.act == "prelu" else 0
    if s.input == "bicubic":
        n += act
    if s.block == "conv":
        block = _conv_params(f, f, s.bias) + act
    elif s.block == "conv_bn":
        block = _conv_params(f, f, False) + 2 * f + act
    else:
        block = 2 * _conv_params(f, f, s.bias) + act
        if s.block == "rcab":  # channel attention: two 1x1 convs with bias
            r = f // s.reduction
            block += _conv_params(f, r, True, 1) + _conv_params(r, f, True, 1)
    body = s.n_blocks * block
    if s.n_groups:
        body = s.n_groups * (body + _conv_params(f, f, s.bias))
    n += body + (_conv_params(f, f, s.bias) if s.body_conv else 0)
    if s.input == "lr":
        stages = [2, 2] if scale == 4 else [scale]
        n += sum(_conv_params(f, r * r * f, True) for r in stages)
    return n


def macs_per_output_pixel(spec: ModelSpec, scale: int) -> float:
    """Multiply-accumulates of all convs per HR output pixel (activations, BN, pooling and the
    bicubic input resize are ignored: they are < 1% of the total for every variant)."""
    s, f, c = spec, spec.n_feats, spec.n_colors
    body_convs = s.n_convs - 2
    if s.input == "bicubic":  # everything runs at HR size
        return 9.0 * (c * f + body_convs * f * f + f * c)
    area = 1.0 / (scale * scale)  # LR pixels per HR pixel
    macs = 9.0 * (c * f + body_convs * f * f) * area
    for r in [2, 2] if scale == 4 else [scale]:
        macs += 9.0 * f * (r * r * f) * area
        area *= r * r
    return macs + 9.0 * f * c  # tail at HR size


def flops_per_output_pixel(spec: ModelSpec, scale: int) -> float:
    """FLOPs (2 x MACs) per HR output pixel."""
    return 2.0 * macs_per_output_pixel(spec, scale)


def with_(spec: ModelSpec, **changes) -> ModelSpec:
    """``dataclasses.replace`` re-exported for notebooks: ``with_(BASELINE, act='prelu')``."""
    return replace(spec, **changes)


__all__ = [
    "ModelSpec", "SRNet", "build_model", "count_params", "kaiming_init_", "flops_per_output_pixel",
    "macs_per_output_pixel", "with_",
]
