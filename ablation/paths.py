"""Where data and results live. Resolved at call time (never at import).

Defaults are ``./data`` and ``./results`` of the project: when the working directory is inside
the project (e.g. a notebook opened from ``notebooks/``), they resolve against the project
root, found as the nearest parent holding ``_toc.yml`` and ``ablation/``.
"""

from __future__ import annotations

import os
from pathlib import Path


def project_root(start: Path | None = None) -> Path | None:
    """The nearest parent of ``start`` (default: cwd) that is this project's root, or None."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "_toc.yml").exists() and (folder / "ablation" / "__init__.py").exists():
            return folder
    return None


def _default(name: str) -> Path:
    local = Path(name)
    if local.exists():
        return local
    root = project_root()
    return root / name if root is not None else local


def data_dir(explicit: str | os.PathLike | None = None) -> Path:
    """``--data-dir`` if given, else ``$ABLATION_DATA``, else the project's ``data/``."""
    value = explicit or os.environ.get("ABLATION_DATA")
    return Path(value) if value else _default("data")


def mirror_dir(explicit: str | os.PathLike | None = None) -> Path | None:
    """``--mirror`` if given, else ``$ABLATION_MIRROR``, else None (download online)."""
    value = explicit or os.environ.get("ABLATION_MIRROR")
    return Path(value) if value else None


def results_dir(explicit: str | os.PathLike | None = None) -> Path:
    """``--results`` if given, else ``$ABLATION_RESULTS``, else the project's ``results/``."""
    value = explicit or os.environ.get("ABLATION_RESULTS")
    return Path(value) if value else _default("results")
