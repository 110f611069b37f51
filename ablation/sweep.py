"""``ablation sweep``: execute the book's notebooks with papermill, resumably.

One executed copy per task and scale (only the scales a task defines) goes into the book folder
(``book/tasks/task04-x2.ipynb``), then the method, results and conclusion pages
(``book/pages/``). Each executed page gets a small JSON stamp beside it (``.<page>.json``,
see :mod:`ablation.stamps`): its parameters, a digest of its source (the notebook and every
package module it runs) and the config hash of every run it shows. A page whose stamp still
matches is reused, not re-executed.

This module plans the pages (:func:`plan`), holds the locks, runs the phases and reports;
:mod:`ablation.execute` executes them. Safety: a page is executed into a temporary file and
renamed into place when done, and its stamp is removed before and written after, so a killed
sweep never leaves a half-written page that a later sweep would take as done. A failing
notebook doesn't stop the others; its page shows the error (papermill's executed notebook, or
a generated page naming the failure).
``<results>/<profile>/.sweep.lock`` (an flock, released if the holder dies) keeps a second
sweep on the same results folder out: it refuses with one line, or waits with ``--wait``.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from ablation import paths, slurm
from ablation.book import ensure_placeholders
from ablation.command import DATA_DIR_HELP, DEVICE_HELP, RESULTS_HELP, int_list, subcommand_main
from ablation.config import LADDER as LADDER_BUDGETS
from ablation.config import PROFILE_NAMES, SCALES
from ablation.errors import AblationError, ConfigError, check_choice
from ablation.execute import TMP_DIR, run_phase
from ablation.fs import exclusive_lock
from ablation.notebooks import (
    CONCLUSION,
    FINDINGS,
    LADDER,
    METHOD,
    RESULTS,
    Page,
    source_notebook,
    task_pages,
)
from ablation.parameters import NotebookParameters
from ablation.planning import planned_runs
from ablation.stamps import is_up_to_date, source_digest
from ablation.tasks import REFERENCE, TASK_RANGE, TASKS, parse_tasks


class SweepLocked(AblationError):
    """Another sweep holds the results folder's lock."""


# --------------------------------------------------------------------------- jobs


@dataclass
class Job:
    """One page to execute: its source, parameters, output and what makes it up to date."""

    page: Page
    params: dict
    output: Path
    expected_runs: list[str] = field(default_factory=list)  # run keys that must be finished
    depends_on_all: bool = False  # it shows every run of the profile on disk
    phase: int = 1  # 1: task pages and method (parallel), 2: results, 3: conclusion
    other_profiles: tuple[str, ...] = ()  # results folders of other profiles it reads
    all_seeds: bool = False  # it shows every seed on disk of its expected runs

    @property
    def stamp(self) -> Path:
        """``.<page>.json`` beside the executed notebook."""
        return self.output.with_name(f".{self.output.stem}.json")


@dataclass
class Settings:
    """Resolved sweep options."""

    tasks: list[int]
    scales: list[int] | None  # None: each task's own scales; else every task at each of these
    profile: str
    seeds: list[int]
    results_dir: Path
    data_dir: str | None
    book_dir: Path
    device: str = "auto"
    iterations: int | None = None
    notebooks: Path | None = None
    pages: bool = True
    jobs: int = 1

    @property
    def results_root(self) -> Path:
        """``<results>/<profile>``."""
        return self.results_dir / self.profile


def plan(s: Settings) -> list[Job]:
    """Every page the sweep owns, in execution order."""
    common = NotebookParameters(profile=s.profile, seeds=tuple(s.seeds), data_dir=s.data_dir,
                                results_dir=str(s.results_dir), device=s.device,
                                iterations=s.iterations)
    jobs = []
    for page in task_pages(s.tasks, s.scales, any_scale=True):
        runs = planned_runs(page.task, [page.scale], s.seeds, (), s.profile)
        jobs.append(Job(page, replace(common, scales=(page.scale,)).values(page.parameters),
                        page.output(s.book_dir), [r.key for r in runs if not r.skip_reason],
                        all_seeds=True))  # it shows the mean over every seed on disk
    if not s.pages:
        return jobs
    jobs.append(Job(METHOD, common.values(METHOD.parameters), METHOD.output(s.book_dir)))
    ref_scales = tuple(REFERENCE.scales if s.scales is None else s.scales)
    if ref_scales:
        refs = planned_runs(REFERENCE.number, ref_scales, s.seeds, (), s.profile)
        jobs.append(Job(RESULTS, replace(common, scales=ref_scales).values(RESULTS.parameters),
                        RESULTS.output(s.book_dir), [r.key for r in refs if not r.skip_reason],
                        True, 2))
    jobs.append(Job(FINDINGS, replace(common, scales=tuple(s.scales or SCALES)
                            ).values(FINDINGS.parameters),
                    FINDINGS.output(s.book_dir), [], True, 2))
    if s.profile == "cpu":  # the ladder page reads committed runs only: it never trains
        jobs.append(Job(LADDER, common.values(LADDER.parameters), LADDER.output(s.book_dir), [],
                        True, 2, tuple(LADDER_BUDGETS)))
    jobs.append(Job(CONCLUSION,
                    replace(common, scales=tuple(s.scales or SCALES)
                            ).values(CONCLUSION.parameters),
                    CONCLUSION.output(s.book_dir), [], True, 3,
                    tuple(LADDER_BUDGETS) if s.profile == "cpu" else ()))
    return jobs


