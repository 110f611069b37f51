"""The book's notebooks and table of contents are what ablation.notebooks and ablation.book
generate from TASKS."""

from __future__ import annotations

import ast
import inspect
import re
from dataclasses import fields
from pathlib import Path

import nbformat
import pytest
import yaml

from ablation import book, notebooks, report
from ablation.config import PROFILE_NAMES, TrainConfig
from ablation.parameters import PARAMETER_NAMES
from ablation.tasks import REFERENCE, TASKS

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"


def parameters(nb) -> dict:
    """Name -> literal value of the notebook's one ``parameters`` cell (plain values only)."""
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, "exactly one cell tagged 'parameters'"
    out = {}
    for node in ast.parse(cells[0].source).body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1
        out[node.targets[0].id] = ast.literal_eval(node.value)  # plain values only
    return out


def read(name: str):
    return nbformat.read(NOTEBOOKS / name, as_version=4)


@pytest.mark.parametrize("number", list(TASKS))
def test_task_parameters_match_config_and_tasks(number):
    p = parameters(read(f"task{number:02d}.ipynb"))
    defaults = TrainConfig()
    assert tuple(p) == PARAMETER_NAMES
    assert p["profile"] == defaults.profile and p["profile"] in PROFILE_NAMES
    assert p["scales"] == list(TASKS[number].scales)
    assert p["seeds"] == [defaults.seed]
    assert p["variants"] == []
    assert p["device"] == defaults.device
    assert p["iterations"] is None and p["data_dir"] is None and p["results_dir"] is None
    assert p["retrain"] is False
    # every parameter is an argument of the one call that runs the task ...
    assert set(p) <= set(inspect.signature(report.run_task).parameters)
    # ... and the config-like ones are TrainConfig fields (mapped 1:1)
    config_fields = {f.name for f in fields(TrainConfig)}
    assert {"profile", "device", "iterations"} <= config_fields


def test_study_page_parameters():
    results = parameters(read("results.ipynb"))
    assert results["scales"] == list(TASKS[1].scales) == list(REFERENCE.scales)
    assert set(results) == set(PARAMETER_NAMES) - {"variants"}
    assert results["profile"] == TrainConfig().profile
    assert parameters(read("method.ipynb")) == {"profile": TrainConfig().profile}
    conclusion = parameters(read("conclusion.ipynb"))
    assert set(conclusion) == {"profile", "scales", "results_dir"}  # it shows every seed
    assert set(parameters(read("findings.ipynb"))) == {"profile", "scales", "results_dir"}
    assert parameters(read("ladder.ipynb")) == {"results_dir": None}  # committed runs only


@pytest.mark.parametrize("name", sorted(notebooks.notebooks()))
def test_papermill_sees_every_parameter(name):
    import papermill

    assert list(papermill.inspect_notebook(NOTEBOOKS / name)) == list(parameters(read(name)))


@pytest.mark.parametrize("name", sorted(notebooks.notebooks()))
def test_committed_notebook_is_the_generated_one(name):
    generated = notebooks.notebook_text(notebooks.notebooks()[name])
    assert (NOTEBOOKS / name).read_text(encoding="utf-8") == generated, \
        "run `ablation book generate` and commit the result"


@pytest.mark.parametrize("name", sorted(notebooks.notebooks()))
def test_notebooks_are_clean(name):
    nb = read(name)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


def test_task_notebook_makes_one_call_per_section():
    code = "\n".join(c.source for c in read("task10.ipynb").cells if c.cell_type == "code")
    for call in ("report.run_task(10,", "report.results_table(runs)",
                 "report.training_curves(runs)", "report.visual_comparison(runs)",
                 "report.conclusion(runs)"):
        assert code.count(call) == 1, call


def test_committed_toc_is_the_generated_one():
    assert (REPO / "_toc.yml").read_text(encoding="utf-8") == book.toc_yaml(), \
        "run `ablation book generate` and commit the result"


