"""Download the official dataset archives, verify them, and install them atomically.

:func:`ablation.fetch.fetch` calls :func:`fetch_online` (holding the dataset's fetch lock) when
no mirror is given. Why it is built this way:

- Integrity: pooch streams each archive to a temp file and checks the published checksum
  (deleting the temp file on a mismatch). Where no checksum is published (BSDS300, the SNU
  DIV2K.tar) the size, when known, and the number of images after extraction are checked
  instead, and such an archive is trusted for reuse only after it passed (a ``.sha256``
  sidecar written next to it), so a truncated download never looks valid.
- Robustness: each URL gets :data:`ATTEMPTS` tries with backoff (:data:`RETRY_DELAYS`), then
  the next source is tried; DIV2K falls back to the single SNU tar when an ETH link fails.
- Atomicity: archives are extracted and converted in a staging folder inside the data dir
  (same filesystem), the ``SHA256SUMS`` manifest is written there, and only then is the
  finished folder renamed into place. A failure at any step leaves the canonical folder as
  it was; a later :func:`ablation.data.verify_folder` catches files deleted afterwards.
- Safety: extraction goes through :func:`ablation.archives.safe_extract` (zip/tar-slip refused),
  and :data:`ablation.archives.COLLECTORS` put the images into the canonical layout.
- Errors: every failure reaches the user as one DataError line naming the URL or file and
  the fix (no network: use ``--mirror DIR`` / ``ABLATION_MIRROR``).
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from ablation import data
from ablation.archives import COLLECTORS, WHOLE, safe_extract
from ablation.data import EXPECTED_IMAGES, MANIFEST, Dataset, Source
from ablation.errors import DataError, check_choice, quiet_logger
from ablation.fs import atomic_write_text, clean_swap_leftovers, swap_in

ATTEMPTS = 3  # tries per URL before moving on to the next source
RETRY_DELAYS: tuple[float, ...] = (2.0, 6.0)  # seconds slept before the 2nd and 3rd try
TIMEOUT_S = 60.0  # per connect / per read, not for the whole download
NO_RETRY_STATUS = frozenset(range(400, 500)) - {408, 425, 429}  # a 404 won't fix itself


MIRROR_HINT = "`ablation data fetch {name} --mirror DIR` (or set ABLATION_MIRROR=DIR)"


class _SourceFailed(Exception):
    """One source could not deliver (after its retries); collected for the final message.

    ``offline`` marks connection refused / DNS failures: when every source failed that way
    there is probably no network at all, and the message says to use a mirror."""

    def __init__(self, url: str, reason: str, offline: bool = False) -> None:
        super().__init__(f"{url}: {reason}")
        self.url, self.reason, self.offline = url, reason, offline


# --------------------------------------------------------------------------- entry point


def fetch_online(ds: Dataset, root: Path, lr_scales: tuple[int, ...] = (),
                 sources: tuple[Source, ...] | None = None) -> None:
    """Download ``ds`` into ``root`` (the data dir) in the canonical layout of data.py.

    ``sources`` replaces the dataset's URL list (tests serve archives from a loopback server).
    For most datasets the sources are alternatives tried in order; for DIV2K each archive
    provides the part its file name says (``DIV2K_train_HR.zip``, ``DIV2K_valid_HR.zip``,
    ``DIV2K_train_LR_bicubic_X2.zip``) and any other archive (``DIV2K.tar``) is a fallback
    holding everything. A dataset already complete and verified is not downloaded again.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(f".fetch-{ds.name}-*"):  # left by a crashed run: the caller locks
        shutil.rmtree(stale, ignore_errors=True)
    if ds.name == "div2k":
        _fetch_div2k(ds, root, tuple(lr_scales), sources)
    else:
        _fetch_whole(ds, root, ds.sources if sources is None else sources)


def _fetch_whole(ds: Dataset, root: Path, sources: tuple[Source, ...]) -> None:
    """Datasets installed as one folder: first source that delivers wins."""
    dest = root / ds.subdir
    clean_swap_leftovers(dest)
    if _verified(dest, ds.name):
        _say(f"{ds.name}: already fetched and verified in {dest}")
        return
    plan = [(src, {WHOLE}) for src in sources]
    with _staging(root, ds.name) as stage:
        produced = _gather(ds, root, stage, plan, {WHOLE})
        out = produced[WHOLE]
        data.write_manifest(out, _hash_tree(out))
        swap_in(out, dest)
    _say(f"{ds.name}: installed {dest}")


