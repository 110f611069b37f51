"""Decoded training images: one flat uint8 buffer per (image set, scale), memory-mappable.

Training never decodes a PNG in its hot loop. For a list of HR files and a scale we store:

    <data>/cache/<label>-x<scale>-<key>/hr.npy   all HR images (modcropped), HWC, concatenated
                                        lr.npy   their MATLAB-bicubic LR (rounded to uint8),
                                                 or the official LR files when present
                                        index.json  names, shapes, offsets, digests

``key`` hashes the file list with sizes and mtimes (a changed source file gives a new cache);
the buffers' BLAKE2 digests are checked on load (a corrupted cache is rebuilt). Gray training
images are replicated to RGB here (the nets are 3-channel).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ablation.degradation import bicubic_down, quantize
from ablation.errors import DataError
from ablation.fs import exclusive_lock
from ablation.images import read_image

CACHE_VERSION = 1


@dataclass
class DecodedSet:
    """Flat buffers plus per-image geometry. ``hr[off:off+h*w*3]`` is image i, HWC."""

    hr: np.ndarray  # (N_hr,) uint8
    lr: np.ndarray  # (N_lr,) uint8
    names: list[str]
    hr_shapes: np.ndarray  # (n, 2) int64 (H, W)
    hr_offsets: np.ndarray  # (n,) int64
    lr_offsets: np.ndarray  # (n,) int64
    scale: int
    fingerprint: str

    @property
    def lr_shapes(self) -> np.ndarray:
        return self.hr_shapes // self.scale

    def hr_image(self, i: int) -> np.ndarray:
        h, w = self.hr_shapes[i]
        o = self.hr_offsets[i]
        return self.hr[o:o + h * w * 3].reshape(h, w, 3)

    def lr_image(self, i: int) -> np.ndarray:
        h, w = self.lr_shapes[i]
        o = self.lr_offsets[i]
        return self.lr[o:o + h * w * 3].reshape(h, w, 3)


def files_key(files: list[Path], scale: int, tag: str = f"v{CACHE_VERSION}") -> str:
    """A short key for a list of source files (path, size, times, inode), a scale and a tag:
    any change to a source file gives a new key, so a stale cache is never loaded."""
    h = hashlib.sha256(f"{tag} x{scale}".encode())
    for f in files:
        st = f.stat()
        h.update(f"{f.resolve()}|{st.st_size}|{st.st_mtime_ns}|{st.st_ctime_ns}|{st.st_ino}\n"
                 .encode())
    return h.hexdigest()[:16]


def buffer_digest(arr: np.ndarray) -> str:
    """BLAKE2 digest of an array's bytes: what every cache stores and checks on load."""
    return hashlib.blake2b(memoryview(np.ascontiguousarray(arr)), digest_size=16).hexdigest()


def _official_lr(hr_file: Path, scale: int) -> Path | None:
    """DIV2K's official LR: DIV2K_train_HR/0001.png -> DIV2K_train_LR_bicubic/X2/0001x2.png."""
    parent = hr_file.parent
    if not parent.name.endswith("_HR"):
        return None
    lr_dir = parent.parent / parent.name.replace("_HR", "_LR_bicubic") / f"X{scale}"
    cand = lr_dir / f"{hr_file.stem}x{scale}.png"
    return cand if cand.exists() else None


def _decode(files: list[Path], scale: int, min_lr: int):
    hr_parts, lr_parts, shapes = [], [], []
    for f in files:
        img = read_image(f)
        if img.shape[2] == 1:
            img = np.repeat(img, 3, axis=2)
        h, w = img.shape[0] - img.shape[0] % scale, img.shape[1] - img.shape[1] % scale
        if h // scale < min_lr or w // scale < min_lr:
            raise DataError(
                f"{f}: image {img.shape[1]}x{img.shape[0]} is smaller than the HR patch "
                f"{min_lr * scale}x{min_lr * scale}; remove it or lower lr_patch"
            )
        hr = np.ascontiguousarray(img[:h, :w])
        official = _official_lr(f, scale)
        if official is not None:
            lr = read_image(official)
        else:
            t = torch.from_numpy(hr.copy()).permute(2, 0, 1).to(torch.float64)
            lr = quantize(bicubic_down(t, scale)).to(torch.uint8).permute(1, 2, 0).numpy()
        if lr.shape[:2] != (h // scale, w // scale):
            raise DataError(f"{official}: LR size {lr.shape[:2]} doesn't match HR {hr.shape[:2]}"
                            f" / {scale}; delete the LR folder and refetch")
        hr_parts.append(hr.reshape(-1))
        lr_parts.append(np.ascontiguousarray(lr).reshape(-1))
        shapes.append((h, w))
    return hr_parts, lr_parts, np.array(shapes, dtype=np.int64).reshape(-1, 2)


def load_decoded(files: list[Path], scale: int, cache_root: Path, label: str = "train",
                 min_lr_size: int = 1, fingerprint: str = "") -> DecodedSet:
    """Decode ``files`` once into a cache under ``cache_root`` and return the buffers.

    Reuses a valid cache; rebuilds it if missing, stale or corrupt (whatever is in its place:
    a damaged index, a file instead of the folder). Safe under concurrent builders (several
    ``ablation train`` or ``sweep --jobs N`` on a fresh data folder): an flock per cache folder
    lets one process build (into a temp folder, renamed into place) while the others wait and
    then reuse its result. ``min_lr_size`` rejects images too small for the training patch
    (one-line error naming the file).
    """
    if not files:
        raise DataError(f"{label}: no training images; fetch a training set first")
    files = [Path(f) for f in files]
    folder = Path(cache_root) / f"{label}-x{scale}-{files_key(files, scale)}"
    ds = _try_load(folder, scale, fingerprint, files)  # a finished cache is never rewritten
    if ds is None:
        _make_folder(folder.parent)
        with _cache_lock(folder):
            ds = _try_load(folder, scale, fingerprint, files)  # built while we waited?
            if ds is None:
                ds = _build(files, scale, folder, min_lr_size, fingerprint)
                _drop_stale(folder, label, scale)
    _check_sizes(ds, files, min_lr_size)
    return ds


def _build(files: list[Path], scale: int, folder: Path, min_lr_size: int,
           fingerprint: str) -> DecodedSet:
    """Decode ``files`` and write the cache to a temp folder renamed to ``folder`` (whatever
    was at ``folder`` is removed first; we hold its lock)."""
    hr_parts, lr_parts, shapes = _decode(files, scale, min_lr_size)
    hr = np.concatenate(hr_parts)
    lr = np.concatenate(lr_parts)
    hr_off = np.concatenate([[0], np.cumsum([p.size for p in hr_parts])[:-1]]).astype(np.int64)
    lr_off = np.concatenate([[0], np.cumsum([p.size for p in lr_parts])[:-1]]).astype(np.int64)
    index = dict(version=CACHE_VERSION, scale=scale, names=[str(f) for f in files],
                 hr_shapes=shapes.tolist(), hr_offsets=hr_off.tolist(),
                 lr_offsets=lr_off.tolist(), hr_digest=buffer_digest(hr),
                 lr_digest=buffer_digest(lr))
    index["index_digest"] = _index_digest(index)
    tmp = None
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        np.save(tmp / "hr.npy", hr)
        np.save(tmp / "lr.npy", lr)
        (tmp / "index.json").write_text(json.dumps(index))
        _remove(folder)
        tmp.rename(folder)
    except OSError as exc:
        raise DataError(f"{folder.parent}: cannot write the decoded-image cache "
                        f"({exc.strerror or exc}); free disk space or fix permissions, then "
                        "rerun") from None
    finally:
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return DecodedSet(hr, lr, [str(f) for f in files], shapes, hr_off, lr_off, scale,
                      fingerprint)


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"{folder}: cannot create the decoded-image cache folder "
                        f"({exc.strerror or exc}); fix permissions or free disk space, or use "
                        "another --data-dir") from None


