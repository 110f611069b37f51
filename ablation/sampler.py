"""Random training patches, gathered on the training device with one indexing op per batch.

All images of the training set sit in one flat uint8 buffer on the device (see
:mod:`ablation.cache`). A batch is drawn with an explicit ``torch.Generator``: image indices,
crop corners and flip/transpose flags are tensors, the pixel indices of all patches are built by
broadcasting, and one ``buffer[index]`` gathers them: no per-sample Python work, no PNG
decoding, no DataLoader workers to starve a 2-core CPU.
"""

from __future__ import annotations

import torch

from ablation.cache import DecodedSet
from ablation.degradation import degrade


class PatchSampler:
    """Draws aligned ``(lr, hr)`` batches: ``(B, 3, p, p)`` and ``(B, 3, s*p, s*p)`` float32
    in [0, 255], with random h-flip, v-flip and transpose (p = 0.5 each)."""

    def __init__(self, data: DecodedSet, lr_patch: int, batch_size: int,
                 device: torch.device, generator: torch.Generator,
                 blur_sigma: float = 0.0, noise_sigma: float = 0.0):
        self.scale, self.p, self.batch = data.scale, lr_patch, batch_size
        self.device, self.gen = device, generator
        self.blur_sigma, self.noise_sigma = blur_sigma, noise_sigma
        self.hr = torch.from_numpy(data.hr).to(device)
        self.lr = torch.from_numpy(data.lr).to(device)
        hw = torch.from_numpy(data.hr_shapes).to(device)
        self.lr_h, self.lr_w = hw[:, 0] // self.scale, hw[:, 1] // self.scale
        self.hr_w = hw[:, 1]
        self.hr_off = torch.from_numpy(data.hr_offsets).to(device)
        self.lr_off = torch.from_numpy(data.lr_offsets).to(device)
        self.n_images = len(data.names)
        self._lr_grid = self._grid(lr_patch, device)
        self._hr_grid = self._grid(lr_patch * self.scale, device)

    @staticmethod
    def _grid(p: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        r = torch.arange(p, device=device)
        return r.view(1, p, 1, 1), r.view(1, 1, p, 1), torch.arange(3, device=device).view(
            1, 1, 1, 3)

    def _gather(self, buf, off, width, y, x, grid) -> torch.Tensor:
        dy, dx, c = grid
        w = width.view(-1, 1, 1, 1)
        idx = off.view(-1, 1, 1, 1) + ((y.view(-1, 1, 1, 1) + dy) * w
                                       + x.view(-1, 1, 1, 1) + dx) * 3 + c
        return buf[idx].permute(0, 3, 1, 2)  # (B, 3, p, p) uint8

    def sample(self) -> tuple[torch.Tensor, torch.Tensor]:
        b, p, s, g, dev = self.batch, self.p, self.scale, self.gen, self.device
        img = torch.randint(self.n_images, (b,), generator=g, device=dev)
        u = torch.rand((2, b), generator=g, device=dev, dtype=torch.float64)
        y = (u[0] * (self.lr_h[img] - p + 1)).long()
        x = (u[1] * (self.lr_w[img] - p + 1)).long()
        flips = torch.rand((3, b), generator=g, device=dev) < 0.5
        hr = self._gather(self.hr, self.hr_off[img], self.hr_w[img], y * s, x * s,
                          self._hr_grid).float()
        if self.blur_sigma > 0 or self.noise_sigma > 0:
            lr = degrade(hr, s, self.blur_sigma, self.noise_sigma, generator=g)
        else:
            lr = self._gather(self.lr, self.lr_off[img], self.lr_w[img], y, x,
                              self._lr_grid).float()
        return augment(lr, flips), augment(hr, flips)


def augment(x: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    """Per-sample h-flip, v-flip, transpose of ``(B, C, p, p)`` by boolean ``flips (3, B)``."""
    m = flips.view(3, -1, 1, 1, 1)
    x = torch.where(m[0], x.flip(-1), x)
    x = torch.where(m[1], x.flip(-2), x)
    return torch.where(m[2], x.transpose(-1, -2), x)
