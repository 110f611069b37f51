"""The published book: no machine path in an executed page, every run's numbers downloadable,
tables that fit, the profile banner once per task page, one place for the HTML, and what a task
page says before it trains (which runs, how long, at which scale)."""

from __future__ import annotations

import json
import re
from io import StringIO
from pathlib import Path

import fake_runs
import nbformat
import pandas as pd
import pytest

from ablation import book, notebooks, paths, report, sweep
from ablation.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
# an absolute path of this machine: /home/..., /tmp/..., /work/..., /root/..., /Users/...
MACHINE_PATH = re.compile(r"(?<![\w.~-])/(home|tmp|work|root|Users|var|opt|mnt)/")


@pytest.fixture
def study(tmp_path) -> Path:
    root = tmp_path / "results"
    fake_runs.fake_run(root, 0, "bicubic", 2, 0, dict(Set5=33.68, Set14=30.24))
    for seed, d in enumerate((0.0, 0.02, -0.02)):
        fake_runs.fake_run(root, 4, "baseline", 2, seed, dict(Set5=37.0 + d, Set14=32.6 + d))
    fake_runs.fake_run(root, 3, "8layers_grc", 2, 0, dict(Set5=36.80, Set14=32.50))
    fake_runs.fake_run(root, 5, "batchnorm", 2, 0, dict(Set5=37.30, Set14=32.61))
    return root


def test_an_executed_page_names_no_machine_path(tmp_path, monkeypatch):
    """The sweep injects absolute paths; the page it writes (what the book renders and offers
    as .ipynb) shows them relative to the folder it ran in, outputs and metadata included."""
    monkeypatch.chdir(tmp_path)
    nbs = tmp_path / "notebooks"
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = dict(notebooks.KERNELSPEC)
    nb.cells = [nbformat.v4.new_markdown_cell("# page", id="title"),
                nbformat.v4.new_code_cell("results_dir = None\ndata_dir = None\nscales = [2]",
                                          id="params"),
                nbformat.v4.new_code_cell(
                    "from pathlib import Path\nfrom IPython.display import HTML\n"
                    "print(results_dir, Path(results_dir) / 'cpu' / 'figures')\n"
                    "HTML(f'<p>read from <code>{results_dir}</code></p>')", id="body")]
    nb.cells[1].metadata["tags"] = ["parameters"]
    nbs.mkdir()
    nbformat.write(nb, nbs / "task02.ipynb")
    argv = ["--profile", "smoke", "--results", str(tmp_path / "results"), "--book-dir",
            str(tmp_path / "book"), "--tasks", "2", "--no-pages", "--notebooks", str(nbs)]
    assert sweep.main(argv) == 0
    page = (tmp_path / "book" / "tasks" / "task02-x2.ipynb").read_text()
    assert str(tmp_path) not in page and not MACHINE_PATH.search(page)
    executed = nbformat.reads(page, as_version=4)
    injected = next(c for c in executed.cells if "injected-parameters" in c.metadata.tags)
    assert 'results_dir = "results"' in injected.source
    assert "results results/cpu/figures" in json.dumps(executed.cells[-1].outputs)
    assert "<code>results</code>" in json.dumps(executed.cells[-1].outputs)


def test_relative_text_keeps_embedded_data_and_other_paths():
    prefixes = paths.machine_prefixes("/srv/checkout")
    text = ('"/srv/checkout/results" /srv/checkout /srv/checkouts/x '
            'data:image/png;base64,QUJD/srv/checkout/ZZ')
    assert paths.relative_text(text, prefixes) == \
        '"results" . /srv/checkouts/x data:image/png;base64,QUJD/srv/checkout/ZZ'
    home = str(Path.home())
    assert paths.relative_text(f"{home}/data", prefixes) == "~/data"


def test_every_run_downloads_as_one_csv_and_one_json(study):
    html = report.download_links("cpu", study).html
    links = dict(re.findall(r'download="([^"]+)" href="data:[^;]+;base64,([^"]+)"', html))
    assert sorted(links) == ["sr-ablation-cpu-runs.csv", "sr-ablation-cpu-runs.json"]
    import base64

    csv = base64.b64decode(links["sr-ablation-cpu-runs.csv"]).decode()
    records = json.loads(base64.b64decode(links["sr-ablation-cpu-runs.json"]))
    table = pd.read_csv(StringIO(csv))
    assert len(records) == 6 and len(table) == 12  # 6 runs x 2 sets
    row = table[(table.run == "task05/batchnorm/x2/seed0") & (table.set == "Set5")].iloc[0]
    assert row.psnr == pytest.approx(37.30) and row.params > 0 and "body_gain" in table.columns
    base = next(r for r in records if r["run"] == "task04/baseline/x2/seed1")
    assert base["sets"]["Set14"]["psnr"] == pytest.approx(32.62)
    assert str(study) not in csv + json.dumps(records)
    code = "".join(c.source for c in notebooks.notebooks()["results.ipynb"].cells)
    assert "report.download_links(profile, results_dir)" in code


