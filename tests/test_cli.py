"""The command line as a user meets it (#15): help texts with defaults, --version, set names in
any case, eval over scales that exist, a progress bar per set, advice for a user's own file."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest
import tomllib
import torch
from PIL import Image

from ablation import cli, data
from ablation.checkpoint import save_checkpoint
from ablation.config import BENCHMARKS, canonical_set, config_hash, make_config
from ablation.models import ModelSpec, build_model

REPO = Path(__file__).resolve().parents[1]
TINY = ModelSpec(input="lr", n_blocks=1, n_feats=4)


def _parsers(parser: argparse.ArgumentParser, path: str = "ablation"):
    """Every (command path, parser) under ``parser``, sub-commands of sub-commands included."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{path} {name}")


def _shown(default) -> str:
    """How a help text spells a default: lists comma-joined, as the options take them."""
    if isinstance(default, (list, tuple)):
        return ",".join(map(str, default))
    if isinstance(default, float) and default.is_integer():
        return str(int(default))  # 15.0 is written 15
    return str(default)


def test_every_option_states_its_default():
    seen = set()
    missing = []
    for path, parser in _parsers(cli.build_parser()):
        seen.add(path)
        for action in parser._actions:
            if not action.option_strings or action.nargs == 0 or action.required:
                continue  # flags (--x / --no-x, store_true, --help, --version), required ones
            text = action.help or ""
            option = f"{path} {action.option_strings[0]}"
            if "default" not in text:
                missing.append(f"{option}: {text!r}")
            elif action.default not in (None, [], ()) and _shown(action.default) not in text:
                missing.append(f"{option}: {text!r} doesn't show {_shown(action.default)!r}")
    assert not missing, "\n".join(missing)
    for command in ("data fetch", "eval", "tasks", "train", "sweep", "book", "upscale"):
        assert f"ablation {command}" in seen


def test_version_is_the_package_metadata_version(capsys):
    want = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert version("sr-ablation") == want
    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"ablation {want}"


# --------------------------------------------------------------------------- set names


def test_set_names_are_case_insensitive_everywhere(data_dir):
    parsed = cli.build_parser().parse_args(["eval", "--sets", "set5, b100,URBAN100,Set14,./x"])
    assert parsed.sets == ["Set5", "B100", "Urban100", "Set14", "./x"]
    assert [canonical_set(n.upper()) for n in BENCHMARKS] == list(BENCHMARKS)
    assert canonical_set("photos/set5") == "photos/set5"  # a folder stays a folder
    # a training config: the same run (the same hash) whatever the case typed
    typed = make_config("smoke", eval_sets="set5,b100")
    assert typed.eval_sets == ("Set5", "B100")
    assert config_hash(typed) == config_hash(make_config("smoke", eval_sets=("Set5", "B100")))
    assert make_config("smoke", eval_sets=["urban100"]).eval_sets == ("Urban100",)
    assert data.benchmark_hr_files("sET5", data_dir) == data.benchmark_hr_files("Set5", data_dir)


# --------------------------------------------------------------------------- eval


@pytest.fixture(scope="module")
def ckpt_x2(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, build_model(TINY, 2))
    return path


