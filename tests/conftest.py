"""Shared fixtures: the local dataset mirror (../shared/datasets) fetched once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _find_mirror() -> Path | None:
    for cand in (os.environ.get("ABLATION_MIRROR"), REPO.parent / "shared" / "datasets"):
        if cand and (Path(cand) / "benchmark.sha256").exists():
            return Path(cand)
    return None


@pytest.fixture(scope="session")
def mirror() -> Path:
    m = _find_mirror()
    if m is None:
        pytest.fail("dataset mirror not found: set ABLATION_MIRROR or put shared/ beside the repo")
    return m


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory, mirror) -> Path:
    """A data dir with the benchmark sets and the 291 training set fetched from the mirror."""
    from ablation.fetch import fetch

    root = Path(os.environ.get("ABLATION_TEST_DATA") or tmp_path_factory.mktemp("data"))
    fetch("benchmark", data_dir=root, mirror=mirror)
    fetch("291", data_dir=root, mirror=mirror)
    return root
