"""Trust nothing read back (issue 14): results, manifests, caches, checkpoints, CLI values.

Every test injects one fault the issue found on main and checks the outcome: one line naming
the file or option and the fix, a non-zero exit (2 for usage errors), no traceback, no silently
wrong table, nothing already computed lost. ``tests/test_faults.py``'s docstring maps the
issue's cases (13-22 there) to these tests; the CLI property test is at the end.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from fake_runs import fake_run
from fault_helpers import REPO, child_env, encoded, one_line, python, random_image, temp_leftovers
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from ablation import cache, cli, data, report, stamps, sweep
from ablation import results as results_mod
from ablation.archives import safe_extract
from ablation.checkpoint import FORMAT, load_model, read_checkpoint, save_checkpoint
from ablation.errors import CheckpointError, ConfigError, DataError, DiskWriteError
from ablation.fetch import fetch
from ablation.models import MAX_PARAMS, SPEC_MAXIMA, ModelSpec, build_model
from ablation.runs import RunLocked, check_run_inputs, run_lock, run_variant
from ablation.tasks import parse_tasks

SMOKE = ["--profile", "smoke", "--iterations", "2"]


def _err_lines(capsys) -> list[str]:
    return capsys.readouterr().err.strip().splitlines()


def _one_error(capsys, rc: int, *needles: str) -> str:
    """The single ``error:`` line of a CLI call that exited 2, containing ``needles``."""
    lines = _err_lines(capsys)
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: "), (rc, lines)
    for text in needles:
        assert text in lines[0], (text, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def smoke_results(tmp_path_factory, data_dir) -> Path:
    """A results folder with one finished smoke run of task 4 / baseline (2 iterations,
    scored on Set5), made exactly as ``ablation train --profile smoke --iterations 2`` makes
    it; tests copy it."""
    root = tmp_path_factory.mktemp("smoke_results")
    torch.set_num_threads(1)
    run_variant(4, "baseline", 2, "smoke", results_dir=root, data_dir=data_dir, iterations=2,
                progress=False)
    return root


def _copy_run(smoke_results: Path, tmp_path: Path) -> tuple[Path, Path]:
    results = Path(shutil.copytree(smoke_results, tmp_path / "results"))
    return results, results_mod.run_dir("smoke", 4, "baseline", 2, 0, results)


# =========================================================================== 1. metrics.json


def _damage(folder: Path, kind: str) -> None:
    f = folder / "metrics.json"
    m = json.loads(f.read_text())
    if kind == "truncated":
        f.write_bytes(f.read_bytes()[:200])
    elif kind == "not-utf8":
        f.write_bytes(b"\xff\xfe" + f.read_bytes())
    elif kind == "json-list":
        f.write_text("[]")
    elif kind == "no-sets":
        del m["sets"]
        f.write_text(json.dumps(m))
    elif kind == "edited-psnr":
        m["sets"]["Set5"]["psnr"] += 1.0
        f.write_text(json.dumps(m))
    elif kind == "nan-psnr":
        m["sets"]["Set5"]["psnr"] = float("nan")
        f.write_text(json.dumps(m))
    elif kind == "image-count":
        m["sets"]["Set5"]["n_images"] = 4
        f.write_text(json.dumps(m))
    elif kind == "other-run":
        m["seed"] = 1
        f.write_text(json.dumps(m))
    elif kind == "per-image-missing":
        (folder / "per_image.csv").unlink()
    elif kind == "per-image-edited":
        df = pd.read_csv(folder / "per_image.csv")
        df.loc[0, "psnr"] += 0.5
        df.to_csv(folder / "per_image.csv", index=False)
    elif kind == "model-missing":  # case 5: done is not decided by metrics.json alone
        (folder / "model.pt").unlink()
    elif kind == "history-missing":
        (folder / "history.csv").unlink()


DAMAGE = ["truncated", "not-utf8", "json-list", "no-sets", "edited-psnr", "nan-psnr",
          "image-count", "other-run", "per-image-missing", "per-image-edited", "model-missing",
          "history-missing"]


@pytest.mark.parametrize("kind", DAMAGE)
def test_damaged_run_is_named_and_left_out(smoke_results, tmp_path, kind):
    results, folder = _copy_run(smoke_results, tmp_path)
    assert results_mod.check_run(folder).problem is None  # the real run passes as is
    _damage(folder, kind)
    check = results_mod.check_run(folder)
    assert check.metrics is None
    msg = one_line(check.problem)
    assert msg.startswith(f"{folder / 'metrics.json'}: damaged run") and "rerun" in msg
    with pytest.warns(results_mod.DamagedRunWarning, match="damaged run"):
        assert results_mod.read_metrics(folder) is None
    with pytest.warns(results_mod.DamagedRunWarning):
        assert report.load_runs("smoke", results).empty  # no table shows it
    assert results_mod.damaged_runs("smoke", results) == [msg]


def test_damaged_seed_is_named_not_published_as_fewer_seeds(tmp_path):
    """The issue's case: truncating the seed-1 baseline's metrics.json silently turned a
    3-seed mean into a 2-seed one. Now every reader names the file."""
    root = tmp_path / "results"
    for seed, delta in enumerate((0.0, 0.02, -0.02)):
        fake_run(root, 4, "baseline", 2, seed, dict(Set5=37.00 + delta))
    seed1 = results_mod.run_dir("cpu", 4, "baseline", 2, 1, root) / "metrics.json"
    seed1.write_bytes(seed1.read_bytes()[:100])
    with pytest.warns(results_mod.DamagedRunWarning, match=str(seed1)):
        runs = report.load_runs("cpu", root)
    assert sorted(runs.seed) == [0, 2]
    (line,) = results_mod.damaged_runs("cpu", root)
    assert str(seed1) in line


def test_sweep_names_damaged_runs_and_fails(tmp_path, capsys, monkeypatch):
    root = tmp_path / "results"
    folder = fake_run(root, 4, "baseline", 2, 0, dict(Set5=37.0), profile="smoke")
    (folder / "metrics.json").write_text("[]")
    argv = ["--profile", "smoke", "--tasks", "2", "--no-pages", "--results", str(root),
            "--book-dir", str(tmp_path / "book")]
    assert sweep.main([*argv, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"damaged     {folder / 'metrics.json'}: damaged run (holds a JSON list" in out
    monkeypatch.setattr(sweep, "sweep", lambda s, wait=False: [])  # pages: not the point here
    assert sweep.main(argv) == 1
    out = capsys.readouterr().out
    assert "1 damaged run(s) left out" in out
    assert f"  damaged: {folder / 'metrics.json'}: damaged run" in out


def test_a_damaged_run_is_redone_and_nothing_is_lost(smoke_results, data_dir, tmp_path):
    results, folder = _copy_run(smoke_results, tmp_path)
    good = json.loads((folder / "metrics.json").read_text())
    _damage(folder, "edited-psnr")
    with pytest.warns(results_mod.DamagedRunWarning):
        m = run_variant(4, "baseline", 2, "smoke", results_dir=results, data_dir=data_dir,
                        iterations=2, progress=False)
    assert not m["reused"]  # treated as unfinished: redone, resumed from its final state.pt
    assert m["sets"] == good["sets"]  # the same weights, hence the same scores
    assert results_mod.check_run(folder).problem is None


# =========================================================================== 2. eval --tile


def _eval_json(capsys, tmp_path, ckpt: Path, name: str, *extra: str) -> dict:
    out = tmp_path / f"{name}.json"
    rc = cli.main(["eval", "--model", str(ckpt), "--sets", "Set5", "--scales", "2",
                   "--data-dir", str(tmp_path / "data"), "--device", "cpu", "--json", str(out),
                   *extra])
    assert rc == 0, capsys.readouterr().err
    (record,) = json.loads(out.read_text())
    return record


def test_eval_cli_tile_and_self_ensemble(smoke_results, data_dir, tmp_path, capsys):
    ckpt = results_mod.run_dir("smoke", 4, "baseline", 2, 0, smoke_results) / "model.pt"
    shutil.copytree(data_dir / "benchmark", tmp_path / "data" / "benchmark")
    plain = _eval_json(capsys, tmp_path, ckpt, "plain")
    tiled = _eval_json(capsys, tmp_path, ckpt, "tiled", "--tile", "24")
    ensemble = _eval_json(capsys, tmp_path, ckpt, "ensemble", "--self-ensemble", "--tile", "64")
    assert plain["n_images"] == tiled["n_images"] == ensemble["n_images"] == 5
    # tiles with the receptive-field overlap stitch to the whole-image result (up to float32
    # summation order in each tile: a few pixels may round to the other 8-bit value)
    assert tiled["psnr"] == pytest.approx(plain["psnr"], abs=1e-3)
    assert tiled["ssim"] == pytest.approx(plain["ssim"], abs=1e-5)
    # the x8 ensemble is another prediction, close to the plain one
    assert ensemble["psnr"] != plain["psnr"] and abs(ensemble["psnr"] - plain["psnr"]) < 1.0
    rc = cli.main(["eval", "--model", str(ckpt), "--tile", "-3", "--sets", "Set5"])
    _one_error(capsys, rc, "--tile")


# =========================================================================== 3. manifests


def _mirror_with(tmp_path: Path, mirror: Path, train_lines: int | None = None) -> Path:
    """A mirror whose image folders link to the shared one and whose train.sha256 is cut to
    its first ``train_lines`` lines (``head -n``)."""
    m = tmp_path / "mirror"
    m.mkdir()
    for name in ("benchmark", "train"):
        (m / name).symlink_to(mirror / name)
    shutil.copy(mirror / "benchmark.sha256", m)
    lines = (mirror / "train.sha256").read_text().splitlines(keepends=True)
    (m / "train.sha256").write_text("".join(lines[:train_lines]))
    return m


def test_truncated_mirror_manifest_is_refused(tmp_path, mirror, capsys):
    m = _mirror_with(tmp_path, mirror, 250)  # 200 BSDS200 lines, then 50 of T91's 91
    root = tmp_path / "data"
    rc = cli.main(["data", "fetch", "t91", "--mirror", str(m), "--data-dir", str(root)])
    _one_error(capsys, rc, str(m / "train.sha256"), "t91 has 50 images, expected 91",
               "--mirror")
    assert not (root / "train" / "T91" / data.MANIFEST).exists()  # not installed


def test_a_dataset_with_fewer_images_is_refused_on_read(tmp_path, mirror):
    fetch("t91", tmp_path, mirror)
    manifest = tmp_path / "train" / "T91" / data.MANIFEST
    manifest.write_text("".join(manifest.read_text().splitlines(keepends=True)[:50]))
    with pytest.raises(DataError) as err:
        data.train_files("291", tmp_path)
    msg = one_line(err.value)
    assert str(manifest) in msg and "50 images, expected 91" in msg
    assert "ablation data fetch t91" in msg


def test_failed_mirror_copy_says_what_it_left(tmp_path, mirror):
    m = tmp_path / "mirror"
    shutil.copytree(mirror / "train" / "T91", m / "train" / "T91")
    shutil.copy(mirror / "train.sha256", m)
    victim = sorted((m / "train" / "T91").glob("*.png"))[40]
    victim.unlink()
    with pytest.raises(DataError) as err:
        fetch("t91", tmp_path / "data", m)
    msg = one_line(err.value)
    dest = tmp_path / "data" / "train" / "T91"
    copied = len(list(dest.glob("*.png")))
    assert str(victim) in msg and "missing from the mirror" in msg
    assert f"the {copied} file(s) copied before it are kept in {dest}" in msg and copied > 0
    assert "nothing was written" not in msg
    assert not (dest / data.MANIFEST).exists()  # still reads as not fetched


# =========================================================================== 4. cache race


CACHE_WORKER = """
import sys
from pathlib import Path
from ablation import data
from ablation.cache import load_decoded
root, go = Path(sys.argv[1]), Path(sys.argv[2])
files = data.train_files("t91", root)
while not go.exists():
    pass