def _fetch_div2k(ds: Dataset, root: Path, lr_scales: tuple[int, ...],
                 sources: tuple[Source, ...] | None) -> None:
    """DIV2K: HR train/valid plus optional official LR scales, each part fetched (or kept)
    on its own so adding ``--lr-scales 3`` later doesn't download the 3.5 GB HR zip again."""
    for s in lr_scales:
        check_choice("DIV2K LR scale", s, sorted(data.DIV2K_LR))
    dest = root / ds.subdir
    old = _readable_manifest(dest)
    # scales fetched before stay part of the dataset (kept, or repaired if damaged)
    old_scales = {int(m[1]) for rel in old
                  if (m := re.match(r"DIV2K_train_LR_bicubic/X(\d+)/", rel))
                  and int(m[1]) in data.DIV2K_LR}
    parts = {"DIV2K_train_HR", "DIV2K_valid_HR"} | {
        f"DIV2K_train_LR_bicubic/X{s}" for s in sorted(set(lr_scales) | old_scales)}
    for part in parts:
        clean_swap_leftovers(dest / part)
    complete = {p for p in parts if _part_verified(dest, old, p)}
    needed = parts - complete
    if not needed:
        _say(f"{ds.name}: already fetched and verified in {dest}")
        return
    if sources is None:
        sources = (*ds.sources,
                   *(data.DIV2K_LR[int(p.rsplit("X", 1)[1])] for p in sorted(needed)
                     if p.startswith("DIV2K_train_LR_bicubic/")),
                   data.DIV2K_FALLBACK)
    plan = [(src, _div2k_provides(src, parts)) for src in sources]
    with _staging(root, ds.name) as stage:
        produced = _gather(ds, root, stage, plan, needed)
        new_entries: dict[str, str] = {}
        for part, folder in produced.items():
            new_entries.update({f"{part}/{rel}": d for rel, d in _hash_tree(folder).items()})
        kept = {rel: d for rel, d in old.items() if _part_of(rel) in complete}
        dest.mkdir(parents=True, exist_ok=True)
        # From here until the new manifest is written DIV2K reads as "not fetched", so a
        # crash between the part swaps can't pass for a complete dataset.
        (dest / MANIFEST).unlink(missing_ok=True)
        for part, folder in sorted(produced.items()):
            swap_in(folder, dest / part)
        data.write_manifest(dest, {**kept, **new_entries})
    _say(f"{ds.name}: installed {', '.join(sorted(produced))} in {dest}")


def _div2k_provides(src: Source, parts: set[str]) -> set[str]:
    """Which DIV2K parts an archive holds, from its official file name; others hold all."""
    name = _archive_name(src.url)
    if m := re.search(r"DIV2K_(train|valid)_HR\.zip$", name):
        return {f"DIV2K_{m[1]}_HR"} & parts
    if m := re.search(r"DIV2K_train_LR_bicubic_X(\d+)\.zip$", name):
        return {f"DIV2K_train_LR_bicubic/X{m[1]}"} & parts
    return set(parts)


# --------------------------------------------------------------------------- the main loop


def _gather(ds: Dataset, root: Path, stage: Path, plan: list[tuple[Source, set[str]]],
            needed: set[str]) -> dict[str, Path]:
    """Download, extract and convert sources in order until every needed part is produced
    (in ``stage``); return {part: folder}. Raises one DataError listing every failure."""
    downloads = root / "downloads"
    remaining = set(needed)
    produced: dict[str, Path] = {}
    failures: list[_SourceFailed] = []
    for i, (src, provides) in enumerate(plan):
        wanted = provides & remaining
        if not wanted:
            continue
        try:
            archive = _download(src, downloads)
        except _SourceFailed as exc:
            failures.append(exc)
            continue
        extracted, out = stage / f"x{i}", stage / f"p{i}"
        try:
            _say(f"{ds.name}: extracting {archive.name}")
            safe_extract(archive, extracted, ds.max_extracted or None)
            got = COLLECTORS[ds.name](extracted, out, wanted, archive)
            _check_contents(ds, src, archive, out, got)
        except DataError as exc:
            _discard(archive)  # wrong or malicious content: never reuse this file
            # keep what went wrong, drop its "delete it" advice: the file is already deleted
            failures.append(_SourceFailed(src.url, _one_line(str(exc).split("; ")[0])))
            continue
        except OSError as exc:  # local disk full or unwritable: no other source will help
            raise DataError(f"{stage}: cannot extract {archive.name} ({exc.strerror or exc}); "
                            "free disk space or fix permissions, then re-run the fetch") from None
        finally:
            shutil.rmtree(extracted, ignore_errors=True)  # free the space before the next one
        if src.known_hash is None and not _sidecar(archive).exists():
            _trust(archive)  # (a sidecar that exists was just checked by _download)
        for part in got:
            produced[part] = out / part if part else out
        remaining -= set(got)
        missing = wanted - set(got)
        if missing:
            failures.append(_SourceFailed(src.url, f"archive lacks {', '.join(sorted(missing))}"))
        if not remaining:
            return produced
    raise _all_failed(ds, failures, remaining)


