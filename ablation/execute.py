"""Execute the sweep's pages with papermill: each one atomically into place, a phase of them
in parallel (one GPU, or a share of the CPU cores, per page).

:mod:`ablation.sweep` plans the pages (:class:`ablation.sweep.Job`), holds the locks and
reports; this module runs them. A page is executed into a temporary file and renamed into
place when done, its stamp (:mod:`ablation.stamps`) removed before and written after, so a
killed sweep never leaves a half-written page that a later sweep would take as done. A
failing notebook doesn't stop the others; its page shows the error (papermill's executed
notebook, or a generated page naming the failure). With ``--jobs`` > 1 each page runs in its
own ``python -m ablation.execute`` worker, so a crashed worker is a failed page, not a
crashed sweep.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ablation import paths
from ablation.fs import atomic_write_text
from ablation.notebooks import notebook_text, placeholder_notebook, source_notebook
from ablation.stamps import (
    is_up_to_date,
    jsonable,
    page_runs_digest,
    run_hash,
    seeds_digest,
    source_digest,
)

if TYPE_CHECKING:
    from ablation.sweep import Job, Settings

TMP_DIR = ".sweep-tmp"
# the kernel's own start-up chatter (e.g. "running over TCP without encryption" on a local
# connection, "KeyboardInterrupt caught" at shutdown) would interleave with the progress bar;
# a failing cell still shows in its page
KERNEL_ARGS = ["--IPKernelApp.log_level=CRITICAL"]


# --------------------------------------------------------------------------- executing


def postprocess(nb: Any, error: str = "", title: str | None = None) -> Any:
    """Book-ready executed notebook: the page's title (with its scale), the default parameters
    hidden (the injected ones show the values used), no machine path (paths under the project
    or the folder the pages ran in are published relative to it, the home folder as ``~``)
    and, after a failure, a note at the top."""
    import nbformat

    prefixes = paths.machine_prefixes(paths.repo_root(), os.getcwd())
    nb.cells = paths.relative_paths(nb.cells, prefixes)
    nb.metadata = paths.relative_paths(nb.metadata, prefixes)
    error = paths.relative_text(error, prefixes)

    for cell in nb.cells:
        if title and cell.cell_type == "markdown" and cell.source.startswith("# "):
            _old, _, rest = cell.source.partition("\n")
            cell.source = f"# {title}\n{rest}" if rest else f"# {title}"
            break

    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if "parameters" in tags and "remove-cell" not in tags:
            cell.metadata["tags"] = [*tags, "remove-cell"]
    if error:
        first = error.splitlines()[0] if error else "unknown error"
        note = nbformat.v4.new_markdown_cell(
            f"```{{error}}\nThis page failed to run in the sweep: {first}\n\nThe output of the "
            "failing cell is below; fix the cause and rerun `ablation sweep`.\n```")
        note.id = "sweep-failure"
        title = next((i for i, c in enumerate(nb.cells) if c.cell_type == "markdown"
                      and c.source.lstrip().startswith("# ")), -1)
        nb.cells.insert(title + 1, note)
    nb.metadata.setdefault("sr_ablation", {})["sweep_error"] = error
    return nb


def _finish(job: Job, tmp: Path, error: str) -> None:
    """Move the executed (or failure) notebook into place atomically."""
    import nbformat


    nb = None
    if tmp.exists():
        try:
            nb = nbformat.read(tmp, as_version=4)
        except Exception:  # a kernel killed mid-write leaves an unreadable file
            nb = None
    if nb is None:
        reason = f"This page failed to run in the sweep: {error or 'no output notebook'}."
        nb = nbformat.from_dict(placeholder_notebook(job.page, reason))
        nb.metadata["sr_ablation"]["sweep_error"] = error
        nb = paths.relative_paths(nb, paths.machine_prefixes(paths.repo_root(), os.getcwd()))
    else:
        nb = postprocess(nb, error, job.page.title)
    atomic_write_text(job.output, notebook_text(nb))
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()


def execute(job: Job, settings: Settings, env: dict[str, str] | None = None) -> dict:
    """Execute one page with papermill into place; returns {name, status, error, seconds}."""
    import papermill as pm


    nb = source_notebook(job.page, settings.notebooks)
    digest = source_digest(nb)
    tmp = job.output.parent / TMP_DIR / f"{job.output.stem}.{os.getpid()}.ipynb"
    tmp.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        job.stamp.unlink()
    t0, error = time.perf_counter(), ""
    with environ({"ABLATION_NONINTERACTIVE": "1", "MPLBACKEND": "Agg", **(env or {})}):
        try:
            pm.execute_notebook(nb, str(tmp), parameters=job.params, kernel_name="python3",
                                progress_bar=False, log_output=False, cwd=os.getcwd(),
                                start_timeout=180, extra_arguments=KERNEL_ARGS)
        except pm.PapermillExecutionError as exc:
            error = f"{exc.ename}: {exc.evalue}".strip()
        except Exception as exc:  # kernel died, could not start, ...
            error = f"{exc.__class__.__name__}: {str(exc).strip()}".strip()
    _finish(job, tmp, error)
    seconds = time.perf_counter() - t0
    stamp = dict(page=job.page.name, status="failed" if error else "ok", error=error,
                 params=jsonable(job.params), source=digest, seconds=round(seconds, 1),
                 runs={k: run_hash(settings.results_root, k) for k in job.expected_runs},
                 all_runs=page_runs_digest(job, settings) if job.depends_on_all else None,
                 seeds=seeds_digest(job, settings) if job.all_seeds else None,
                 finished=time.strftime("%Y-%m-%dT%H:%M:%S"))
    atomic_write_text(job.stamp, json.dumps(stamp, indent=2))
    return dict(name=job.page.name, status="failed" if error else "ran", error=error,
                seconds=seconds, output=str(job.output))


@contextlib.contextmanager
def environ(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the kernels started inside (restored afterwards)."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# --------------------------------------------------------------------------- scheduling


def gpu_ids() -> list[str]:
    """GPUs jobs can be spread over: $CUDA_VISIBLE_DEVICES, else every CUDA device."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [x.strip() for x in visible.split(",") if x.strip()]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:
        return []


