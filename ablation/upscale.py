"""``ablation upscale``: super-resolve your own images with a trained model (or bicubic).

    ablation upscale INPUT... --scale 2 [--model task4/baseline | --checkpoint PATH]
                     [--out DIR] [--tile 512] [--self-ensemble] [--device auto] [--compare]
                     [--profile cpu] [--results DIR]

INPUT is any mix of image files and folders (png, jpeg, webp, bmp, tiff; a folder's images,
not recursive). Each image becomes ``<out>/<name>_x<scale>_<model>.png`` (lossless), with:
EXIF orientation applied, gray kept gray, alpha upscaled bicubically and re-attached, the ICC
profile carried over; a 16-bit input is written as 8-bit, and a one-line note says so. Images
larger than the tile run tile by tile (:mod:`ablation.inference`), so memory grows with the
output's 8-bit pixels only, never with the net's activations at HR size; the progress bar
counts tiles, so a single large image shows movement.

A bad file (corrupt) is reported on one line and skipped; the others are still written and
the exit code is 1 (2 when an INPUT argument names no image: missing or unsupported type).
The Python entry point is :func:`upscale_files` (the demo
notebook uses it); :func:`main` runs the command from an argv list (tests).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from tqdm import tqdm

from ablation import paths, results
from ablation.checkpoint import load_model
from ablation.command import (
    DEVICE_HELP,
    RESULTS_HELP,
    add_progress_option,
    progress_wanted,
    subcommand_main,
)
from ablation.config import PROFILE_NAMES, SCALES
from ablation.degradation import quantize
from ablation.device import resolve_device
from ablation.errors import AblationError, ConfigError, DataError, MissingModelError
from ablation.evaluate import Bicubic
from ablation.images import (
    IMAGE_SUFFIXES,
    high_bit_depth,
    list_images,
    read_image_with_alpha,
    save_png,
)
from ablation.inference import iter_sr_tiles, tile_grid

DEFAULT_TILE = 512
DEFAULT_OUT = "upscaled"
COMPARE_MAX_SIDE = 1024  # long side of each overview panel in the --compare image


@dataclass
class UpscaleRecord:
    """What happened to one input: the files written, sizes ``(width, height)``, or the error."""

    input: Path
    output: Path | None = None
    compare: Path | None = None
    in_size: tuple[int, int] | None = None
    out_size: tuple[int, int] | None = None
    channels: int = 0
    has_alpha: bool = False
    seconds: float = 0.0
    error: str | None = None
    note: str | None = None  # one line the user should know (a 16-bit input written as 8-bit)
    usage: bool = False  # the INPUT argument itself was wrong (missing, not an image type)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def out_megapixels(self) -> float:
        return 0.0 if self.out_size is None else self.out_size[0] * self.out_size[1] / 1e6


# --------------------------------------------------------------------------- model


def _safe_label(text: str) -> str:
    """A file-name-safe model label: 'task4/baseline' -> 'task4-baseline'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "model"


def _label_from_run(ckpt: Path) -> str:
    """``.../task04/baseline/x2/seed0/model.pt`` -> 'task4-baseline' (task00 -> 'reference')."""
    variant_dir = ckpt.parents[2]
    number = int(variant_dir.parent.name.removeprefix("task"))
    prefix = "reference" if number == 0 else f"task{number}"
    return _safe_label(f"{prefix}-{variant_dir.name}")


