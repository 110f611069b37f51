"""The Jupyter Book: its notebooks and table of contents are generated from the task table.

- :func:`write_notebooks` writes ``notebooks/task01.ipynb`` ... ``task11.ipynb`` plus the
  ``method``, ``results`` and ``conclusion`` pages, clean (no outputs, fixed cell ids), so a
  regenerated notebook is byte-identical unless :data:`ablation.tasks.TASKS` changed;
- :func:`toc_yaml` is the book's ``_toc.yml`` (tests check the committed one matches);
- :func:`write_readme` regenerates the README's findings block from the committed runs;
- :func:`pages` lists every executed page the book needs (one per task and scale, plus the
  three study pages); ``ablation sweep`` executes them into ``book/tasks`` and ``book/pages``;
- :func:`build` fills pages a sweep hasn't made yet with a "not run yet" page, then runs
  ``jupyter-book build`` with warnings as errors (offline).

``ablation book`` builds the book; ``ablation book generate`` rewrites notebooks and TOC.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ablation.booktext import (
    CONCLUSION_INTRO,
    FINDINGS_INTRO,
    LADDER_INTRO,
    METHOD_AFTER,
    METHOD_INTRO,
    RESTYLE_RECIPE,
    RESULTS_INTRO,
)
from ablation.command import subcommand_main
from ablation.errors import AblationError, ConfigError
from ablation.parameters import (
    HOW_TO_RUN,
    PARAMETER_NAMES,
    PROFILE_CHOICES,
    NotebookParameters,
)

if TYPE_CHECKING:
    from ablation.tasks import Task

STATIC_PAGES = ("intro", "background", "differences")  # book/<name>.md, hand-written prose
BOOK_FILES = ("_config.yml", "_toc.yml")
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
CALL_WIDTH = 95  # generated calls wrap at this width (one argument per parameter)


def repo_root() -> Path:
    """The checkout this package runs from (it holds notebooks/, book/, _config.yml)."""
    return Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- pages


@dataclass(frozen=True)
class Page:
    """One executed page of the book."""

    name: str  # job name: "task01-x2", "results", ...
    notebook: str  # source notebook in notebooks/
    rel: str  # path inside the book dir, without suffix: "tasks/task01-x2"
    title: str
    task: int | None = None
    scale: int | None = None
    parameters: tuple[str, ...] = PARAMETER_NAMES  # the notebook's parameters (papermill -p)

    @property
    def docname(self) -> str:
        """The page's name in the TOC: 'book/tasks/task04-x2'."""
        return f"book/{self.rel}"

    def output(self, book_dir: str | os.PathLike) -> Path:
        """Where the executed notebook goes in ``book_dir``."""
        return Path(book_dir) / f"{self.rel}.ipynb"


def task_title(task: Task, scale: int | None = None) -> str:
    """'Task 1 (x3): ...' (the scale for tasks with several, or a scale the task doesn't
    define by default)."""
    shown = scale is not None and (len(task.scales) > 1 or scale not in task.scales)
    at = f" (x{scale})" if shown else ""
    return f"Task {task.number}{at}: {task.title}"


def task_pages(tasks: list[int] | None = None, scales: list[int] | None = None,
               any_scale: bool = False) -> list[Page]:
    """One page per task and scale the task defines (optionally only some tasks/scales).

    ``any_scale``: every scale in ``scales`` for every task, defined or not (``ablation sweep
    --scales 3`` runs the whole study at x3); ``scales=None`` is each task's own scales.
    """
    from ablation.tasks import TASKS

    out = []
    for t in TASKS.values():
        if tasks is not None and t.number not in tasks:
            continue
        wanted = t.scales if scales is None else (
            scales if any_scale else [s for s in t.scales if s in scales])
        for s in wanted:
            out.append(Page(t.page(s), f"{t.key}.ipynb", f"tasks/{t.page(s)}",
                            task_title(t, s), t.number, s))
    return out


METHOD = Page("method", "method.ipynb", "pages/method", "Method", parameters=("profile",))
RESULTS = Page("results", "results.ipynb", "pages/results", "Results",
               parameters=tuple(n for n in PARAMETER_NAMES if n != "variants"))
