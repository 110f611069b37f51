"""Is an executed page up to date? Its stamp says what it was made from.

Each page the sweep executes gets a small JSON stamp beside it (``.<page>.json``): its
parameters, a digest of its source (:func:`source_digest`: the notebook's cells and every
package module the page runs) and the config hash of every run it shows. A page whose stamp
still matches (same parameters, same source, runs unchanged in the results folder) is reused,
not re-executed. Pages that read every run of a profile (results, conclusion) also record a
digest of the whole results folder (:func:`results_digest`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ablation import modgraph

if TYPE_CHECKING:
    from ablation.sweep import Job, Settings

RERUN_MODULE = "ablation.rerun"  # a page that runs it links to the repository in _config.yml


def run_hash(results_root: Path, key: str) -> str | None:
    """Config hash of the finished run ``key`` ('task04/baseline/x2/seed0'), else None."""
    from ablation.results import check_run

    m = check_run(results_root / key).metrics  # damaged: unfinished (reported by the sweep)
    return None if m is None else m.get("config_hash")


def results_digest(results_root: Path,
                   patterns: tuple[str, ...] = ("task*/*/x*/seed*/metrics.json",)) -> str:
    """Digest of every finished run of a profile (path, config hash, mtime), or of the runs
    matching ``patterns``; damaged runs (see :func:`ablation.results.check_run`) count as
    absent."""
    from ablation.results import check_run

    h = hashlib.sha256()
    for f in sorted({f for p in patterns for f in results_root.glob(p)}):
        m = check_run(f.parent).metrics
        with contextlib.suppress(OSError):
            if m is not None:
                h.update(f"{f.relative_to(results_root)} {m.get('config_hash')} "
                         f"{f.stat().st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def source_digest(nb: Any) -> str:
    """Digest of what a page shows apart from the runs: its notebook's cells (type and source,
    not metadata or outputs), every package module the page runs (what its code cells
    import, and everything that imports in turn: models, evaluate, inference, rerun, ...)
    and, for a page with a rerun section, the repository it links to (``repository`` in
    ``_config.yml``: not a module, but baked into the page's links)."""
    cells = [(c.get("cell_type"), c.get("source")) for c in nb.get("cells", [])]
    h = hashlib.sha256(json.dumps(cells).encode())
    sources = page_sources(nb)
    for path in sources:
        h.update(path.relative_to(modgraph.package_dir()).as_posix().encode())
        h.update(path.read_bytes())
    if modgraph.modules()[RERUN_MODULE] in sources:
        from ablation import rerun

        h.update(repr(rerun.repository()).encode())
    return h.hexdigest()[:16]


def page_sources(nb: Any) -> list[Path]:
    """The package's source files a page runs (all of them if its code doesn't parse)."""
    known = modgraph.modules()
    code = "\n".join(c.get("source", "") for c in nb.get("cells", [])
                     if c.get("cell_type") == "code")
    try:
        roots = modgraph.imports_in_code(code, known)
    except SyntaxError:
        roots = set(known)
    return modgraph.source_files(modgraph.closure(roots, modgraph.graph()))


def read_stamp(job: Job) -> dict | None:
    """The page's stamp, or None if missing or unreadable."""
    try:
        stamp = json.loads(job.stamp.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None  # unreadable: the page is redone (and its stamp rewritten)
    return stamp if isinstance(stamp, dict) else None


def is_up_to_date(job: Job, s: Settings, src_digest: str) -> bool:
    """True when the page exists and nothing it shows has changed since it was executed."""
    stamp = read_stamp(job)
    if stamp is None or not job.output.exists() or stamp.get("status") != "ok":
        return False
    if stamp.get("params") != jsonable(job.params) or stamp.get("source") != src_digest:
        return False
    for key in job.expected_runs:
        now = run_hash(s.results_root, key)
        if now is None or stamp.get("runs", {}).get(key) != now:
            return False
    if job.all_seeds and stamp.get("seeds") != seeds_digest(job, s):
        return False
    return not job.depends_on_all or stamp.get("all_runs") == page_runs_digest(job, s)


def seeds_digest(job: Job, s: Settings) -> str:
    """Digest of every finished seed of the runs a task page shows (it averages all the seeds
    on disk): a new seed of one of them makes the page stale, a run of another task does not."""
    groups = sorted({key.rsplit("/", 1)[0] for key in job.expected_runs})
    return results_digest(s.results_root, tuple(f"{g}/seed*/metrics.json" for g in groups))


def page_runs_digest(job: Job, s: Settings) -> str:
    """Digest of every finished run a page reading whole results folders shows: its profile's,
    plus those of ``job.other_profiles`` (the compute ladder's cpu4/cpu16)."""
    roots = [s.results_root, *(s.results_dir / p for p in job.other_profiles)]
    return "-".join(results_digest(r) for r in roots)


def jsonable(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists)."""
    return json.loads(json.dumps(value))