def load_upscaler(scale: int, model: str | None = None, checkpoint: str | Path | None = None,
                  profile: str = "cpu", results_dir=None) -> tuple[torch.nn.Module, str]:
    """The net to upscale with and its file-name label.

    ``checkpoint`` wins (label: its stem); ``model`` is 'bicubic', 'TASK/VARIANT' (a finished
    run under ``results/<profile>``) or None / 'best' (the best finished run at ``scale``).
    Raises ConfigError / CheckpointError with one-line fixes (no model yet, scale mismatch).
    """
    if checkpoint and model not in (None, "", "best"):
        raise ConfigError("give either --model or --checkpoint, not both")
    if checkpoint:
        net, _ = load_model(checkpoint, expect_scale=scale)
        return net, _safe_label(Path(checkpoint).stem)
    if model == "bicubic":
        return Bicubic(scale), "bicubic"
    if model in (None, "", "best"):
        path = results.best_model(scale, profile, results_dir)
        if path is None:
            root = paths.results_dir(results_dir).resolve() / profile
            raise MissingModelError(
                f"{root}: no trained checkpoint at x{scale} ({profile} profile) to pick the "
                f"best of; {results.models_hint(scale, profile, results_dir)}, train one with "
                f"`ablation train --task 4 --variant baseline --scale {scale} --profile "
                f"{profile}`, or pass --checkpoint PATH (or --model bicubic)")
        net, _ = load_model(path, expect_scale=scale)
        return net, _label_from_run(path)
    try:
        path = results.resolve_model(model, scale, profile, results_dir=results_dir)
    except AblationError:
        raise
    except ValueError:
        raise ConfigError(f"model {model!r}: use TASK/VARIANT (e.g. task4/baseline), 'best' "
                          "or 'bicubic'") from None
    net, _ = load_model(path, expect_scale=scale)
    return net, _safe_label(model)


# --------------------------------------------------------------------------- inputs


def collect_inputs(inputs: Iterable[str | Path]) -> tuple[list[Path], list[UpscaleRecord]]:
    """Expand files and folders into image files; bad entries become error records."""
    files: list[Path] = []
    failed: list[UpscaleRecord] = []
    for item in inputs:
        path = Path(item)
        try:
            if path.is_dir():
                files.extend(list_images(path))
            elif not path.exists():
                raise DataError(f"{path}: file not found; check the path")
            elif path.suffix.lower() not in IMAGE_SUFFIXES:
                raise DataError(f"{path}: unsupported file type {path.suffix or '(none)'!r}; "
                                "give png, jpeg, webp, bmp or tiff images")
            else:
                files.append(path)
        except AblationError as exc:
            failed.append(UpscaleRecord(input=path, error=str(exc), usage=True))
    return files, failed


def output_names(files: Sequence[Path], scale: int, label: str) -> list[str]:
    """``<stem>_x<scale>_<label>``, made unique in the batch ('a.png' and 'a.jpg' both exist)."""
    names, seen = [], set()
    for f in files:
        stem = f"{f.stem}_x{scale}_{label}"
        if stem in seen:
            stem = f"{f.stem}_{f.suffix.lstrip('.').lower()}_x{scale}_{label}"
        n = 2
        base = stem
        while stem in seen:
            stem, n = f"{base}_{n}", n + 1
        seen.add(stem)
        names.append(stem)
    return names


# --------------------------------------------------------------------------- pixels


def upscale_array(model, arr: np.ndarray, tile: int | None = DEFAULT_TILE,
                  overlap: int | None = None, self_ensemble: bool = False,
                  device: str | torch.device = "cpu",
                  on_tile: Callable[[], None] | None = None) -> np.ndarray:
    """uint8 ``(H, W, C)`` -> uint8 ``(s*H, s*W, C)``, rounded tile by tile.

    The input is viewed as a ``(1, C, H, W)`` uint8 tensor (no float copy of the whole image)
    and each SR tile is rounded straight into the uint8 output: peak memory is the two uint8
    images plus one tile's activations. ``on_tile`` is called after each tile (progress).
    """
    s = int(model.scale)
    h, w, c = arr.shape
    arr = np.ascontiguousarray(arr)
    with warnings.catch_warnings():  # PIL's arrays are read-only; the tensor is only read
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        lr = torch.from_numpy(arr).permute(2, 0, 1)[None]
    out = np.empty((h * s, w * s, c), dtype=np.uint8)
    for y, x, sr in iter_sr_tiles(model, lr, tile, overlap, self_ensemble, device):
        block = quantize(sr[0]).to("cpu", torch.uint8).permute(1, 2, 0).numpy()
        out[y:y + block.shape[0], x:x + block.shape[1]] = block
        if on_tile is not None:
            on_tile()
    return out


