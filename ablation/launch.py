"""The notebooks the book's Binder launch button opens: every page, parameters injected.

A launch button opens ``book/<page>.ipynb`` in JupyterLab on Binder. The executed pages are
build output (not committed), so ``binder/postBuild`` calls :func:`write_launch_notebooks`:
each page's source notebook with the parameters the sweep would inject (papermill's
``prepare_only``: nothing executes). "Run all" then reuses the committed ``cpu`` runs and
renders the page. Kept apart from :mod:`ablation.rerun` (which every task page runs), so
that the sweep's modules are not part of a page's source digest.
"""

from __future__ import annotations

import os
from pathlib import Path


def write_launch_notebooks(book_dir: str | os.PathLike = "book",
                           profile: str = "cpu") -> list[Path]:
    """Write each page's notebook (its parameters injected, as the sweep would, not
    executed) where the book has no executed page. Returns the files written."""
    import tempfile

    import papermill as pm

    from ablation import paths
    from ablation.fs import atomic_write_text
    from ablation.notebooks import source_notebook
    from ablation.sweep import Settings, plan
    from ablation.tasks import TASKS

    s = Settings(tasks=list(TASKS), scales=None, profile=profile, seeds=[0],
                 results_dir=paths.results_dir().resolve(), data_dir=None,
                 book_dir=Path(book_dir).resolve())
    written = []
    with tempfile.TemporaryDirectory(prefix="ablation-launch-") as tmp:
        for job in plan(s):
            if job.output.exists():
                continue
            out = Path(tmp) / job.output.name
            pm.execute_notebook(source_notebook(job.page), str(out), parameters=job.params,
                                prepare_only=True, kernel_name="python3", progress_bar=False)
            atomic_write_text(job.output, out.read_text(encoding="utf-8"))
            written.append(job.output)
    return written