CONCLUSION = Page("conclusion", "conclusion.ipynb", "pages/conclusion", "Conclusion",
                  parameters=("profile", "scales", "results_dir"))
FINDINGS = Page("findings", "findings.ipynb", "pages/findings", "Findings at a glance",
                parameters=("profile", "scales", "results_dir"))
LADDER = Page("ladder", "ladder.ipynb", "pages/ladder", "Does the answer hold with more compute?",
              parameters=("results_dir",))
STUDY_PAGES = (METHOD, RESULTS, FINDINGS, LADDER, CONCLUSION)


def pages() -> list[Page]:
    """Every executed page of the book, in TOC order."""
    return [*task_pages(), *STUDY_PAGES]


# --------------------------------------------------------------------------- notebooks


def _cell(kind: str, source: str, cell_id: str, tags: tuple[str, ...] = ()) -> Any:
    """A notebook cell with a fixed id (so regenerated notebooks are identical)."""
    import nbformat

    make = nbformat.v4.new_code_cell if kind == "code" else nbformat.v4.new_markdown_cell
    cell = make(source.strip("\n"), id=cell_id)
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def _notebook(name: str, cells: list[tuple]) -> dict:
    """A clean notebook from (kind, source, *tags) tuples."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": dict(KERNELSPEC),
                   "language_info": {"name": "python"},
                   "sr_ablation": {"generated_by": "ablation.book.write_notebooks"}}
    nb.cells = [_cell(kind, src, f"{name}-{i:02d}", tuple(tags))
                for i, (kind, src, *tags) in enumerate(cells)]
    return nb


def _call(head: str, names: tuple[str, ...], positional: tuple[str, ...] = ()) -> str:
    """``head(a, b=b, c=c, ...)`` wrapped at CALL_WIDTH under the opening parenthesis."""
    args = [*positional, *(f"{n}={n}" for n in names if n not in positional)]
    return textwrap.fill(", ".join(args) + ")", CALL_WIDTH, initial_indent=head,
                         subsequent_indent=" " * len(head.partition("(")[0] + "("),
                         break_on_hyphens=False)


CHECK_CELL = ("from ablation.book import check_parameters\n\n"
              "check_parameters(globals())  # papermill's -p values checked and made lists")
PAPERMILL_HEADER = "# Parameters"  # the first line of the cell papermill injects


def injected_names(namespace: dict) -> list[str]:
    """The names papermill's injected cell assigned, if that cell ran just before this one.

    Papermill inserts a cell starting ``# Parameters`` right after the ``parameters`` cell; in
    the kernel it is the input before the check cell's. Anything else (a JupyterLab "Run All",
    a second one in the same kernel) injected nothing, so nothing is checked.
    """
    import ast

    shell = namespace.get("get_ipython")
    history = shell().history_manager.input_hist_raw if callable(shell) else []
    previous = history[-2] if len(history) >= 2 else ""
    if not previous.lstrip().startswith(PAPERMILL_HEADER):
        return []
    try:
        body = ast.parse(previous).body
    except SyntaxError:
        return []
    return [t.id for node in body if isinstance(node, ast.Assign)
            for t in node.targets if isinstance(t, ast.Name)]


def check_parameters(namespace: dict, known: set[str] | None = None,
                     injected: list[str] | None = None) -> None:
    """Check what papermill injected and make every list parameter a list, in ``namespace``.

    Runs right after papermill's injected cell. A name it injected that the parameters cell
    does not define is a typo (``-p iteratons 5``; papermill only logs a warning); variables a
    user adds in JupyterLab, and a second "Run All" in the same kernel, are not checked.
    ``known`` defaults to the names in ``namespace["__parameters__"]`` or, without it, every
    notebook parameter; ``injected`` to :func:`injected_names`. List parameters accept
    ``-p scales 3``, ``-p scales 2,3``, ``-p scales "[3]"`` and the YAML form
    (:func:`ablation.parameters.coerce`); a scale the nets don't support fails here, before
    anything is trained or written.
    """
    from ablation.config import SCALES
    from ablation.errors import check_choice
    from ablation.parameters import LIST_PARAMETERS, coerce

    if known is None:
        known = set(namespace.get("__parameters__", ())) or set(PARAMETER_NAMES)
    injected = injected_names(namespace) if injected is None else injected
    unknown = sorted(set(injected) - set(known))
    if unknown:
        raise ConfigError(f"unknown notebook parameter(s) {unknown}; valid: {sorted(known)}")
    for name in LIST_PARAMETERS:
        if name in namespace and name in known:
            namespace[name] = coerce(name, namespace[name])
    for scale in namespace.get("scales", ()) if "scales" in known else ():
        check_choice("scale", scale, SCALES)


def _task_intro(t: Task) -> str:
    """The task notebook's title cell: question, variants, comparison."""
    from ablation.tasks import TASKS

    if t.compare_to:
        against = ", ".join(f"*{TASKS[bt].variant(bv).label}* (task {bt})"
                            for bt, bv in t.compare_to)
    else:
        against = "the bicubic baseline"
    variants = "\n".join(
        f"- `{v.name}`: {v.label}" + (f" ({v.note})" if v.note else "")
        + ("" if v.cpu or v.note else " (paper profile only)") for v in t.variants)
    from ablation.config import SCALES
    from ablation.parameters import LIST_FORMS

    scales = ", ".join(f"x{s}" for s in t.scales)
    every = "/".join(f"x{s}" for s in SCALES)
    return f"""
# {task_title(t)}

**Question.** {t.question}

Variants of this task (each differs from what it is compared with in this one factor):

{variants}

Compared with {against}; the bicubic reference is shown in every table. The study runs it at
{scales}; any of {every} is a supported run (`-p scales 3`: what is missing is trained, with
a time estimate and a progress bar; the *Runs* section names the scales the page shows).
The numbers below are read from the results folder of the profile named in the parameters
cell; the sweep (`ablation sweep --tasks {t.number}`) runs this notebook once per scale.

List parameters take every papermill form: {LIST_FORMS}.
"""