def _check_contents(ds: Dataset, src: Source, archive: Path, out: Path,
                    got: dict[str, list[str]]) -> None:
    """Every produced part holds images; without a published checksum, each folder holds
    exactly the expected number (a truncated or wrong archive otherwise installs quietly)."""
    for part, files in got.items():
        if not files:
            raise DataError(f"{archive}: no images for {part or ds.name} inside; "
                            "not the expected archive")
    if src.known_hash is not None:
        return
    counts: dict[str, int] = {}
    for part, files in got.items():
        for rel in files:
            folder = str(PurePosixPath(part, rel).parent) if part else str(
                PurePosixPath(rel).parent)
            counts[folder] = counts.get(folder, 0) + 1
    for pattern, expected in EXPECTED_IMAGES.get(ds.name, {}).items():
        for folder, n in counts.items():
            if fnmatch.fnmatchcase(folder, pattern) and n != expected:
                raise DataError(f"{archive}: {folder} holds {n} images, expected {expected}; "
                                "the download is incomplete or not the official archive")
    if ds.name == "bsds200" and len(got.get(WHOLE, [])) == len(data.BSDS200_IDS):
        # no published checksum: the extracted images must be the train split's, by name
        unexpected = sorted(set(got[WHOLE]) - {f"{i}.png" for i in data.BSDS200_IDS})
        if unexpected:
            raise DataError(f"{archive}: {unexpected[0]} is not a BSDS300 training image "
                            f"({len(unexpected)} such); not the official archive")


def _all_failed(ds: Dataset, failures: list[_SourceFailed], remaining: set[str]) -> DataError:
    hint = MIRROR_HINT.format(name=ds.name)
    what = ds.name if remaining == {WHOLE} else f"{ds.name} ({', '.join(sorted(remaining))})"
    if not failures:
        return DataError(f"cannot download {what}: no source provides it; copy it from a "
                         f"local mirror instead: {hint}")
    if all(f.offline for f in failures):
        hosts = ", ".join(sorted({urlsplit(f.url).hostname or f.url for f in failures}))
        return DataError(f"cannot download {what}: no network connection to {hosts} "
                         f"({failures[-1]}); copy it from a local mirror instead: {hint}")
    detail = "; ".join(str(f) for f in failures)
    return DataError(f"cannot download {what}: {detail}; re-run `{data.fix_command(ds.name)}` "
                     f"later, or copy it from a local mirror: {hint}")


# --------------------------------------------------------------------------- downloading


def _download(src: Source, downloads: Path) -> Path:
    """Fetch one archive into ``downloads`` with retries; return its path or raise
    _SourceFailed. Never leaves a file there that a later run would trust unverified."""
    import pooch
    import requests

    fname = _archive_name(src.url)
    target = downloads / fname
    # pooch streams into a temp file in its folder: give it a per-archive folder, cleared
    # first, so a killed run's half download never lingers (DIV2K's are GBs)
    partial = downloads / f".partial-{fname}"
    shutil.rmtree(partial, ignore_errors=True)
    if target.exists():
        if src.known_hash is None and _trusted(target):
            return target  # passed its checks on an earlier run
        if src.known_hash is not None and _hash_ok(target, src.known_hash):
            return target
        _discard(target)  # unverified leftover (e.g. an interrupted earlier run)
    failure = _SourceFailed(src.url, "not attempted")
    for attempt in range(ATTEMPTS):
        if attempt and RETRY_DELAYS:
            time.sleep(RETRY_DELAYS[min(attempt - 1, len(RETRY_DELAYS) - 1)])
        try:
            with _quiet_pooch():
                if not target.exists():
                    _say(f"downloading {src.url}")
                fetched = Path(pooch.retrieve(
                    src.url, known_hash=src.known_hash, fname=fname, path=partial,
                    downloader=pooch.HTTPDownloader(progressbar=_progressbar(),
                                                    timeout=TIMEOUT_S)))
                os.replace(fetched, target)
                shutil.rmtree(partial, ignore_errors=True)
                path = target
        except requests.exceptions.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else None
            failure = _SourceFailed(src.url, f"HTTP {status}")
            if status in NO_RETRY_STATUS:
                break
            continue
        except (requests.exceptions.ConnectionError, requests.exceptions.ConnectTimeout) as exc:
            failure = _SourceFailed(src.url, _reason(exc), offline=_unreachable(exc))
            continue
        except requests.exceptions.RequestException as exc:  # dropped mid-body, read timeout
            failure = _SourceFailed(src.url, f"download interrupted ({_reason(exc)})")
            continue
        except ValueError as exc:  # pooch: checksum mismatch (it already deleted the temp file)
            got = re.search(r"but got ([0-9a-fA-F]+)", str(exc))
            failure = _SourceFailed(
                src.url, f"checksum mismatch for {fname} (expected {src.known_hash}"
                         f"{', got ' + got[1] if got else ''}): corrupt or changed download")
            continue
        except OSError as exc:  # local disk: retrying or another URL won't help
            _discard(target)
            raise DataError(f"{downloads}: cannot save {fname} ({exc.strerror or exc}); free "
                            "disk space or fix permissions, then re-run the fetch") from None
        if src.known_hash is None and src.size is not None and path.stat().st_size != src.size:
            size = path.stat().st_size
            _discard(path)
            failure = _SourceFailed(src.url, f"got {size} bytes, expected {src.size}")
            continue
        return path
    shutil.rmtree(partial, ignore_errors=True)
    if src.known_hash is not None or not _trusted(target):
        _discard(target)  # a stale file pooch could not replace must not look valid
    raise failure


