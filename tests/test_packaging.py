"""Packaging: environment.yml matches pyproject, the console command, import hygiene."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import tomllib
import yaml

REPO = Path(__file__).resolve().parents[1]


def _pyproject_requirements() -> set[str]:
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = set(meta["dependencies"])
    for extra in meta["optional-dependencies"].values():
        reqs.update(extra)
    return reqs


def test_environment_yml_matches_pyproject():
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    assert "python=3.11" in env["dependencies"]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    listed = {r for r in pip if not r.startswith("-e")}
    assert listed == _pyproject_requirements()
    assert any(r.startswith("-e .[") for r in pip)  # the package itself, with its extras


def test_torch_requirement_is_a_range_not_a_pin():
    torch_reqs = [r for r in _pyproject_requirements() if r.startswith("torch")]
    assert torch_reqs == ["torch>=2.3"]


def test_import_has_no_side_effects(tmp_path):
    code = ("import sys; sys.argv = ['x', '--bogus']; import ablation, ablation.tasks, "
            "ablation.models, ablation.config; import os; "
            "print(sorted(os.listdir('.')), 'cuda' in repr(ablation.__dict__))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "[] False"  # nothing written, argv ignored, no device chosen


def test_console_command_and_module_agree():
    a = subprocess.run([sys.executable, "-m", "ablation", "--help"], capture_output=True,
                       text=True, check=True).stdout
    exe = Path(sys.executable).with_name("ablation")
    b = subprocess.run([str(exe), "--help"], capture_output=True, text=True, check=True).stdout
    assert a == b
    for sub in ("data", "eval", "tasks", "train", "sweep", "upscale", "book"):
        assert sub in a
