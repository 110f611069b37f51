"""How to rerun a page of the book: its commands, and the run folders behind its numbers.

Every task page ends with :func:`rerun_section` (called by the generated notebook with the
page's :class:`~ablation.report.TaskRuns`): the ``papermill`` line that re-executes the page
from the repository root, the ``ablation train`` line of each run it shows, and links to each
run's ``metrics.json`` and ``model.pt`` in the repository.

The repository's URL is one fact kept in one place: ``repository.url`` in ``_config.yml``
(the book's buttons read it there too). Until the project has a remote it is a placeholder;
set it to the GitHub repository the book is published from (the Pages workflow sets it to the
repository it runs in).

The page's parameters come from :class:`~ablation.parameters.NotebookParameters`, the
dataclass that writes the notebook's ``parameters`` cell: the papermill line states the values
that differ from its defaults.
"""

from __future__ import annotations

import html
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ablation.errors import ConfigError
from ablation.parameters import NotebookParameters
from ablation.paths import repo_root

if TYPE_CHECKING:
    from ablation.report import TaskRuns

CONFIG_FILE = "_config.yml"
RUN_FILES = ("metrics.json", "model.pt")  # linked for every finished run (if present)
ALWAYS_STATED = ("profile", "scales", "seeds")  # in the papermill line even when the default


# --------------------------------------------------------------------------- the repository


def book_config(root: str | os.PathLike | None = None) -> dict:
    """The book's ``_config.yml`` as a dict (``root``: the checkout; default this one)."""
    import yaml

    path = Path(root or repo_root()) / CONFIG_FILE
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: book configuration not found; run from a checkout of the "
                          "project") from None


def repository(root: str | os.PathLike | None = None) -> tuple[str, str]:
    """(URL, branch) of the repository the book links to: ``repository`` in ``_config.yml``."""
    repo = book_config(root).get("repository") or {}
    url = str(repo.get("url") or "").rstrip("/")
    if not url:
        raise ConfigError(f"{Path(root or repo_root()) / CONFIG_FILE}: repository.url is empty; "
                          "set it to the project's GitHub URL")
    return url, str(repo.get("branch") or "main")


def file_url(rel: str, root: str | os.PathLike | None = None, kind: str = "blob") -> str:
    """GitHub URL of a repository path: ``blob`` (a file's page), ``raw`` or ``tree``."""
    url, branch = repository(root)
    return f"{url}/{kind}/{branch}/{rel}"


# --------------------------------------------------------------------------- the commands


def _rel(path: str | os.PathLike, root: Path) -> str:
    """``path`` relative to the checkout when inside it (how the commands are run), else as is."""
    p = Path(path).resolve()
    try:
        return p.relative_to(root).as_posix()
    except ValueError:
        return str(p)


def _folder_arg(value: str | None, default: Path, root: Path) -> str | None:
    """A data/results folder argument, or None when it is the project's default."""
    if value is None or Path(value).resolve() == default.resolve():
        return None
    return _rel(value, root)


def _yaml_flow(value) -> str:
    """A parameter value as YAML flow text (what papermill's ``-y`` reads back)."""
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_yaml_flow(v) for v in value) + "]"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def page_parameters(runs: TaskRuns, device: str = "auto", iterations: int | None = None,
                    retrain: bool = False, root: Path | None = None) -> dict:
    """The notebook parameters that reproduce the page: the values that differ from the
    parameters cell's defaults (:class:`~ablation.parameters.NotebookParameters`), plus
    :data:`ALWAYS_STATED` (profile, scales, seeds)."""
    from ablation import paths

    root = root or repo_root()
    page = NotebookParameters(
        profile=runs.profile, scales=tuple(runs.scales), seeds=tuple(runs.seeds),
        variants=tuple(runs.variants),
        data_dir=_folder_arg(runs.data_dir, paths.data_dir(), root),
        results_dir=_folder_arg(runs.results_dir, paths.results_dir(), root),
        device=device, iterations=None if iterations is None else int(iterations),
        retrain=bool(retrain))
    defaults = NotebookParameters().values()
    return {name: value for name, value in page.values().items()
            if name in ALWAYS_STATED or value != defaults[name]}


def papermill_command(runs: TaskRuns, **kwargs) -> str:
    """``papermill notebooks/taskNN.ipynb book/tasks/taskNN-xS.ipynb -r ... -y ...``: run from
    the repository root, it executes this page again (finished runs are reused)."""
    from ablation.tasks import get_task

    key = get_task(runs.task).key
    scales = list(runs.scales)
    out = f"book/tasks/{key}-x{scales[0]}.ipynb" if len(scales) == 1 else f"{key}-out.ipynb"
    words = ["papermill", f"notebooks/{key}.ipynb", out]
    lists = []
    for name, value in page_parameters(runs, **kwargs).items():
        if isinstance(value, list):
            lists.append(f"{name}: {_yaml_flow(value)}")
        elif isinstance(value, str):  # -r: kept a string (-p would read '123' as a number)
            words += ["-r", name, value]
        else:
            words += ["-p", name, str(value)]
    if lists:
        words += ["-y", "{" + ", ".join(lists) + "}"]
    return shlex.join(words)


