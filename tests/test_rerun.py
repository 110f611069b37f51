"""The end of every task page: the papermill and ``ablation train`` lines that rerun it, and
links to its runs' metrics and checkpoints."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from ablation import notebooks, paths
from ablation.cli import build_parser
from ablation.parameters import HOW_TO_RUN, PARAMETER_NAMES
from ablation.report import TaskRuns
from ablation.rerun import papermill_command, repository, rerun_section
from ablation.sweep import Settings, plan
from ablation.tasks import TASKS

REPO = Path(__file__).resolve().parents[1]


def page_runs(params: dict, task: int) -> TaskRuns:
    """What ``report.run_task`` returns for a page executed with ``params`` (runs not run)."""
    return TaskRuns(task, params["profile"], list(params["scales"]), list(params["seeds"]),
                    list(params.get("variants", [])), params.get("results_dir"),
                    params.get("data_dir"))


def effective_parameters(cmd: str, tmp_path: Path) -> dict:
    """Run the page's papermill line (output redirected, --prepare-only: nothing executes)
    and return the values its parameter cells leave in the notebook's namespace."""
    argv = shlex.split(cmd)
    assert argv[0] == "papermill"
    out = tmp_path / "page.ipynb"
    argv = [str(Path(sys.executable).with_name("papermill")), argv[1], str(out), *argv[3:],
            "--prepare-only"]
    subprocess.run(argv, cwd=REPO, check=True, capture_output=True)
    nb = nbformat.read(out, as_version=4)
    namespace: dict = {}
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if "parameters" in tags or "injected-parameters" in tags:
            exec(cell.source, namespace)
    return {k: namespace[k] for k in PARAMETER_NAMES}


def same_params(effective: dict, wanted: dict) -> None:
    """Equal, reading a folder parameter as the folder it resolves to (None: the default)."""
    for name in PARAMETER_NAMES:
        got, want = effective[name], wanted[name]
        if name == "results_dir":
            got, want = paths.results_dir(got).resolve(), paths.results_dir(want).resolve()
        elif name == "data_dir":
            got, want = paths.data_dir(got).resolve(), paths.data_dir(want).resolve()
        assert got == want, (name, got, want)