def _archive_name(url: str) -> str:
    """File name for a download: the URL's last path component, made filesystem-safe."""
    name = unquote(PurePosixPath(urlsplit(url).path).name)
    name = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".")
    return name or "download"


def _sidecar(archive: Path) -> Path:
    return archive.with_name(archive.name + ".sha256")


def _trust(archive: Path) -> None:
    """Record that an archive without a published checksum passed its checks."""
    atomic_write_text(_sidecar(archive), data.sha256_file(archive) + "\n")


def _hash_ok(archive: Path, known_hash: str) -> bool:
    """True if ``archive`` matches pooch-style ``known_hash`` ("sha256:...", "md5:...")."""
    import pooch

    alg, _, digest = known_hash.partition(":")
    return pooch.file_hash(str(archive), alg=alg).lower() == digest.lower()


def _trusted(archive: Path) -> bool:
    side = _sidecar(archive)
    if not archive.exists() or not side.exists():
        return False
    return side.read_text().strip() == data.sha256_file(archive)


def _discard(archive: Path) -> None:
    for p in (archive, _sidecar(archive)):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def _unreachable(exc: BaseException) -> bool:
    """True when no connection could be opened (DNS failure, refused, connect timeout): the
    signature of having no network, as opposed to a server that answered badly."""
    import requests
    from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, NewConnectionError

    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    for arg in exc.args:
        if isinstance(arg, MaxRetryError):
            return isinstance(arg.reason, (NewConnectionError, ConnectTimeoutError))
    text = str(exc)
    return any(s in text for s in ("Failed to establish a new connection", "Name or service not",
                                   "name resolution", "Connection refused"))


def _reason(exc: BaseException) -> str:
    """A short one-line cause from a requests/urllib3 exception chain."""
    text = str(exc)
    for pattern in (r"\[Errno -?\d+\] ([^'\")\]]+)", r"(Connection refused)",
                    r"(Remote end closed connection without response)",
                    r"(Connection reset by peer)",
                    r"(IncompleteRead\([^)]*\))", r"(Read timed out)", r"(timed out)"):
        if m := re.search(pattern, text):
            return m[1].strip()
    return _one_line(f"{exc.__class__.__name__}: {text}", 160)


def _one_line(text: str, limit: int = 400) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _progressbar() -> bool:
    """A tqdm bar only when a person watches stderr and tqdm is installed."""
    try:
        import tqdm  # noqa: F401
    except ImportError:
        return False
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _quiet_pooch():
    """pooch logs advice for library authors ("use this value as known_hash"); hide it."""
    return quiet_logger("pooch")


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- installing


def _hash_tree(folder: Path) -> dict[str, str]:
    """{posix path relative to ``folder``: sha256} of every file (manifest excluded)."""
    return {p.relative_to(folder).as_posix(): data.sha256_file(p)
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST}


def _verified(dest: Path, name: str) -> bool:
    """Whether ``dest`` already holds the complete dataset (every file's checksum matches)."""
    if not (dest / MANIFEST).exists():
        return False
    try:
        data.verify_folder(dest, data.fix_command(name), full=True)
    except DataError:
        return False
    return True


def _readable_manifest(dest: Path) -> dict[str, str]:
    try:
        return data.read_manifest(dest / MANIFEST) if (dest / MANIFEST).exists() else {}
    except DataError:
        return {}


def _part_of(rel: str) -> str:
    return str(PurePosixPath(rel).parent)


def _part_verified(dest: Path, entries: dict[str, str], part: str) -> bool:
    mine = {rel: d for rel, d in entries.items() if _part_of(rel) == part}
    return bool(mine) and all((dest / rel).is_file() and data.sha256_file(dest / rel) == d
                              for rel, d in mine.items())


@contextlib.contextmanager
def _staging(root: Path, name: str) -> Iterator[Path]:
    """A scratch folder inside the data dir (same filesystem: the final move is a rename),
    removed whatever happens."""
    stage = Path(tempfile.mkdtemp(prefix=f".fetch-{name}-", dir=root))
    try:
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)