def slot_env(slot: int, n_jobs: int, gpus: list[str]) -> dict[str, str]:
    """Environment of the job running in ``slot``: its own GPU, or a share of the CPU cores."""
    if gpus:
        return {"CUDA_VISIBLE_DEVICES": gpus[slot % len(gpus)]}
    if n_jobs > 1:
        threads = max(1, (os.cpu_count() or 1) // n_jobs)
        return {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    return {}


def run_phase(jobs: list[Job], s: Settings, bar, results: list[dict]) -> None:
    """Execute one phase's jobs (in parallel with ``s.jobs`` > 1), skipping up-to-date ones."""
    todo = []
    for job in jobs:
        if is_up_to_date(job, s, source_digest(source_notebook(job.page, s.notebooks))):
            results.append(dict(name=job.page.name, status="reused", error="", seconds=0.0,
                                output=str(job.output)))
            bar.update(1)
        else:
            todo.append(job)
    if s.jobs <= 1 or len(todo) <= 1:
        for job in todo:
            bar.set_postfix_str(job.page.name, refresh=False)
            results.append(execute(job, s, slot_env(0, 1, [])))
            bar.update(1)
        return
    _run_parallel(todo, s, bar, results)


def _run_parallel(todo: list[Job], s: Settings, bar, results: list[dict]) -> None:
    """Run jobs in worker subprocesses, at most ``s.jobs`` at a time, one slot (GPU) each."""
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    gpus = gpu_ids()
    free = list(range(s.jobs))
    pending, running = list(todo), {}
    with ThreadPoolExecutor(max_workers=s.jobs) as pool:
        while pending or running:
            while pending and free:
                slot, job = free.pop(0), pending.pop(0)
                fut = pool.submit(execute_in_subprocess, job, s, slot_env(slot, s.jobs, gpus))
                running[fut] = (slot, job)
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in done:
                slot, job = running.pop(fut)
                free.append(slot)
                results.append(fut.result())
                bar.set_postfix_str(job.page.name, refresh=False)
                bar.update(1)


def execute_in_subprocess(job: Job, s: Settings, env: dict[str, str]) -> dict:
    """:func:`execute` in a fresh ``python -m ablation.execute`` worker with its own environment
    (a crashed worker becomes a failed page, not a crashed sweep)."""
    import pickle
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory(prefix="ablation-sweep-") as tmp:
        result_file = Path(tmp) / "result.json"
        proc = subprocess.run([sys.executable, "-m", "ablation.execute", str(result_file)],
                              input=pickle.dumps((job, s)), env={**os.environ, **env},
                              stdout=subprocess.DEVNULL)
        if result_file.exists():
            return json.loads(result_file.read_text())
    error = f"sweep worker exited with code {proc.returncode}"
    return fail(job, s, error)


def fail(job: Job, s: Settings, error: str) -> dict:
    """Record a page that could not even be executed: a failure page and a failed stamp."""

    _finish(job, job.output.parent / TMP_DIR / "missing.ipynb", error)
    atomic_write_text(job.stamp, json.dumps(dict(page=job.page.name, status="failed",
                                                 error=error)))
    return dict(name=job.page.name, status="failed", error=error, seconds=0.0,
                output=str(job.output))


def _worker() -> None:
    """``python -m ablation.execute RESULT_FILE`` with a pickled (job, settings) on stdin."""
    import pickle

    job, settings = pickle.loads(sys.stdin.buffer.read())
    result = execute(job, settings)
    Path(sys.argv[1]).write_text(json.dumps(result))



if __name__ == "__main__":
    _worker()