def train_command(task: int, variant: str, scale: int, seed: int, profile: str,
                  results_dir: str | None = None, data_dir: str | None = None,
                  device: str = "auto", iterations: int | None = None,
                  root: Path | None = None) -> str:
    """``ablation train ...``: trains (or reuses) one run exactly as the page does."""
    from ablation import paths

    root = root or repo_root()
    words = ["ablation", "train", "--task", str(task), "--variant", variant, "--scale",
             str(scale), "--profile", profile, "--seed", str(seed)]
    if iterations is not None:
        words += ["--iterations", str(int(iterations))]
    if device != "auto":
        words += ["--device", device]
    results = _folder_arg(results_dir, paths.results_dir(), root)
    data = _folder_arg(data_dir, paths.data_dir(), root)
    if results is not None:
        words += ["--results", results]
    if data is not None:
        words += ["--data-dir", data]
    return shlex.join(words)


# --------------------------------------------------------------------------- the section


@dataclass
class RunLine:
    """One run of the page: its key, how to rerun it, and where its files are."""

    key: str  # 'task04/baseline/x2/seed0'
    label: str
    command: str
    note: str = ""  # why it was not run under this profile
    folder: str = ""  # repository URL (or local path) of the run folder
    files: dict[str, str] = field(default_factory=dict)  # file name -> URL or local path


@dataclass
class Rerun:
    """The end of a task page: the papermill line and one :class:`RunLine` per run."""

    papermill: str
    runs: list[RunLine]

    def __str__(self) -> str:
        lines = ["Rerun this page (from the repository root):", f"  {self.papermill}",
                 "Each run (reused when finished; add --retrain to train it again):"]
        for r in self.runs:
            lines.append(f"  {r.command}" + (f"  # not run: {r.note}" if r.note else ""))
            lines += [f"    {name}: {where}" for name, where in r.files.items()]
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        def link(name: str, where: str) -> str:
            if where.startswith(("http://", "https://")):
                return f'<a href="{html.escape(where)}">{html.escape(name)}</a>'
            return f"<code>{html.escape(where)}</code>"

        rows = []
        for r in self.runs:
            files = [link(n, w) for n, w in r.files.items()]
            if r.folder:
                files.append(link("folder", r.folder))
            where = " · ".join(files) if files else (
                f"not run: {html.escape(r.note)}" if r.note else "not finished")
            rows.append(f"<tr><td><code>{html.escape(r.key)}</code><br>{html.escape(r.label)}"
                        f"</td><td><code>{html.escape(r.command)}</code></td>"
                        f"<td>{where}</td></tr>")
        return ('<div class="ablation-rerun">'
                "<p>Execute this page again, from the repository root (after "
                "<code>pip install -e \".[book]\"</code> and fetching the data, see the "
                "README); finished runs are reused:</p>"
                '<pre class="ablation-rerun-papermill" style="white-space: pre-wrap">'
                f"<code>{html.escape(self.papermill)}</code></pre>"
                "<p>Each run of the page on its own (reused when finished; add "
                "<code>--retrain</code> to train it again), with its metrics and checkpoint:"
                "</p>"
                '<table class="ablation-rerun-runs"><thead><tr><th>run</th><th>command</th>'
                f"<th>files</th></tr></thead><tbody>{''.join(rows)}</tbody></table></div>")


def _run_files(folder: Path, root: Path) -> tuple[str, dict[str, str]]:
    """(folder link, {file: link}) of a finished run: repository URLs for a run inside the
    checkout (committed results), local paths otherwise."""
    present = [name for name in RUN_FILES if (folder / name).exists()]
    rel = _rel(folder, root)
    if Path(rel).is_absolute():  # a results folder outside the checkout: nothing to link to
        return str(folder), {name: str(folder / name) for name in present}
    kinds = {"model.pt": "raw"}  # the checkpoint downloads; metrics.json shows on its page
    return (file_url(rel, root, "tree"),
            {name: file_url(f"{rel}/{name}", root, kinds.get(name, "blob"))
             for name in present})


def rerun_section(runs: TaskRuns, device: str = "auto", iterations: int | None = None,
                  retrain: bool = False, root: str | os.PathLike | None = None) -> Rerun:
    """How to rerun the page ``runs`` came from (the last section of every task page)."""
    root = Path(root or repo_root()).resolve()
    papermill = papermill_command(runs, device=device, iterations=iterations, retrain=retrain,
                                  root=root)
    lines = []
    for p in runs.planned:
        profile = "paper" if p.skip_reason else runs.profile
        cmd = train_command(p.task, p.variant, p.scale, p.seed, profile, runs.results_dir,
                            runs.data_dir, device, iterations, root)
        folder = p.run_dir(runs.profile, runs.results_dir)
        link, files = ("", {})
        if (folder / "metrics.json").exists():
            link, files = _run_files(folder, root)
        lines.append(RunLine(p.key, p.label, cmd, p.skip_reason, link, files))
    return Rerun(papermill, lines)
