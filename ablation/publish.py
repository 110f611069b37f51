"""``ablation book --publish``: build the book from the committed results and push it to the
``gh-pages`` branch.

It executes every page of the ``cpu`` profile from the committed runs (``ABLATION_REUSE_ONLY``:
nothing is trained), builds the book, and pushes it. Publishing is refused, in one line and
before anything is pushed, when

- the checkout has uncommitted changes or untracked files (the site must be rebuildable from
  a commit: its message names the commit it was built from);
- a page of the book is of the ``smoke`` profile (its numbers are not findings), failed in the
  sweep, shows a run that did not finish, or was never executed (a "not computed" page);
- the built HTML lacks ``index.html`` or a page of the table of contents.

Then ``ghp-import`` commits the HTML folder to ``gh-pages`` with a ``.nojekyll`` file (GitHub
Pages would otherwise hide Sphinx's ``_static`` folders) and pushes it to the remote (default
``origin``; any git remote name or URL, e.g. ``file:///tmp/pages.git``).

``ablation book --check`` runs the page and HTML checks without git: the Pages workflow uses it
before uploading the site.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

from ablation import book
from ablation.book import build
from ablation.command import subcommand_main
from ablation.errors import AblationError, ConfigError
from ablation.notebooks import Page, pages
from ablation.paths import repo_root

PAGES_BRANCH = "gh-pages"
PROFILE = "cpu"  # the profile whose results are committed, and published
SHOW = 4  # page names listed in a refusal before "+N more"


class PublishRefused(AblationError):
    """The book is not fit to publish (the message says why and what to do)."""


def _names(items: list[str]) -> str:
    more = f", +{len(items) - SHOW} more" if len(items) > SHOW else ""
    return ", ".join(items[:SHOW]) + more


# --------------------------------------------------------------------------- git


def _git(repo: Path, *args: str) -> str:
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    if proc.returncode != 0:
        first = (proc.stderr.strip().splitlines() or ["git failed"])[0]
        raise ConfigError(f"{repo}: git {' '.join(args)}: {first}")
    return proc.stdout


def sweep_outputs(repo: Path) -> list[str]:
    """Tracked folders (repo-relative) that executing the pages rewrites: the figure files of
    the published profile. The pages embed the figures they draw, so these files are outputs
    of the build, not inputs; redrawing them (new SVG ids) does not make the tree dirty."""
    from ablation.report import figures_dir

    return [figures_dir(PROFILE, repo / "results").relative_to(repo).as_posix() + "/"]


def clean_commit(repo: str | Path | None = None) -> str:
    """The HEAD commit of a clean checkout; refuses a dirty one (changes or untracked files,
    apart from :func:`sweep_outputs`)."""
    repo = Path(repo or repo_root())
    outputs = tuple(sweep_outputs(repo))
    dirty = [path for line in _git(repo, "status", "--porcelain").splitlines()
             if line and not (path := line[3:]).startswith(outputs)]
    if dirty:
        raise PublishRefused(f"{repo}: not publishing from a dirty tree ({len(dirty)} changed "
                             f"or untracked: {_names(dirty)}); commit or stash them, then "
                             "rebuild")
    return _git(repo, "rev-parse", "HEAD").strip()


# --------------------------------------------------------------------------- the pages


def page_problem(page: Page, book_dir: Path) -> tuple[str, str] | None:
    """(kind, detail) of what keeps ``page`` off the web, or None when it is publishable.
    Kinds: 'smoke', 'failed', 'not computed'."""
    import nbformat

    from ablation.stamps import read_stamp
    from ablation.sweep import Job

    path = page.output(book_dir)
    if not path.exists():
        return "not computed", "no executed page"
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as exc:  # a truncated or hand-broken file
        return "failed", f"unreadable: {exc.__class__.__name__}"
    meta = nb.metadata.get("sr_ablation", {})
    if meta.get("sweep_error"):
        return "failed", str(meta["sweep_error"]).splitlines()[0]
    if meta.get("placeholder"):
        return "not computed", "placeholder"
    profile = nb.metadata.get("papermill", {}).get("parameters", {}).get("profile")
    if profile is None:
        return "not computed", "not executed by the sweep"
    if profile == "smoke":
        return "smoke", "smoke profile"
    stamp = read_stamp(Job(page, {}, path)) or {}
    if stamp.get("status") not in (None, "ok"):
        return "failed", str(stamp.get("error") or stamp["status"])
    unfinished = sorted(k for k, v in (stamp.get("runs") or {}).items() if v is None)
    if unfinished:
        return "failed", f"runs not finished: {_names(unfinished)}"
    return None


def check_pages(book_dir: str | Path) -> None:
    """Refuse (one line) a book with smoke-profile, failed or never-computed pages."""
    book_dir = Path(book_dir)
    found: dict[str, list[str]] = {}
    for page in pages():
        problem = page_problem(page, book_dir)
        if problem:
            found.setdefault(problem[0], []).append(page.name)
    if not found:
        return
    parts = []
    if "smoke" in found:
        parts.append(f"{len(found['smoke'])} smoke-profile page(s) ({_names(found['smoke'])})")
    if "failed" in found:
        parts.append(f"{len(found['failed'])} failed page(s) ({_names(found['failed'])})")
    if "not computed" in found:
        parts.append(f"{len(found['not computed'])} page(s) never computed "
                     f"({_names(found['not computed'])})")
    raise PublishRefused(f"{book_dir}: not publishing a book with {'; '.join(parts)}; sweep "
                         "the cpu profile (`ablation sweep --profile cpu`, `ablation sweep "
                         "--dry-run` lists the pages) and rebuild")


def check_html(html_dir: str | Path) -> None:
    """Refuse an HTML folder without ``index.html`` or without a page of the book."""
    html_dir = Path(html_dir)
    missing = [p.docname for p in pages() if not (html_dir / f"{p.docname}.html").exists()]
    if not (html_dir / "index.html").exists():
        missing.insert(0, "index")
    if missing:
        raise PublishRefused(f"{html_dir}: not publishing: {len(missing)} page(s) missing "
                             f"({_names(missing)}); rebuild with `ablation book`")


# --------------------------------------------------------------------------- pushing


def ghp_import_command() -> list[str]:
    """The ghp-import executable beside this Python, else on PATH."""
    exe = Path(sys.executable).with_name("ghp-import")
    found = str(exe) if exe.exists() else shutil.which("ghp-import")
    if not found:
        raise ConfigError("ghp-import not found; install the book extra: "
                          "pip install -e '.[book]'")
    return [found]


def push(html_dir: str | Path, remote: str = "origin", repo: str | Path | None = None,
         message: str = "Publish the book", branch: str = PAGES_BRANCH) -> None:
    """Commit ``html_dir`` (plus ``.nojekyll``) to ``branch`` of ``repo`` and push it to
    ``remote``, replacing what was published."""
    repo = Path(repo or repo_root())
    cmd = [*ghp_import_command(), "--no-jekyll", "--push", "--force", "--remote", remote,
           "--branch", branch, "--message", message, str(Path(html_dir).resolve())]
    proc = subprocess.run(cmd, cwd=repo, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = (proc.stderr + proc.stdout).strip().splitlines() or ["no output"]
        raise AblationError(f"ghp-import to {remote} failed (exit {proc.returncode}): "
                            f"{lines[-1]}")


def sweep_committed(book_dir: str | Path) -> None:
    """Execute every page from the committed results of :data:`PROFILE`, training nothing
    (a run without a finished match fails its page instead, and :func:`check_pages`
    refuses it)."""
    from ablation import paths
    from ablation.execute import environ
    from ablation.runs import REUSE_ONLY_ENV
    from ablation.sweep import Settings, summary, sweep
    from ablation.tasks import TASKS

    s = Settings(tasks=list(TASKS), scales=None, profile=PROFILE, seeds=[0],
                 results_dir=paths.results_dir().resolve(), data_dir=None,
                 book_dir=Path(book_dir).resolve())
    t0 = time.perf_counter()
    with environ({REUSE_ONLY_ENV: "1"}):
        results = sweep(s)
    print(summary(results, time.perf_counter() - t0, s))


def publish(book_dir: str | Path = "book", output: str | Path | None = None,
            remote: str = "origin", repo: str | Path | None = None,
            sweep: bool = True) -> Path:
    """Check the checkout, execute the pages from the committed results (``sweep``), check
    them, build the book, check its HTML and push it; returns the published HTML folder."""
    commit = clean_commit(repo)
    if sweep:
        sweep_committed(book_dir)
    check_pages(book_dir)
    html_dir = build(book_dir, output)
    check_html(html_dir)
    push(html_dir, remote, repo, f"Publish the book built from {commit[:12]}")
    return html_dir


def add_parser(subparsers) -> argparse.ArgumentParser:
    """``ablation book``: :func:`ablation.book.add_parser` plus ``--check``, ``--publish`` and
    ``--remote`` (registered here so that the book module never imports this one)."""
    p = book.add_parser(subparsers)
    p.add_argument("--check", action="store_true",
                   help="refuse (exit 2) a book with smoke-profile, failed or missing pages")
    p.add_argument("--publish", action="store_true",
                   help="execute the pages from the committed cpu results (training nothing), "
                        "build, check, and push the HTML to gh-pages (ablation.publish)")
    p.add_argument("--remote", default="origin",
                   help="git remote name or URL that --publish pushes to (default origin)")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    """``ablation book``: ``--check`` / ``--publish`` here, anything else is
    :func:`ablation.book.run`."""
    if args.action == "generate" or not (args.check or args.publish):
        return book.run(args)
    if args.publish:
        html_dir = publish(args.book_dir, args.output, args.remote)
        print(f"published {html_dir} to {args.remote} ({PAGES_BRANCH})")
        return 0
    check_pages(args.book_dir)
    html_dir = build(args.book_dir, args.output, strict=not args.no_strict)
    check_html(html_dir)
    print(f"book: {html_dir / 'index.html'} (publishable)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``ablation book`` with ``--check`` and ``--publish`` on its own (for tests)."""
    return subcommand_main("book", add_parser, argv)