def run_keys(s: Settings) -> list[str]:
    """Every run the plan's pages show (keys, page order, each once): the slurm executor's."""
    return list(dict.fromkeys(k for job in plan(s) for k in job.expected_runs))



def sweep_lock(folder: Path, wait: bool = False):
    """Exclusive flock on ``folder/.sweep.lock``; refuses (one line) or waits."""
    def busy(who: str) -> SweepLocked:
        return SweepLocked(f"{folder}: another sweep is running on this folder{who}; wait "
                           "for it to finish or pass --wait")

    return exclusive_lock(folder / ".sweep.lock", busy, wait=wait,
                          waiting=f"waiting for the sweep{{who}} on {folder} to finish ...")


def clean_tmp(book_dir: Path) -> None:
    """Remove temporary notebooks a killed sweep left behind (we hold the lock)."""
    for folder in book_dir.glob(f"*/{TMP_DIR}"):
        for f in folder.glob("*.ipynb"):
            with contextlib.suppress(FileNotFoundError):
                f.unlink()


def sweep(s: Settings, wait: bool = False) -> list[dict]:
    """Execute every page of the plan that isn't up to date; returns one record per page."""
    from tqdm.auto import tqdm

    jobs = plan(s)
    results: list[dict] = []
    with sweep_lock(s.results_root, wait), sweep_lock(s.book_dir, wait):
        clean_tmp(s.book_dir)
        with tqdm(total=len(jobs), desc="sweep", unit="page", file=sys.stderr,
                  dynamic_ncols=True, mininterval=1.0 if sys.stderr.isatty() else 30.0) as bar:
            for phase in (1, 2, 3):
                run_phase([j for j in jobs if j.phase == phase], s, bar, results)
        ensure_placeholders(s.book_dir)  # pages not swept: `jupyter-book build` still works
    return results


# --------------------------------------------------------------------------- reporting


def summary(results: list[dict], seconds: float, s: Settings,
            damaged: list[str] | None = None) -> str:
    """The end-of-sweep report: counts, then one line per failed page and per damaged run
    (``damaged``: :func:`ablation.results.damaged_runs`, left out of every page)."""
    damaged = damaged or []
    counts = {k: sum(r["status"] == k for r in results) for k in ("ran", "reused", "failed")}
    lines = [f"sweep (profile {s.profile}, results {s.results_root}): {len(results)} pages in "
             f"{seconds:.0f} s: {counts['ran']} ran, {counts['reused']} reused, "
             f"{counts['failed']} failed" + (f", {len(damaged)} damaged run(s) left out"
                                              if damaged else "")]
    for r in results:
        if r["status"] == "failed":
            first = r["error"].splitlines()[0] if r["error"] else "unknown error"
            lines.append(f"  failed: {r['name']}: {first} (see {r['output']})")
    lines += [f"  damaged: {line}" for line in damaged]
    if s.book_dir.name == "book":
        lines.append(f"pages in {s.book_dir}; build the book with "
                     f"`ablation book --book-dir {s.book_dir}`")
    else:  # the table of contents lists book/...: `ablation book` needs that name
        lines.append(f"pages in {s.book_dir}; to build the book, move them to a folder named "
                     f"'book' (e.g. {s.book_dir.parent / 'book'}) and run "
                     "`ablation book --book-dir <that folder>`")
    return "\n".join(lines)


def dry_run(s: Settings) -> str:
    """What a sweep would do, one line per page."""
    lines = []
    jobs = plan(s)
    if not jobs:
        return "nothing to run: no selected task defines the selected scales"
    for job in jobs:
        nb = source_notebook(job.page, s.notebooks)
        state = "up to date" if is_up_to_date(job, s, source_digest(nb)) else "would run"
        extra = f" scales={job.params['scales']}" if "scales" in job.params else ""
        lines.append(f"{state:10s}  {job.page.name:14s}  {job.page.notebook} -> "
                     f"{job.output}{extra}")
    from ablation.results import damaged_runs

    lines += [f"damaged     {line}" for line in damaged_runs(s.profile, s.results_dir)]
    return "\n".join(lines)


# --------------------------------------------------------------------------- command line


