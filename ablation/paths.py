"""Where data and results live. Resolved at call time (never at import)."""

from __future__ import annotations

import os
from pathlib import Path


def data_dir(explicit: str | os.PathLike | None = None) -> Path:
    """``--data-dir`` if given, else ``$ABLATION_DATA``, else ``./data``."""
    return Path(explicit or os.environ.get("ABLATION_DATA") or "data")


def mirror_dir(explicit: str | os.PathLike | None = None) -> Path | None:
    """``--mirror`` if given, else ``$ABLATION_MIRROR``, else None (download online)."""
    value = explicit or os.environ.get("ABLATION_MIRROR")
    return Path(value) if value else None


def results_dir(explicit: str | os.PathLike | None = None) -> Path:
    """``--results`` if given, else ``$ABLATION_RESULTS``, else ``./results``."""
    return Path(explicit or os.environ.get("ABLATION_RESULTS") or "results")