def task_notebook(t: Task) -> dict:
    """The notebook of one task: question, parameters, one call per section."""
    run = _call(f"runs = report.run_task({t.number}, ", PARAMETER_NAMES)
    return _notebook(t.key, [
        ("markdown", _task_intro(t)),
        ("code", NotebookParameters(scales=t.scales).cell(), "parameters"),
        ("code", CHECK_CELL, "remove-cell"),
        ("markdown", "## Runs\n\nEvery run this page needs, trained now or reused from the "
                     "results folder (same configuration hash)."),
        ("code", f"from ablation import report\n\n{run}\nruns", "hide-input"),
        ("markdown", "## Results"),
        ("code", "report.results_table(runs)", "hide-input", "full-width"),
        ("markdown", "## Effects\n\nEach variant against the run it is compared with: the effect "
                     "in dB with its 95% interval over seeds and images, per set and for the "
                     "mean of the sets (method page, *Statistics*)."),
        ("code", "report.effects(runs)", "hide-input"),
        ("code", "report.forest_plot(runs)", "hide-input"),
        ("markdown", "## Training curves"),
        ("code", "report.training_curves(runs)", "hide-input"),
        ("markdown", "## Visual comparison"),
        ("code", "report.visual_comparison(runs)", "hide-input"),
        ("markdown", "## Conclusion"),
        ("code", "report.conclusion(runs)", "hide-input"),
        ("markdown", "## Rerun this page"),
        ("code", "from ablation.rerun import rerun_section\n\n"
                 + _call("rerun_section(runs, ", HOW_TO_RUN), "hide-input"),
    ])







