"""Named datasets: the registry (where each lives and comes from), manifests, listing.

Canonical layout under the data dir (``--data-dir`` / ``$ABLATION_DATA`` / ``./data``)::

    benchmark/{Set5,Set14,B100,Urban100}/HR/*.png     MANIFEST: benchmark/SHA256SUMS
    train/T91/*.png  train/BSDS200/*.png               MANIFEST: train/<set>/SHA256SUMS
    DIV2K/DIV2K_train_HR/0001.png ... DIV2K_valid_HR/0801.png ...
    DIV2K/DIV2K_train_LR_bicubic/X2/0001x2.png ...    (optional official LR)
    cache/                                             decoded-image caches (see cache.py)

Every fetched dataset gets a ``SHA256SUMS`` manifest; :func:`verify_folder` checks the files
against it, so a partly deleted dataset is detected instead of silently trained on a subset.
Fetching (mirror or online) is :mod:`ablation.fetch`, built on this registry; this module
imports nothing that fetches.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ablation import paths
from ablation.config import BENCHMARKS, canonical_set
from ablation.errors import DataError
from ablation.fs import atomic_write_text
from ablation.images import IMAGE_SUFFIXES, MANIFEST, list_images


@dataclass(frozen=True)
class Source:
    """One downloadable archive: official URL first, fallbacks after it."""

    url: str
    known_hash: str | None  # "sha256:..." / "md5:..." as pooch expects, None if unpublished
    size: int | None = None


@dataclass(frozen=True)
class Dataset:
    """A named dataset: where it lives under the data dir and where it comes from."""

    name: str
    subdir: str  # relative to the data dir
    mirror_subdir: str  # relative to a mirror root laid out like ../shared/datasets
    mirror_manifest: str  # manifest file in the mirror root
    manifest_prefix: str  # prefix of this dataset's lines in that manifest
    sources: tuple[Source, ...] = field(default_factory=tuple)
    description: str = ""
    # most bytes one of its archives may expand to (a zip bomb is refused before extracting)
    max_extracted: int = 0


MB = 1_000_000


SNU = "https://cv.snu.ac.kr/research/EDSR"
ETH = "https://data.vision.ee.ethz.ch/cvl/DIV2K"

DATASETS: dict[str, Dataset] = {
    "benchmark": Dataset(
        "benchmark", "benchmark", "benchmark", "benchmark.sha256", "./",
        (Source(f"{SNU}/benchmark.tar", "md5:4ace41d33c2384b97e6b320cd0afd6ba", 250_112_000),),
        "Set5, Set14, B100, Urban100 HR images", max_extracted=400 * MB,
    ),
    "t91": Dataset(
        "t91", "train/T91", "train/T91", "train.sha256", "./T91/",
        (Source("http://mmlab.ie.cuhk.edu.hk/projects/SRCNN/SRCNN_train.zip",
                "sha256:001146419f7acfb12a3e7929c8acd5de88a08d687d6881085f81321ad6982b1a",
                19_619_221),),
        "T91 (Yang et al. 2010), 91 training images", max_extracted=128 * MB,
    ),
    "bsds200": Dataset(
        "bsds200", "train/BSDS200", "train/BSDS200", "train.sha256", "./BSDS200/",
        # No checksum of BSDS300-images.tgz is published (shared/datasets/SOURCES.md: "none
        # published"), so none is made up here: the download goes over HTTPS and what it
        # extracts must be exactly the train split's 200 images, BSDS200_IDS (see
        # ablation.download._check_contents), each a 481x321 or 321x481 JPEG.
        (Source("https://www2.eecs.berkeley.edu/Research/Projects/CS/vision/bsds/"
                "BSDS300-images.tgz", None),),
        "BSDS300 train split, 200 images", max_extracted=128 * MB,
    ),
    "div2k": Dataset(
        "div2k", "DIV2K", "DIV2K", "div2k.sha256", "./",
        (Source(f"{ETH}/DIV2K_train_HR.zip",
                "sha256:9d0b9c463f6e35b6c62cc6a930ee2224f670b34c1df841a57670f9acf0f6c335",
                3_530_603_713),
         Source(f"{ETH}/DIV2K_valid_HR.zip",
                "sha256:20dd31fd84d777bc1cf5d6b7654a3f569c0aec74458ae094122ad1d0489900fc",
                448_993_893)),
        "DIV2K train HR 0001-0800 and valid HR 0801-0900", max_extracted=10_000 * MB,
    ),
}
# Images a complete copy holds, per folder relative to the dataset folder (fnmatch patterns;
# "." is the dataset folder itself; a pattern without "*" must be present). A fetch (mirror or
# download) and every read check these counts: a truncated manifest can't shrink a dataset.
EXPECTED_IMAGES: dict[str, dict[str, int]] = {
    "benchmark": {"Set5/HR": 5, "Set14/HR": 14, "B100/HR": 100, "Urban100/HR": 100},
    "t91": {".": 91},
    "bsds200": {".": 200},
    "div2k": {"DIV2K_train_HR": 800, "DIV2K_valid_HR": 100, "DIV2K_train_LR_bicubic/X*": 800},
}
# The BSDS300 train split (BSDS300/iids_train.txt): the images a bsds200 fetch must produce.
BSDS200_IDS = tuple(int(i) for i in """
2092 8049 8143 12003 12074 15004 15088 16052 20008 22013 22090 22093 23025 23080 23084 24004
24063 25098 26031 27059 28075 28096 33066 35008 35010 35058 35070 35091 41004 41025 42044 42078
43070 43083 45077 46076 48055 54005 55067 55075 56028 59078 60079 61060 61086 65010 65019 65074
65132 66039 66075 67079 68077 71046 76002 78019 80099 87065 90076 92059 94079 95006 97017 100075
100080 100098 103041 104022 105019 105053 106020 106025 108041 108073 109034 112082 113009
113016 113044 117054 118020 118035 122048 124084 126039 130034 134008 134052 135037 135069
138032 138078 140055 140075 144067 145014 145053 147021 147062 151087 153077 153093 155060
156079 157036 159029 159045 159091 161062 163014 163062 164074 166081 169012 170054 172032
173036 176019 176035 176039 178054 181018 181079 181091 183055 183087 187003 187029 187039
187071 187083 188005 188063 188091 189003 189011 196015 198004 198023 198054 202012 207056
209070 216041 216053 216066 225017 227040 227046 231015 232038 236017 238011 239007 239096
242078 245051 246016 246053 247085 249061 249087 253036 254033 254054 260081 268002 271008
271031 274007 277095 285036 286092 292066 293029 299091 301007 302003 309004 310007 311068
311081 314016 317080 323016 326038 353013 361084 365025 365073 368016 368078 370036 372047
374020 374067 376001 376020 385028 388016
""".split())
# Fallback for DIV2K when an ETH link fails (valid HR has returned 404 at times).
DIV2K_FALLBACK = Source(f"{SNU}/DIV2K.tar", None, None)
DIV2K_LR = {
    2: Source(f"{ETH}/DIV2K_train_LR_bicubic_X2.zip",
              "sha256:a53a424317575838dadce4bcd97cf7b744d6855f43740ed5f0245af3cf4bd850"),
    3: Source(f"{ETH}/DIV2K_train_LR_bicubic_X3.zip",
              "sha256:ad5c8e5507e2765823d3c2c5bd0934842efcd487c5370604c224090898b3163a"),
    4: Source(f"{ETH}/DIV2K_train_LR_bicubic_X4.zip",
              "sha256:f006b837f4eb52b82909aa01478e6d6d199eefce932179491d0c9dbb706dde3a"),
}
# Composite names: fetching them fetches the parts (291 = T91's 91 + BSDS200's 200 images).
GROUPS = {"291": ("t91", "bsds200")}
TRAIN_SETS = ("291", "t91", "bsds200", "div2k")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks so multi-GB archives don't load into memory."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def read_manifest(path: Path, prefix: str = "./") -> dict[str, str]:
    """``sha256  ./rel/path`` lines -> {rel/path (prefix stripped): sha256}.

    A malformed line raises DataError (a hand-edited or truncated manifest must not silently
    shrink the dataset it describes)."""
    out: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read the manifest ({exc.__class__.__name__}); "
                        "delete it and fetch the dataset again") from None
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or not re.fullmatch(r"[0-9a-fA-F]{64}", parts[0]):
            raise DataError(f"{path}:{lineno}: malformed manifest line (want `<sha256>  ./path`); "
                            "delete the manifest and fetch the dataset again")
        digest, name = parts
        name = name.strip().lstrip("*")
        if not name.startswith("./"):
            name = "./" + name
        if name.startswith(prefix):
            out[name[len(prefix):]] = digest.lower()
    return out


def write_manifest(folder: Path, entries: dict[str, str]) -> None:
    """Write ``folder/SHA256SUMS`` atomically (a crash never leaves a torn manifest that would
    make a complete dataset look partial, or a partial one look complete)."""
    lines = [f"{digest}  ./{name}" for name, digest in sorted(entries.items())]
    atomic_write_text(folder / MANIFEST, "\n".join(lines) + "\n")


def verify_folder(folder: Path, fix_hint: str, full: bool = False) -> list[Path]:
    """Check ``folder`` against its manifest: every listed file present (and, if ``full``,
    with the right SHA-256). Returns the listed files; raises DataError naming the first
    problem and the fix.

    Presence is cheap and catches the common accident (files deleted by hand); ``full``
    hashes everything and is what a refetch uses to decide what to skip."""
    folder = Path(folder)
    manifest = folder / MANIFEST
    if not manifest.exists():
        raise DataError(f"{folder}: dataset missing or not fetched (no {MANIFEST}); "
                        f"run `{fix_hint}`")
    entries = read_manifest(manifest)
    if not entries:
        raise DataError(f"{manifest}: the manifest lists no files; run `{fix_hint}`")
    missing = [n for n in entries if not (folder / n).is_file()]
    if missing:
        raise DataError(
            f"{folder / missing[0]}: {len(missing)} of {len(entries)} files of this dataset are "
            f"missing; run `{fix_hint}` to restore them"
        )
    if full:
        for name, digest in entries.items():
            if sha256_file(folder / name) != digest:
                raise DataError(f"{folder / name}: checksum mismatch; run `{fix_hint}` to refetch")
    return [folder / n for n in sorted(entries)]


def check_counts(name: str, rel_paths, where: Path, fix: str) -> None:
    """Raise DataError unless ``rel_paths`` (files relative to the dataset folder) hold the
    image counts :data:`EXPECTED_IMAGES` lists for dataset ``name`` (``where``: the manifest
    or folder to name in the message, ``fix``: what to do about it)."""
    counts: dict[str, int] = {}
    for rel in rel_paths:
        rel = str(rel)
        if Path(rel).suffix.lower() in IMAGE_SUFFIXES:
            folder = os.path.dirname(rel) or "."
            counts[folder] = counts.get(folder, 0) + 1
    for pattern, expected in EXPECTED_IMAGES.get(name, {}).items():
        found = {f: n for f, n in counts.items() if fnmatch.fnmatchcase(f, pattern)}
        if not found and "*" not in pattern:
            found = {pattern: 0}
        for folder, n in found.items():
            if n != expected:
                shown = name if folder == "." else f"{name} {folder}"
                raise DataError(f"{where}: {shown} has {n} images, expected {expected}; {fix}")


# --------------------------------------------------------------------------- listing


PathLike = str | os.PathLike | None


def fix_command(name: str) -> str:
    """The command a user runs to (re)fetch ``name``; error messages quote it verbatim."""
    return f"ablation data fetch {name}"


def benchmark_hr_files(set_name_or_path: str, data_dir: PathLike = None) -> list[Path]:
    """HR images of a benchmark set, or of any folder of images (a user's own test set).

    A named set (any case: 'set5' is Set5) is checked against the benchmark manifest first, so
    a partly deleted set fails loudly instead of being scored on fewer images."""
    set_name_or_path = canonical_set(set_name_or_path)
    if set_name_or_path in BENCHMARKS:
        root = paths.data_dir(data_dir) / "benchmark"
        files = verify_folder(root, fix_command("benchmark"))
        check_counts("benchmark", [f.relative_to(root) for f in files], root / MANIFEST,
                     f"run `{fix_command('benchmark')}`")
        wanted = [f for f in files if f.parent.name == "HR"
                  and f.parent.parent.name == set_name_or_path
                  and f.suffix.lower() in IMAGE_SUFFIXES]
        if not wanted:
            raise DataError(f"{root / set_name_or_path}: set missing; run "
                            f"`{fix_command('benchmark')}`")
        return wanted
    folder = Path(set_name_or_path)
    if folder.is_dir():
        return list_images(folder)
    raise DataError(
        f"{set_name_or_path}: not a benchmark set ({', '.join(BENCHMARKS)}) nor a folder "
        "of images; give one of those"
    )


def official_lr_file(hr_file: Path, scale: int) -> Path | None:
    """``.../HR/name.png`` -> ``.../LR_bicubic/X{s}/name x{s}.png`` if that file exists
    (benchmark.tar ships official LR inputs; the mirror does not, then LR is computed)."""
    cand = hr_file.parent.parent / "LR_bicubic" / f"X{scale}" / f"{hr_file.stem}x{scale}.png"
    return cand if cand.exists() else None


def train_files(name: str, data_dir: PathLike = None) -> list[Path]:
    """Training images of a named training set (checked against its manifest), or of a
    folder of images."""
    root = paths.data_dir(data_dir)
    if name in GROUPS:
        return [f for part in GROUPS[name] for f in train_files(part, data_dir)]
    if name == "div2k":
        files = verify_folder(root / "DIV2K", fix_command("div2k"))
        check_counts(name, [f.relative_to(root / "DIV2K") for f in files],
                     root / "DIV2K" / MANIFEST, f"run `{fix_command(name)}`")
        wanted = [f for f in files if f.parent.name == "DIV2K_train_HR"
                  and f.suffix.lower() in IMAGE_SUFFIXES]
        if not wanted:
            raise DataError(f"{root / 'DIV2K' / 'DIV2K_train_HR'}: no training images; run "
                            f"`{fix_command('div2k')}`")
        return wanted
    if name in DATASETS:
        folder = root / DATASETS[name].subdir
        files = verify_folder(folder, fix_command(name))
        check_counts(name, [f.relative_to(folder) for f in files], folder / MANIFEST,
                     f"run `{fix_command(name)}`")
        return [f for f in files if f.suffix.lower() in IMAGE_SUFFIXES]
    folder = Path(name)
    if folder.is_dir():
        return list_images(folder)
    raise DataError(
        f"{name}: unknown training set; use one of {', '.join(TRAIN_SETS)} or a folder of images"
    )


def div2k_valid_files(data_dir: PathLike = None, first: int = 801,
                      last: int = 810) -> list[Path]:
    """DIV2K validation HR images ``first..last`` (the usual quick validation subset)."""
    folder = paths.data_dir(data_dir) / "DIV2K" / "DIV2K_valid_HR"
    files = [folder / f"{i:04d}.png" for i in range(first, last + 1)]
    missing = [f for f in files if not f.exists()]
    if missing:
        raise DataError(f"{missing[0]}: DIV2K validation image missing; run "
                        f"`{fix_command('div2k')}`")
    return files


def has_div2k(data_dir: PathLike = None) -> bool:
    """Whether DIV2K was fetched (its manifest exists); lets tasks pick DIV2K or fall back."""
    return (paths.data_dir(data_dir) / "DIV2K" / MANIFEST).exists()
