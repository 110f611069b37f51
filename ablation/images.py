"""Reading and writing images with the project's rules.

Rules (one place, used by datasets, evaluation and ``ablation upscale``):
- EXIF orientation is applied, so pixels are as a viewer shows them.
- Single-channel images stay single-channel (``(H, W, 1)``); they are scored on raw intensity.
- RGBA / LA lose alpha with a warning (``read_image_with_alpha`` keeps it for upscaling).
- Palette images become RGB; 16-bit images become 8-bit (rounded ``v / 257``).
Arrays are uint8 ``(H, W, C)`` with C = 1 or 3.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ablation.errors import DataError
from ablation.fs import atomic_write

# The checksum manifest ``ablation data fetch`` writes into every dataset folder.
MANIFEST = "SHA256SUMS"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
# Bytes of float64 temporaries one block of rows may use while converting to 8 bits.
ROWS_BYTES = 8 << 20


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    """Any integer/bool pixel array -> uint8; 16-bit values map by ``round(v / 257)`` so that
    65535 -> 255 and 257*k -> k exactly.

    Converted in blocks of rows into one uint8 array: the float64 arithmetic never holds more
    than :data:`ROWS_BYTES` of temporaries, so a large 16-bit photo costs its uint8 copy only
    (a whole-image float64 copy is 8 bytes per value, several of them at once)."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255
    wide = arr.dtype in (np.uint16, np.int32, np.uint32, np.int64) or arr.max(initial=0) > 255
    out = np.empty(arr.shape, dtype=np.uint8)
    if arr.ndim == 0:
        return _to_uint8(arr[None])[0]
    step = max(1, ROWS_BYTES // max(1, arr[0].size * 8))
    for y in range(0, arr.shape[0], step):
        block = arr[y:y + step]
        if wide:
            block = np.floor(block.astype(np.float64) / 257.0 + 0.5)
        np.clip(block, 0, 255, out=out[y:y + step], casting="unsafe")
    return out


_PNG16_LOW = {"RGB;16B": "RGB;16L", "RGBA;16B": "RGBA;16L"}


def _png16_exact(path: Path, img: Image.Image) -> Image.Image:
    """Pillow reduces 16-bit RGB(A) PNGs to 8 bits by keeping the high byte (``v >> 8``);
    the project rule is ``round(v / 257)``, which differs by one for about half the values.
    Decode the file a second time with the little-endian unpacker, which yields the low bytes,
    and recombine. Returns ``img`` unchanged if this is not such a PNG or the trick fails."""
    tile = getattr(img, "_ablation_tile", None)
    if img.format != "PNG" or tile is None:
        return img
    rawmode = tile.args if isinstance(tile.args, str) else None
    if rawmode not in _PNG16_LOW:
        return img
    try:
        lo_img = Image.open(path)
        lo_img.tile = [lo_img.tile[0]._replace(args=_PNG16_LOW[rawmode])]
        lo_img.load()
        lo = np.asarray(lo_img, dtype=np.uint16)
    except Exception:  # an optional refinement: the high byte is an acceptable fallback
        return img
    hi = np.asarray(img)
    if hi.shape != lo.shape or hi.ndim != 3:
        return img
    lo += hi.astype(np.uint16) << 8  # lo is a fresh uint16 copy: sum in place, no third array
    del hi
    out = Image.fromarray(_to_uint8(lo))
    out.info = dict(img.info)
    return out


def in_dataset(path: Path) -> bool:
    """Whether ``path`` belongs to a fetched dataset (a ``SHA256SUMS`` manifest in one of its
    folders, as ``ablation data fetch`` writes): such a file is fixed by fetching it again; a
    user's own file (an upscale input, a custom test or training folder) is not."""
    return any((folder / MANIFEST).is_file() for folder in list(Path(path).parents)[:4])


def _fix(path: Path) -> str:
    """What to do about an unreadable ``path``: refetch a dataset file, re-export a user's."""
    if in_dataset(path):
        return "delete it and fetch or copy it again"
    return "check that it opens in an image viewer, or re-export it (png, jpeg, tiff, ...)"


def _open(path: Path) -> Image.Image:
    """Open and fully decode ``path`` (EXIF orientation applied), or raise a one-line DataError
    naming the file: a half-read image must never reach training or scoring."""
    path = Path(path)
    if not path.exists():
        hint = "check the path or re-run the data fetch" if in_dataset(path) else "check the path"
        raise DataError(f"{path}: file not found; {hint}")
    if path.is_dir():
        raise DataError(f"{path}: is a folder, not an image file; give an image file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file (0 bytes); {_fix(path)}")
    try:
        img = Image.open(path)
        # load() clears .tile; keep it for the 16-bit check below
        img._ablation_tile = img.tile[0] if len(img.tile) == 1 else None  # type: ignore[attr-defined]
        img.load()
    except PermissionError:
        raise DataError(f"{path}: permission denied; make the file readable") from None
    except Image.DecompressionBombError as exc:
        raise DataError(f"{path}: image too large to decode safely ({exc}); downscale or "
                        "crop it first") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise DataError(
            f"{path}: not a readable image ({exc.__class__.__name__}: {exc}); "
            f"the file is corrupt or truncated: {_fix(path)}"
        ) from None
    img = _png16_exact(path, img)
    icc = img.info.get("icc_profile")
    ImageOps.exif_transpose(img, in_place=True)  # in place: no second full-size copy
    if icc is not None:
        img.info["icc_profile"] = icc
    return img


def high_bit_depth(path: str | os.PathLike) -> bool:
    """Whether ``path`` stores more than 8 bits per sample (16-bit PNG/TIFF, 32-bit integer or
    float TIFF): reading it rounds to 8 bits. Reads the header only; False if unreadable."""
    try:
        with Image.open(path) as img:
            rawmode = img.tile[0].args if len(img.tile) == 1 else None
            return (img.mode.startswith(("I", "F"))
                    or (isinstance(rawmode, str) and ";16" in rawmode))
    except Exception:  # the read itself reports an unreadable file
        return False


def _split_alpha(img: Image.Image) -> tuple[Image.Image, np.ndarray | None]:
    """Return the colour part of ``img`` (mode L, I;16, RGB, ...) and its alpha or None."""
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        alpha = np.asarray(img.getchannel("A"))
        base = img.convert("RGB" if img.mode in ("RGBA", "RGBa", "PA") else "L")
        return base, alpha
    if img.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        return img.convert("RGB"), None
    if img.mode == "1":
        return img.convert("L"), None
    return img, None


def _pixels(img: Image.Image) -> np.ndarray:
    """PIL image -> contiguous uint8 ``(H, W, C)``."""
    arr = _to_uint8(np.asarray(img))
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.shape[2] == 4:  # should not happen after _split_alpha, but be safe
        arr = arr[:, :, :3]
    return np.ascontiguousarray(arr)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image as uint8 ``(H, W, C)``, C in {1, 3}; see the module rules."""
    img = _open(Path(path))
    base, alpha = _split_alpha(img)
    if alpha is not None:
        warnings.warn(f"{path}: alpha channel dropped (image read as RGB)", stacklevel=2)
    return _pixels(base)


def read_image_with_alpha(
    path: str | os.PathLike,
) -> tuple[np.ndarray, np.ndarray | None, bytes | None]:
    """Like :func:`read_image` but also return the alpha plane ``(H, W)`` or None and ICC bytes."""
    img = _open(Path(path))
    icc = img.info.get("icc_profile")
    base, alpha = _split_alpha(img)
    return _pixels(base), alpha, icc


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Sorted image files directly in ``folder`` (error if missing or empty, so a typo in a
    path never becomes a silent zero-image evaluation)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: folder not found; give an existing folder of images")
    files = sorted(p for p in folder.iterdir()
                   if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
    for p in files:
        try:
            p.stat()
        except OSError as exc:  # a dangling link or a link loop
            raise DataError(f"{p}: broken link ({exc.strerror or exc}); remove it or fix its "
                            "target") from None
    if not files:
        raise DataError(
            f"{folder}: no images (.png/.jpg/.bmp/.tif/.webp) in this folder; "
            "point at a folder that holds images"
        )
    return files


def save_png(path: str | os.PathLike, arr: np.ndarray, alpha: np.ndarray | None = None,
             icc_profile: bytes | None = None) -> None:
    """Save uint8 ``(H, W, C)`` (C = 1 or 3) or ``(H, W)`` losslessly as PNG, atomically
    (an interrupted save never leaves a truncated PNG that later reads as corrupt data).

    The PNG is encoded straight into the temp file: no copy of the encoded bytes in memory."""
    arr = np.asarray(arr)
    if arr.dtype != np.uint8:
        raise ValueError(f"save_png wants uint8 pixels, got {arr.dtype}; round and clip first")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    img = Image.fromarray(arr)
    if alpha is not None:
        img.putalpha(Image.fromarray(alpha))
    kwargs = {"icc_profile": icc_profile} if icc_profile else {}
    atomic_write(path, lambda fh: img.save(fh, format="PNG", **kwargs))
