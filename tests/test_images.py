"""Image reading rules (ablation.images) and atomic writes (ablation.fs)."""

from __future__ import annotations

import errno
import os
import stat
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ablation import images
from ablation.errors import DataError
from ablation.fs import atomic_write_bytes, atomic_write_text
from ablation.images import (
    list_images,
    read_image,
    read_image_with_alpha,
    save_png,
)


def _png16(path: Path, arr: np.ndarray) -> None:
    """Write a 16-bit PNG by hand (Pillow can't write 16-bit RGB)."""
    h, w, c = arr.shape
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body)))

    ihdr = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def _rounded(v: np.ndarray) -> np.ndarray:
    return np.floor(v.astype(np.float64) / 257 + 0.5).astype(np.uint8)


# --------------------------------------------------------------------------- reading


def test_real_rgb_png_from_the_mirror(mirror: Path) -> None:
    path = mirror / "benchmark" / "Set5" / "HR" / "baby.png"
    arr = read_image(path)
    assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3
    assert arr.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(arr, np.asarray(Image.open(path).convert("RGB")))


def test_grayscale_stays_single_channel(mirror: Path) -> None:
    path = mirror / "benchmark" / "Set14" / "HR" / "bridge.png"
    arr = read_image(path)
    assert arr.shape[2] == 1
    np.testing.assert_array_equal(arr[:, :, 0], np.asarray(Image.open(path)))


def test_rgba_drops_alpha_with_a_warning(tmp_path: Path) -> None:
    rgba = np.random.default_rng(0).integers(0, 256, (5, 6, 4), dtype=np.uint8)
    Image.fromarray(rgba).save(tmp_path / "a.png")
    with pytest.warns(UserWarning, match="alpha channel dropped"):
        arr = read_image(tmp_path / "a.png")
    np.testing.assert_array_equal(arr, rgba[:, :, :3])
    rgb, alpha, icc = read_image_with_alpha(tmp_path / "a.png")
    np.testing.assert_array_equal(rgb, rgba[:, :, :3])
    np.testing.assert_array_equal(alpha, rgba[:, :, 3])
    assert icc is None


def test_16bit_gray_png_maps_to_rounded_8bit(tmp_path: Path) -> None:
    values = np.array([[0, 128, 129, 255, 257, 32896, 65000, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    arr = read_image(tmp_path / "g16.png")
    assert arr.shape == (1, 8, 1)
    np.testing.assert_array_equal(arr[:, :, 0], _rounded(values))
    assert arr[0, :, 0].tolist() == [0, 0, 1, 1, 1, 128, 253, 255]


def test_16bit_rgb_png_maps_to_rounded_8bit_not_high_byte(tmp_path: Path) -> None:
    values = np.array([[[0, 255, 300], [65535, 65000, 385], [129, 32896, 511]]],
                      dtype=np.uint16)
    _png16(tmp_path / "c16.png", values)
    arr = read_image(tmp_path / "c16.png")
    np.testing.assert_array_equal(arr, _rounded(values))
    assert arr[0, 0, 1] == 1  # v=255: the high byte alone would give 0


def test_palette_becomes_rgb(tmp_path: Path) -> None:
    img = Image.new("P", (3, 2))
    img.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (768 - 9))
    img.putdata([0, 1, 2, 2, 1, 0])
    img.save(tmp_path / "p.png")
    arr = read_image(tmp_path / "p.png")
    assert arr.shape == (2, 3, 3)
    assert arr[0].tolist() == [[255, 0, 0], [0, 255, 0], [0, 0, 255]]


def test_exif_rotated_jpeg_is_transposed(tmp_path: Path) -> None:
    stored = np.zeros((8, 16, 3), dtype=np.uint8)  # H=8, W=16: left red, right blue
    stored[:, :8] = (255, 0, 0)
    stored[:, 8:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    Image.fromarray(stored).save(tmp_path / "r.jpg", quality=95, exif=exif.tobytes())
    arr = read_image(tmp_path / "r.jpg")
    assert arr.shape == (16, 8, 3)
    top, bottom = arr[:6].mean(axis=(0, 1)), arr[10:].mean(axis=(0, 1))
    assert top[0] > 200 and top[2] < 60  # red went to the top
    assert bottom[2] > 200 and bottom[0] < 60


@pytest.mark.parametrize("kind", ["empty", "text", "truncated", "missing", "folder"])
def test_unreadable_files_raise_data_error_naming_the_file(tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"{kind}.png"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("hello, not a PNG")
    elif kind == "truncated":
        rng = np.random.default_rng(1)
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)
        raw = path.read_bytes()
        path.write_bytes(raw[: len(raw) // 2])
    elif kind == "folder":
        path.mkdir()
    with pytest.raises(DataError) as err:
        read_image(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_list_images_sorted_filtered_and_errors(tmp_path: Path) -> None:
    for name in ("b.PNG", "a.jpg", "c.txt", ".d.png"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in list_images(tmp_path)] == ["a.jpg", "b.PNG"]
    with pytest.raises(DataError, match="folder not found"):
        list_images(tmp_path / "nope")
    (tmp_path / "sub").mkdir()
    with pytest.raises(DataError, match="no images"):
        list_images(tmp_path / "sub")


# --------------------------------------------------------------------------- writing


def test_save_png_roundtrips_gray_and_rgb(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    for shape in ((4, 5, 1), (4, 5, 3), (4, 5)):
        arr = rng.integers(0, 256, shape, dtype=np.uint8)
        save_png(tmp_path / "x.png", arr)
        back = read_image(tmp_path / "x.png")
        np.testing.assert_array_equal(back, arr.reshape(4, 5, -1))
    with pytest.raises(ValueError, match="uint8"):
        save_png(tmp_path / "f.png", np.zeros((2, 2, 3), dtype=np.float32))


def _no_temp_files(folder: Path) -> None:
    assert [p.name for p in folder.iterdir() if p.name.endswith(".tmp")] == []


def test_atomic_write_keeps_old_file_when_replace_fails(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "results.json"
    target.write_bytes(b"old contents")

    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(images.os, "replace", full_disk)
    with pytest.raises(OSError) as err:
        atomic_write_bytes(target, b"new contents")
    assert err.value.errno == errno.ENOSPC
    assert target.read_bytes() == b"old contents"
    _no_temp_files(tmp_path)


def test_atomic_write_keeps_old_file_when_the_write_fails(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "ckpt.bin"
    target.write_bytes(b"old")
    real_fdopen = os.fdopen

    class FullDisk:
        def __init__(self, fh: object) -> None:
            self.fh = fh

        def __enter__(self) -> FullDisk:
            return self

        def __exit__(self, *exc: object) -> None:
            self.fh.close()  # type: ignore[attr-defined]

        def write(self, payload: bytes) -> int:
            self.fh.write(payload[:3])  # type: ignore[attr-defined]
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(images.os, "fdopen",
                        lambda fd, mode: FullDisk(real_fdopen(fd, mode)))
    with pytest.raises(OSError):
        atomic_write_bytes(target, b"a much longer new payload")
    assert target.read_bytes() == b"old"
    _no_temp_files(tmp_path)


def test_atomic_write_success_keeps_permissions(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "notes.txt"
    atomic_write_text(target, "one")
    target.chmod(0o640)
    atomic_write_text(target, "two ✓")
    assert target.read_text(encoding="utf-8") == "two ✓"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    _no_temp_files(target.parent)