def study_notebook(page: Page) -> dict:
    """The method, results, findings, ladder or conclusion notebook."""
    from ablation.config import SCALES
    from ablation.tasks import REFERENCE

    if page == METHOD:
        return _notebook("method", [
            ("markdown", METHOD_INTRO),
            ("code", NotebookParameters().cell(page.parameters, docs={
                "profile": "the profile whose numbers this book shows"}), "parameters"),
            ("code", "from ablation import report\n\nreport.method_profiles(profile)",
             "hide-input"),
            ("markdown", METHOD_AFTER),
        ])
    if page == RESULTS:
        return _notebook("results", [
            ("markdown", RESULTS_INTRO),
            ("code", NotebookParameters(scales=REFERENCE.scales).cell(page.parameters),
             "parameters"),
            ("markdown", "## Reference runs"),
            ("code", "from ablation import report\n\n"
                     + _call("refs = report.run_references(", page.parameters, ("profile",))
                     + "\nrefs", "hide-input"),
            ("markdown", "## Every run of the study"),
            ("code", "report.study_results(profile, results_dir, scales)", "hide-input",
             "full-width"),
            ("markdown", "## Download the numbers"),
            ("code", "report.download_links(profile, results_dir)", "hide-input"),
            ("markdown", "## Compute\n\nWall time of every run on the machine that ran it."),
            ("code", "report.compute_table(profile, results_dir)", "hide-input"),
            ("markdown", "## Cost against quality"),
            ("code", "report.cost_figure(profile, results_dir, scale=scales[0])", "hide-input"),
            ("markdown", RESTYLE_RECIPE),
        ])
    if page == FINDINGS:
        return _notebook("findings", [
            ("markdown", FINDINGS_INTRO),
            ("code", NotebookParameters(scales=SCALES).cell(page.parameters, docs={
                "profile": PROFILE_CHOICES, "scales": "scales to show"}), "parameters"),
            ("code", "from ablation import report\n\n"
                     "report.findings_plot(profile, results_dir, scales)", "hide-input"),
            ("code", "report.findings(profile, results_dir, scales)", "hide-input"),
        ])
    if page == LADDER:
        return _notebook("ladder", [
            ("markdown", LADDER_INTRO),
            ("code", NotebookParameters().cell(page.parameters), "parameters"),
            ("markdown", "## PSNR against the pixels seen in training"),
            ("code", "from ablation import report\n\nreport.ladder_curves(results_dir)",
             "hide-input"),
            ("markdown", "## Effect of each factor per budget"),
            ("code", "report.ladder_tables(results_dir)", "hide-input"),
            ("markdown", "## What the ladder implies"),
            ("code", "report.ladder_conclusion(results_dir)", "hide-input"),
        ])
    return _notebook("conclusion", [
        ("markdown", CONCLUSION_INTRO),
        ("code", NotebookParameters(scales=SCALES).cell(page.parameters, docs={
            "profile": PROFILE_CHOICES, "scales": "scales to conclude on"}), "parameters"),
        ("code", "from ablation import report\n\n"
                 "report.study_conclusion(profile, results_dir, scales)", "hide-input"),
    ])


def notebooks() -> dict[str, dict]:
    """File name -> notebook, for every source notebook of the book."""
    from ablation.tasks import TASKS

    out = {f"{t.key}.ipynb": task_notebook(t) for t in TASKS.values()}
    out.update({p.notebook: study_notebook(p) for p in STUDY_PAGES})
    return out


def notebook_text(nb: dict) -> str:
    """The notebook as stored on disk."""
    import nbformat

    return nbformat.writes(nb) + "\n"


def write_notebooks(folder: str | os.PathLike | None = None) -> list[Path]:
    """Write every source notebook (clean) into ``folder`` (default: the repo's notebooks/);
    returns the files that changed."""
    from ablation.fs import atomic_write_text

    folder = Path(folder) if folder is not None else repo_root() / "notebooks"
    changed = []
    for name, nb in notebooks().items():
        path = folder / name
        text = notebook_text(nb)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            atomic_write_text(path, text)
            changed.append(path)
    return changed


def notebooks_dir() -> Path:
    """The repo's notebooks/ folder."""
    return repo_root() / "notebooks"


def source_notebook(page: Page, folder: str | os.PathLike | None = None) -> Any:
    """The page's source notebook: the file in ``folder`` (default notebooks/) if it exists,
    else generated from the task table."""
    import nbformat

    path = Path(folder or notebooks_dir()) / page.notebook
    if path.exists():
        return nbformat.read(path, as_version=4)
    if folder is not None:
        raise ConfigError(f"{path}: notebook not found; run `ablation book generate` or give "
                          "the folder that holds it")
    return nbformat.from_dict(notebooks()[page.notebook])


# --------------------------------------------------------------------------- table of contents


def _q(text: str) -> str:
    """Single-quoted YAML string."""
    return "'" + text.replace("'", "''") + "'"


