"""Inference on images of any size: tiling with overlap, x8 self-ensemble, gray input.

Why tiles: a conv net's activations are ``n_feats`` float maps at (up to) HR size, so a
3000x3000 photo needs gigabytes if run in one go. Every net of the study is *local* (each output
pixel sees a fixed window of LR pixels, its receptive field), so the image can be cut into LR
tiles, each run with ``overlap`` LR pixels of extra context on every side, and the overlap
cropped off the SR tile before stitching. With ``overlap`` >= the receptive-field radius
(:func:`receptive_radius`) the stitched image equals whole-image inference up to float rounding:
at the image border a tile sees the same zero padding as the whole image, inside it sees real
pixels. Nets with channel attention (``rcab``) pool globally, so there tiling is approximate.

Why self-ensemble: the 8 flips/transposes of the input give 8 slightly different predictions;
averaging the inverse-transformed outputs gains ~0.1 dB (EDSR's "+").

Tensors: images are ``(1, C, h, w)`` LR in [0, 255] (any dtype) and ``(1, C, s*h, s*w)`` SR
(float64, unrounded). Memory: one tile (times 1, not 8, for self-ensemble: the 8 passes run one
after another) is in flight, and the output buffer is allocated once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch

from ablation.device import resolve_device
from ablation.errors import ConfigError
from ablation.evaluate import Bicubic
from ablation.models import ModelSpec

# Overlap used when a model's receptive field is unknown or global (channel attention).
FALLBACK_OVERLAP = 16


# --------------------------------------------------------------------------- model facts


def receptive_radius(model) -> int | None:
    """How many LR pixels of context one output pixel needs on each side, or None if unknown.

    ``input="lr"`` nets: head, body, body conv and the first upsampler conv run at LR size
    (``n_convs`` 3x3 convs in all, 1 LR pixel each); a x4 second upsampler conv and the tail run
    at higher resolution (< 1 LR pixel together): radius ``n_convs + 1``. ``input="bicubic"``
    nets: the bicubic resize reads 2 LR pixels each side and its symmetric padding at a tile
    edge spoils 2 more, then ``n_convs`` convs at HR size add ``n_convs / s`` LR pixels.
    Channel attention (``rcab``) pools over the whole image: no finite radius (None).
    """
    if isinstance(model, Enhanced):
        return receptive_radius(model.model)
    if isinstance(model, Bicubic):
        return 3
    spec = getattr(model, "spec", None)
    if not isinstance(spec, ModelSpec) or spec.block == "rcab":
        return None
    if spec.input == "bicubic":
        return 3 + math.ceil(spec.n_convs / model.scale)
    return spec.n_convs + 1


def auto_overlap(model) -> int:
    """The overlap that makes tiling exact for ``model`` (or the fallback when unknown)."""
    radius = receptive_radius(model)
    return FALLBACK_OVERLAP if radius is None else radius


def param_dtype(model) -> torch.dtype:
    """The dtype of the model's floating parameters; float64 for parameter-free callables."""
    if isinstance(model, torch.nn.Module):
        for p in model.parameters():
            if p.is_floating_point():
                return p.dtype
    return torch.float64


def param_device(model) -> torch.device | None:
    """The device of the model's first parameter (None for parameter-free callables)."""
    if isinstance(model, torch.nn.Module):
        for p in model.parameters():
            return p.device
    return None


# --------------------------------------------------------------------------- tiling


def split_axis(length: int, tile: int | None) -> list[tuple[int, int]]:
    """Cut ``[0, length)`` into ``ceil(length / tile)`` near-equal ``(start, stop)`` cores.

    Near-equal cores avoid a 1-pixel sliver tile at the end (513 = 257 + 256, not 512 + 1).
    """
    if tile is None or tile <= 0 or tile >= length:
        return [(0, length)]
    n = math.ceil(length / tile)
    bounds = [round(i * length / n) for i in range(n + 1)]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def tile_grid(h: int, w: int, tile: int | None) -> list[tuple[int, int, int, int]]:
    """LR core boxes ``(y0, y1, x0, x1)`` covering an ``h x w`` image, row by row."""
    return [(y0, y1, x0, x1) for y0, y1 in split_axis(h, tile) for x0, x1 in split_axis(w, tile)]