def test_task_tables_fit_short_headers_no_wrapped_numbers(study):
    planned = report.planned_runs(5, [2], [0], profile="cpu")
    table = report.task_table(planned, report.load_runs("cpu", study), "cpu")
    html = report.render_task_table(table, "cpu").html
    heads = re.findall(r"<th>(.*?)</th>", html)
    assert heads and max(len(h) for h in heads) <= 8, heads
    assert "white-space: nowrap" in html and "overflow-x:auto" in html
    study_html = report.render_study_table(report.study_table("cpu", study), "cpu").html
    assert max(len(h) for h in re.findall(r"<th>(.*?)</th>", study_html)) <= 9
    cell = next(c for c in notebooks.notebooks()["task05.ipynb"].cells
                if c.source == "report.results_table(runs)")
    assert "full-width" in cell.metadata.tags


def test_the_profile_banner_shows_once_on_a_task_page(study):
    runs = report.TaskRuns(5, "cpu", [2], [0], [], str(study), None)
    runs.records = [dict(run=p.key, role=p.role, label=p.label, scale=p.scale, seed=p.seed,
                         status="reused", seconds=0.1) for p in runs.planned]
    shown = [runs._repr_html_(), report.results_table(runs).html,
             report.conclusion(runs).html]
    assert sum(h.count("Numbers on this page") for h in shown) == 1


def test_a_task_page_says_what_it_trains_how_long_and_at_which_scale(study):
    from ablation.report._running import estimate_seconds, needs_training
    from ablation.resolve import resolve_run
    from ablation.tasks import get_task

    # task 4's baseline at x3 finished with the configuration task 5's page asks for
    chash = resolve_run(get_task(4).variant("baseline"), 3, "cpu", fingerprint="f").config_hash
    done = fake_runs.fake_run(study, 4, "baseline", 3, 0, dict(Set5=33.0), config_hash=chash)
    metrics = json.loads((done / "metrics.json").read_text())
    (done / "metrics.json").write_text(json.dumps({**metrics, "data_fingerprint": "f"}))
    runs = report.TaskRuns(5, "cpu", [3], [0], [], str(study), None)
    runs.to_train = [p.key for p in runs.planned if needs_training(p, "cpu", study)]
    assert runs.to_train == ["task00/bicubic/x3/seed0", "task05/batchnorm/x3/seed0"]
    runs.estimate_s = estimate_seconds([p for p in runs.planned if p.key in runs.to_train],
                                       "cpu", study)
    assert runs.estimate_s == pytest.approx(4.0)  # 2 runs x (1.5 s + 0.5 s) recorded here
    line = runs.plan_line()
    assert line.startswith("Task 5 at x3 (profile cpu, seeds 0): 2 run(s) to train (about 4 s")
    assert line.endswith("1 finished.") and line in runs._repr_html_()


def test_an_unsupported_scale_fails_before_anything_is_written(tmp_path):
    with pytest.raises(ConfigError, match="unknown scale 5; valid values: 2, 3, 4"):
        report.run_task(4, "smoke", scales=[5], results_dir=tmp_path / "results")
    assert not (tmp_path / "results").exists()


def test_make_book_and_ablation_book_write_the_html_to_the_same_place(tmp_path, monkeypatch):
    calls = []

    class Done:
        returncode, stdout, stderr = 0, "", ""

    monkeypatch.setattr(book.subprocess, "run", lambda cmd, **kw: calls.append(cmd) or Done)
    html = book.build(tmp_path / "site" / "book")
    assert html == (tmp_path / "site" / "_build" / "html").resolve()
    assert calls[0][calls[0].index("--path-output") + 1] == str((tmp_path / "site").resolve())
    recipe = (REPO / "Makefile").read_text().split("\nbook: ", 1)[1].split("\n\n", 1)[0]
    assert "$(BIN)/ablation book" in recipe and "jupyter-book" not in recipe
    assert "_build/html/index.html" in recipe  # where `ablation book` puts it from the root