def add_parser(subparsers) -> argparse.ArgumentParser:
    """``ablation sweep``: register the subcommand (``func=run``)."""
    p = subparsers.add_parser(
        "sweep", help="execute the book's notebooks (every task and scale), resumably",
        description="Runs each task notebook with papermill once per scale into the book "
                    "folder, then the method, results and conclusion pages; finished pages and "
                    "runs are reused.")
    p.add_argument("--tasks", default=TASK_RANGE,
                   help=f"e.g. {TASK_RANGE} or 1,3,5 (default {TASK_RANGE})")
    p.add_argument("--scales", type=int_list, default=None,
                   help="comma-separated, e.g. 3 or 2,3,4: every selected task runs at each "
                        "(default: the scales each task defines)")
    p.add_argument("--profile", default="cpu",
                   help=f"{' | '.join(PROFILE_NAMES)} (default cpu)")
    p.add_argument("--seeds", type=int_list, default=[0], help="comma-separated (default 0)")
    p.add_argument("--jobs", type=int, default=1,
                   help="notebooks in parallel (one GPU each when there are several; "
                        "default 1)")
    p.add_argument("--dry-run", action="store_true", help="list what would run, run nothing")
    p.add_argument("--results", default=None, help=RESULTS_HELP)
    p.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    p.add_argument("--book-dir", default="book", help="where executed pages go (default book)")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--iterations", type=int, default=None,
                   help="override the profile's iterations (default: the profile's)")
    p.add_argument("--notebooks", default=None,
                   help="folder of source notebooks (default: the repo's notebooks/)")
    p.add_argument("--no-pages", action="store_true",
                   help="task pages only: skip the method, results and conclusion pages")
    p.add_argument("--wait", action="store_true",
                   help="wait for another sweep on the same folder instead of refusing")
    p.add_argument("--build", action="store_true", help="build the book afterwards")
    slurm.add_arguments(p)  # --executor, --status, --no-wait, --slurm-*
    p.set_defaults(func=run)
    return p


def settings_from_args(args) -> Settings:
    """Validate the command line into :class:`Settings`."""
    from ablation.device import resolve_device

    tasks = parse_tasks(args.tasks)
    for n in tasks:
        check_choice("task", n, list(TASKS))
    if args.scales is not None and not args.scales:
        raise ConfigError("--scales: empty; give e.g. 2,3,4")
    for sc in args.scales or ():
        check_choice("scale", sc, SCALES)
    check_choice("profile", args.profile, PROFILE_NAMES)
    if args.jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {args.jobs}")
    if args.iterations is not None and args.iterations < 1:
        raise ConfigError(f"--iterations must be >= 1, got {args.iterations}")
    if any(seed < 0 for seed in args.seeds):
        raise ConfigError(f"--seeds must be >= 0, got {args.seeds}")
    resolve_device(args.device)  # unknown or absent here: refused before any page runs
    for option, value in (("--book-dir", args.book_dir), ("--results", args.results)):
        if value is not None and Path(value).exists() and not Path(value).is_dir():
            raise ConfigError(f"{option} {value}: is a file, not a folder; give a folder")
    if args.build and Path(args.book_dir).name != "book":
        raise ConfigError(f"--book-dir {args.book_dir}: `--build` needs a folder named 'book' "
                          "(the table of contents lists book/...); e.g. --book-dir "
                          f"{Path(args.book_dir) / 'book'}")
    data_dir = str(Path(args.data_dir).resolve()) if args.data_dir else None
    return Settings(tasks=tasks, scales=list(args.scales) if args.scales else None,
                    profile=args.profile,
                    seeds=list(args.seeds) or [0],
                    results_dir=paths.results_dir(args.results).resolve(), data_dir=data_dir,
                    book_dir=Path(args.book_dir).resolve(), device=args.device,
                    iterations=args.iterations,
                    notebooks=Path(args.notebooks).resolve() if args.notebooks else None,
                    pages=not args.no_pages, jobs=args.jobs)


def run(args) -> int:
    """``ablation sweep``: dry run, or sweep (and build); 1 if a page failed or a run is
    damaged."""
    s = settings_from_args(args)
    # --status; --executor slurm: the runs as SLURM jobs first, then the pages below
    code = slurm.run(args, s, run_keys(s), sweep_lock(s.results_root, args.wait))
    if code is not None:
        return code
    if args.dry_run:
        print(dry_run(s))
        return 0
    from ablation.results import damaged_runs

    t0 = time.perf_counter()
    results = sweep(s, wait=args.wait)
    damaged = damaged_runs(s.profile, s.results_dir)
    print(summary(results, time.perf_counter() - t0, s, damaged))
    failed = any(r["status"] == "failed" for r in results) or bool(damaged)
    if args.build:
        from ablation.book import build

        html_dir = build(s.book_dir)
        print(f"book: {html_dir / 'index.html'}")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    """``ablation sweep`` on its own (for tests)."""
    return subcommand_main("sweep", add_parser, argv)