# --------------------------------------------------------------------------- one tile


def _dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """Transform ``k`` (0..7) of the 8 flips/transposes of ``(..., H, W)``: transpose first
    (bit 2), then flip H (bit 1) and W (bit 0)."""
    if k & 4:
        x = x.transpose(-2, -1)
    dims = [d for bit, d in ((2, -2), (1, -1)) if k & bit]
    return x.flip(dims) if dims else x


def _dihedral_inverse(y: torch.Tensor, k: int) -> torch.Tensor:
    """Undo :func:`_dihedral` ``k``: the flips (self-inverse, commuting), then the transpose."""
    dims = [d for bit, d in ((2, -2), (1, -1)) if k & bit]
    if dims:
        y = y.flip(dims)
    return y.transpose(-2, -1) if k & 4 else y


def _adapt_channels(model: Callable, x: torch.Tensor) -> torch.Tensor:
    """Run ``model`` on ``(1, C, h, w)`` whatever C the model wants; output has C channels.

    Gray into an RGB net: replicate to 3 channels, average the 3 outputs back to 1 (a gray
    image stays gray). RGB into a 1-channel net: the 3 channels go through as a batch of 3.
    """
    n_colors = getattr(model, "n_colors", 0)
    c = x.shape[1]
    if n_colors in (0, c):
        return model(x)
    if n_colors == 3 and c == 1:
        return model(x.expand(-1, 3, -1, -1)).mean(dim=1, keepdim=True)
    if n_colors == 1:
        b, _, h, w = x.shape
        y = model(x.reshape(b * c, 1, h, w))
        return y.reshape(b, c, *y.shape[-2:])
    raise ConfigError(f"model takes {n_colors}-channel images, got {c} channels; "
                      "convert the image to RGB or gray first")


@torch.inference_mode()
def run_tile(model: Callable, x: torch.Tensor, self_ensemble: bool = False,
             channels_last: bool = False) -> torch.Tensor:
    """SR of one LR tile ``(1, C, h, w)`` (already on the device, in the model's dtype).

    Returns ``(1, C, s*h, s*w)`` float64 on the same device. With ``self_ensemble`` the 8
    dihedral transforms run one at a time (memory of one pass) and are averaged in float64.
    """
    def once(t: torch.Tensor) -> torch.Tensor:
        if channels_last:
            t = t.contiguous(memory_format=torch.channels_last)
        return _adapt_channels(model, t).to(torch.float64)

    if not self_ensemble:
        return once(x)
    acc = None
    for k in range(8):
        y = _dihedral_inverse(once(_dihedral(x, k)), k)
        acc = y if acc is None else acc.add_(y)
    return acc.div_(8.0)


