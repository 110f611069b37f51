"""Benchmark inputs computed once per set and scale: the protocol's LR and the HR's Y channel.

Every run of the study is scored on the same images, so the work that does not depend on the
network (decode the HR PNG, modcrop, MATLAB-bicubic LR in float64 rounded to 8 bits, BT.601 Y
of the HR) is done once and cached beside the decoded training cache::

    <data>/cache/bench-<set>-x<scale>-<key>/lr.npy     every LR input, HWC uint8, concatenated
                                           hr_y.npy   every HR Y channel, HW float32, concatenated
                                           index.json names, shapes, offsets, digests

``key`` hashes the HR files (paths, sizes, mtimes), the scale and whether official LR files
were used, so a changed image gives a new cache. Integrity rules as for the training cache
(:mod:`ablation.cache`): BLAKE2 digests of both buffers and of the index are checked on every
load, and a stale, damaged or missing cache is rebuilt. Concurrent builders (a sweep with
``--jobs 2``, two notebooks) take an ``flock`` on the set's lock file: one builds, the others
wait and then load its result.

The LR is exactly what :func:`ablation.evaluate.make_lr` returns; the HR Y is
:func:`ablation.metrics.y_float32` of the modcropped HR, so scoring against it equals scoring
against the HR image (tested on every benchmark image).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ablation import data, paths
from ablation.cache import buffer_digest, files_key
from ablation.config import BENCHMARKS, canonical_set
from ablation.degradation import bicubic_down, modcrop, quantize
from ablation.errors import DataError
from ablation.fs import exclusive_lock, swap_in
from ablation.images import read_image
from ablation.metrics import y_float32

BENCH_CACHE_VERSION = 1


@dataclass
class BenchmarkSet:
    """One benchmark set at one scale, ready to score.

    Image ``i``: ``lr(i)`` is ``(h, w, C)`` uint8 (C = 1 for gray images, else 3), ``hr_y(i)``
    is ``(s*h, s*w)`` float32, the Y channel (raw gray for C = 1) of the modcropped HR.
    """

    label: str
    scale: int
    names: list[str]  # image stems, in the set's file order
    lr_buf: np.ndarray  # (N_lr,) uint8
    hr_y_buf: np.ndarray  # (N_hr,) float32
    lr_shapes: np.ndarray  # (n, 3) int64 (h, w, C)
    lr_offsets: np.ndarray  # (n,) int64
    hr_offsets: np.ndarray  # (n,) int64

    def __len__(self) -> int:
        return len(self.names)

    def lr(self, i: int) -> np.ndarray:
        h, w, c = self.lr_shapes[i]
        o = self.lr_offsets[i]
        return self.lr_buf[o:o + h * w * c].reshape(h, w, c)

    def hr_y(self, i: int) -> np.ndarray:
        h, w, _ = self.lr_shapes[i]
        o = self.hr_offsets[i]
        return self.hr_y_buf[o:o + h * w * self.scale**2].reshape(h * self.scale,
                                                                   w * self.scale)


def set_label(set_name: str) -> str:
    """A named set keeps its name; a folder of images is labelled by the folder's name."""
    set_name = canonical_set(set_name)
    return set_name if set_name in BENCHMARKS else Path(set_name).name


def load_benchmark(set_name: str, scale: int, data_dir=None, use_official_lr: bool = True,
                   on_image: Callable[[int, int], None] | None = None) -> BenchmarkSet:
    """The cached inputs of ``set_name`` (a benchmark name or a folder of images) at ``scale``.

    Builds the cache on first use (once per data dir, set and scale), reuses it afterwards;
    a build calls ``on_image(done, total)`` after each image (minutes for Urban100: progress).
    """
    files = data.benchmark_hr_files(set_name, data_dir)
    label = set_label(set_name)
    root = paths.data_dir(data_dir) / "cache"
    key = files_key(files, scale, f"bench v{BENCH_CACHE_VERSION} official={use_official_lr}")
    folder = root / f"bench-{_safe(label)}-x{scale}-{key}"
    found = _try_load(folder, label, scale)
    if found is not None:
        return found
    root.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(root / f".bench-{_safe(label)}-x{scale}.lock", _never_busy, wait=True):
        found = _try_load(folder, label, scale)  # another process may have built it meanwhile
        if found is not None:
            return found
        bench = _build(files, label, scale, use_official_lr, on_image)
        _write(bench, folder)
        for old in root.glob(f"bench-{_safe(label)}-x{scale}-*"):  # stale caches of this set
            if old != folder:
                shutil.rmtree(old, ignore_errors=True)
    return bench


def _never_busy(holder: str) -> Exception:  # wait=True without a timeout never gives up
    return RuntimeError(f"benchmark cache lock held{holder}")


def _safe(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in label)


def to_tensor(arr: np.ndarray) -> torch.Tensor:
    """uint8 ``(H, W, C)`` -> float64 ``(1, C, H, W)`` in [0, 255]."""
    return torch.from_numpy(np.array(arr, copy=True)).permute(2, 0, 1)[None].to(torch.float64)