def test_toc_has_one_page_per_task_and_scale():
    toc = yaml.safe_load(book.toc_yaml())
    files = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    expected = [f"book/tasks/{t.key}-x{s}" for t in TASKS.values() for s in t.scales]
    assert [f for f in files if f.startswith("book/tasks/")] == expected
    assert {p.docname for p in notebooks.pages()} <= set(files)
    for name in book.STATIC_PAGES:  # hand-written pages exist
        assert (REPO / "book" / f"{name}.md").exists()
        assert name == "intro" or f"book/{name}" in files
    assert toc["root"] == "book/intro"


def test_book_config_builds_offline_from_executed_pages():
    cfg = yaml.safe_load((REPO / "_config.yml").read_text())
    assert cfg["execute"]["execute_notebooks"] == "off"
    assert cfg["only_build_toc_files"] is True
    for folder in ("data", "results", ".*"):  # .* covers .venv, .git, caches
        assert folder in cfg["exclude_patterns"]
    # the Binder launch button is a plain link (tests/test_publish.py); nothing live: no thebe
    assert not any(cfg["launch_buttons"].get(k) for k in
                   ("jupyterhub_url", "colab_url", "deepnote_url", "thebe"))


def test_book_gitignore_covers_generated_pages():
    ignored = (REPO / "book" / ".gitignore").read_text().split()
    for entry in ("tasks/", "pages/", "_build/"):
        assert entry in ignored


def test_placeholder_pages_fill_the_toc(tmp_path):
    written = book.ensure_placeholders(tmp_path / "book")
    assert {p.relative_to(tmp_path).with_suffix("").as_posix() for p in written} == \
        {p.docname for p in notebooks.pages()}
    nb = nbformat.read(written[0], as_version=4)
    assert nb.metadata["sr_ablation"]["placeholder"] is True
    assert "ablation sweep" in nb.cells[0].source
    assert book.ensure_placeholders(tmp_path / "book") == []  # existing pages are kept


@pytest.mark.slow
def test_book_builds_with_warnings_as_errors(tmp_path):
    """Config, TOC and prose pages build offline with -W (pages as placeholders)."""
    html = book.build(tmp_path / "site" / "book")
    assert (html / "index.html").exists()
    assert (html / "book" / "tasks" / "task04-x2.html").exists()


def test_book_lists_pages_swept_at_a_scale_the_task_does_not_define(tmp_path, capsys):
    """`ablation sweep --scales 3` writes task04-x3 (task 4 defines x2 only): the build adds
    it to the contents, after task 4's own page, and leaves the committed TOC alone."""
    book_dir = tmp_path / "site" / "book"
    extra = next(p for p in notebooks.task_pages(scales=[3], any_scale=True) if p.task == 4)
    book.ensure_placeholders(book_dir)
    out = extra.output(book_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(notebooks.notebook_text(notebooks.placeholder_notebook(extra, "Swept at x3.")))
    assert [p.name for p in book.extra_task_pages(book_dir)] == ["task04-x3"]
    html = book.build(book_dir)
    assert "task04-x3" in capsys.readouterr().err
    page = (html / "book" / "tasks" / "task04-x3.html").read_text(encoding="utf-8")
    assert "Swept at x3." in page and "Task 4 (x3)" in page
    before = (html / "book" / "tasks" / "task04-x2.html").read_text(encoding="utf-8")
    assert re.search(r'<link rel="next"[^>]*href="task04-x3.html"', before)  # it comes next
    toc = yaml.safe_load(book.toc_yaml(book.extra_task_pages(book_dir)))
    files = [c["file"] for c in toc["parts"][1]["chapters"]]
    assert files.index("book/tasks/task04-x3") == files.index("book/tasks/task04-x2") + 1
    assert (tmp_path / "site" / "_toc.yml").read_text() == (REPO / "_toc.yml").read_text()
