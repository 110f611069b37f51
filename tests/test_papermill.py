"""The task notebooks as papermill and JupyterLab users run them: every papermill form of a list
parameter, a misspelt name and an unsupported scale through papermill's own command line, and
"Run All" twice in one kernel through nbclient. The notebooks are the generated ones, cut
after their check cell (the rest trains; tests/test_report.py covers it)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from ablation import notebooks, paths
from ablation.errors import ConfigError
from ablation.parameters import LIST_FORMS, coerce

PAPERMILL = Path(sys.executable).with_name("papermill")
SHOW = ("import json\n"
        "print('PARAMS', json.dumps(dict(scales=scales, seeds=seeds, variants=variants)))")


def head(tmp_path: Path, extra: list[str] = ()) -> Path:
    """Task 7's generated notebook up to its check cell, then ``extra`` cells and a cell
    printing the list parameters as the page's code sees them."""
    nb = nbformat.from_dict(notebooks.notebooks()["task07.ipynb"])
    cut = next(i for i, c in enumerate(nb.cells) if "check_parameters" in c.source)
    nb.cells = nb.cells[:cut + 1] + [nbformat.v4.new_code_cell(src) for src in (*extra, SHOW)]
    path = tmp_path / "task07-head.ipynb"
    nbformat.write(nb, path)
    return path


def papermill(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path / "out.ipynb"
    proc = subprocess.run([str(PAPERMILL), str(head(tmp_path)), str(out), "--cwd",
                           str(tmp_path), *args], capture_output=True, text=True, timeout=300)
    return proc, out


def shown(out: Path) -> dict:
    text = "".join(o.get("text", "") for c in nbformat.read(out, as_version=4).cells
                   if c.cell_type == "code" for o in c.outputs)
    return json.loads(text.split("PARAMS ", 1)[1].splitlines()[0])


def test_every_papermill_form_of_a_list_parameter(tmp_path):
    proc, out = papermill(tmp_path, "-p", "scales", "3", "-p", "seeds", "0,1",
                          "-p", "variants", '["prelu"]')
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert shown(out) == dict(scales=[3], seeds=[0, 1], variants=["prelu"])
    proc, out = papermill(tmp_path, "-p", "scales", "[2, 3]", "-y", "seeds: [2]",
                          "-p", "variants", "leakyrelu,prelu")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert shown(out) == dict(scales=[2, 3], seeds=[2], variants=["leakyrelu", "prelu"])


@pytest.mark.parametrize(("flag", "message"), [
    (["-p", "scales", "[5]"], "ConfigError: unknown scale 5; valid values: 2, 3, 4"),
    (["-p", "iteratons", "5"], "ConfigError: unknown notebook parameter(s) ['iteratons']"),
])
def test_bad_parameters_fail_in_one_line_before_anything_runs(tmp_path, flag, message):
    proc, out = papermill(tmp_path, *flag)
    assert proc.returncode != 0
    errors = [o for c in nbformat.read(out, as_version=4).cells if c.cell_type == "code"
              for o in c.outputs if o.output_type == "error"]
    assert len(errors) == 1 and len(errors[0].traceback) == 1  # one line, no traceback
    assert errors[0].traceback[0].startswith(message)
    assert message in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.ipynb", "task07-head.ipynb"]


def test_run_all_twice_in_one_kernel_with_user_variables(tmp_path):
    from nbclient import NotebookClient

    nb = nbformat.read(head(tmp_path, ["runs = 'a result'\nmy_threshold = 0.1"]), as_version=4)
    client = NotebookClient(nb, kernel_name="python3", timeout=120)
    with client.setup_kernel():
        for _ in range(2):  # the second "Run All" sees the first one's runs and my_threshold
            for i, cell in enumerate(nb.cells):
                if cell.cell_type == "code":
                    client.execute_cell(cell, i)
    assert not [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
                if o.output_type == "error"]
    assert "PARAMS" in json.dumps(nb.cells[-1].outputs)


@pytest.mark.parametrize(("value", "expected"), [
    (3, [3]), ("3", [3]), ("[3]", [3]), ("2,3", [2, 3]), (" 2, 3 ", [2, 3]), ("(2, 3)", [2, 3]),
    ([2, 3], [2, 3]), ((4,), [4]), ("[]", []),
])
def test_coerce_accepts_every_form(value, expected):
    assert coerce("scales", value) == expected


@pytest.mark.parametrize("value", ["[2,", "two", 2.5, None, "[1, 'x']"])
def test_coerce_rejects_in_one_line_naming_the_forms(value):
    with pytest.raises(ConfigError) as err:
        coerce("seeds", value)
    assert "seeds" in str(err.value) and "\n" not in str(err.value)


def test_check_parameters_checks_only_what_papermill_injected():
    ns = {"scales": "2,3", "seeds": 1, "variants": "prelu", "runs": object(), "mine": 1}
    notebooks.check_parameters(ns, injected=[])  # a JupyterLab Run All: nothing injected
    assert (ns["scales"], ns["seeds"], ns["variants"]) == ([2, 3], [1], ["prelu"])
    with pytest.raises(ConfigError, match="iteratons"):
        notebooks.check_parameters(dict(ns), injected=["scales", "iteratons"])
    with pytest.raises(ConfigError, match="unknown scale 5"):
        notebooks.check_parameters({"scales": 5}, injected=["scales"])


def test_every_task_page_and_the_readme_document_the_forms():
    readme = (Path(paths.repo_root()) / "README.md").read_text()
    assert '-p scales "[2, 3]"' in readme and "-p scales 2,3" in readme and "-y " in readme
    for name, nb in notebooks.notebooks().items():
        if name.startswith("task"):
            intro = nb.cells[0].source
            assert LIST_FORMS in intro and "any of x2/x3/x4" in intro, name
