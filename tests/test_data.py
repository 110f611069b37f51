"""Mirror fetching, manifests and dataset listing (ablation.data).

Most tests use a small fake mirror (a handful of real images copied from the shared mirror,
with a matching manifest) so they run in well under a second; one test fetches the real
T91 from the full shared mirror (conftest's ``mirror`` fixture).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ablation import data
from ablation import fetch as fetch_mod
from ablation.errors import ConfigError, DataError
from ablation.fetch import fetch

BENCH_PICK = ["Set5/HR/baby.png", "Set5/HR/bird.png", "Set14/HR/bridge.png",
              "B100/HR/img_001.png", "Urban100/HR/img_001.png"]
TRAIN_PICK = ["T91/t1.png", "T91/t10.png", "T91/t11.png", "BSDS200/100075.png"]


def _lines(manifest: Path, picks: list[str]) -> list[str]:
    wanted = {f"./{p}" for p in picks}
    return [ln for ln in manifest.read_text().splitlines() if ln.split(maxsplit=1)[1] in wanted]


def _build_mirror(shared: Path, root: Path) -> Path:
    for manifest, sub, picks in (("benchmark.sha256", "benchmark", BENCH_PICK),
                                 ("train.sha256", "train", TRAIN_PICK)):
        lines = _lines(shared / manifest, picks)
        assert len(lines) == len(picks)
        (root / manifest).write_text("\n".join(lines) + "\n")
        for rel in picks:
            (root / sub / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shared / sub / rel, root / sub / rel)
    return root


@pytest.fixture(scope="module")
def fake_mirror_ro(tmp_path_factory: pytest.TempPathFactory, mirror: Path) -> Path:
    """A few real images from the shared mirror (conftest's ``mirror``) plus their manifest."""
    return _build_mirror(mirror, tmp_path_factory.mktemp("mirror"))


@pytest.fixture
def fake_mirror(fake_mirror_ro: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy tests may corrupt; the datasets' expected image counts are the subset's
    (a full dataset's counts would refuse it as truncated)."""
    for name, picks in (("benchmark", BENCH_PICK), ("t91", TRAIN_PICK[:3]),
                        ("bsds200", TRAIN_PICK[3:])):
        counts: dict[str, int] = {}
        for rel in picks:
            folder = str(Path(rel).parent) if name == "benchmark" else "."
            counts[folder] = counts.get(folder, 0) + 1
        monkeypatch.setitem(data.EXPECTED_IMAGES, name, counts)
    return Path(shutil.copytree(fake_mirror_ro, tmp_path / "mirror"))


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("ABLATION_MIRROR", "ABLATION_DATA"):
        monkeypatch.delenv(var, raising=False)


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


# --------------------------------------------------------------------------- mirror fetch


def test_mirror_fetch_benchmark_subset(fake_mirror: Path, tmp_path: Path) -> None:
    root = tmp_path / "data"
    assert fetch("benchmark", root, fake_mirror) == [root / "benchmark"]
    assert _files(root / "benchmark") == sorted([*BENCH_PICK, "SHA256SUMS"])
    set5 = data.benchmark_hr_files("Set5", root)
    assert [f.name for f in set5] == ["baby.png", "bird.png"]
    assert [f.name for f in data.benchmark_hr_files("Set14", root)] == ["bridge.png"]
    assert data.official_lr_file(set5[0], 2) is None  # the mirror holds HR only
    data.verify_folder(root / "benchmark", "fix", full=True)


def test_mirror_from_environment_and_group_291(fake_mirror: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ABLATION_MIRROR", str(fake_mirror))
    monkeypatch.setenv("ABLATION_DATA", str(tmp_path / "data"))
    folders = fetch("291")
    assert folders == [Path(tmp_path / "data" / "train" / "T91"),
                       Path(tmp_path / "data" / "train" / "BSDS200")]
    assert [f.name for f in data.train_files("291")] == ["t1.png", "t10.png", "t11.png",
                                                        "100075.png"]


def test_full_mirror_fetch_of_t91(tmp_path: Path, mirror: Path) -> None:
    fetch("t91", tmp_path, mirror)
    files = data.train_files("t91", tmp_path)
    assert len(files) == 91 and files[0].name == "t1.png"
    expected = data.read_manifest(mirror / "train.sha256", "./T91/")
    assert data.read_manifest(tmp_path / "train" / "T91" / data.MANIFEST) == expected
    data.verify_folder(tmp_path / "train" / "T91", "fix", full=True)


def test_refetch_is_idempotent_and_repairs(fake_mirror: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    fetch("benchmark", tmp_path, fake_mirror)
    baby = tmp_path / "benchmark" / "Set5" / "HR" / "baby.png"
    mtime = baby.stat().st_mtime_ns
    copies: list[str] = []
    real_copy = shutil.copyfile

    def counting_copy(src: str, dst: str, *args: object, **kwargs: object) -> str:
        copies.append(Path(src).name)
        return real_copy(src, dst)

    monkeypatch.setattr(fetch_mod.shutil, "copyfile", counting_copy)
    fetch("benchmark", tmp_path, fake_mirror)
    assert copies == [] and baby.stat().st_mtime_ns == mtime  # everything verified: skipped

    (tmp_path / "benchmark" / "Set5" / "HR" / "bird.png").unlink()
    fetch("benchmark", tmp_path, fake_mirror)
    assert copies == ["bird.png"]
    data.verify_folder(tmp_path / "benchmark", "fix", full=True)


def test_checksum_mismatch_in_mirror_is_refused(fake_mirror: Path, tmp_path: Path) -> None:
    bad = fake_mirror / "benchmark" / "Set5" / "HR" / "bird.png"
    raw = bytearray(bad.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    bad.write_bytes(bytes(raw))
    root = tmp_path / "data"
    with pytest.raises(DataError, match="checksum mismatch") as err:
        fetch("benchmark", root, fake_mirror)
    assert str(bad) in str(err.value) and "\n" not in str(err.value)
    hr = root / "benchmark" / "Set5" / "HR"
    assert not (hr / "bird.png").exists()
    assert not [p for p in hr.iterdir() if p.name.startswith(".fetch.")]  # no temp files
    assert not (root / "benchmark" / data.MANIFEST).exists()  # not marked as fetched
    with pytest.raises(DataError, match="ablation data fetch benchmark"):
        data.benchmark_hr_files("Set5", root)


def test_mirror_missing_a_listed_file(fake_mirror: Path, tmp_path: Path) -> None:
    (fake_mirror / "train" / "T91" / "t10.png").unlink()
    with pytest.raises(DataError, match=r"t10\.png: listed in .* but missing from the mirror"):
        fetch("t91", tmp_path, fake_mirror)


def test_mirror_without_the_dataset_or_folder(fake_mirror: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not in the mirror"):
        fetch("div2k", tmp_path, fake_mirror)
    with pytest.raises(DataError, match="mirror folder not found"):
        fetch("t91", tmp_path, tmp_path / "no-such-mirror")


def test_unknown_dataset_name_lists_valid_names(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        fetch("set5", tmp_path)
    for name in ("benchmark", "t91", "bsds200", "div2k", "291"):
        assert name in str(err.value)


# --------------------------------------------------------------------------- verification


def test_missing_dataset_names_the_fetch_command(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="ablation data fetch benchmark"):
        data.benchmark_hr_files("Set5", tmp_path)
    with pytest.raises(DataError, match="ablation data fetch t91"):
        data.train_files("t91", tmp_path)
    with pytest.raises(DataError, match="ablation data fetch div2k"):
        data.train_files("div2k", tmp_path)
    with pytest.raises(DataError, match="ablation data fetch div2k"):
        data.div2k_valid_files(tmp_path)
    assert not data.has_div2k(tmp_path)


def test_partial_dataset_names_the_missing_file(fake_mirror: Path, tmp_path: Path) -> None:
    fetch("benchmark", tmp_path, fake_mirror)
    gone = tmp_path / "benchmark" / "Set14" / "HR" / "bridge.png"
    gone.unlink()
    with pytest.raises(DataError) as err:
        data.verify_folder(tmp_path / "benchmark", data.fix_command("benchmark"))
    assert str(gone) in str(err.value) and "1 of 5 files" in str(err.value)
    assert "ablation data fetch benchmark" in str(err.value)
    with pytest.raises(DataError, match="bridge.png"):
        data.benchmark_hr_files("Set5", tmp_path)  # any gap fails, not just the asked set


def test_full_verification_catches_a_modified_file(fake_mirror: Path, tmp_path: Path) -> None:
    fetch("t91", tmp_path, fake_mirror)
    f = tmp_path / "train" / "T91" / "t11.png"
    f.write_bytes(f.read_bytes() + b"junk")
    data.verify_folder(f.parent, "fix")  # presence check passes
    with pytest.raises(DataError, match=r"t11\.png: checksum mismatch"):
        data.verify_folder(f.parent, "fix", full=True)


def test_bad_or_empty_manifest_is_a_data_error(tmp_path: Path) -> None:
    (tmp_path / data.MANIFEST).write_text("not a manifest line\n")
    with pytest.raises(DataError, match="malformed manifest"):
        data.verify_folder(tmp_path, "fix")
    (tmp_path / data.MANIFEST).write_text("\n")
    with pytest.raises(DataError, match="lists no files"):
        data.verify_folder(tmp_path, "fix")


def test_empty_folder_is_a_data_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="not fetched"):
        data.verify_folder(empty, "fix")
    with pytest.raises(DataError, match="no images"):
        data.benchmark_hr_files(str(empty))
    with pytest.raises(DataError, match="no images"):
        data.train_files(str(empty))


def test_unknown_set_or_folder_lists_the_choices(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="Set5, Set14, B100, Urban100"):
        data.benchmark_hr_files(str(tmp_path / "nope"))
    with pytest.raises(DataError, match="291, t91, bsds200, div2k"):
        data.train_files(str(tmp_path / "nope"))


def test_custom_folder_of_images(fake_mirror_ro: Path, tmp_path: Path) -> None:
    mine = tmp_path / "my set"
    mine.mkdir()
    for rel in BENCH_PICK[:3]:
        shutil.copyfile(fake_mirror_ro / "benchmark" / rel, mine / Path(rel).name)
    (mine / "notes.txt").write_text("not an image")
    (mine / ".hidden.png").write_bytes(b"")
    expected = [mine / "baby.png", mine / "bird.png", mine / "bridge.png"]
    assert data.benchmark_hr_files(str(mine)) == expected
    assert data.train_files(str(mine)) == expected


def test_read_manifest_prefix_and_format(tmp_path: Path) -> None:
    digest = "ab" * 32
    (tmp_path / "m").write_text(f"{digest}  ./T91/a.png\n{digest} *BSDS200/b.png\n\n"
                                f"{digest.upper()}  T91/sub/c d.png\n")
    assert data.read_manifest(tmp_path / "m", "./T91/") == {"a.png": digest,
                                                            "sub/c d.png": digest}
    data.write_manifest(tmp_path, {"x/y.png": digest})
    assert (tmp_path / data.MANIFEST).read_text() == f"{digest}  ./x/y.png\n"
