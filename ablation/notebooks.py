"""The book's pages and the notebooks behind them, generated from the task table.

- :class:`Page` and :func:`pages`: every executed page of the book (one per task and scale,
  plus the study pages), with the notebook it runs and where its output goes;
- :func:`notebooks`: every source notebook, clean (no outputs, fixed cell ids), so a
  regenerated notebook is byte-identical unless :data:`ablation.tasks.TASKS` changed
  (:func:`ablation.book.write_notebooks` writes them into ``notebooks/``);
- :func:`check_parameters`: what each notebook runs right after papermill's injected cell
  (the notebooks import it as ``ablation.book.check_parameters``);
- :func:`source_notebook` and :func:`placeholder_notebook`: what the sweep executes, and the
  page it shows for one it hasn't executed.

Kept apart from :mod:`ablation.book` (TOC, README, build, command line): this is what the
pages *are*; that module writes and builds them.
"""

from __future__ import annotations

import os
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
from ablation.errors import ConfigError
from ablation.parameters import (
    HOW_TO_RUN,
    PARAMETER_NAMES,
    PROFILE_CHOICES,
    NotebookParameters,
)
from ablation.paths import repo_root

if TYPE_CHECKING:
    from ablation.tasks import Task

KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
CALL_WIDTH = 95  # generated calls wrap at this width (one argument per parameter)


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