def make_lr(hr_img: torch.Tensor, scale: int, hr_file: Path | None = None,
            use_official_lr: bool = True) -> torch.Tensor:
    """The LR input for a modcropped HR ``(1, C, H, W)``: official file if any, else MATLAB
    bicubic rounded to 8 bits."""
    if use_official_lr and hr_file is not None:
        lr_file = data.official_lr_file(hr_file, scale)
        if lr_file is not None:
            lr = to_tensor(read_image(lr_file))
            if lr.shape[-2:] == (hr_img.shape[-2] // scale, hr_img.shape[-1] // scale):
                return lr
    return quantize(bicubic_down(hr_img, scale))


# Smallest HR side that can be scored: ``scale`` px shaved per border leave the 11x11 SSIM window.
def min_side(scale: int) -> int:
    return 2 * scale + 11


def check_size(hr_img: torch.Tensor, scale: int, path: Path) -> None:
    """DataError naming ``path`` if the HR ``(1, C, H, W)``, modcropped, is too small to score."""
    h, w = hr_img.shape[-2:]
    if min(h - h % scale, w - w % scale) < min_side(scale):
        raise DataError(f"{path}: image {w}x{h} is too small to score at x{scale} (needs at "
                        f"least {min_side(scale)} px per side); remove it from the set")


def _build(files: list[Path], label: str, scale: int, use_official_lr: bool,
           on_image: Callable[[int, int], None] | None = None) -> BenchmarkSet:
    lr_parts, y_parts, shapes = [], [], []
    for i, f in enumerate(files):
        if on_image is not None:
            on_image(i, len(files))
        hr = to_tensor(read_image(f))  # (1, C, H, W) float64
        check_size(hr, scale, f)
        hr = modcrop(hr, scale)
        lr = make_lr(hr, scale, f, use_official_lr)
        lr_u8 = lr[0].permute(1, 2, 0).to(torch.uint8).numpy()
        lr_parts.append(np.ascontiguousarray(lr_u8).reshape(-1))
        y_parts.append(y_float32(hr)[0, 0].numpy().reshape(-1))
        shapes.append(lr_u8.shape)
    if on_image is not None:
        on_image(len(files), len(files))
    lr_buf = np.concatenate(lr_parts)
    y_buf = np.concatenate(y_parts).astype(np.float32)
    return BenchmarkSet(label, scale, [f.stem for f in files], lr_buf, y_buf,
                        np.array(shapes, dtype=np.int64).reshape(-1, 3), _offsets(lr_parts),
                        _offsets(y_parts))


def _offsets(parts: list[np.ndarray]) -> np.ndarray:
    sizes = [p.size for p in parts]
    return np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)


def _index(bench: BenchmarkSet) -> dict:
    index = dict(version=BENCH_CACHE_VERSION, label=bench.label, scale=bench.scale,
                 names=bench.names, lr_shapes=bench.lr_shapes.tolist(),
                 lr_offsets=bench.lr_offsets.tolist(), hr_offsets=bench.hr_offsets.tolist(),
                 lr_digest=buffer_digest(bench.lr_buf), hr_y_digest=buffer_digest(bench.hr_y_buf))
    index["index_digest"] = buffer_digest(
        np.frombuffer(json.dumps(index, sort_keys=True).encode(), dtype=np.uint8))
    return index


def _write(bench: BenchmarkSet, folder: Path) -> None:
    """Write to a temporary folder, then swap it in with one rename (readers never see half)."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        np.save(tmp / "lr.npy", bench.lr_buf)
        np.save(tmp / "hr_y.npy", bench.hr_y_buf)
        (tmp / "index.json").write_text(json.dumps(_index(bench)))
        swap_in(tmp, folder)  # replaces a damaged one
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _try_load(folder: Path, label: str, scale: int) -> BenchmarkSet | None:
    """The cache in ``folder`` if it is complete and every digest matches, else None."""
    try:
        index = json.loads((folder / "index.json").read_text())
        if not isinstance(index, dict) or index.get("version") != BENCH_CACHE_VERSION \
                or index.get("scale") != scale or index.get("label") != label:
            return None
        lr_buf = np.load(folder / "lr.npy", allow_pickle=False)
        y_buf = np.load(folder / "hr_y.npy", allow_pickle=False)
        bench = BenchmarkSet(label, scale, list(index["names"]), lr_buf, y_buf,
                             np.array(index["lr_shapes"], dtype=np.int64).reshape(-1, 3),
                             np.array(index["lr_offsets"], dtype=np.int64),
                             np.array(index["hr_offsets"], dtype=np.int64))
        if lr_buf.dtype != np.uint8 or y_buf.dtype != np.float32 or _index(bench) != index:
            return None
        h, w, c = bench.lr_shapes.T
        if int((h * w * c).sum()) != lr_buf.size or int((h * w).sum()) * scale**2 != y_buf.size:
            return None
        return bench
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
