"""Archives from the network, made safe and put into the canonical layout of :mod:`ablation.data`.

:func:`safe_extract` refuses any member that would land outside the target folder before
anything is written; :data:`COLLECTORS` then move (or losslessly convert to PNG) each dataset's
images from the extracted tree into the folders ``data.py`` lists. Used by
:mod:`ablation.download`; everything here works on local files only.
"""

from __future__ import annotations

import errno
import os
import re
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from PIL import Image, ImageOps, UnidentifiedImageError

from ablation.config import BENCHMARKS
from ablation.errors import DataError
from ablation.images import IMAGE_SUFFIXES

WHOLE = ""  # part key of a dataset installed as one folder
DIV2K_TRAIN_LAST = 800  # DIV2K.tar keeps 0001-0900 in one folder: 0801+ are the valid split


# --------------------------------------------------------------------------- extracting


def _unsafe(archive: Path, member: str, why: str) -> DataError:
    return DataError(
        f"{archive}: unsafe member {member!r} ({why}); the archive is malicious or broken: "
        "delete it and download it again from the official URL"
    )


def _escape_reason(dest: Path, member: str) -> str | None:
    """Why ``member`` (an archive path, relative to ``dest``) would land outside ``dest``,
    or None when it stays inside."""
    if not member or "\x00" in member:
        return "empty name or NUL byte in name"
    if member.startswith(("/", "\\")) or os.path.isabs(member) or re.match(r"^[A-Za-z]:", member):
        return "absolute path"
    norm = os.path.normpath(member.replace("\\", "/"))
    target = (dest / norm).resolve()
    if norm == ".." or norm.startswith("../") or (
            target != dest and not str(target).startswith(str(dest) + os.sep)):
        return "path outside the target folder"
    return None


def _too_big(archive: Path, total: int, max_bytes: int | None) -> None:
    if max_bytes is not None and total > max_bytes:
        raise DataError(f"{archive}: expands to {total:,} bytes, over this dataset's cap of "
                        f"{max_bytes:,}; not the expected archive (or a zip bomb): delete it "
                        "and fetch again")


def safe_extract(archive: Path, dest: Path, max_bytes: int | None = None) -> None:
    """Extract a zip or tar archive into ``dest``, refusing members that would write outside it.

    Archives come from the network, so every member is checked *before* anything is written:
    ``../`` or absolute paths (zip-slip / tar-slip), links whose target leaves ``dest``, members
    reached through a link (``link/../../x``) and device files all raise DataError. A truncated
    or corrupt archive also raises DataError instead of a library traceback. ``max_bytes``
    caps the total expanded size (the members' declared sizes, which zipfile and tarfile
    never write past), also checked before anything is written.
    """
    archive = Path(archive)
    dest = Path(dest).resolve()
    dest.mkdir(parents=True, exist_ok=True)

    if zipfile.is_zipfile(archive):
        try:
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    why = _escape_reason(dest, info.filename)
                    if why:
                        raise _unsafe(archive, info.filename, why)
                _too_big(archive, sum(i.file_size for i in zf.infolist()), max_bytes)
                # zipfile writes symlink entries as small regular files: nothing to follow.
                zf.extractall(dest)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error) as exc:
            raise DataError(f"{archive}: corrupt or truncated zip ({exc}); delete it and "
                            "fetch again") from None
        return
    try:
        tf = tarfile.open(archive)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise DataError(f"{archive}: not a zip or tar archive ({exc}); delete it and "
                        "fetch again") from None
    with tf:
        try:
            members = tf.getmembers()
        except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
            raise DataError(f"{archive}: corrupt or truncated tar ({exc}); delete it and "
                            "fetch again") from None
        links: set[str] = set()
        for m in members:
            why = _escape_reason(dest, m.name)
            if why:
                raise _unsafe(archive, m.name, why)
            name = os.path.normpath(m.name.replace("\\", "/"))
            # check the raw prefixes: normpath would fold "link/../x" and hide the link
            comps = [c for c in m.name.replace("\\", "/").split("/") if c not in ("", ".")]
            if any(os.path.normpath("/".join(comps[:k])) in links for k in range(1, len(comps))):
                raise _unsafe(archive, m.name, "path goes through a link in the archive")
            if m.issym() or m.islnk():
                # symlink targets are relative to the link's folder, hard links to the root
                target = (os.path.join(os.path.dirname(name), m.linkname)
                          if m.issym() and not os.path.isabs(m.linkname) else m.linkname)
                if _escape_reason(dest, target):
                    raise _unsafe(archive, m.name, f"link to {m.linkname!r} points outside")
                links.add(name)
            elif not (m.isfile() or m.isdir()) or m.issparse():
                raise _unsafe(archive, m.name, "device, FIFO, sparse or other special file")
        _too_big(archive, sum(m.size for m in members if m.isfile()), max_bytes)
        try:
            if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12 / 3.11.4: belt and braces
                tf.extractall(dest, members=members, filter="data")
            else:
                tf.extractall(dest, members=members)
        except (tarfile.TarError, EOFError, zlib.error) as exc:
            raise DataError(f"{archive}: corrupt or truncated tar ({exc}); delete it and "
                            "fetch again") from None


# --------------------------------------------------------------------------- collecting


def _images_in(folder: Path) -> list[Path]:
    """Regular image files directly in ``folder`` (links from an archive are ignored)."""
    return sorted(p for p in folder.iterdir()
                  if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and not p.is_symlink()
                  and not p.name.startswith("."))


def _dirs_named(root: Path, name: str) -> list[Path]:
    """Real folders called ``name`` under ``root``, shallowest first."""
    found = [p for p in root.rglob(name) if p.is_dir() and not p.is_symlink()]
    return sorted(found, key=lambda p: (len(p.parts), str(p)))