def test_papermill_line_reproduces_the_sweeps_parameters(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    s = Settings(tasks=[1, 8], scales=[2, 3, 4], profile="cpu", seeds=[0],
                 results_dir=paths.results_dir().resolve(), data_dir=None,
                 book_dir=(REPO / "book").resolve(), pages=False)
    jobs = [j for j in plan(s) if j.page.name in ("task01-x3", "task08-x2")]  # one per kind
    assert len(jobs) == 2
    for job in jobs:
        cmd = papermill_command(page_runs(job.params, job.page.task))
        assert shlex.split(cmd)[1:3] == [f"notebooks/{job.page.notebook}",
                                         f"book/{job.page.rel}.ipynb"]
        assert "results_dir" not in cmd and "data_dir" not in cmd  # the defaults: omitted
        same_params(effective_parameters(cmd, tmp_path), job.params)


def test_papermill_line_carries_every_non_default_parameter(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    params = dict(profile="smoke", scales=[3], seeds=[0, 1], variants=["3layers"],
                  data_dir=str(tmp_path / "my data"), results_dir=str(tmp_path / "1e3"),
                  device="cpu", iterations=7, retrain=True)
    runs = page_runs(params, 1)
    cmd = papermill_command(runs, device="cpu", iterations=7, retrain=True)
    assert "book/tasks/task01-x3.ipynb" in cmd
    same_params(effective_parameters(cmd, tmp_path), params)


def test_train_lines_name_each_run_of_the_page(tmp_path):
    runs = TaskRuns(5, "cpu", [2], [0, 1], [], str(tmp_path / "res"), None)
    section = rerun_section(runs, iterations=9)
    assert [r.key for r in section.runs] == [p.key for p in runs.planned]
    parser = build_parser()
    for line, planned in zip(section.runs, runs.planned, strict=True):
        args = parser.parse_args(shlex.split(line.command)[1:])
        assert args.command == "train"
        assert (args.task, args.variant, args.scale, args.seed, args.profile) == \
            (planned.task, planned.variant, planned.scale, planned.seed, "cpu")
        assert args.iterations == 9 and Path(args.results) == tmp_path / "res"
    # the page's seeds for every trained run, bicubic once
    keys = [r.key for r in section.runs]
    assert keys == ["task00/bicubic/x2/seed0", "task04/baseline/x2/seed0",
                    "task04/baseline/x2/seed1", "task05/batchnorm/x2/seed0",
                    "task05/batchnorm/x2/seed1"]


def test_a_gpu_only_variant_gets_its_paper_line_and_the_reason():
    runs = TaskRuns(10, "cpu", [2], [0], [], None, None)
    line = next(r for r in rerun_section(runs).runs if r.key == "task10/rcan/x2/seed0")
    assert line.note == "needs a GPU (paper profile)" and "--profile paper" in line.command
    assert line.files == {} and "not run: needs a GPU" in str(rerun_section(runs))


@pytest.fixture
def checkout(tmp_path):
    """A checkout with the book's config and two finished runs of task 2 (one without a
    checkpoint: bicubic)."""
    root = tmp_path / "checkout"
    root.mkdir()
    shutil.copy(REPO / "_config.yml", root / "_config.yml")
    for key, files in (("task00/bicubic/x2/seed0", ["metrics.json"]),
                       ("task02/3layers_grc/x2/seed0", ["metrics.json", "model.pt"])):
        folder = root / "results" / "cpu" / key
        folder.mkdir(parents=True)
        for name in files:
            (folder / name).write_text("{}")
    return root


def test_links_point_at_the_runs_in_the_repository(checkout):
    url, branch = repository(checkout)
    runs = TaskRuns(2, "cpu", [2], [0], [], str(checkout / "results"), None)
    section = rerun_section(runs, root=checkout)
    by_key = {r.key: r for r in section.runs}
    grc = by_key["task02/3layers_grc/x2/seed0"]
    rel = "results/cpu/task02/3layers_grc/x2/seed0"
    assert grc.files == {"metrics.json": f"{url}/blob/{branch}/{rel}/metrics.json",
                         "model.pt": f"{url}/raw/{branch}/{rel}/model.pt"}
    assert grc.folder == f"{url}/tree/{branch}/{rel}"
    assert grc.command.endswith("--results results")  # relative to the checkout
    assert list(by_key["task00/bicubic/x2/seed0"].files) == ["metrics.json"]
    assert by_key["task01/3layers/x2/seed0"].files == {}  # not finished: nothing to link
    html = section._repr_html_()
    assert f'<a href="{url}/raw/{branch}/{rel}/model.pt">model.pt</a>' in html
    assert "papermill notebooks/task02.ipynb book/tasks/task02-x2.ipynb" in html
    assert "-y &#x27;{scales: [2], seeds: [0]}&#x27;" in html  # escaped, not dropped


def test_runs_outside_the_checkout_show_local_paths(checkout, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(checkout / "results", elsewhere)
    runs = TaskRuns(2, "cpu", [2], [0], [], str(elsewhere), None)
    grc = next(r for r in rerun_section(runs, root=checkout).runs
               if r.key == "task02/3layers_grc/x2/seed0")
    assert grc.files["model.pt"] == str(elsewhere / "cpu/task02/3layers_grc/x2/seed0/model.pt")
    assert "http" not in rerun_section(runs, root=checkout)._repr_html_().split("<table")[1]


def test_every_task_page_ends_with_its_rerun_section():
    for t in TASKS.values():
        nb = notebooks.task_notebook(t)
        assert nb.cells[-2].source == "## Rerun this page"
        assert nb.cells[-1].source.endswith(
            "rerun_section(runs, device=device, iterations=iterations, retrain=retrain)")
        assert nb.cells[-1].metadata["tags"] == ["hide-input"]


def test_the_rerun_cell_passes_exactly_what_task_runs_does_not_keep():
    """Every notebook parameter reaches the rerun section: through the page's TaskRuns, or as
    one of HOW_TO_RUN, which the generated cell passes by name (never both, never neither)."""
    from dataclasses import fields

    kept = {f.name for f in fields(TaskRuns)} & set(PARAMETER_NAMES)
    assert kept.isdisjoint(HOW_TO_RUN)
    assert kept | set(HOW_TO_RUN) == set(PARAMETER_NAMES)
    cell = notebooks.task_notebook(TASKS[1]).cells[-1].source
    for name in HOW_TO_RUN:
        assert f"{name}={name}" in cell


def test_a_new_repository_url_makes_the_sweep_re_execute_the_pages(monkeypatch):
    """The rerun links are baked into executed pages: setting repository.url must not leave
    pages linking to the old one (the sweep's up-to-date digest covers it)."""
    import ablation.rerun
    from ablation.stamps import source_digest

    nb = notebooks.task_notebook(TASKS[4])
    before = source_digest(nb)
    assert source_digest(nb) == before
    monkeypatch.setattr(ablation.rerun, "repository",
                        lambda root=None: ("https://github.com/someone/fork", "main"))
    assert source_digest(nb) != before