def extra_task_pages(book_dir: str | os.PathLike) -> list[Page]:
    """Executed task pages in ``book_dir`` that the committed TOC does not list: the pages of
    ``ablation sweep --scales 3`` for tasks that define only x2. :func:`build` adds them."""
    from ablation.config import SCALES

    listed = {p.rel for p in task_pages()}
    return [p for p in task_pages(scales=list(SCALES), any_scale=True)
            if p.rel not in listed and p.output(book_dir).exists()]


def toc_yaml(extra: list[Page] | tuple[Page, ...] = ()) -> str:
    """The book's ``_toc.yml``: intro, background and method, one page per task and scale,
    then the findings at a glance, results, the compute ladder, differences and conclusion.
    ``extra`` task pages go after their task's own pages."""
    from ablation.config import SCALES

    lines = [
        "# Generated by `ablation book generate` from ablation.tasks.TASKS: do not edit by hand.",
        "format: jb-book",
        "root: book/intro",
        "parts:",
        "  - caption: The study",
        "    chapters:",
        "      - file: book/background",
        f"      - file: {METHOD.docname}",
        "  - caption: Tasks",
        "    chapters:",
    ]
    order = {p.rel: i for i, p in enumerate(task_pages(scales=list(SCALES), any_scale=True))}
    for p in sorted([*task_pages(), *extra], key=lambda p: order[p.rel]):
        lines += [f"      - file: {p.docname}", f"        title: {_q(p.title)}"]
    lines += [
        "  - caption: Findings",
        "    chapters:",
        f"      - file: {FINDINGS.docname}",
        f"      - file: {RESULTS.docname}",
        f"      - file: {LADDER.docname}",
        "      - file: book/differences",
        f"      - file: {CONCLUSION.docname}",
    ]
    return "\n".join(lines) + "\n"


def write_toc(path: str | os.PathLike | None = None) -> bool:
    """Write ``_toc.yml`` (default: the repo root); True if it changed."""
    from ablation.fs import atomic_write_text

    path = Path(path) if path is not None else repo_root() / "_toc.yml"
    text = toc_yaml()
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    atomic_write_text(path, text)
    return True


def write_readme(path: str | os.PathLike | None = None, results_dir=None) -> bool:
    """Regenerate the README's findings block from the committed runs (``results/`` of the
    checkout); True if it changed."""
    from ablation.fs import atomic_write_text
    from ablation.report import update_readme

    path = Path(path) if path is not None else repo_root() / "README.md"
    old = path.read_text(encoding="utf-8")
    new = update_readme(old, results_dir if results_dir is not None else repo_root() / "results")
    if new == old:
        return False
    atomic_write_text(path, new)
    return True


# --------------------------------------------------------------------------- building


def placeholder_notebook(page: Page, reason: str | None = None) -> dict:
    """A page for a notebook the sweep hasn't executed (or couldn't)."""
    from ablation.tasks import TASK_RANGE

    if page.task is not None:
        cmd = f"ablation sweep --tasks {page.task} --scales {page.scale} --profile cpu"
    else:
        cmd = f"ablation sweep --tasks {TASK_RANGE} --profile cpu"
    text = reason or "This page has not been computed yet."
    nb = _notebook(f"placeholder-{page.name}", [
        ("markdown", f"# {page.title}\n\n```{{note}}\n{text} Run `{cmd}`, then rebuild the "
                     "book with `ablation book`.\n```"),
    ])
    nb["metadata"]["sr_ablation"] = {"placeholder": True}
    return nb


def ensure_placeholders(book_dir: str | os.PathLike) -> list[Path]:
    """Write a placeholder for every page of the TOC that has no executed notebook."""
    from ablation.fs import atomic_write_text

    written = []
    for page in pages():
        out = page.output(book_dir)
        if not out.exists():
            atomic_write_text(out, notebook_text(placeholder_notebook(page)))
            written.append(out)
    return written


