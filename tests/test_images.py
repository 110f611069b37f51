"""Image reading rules (ablation.images) and atomic writes (ablation.fs)."""

from __future__ import annotations

import errno
import json
import os
import stat
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from fault_helpers import PEAK_RSS
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


# --------------------------------------------------------------------------- issue 15


def _truncated_png(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:600])
    return path


@pytest.mark.parametrize("kind", ["truncated", "empty"])
def test_a_users_unreadable_file_gets_advice_for_a_users_file(tmp_path: Path, kind: str) -> None:
    """A file in a folder of the user's (no dataset manifest above it) is re-exported, not
    fetched; a file of a fetched dataset (a SHA256SUMS beside or above it) is fetched again."""
    user = tmp_path / "photos" / "a.png"
    dataset = tmp_path / "data" / "benchmark" / "Set5" / "HR" / "a.png"
    (tmp_path / "data" / "benchmark").mkdir(parents=True)
    (tmp_path / "data" / "benchmark" / "SHA256SUMS").write_text("")
    for path in (user, dataset):
        _truncated_png(path)
        if kind == "empty":
            path.write_bytes(b"")
    with pytest.raises(DataError) as mine:
        read_image(user)
    with pytest.raises(DataError) as fetched:
        read_image(dataset)
    assert str(user) in str(mine.value) and "re-export" in str(mine.value)
    assert "fetch" not in str(mine.value)
    assert "fetch or copy it again" in str(fetched.value) and "re-export" not in str(fetched.value)


def test_high_bit_depth_is_read_from_the_header(tmp_path: Path) -> None:
    _png16(tmp_path / "c16.png", np.full((4, 5, 3), 1000, dtype=np.uint16))
    Image.fromarray(np.full((4, 5), 1000, dtype=np.uint16)).save(tmp_path / "g16.png")
    Image.fromarray(np.zeros((4, 5, 3), dtype=np.uint8)).save(tmp_path / "c8.png")
    Image.fromarray(np.zeros((4, 5), dtype=np.uint8)).save(tmp_path / "g8.jpg")
    assert images.high_bit_depth(tmp_path / "c16.png")
    assert images.high_bit_depth(tmp_path / "g16.png")
    assert not images.high_bit_depth(tmp_path / "c8.png")
    assert not images.high_bit_depth(tmp_path / "g8.jpg")
    assert not images.high_bit_depth(tmp_path / "missing.png")


_READ_CHILD = PEAK_RSS + """
import json, sys
import numpy as np
from PIL import Image
from ablation.images import read_image_with_alpha
tiny = sys.argv[2]
Image.fromarray(np.zeros((8, 8), np.uint16)).save(tiny)
read_image_with_alpha(tiny)  # imports and decoder set-up, not the big image
reset_peak()
before = peak_mb()
arr, _, _ = read_image_with_alpha(sys.argv[1])
print(json.dumps({"delta_mb": peak_mb() - before, "values": arr.size, "dtype": str(arr.dtype)}))
"""


@pytest.mark.parametrize("channels,side", [(1, 2400), (3, 1200)])
def test_reading_a_16bit_image_peaks_at_a_few_bytes_per_value(tmp_path: Path, channels: int,
                                                             side: int) -> None:
    """16 -> 8 bits without a whole-image float64 copy: the read's peak grows by the decoded
    16-bit image plus its uint8 copy (measured 6.8 / 10.7 bytes per value gray / RGB), not by
    several float64 temporaries of the whole image (22 / 25 bytes per value before #15)."""
    y, x = np.mgrid[0:side, 0:side].astype(np.uint32)
    ramp = ((x * 97 + y * 31) % 65536).astype(np.uint16)
    _png16(tmp_path / "big.png", np.repeat(ramp[:, :, None], channels, axis=2))
    del y, x, ramp
    proc = subprocess.run([sys.executable, "-c", _READ_CHILD, str(tmp_path / "big.png"),
                           str(tmp_path / "tiny.png")], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info["values"] == side * side * channels and info["dtype"] == "uint8"
    values_mb = info["values"] / 2**20
    assert info["delta_mb"] < 12 * values_mb + 16, info
