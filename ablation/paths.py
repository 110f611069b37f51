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


def repo_root() -> Path:
    """The checkout this package runs from (it holds notebooks/, book/, _config.yml); unlike
    :func:`project_root`, found from the package's own file, not the working directory."""
    return Path(__file__).resolve().parents[1]


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


# a path starts where no base64 or path character precedes it (never inside an embedded image)
_BEFORE = r"(?<![A-Za-z0-9+/=_.~-])"


def machine_prefixes(*roots: str | os.PathLike) -> list[tuple[str, str]]:
    """(absolute prefix, what replaces it) for :func:`relative_text`, longest first: each of
    ``roots`` (the project, the folder the pages ran in) -> relative, the home folder -> ``~``."""
    out = []
    for root in roots:
        r = str(Path(root).resolve()) if root else ""
        if len(r) > 1:
            out += [(r + "/", ""), (r, ".")]
    home = str(Path.home())
    if len(home) > 1:
        out += [(home + "/", "~/"), (home, "~")]
    return sorted(set(out), key=lambda p: -len(p[0]))


def relative_text(text: str, prefixes: list[tuple[str, str]]) -> str:
    """``text`` with every machine path under ``prefixes`` made relative (a published page or
    notebook names ``results/cpu``, not ``/home/<user>/.../results/cpu``)."""
    import re

    for prefix, repl in prefixes:
        text = re.sub(_BEFORE + re.escape(prefix) + ("" if prefix.endswith("/") else r"(?![\w.-])"),
                      repl.replace("\\", "\\\\"), text)
    return text


def relative_paths(obj, prefixes: list[tuple[str, str]]):
    """:func:`relative_text` on every string inside ``obj`` (a notebook: dicts and lists)."""
    if isinstance(obj, str):
        return relative_text(obj, prefixes)
    if isinstance(obj, dict):
        for k, v in obj.items():
            obj[k] = relative_paths(v, prefixes)
        return obj
    if isinstance(obj, list):
        return [relative_paths(v, prefixes) for v in obj]
    return obj