def _remove(path: Path) -> None:
    """Remove a file, link or folder at ``path`` (nothing there is fine)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


class _Busy(Exception):
    """Another process holds a cache folder's lock (only asked without waiting)."""


def _cache_lock(folder: Path, wait: bool = True):
    """flock on ``.<folder name>.lock`` beside the cache folder (released if the holder dies);
    a waiter says once whom it waits for. ``wait=False`` raises :class:`_Busy` instead."""
    lock = folder.parent / f".{folder.name}.lock"
    try:
        lock.touch()
    except OSError as exc:
        raise DataError(f"{lock}: cannot open the cache lock ({exc.strerror or exc}); fix "
                        "permissions or use another --data-dir") from None
    return exclusive_lock(lock, _Busy, wait=wait,
                          waiting="waiting for another process{who} building the cache "
                                  + str(folder).replace("{", "{{").replace("}", "}}") + " ...")


def _drop_stale(folder: Path, label: str, scale: int) -> None:
    """Remove other caches of this set and scale (older file lists) that nobody is using."""
    for old in folder.parent.glob(f"{label}-x{scale}-*"):
        if old == folder or old.name.startswith("."):
            continue
        with contextlib.suppress(_Busy, OSError), _cache_lock(old, wait=False):
            _remove(old)
            (old.parent / f".{old.name}.lock").unlink(missing_ok=True)


def _index_digest(index: dict) -> str:
    """Digest of the geometry fields, so a damaged (but still valid JSON) index is caught."""
    keys = ("version", "scale", "names", "hr_shapes", "hr_offsets", "lr_offsets", "hr_digest",
            "lr_digest")
    blob = json.dumps({k: index[k] for k in keys}, sort_keys=True).encode()
    return hashlib.blake2b(blob, digest_size=16).hexdigest()


def _try_load(folder: Path, scale: int, fingerprint: str,
              files: list[Path] | None = None) -> DecodedSet | None:
    try:
        index = json.loads((folder / "index.json").read_text())
        if not isinstance(index, dict):  # null, [], a number: a damaged index
            return None
        if index.get("version") != CACHE_VERSION or index.get("scale") != scale:
            return None
        if index.get("index_digest") != _index_digest(index):
            return None
        if files is not None and index["names"] != [str(f) for f in files]:
            return None
        hr = np.load(folder / "hr.npy", mmap_mode="r")
        lr = np.load(folder / "lr.npy", mmap_mode="r")
        if buffer_digest(hr) != index["hr_digest"] or buffer_digest(lr) != index["lr_digest"]:
            return None
        shapes = np.array(index["hr_shapes"], dtype=np.int64).reshape(-1, 2)
        if int((shapes[:, 0] * shapes[:, 1] * 3).sum()) != hr.size:
            return None
        return DecodedSet(np.array(hr), np.array(lr), index["names"],
                          np.array(index["hr_shapes"], dtype=np.int64).reshape(-1, 2),
                          np.array(index["hr_offsets"], dtype=np.int64),
                          np.array(index["lr_offsets"], dtype=np.int64), scale, fingerprint)
    except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError):
        return None


def _check_sizes(ds: DecodedSet, files: list[Path], min_lr: int) -> None:
    small = np.nonzero((ds.lr_shapes < min_lr).any(axis=1))[0]
    if small.size:
        i = int(small[0])
        h, w = ds.hr_shapes[i]
        raise DataError(f"{files[i]}: image {w}x{h} is smaller than the HR patch "
                        f"{min_lr * ds.scale}x{min_lr * ds.scale}; remove it or lower lr_patch")
