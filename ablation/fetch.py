"""``ablation data fetch``: put a named dataset into the data dir, from a mirror or online.

The registry (names, URLs, checksums, layout) and the manifest checks are :mod:`ablation.data`;
this module is the one way in that writes datasets: a local mirror is copied file by file,
verified against its SHA-256 manifest, and an online fetch goes through
:mod:`ablation.download`. Both hold the dataset's lock (:func:`fetch_lock`), so two fetches of
the same dataset into one data dir never swap folders under each other.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ablation import download, paths
from ablation.data import (
    DATASETS,
    GROUPS,
    Dataset,
    Source,
    check_counts,
    fix_command,
    read_manifest,
    sha256_file,
    write_manifest,
)
from ablation.errors import DataError, check_choice
from ablation.fs import exclusive_lock


def fetch(name: str, data_dir: str | os.PathLike | None = None,
          mirror: str | os.PathLike | None = None, lr_scales: Sequence[int] = (),
          sources: dict[str, tuple[Source, ...]] | None = None) -> list[Path]:
    """Fetch a named dataset into the data dir and return the folders it now holds.

    ``mirror`` (or ``$ABLATION_MIRROR``) copies from a local folder laid out like
    ``../shared/datasets`` and verifies each file against the mirror's SHA-256 manifest.
    Otherwise the official archives are downloaded (checksummed, retried, with fallbacks).
    ``sources`` overrides the download URLs per dataset name (tests point it at a loopback
    server). ``lr_scales`` adds DIV2K's official bicubic LR images (ignored for a mirror, which
    holds HR only). Unknown names raise ConfigError listing the valid ones.
    """
    check_choice("dataset", name, [*DATASETS, *GROUPS])
    lr_scales = tuple(int(s) for s in lr_scales)
    if name in GROUPS:
        return [f for part in GROUPS[name] for f in fetch(part, data_dir, mirror, lr_scales,
                                                           sources)]
    root = paths.data_dir(data_dir)
    ds = DATASETS[name]
    mirror_root = paths.mirror_dir(mirror)
    if mirror_root is not None:
        _fetch_from_mirror(ds, root, mirror_root)
    else:
        make_dir(root)
        with fetch_lock(root, ds.name):
            download.fetch_online(ds, root, lr_scales, (sources or {}).get(name))
    return [root / ds.subdir]


def fetch_lock(root: Path, name: str):
    """One fetch of a dataset per data dir at a time (two would swap folders under each
    other). POSIX ``flock``: released by the OS if the process dies, so never stale."""
    def busy(_holder: str) -> DataError:
        return DataError(f"{root}: another `{fix_command(name)}` is running on this data dir; "
                         "wait for it to finish")

    return exclusive_lock(root / f".fetch-{name}.lock", busy)


def _fetch_from_mirror(ds: Dataset, root: Path, mirror_root: Path) -> None:
    """Copy one dataset from a local mirror, verifying every file against the mirror manifest.

    Each file goes through a temp file and is renamed into place only once its checksum
    matches, so a corrupt mirror copy never lands in the data dir; files already present with
    the right checksum are skipped (a refetch is cheap and repairs a partial dataset)."""
    if not mirror_root.is_dir():
        raise DataError(f"{mirror_root}: mirror folder not found; pass an existing folder to "
                        "--mirror / ABLATION_MIRROR, or unset it to download online")
    manifest = mirror_root / ds.mirror_manifest
    src_dir = mirror_root / ds.mirror_subdir
    if not manifest.exists() or not src_dir.is_dir():
        raise DataError(
            f"{src_dir}: dataset {ds.name!r} not in the mirror {mirror_root}; "
            "fetch it online (drop --mirror) or add it to the mirror"
        )
    entries = read_manifest(manifest, ds.manifest_prefix)
    if not entries:
        raise DataError(f"{manifest}: no entries for {ds.name!r}; the mirror's manifest is wrong")
    check_counts(ds.name, entries, manifest, "the mirror's manifest is incomplete: restore it "
                 "or fetch online (drop --mirror)")
    dest = root / ds.subdir
    make_dir(dest)
    with fetch_lock(root, ds.name):
        for stale in dest.rglob(".fetch.*"):  # temp files of a copy that was killed
            stale.unlink(missing_ok=True)
        _copy_verified(ds, manifest, entries, src_dir, dest)


def _copy_verified(ds: Dataset, manifest: Path, entries: dict[str, str], src_dir: Path,
                   dest: Path) -> None:
    """Copy and verify every listed file; the manifest is written only once all are in, so
    a failure half-way leaves the dataset marked as it was (copied files are kept, verified,
    and skipped by the next fetch)."""
    done: dict[str, str] = {}
    copied = 0

    def failed(what: str) -> DataError:
        left = (f"the {copied} file(s) copied before it are kept in {dest} (verified; the "
                "dataset stays unfetched until a fetch completes)") if copied else \
            "nothing was written to the data dir"
        return DataError(f"{what}; {left}")

    for rel_name, digest in entries.items():
        target = dest / rel_name
        if target.exists() and sha256_file(target) == digest:
            done[rel_name] = digest
            continue
        source = src_dir / rel_name
        if not source.is_file():
            raise failed(f"{source}: listed in {manifest} but missing from the mirror")
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".fetch.", dir=target.parent)
        os.close(fd)
        try:
            shutil.copyfile(source, tmp)
            if sha256_file(Path(tmp)) != digest:
                raise failed(f"{source}: checksum mismatch against {manifest}; the mirror copy "
                             "is corrupt: replace it")
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        copied += 1
        done[rel_name] = digest
    write_manifest(dest, done)


def make_dir(folder: Path) -> None:
    """``mkdir -p`` with a one-line DataError instead of an OSError traceback."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"{folder}: cannot create this folder ({exc.strerror or exc}); pass a "
                        "writable --data-dir or free disk space") from None
