"""ablation sweep: planning, dry run, lock, stamps, failures, resume."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from fake_runs import fake_run

from ablation import execute, notebooks, stamps, sweep


def args(tmp_path: Path, *extra: str) -> list[str]:
    return ["--profile", "smoke", "--results", str(tmp_path / "results"),
            "--book-dir", str(tmp_path / "book"), *extra]


def dry_lines(tmp_path, capsys, *extra) -> list[str]:
    assert sweep.main(args(tmp_path, "--dry-run", *extra)) == 0
    return capsys.readouterr().out.splitlines()


def names(lines: list[str]) -> list[str]:
    return [line.split()[2] for line in lines if line.startswith(("would run", "up to date"))]


def test_dry_run_lists_one_page_per_task_and_defined_scale(tmp_path, capsys):
    lines = dry_lines(tmp_path, capsys, "--tasks", "1,2")  # default: each task's own scales
    assert names(lines) == ["task01-x2", "task01-x3", "task01-x4", "task02-x2", "method",
                            "results", "findings", "conclusion"]
    assert "scales=[2, 3, 4]" in lines[5]


def test_scales_runs_every_selected_task_at_each_scale_asked_for(tmp_path, capsys):
    lines = dry_lines(tmp_path, capsys, "--tasks", "1,2", "--scales", "2,3")
    assert names(lines) == ["task01-x2", "task01-x3", "task02-x2", "task02-x3", "method",
                            "results", "findings", "conclusion"]  # ladder page: cpu only
    assert all(line.startswith("would run") for line in lines)
    assert "task01.ipynb -> " in lines[1] and lines[1].endswith("task01-x3.ipynb scales=[3]")
    assert lines[3].endswith("task02-x3.ipynb scales=[3]")  # task 2 defines x2 only
    assert "scales=[2, 3]" in lines[5]  # the references at the scales asked for


def test_dry_run_task_ranges_and_no_pages(tmp_path, capsys):
    lines = dry_lines(tmp_path, capsys, "--tasks", "1-11", "--scales", "2", "--no-pages")
    assert names(lines) == [f"task{n:02d}-x2" for n in range(1, 12)]
    assert names(dry_lines(tmp_path, capsys, "--tasks", "1-11", "--scales", "3",
                           "--no-pages")) == [f"task{n:02d}-x3" for n in range(1, 12)]
    assert names(dry_lines(tmp_path, capsys, "--tasks", "1,3,5", "--no-pages")) == \
        ["task01-x2", "task01-x3", "task01-x4", "task03-x2", "task05-x2"]


@pytest.mark.parametrize("bad", [["--tasks", "12"], ["--tasks", "0"], ["--scales", "5"],
                                 ["--profile", "gpu"]])
def test_bad_arguments_are_one_line_errors(tmp_path, capsys, bad):
    assert sweep.main(args(tmp_path, "--dry-run", *bad)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1


def test_second_sweep_on_the_same_results_refuses(tmp_path, capsys):
    with sweep.sweep_lock(tmp_path / "results" / "smoke"):
        assert sweep.main(args(tmp_path, "--tasks", "2", "--no-pages")) == 2
    err = capsys.readouterr().err.strip()
    assert "another sweep is running on this folder" in err and "--wait" in err
    assert len(err.splitlines()) == 1


def settings(tmp_path, **kw) -> sweep.Settings:
    base = dict(tasks=[4], scales=[2], profile="smoke", seeds=[0],
                results_dir=tmp_path / "results", data_dir=None, book_dir=tmp_path / "book")
    return sweep.Settings(**{**base, **kw})


def finish_fake(job: sweep.Job, s: sweep.Settings, digest: str) -> None:
    """Pretend the page ran: its runs finished, page and stamp written."""
    for key in job.expected_runs:
        task, variant, scale, seed = key.split("/")
        fake_run(s.results_dir, int(task[4:]), variant, int(scale[1:]), int(seed[4:]),
                 dict(Set5=30.0), s.profile, config_hash=f"h-{key}")
    job.output.parent.mkdir(parents=True, exist_ok=True)
    job.output.write_text("{}")
    job.stamp.write_text(json.dumps(dict(
        status="ok", params=job.params, source=digest,
        runs={k: stamps.run_hash(s.results_root, k) for k in job.expected_runs},
        all_runs=stamps.page_runs_digest(job, s) if job.depends_on_all else None,
        seeds=stamps.seeds_digest(job, s) if job.all_seeds else None)))


def test_stamp_decides_what_is_up_to_date(tmp_path):
    s = settings(tmp_path)
    task_job, method, results, findings, conclusion = sweep.plan(s)  # no ladder off cpu
    assert task_job.expected_runs == ["task00/bicubic/x2/seed0", "task03/8layers_grc/x2/seed0",
                                      "task04/baseline/x2/seed0"]  # the seeds it trains
    assert (results.phase, findings.phase, conclusion.phase, method.phase) == (2, 2, 3, 1)
    assert task_job.all_seeds and not task_job.depends_on_all  # every seed of its runs
    assert not sweep.is_up_to_date(task_job, s, "src")
    finish_fake(task_job, s, "src")
    assert sweep.is_up_to_date(task_job, s, "src")
    assert not sweep.is_up_to_date(task_job, s, "changed notebook")
    other = sweep.Job(task_job.page, {**task_job.params, "seeds": [0, 1]}, task_job.output,
                      task_job.expected_runs)
    assert not sweep.is_up_to_date(other, s, "src")  # other parameters
    (s.results_root / "task04/baseline/x2/seed0/metrics.json").unlink()
    assert not sweep.is_up_to_date(task_job, s, "src")  # a run it shows is gone
    finish_fake(conclusion, s, "src")
    assert sweep.is_up_to_date(conclusion, s, "src")
    finish_fake(task_job, s, "src")  # a new run appears: pages reading every run are stale
    assert not sweep.is_up_to_date(conclusion, s, "src")
    assert sweep.is_up_to_date(task_job, s, "src")
    fake_run(s.results_dir, 9, "l2", 2, 0, dict(Set5=30.0), s.profile, config_hash="h-l2")
    assert sweep.is_up_to_date(task_job, s, "src")  # another task's run: not shown here
    fake_run(s.results_dir, 4, "baseline", 2, 1, dict(Set5=30.1), s.profile, config_hash="h1")
    assert not sweep.is_up_to_date(task_job, s, "src")  # a new seed of a run it shows


def test_ladder_page_goes_stale_when_a_ladder_run_lands(tmp_path):
    s = settings(tmp_path, profile="cpu")
    ladder = next(j for j in sweep.plan(s) if j.page.name == "ladder")
    conclusion = next(j for j in sweep.plan(s) if j.page.name == "conclusion")
    assert ladder.expected_runs == [] and ladder.other_profiles == ("cpu4", "cpu16")
    for job in (ladder, conclusion):
        finish_fake(job, s, "src")
        assert sweep.is_up_to_date(job, s, "src")
    fake_run(s.results_dir, 5, "batchnorm", 2, 0, dict(Set5=30.0), "cpu4")  # never trained by it
    assert not sweep.is_up_to_date(ladder, s, "src")
    assert not sweep.is_up_to_date(conclusion, s, "src")


def test_gpu_only_variants_are_not_expected(tmp_path):
    (job,) = sweep.plan(settings(tmp_path, tasks=[10], pages=False))
    assert "task10/rcan/x2/seed0" not in job.expected_runs
    (job,) = sweep.plan(settings(tmp_path, tasks=[10], pages=False, profile="paper"))
    assert "task10/rcan/x2/seed0" in job.expected_runs


def test_slots_get_their_own_gpu_or_cpu_share():
    assert execute.slot_env(3, 4, ["0", "1"]) == {"CUDA_VISIBLE_DEVICES": "1"}
    assert execute.slot_env(0, 1, []) == {}
    assert set(execute.slot_env(1, 2, [])) == {"OMP_NUM_THREADS", "MKL_NUM_THREADS"}


def write_notebook(folder: Path, name: str, code: str) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = dict(notebooks.KERNELSPEC)
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {name}", id="title"),
                nbformat.v4.new_code_cell('profile = "cpu"\nscales = [2]', id="params"),
                nbformat.v4.new_code_cell(code, id="body")]
    nb.cells[1].metadata["tags"] = ["parameters"]
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, folder / name)


def test_failing_notebook_is_visible_and_does_not_stop_the_others(tmp_path, capsys):
    nbs = tmp_path / "notebooks"
    write_notebook(nbs, "task02.ipynb", 'raise ValueError("boom: the data is gone")')
    write_notebook(nbs, "task03.ipynb", 'print("fine", profile, scales)')
    argv = args(tmp_path, "--tasks", "2,3", "--scales", "2", "--no-pages", "--notebooks",
                str(nbs), "--jobs", "2")
    assert sweep.main(argv) == 1
    out = capsys.readouterr().out
    assert "2 pages in" in out and "1 ran, 0 reused, 1 failed" in out
    assert "failed: task02-x2: ValueError: boom: the data is gone" in out
    failed = nbformat.read(tmp_path / "book/tasks/task02-x2.ipynb", as_version=4)
    text = json.dumps(failed)
    assert "This page failed to run in the sweep: ValueError: boom" in text
    assert "boom: the data is gone" in "".join(
        json.dumps(o) for c in failed.cells if c.cell_type == "code" for o in c.outputs)
    ok = nbformat.read(tmp_path / "book/tasks/task03-x2.ipynb", as_version=4)
    assert "fine smoke [2]" in json.dumps(ok)
    assert ok.cells[0].source == "# Task 3: Depth on bicubic input"  # the page's title
    params = [c for c in ok.cells if "parameters" in c.metadata.get("tags", [])][0]
    assert "remove-cell" in params.metadata.tags  # the book shows the injected values
    assert not list((tmp_path / "book/tasks/.sweep-tmp").glob("*"))
    # a failed page runs again next time (task03 too: the fake notebook made no runs)
    assert sweep.main(argv) == 1
    assert "1 ran, 0 reused, 1 failed" in capsys.readouterr().out
    stamp = json.loads((tmp_path / "book/tasks/.task02-x2.json").read_text())
    assert stamp["status"] == "failed" and "boom" in stamp["error"]


@pytest.mark.slow
def test_sweep_skips_finished_pages_and_resumes(tmp_path, capsys, data_dir):
    argv = args(tmp_path, "--tasks", "2", "--scales", "2", "--no-pages", "--iterations", "2",
                "--data-dir", str(data_dir))
    assert sweep.main(argv) == 0
    assert "1 ran, 0 reused, 0 failed" in capsys.readouterr().out
    page = tmp_path / "book/tasks/task02-x2.ipynb"
    nb = nbformat.read(page, as_version=4)
    assert "Traceback" not in json.dumps(nb)
    assert 'class=\\"ablation-row ablation-variant\\"' in json.dumps(nb)
    assert sweep.main(argv) == 0
    assert "0 ran, 1 reused, 0 failed" in capsys.readouterr().out
    # a run deleted from the results folder: the page runs again (and retrains only that run)
    (tmp_path / "results/smoke/task02/3layers_grc/x2/seed0/metrics.json").unlink()
    assert sweep.main(argv) == 0
    assert "1 ran, 0 reused, 0 failed" in capsys.readouterr().out
    assert (tmp_path / "results/smoke/task02/3layers_grc/x2/seed0/metrics.json").exists()
    assert "up to date" in sweep.dry_run(sweep.settings_from_args(
        _parse(argv + ["--dry-run"])))


def _parse(argv):
    import argparse

    parser = argparse.ArgumentParser()
    sweep.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["sweep", *argv])


def test_page_digest_covers_every_package_module_the_page_runs(tmp_path, monkeypatch):
    import shutil

    from ablation import modgraph

    pkg = tmp_path / "ablation"
    shutil.copytree(modgraph.package_dir(), pkg, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(modgraph, "package_dir", lambda: pkg)
    nb = notebooks.source_notebook(notebooks.task_pages([4], [2])[0])
    runs = {p.relative_to(pkg).as_posix() for p in stamps.page_sources(nb)}
    # the report and what it runs underneath (training, the nets, evaluation, inference)
    assert {"report/_pages.py", "runs.py", "train.py", "models.py", "evaluate.py",
            "inference.py", "book.py", "notebooks.py"} <= runs  # the check cell: book, notebooks
    assert not {"sweep.py", "execute.py", "slurm.py", "slurmstate.py", "cli.py", "upscale.py",
                "download.py"} & runs  # not run by a page
    before = sweep.source_digest(nb)
    (pkg / "sweep.py").write_text((pkg / "sweep.py").read_text() + "\n# not on the page\n")
    assert sweep.source_digest(nb) == before
    (pkg / "models.py").write_text((pkg / "models.py").read_text() + "\n# changes the nets\n")
    assert sweep.source_digest(nb) != before