def count_tiles(path: Path, tile: int | None) -> int:
    """How many tiles :func:`upscale_array` runs for the image at ``path`` (header only; 0 if
    unreadable: the read reports it). EXIF rotation swaps the sides, not the count."""
    try:
        with Image.open(path) as img:
            w, h = img.size
    except Exception:  # reported by the read itself, with advice
        return 0
    return len(tile_grid(h, w, tile))


def _icc_for(icc: bytes | None, channels: int) -> bytes | None:
    """The ICC profile if its colour space fits the output (a CMYK JPEG's profile doesn't)."""
    if not icc or len(icc) < 20:
        return None
    want = b"GRAY" if channels == 1 else b"RGB "
    return icc if icc[16:20] == want else None


def _rgb(arr: np.ndarray) -> Image.Image:
    return Image.fromarray(np.repeat(arr, 3, axis=2) if arr.shape[2] == 1 else arr, "RGB")


def _panel(arr: np.ndarray, label: str, box: tuple[int, int, int, int], size: tuple[int, int],
           inset: int) -> Image.Image:
    """One half of the compare image: the (shrunk) picture, a red box around the centre crop
    ``box`` and, bottom right, that crop zoomed (nearest neighbour) to ``inset`` pixels."""
    full = _rgb(arr)
    view = full if full.size == size else full.resize(size, Image.Resampling.LANCZOS)
    zoom = full.crop(box).resize((inset, inset), Image.Resampling.NEAREST)
    fx, fy = size[0] / full.size[0], size[1] / full.size[1]
    draw = ImageDraw.Draw(view)
    draw.rectangle([box[0] * fx, box[1] * fy, box[2] * fx - 1, box[3] * fy - 1],
                   outline=(255, 0, 0), width=2)
    pad = 4
    px, py = size[0] - inset - pad, size[1] - inset - pad
    view.paste(zoom, (px, py))
    draw.rectangle([px - 2, py - 2, px + inset + 1, py + inset + 1], outline=(255, 0, 0), width=2)
    left, top, right, bottom = draw.textbbox((4, 2), label)
    draw.rectangle([0, 0, right + 4, bottom + 3], fill=(0, 0, 0))
    draw.text((4, 2), label, fill=(255, 255, 255))
    return view