def _eval(capsys, *argv: str) -> tuple[int, str, str]:
    rc = cli.main(["eval", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_eval_skips_a_scale_without_a_model_and_says_why(ckpt_x2, data_dir, tmp_path, capsys):
    out = tmp_path / "r.json"
    rc, _, err = _eval(capsys, "--model", str(ckpt_x2), "--sets", "set5", "--scales", "2,3",
                       "--data-dir", str(data_dir), "--json", str(out))
    assert rc == 0, err
    notes = [line for line in err.splitlines() if line.strip()]
    assert len(notes) == 1 and notes[0].startswith("note: skipped x3: "), err
    assert "checkpoint is for x2, not x3" in notes[0]
    (record,) = json.loads(out.read_text())
    assert (record["set"], record["scale"], record["n_images"]) == ("Set5", 2, 5)


def test_eval_with_no_model_at_any_scale_is_one_error(ckpt_x2, data_dir, tmp_path, capsys):
    rc, out, err = _eval(capsys, "--model", str(ckpt_x2), "--sets", "Set5", "--scales", "3,4",
                         "--data-dir", str(data_dir))
    lines = err.strip().splitlines()
    assert rc == 2 and lines[-1].startswith("error: --scales 3,4: "), err
    assert "no model at any of them" in lines[-1] and "PSNR" not in out
    # a TASK/VARIANT with no run at any scale, from a folder outside the repository
    rc, _, err = _eval(capsys, "--model", "task4/baseline", "--scales", "2,3", "--sets", "Set5",
                       "--results", str(tmp_path / "none"), "--data-dir", str(data_dir))
    skipped = [line for line in err.splitlines() if line.startswith("note: skipped")]
    assert rc == 2 and len(skipped) == 2
    assert "--results (or $ABLATION_RESULTS)" in skipped[0]


def _bar_lines(err: str) -> list[str]:
    return [part.strip() for part in err.replace("\r", "\n").splitlines() if "|" in part]


def test_eval_shows_a_progress_bar_per_set(data_dir, tmp_path, capsys, monkeypatch):
    rng = np.random.default_rng(0)
    for name, n in (("mine", 3), ("yours", 2)):
        (tmp_path / name).mkdir()
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (24, 30, 3), dtype=np.uint8)).save(
                tmp_path / name / f"{i}.png")
    argv = ["--sets", f"{tmp_path / 'mine'},{tmp_path / 'yours'}", "--scales", "2",
            "--data-dir", str(data_dir)]
    with monkeypatch.context() as m:
        m.setattr(sys.stderr, "isatty", lambda: True)
        rc, _, err = _eval(capsys, *argv)
        bars = _bar_lines(err)
        assert rc == 0, err
        for name, n in (("mine", 3), ("yours", 2)):
            # a set seen for the first time: its inputs are prepared (cached) under its bar
            assert any(b.startswith(f"bicubic {name} x2 (preparing inputs)") for b in bars), bars
            assert any(b.startswith(f"bicubic {name} x2: 100%") and f"{n}/{n}" in b
                       for b in bars), bars
        rc, _, err = _eval(capsys, *argv, "--no-progress")
        assert rc == 0 and not _bar_lines(err), err
    rc, _, err = _eval(capsys, *argv)  # stderr is not a terminal: no bars
    assert rc == 0 and not _bar_lines(err), err


def test_eval_on_a_users_folder_with_a_broken_image_advises_re_export(data_dir, tmp_path,
                                                                      capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    Image.fromarray(np.zeros((24, 24, 3), np.uint8)).save(mine / "ok.png")
    (mine / "bad.png").write_bytes((mine / "ok.png").read_bytes()[:40])
    rc, _, err = _eval(capsys, "--sets", str(mine), "--scales", "2", "--data-dir", str(data_dir))
    assert rc == 2 and err.count("\n") == 1, err
    assert str(mine / "bad.png") in err and "re-export" in err and "fetch" not in err
    # the same broken file inside the fetched benchmark: fetch it again
    copy = tmp_path / "data"
    shutil.copytree(data_dir / "benchmark", copy / "benchmark")
    victim = sorted((copy / "benchmark" / "Set5" / "HR").glob("*.png"))[0]
    victim.write_bytes(victim.read_bytes()[:40])
    rc, _, err = _eval(capsys, "--sets", "Set5", "--scales", "2", "--data-dir", str(copy))
    assert rc == 2 and str(victim) in err and "fetch or copy it again" in err, err


def test_a_custom_training_folder_with_a_broken_image_advises_re_export(tmp_path):
    """``--train-set FOLDER``: the files are listed by data.train_files and decoded into the
    training cache, where a broken one must be named with advice for the user's own file."""
    from ablation.cache import load_decoded
    from ablation.errors import DataError

    mine = tmp_path / "crops"
    mine.mkdir()
    Image.fromarray(np.zeros((48, 48, 3), np.uint8)).save(mine / "a.png")
    (mine / "b.png").write_bytes((mine / "a.png").read_bytes()[:60])
    files = data.train_files(str(mine))
    with pytest.raises(DataError) as err:
        load_decoded(files, 2, tmp_path / "cache", label="crops")
    message = str(err.value)
    assert str(mine / "b.png") in message and "re-export" in message
    assert "fetch" not in message and "\n" not in message
