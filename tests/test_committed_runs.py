"""The committed ``results/cpu`` runs keep their config hashes.

A run is reused only when the hash the package computes for it today equals the one in its
``metrics.json``; a refactor that changed the hash (a renamed field, a new default, another
data fingerprint) would silently retrain the whole study on the next ``make book``. Two
checks: the hash recomputed by ``resolve_run`` from the data fingerprint each run recorded
(no data needed), and ``run_variant`` itself, on data fetched from the mirror like a fresh
clone does, with training and evaluation replaced by a failure: every committed run must come
back reused.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import ablation.runs
from ablation.resolve import resolve_run
from ablation.runs import run_variant
from ablation.tasks import get_task

REPO = Path(__file__).resolve().parents[1]
COMMITTED = sorted((REPO / "results" / "cpu").glob("task*/*/x*/seed*/metrics.json"))


def _key(path: Path) -> str:
    return path.parent.relative_to(REPO / "results" / "cpu").as_posix()


def test_the_cpu_study_is_committed():
    assert COMMITTED, "results/cpu holds no finished runs"
    for path in COMMITTED:
        m = json.loads(path.read_text())
        assert len(m["config_hash"]) == 16 and m["profile"] == "cpu"
        assert _key(path) == f"task{m['task']:02d}/{m['variant']}/x{m['scale']}/seed{m['seed']}"


def test_the_default_sweep_plans_exactly_the_committed_runs(tmp_path):
    """`make book` (every task and scale, seed 0, cpu profile) trains exactly the committed
    seed-0 runs (none that isn't committed), and every committed run, whatever its seed, is
    one the pages show (they show the mean over every seed on disk)."""
    from ablation import sweep
    from ablation.tasks import TASK_RANGE, parse_tasks

    s = sweep.Settings(tasks=parse_tasks(TASK_RANGE), scales=None, profile="cpu",
                       seeds=[0], results_dir=REPO / "results", data_dir=None,
                       book_dir=tmp_path / "book")
    planned = {key for job in sweep.plan(s) for key in job.expected_runs}
    committed = {_key(p) for p in COMMITTED}
    assert planned == {k for k in committed if k.endswith("/seed0")}
    assert {k.rsplit("/", 1)[0] for k in committed} == {k.rsplit("/", 1)[0] for k in planned}


# the compute ladder's runs (profiles cpu4, cpu16) are committed too: their hashes must hold
LADDER_COMMITTED = sorted(p for p in (REPO / "results").glob("cpu*/task*/*/x*/seed*/metrics.json")
                          if p.parts[-6] != "cpu")


@pytest.mark.parametrize("path", COMMITTED + LADDER_COMMITTED,
                         ids=lambda p: p.parent.relative_to(REPO / "results").as_posix())
def test_committed_hash_recomputes_from_its_recorded_fingerprint(path):
    m = json.loads(path.read_text())
    variant = get_task(m["task"]).variant(m["variant"])
    run = resolve_run(variant, m["scale"], m["profile"], seed=m["seed"],
                      fingerprint=m["data_fingerprint"])
    assert run.config_hash == m["config_hash"]
    assert run.data_fingerprint == m["data_fingerprint"]
    assert run.trainable == (m["variant"] != "bicubic")


@pytest.fixture
def no_training(monkeypatch):
    """run_variant with training and evaluation disabled: anything not reused fails."""
    def refuse(*args, **kwargs):
        raise AssertionError("run_variant would retrain or re-evaluate a committed run")

    monkeypatch.setattr(ablation.runs, "train", refuse)
    monkeypatch.setattr(ablation.runs, "evaluate", refuse)


@pytest.mark.parametrize("path", COMMITTED, ids=_key)
def test_committed_run_is_reused_with_its_hash(path, tmp_path, data_dir, no_training):
    committed = json.loads(path.read_text())
    folder = tmp_path / "results" / "cpu" / _key(path)
    shutil.copytree(path.parent, folder)  # a finished run is all of its files (check_run)
    m = run_variant(committed["task"], committed["variant"], committed["scale"], "cpu",
                    committed["seed"], results_dir=tmp_path / "results", data_dir=data_dir,
                    progress=False)
    assert m["reused"] is True
    assert m["config_hash"] == committed["config_hash"]
    assert m["data_fingerprint"] == committed["data_fingerprint"]


WITH_MODEL = sorted(p for p in (REPO / "results").glob("cpu*/task*/*/x*/seed*/metrics.json")
                    if (p.parent / "model.pt").is_file())


@pytest.mark.parametrize("path", WITH_MODEL,
                         ids=lambda p: p.parent.relative_to(REPO / "results").as_posix())
def test_recorded_body_gain_is_the_committed_models(path):
    """The body gain the pages read from ``metrics.json`` (it is the only record for seeds
    whose model is not committed) is the probe of the run's own model."""
    from ablation.checkpoint import load_model
    from ablation.models import body_gain

    m = json.loads(path.read_text())
    assert "body_gain" in m, f"{path}: no body_gain recorded"
    gain = body_gain(load_model(path.parent / "model.pt", expect_scale=m["scale"])[0])
    assert (gain is None) == (m["body_gain"] is None)
    if gain is not None:
        assert gain == pytest.approx(m["body_gain"], rel=1e-5)