def compare_image(bicubic: np.ndarray, sr: np.ndarray, label: str,
                  max_side: int = COMPARE_MAX_SIDE) -> np.ndarray:
    """Side by side ``bicubic | model`` uint8 ``(H', 2W' + gap, 3)`` with a zoomed centre inset.

    Both inputs are uint8 ``(H, W, C)`` of the same size. Panels are shrunk to ``max_side``;
    the inset is cut from the full-resolution images, so it shows the real pixels.
    """
    h, w = sr.shape[:2]
    crop = min(h, w, max(8, min(h, w) // 6))
    y0, x0 = (h - crop) // 2, (w - crop) // 2
    box = (x0, y0, x0 + crop, y0 + crop)
    f = min(1.0, max_side / max(h, w))
    size = (max(1, round(w * f)), max(1, round(h * f)))
    inset = max(1, round(min(size) * 0.4))
    gap = 6
    canvas = Image.new("RGB", (2 * size[0] + gap, size[1]), (255, 255, 255))
    canvas.paste(_panel(bicubic, "bicubic", box, size, inset), (0, 0))
    canvas.paste(_panel(sr, label, box, size, inset), (size[0] + gap, 0))
    return np.asarray(canvas)


# --------------------------------------------------------------------------- one file


def upscale_file(path: Path, stem: str, model, label: str, out_dir: Path,
                 tile: int | None = DEFAULT_TILE, self_ensemble: bool = False,
                 device: str | torch.device = "cpu", compare: bool = False,
                 on_tile: Callable[[], None] | None = None) -> UpscaleRecord:
    """Read, super-resolve, write one image (and its compare image); errors propagate."""
    t0 = time.perf_counter()
    arr, alpha, icc = read_image_with_alpha(path)
    s = int(model.scale)
    sr = upscale_array(model, arr, tile, None, self_ensemble, device, on_tile)
    bicubic = Bicubic(s)
    alpha_up = None
    if alpha is not None:
        alpha_up = upscale_array(bicubic, alpha[:, :, None], tile, None, False, "cpu")[:, :, 0]
    profile = _icc_for(icc, arr.shape[2])
    out = out_dir / f"{stem}.png"
    save_png(out, sr, alpha_up, profile)
    rec = UpscaleRecord(input=path, output=out, in_size=(arr.shape[1], arr.shape[0]),
                        out_size=(sr.shape[1], sr.shape[0]), channels=arr.shape[2],
                        has_alpha=alpha is not None)
    if high_bit_depth(path):
        rec.note = (f"{path}: 16-bit image written as 8-bit PNG {out.name} (values rounded to "
                    "8 bits: the nets work on 8-bit images)")
    del alpha_up
    if compare:
        base = sr if label == "bicubic" else upscale_array(bicubic, arr, tile, None, False, "cpu")
        rec.compare = out_dir / f"{stem}_compare.png"
        save_png(rec.compare, compare_image(base, sr, label))
    rec.seconds = time.perf_counter() - t0
    return rec


def _one_line(path: Path, exc: Exception) -> str:
    if isinstance(exc, AblationError):
        return str(exc).replace("\n", " ")
    first = str(exc).splitlines()[0] if str(exc) else ""
    if isinstance(exc, Image.DecompressionBombError):
        return f"{path}: {first}; if you trust the file, raise PIL.Image.MAX_IMAGE_PIXELS"
    return f"{path}: failed ({exc.__class__.__name__}: {first}); check that the file is a " \
        "valid image"


def upscale_files(inputs: str | Path | Iterable[str | Path], scale: int = 2,
                  model: str | None = None, checkpoint: str | Path | None = None,
                  out_dir: str | Path = DEFAULT_OUT, tile: int | None = DEFAULT_TILE,
                  self_ensemble: bool = False, device: str = "auto", compare: bool = False,
                  profile: str = "cpu", results_dir=None, progress: bool = True,
                  on_error: Callable[[str], None] | None = None,
                  on_note: Callable[[str], None] | None = None) -> list[UpscaleRecord]:
    """Upscale every image in ``inputs`` (files and/or folders); one record per input.

    Args:
        model: 'bicubic', 'TASK/VARIANT', or None / 'best' (best finished run at ``scale``).
        checkpoint: a ``model.pt`` file (its scale must equal ``scale``); overrides ``model``.
        tile: LR tile size (0 / None: whole image); images up to ``tile`` run in one piece.
        on_error: called with each failed file's one-line message as it happens.
        on_note: called with each written file's one-line note (a 16-bit input written as
            8-bit), as it happens.
        progress: a bar over the tiles of all images (a large image moves it too).

    Raises AblationError only for problems with the whole batch (no model, bad device);
    per-file problems are in the records (``record.error``) and the other files still run.
    """
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    dev = resolve_device(device)
    net, label = load_upscaler(scale, model, checkpoint, profile, results_dir)
    if param_count(net):
        net = net.to(dev).eval()
    files, records = collect_inputs(inputs)
    for rec in records:
        if on_error:
            on_error(rec.error)
    out_dir = Path(out_dir)
    stems = output_names(files, scale, label)
    tiles = [count_tiles(f, tile) for f in files]
    bar = tqdm(total=sum(tiles), desc=f"upscale x{scale} {label}", unit="tile",
               mininterval=1.0, disable=not progress)
    with bar:
        for path, stem, n_tiles in zip(files, stems, tiles, strict=True):
            bar.set_postfix_str(path.name, refresh=False)
            start = bar.n
            try:
                rec = upscale_file(path, stem, net, label, out_dir, tile, self_ensemble, dev,
                                   compare, on_tile=bar.update)
            except Exception as exc:  # one bad file must not stop the batch
                rec = UpscaleRecord(input=path, error=_one_line(path, exc))
                if on_error:
                    on_error(rec.error)
            bar.update(start + n_tiles - bar.n)  # a failed file's tiles count as done
            if rec.note and on_note:
                on_note(rec.note)
            records.append(rec)
    return records


def param_count(model) -> int:
    return sum(p.numel() for p in model.parameters()) if isinstance(model, torch.nn.Module) else 0


def summary(records: Sequence[UpscaleRecord], out_dir: str | Path) -> str:
    """One line: files written, output megapixels, seconds per output megapixel, failures."""
    done = [r for r in records if r.ok]
    failed = len(records) - len(done)
    mp = sum(r.out_megapixels for r in done)
    secs = sum(r.seconds for r in done)
    rate = f"{secs / mp:.2f} s/MP" if mp > 0 else "n/a s/MP"
    text = (f"wrote {len(done)} file(s) to {out_dir}: {mp:.2f} output MP in {secs:.1f} s "
            f"({rate})")
    return text + (f"; {failed} failed" if failed else "")


# --------------------------------------------------------------------------- command line


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``upscale`` subcommand to an argparse ``subparsers`` object (``func=run``)."""
    p = subparsers.add_parser(
        "upscale", help="super-resolve your own images with a trained model",
        description="Super-resolve image files and folders with a trained model (default: the "
                    "best finished run at --scale), a checkpoint file, or bicubic.")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files and/or folders")
    p.add_argument("--scale", type=int, choices=SCALES, default=2, help="factor (default 2)")
    who = p.add_mutually_exclusive_group()
    who.add_argument("--model", default=None,
                     help="TASK/VARIANT (e.g. task4/baseline), 'best' or 'bicubic' (default: "
                          "best, the finished run with the highest Set5 PSNR at --scale)")
    who.add_argument("--checkpoint", default=None,
                     help="a model.pt file to use instead of --model (default: none)")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    p.add_argument("--tile", type=int, default=DEFAULT_TILE,
                   help=f"LR tile size for large images, 0 = whole image (default {DEFAULT_TILE})")
    p.add_argument("--self-ensemble", action="store_true",
                   help="average the 8 flips/transposes (8x slower, ~+0.1 dB)")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--compare", action="store_true",
                   help="also write <name>_compare.png: bicubic | model with a zoomed centre")
    p.add_argument("--profile", default="cpu", choices=PROFILE_NAMES,
                   help="which results profile to take trained models from (default cpu)")
    p.add_argument("--results", default=None, help=RESULTS_HELP)
    add_progress_option(p, "--quiet")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run the command; 0 if every file was written, 1 if any failed, 2 if an INPUT argument
    names no image.

    Batch-level problems (no trained model, checkpoint at another scale) raise AblationError,
    which the CLI prints as one ``error:`` line.
    """
    def report(message: str) -> None:
        tqdm.write(f"error: {message}", file=sys.stderr)

    def note(message: str) -> None:
        tqdm.write(f"note: {message}", file=sys.stderr)

    records = upscale_files(
        args.inputs, args.scale, model=args.model, checkpoint=args.checkpoint,
        out_dir=args.out, tile=args.tile or None, self_ensemble=args.self_ensemble,
        device=args.device, compare=args.compare, profile=args.profile,
        results_dir=args.results, progress=progress_wanted(args), on_error=report,
        on_note=note)
    print(summary(records, args.out))
    if any(r.usage for r in records):
        return 2
    return 0 if all(r.ok for r in records) else 1


def main(argv: list[str] | None = None) -> int:
    """``ablation upscale`` on its own (for tests)."""
    return subcommand_main("upscale", add_parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