def stage(root: Path) -> None:
    """Copy the book's config, TOC and hand-written pages into ``root`` (if it isn't the repo)."""
    src = repo_root()
    if root.resolve() == src.resolve():
        return
    missing = [f for f in BOOK_FILES if not (src / f).exists()]
    if missing:
        raise ConfigError(f"{src / missing[0]}: book sources not found; build from a checkout "
                          "of the project")
    root.mkdir(parents=True, exist_ok=True)
    for name in BOOK_FILES:
        shutil.copy2(src / name, root / name)
    (root / "book").mkdir(exist_ok=True)
    for name in STATIC_PAGES:
        shutil.copy2(src / "book" / f"{name}.md", root / "book" / f"{name}.md")


def jupyter_book_command() -> list[str]:
    """The jupyter-book executable beside this Python, else on PATH."""
    exe = Path(sys.executable).with_name("jupyter-book")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("jupyter-book")
    if not found:
        raise ConfigError("jupyter-book not found; install the book extra: "
                          "pip install -e '.[book]'")
    return [found]


def build(book_dir: str | os.PathLike = "book", output: str | os.PathLike | None = None,
          strict: bool = True, quiet: bool = True) -> Path:
    """Build the HTML book from ``book_dir`` (whose parent is the book root); returns the
    folder holding ``index.html``: ``<output>/_build/html``, by default ``<root>/_build/html``
    (for the repository's ``book/``, ``./_build/html``: where ``make book`` puts it too).
    Raises AblationError with the build's last lines on failure.
    """
    book_dir = Path(book_dir).resolve()
    if book_dir.name != "book":
        raise ConfigError(f"{book_dir}: the book folder must be named 'book' (the table of "
                          "contents lists book/...); pass e.g. --book-dir /tmp/site/book")
    root = book_dir.parent
    stage(root)
    ensure_placeholders(book_dir)
    out = Path(output).resolve() if output else root
    cmd = [*jupyter_book_command(), "build", str(root), "--path-output", str(out),
           "--builder", "html"]
    extra = extra_task_pages(book_dir)
    if extra:  # a TOC with them, beside the build (the committed _toc.yml stays as it is)
        from ablation.fs import atomic_write_text

        toc = out / "_build" / "_toc.yml"
        toc.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(toc, toc_yaml(extra))
        cmd += ["--toc", str(toc)]
        print(f"book: {len(extra)} page(s) beyond the task table's scales added to the "
              f"contents: {', '.join(p.name for p in extra)}", file=sys.stderr)
    if strict:
        cmd += ["-W", "--keep-going"]
    proc = subprocess.run(cmd, capture_output=quiet, text=True)
    if proc.returncode != 0:
        tail = "\n".join(((proc.stdout or "") + (proc.stderr or "")).splitlines()[-25:])
        raise AblationError(f"jupyter-book build failed (exit {proc.returncode}); last lines:"
                            f"\n{tail}")
    return out / "_build" / "html"


# --------------------------------------------------------------------------- command line


def add_parser(subparsers) -> argparse.ArgumentParser:
    """``ablation book [build|generate]``."""
    p = subparsers.add_parser(
        "book", help="build the Jupyter Book (or regenerate its notebooks and TOC)",
        description="build: fill pages not yet swept with placeholders and run jupyter-book "
                    "(offline, warnings are errors). generate: rewrite notebooks/*.ipynb and "
                    "_toc.yml from the task table.")
    p.add_argument("action", nargs="?", choices=("build", "generate"), default="build")
    p.add_argument("--book-dir", default="book",
                   help="the book folder the sweep wrote into (default: book)")
    p.add_argument("--output", default=None,
                   help="where _build/html goes (default: the book folder's parent, e.g. "
                        "./_build/html for ./book, the same place as `make book`)")
    p.add_argument("--no-strict", action="store_true", help="don't treat warnings as errors")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    """``ablation book``: build the book, or regenerate notebooks and TOC."""
    if args.action == "generate":
        changed = write_notebooks()
        toc = write_toc()
        readme = write_readme()
        print(f"notebooks: {len(changed)} changed; _toc.yml: {'changed' if toc else 'same'}; "
              f"README findings: {'changed' if readme else 'same'}")
        return 0
    html_dir = build(args.book_dir, args.output, strict=not args.no_strict)
    print(f"book: {html_dir / 'index.html'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``ablation book`` on its own (for tests)."""
    return subcommand_main("book", add_parser, argv)