def _move(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.replace(src, dst)


_PNG_MODES = {"1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16"}


def _to_png(src: Path, dst: Path, archive: Path, exif: bool) -> None:
    """Decode ``src`` and save it losslessly as PNG (BMP keeps its exact pixels; a JPEG keeps
    its decoded pixels, so training never re-decodes with another libjpeg)."""
    try:
        with Image.open(src) as im:
            im.load()
            img = ImageOps.exif_transpose(im) if exif else im
            if img.mode not in _PNG_MODES:
                img = img.convert("RGB")
            dst.parent.mkdir(parents=True, exist_ok=True)
            img.save(dst, format="PNG")
    except (UnidentifiedImageError, Image.DecompressionBombError, SyntaxError, ValueError,
            EOFError) as exc:
        raise DataError(f"{archive}: member {src.name} is not a readable image ({exc}); the "
                        "archive is corrupt: delete it and fetch again") from None
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EROFS):
            raise DataError(f"{dst.parent}: cannot write ({exc.strerror}); free disk space or "
                            "fix permissions, then re-run the fetch") from None
        raise DataError(f"{archive}: member {src.name} is not a readable image ({exc}); the "
                        "archive is corrupt: delete it and fetch again") from None


def _collect_benchmark(ex: Path, out: Path, parts: set[str],
                       archive: Path) -> dict[str, list[str]]:
    """benchmark.tar: ``benchmark/<set>/HR`` (and ``LR_bicubic/X<s>`` when present)."""
    files: list[str] = []
    for set_name in BENCHMARKS:
        homes = [d for d in _dirs_named(ex, set_name) if (d / "HR").is_dir()]
        if not homes:
            raise DataError(f"{archive}: no {set_name}/HR folder inside; not the benchmark "
                            "archive: delete it and fetch again")
        home = homes[0]
        sub_dirs = [home / "HR"]
        lr_root = home / "LR_bicubic"
        if lr_root.is_dir():
            sub_dirs += sorted(d for d in lr_root.iterdir()
                               if d.is_dir() and not d.is_symlink() and re.fullmatch(r"X\d+",
                                                                                     d.name))
        for sub in sub_dirs:
            rel_dir = PurePosixPath(set_name, sub.relative_to(home).as_posix())
            for f in _images_in(sub):
                _move(f, out / rel_dir / f.name)
                files.append(str(rel_dir / f.name))
    return {WHOLE: files}


def _collect_t91(ex: Path, out: Path, parts: set[str], archive: Path) -> dict[str, list[str]]:
    """SRCNN_train.zip: ``Train/*.bmp`` -> ``<stem>.png`` (lossless)."""
    bmps = [p for p in ex.rglob("*") if p.suffix.lower() == ".bmp" and p.is_file()
            and not p.is_symlink()]
    in_train = [p for p in bmps if p.parent.name.lower() == "train"]
    return {WHOLE: _convert_all(in_train or bmps, out, archive, exif=False)}


def _collect_bsds200(ex: Path, out: Path, parts: set[str],
                     archive: Path) -> dict[str, list[str]]:
    """BSDS300-images.tgz: ``images/train/*.jpg`` -> ``<id>.png`` (decoded pixels, lossless)."""
    jpgs = [p for p in ex.rglob("*.jpg") if p.is_file() and not p.is_symlink()
            and p.parent.name == "train" and p.parent.parent.name == "images"]
    return {WHOLE: _convert_all(jpgs, out, archive, exif=True)}


def _convert_all(sources: list[Path], out: Path, archive: Path, exif: bool) -> list[str]:
    names: dict[str, Path] = {}
    for src in sorted(sources):
        name = f"{src.stem}.png"
        if name in names:
            raise DataError(f"{archive}: two images map to {name} ({names[name].name}, "
                            f"{src.name}); not the expected archive")
        names[name] = src
        _to_png(src, out / name, archive, exif)
    return sorted(names)


def _collect_div2k(ex: Path, out: Path, parts: set[str], archive: Path) -> dict[str, list[str]]:
    """DIV2K zips or DIV2K.tar: HR by number (0801+ are valid, even inside a train folder),
    official train LR ``X<s>/0001x<s>.png``; only ``parts`` are taken."""
    got: dict[str, list[str]] = {}
    for f in sorted(ex.rglob("*.png")):
        if not f.is_file() or f.is_symlink():
            continue
        part = None
        if f.parent.name in ("DIV2K_train_HR", "DIV2K_valid_HR") and re.fullmatch(r"\d{4}",
                                                                                  f.stem):
            part = "DIV2K_train_HR" if int(f.stem) <= DIV2K_TRAIN_LAST else "DIV2K_valid_HR"
        elif (m := re.fullmatch(r"X(\d+)", f.parent.name)) and f.parent.parent.name in (
                "DIV2K_train_LR_bicubic", "DIV2K_valid_LR_bicubic"):
            num = re.fullmatch(rf"(\d{{4}})x{m[1]}", f.stem)
            if num and int(num[1]) <= DIV2K_TRAIN_LAST:
                part = f"DIV2K_train_LR_bicubic/X{m[1]}"
        if part in parts:
            _move(f, out / part / f.name)
            got.setdefault(part, []).append(f.name)
    return got


COLLECTORS: dict[str, Callable[[Path, Path, set[str], Path], dict[str, list[str]]]] = {
    "benchmark": _collect_benchmark,
    "t91": _collect_t91,
    "bsds200": _collect_bsds200,
    "div2k": _collect_div2k,
}