def iter_sr_tiles(model: Callable, lr_img: torch.Tensor, tile: int | None = None,
                  overlap: int | None = 16, self_ensemble: bool = False,
                  device: str | torch.device | None = "cpu",
                  ) -> Iterator[tuple[int, int, torch.Tensor]]:
    """Yield ``(y, x, sr_tile)``: the SR of each LR core box, its top-left corner in HR pixels.

    ``lr_img`` is ``(1, C, h, w)`` in [0, 255], any dtype, on any device (a uint8 CPU image
    costs 1 byte per value: tiles are converted to the model's dtype one at a time).
    ``sr_tile`` is ``(1, C, s*th, s*tw)`` float64 on ``device``, overlap already cropped.
    ``overlap=None`` picks :func:`auto_overlap`. Callers stitch (see :func:`super_resolve`).
    """
    if lr_img.dim() != 4 or lr_img.shape[0] != 1:
        raise ConfigError(f"expected a (1, C, h, w) image tensor, got shape "
                          f"{tuple(lr_img.shape)}")
    if overlap is None:
        overlap = auto_overlap(model)
    if overlap < 0:
        raise ConfigError(f"overlap must be >= 0, got {overlap}")
    dev = resolve_device(device)
    if isinstance(model, torch.nn.Module) and param_device(model) not in (None, dev):
        model.to(dev)
    dtype = param_dtype(model)
    channels_last = isinstance(model, torch.nn.Module) and any(True for _ in model.parameters())
    s = int(model.scale)
    h, w = lr_img.shape[-2:]
    for y0, y1, x0, x1 in tile_grid(h, w, tile):
        ty0, ty1 = max(0, y0 - overlap), min(h, y1 + overlap)
        tx0, tx1 = max(0, x0 - overlap), min(w, x1 + overlap)
        x = lr_img[..., ty0:ty1, tx0:tx1].to(dev, dtype)
        sr = run_tile(model, x, self_ensemble, channels_last)
        oy, ox = (y0 - ty0) * s, (x0 - tx0) * s
        yield y0 * s, x0 * s, sr[..., oy:oy + (y1 - y0) * s, ox:ox + (x1 - x0) * s]


def super_resolve(model: Callable, lr_img: torch.Tensor, tile: int | None = None,
                  overlap: int | None = 16, self_ensemble: bool = False,
                  device: str | torch.device | None = "cpu") -> torch.Tensor:
    """Super-resolve ``(1, C, h, w)`` in [0, 255] -> ``(1, C, s*h, s*w)`` float64, unrounded.

    Args:
        model: an SR net (``model.scale``, optionally ``model.n_colors``) or ``Bicubic``.
        tile: LR tile size; None or 0 runs the whole image at once.
        overlap: LR context pixels on each side of a tile, cropped after the net; None picks
            the model's receptive-field radius (exact stitching).
        self_ensemble: average the 8 flips/transposes (8x the compute).
        device: where the net runs ('auto', 'cpu', 'cuda'); the model is moved there if
            needed. The output stays on the CPU: only tiles visit the device.

    The model is used as is (call ``.eval()`` first for nets with batch norm).
    """
    s = int(model.scale)
    _, c, h, w = lr_img.shape
    out = torch.empty((1, c, h * s, w * s), dtype=torch.float64)
    for y, x, sr in iter_sr_tiles(model, lr_img, tile, overlap, self_ensemble, device):
        out[..., y:y + sr.shape[-2], x:x + sr.shape[-1]] = sr.cpu()
    return out


# --------------------------------------------------------------------------- wrapper


class Enhanced(torch.nn.Module):
    """A model plus tiling / self-ensemble options, usable wherever a model is.

    ``evaluate(Enhanced(net, tile=64, self_ensemble=True), ["Set5"], 2)`` scores the "+" model.
    ``forward`` takes ``(1, C, h, w)`` in [0, 255] and returns ``(1, C, s*h, s*w)`` float64 on
    the input's device; the tiles run on ``device`` (None: the input's device).
    """

    def __init__(self, model: Callable, tile: int | None = None, overlap: int | None = None,
                 self_ensemble: bool = False, device: str | torch.device | None = None):
        super().__init__()
        if tile is not None and tile < 0:
            raise ConfigError(f"tile must be >= 0 (0: whole image), got {tile}")
        self.model = model
        self.tile, self.overlap, self.self_ensemble = tile, overlap, self_ensemble
        self.device = None if device is None else resolve_device(device)
        self.scale = int(model.scale)
        self.n_colors = getattr(model, "n_colors", 0)

    def forward(self, lr_img: torch.Tensor) -> torch.Tensor:
        sr = super_resolve(self.model, lr_img, self.tile, self.overlap, self.self_ensemble,
                           self.device or lr_img.device)
        return sr.to(lr_img.device)


__all__ = [
    "Enhanced", "auto_overlap", "iter_sr_tiles", "receptive_radius", "run_tile",
    "super_resolve", "tile_grid",
]