ds = load_decoded(files, 2, root / "cache", label="t91", min_lr_size=16)
print(ds.hr.size, int(ds.hr[::997].astype("int64").sum()))
"""


def test_three_concurrent_cache_builders_on_a_fresh_data_folder(tmp_path, mirror):
    root = tmp_path / "data"
    fetch("t91", root, mirror)
    go = tmp_path / "go"
    procs = [subprocess.Popen([python(), "-c", CACHE_WORKER, str(root), str(go)],
                              env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, cwd=REPO) for _ in range(3)]
    time.sleep(1.0)  # all three imported and waiting: they start building at the same moment
    go.touch()
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0 and "Traceback" not in err, err[-2000:]
    assert len({out for out, _ in outs}) == 1  # the same buffers for everyone
    waited = sum("waiting for another process (pid" in err and "building the cache" in err
                 for _, err in outs)
    assert waited == 2  # one built, the two others waited and reused its result
    (folder,) = [p for p in (root / "cache").iterdir() if not p.name.startswith(".")]
    assert cache._try_load(folder, 2, "") is not None
    assert temp_leftovers(root) == []


@pytest.mark.parametrize("how", ["index-null", "index-list", "folder-is-a-file"])
def test_damaged_cache_index_or_folder_is_rebuilt(tmp_path, mirror, how):
    src = sorted((mirror / "train" / "T91").glob("*.png"))[:3]
    root = tmp_path / "cache"
    first = cache.load_decoded(src, 2, root, label="t", min_lr_size=8)
    (folder,) = [p for p in root.iterdir() if not p.name.startswith(".")]
    if how == "folder-is-a-file":
        shutil.rmtree(folder)
        folder.write_text("not a cache")
    else:
        (folder / "index.json").write_text("null" if how == "index-null" else "[]")
    again = cache.load_decoded(src, 2, root, label="t", min_lr_size=8)
    assert np.array_equal(again.hr, first.hr) and np.array_equal(again.lr, first.lr)
    assert folder.is_dir() and cache._try_load(folder, 2, "") is not None
    assert temp_leftovers(tmp_path) == []


def test_cache_on_a_full_disk_is_a_one_line_error(tmp_path, mirror, monkeypatch):
    src = sorted((mirror / "train" / "T91").glob("*.png"))[:2]

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(cache.np, "save", full)
    with pytest.raises(DataError) as err:
        cache.load_decoded(src, 2, tmp_path / "cache", label="t", min_lr_size=8)
    msg = one_line(err.value)
    assert str(tmp_path / "cache") in msg and "No space left" in msg and "free disk" in msg
    assert temp_leftovers(tmp_path) == []


# =========================================================================== 5. model.pt gone


def test_finished_run_without_model_pt_is_trained_not_reused(smoke_results, data_dir, tmp_path,
                                                             capsys):
    results, folder = _copy_run(smoke_results, tmp_path)
    (folder / "model.pt").unlink()
    common = ["--results", str(results), "--data-dir", str(data_dir)]
    train = ["train", "--task", "4", "--variant", "baseline", *SMOKE, *common]
    eval_ = ["eval", "--model", "task4/baseline", "--profile", "smoke", "--sets", "Set5",
             "--scales", "2", "--data-dir", str(data_dir), "--results", str(results)]
    assert cli.main(train) == 0
    assert capsys.readouterr().out.startswith("trained: task 4 / baseline")  # not "reused"
    assert (folder / "model.pt").exists() and results_mod.check_run(folder).problem is None
    assert cli.main(eval_) == 0  # no advice loop: eval finds what train made
    assert cli.main(train) == 0
    assert "\nreused: task 4 / baseline" in capsys.readouterr().out  # after eval's table


def test_a_later_seed_is_finished_without_its_checkpoint(smoke_results, tmp_path):
    """The repository commits model.pt for seed 0 only: a seed-1 run without it is finished
    (its numbers stand), and asking for its weights says why they are absent and how to redo."""
    results, seed0 = _copy_run(smoke_results, tmp_path)
    seed1 = seed0.parent / "seed1"
    shutil.copytree(seed0, seed1)
    m = json.loads((seed1 / "metrics.json").read_text())
    m["seed"] = 1
    (seed1 / "metrics.json").write_text(json.dumps(m))
    (seed1 / "model.pt").unlink()
    assert results_mod.check_run(seed1).problem is None
    assert results_mod.check_run(seed1).metrics["seed"] == 1
    with pytest.raises(ConfigError) as err:
        results_mod.resolve_model("task4/baseline", 2, "smoke", seed=1, results_dir=results)
    msg = one_line(err.value)
    assert str(seed1 / "model.pt") in msg and "not kept" in msg and "--seed 1" in msg
    (seed0 / "model.pt").unlink()  # seed 0's checkpoint is what the figures use: required
    assert "model.pt missing" in results_mod.check_run(seed0).problem


# =========================================================================== 6. sweep ranges


def test_task_ranges_are_checked_before_expanding():
    t0 = time.perf_counter()
    with pytest.raises(ConfigError) as err:
        parse_tasks("1-1000000000")
    assert time.perf_counter() - t0 < 1.0  # refused, not materialised
    assert "1000000000" in one_line(err.value) and "1, 2, 3" in str(err.value)
    with pytest.raises(ConfigError, match="reversed range '5-3'; write it as 3-5"):
        parse_tasks("5-3")
    with pytest.raises(ConfigError, match="no task given"):
        parse_tasks(" , ")
    assert parse_tasks("1-3,5") == [1, 2, 3, 5]


@pytest.mark.parametrize("bad, needle", [
    (["--tasks", "1-1000000000"], "1000000000"), (["--tasks", "5-3"], "reversed"),
    (["--tasks", "abc"], "'abc' is not a task number"), (["--iterations", "0"], "--iterations"),
    (["--iterations", "-4"], "--iterations"), (["--seeds", "-1"], "--seeds"),
    (["--scales", ""], "--scales"), (["--device", "tpu"], "tpu")])
def test_sweep_refuses_bad_values_before_planning(tmp_path, capsys, bad, needle):
    rc = sweep.main(["--profile", "smoke", "--results", str(tmp_path / "r"), "--book-dir",
                     str(tmp_path / "book"), "--dry-run", *bad])
    _one_error(capsys, rc, needle)
    assert not (tmp_path / "r").exists()


# =========================================================================== 7. checkpoints


@pytest.mark.parametrize("field, value", [("n_feats", 10**6), ("n_blocks", 10**5),
                                          ("n_groups", 10**4), ("n_feats", "64")])
def test_checkpoint_spec_is_bounded(tmp_path, field, value):
    spec = ModelSpec(input="lr", n_blocks=1, n_feats=8).to_dict()
    spec[field] = value
    path = tmp_path / "huge.pt"
    torch.save({"format": FORMAT, "spec": spec, "scale": 2, "model": {}}, path)
    t0 = time.perf_counter()
    with pytest.raises(CheckpointError) as err:
        load_model(path)
    assert time.perf_counter() - t0 < 5.0  # nothing allocated
    msg = one_line(err.value)
    assert str(path) in msg and field in msg and "retrain" in msg


def test_spec_limits_are_one_set_of_maxima_next_to_modelspec():
    for field, most in SPEC_MAXIMA.items():
        with pytest.raises(ConfigError, match=f"{field} must be an integer <= {most}"):
            ModelSpec(**{field: most + 1})
    wide = ModelSpec(n_blocks=SPEC_MAXIMA["n_blocks"], n_feats=SPEC_MAXIMA["n_feats"])
    with pytest.raises(ConfigError, match=f"over the maximum {MAX_PARAMS:,}"):
        build_model(wide, 2)  # each field in range, together too big


def _nan_checkpoint(path: Path) -> Path:
    torch.manual_seed(0)
    model = build_model(ModelSpec(input="lr", n_blocks=1, n_feats=8), 2)
    with torch.no_grad():
        model.body[0][0].weight[0, 0, 0, 0] = float("nan")
    save_checkpoint(path, model)
    return path


def test_nan_weights_are_refused_by_eval_and_upscale(tmp_path, capsys):
    path = _nan_checkpoint(tmp_path / "nan.pt")
    with pytest.raises(CheckpointError) as err:
        load_model(path)
    assert "NaN or inf" in one_line(err.value) and "body.0.0.weight" in str(err.value)
    rc = cli.main(["eval", "--model", str(path), "--sets", "Set5", "--scales", "2",
                   "--data-dir", str(tmp_path)])
    _one_error(capsys, rc, str(path), "NaN or inf")
    random_image(1, (16, 12)).save(tmp_path / "in.png")
    rc = cli.main(["upscale", str(tmp_path / "in.png"), "--checkpoint", str(path), "--out",
                   str(tmp_path / "out"), "--quiet"])
    _one_error(capsys, rc, str(path), "NaN or inf")
    assert not (tmp_path / "out").exists()  # no black PNG


# =========================================================================== 8. tracebacks


CLI_BAD = {
    "train-device-tpu": (["train", "--task", "4", "--variant", "baseline", "--device", "tpu"],
                         "unknown device 'tpu'"),
    "eval-device-tpu": (["eval", "--device", "tpu", "--sets", "Set5", "--scales", "2"],
                        "unknown device 'tpu'"),
    "eval-model-foo-bar": (["eval", "--model", "foo/bar", "--scales", "2"],
                           "model 'foo/bar': use TASK/VARIANT"),
    "eval-scales-empty": (["eval", "--scales", ""], "--scales: empty"),
    "eval-sets-empty": (["eval", "--sets", ""], "--sets: empty"),
    "learning-rate-nan": (["train", "--task", "4", "--variant", "baseline", "--learning-rate",
                           "nan"], "learning_rate must be a finite number"),
    "seed-negative": (["train", "--task", "4", "--variant", "baseline", "--seed", "-1"],
                      "--seed must be >= 0"),
    "sweep-tasks-abc": (["sweep", "--tasks", "abc", "--dry-run"], "'abc'"),
    "parser-type": (["train", "--task", "four", "--variant", "baseline"],
                    "argument --task: invalid int value: 'four'"),
}
if not torch.cuda.is_available():
    CLI_BAD["train-device-cuda"] = (["train", "--task", "4", "--variant", "baseline",
                                     "--device", "cuda"], "CUDA is not available")
    CLI_BAD["eval-device-cuda"] = (["eval", "--device", "cuda", "--scales", "2"],
                                   "CUDA is not available")


@pytest.mark.parametrize("case", list(CLI_BAD))
def test_cli_value_is_a_one_line_error(tmp_path, capsys, monkeypatch, case):
    monkeypatch.chdir(tmp_path)
    argv, needle = CLI_BAD[case]
    extra = ["--results", str(tmp_path / "r")] if argv[0] in ("train", "sweep") else []
    try:
        rc = cli.main([*argv, *extra])
    except SystemExit as exc:  # argparse's own errors
        rc = exc.code
    _one_error(capsys, rc, needle)
    assert not (tmp_path / "r").exists()


def test_a_tiny_image_in_eval_names_the_file(tmp_path, capsys):
    folder = tmp_path / "tiny"
    folder.mkdir()
    Image.new("RGB", (1, 1)).save(folder / "dot.png")
    rc = cli.main(["eval", "--sets", str(folder), "--scales", "2"])
    _one_error(capsys, rc, str(folder / "dot.png"), "too small to score at x2")


@pytest.mark.parametrize("link", ["dangling", "loop"])
def test_broken_link_in_a_training_folder_names_it(tmp_path, capsys, link):
    folder = tmp_path / "mine"
    folder.mkdir()
    for i in range(4):
        random_image(i, (64, 48)).save(folder / f"{i}.png")
    bad = folder / "bad.png"
    if link == "dangling":
        bad.symlink_to(tmp_path / "gone.png")
    else:
        bad.symlink_to(bad)
    rc = cli.main(["train", "--task", "4", "--variant", "baseline", *SMOKE, "--train-set",
                   str(folder), "--results", str(tmp_path / "r"), "--data-dir",
                   str(tmp_path / "d")])
    _one_error(capsys, rc, str(bad), "broken link")


def test_sweep_book_dir_or_results_that_is_a_file(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    for option in ("--book-dir", "--results"):
        rc = sweep.main(["--profile", "smoke", "--dry-run", option, str(tmp_path / "f")])
        _one_error(capsys, rc, f"{option} {tmp_path / 'f'}: is a file")


def test_unwritable_results_folder_is_one_line(tmp_path, monkeypatch, capsys, data_dir):
    real_open = open

    def read_only(path, *args, **kwargs):  # root ignores chmod: refuse the run's lock file
        if str(path).endswith("/.lock") and str(tmp_path) in str(path):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_open(path, *args, **kwargs)

    import builtins
    monkeypatch.setattr(builtins, "open", read_only)
    with pytest.raises(DiskWriteError) as err:
        with run_lock(tmp_path / "run"):
            pass
    msg = one_line(err.value)
    assert str(tmp_path / "run") in msg and "Permission denied" in msg and "--results" in msg


def test_book_folder_on_a_full_disk_is_one_line(tmp_path, capsys, monkeypatch):
    book_dir = tmp_path / "book"
    real_mkdir = Path.mkdir

    def full(self, *args, **kwargs):
        if str(self).startswith(str(book_dir)):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", full)
    rc = sweep.main(["--profile", "smoke", "--tasks", "2", "--no-pages", "--results",
                     str(tmp_path / "r"), "--book-dir", str(book_dir)])
    _one_error(capsys, rc, str(book_dir), "No space left on device")


def test_unreadable_page_stamp_is_redone_not_a_traceback(tmp_path, capsys):
    argv = ["--profile", "smoke", "--tasks", "2", "--no-pages", "--results",
            str(tmp_path / "r"), "--book-dir", str(tmp_path / "book")]
    s = sweep.settings_from_args(_sweep_args(argv))
    (job,) = sweep.plan(s)
    job.output.parent.mkdir(parents=True)
    job.output.write_text("{}")
    job.stamp.write_bytes(b'{"status": "ok", "source": "\xff\xfe"}')
    assert stamps.read_stamp(job) is None
    job.stamp.write_text("[1, 2]")
    assert stamps.read_stamp(job) is None
    assert sweep.main([*argv, "--dry-run"]) == 0
    assert "would run" in capsys.readouterr().out


def _sweep_args(argv):
    import argparse

    parser = argparse.ArgumentParser()
    sweep.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["sweep", *argv])


def test_page_parameters_are_checked_before_any_run(tmp_path, data_dir):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="seeds must be integers >= 0"):
        report.run_task(2, "smoke", seeds=[-1], data_dir=data_dir, results_dir=tmp_path / "r")
    with pytest.raises(ConfigError, match="iterations must be a positive integer"):
        report.run_task(2, "smoke", iterations=0, data_dir=data_dir, results_dir=tmp_path / "r")
    with pytest.raises(ConfigError, match="unknown device 'tpu'"):
        report.run_task(2, "smoke", device="tpu", data_dir=data_dir, results_dir=tmp_path / "r")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        report.run_task(2, "smoke", data_dir=data_dir, results_dir=tmp_path / "file")
    with pytest.raises(DataError) as err:
        report.run_task(2, "smoke", data_dir="/etc", results_dir=tmp_path / "r")
    msg = one_line(err.value)
    assert "/etc/benchmark" in msg and "ablation data fetch benchmark --data-dir /etc" in msg
    assert not (tmp_path / "r").exists()
    check_run_inputs([0, 1], tmp_path / "r", data_dir)  # fine values pass


# =========================================================================== 9. downloads


def test_bsds300_has_https_and_no_made_up_checksum():
    (src,) = data.DATASETS["bsds200"].sources
    assert src.url.startswith("https://") and src.known_hash is None
    assert "none published" in (REPO.parent / "shared" / "datasets" / "SOURCES.md").read_text()
    assert len(data.BSDS200_IDS) == len(set(data.BSDS200_IDS)) == 200
    for ds in data.DATASETS.values():
        assert ds.max_extracted > 0, ds.name


def _bsds_tgz(ids) -> bytes:
    import io

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for i in ids:
            payload = encoded(random_image(int(i) % 1000, (12, 8)), "JPEG")
            info = tarfile.TarInfo(f"BSDS300/images/train/{i}.jpg")
            info.size = len(payload)
            tf.addfile(info, __import__("io").BytesIO(payload))
    return buf.getvalue()


def test_bsds_archive_of_other_images_is_refused(tmp_path, monkeypatch):
    from fault_helpers import LoopbackServer

    from ablation import download

    monkeypatch.setattr(download, "RETRY_DELAYS", (0.0,))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.delenv("ABLATION_MIRROR", raising=False)  # .ci/run sets it: download instead
    wrong = [900000 + i for i in range(200)]
    server = LoopbackServer()
    try:
        url = server.serve("BSDS300-images.tgz", _bsds_tgz(wrong))
        with pytest.raises(DataError) as err:
            fetch("bsds200", tmp_path, sources={"bsds200": (data.Source(url, None),)})
    finally:
        server.close()
    msg = one_line(err.value)
    assert "is not a BSDS300 training image (200 such)" in msg
    assert not (tmp_path / "train" / "BSDS200").exists()


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_archive_expanding_past_the_dataset_cap_is_refused(tmp_path, kind):
    cap = data.DATASETS["t91"].max_extracted
    archive = tmp_path / f"bomb.{kind}"
    if kind == "zip":  # a few hundred KB that expand to more than the cap
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
            with zf.open("Train/zeros.bmp", "w", force_zip64=True) as fh:
                block = bytes(1 << 20)
                for _ in range(cap // len(block) + 8):
                    fh.write(block)
        assert archive.stat().st_size < 1_000_000
    else:
        with tarfile.open(archive, "w:gz") as tf:
            info = tarfile.TarInfo("Train/zeros.bmp")
            info.size = cap + 1
            tf.addfile(info, _Zeros(cap + 1))
    with pytest.raises(DataError) as err:
        safe_extract(archive, tmp_path / "out", cap)
    msg = one_line(err.value)
    assert str(archive) in msg and f"cap of {cap:,}" in msg
    assert not list((tmp_path / "out").rglob("*.bmp"))  # refused before writing


class _Zeros:
    """A file-like object of ``n`` zero bytes (streamed, never in memory at once)."""

    def __init__(self, n: int) -> None:
        self.left = n

    def read(self, size: int = -1) -> bytes:
        size = self.left if size < 0 else min(size, self.left)
        self.left -= size
        return bytes(size)


# =========================================================================== 10. smaller


def test_sweep_hint_for_a_folder_not_named_book(tmp_path, capsys):
    s = sweep.settings_from_args(_sweep_args(["--book-dir", str(tmp_path / "pages")]))
    text = sweep.summary([], 1.0, s)
    assert f"ablation book --book-dir {tmp_path / 'pages'}" not in text
    assert "named 'book'" in text
    s = sweep.settings_from_args(_sweep_args(["--book-dir", str(tmp_path / "book")]))
    assert f"`ablation book --book-dir {tmp_path / 'book'}`" in sweep.summary([], 1.0, s)
    rc = sweep.main(["--book-dir", str(tmp_path / "pages"), "--build", "--dry-run"])
    _one_error(capsys, rc, "--build", "named 'book'")


def test_a_waiting_train_says_whom_it_waits_for(tmp_path, capsys):
    held, release = threading.Event(), threading.Event()

    def holder():
        with run_lock(tmp_path / "run"):
            held.set()
            release.wait(30)

    t = threading.Thread(target=holder)
    t.start()
    try:
        held.wait(10)
        with pytest.raises(RunLocked) as err, run_lock(tmp_path / "run", timeout=1.5):
            pass
    finally:
        release.set()
        t.join()
    err_lines = _err_lines(capsys)
    assert err_lines == [f"waiting for the process (pid {os.getpid()}) running "
                         f"{tmp_path / 'run'} ..."]
    assert f"another process (pid {os.getpid()}) is running this run" in one_line(err.value)


def test_unsafe_pickle_is_called_unsafe(tmp_path):
    import pickle

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch '{tmp_path / 'pwned'}'",)

    path = tmp_path / "raw.pt"
    path.write_bytes(pickle.dumps({"format": FORMAT, "x": Payload()}, protocol=4))
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(path)
    msg = one_line(err.value)
    assert "unsafe pickle" in msg and "corrupt" not in msg
    assert not (tmp_path / "pwned").exists()


# =========================================================================== property test


class _Reached(BaseException):
    """Raised by the stubs where a command would start real work: the values were accepted
    (a BaseException, so no per-file ``except Exception`` takes it for a failure)."""


def _reached(*args, **kwargs):
    raise _Reached


# Where each command starts work, stubbed so that only its parsing and validation run.
WORK = [("ablation.resolve", "split_files"), ("ablation.evaluate", "evaluate"),
        ("ablation.fetch", "_copy_verified"), ("ablation.download", "fetch_online"),
        ("ablation.costs", "cost_table"), ("ablation.sweep", "sweep"),
        ("ablation.upscale", "upscale_file"), ("ablation.book", "build"),
        ("ablation.book", "write_notebooks"), ("ablation.book", "write_toc"),
        ("ablation.publish", "publish"), ("ablation.publish", "check_pages")]

# Every option of every command with a valid base command line; the option gets a random value.
COMMANDS: dict[str, tuple[list[str], list[str]]] = {
    "data fetch": (["data", "fetch", "t91", "--mirror", "MIRROR"],
                   ["--data-dir", "--mirror", "--lr-scales", "NAME"]),
    "eval": (["eval", "--sets", "Set5", "--scales", "2", "--data-dir", "DATA"],
             ["--model", "--sets", "--scales", "--data-dir", "--results", "--profile", "--device",
              "--tile", "--save-dir", "--json"]),
    "tasks": (["tasks", "--no-latency"], []),
    "train": (["train", "--task", "4", "--variant", "baseline", "--profile", "smoke"],
              ["--task", "--variant", "--scale", "--profile", "--seed", "--iterations",
               "--batch-size", "--lr-patch", "--learning-rate", "--train-set", "--device",
               "--amp", "--perceptual-backbone", "--results", "--data-dir"]),
    "sweep": (["sweep", "--profile", "smoke", "--dry-run", "--results", "RESULTS"],
              ["--tasks", "--scales", "--profile", "--seeds", "--jobs", "--results",
               "--data-dir", "--book-dir", "--device", "--iterations", "--notebooks"]),
    "upscale": (["upscale", "IMAGE", "--model", "bicubic", "--out", "OUT"],
                ["INPUT", "--scale", "--model", "--checkpoint", "--out", "--tile", "--device",
                 "--profile", "--results"]),
    "book": (["book", "generate"], ["ACTION", "--book-dir", "--output", "--remote"]),
}

# What a user can type: any text but NUL (argv can't hold it) and lone surrogates.
VALUES = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
            max_size=30),
    st.sampled_from(["", "-", "--", "0", "-1", "1e999", "nan", "1-1000000000", "5-3", "..",
                     "/", "/etc", "/dev/null", "Set5,,", "2,3,4", "task4/baseline", "a/b/c",
                     "cuda:99", "cpu", " ", "\t", "é", "x" * 300]))


@pytest.fixture(scope="module")
def property_env(tmp_path_factory, mirror):
    base = tmp_path_factory.mktemp("prop")
    random_image(0, (40, 32)).save(base / "image.png")
    return base


def _subst(argv: list[str], base: Path, mirror: Path) -> list[str]:
    names = dict(MIRROR=str(mirror), DATA=str(base / "no-data"), RESULTS=str(base / "results"),
                 IMAGE=str(base / "image.png"), OUT=str(base / "out"))
    return [names.get(a, a) for a in argv]


@settings(max_examples=int(os.environ.get("ABLATION_PROPERTY_EXAMPLES", 60)), deadline=None,
          derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(command=st.sampled_from(sorted(COMMANDS)), data=st.data())
def test_cli_parsers_take_any_string(property_env, mirror, monkeypatch, capsys, command, data):
    import importlib

    for module, name in WORK:
        monkeypatch.setattr(importlib.import_module(module), name, _reached)
    monkeypatch.chdir(property_env)
    base, options = COMMANDS[command]
    argv = _subst(base, property_env, mirror)
    for option in data.draw(st.lists(st.sampled_from(options), max_size=3, unique=True)
                            if options else st.just([])):
        value = data.draw(VALUES)
        if option == "NAME":
            argv[2] = value
        elif option == "INPUT":
            argv[1] = value
        elif option == "ACTION":
            argv[1] = value
        else:
            argv += [f"{option}={value}"]
    capsys.readouterr()
    try:
        rc = cli.main(argv)
    except SystemExit as exc:  # argparse
        rc = exc.code
    except _Reached:
        rc = 0
    err = capsys.readouterr().err
    assert rc in (0, 2), (argv, rc, err)
    assert "Traceback" not in err, (argv, err)
    lines = [line for line in err.split("\n") if line.strip()]  # a value may hold \x1e
    assert len(lines) <= 3, (argv, err)
    if rc == 2:
        assert lines and lines[-1].startswith("error: "), (argv, err)


def test_the_cli_in_a_subprocess_never_prints_a_traceback(tmp_path):
    """The same property through the real entry point, for a few hostile values."""
    for argv in (["sweep", "--tasks", "1-1000000000", "--dry-run"],
                 ["eval", "--model", "foo/bar", "--scales", "2"],
                 ["train", "--task", "4", "--variant", "baseline", "--learning-rate", "nan"],
                 ["data", "fetch", "t91", "--data-dir", "/proc/x" * 50]):
        proc = subprocess.run([sys.executable, "-m", "ablation", *argv], env=child_env(),
                              capture_output=True, text=True, timeout=180, cwd=tmp_path)
        assert proc.returncode == 2, (argv, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (argv, proc.stderr)
