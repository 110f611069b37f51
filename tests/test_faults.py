"""Fault injection: every failure mode the study must survive, injected for real.

Each test provokes one fault (SIGKILL, full disk, corrupt bytes, a hostile archive or pickle,
NaN loss, bad parameters, ...) and checks the outcome: a one-line error that names the problem
and the fix, and no lost or corrupted earlier work.

Case -> tests. "here:" lists this file's tests; "file.py::" tests elsewhere that also cover it.

 1  training SIGKILLed at random points, then resumed: bit-identical to an uninterrupted run
      here: test_sigkill_at_random_points_then_resume_is_bit_identical
            test_temp_file_of_a_killed_write_is_cleaned_by_the_next_run
      test_train.py::test_kill_and_resume_is_bit_identical
 2  `ablation sweep` SIGKILLed during a run; the rerun finishes the rest
      here: test_sweep_killed_mid_run_then_rerun_finishes_the_rest
      test_sweep.py::test_sweep_skips_finished_pages_and_resumes
 3  two sweeps on one results folder; a run's lock held by another process
      here: test_second_sweep_refuses_and_a_waiting_one_runs_after
            test_run_lock_held_by_another_process
      test_sweep.py::test_second_sweep_on_the_same_results_refuses
 4  ENOSPC while writing state.pt / history.csv / metrics.json
      here: test_disk_full_keeps_earlier_files[...]
            test_disk_full_in_the_cli_is_a_one_line_error
      test_checkpoint.py::test_save_is_atomic_on_full_disk
      test_images.py::test_atomic_write_keeps_old_file_when_replace_fails
      test_images.py::test_atomic_write_keeps_old_file_when_the_write_fails
 5  download corrupted, cut short, or SIGKILLed; killed mirror copy
      here: test_bad_download_is_refused_then_refetched[corrupt|truncate]
            test_download_killed_mid_transfer_then_refetched
            test_download_killed_mid_transfer_leaves_no_partial_file
            test_mirror_temp_of_a_killed_copy_is_cleaned_on_refetch
      test_download.py::test_corrupt_download_is_one_line_error_and_leaves_nothing
      test_download.py::test_interrupted_download_fails_then_rerun_succeeds
      test_download.py::test_truncated_body_without_length_or_hash_is_caught_and_discarded
      test_data.py::test_checksum_mismatch_in_mirror_is_refused
 6  zip slip / tar slip (../, absolute paths, links out)
      here: test_slipping_archive_is_refused[...]
            test_fetch_of_a_slipping_archive_writes_nothing_outside
      test_download.py::test_safe_extract_refuses_escaping_members
      test_download.py::test_fetch_refuses_a_slipping_archive
 7  decoded-image cache corrupted or stale
      here: test_corrupt_cache_is_detected_and_rebuilt[...]
            test_stale_cache_after_a_source_change_is_rebuilt[...]
      test_train.py::test_cache_is_reused_and_rebuilt_when_corrupt
 8  checkpoint truncated, of another architecture, or a pickle with code
      here: test_untrusted_checkpoint_is_refused[...]
            test_eval_cli_refuses_a_pickle_with_code
            test_resume_never_runs_code_from_a_planted_state_pt
      test_checkpoint.py::test_truncated_file_is_refused
      test_checkpoint.py::test_weights_of_another_architecture_are_refused
      test_checkpoint.py::test_malicious_pickle_is_refused_without_running
 9  NaN / inf loss
      here: test_nan_or_inf_loss_stops_and_keeps_the_last_good_state[nan|inf]
10  images: unreadable, odd but valid, smaller than the patch, huge
      here: test_unreadable_image_is_a_one_line_data_error[...]
            test_odd_but_valid_images_decode_and_train
            test_image_smaller_than_the_patch_names_the_file
            test_huge_image_upscales_in_bounded_memory (slow)
      test_images.py (every reading rule)
      test_upscale.py::test_large_image_runs_in_bounded_memory
      test_upscale.py::test_bad_files_reported_others_written
11  bad parameters: API, CLI, papermill
      here: test_bad_parameter_is_a_config_error_listing_valid_values[...]
            test_cli_bad_parameter_exits_2_with_one_line[...]
            test_cli_subprocess_unknown_task_exits_2
            test_train_checks_scale_and_loss_before_touching_data[...]
            test_papermill_typo_parameter_fails_the_page (slow)
      test_config.py::test_unknown_parameter_lists_valid_names
      test_config.py::test_bad_values
      test_config.py::test_unknown_profile_lists_profiles
      test_sweep.py::test_bad_arguments_are_one_line_errors
12  dataset missing or partly deleted
      here: test_partial_or_missing_dataset_is_refused
      test_data.py::test_partial_dataset_names_the_missing_file
      test_data.py::test_missing_dataset_names_the_fetch_command

Issue 14, trust nothing read back (tests in test_trust.py, "trust::" below; case 14.N there):
13  (14.1) damaged metrics.json (truncated, not UTF-8, [], no sets, edited or NaN PSNR, other
           counts or run, per_image.csv missing or disagreeing): named, left out, redone
      trust::test_damaged_run_is_named_and_left_out[...]
      trust::test_damaged_seed_is_named_not_published_as_fewer_seeds
      trust::test_sweep_names_damaged_runs_and_fails
      trust::test_a_damaged_run_is_redone_and_nothing_is_lost
      test_sweep.py::test_stamp_decides_what_is_up_to_date (fake runs pass check_run)
14  (14.2) `ablation eval --tile N` / `--self-ensemble` through the CLI
      trust::test_eval_cli_tile_and_self_ensemble
15  (14.3) truncated mirror manifest; fewer images than the set has; what a failed copy left
      trust::test_truncated_mirror_manifest_is_refused
      trust::test_a_dataset_with_fewer_images_is_refused_on_read
      trust::test_failed_mirror_copy_says_what_it_left
16  (14.4) three concurrent cache builders; index null / []; a file instead of the folder;
           a full disk under the cache
      trust::test_three_concurrent_cache_builders_on_a_fresh_data_folder
      trust::test_damaged_cache_index_or_folder_is_rebuilt[...]
      trust::test_cache_on_a_full_disk_is_a_one_line_error
17  (14.5) a finished run whose model.pt (or history.csv) is gone is not "reused"
      trust::test_finished_run_without_model_pt_is_trained_not_reused
      trust::test_damaged_run_is_named_and_left_out[model-missing|history-missing]
18  (14.6) sweep ranges checked before expanding, reversed/empty refused, --iterations >= 1
      trust::test_task_ranges_are_checked_before_expanding
      trust::test_sweep_refuses_bad_values_before_planning[...]
19  (14.7) checkpoint spec bounded; NaN/inf weights refused by eval and upscale
      trust::test_checkpoint_spec_is_bounded[...]
      trust::test_spec_limits_are_one_set_of_maxima_next_to_modelspec
      trust::test_nan_weights_are_refused_by_eval_and_upscale
20  (14.8) tracebacks turned into one line: devices, --model foo/bar, empty --scales/--sets,
           --learning-rate nan, a 1x1 image, broken links, sweep --tasks abc, a file as
           --book-dir/--results, an unwritable results folder, a book folder on a full disk,
           a non-UTF-8 stamp, papermill parameters (results_dir a file, seeds [-1],
           data_dir=/etc, iterations 0, an unknown device)
      trust::test_cli_value_is_a_one_line_error[...]
      trust::test_a_tiny_image_in_eval_names_the_file
      trust::test_broken_link_in_a_training_folder_names_it[dangling|loop]
      trust::test_sweep_book_dir_or_results_that_is_a_file
      trust::test_unwritable_results_folder_is_one_line
      trust::test_book_folder_on_a_full_disk_is_one_line
      trust::test_unreadable_page_stamp_is_redone_not_a_traceback
      trust::test_page_parameters_are_checked_before_any_run
      trust::test_cache_on_a_full_disk_is_a_one_line_error
21  (14.9) BSDS300 over HTTPS, no made-up checksum, checked against the train split's ids;
           archives capped at what their dataset needs
      trust::test_bsds300_has_https_and_no_made_up_checksum
      trust::test_bsds_archive_of_other_images_is_refused
      trust::test_archive_expanding_past_the_dataset_cap_is_refused[zip|tar]
22  (14.10) the sweep's book hint; a waiting train names whom it waits for; unsafe pickles
      trust::test_sweep_hint_for_a_folder_not_named_book
      trust::test_a_waiting_train_says_whom_it_waits_for
      trust::test_unsafe_pickle_is_called_unsafe
prop  random strings for every option of every command: exit 0 or 2, <= 3 stderr lines, no
      Traceback (hypothesis; ABLATION_PROPERTY_EXAMPLES=N for a longer hunt)
      trust::test_cli_parsers_take_any_string
      trust::test_the_cli_in_a_subprocess_never_prints_a_traceback

soak  three sweeps in a row; 3000 sampler batches
      here: test_soak_three_sweeps_leave_no_processes_temp_files_or_growth (slow)
            test_sampler_rss_is_flat_over_3000_batches

Run: ``.venv/bin/pytest tests/test_faults.py`` (2-4 minutes on 2 busy cores, slow tests
included; ``-m "not slow"`` skips the subprocess-heavy ones).
"""

from __future__ import annotations

import argparse
import errno
import gc
import json
import math
import os
import random
import shutil
import signal
import struct
import subprocess
import time
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
import torch
from fault_helpers import (
    PEAK_RSS,
    REPO,
    DiskFull,
    LoopbackServer,
    child_env,
    encoded,
    file_id,
    kernels_started_by,
    kill_pids,
    live_children,
    one_line,
    python,
    random_image,
    rss_mb,
    sha256,
    snapshot,
    t91_zip,
    tar_bytes,
    temp_leftovers,
    tree,
    wait_for,
    zip_bytes,
)
from PIL import Image

import ablation.train
from ablation import cache, cli, data, download, notebooks
from ablation import results as results_mod
from ablation.archives import safe_extract
from ablation.checkpoint import FORMAT, load_model, read_checkpoint, save_checkpoint
from ablation.config import make_config
from ablation.data import Source
from ablation.errors import CheckpointError, ConfigError, DataError
from ablation.fetch import fetch
from ablation.images import read_image
from ablation.models import ModelSpec, build_model
from ablation.resolve import data_fingerprint, split_files
from ablation.runs import RunLocked, run_lock, run_variant
from ablation.tasks import BASELINE, TASKS
from ablation.train import TrainingDiverged, train

BASELINE_VARIANT = TASKS[4].variant("baseline")
QUIET = dict(progress=False, val_every=10_000)  # validation only at the end: fast


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread here and in every kernel the sweeps start: on 2 cores shared with
    other jobs, two threads fighting make a sampler batch 10x slower."""
    threads, omp = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"
    yield
    torch.set_num_threads(threads)
    if omp is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    else:
        os.environ["OMP_NUM_THREADS"] = omp


def _run_folder(results: Path, task: int = 4, variant: str = "baseline") -> Path:
    return results_mod.run_dir("smoke", task, variant, 2, 0, results)


@pytest.fixture(scope="module")
def tiny_eval(tmp_path_factory) -> str:
    """A one-image evaluation set (48x48), so runs that must finish evaluate in no time."""
    folder = tmp_path_factory.mktemp("tiny_eval")
    random_image(5, (48, 48)).save(folder / "one.png")
    return str(folder)


@pytest.fixture(scope="module")
def t91_data(tmp_path_factory, mirror) -> Path:
    """A data dir holding only T91, fetched from the mirror once; tests copy it."""
    root = tmp_path_factory.mktemp("t91data")
    fetch("t91", root, mirror)
    return root


# =========================================================================== 1. SIGKILL


TRAIN_WORKER = """
import sys
import torch
torch.set_num_threads(1)
from ablation.tasks import TASKS
from ablation.train import train
out, data_dir, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
train(TASKS[4].variant("baseline"), 2, "smoke", out_dir=out, data_dir=data_dir, iterations=n,
      checkpoint_every=1, log_every=1, val_every=10_000, progress=False)
"""


def _train_worker(out: Path, data_dir: Path, n: int, log) -> subprocess.Popen:
    return subprocess.Popen([python(), "-c", TRAIN_WORKER, str(out), str(data_dir), str(n)],
                            env=child_env(), stdout=log, stderr=subprocess.STDOUT, cwd=REPO)


def _warm_smoke_cache(data_dir: Path) -> None:
    """Build the smoke profile's decoded cache now, so two concurrent workers never race to
    build it (each would otherwise decode T91 itself)."""
    config = make_config("smoke")
    tr, va = split_files(config, data_dir)
    cache.load_decoded(tr, 2, data_dir / "cache", label="t91", min_lr_size=config.lr_patch,
                       fingerprint=data_fingerprint(tr + va))


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume_is_bit_identical(data_dir, tmp_path):
    n = 80  # 25-60 ms per iteration here: three kills land well before the end
    _warm_smoke_cache(data_dir)
    log_path = tmp_path / "workers.log"
    rng = random.Random(20241125)
    run = tmp_path / "killed"
    reached: list[int] = []
    with open(log_path, "ab") as log:
        ref = _train_worker(tmp_path / "ref", data_dir, n, log)  # uninterrupted, alongside
        try:
            for _ in range(3):
                before = file_id(run / "state.pt")
                p = _train_worker(run, data_dir, n, log)
                try:
                    # a checkpoint written by this process, then a random moment later
                    wait_for(lambda b=before, p=p: file_id(run / "state.pt") not in (None, b)
                             or p.poll() is not None, 300, "a new checkpoint")
                    time.sleep(rng.uniform(0.0, 0.3))
                    p.send_signal(signal.SIGKILL)
                finally:
                    if p.poll() is None:
                        p.kill()
                    p.wait()
                assert p.returncode == -signal.SIGKILL, log_path.read_text()[-3000:]
                assert not (run / "model.pt").exists(), "finished before the kill: raise n"
                it = torch.load(run / "state.pt", map_location="cpu", weights_only=True)[
                    "iteration"]
                assert (reached[-1] if reached else 0) < it < n  # resumed and went on
                reached.append(it)
            final = _train_worker(run, data_dir, n, log)
            assert final.wait(600) == 0, log_path.read_text()[-3000:]
            assert ref.wait(600) == 0, log_path.read_text()[-3000:]
        finally:
            if ref.poll() is None:
                ref.kill()
                ref.wait()

    a = torch.load(tmp_path / "ref" / "model.pt", map_location="cpu", weights_only=True)
    b = torch.load(run / "model.pt", map_location="cpu", weights_only=True)
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    # the optimizer state (Adam moments, step) is identical too
    sa = torch.load(tmp_path / "ref" / "state.pt", map_location="cpu", weights_only=True)
    sb = torch.load(run / "state.pt", map_location="cpu", weights_only=True)
    for pid, st in sa["optimizer"]["state"].items():
        for name, value in st.items():
            assert torch.equal(value, sb["optimizer"]["state"][pid][name]), (pid, name)
    ha, hb = pd.read_csv(tmp_path / "ref" / "history.csv"), pd.read_csv(run / "history.csv")
    assert list(hb["iteration"]) == list(range(1, n + 1))  # no gap, no duplicate row
    np.testing.assert_allclose(hb["loss"], ha["loss"], rtol=1e-12, atol=0)
    np.testing.assert_allclose(hb["learning_rate"], ha["learning_rate"], rtol=1e-12, atol=0)


def test_temp_file_of_a_killed_write_is_cleaned_by_the_next_run(data_dir, tmp_path, tiny_eval):
    folder = _run_folder(tmp_path)
    folder.mkdir(parents=True)
    # what a kill between mkstemp and os.replace leaves behind (deterministic stand-in)
    (folder / ".state.pt.k1ll3d.tmp").write_bytes(b"half of a checkpoint")
    run_variant(4, "baseline", 2, "smoke", results_dir=tmp_path, data_dir=data_dir,
                iterations=2, eval_sets=(tiny_eval,), **QUIET)
    assert temp_leftovers(tmp_path) == []


# =========================================================================== 2. sweep killed


def _sweep_settings(argv: list[str]):
    from ablation import sweep

    parser = argparse.ArgumentParser()
    sweep.add_parser(parser.add_subparsers(dest="command"))
    return sweep.settings_from_args(parser.parse_args(["sweep", *argv]))


def _page_done(job, s) -> bool:
    from ablation import sweep

    return sweep.is_up_to_date(job, s, sweep.source_digest(
        notebooks.source_notebook(job.page, s.notebooks)))


@pytest.mark.slow
def test_sweep_killed_mid_run_then_rerun_finishes_the_rest(data_dir, tmp_path, capsys):
    from ablation import sweep

    results, book_dir = tmp_path / "results", tmp_path / "book"
    argv = ["--profile", "smoke", "--tasks", "4", "--scales", "2", "--no-pages",
            "--iterations", "12", "--results", str(results), "--book-dir", str(book_dir),
            "--data-dir", str(data_dir)]
    root = results / "smoke"

    def training_now():
        return [f.parent for f in root.glob("task*/*/x*/seed*/run.json")
                if not (f.parent / "metrics.json").exists()]

    log_path = tmp_path / "sweep.log"
    with open(log_path, "ab") as log:
        p = subprocess.Popen([python(), "-m", "ablation", "sweep", *argv], env=child_env(),
                             stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        wait_for(lambda: training_now() or p.poll() is not None, 300, "a run to start training")
        time.sleep(random.Random(2).uniform(0.2, 1.0))
        p.send_signal(signal.SIGKILL)
        p.wait()
        assert p.returncode == -signal.SIGKILL, log_path.read_text()[-3000:]
        # the page's kernel notices its parent died and exits by itself: no stray process
        wait_for(lambda: not kernels_started_by(p.pid), 30, "the orphaned kernel to exit")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        kill_pids(kernels_started_by(p.pid))

    # nothing half-written is ever taken as done
    for f in root.rglob("metrics.json"):
        assert json.loads(f.read_text())["config_hash"]  # every present one is complete
    for f in book_dir.rglob("*.ipynb"):
        if ".sweep-tmp" not in f.parts:
            nbformat.read(f, as_version=4)  # every page in place is complete JSON
    s = _sweep_settings(argv)
    (job,) = sweep.plan(s)
    assert not _page_done(job, s)
    unfinished = [k for k in job.expected_runs if results_mod.read_metrics(root / k) is None]
    assert unfinished, "the kill came after every run had finished"
    finished = {k: (root / k / "metrics.json").read_bytes() for k in job.expected_runs
                if k not in unfinished}

    assert sweep.main(argv) == 0
    assert "1 ran, 0 reused, 0 failed" in capsys.readouterr().out
    for key in job.expected_runs:
        assert results_mod.read_metrics(root / key) is not None, key
    for key, blob in finished.items():  # finished runs were reused, not redone
        assert (root / key / "metrics.json").read_bytes() == blob, key
    text = json.dumps(nbformat.read(job.output, as_version=4))
    assert "Traceback" not in text and "not run:" not in text
    assert _page_done(job, s)
    assert not list(book_dir.rglob(".sweep-tmp/*"))


# =========================================================================== 3. locks


def _write_notebook(folder: Path, name: str, code: str) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = dict(notebooks.KERNELSPEC)
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {name}", id="title"),
                nbformat.v4.new_code_cell('profile = "cpu"\nscales = [2]', id="params"),
                nbformat.v4.new_code_cell(code, id="body")]
    nb.cells[1].metadata["tags"] = ["parameters"]
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, folder / name)


@pytest.mark.slow
def test_second_sweep_refuses_and_a_waiting_one_runs_after(tmp_path):
    events, release = tmp_path / "events.log", tmp_path / "release"
    code = "\n".join([
        "import os, pathlib, time",
        f"log = pathlib.Path({str(events)!r})",
        "with open(log, 'a') as fh: fh.write('start %d\\n' % os.getpid())",
        f"while not pathlib.Path({str(release)!r}).exists(): time.sleep(0.05)",
        "with open(log, 'a') as fh: fh.write('end %d\\n' % os.getpid())",
    ])
    _write_notebook(tmp_path / "notebooks", "task02.ipynb", code)
    argv = [python(), "-m", "ablation", "sweep", "--profile", "smoke", "--tasks", "2",
            "--scales", "2", "--no-pages", "--notebooks", str(tmp_path / "notebooks"),
            "--results", str(tmp_path / "results"), "--book-dir", str(tmp_path / "book")]
    logs = {k: tmp_path / f"{k}.log" for k in ("first", "third")}
    procs: list[subprocess.Popen] = []
    try:
        with open(logs["first"], "wb") as fh:
            first = subprocess.Popen(argv, env=child_env(), stdout=fh, stderr=subprocess.STDOUT)
        procs.append(first)
        wait_for(lambda: events.exists() or first.poll() is not None, 180,
                 "the first sweep's notebook to start")
        assert first.poll() is None, logs["first"].read_text()[-3000:]

        second = subprocess.run(argv, env=child_env(), capture_output=True, text=True,
                                timeout=120)
        assert second.returncode == 2, second.stderr[-3000:]
        err = second.stderr.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: "), second.stderr
        assert "another sweep is running" in err[0] and f"pid {first.pid}" in err[0]
        assert "--wait" in err[0]

        with open(logs["third"], "wb") as fh:
            third = subprocess.Popen([*argv, "--wait"], env=child_env(), stdout=fh,
                                     stderr=subprocess.STDOUT)
        procs.append(third)
        wait_for(lambda: "waiting for the sweep" in logs["third"].read_text(), 120,
                 "the third sweep to wait for the lock")
        time.sleep(0.5)
        assert third.poll() is None and events.read_text().count("start") == 1
        release.touch()
        assert first.wait(180) == 0, logs["first"].read_text()[-3000:]
        assert third.wait(300) == 0, logs["third"].read_text()[-3000:]
    finally:
        release.touch()
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            kill_pids(kernels_started_by(proc.pid))
    # the two executions of the page never overlapped: start, end, start, end
    lines = [line.split() for line in events.read_text().splitlines()]
    assert [w for w, _ in lines] == ["start", "end", "start", "end"], lines
    assert lines[0][1] == lines[1][1] and lines[2][1] == lines[3][1]


LOCK_HOLDER = """
import pathlib, sys, time
from ablation.runs import run_lock
folder, release = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
with run_lock(folder, wait=False):
    print("locked", flush=True)
    while not release.exists():
        time.sleep(0.05)
"""


def test_run_lock_held_by_another_process(data_dir, tmp_path):
    results = tmp_path / "results"
    folder = _run_folder(results)
    release = tmp_path / "release"
    holder = subprocess.Popen([python(), "-c", LOCK_HOLDER, str(folder), str(release)],
                              env=child_env(), stdout=subprocess.PIPE, cwd=REPO)
    try:
        assert holder.stdout.readline().strip() == b"locked"
        with pytest.raises(RunLocked) as err, run_lock(folder, wait=False):
            pass
        msg = one_line(err.value)
        assert str(folder) in msg and "another process" in msg and "wait" in msg
        t0 = time.monotonic()
        with pytest.raises(RunLocked), run_lock(folder, wait=True, timeout=1.0):
            pass
        assert time.monotonic() - t0 >= 1.0  # waited first, then gave up
        with pytest.raises(RunLocked):  # a second writer of the same run is refused
            run_variant(4, "baseline", 2, "smoke", results_dir=results, data_dir=data_dir,
                        wait=False, **QUIET)
        assert sorted(p.name for p in folder.iterdir()) == [".lock"]  # it wrote nothing
    finally:
        release.touch()
        assert holder.wait(60) == 0
    with run_lock(folder, wait=False):  # released with its holder
        pass


# =========================================================================== 4. ENOSPC


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, data_dir, tiny_eval):
    """A results folder with one finished smoke run (4 iterations) of task 4 / baseline."""
    root = tmp_path_factory.mktemp("finished")
    m = run_variant(4, "baseline", 2, "smoke", results_dir=root, data_dir=data_dir,
                    iterations=4, checkpoint_every=2, log_every=2, eval_sets=(tiny_eval,),
                    **QUIET)
    return root, m


@pytest.mark.parametrize("target, mode, nth", [
    ("state.pt", "replace", 2), ("state.pt", "write", 2), ("history.csv", "write", 2),
    ("metrics.json", "replace", 1)], ids=lambda v: str(v))
def test_disk_full_keeps_earlier_files(finished_run, data_dir, tiny_eval, tmp_path, monkeypatch,
                                       target, mode, nth):
    """A longer run of the same variant re-trains into the finished run's folder; its
    ``nth`` write of ``target`` hits a full disk."""
    src, first = finished_run
    results = tmp_path / "results"
    shutil.copytree(src, results)
    folder = _run_folder(results)
    kw = dict(results_dir=results, data_dir=data_dir, checkpoint_every=2, log_every=2,
              eval_sets=(tiny_eval,), **QUIET)
    full = DiskFull(monkeypatch, folder, target, mode, nth)
    with pytest.raises(OSError) as err:
        run_variant(4, "baseline", 2, "smoke", iterations=8, **kw)
    assert full.fired == 1 and err.value.errno == errno.ENOSPC  # propagated, not swallowed
    one_line(err.value)
    assert full.before and "metrics.json" in full.before
    assert snapshot(folder) == full.before  # every earlier file byte-identical
    assert temp_leftovers(results) == []
    old = results_mod.check_run(folder)
    if target == "metrics.json":  # the new run's model.pt and per_image.csv are in, its
        # metrics.json is not: the old one no longer describes the folder; named, redone below
        assert old.metrics is None and "per_image.csv" in one_line(old.problem)
    else:  # the finished run is still there, still itself
        assert old.metrics["config_hash"] == first["config_hash"]
        assert old.metrics["iterations"] == 4

    full.disarm()  # space freed: the rerun resumes and finishes
    m = run_variant(4, "baseline", 2, "smoke", iterations=8, **kw)
    assert not m["reused"] and m["iterations"] == 8
    assert list(pd.read_csv(folder / "history.csv")["iteration"]) == [2, 4, 6, 8]
    assert temp_leftovers(results) == []


def test_disk_full_in_the_cli_is_a_one_line_error(data_dir, tmp_path, monkeypatch, capsys):
    DiskFull(monkeypatch, _run_folder(tmp_path), "state.pt", "replace", 1)
    rc = cli.main(["train", "--task", "4", "--variant", "baseline", "--profile", "smoke",
                   "--iterations", "2", "--results", str(tmp_path), "--data-dir",
                   str(data_dir)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert err[-1].startswith("error: ") and "state.pt" in err[-1]
    assert "No space left on device" in err[-1] and "free" in err[-1]


# =========================================================================== 5. downloads


@pytest.fixture
def server():
    srv = LoopbackServer()
    yield srv
    srv.close()


@pytest.fixture
def fast_download(monkeypatch):
    monkeypatch.setattr(download, "RETRY_DELAYS", (0.0,))
    monkeypatch.setattr(download, "TIMEOUT_S", 5.0)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.delenv("ABLATION_MIRROR", raising=False)


def _t91_sources(url: str, payload: bytes) -> dict:
    return {"t91": (Source(url, sha256(payload), len(payload)),)}


def _assert_t91_installed(root: Path) -> None:
    files = data.verify_folder(root / "train" / "T91", data.fix_command("t91"), full=True)
    assert [f.name for f in files] == ["t1.png", "t2.png", "t3.png"]


@pytest.mark.parametrize("mode", ["corrupt", "truncate"])
def test_bad_download_is_refused_then_refetched(server, fast_download, tmp_path, mode):
    payload = t91_zip()
    url = server.serve("SRCNN_train.zip", payload, mode)
    with pytest.raises(DataError) as err:
        fetch("t91", tmp_path, sources=_t91_sources(url, payload))
    msg = one_line(err.value)
    assert url in msg and ("checksum mismatch" if mode == "corrupt" else "interrupted") in msg
    assert "ablation data fetch t91" in msg  # the fix
    assert not (tmp_path / "train" / "T91").exists()
    assert list((tmp_path / "downloads").iterdir()) == []  # partial / bad file removed
    assert temp_leftovers(tmp_path) == []
    hits = server.hits["/SRCNN_train.zip"]
    server.serve("SRCNN_train.zip", payload, "ok")
    fetch("t91", tmp_path, sources=_t91_sources(url, payload))
    assert server.hits["/SRCNN_train.zip"] > hits  # fetched again, nothing stale reused
    _assert_t91_installed(tmp_path)


FETCH_WORKER = """
import sys
from ablation import download
from ablation.data import Source
from ablation.fetch import fetch
download.TIMEOUT_S = 120.0
root, url, digest, size = sys.argv[1:5]
fetch("t91", root, sources={"t91": (Source(url, digest, int(size)),)})
"""


def _kill_mid_download(server: LoopbackServer, root: Path) -> dict:
    """Start a fetch in a subprocess, SIGKILL it once half the archive is on disk; then
    serve the archive properly and return the sources for the rerun."""
    payload = t91_zip()
    url = server.serve("SRCNN_train.zip", payload, "stall")
    proc = subprocess.Popen([python(), "-c", FETCH_WORKER, str(root), url, sha256(payload),
                             str(len(payload))], env=child_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=REPO)

    def partial_on_disk() -> bool:
        try:
            return any(p.stat().st_size > 0 for p in (root / "downloads").iterdir())
        except OSError:
            return False

    try:
        wait_for(lambda: partial_on_disk() or proc.poll() is not None, 60, "a partial download")
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    server.serve("SRCNN_train.zip", payload, "ok")
    return _t91_sources(url, payload)


def test_download_killed_mid_transfer_then_refetched(server, fast_download, tmp_path):
    sources = _kill_mid_download(server, tmp_path)
    assert not (tmp_path / "train" / "T91").exists()
    assert not (tmp_path / "downloads" / "SRCNN_train.zip").exists()  # never looks complete
    fetch("t91", tmp_path, sources=sources)
    _assert_t91_installed(tmp_path)


def test_download_killed_mid_transfer_leaves_no_partial_file(server, fast_download, tmp_path):
    sources = _kill_mid_download(server, tmp_path)
    fetch("t91", tmp_path, sources=sources)
    assert temp_leftovers(tmp_path) == []


def test_mirror_temp_of_a_killed_copy_is_cleaned_on_refetch(t91_data, tmp_path, mirror):
    root = tmp_path / "data"
    shutil.copytree(t91_data, root)
    (root / "train" / "T91" / ".fetch.k1ll3d").write_bytes(b"half an image")
    fetch("t91", root, mirror)
    assert temp_leftovers(root) == []


# =========================================================================== 6. zip / tar slip


@pytest.mark.parametrize("kind", ["zip-dotdot", "zip-absolute", "tar-dotdot", "tar-absolute",
                                  "tar-symlink"])
def test_slipping_archive_is_refused(tmp_path, kind):
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "data" / "extract"
    absolute = str(outside / "abs-escape.txt")
    ok = {"fine/ok.txt": b"harmless"}
    archive = tmp_path / ("a.zip" if kind.startswith("zip") else "a.tar")
    if kind == "zip-dotdot":
        archive.write_bytes(zip_bytes({**ok, "../../outside/escape.txt": b"evil"}))
    elif kind == "zip-absolute":
        archive.write_bytes(zip_bytes({**ok, absolute: b"evil"}))
    elif kind == "tar-dotdot":
        archive.write_bytes(tar_bytes({**ok, "x/../../../outside/escape.txt": b"evil"}))
    elif kind == "tar-absolute":
        archive.write_bytes(tar_bytes({**ok, absolute: b"evil"}))
    else:  # a link out of the folder, then a member written through it
        archive.write_bytes(tar_bytes({**ok, "link/escape.txt": b"evil"},
                                      symlinks={"link": "../../outside"}))
    before = tree(tmp_path, exclude=tmp_path / "data")
    with pytest.raises(DataError) as err:
        safe_extract(archive, dest)
    msg = one_line(err.value)
    assert str(archive) in msg and "unsafe member" in msg and "delete it" in msg
    assert tree(tmp_path, exclude=tmp_path / "data") == before  # nothing outside
    assert list(outside.iterdir()) == []
    assert not dest.exists() or list(dest.iterdir()) == []  # checked before writing anything


def test_fetch_of_a_slipping_archive_writes_nothing_outside(server, fast_download, tmp_path):
    payload = zip_bytes({"Train/t1.bmp": encoded(random_image(1, (20, 16)), "BMP"),
                         "../../escaped.bmp": b"evil"})
    url = server.serve("SRCNN_train.zip", payload)
    root = tmp_path / "data"
    before = tree(tmp_path, exclude=root)
    with pytest.raises(DataError) as err:
        fetch("t91", root, sources=_t91_sources(url, payload))
    assert "unsafe member" in one_line(err.value)
    assert tree(tmp_path, exclude=root) == before
    assert not (root / "train" / "T91").exists()
    assert list((root / "downloads").iterdir()) == []  # the hostile archive is not kept
    assert temp_leftovers(root) == []


# =========================================================================== 7. cache


@pytest.fixture
def cache_src(tmp_path, mirror) -> list[Path]:
    """Three T91 images as BMP (fixed file size for fixed dimensions) in a custom folder."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("t1.png", "t2.png", "t3.png"):
        Image.open(mirror / "train" / "T91" / name).convert("RGB").save(
            src / name.replace(".png", ".bmp"))
    return sorted(src.glob("*.bmp"))


def _load(files: list[Path], root: Path) -> cache.DecodedSet:
    return cache.load_decoded(files, 2, root, label="faults", min_lr_size=8)


def _assert_same(a: cache.DecodedSet, b: cache.DecodedSet) -> None:
    for field in ("hr", "lr", "hr_shapes", "hr_offsets", "lr_offsets"):
        assert np.array_equal(getattr(a, field), getattr(b, field)), field


def _cache_folder(root: Path) -> Path:
    (folder,) = [p for p in root.iterdir() if not p.name.startswith(".")]
    return folder


def _no_decode(*args, **kwargs):
    raise AssertionError("decoded again: the rebuilt cache was not reused")


@pytest.mark.parametrize("how", [
    "flip-hr-bytes", "truncate-lr", "garbage-index", "delete-hr",
    "index-digit-flipped"])
def test_corrupt_cache_is_detected_and_rebuilt(cache_src, tmp_path, monkeypatch, how):
    root = tmp_path / "cache"
    _load(cache_src, root)
    folder = _cache_folder(root)
    if how == "flip-hr-bytes":
        raw = bytearray((folder / "hr.npy").read_bytes())
        for i in (-10, -5000, len(raw) // 2):
            raw[i] ^= 0xFF
        (folder / "hr.npy").write_bytes(bytes(raw))
    elif how == "truncate-lr":
        raw = (folder / "lr.npy").read_bytes()
        (folder / "lr.npy").write_bytes(raw[: len(raw) // 2])
    elif how == "garbage-index":
        (folder / "index.json").write_bytes(b"\x00{not json at all")
    elif how == "delete-hr":
        (folder / "hr.npy").unlink()
    else:
        index = json.loads((folder / "index.json").read_text())
        index["hr_shapes"][0][0] -= 2  # e.g. 255 -> 253: still valid JSON
        (folder / "index.json").write_text(json.dumps(index))
    again = _load(cache_src, root)
    fresh = _load(cache_src, tmp_path / "fresh")
    _assert_same(again, fresh)
    monkeypatch.setattr(cache, "_decode", _no_decode)  # the rebuilt cache is valid on disk
    _assert_same(_load(cache_src, root), fresh)
    assert temp_leftovers(tmp_path) == []


@pytest.mark.parametrize("keep_size_and_mtime", [False, True])
def test_stale_cache_after_a_source_change_is_rebuilt(cache_src, tmp_path, keep_size_and_mtime):
    root = tmp_path / "cache"
    first = _load(cache_src, root)
    victim = cache_src[1]
    st = victim.stat()
    time.sleep(0.01)
    Image.fromarray(255 - np.asarray(Image.open(victim))).save(victim)  # new content
    if keep_size_and_mtime:
        assert victim.stat().st_size == st.st_size  # BMP: same dimensions, same size
        os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
    again = _load(cache_src, root)
    fresh = _load(cache_src, tmp_path / "fresh")
    assert not np.array_equal(first.hr, fresh.hr)
    _assert_same(again, fresh)
    _cache_folder(root)  # exactly one cache folder: the stale one was dropped


# =========================================================================== 8. checkpoints


class _Payload:
    """Pickles as a call to os.system that creates a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


TINY = ModelSpec(input="lr", n_blocks=1, n_feats=8)


def _bad_checkpoint(path: Path, kind: str, marker: Path) -> Path:
    torch.manual_seed(0)
    save_checkpoint(path, build_model(TINY, 2))
    if kind == "truncated":
        raw = path.read_bytes()
        path.write_bytes(raw[: len(raw) * 2 // 3])
    elif kind == "other-architecture":  # spec says one network, weights are another's
        state = torch.load(path, weights_only=True)
        state["spec"] = ModelSpec(input="lr", n_blocks=3, n_feats=8).to_dict()
        torch.save(state, path)
    elif kind == "pickle-with-code":
        torch.save({"format": FORMAT, "spec": TINY.to_dict(), "scale": 2, "model": {},
                    "x": _Payload(marker)}, path)
    elif kind == "plain-state-dict":
        torch.save(build_model(TINY, 2).state_dict(), path)
    elif kind == "garbage":
        path.write_bytes(os.urandom(3000))
    return path


CHECKPOINT_FAULTS = ["truncated", "other-architecture", "pickle-with-code", "plain-state-dict",
                     "garbage"]


@pytest.mark.parametrize("kind", CHECKPOINT_FAULTS)
def test_untrusted_checkpoint_is_refused(tmp_path, capsys, kind):
    marker = tmp_path / "pwned"
    path = _bad_checkpoint(tmp_path / "bad.pt", kind, marker)
    with pytest.raises(CheckpointError) as err:
        load_model(path)
    msg = one_line(err.value)
    assert str(path) in msg and any(w in msg for w in ("retrain", "re-download", "train"))
    if kind == "pickle-with-code":
        assert "unsafe pickle" in msg
    rc = cli.main(["eval", "--model", str(path), "--scales", "2", "--sets", "Set5",
                   "--data-dir", str(tmp_path)])
    err_lines = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err_lines) == 1 and err_lines[0].startswith("error: ")
    assert str(path) in err_lines[0]
    assert not marker.exists()


def test_eval_cli_refuses_a_pickle_with_code(tmp_path):
    marker = tmp_path / "pwned"
    path = _bad_checkpoint(tmp_path / "evil.pt", "pickle-with-code", marker)
    proc = subprocess.run([python(), "-m", "ablation", "eval", "--model", str(path), "--scales",
                           "2", "--sets", "Set5", "--data-dir", str(tmp_path)],
                          env=child_env(), capture_output=True, text=True, timeout=180,
                          cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "refusing to load: unsafe pickle" in lines[0] and str(path) in lines[0]
    assert not marker.exists()


def test_resume_never_runs_code_from_a_planted_state_pt(data_dir, tmp_path):
    out, marker = tmp_path / "run", tmp_path / "pwned"
    out.mkdir()
    torch.save({"format": FORMAT, "x": _Payload(marker)}, out / "state.pt")
    train(BASELINE_VARIANT, 2, "smoke", out_dir=out, data_dir=data_dir, iterations=2, **QUIET)
    assert not marker.exists()
    assert read_checkpoint(out / "state.pt")["iteration"] == 2  # replaced by a real state


# =========================================================================== 9. NaN / inf


class _PoisonedLoss(torch.nn.Module):
    """L1 until the ``k``-th call, then ``value`` (NaN or inf) times it."""

    def __init__(self, k: int, value: float, on_poison) -> None:
        super().__init__()
        self.k, self.value, self.on_poison, self.calls = k, value, on_poison, 0

    def forward(self, sr_img, hr_img):
        self.calls += 1
        loss = torch.nn.functional.l1_loss(sr_img / 255.0, hr_img / 255.0)
        if self.calls == self.k:
            self.on_poison()
        return loss * self.value if self.calls >= self.k else loss


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 1e6],
                         ids=["nan", "inf", "finite-explosion"])
def test_nan_or_inf_loss_stops_and_keeps_the_last_good_state(data_dir, tmp_path, monkeypatch,
                                                             value):
    out, k = tmp_path / "run", 5  # checkpoints at 2 and 4; bad from iteration 5 on
    good: dict[str, bytes] = {}
    real = ablation.train.make_loss
    monkeypatch.setattr(ablation.train, "make_loss",
                        lambda *a, **kw: _PoisonedLoss(k, value, lambda: good.update(
                            snapshot(out))))
    kw = dict(out_dir=out, data_dir=data_dir, checkpoint_every=2, log_every=2, **QUIET)
    with pytest.raises(TrainingDiverged) as err:
        train(BASELINE_VARIANT, 2, "smoke", iterations=12, **kw)
    msg = one_line(err.value)
    if math.isfinite(value):  # caught where the blown-up loss is logged: the mean of 5 and 6
        assert "loss exploded at iteration 6" in msg and "over 100x its best" in msg
    else:
        assert f"iteration {k}" in msg
    assert str(out / "state.pt") in msg
    assert "learning_rate" in msg  # the fix
    assert good and snapshot(out) == good  # last good state.pt and history.csv intact
    state = read_checkpoint(out / "state.pt")
    assert state["iteration"] == 4
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    assert not (out / "model.pt").exists() and temp_leftovers(tmp_path) == []

    monkeypatch.setattr(ablation.train, "make_loss", real)  # resume from the good state
    res = train(BASELINE_VARIANT, 2, "smoke", iterations=12, **kw)
    assert list(res.history["iteration"]) == [2, 4, 6, 8, 10, 12]
    assert np.isfinite(res.history["loss"]).all()


def test_a_diverged_run_is_recorded_and_not_retrained_blindly(data_dir, tmp_path, monkeypatch):
    """Divergence is an outcome of the recipe (PReLU seed 2 at the cpu profile's 2e-3): the run
    folder keeps diverged.json (where, why, config hash) for the pages; the next call fails at
    once with that record instead of retraining into the same blow-up; --retrain tries again,
    and a finished run drops the record."""
    real = ablation.train.make_loss
    monkeypatch.setattr(ablation.train, "make_loss",
                        lambda *a, **kw: _PoisonedLoss(5, 1e6, lambda: None))
    kw = dict(results_dir=tmp_path / "results", data_dir=data_dir, iterations=12,
              checkpoint_every=2, log_every=2, **QUIET)
    with pytest.raises(TrainingDiverged) as err:
        run_variant(4, "baseline", 2, "smoke", 0, **kw)
    assert err.value.iteration == 6
    folder = results_mod.run_dir("smoke", 4, "baseline", 2, 0, tmp_path / "results")
    record = results_mod.read_diverged(folder)
    assert record["iteration"] == 6 and record["seed"] == 0 and record["profile"] == "smoke"
    assert record["message"].startswith("loss exploded at iteration 6: ")
    assert str(tmp_path) not in json.dumps(record)  # committed as is: no machine path
    assert results_mod.diverged_seeds("smoke", 4, "baseline", 2, tmp_path / "results") == \
        {0: record}

    def no_training(*a, **k):
        raise AssertionError("retrained a run recorded as diverged")

    monkeypatch.setattr(ablation.runs, "train", no_training)
    with pytest.raises(TrainingDiverged) as again:
        run_variant(4, "baseline", 2, "smoke", 0, **kw)
    msg = one_line(again.value)
    assert msg.startswith(f"{folder / 'diverged.json'}: this run diverged before (loss exploded")
    assert msg.endswith("rerun with --retrain to try again") and again.value.iteration == 6

    monkeypatch.setattr(ablation.runs, "train", train)
    monkeypatch.setattr(ablation.train, "make_loss", real)
    m = run_variant(4, "baseline", 2, "smoke", 0, retrain=True, **kw)
    assert m["reused"] is False and not (folder / "diverged.json").exists()
    (folder / "diverged.json").write_text("{}")  # a finished run outranks a stale record
    assert results_mod.read_diverged(folder) is None
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "diverged.json").write_text("{not json")
    with pytest.warns(results_mod.DamagedRunWarning, match="damaged divergence record"):
        assert results_mod.read_diverged(bad) is None


# =========================================================================== 10. images


def _write_bad_image(folder: Path, kind: str) -> Path:
    png = encoded(random_image(7, (64, 48)), "PNG")
    if kind == "corrupt-header":  # IHDR width byte flipped: header checksum fails
        path = folder / "a_bad.png"
        path.write_bytes(png[:17] + bytes([png[17] ^ 0x55]) + png[18:])
    elif kind == "truncated-png":
        path = folder / "a_bad.png"
        path.write_bytes(png[: len(png) // 2])
    elif kind == "truncated-jpeg":
        path = folder / "a_bad.jpg"
        jpg = encoded(random_image(7, (64, 48)), "JPEG", quality=90)
        path.write_bytes(jpg[: len(jpg) // 2])
    elif kind == "zero-bytes":
        path = folder / "a_bad.png"
        path.write_bytes(b"")
    else:  # not an image at all
        path = folder / "a_bad.png"
        path.write_text("id,label\n1,cat\n")
    return path


def _custom_train_folder(folder: Path, n: int = 4, size=(64, 48)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        random_image(100 + i, size).save(folder / f"img{i}.png")
    return folder


@pytest.mark.parametrize("kind", ["corrupt-header", "truncated-png", "truncated-jpeg",
                                  "zero-bytes", "not-an-image"])
def test_unreadable_image_is_a_one_line_data_error(tmp_path, kind):
    folder = _custom_train_folder(tmp_path / "train")
    bad = _write_bad_image(folder, kind)  # sorts first: lands in the training split
    with pytest.raises(DataError) as err:
        read_image(bad)
    msg = one_line(err.value)
    # a user's own training folder (no dataset manifest): fix the file, not "fetch it again" (#15)
    assert str(bad) in msg and "re-export" in msg and "fetch" not in msg
    with pytest.raises(DataError) as err:  # training refuses before writing anything
        train(BASELINE_VARIANT, 2, "smoke", out_dir=tmp_path / "run", train_set=str(folder),
              data_dir=tmp_path / "data", iterations=2, **QUIET)
    assert str(bad) in one_line(err.value)
    assert not (tmp_path / "run").exists()


@pytest.mark.filterwarnings("ignore:.*alpha channel dropped")
def test_odd_but_valid_images_decode_and_train(tmp_path):
    folder = tmp_path / "odd"
    folder.mkdir()
    rgb = np.asarray(random_image(1, (48, 40)))
    Image.fromarray(rgb[:, :, 0]).save(folder / "gray.png")
    Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 128, np.uint8)])).save(
        folder / "rgba.png")
    deep = (np.arange(40 * 48, dtype=np.uint32).reshape(40, 48) * 31 % 65536).astype(np.uint16)
    Image.fromarray(deep).save(folder / "deep16.png")
    Image.fromarray(rgb).convert("P").save(folder / "palette.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated by 90 degrees
    Image.fromarray(rgb).save(folder / "rotated.jpg", quality=95, exif=exif.tobytes())

    assert np.array_equal(read_image(folder / "gray.png"), rgb[:, :, :1])
    with pytest.warns(UserWarning, match="alpha channel dropped"):
        assert np.array_equal(read_image(folder / "rgba.png"), rgb)
    expected16 = np.floor(deep.astype(np.float64) / 257 + 0.5).astype(np.uint8)
    assert np.array_equal(read_image(folder / "deep16.png")[:, :, 0], expected16)
    pal = read_image(folder / "palette.png")
    assert pal.shape == (40, 48, 3)
    assert np.array_equal(pal, np.asarray(Image.open(folder / "palette.png").convert("RGB")))
    assert read_image(folder / "rotated.jpg").shape == (48, 40, 3)  # EXIF applied

    res = train(BASELINE_VARIANT, 2, "smoke", train_set=str(folder), data_dir=tmp_path / "data",
                iterations=2, **QUIET)
    assert np.isfinite(res.history["loss"]).all()


def test_image_smaller_than_the_patch_names_the_file(tmp_path):
    folder = _custom_train_folder(tmp_path / "train")
    random_image(9, (20, 20)).save(folder / "a_small.png")  # HR patch is 32x32 at x2
    with pytest.raises(DataError) as err:
        train(BASELINE_VARIANT, 2, "smoke", out_dir=tmp_path / "run", train_set=str(folder),
              data_dir=tmp_path / "data", iterations=2, **QUIET)
    msg = one_line(err.value)
    assert str(folder / "a_small.png") in msg and "smaller than the HR patch" in msg
    assert "lower lr_patch" in msg
    with pytest.raises(DataError, match="img0.png"):  # every image too small for the patch
        train(BASELINE_VARIANT, 2, "smoke", train_set=str(_custom_train_folder(
            tmp_path / "t2")), data_dir=tmp_path / "data", lr_patch=40, iterations=2, **QUIET)


HUGE_CHILD = PEAK_RSS + """
import json, sys, time
reset_peak()  # the child's own peak: ru_maxrss would start at the pytest process's peak
import torch
torch.set_num_threads(1)
from ablation import upscale
big, ckpt, out = sys.argv[1:4]
t0 = time.perf_counter()
rec = upscale.upscale_files([big], 2, checkpoint=ckpt, out_dir=out, tile=1024,
                            progress=False)[0]
print(json.dumps({"error": rec.error, "size": rec.out_size,
                  "seconds": time.perf_counter() - t0, "maxrss_mb": peak_mb()}))
"""


@pytest.mark.slow
def test_huge_image_upscales_in_bounded_memory(tmp_path):
    side = 8000  # 64 MP in, 256 MP out at x2; whole-image inference would need > 10 GB
    ramp = np.arange(side, dtype=np.uint16)
    Image.fromarray(((ramp[None, :] * 7 + ramp[:, None] * 3) % 256).astype(np.uint8)).save(
        tmp_path / "big.png", compress_level=1)
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "tiny.pt",
                    build_model(ModelSpec(input="lr", n_blocks=0, n_feats=1, n_colors=1), 2))
    proc = subprocess.run([python(), "-c", HUGE_CHILD, str(tmp_path / "big.png"),
                           str(tmp_path / "tiny.pt"), str(tmp_path / "out")],
                          env=child_env(), capture_output=True, text=True,
                          timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info["error"] is None and info["size"] == [2 * side, 2 * side], info
    assert info["maxrss_mb"] < 2500, info  # peak of the whole process, torch included
    with open(tmp_path / "out" / "big_x2_tiny.png", "rb") as fh:
        head = fh.read(24)  # PNG IHDR: the full image was written
    assert struct.unpack(">II", head[16:24]) == (2 * side, 2 * side)


# =========================================================================== 11. parameters


@pytest.mark.parametrize("case", ["unknown-profile", "make_config-typo", "negative-iterations",
                                  "unknown-task", "unknown-variant", "scale-5",
                                  "run_variant-typo", "run_variant-profile"])
def test_bad_parameter_is_a_config_error_listing_valid_values(tmp_path, case):
    results = tmp_path / "results"
    rv = dict(results_dir=results, data_dir=tmp_path / "no-data")
    calls = {
        "unknown-profile": (lambda: make_config("gpu"),
                            ["'gpu'", "smoke, cpu, cpu4, cpu16, paper"]),
        "make_config-typo": (lambda: make_config("smoke", iteratons=5),
                             ["'iteratons'", "'iterations'", "'batch_size'"]),
        "negative-iterations": (lambda: make_config("smoke", iterations=-3),
                                ["iterations", "positive", "-3"]),
        "unknown-task": (lambda: run_variant(12, "baseline", 2, "smoke", **rv),
                         ["task 12", "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11"]),
        "unknown-variant": (lambda: run_variant(4, "baselin", 2, "smoke", **rv),
                            ["'baselin'", "baseline"]),
        "scale-5": (lambda: run_variant(4, "baseline", 5, "smoke", **rv), ["5", "2, 3, 4"]),
        "run_variant-typo": (lambda: run_variant(4, "baseline", 2, "smoke", iteratons=5, **rv),
                             ["'iteratons'", "'iterations'"]),
        "run_variant-profile": (lambda: run_variant(4, "baseline", 2, "gpu", **rv),
                                ["'gpu'", "smoke, cpu, cpu4, cpu16, paper"]),
    }
    call, expected = calls[case]
    with pytest.raises(ConfigError) as err:
        call()
    msg = one_line(err.value)
    for text in expected:
        assert text in msg, (text, msg)
    assert "valid" in msg or "positive" in msg
    assert not results.exists()  # refused before any file was written


CLI_BAD = {
    "task-12": (["train", "--task", "12", "--variant", "baseline"], "1, 2, 3"),
    "variant": (["train", "--task", "4", "--variant", "nope"], "baseline"),
    "scale-5": (["train", "--task", "4", "--variant", "baseline", "--scale", "5"], "2, 3, 4"),
    "profile": (["train", "--task", "4", "--variant", "baseline", "--profile", "gpu"],
                "smoke, cpu, cpu4, cpu16, paper"),
    "iterations": (["train", "--task", "4", "--variant", "baseline", "--profile", "smoke",
                    "--iterations", "-5"], "positive integer"),
    "eval-scale": (["eval", "--model", "bicubic", "--scales", "5"], "2, 3, 4"),
    "dataset": (["data", "fetch", "t92"], "t91"),
}


@pytest.mark.parametrize("case", list(CLI_BAD))
def test_cli_bad_parameter_exits_2_with_one_line(tmp_path, capsys, case):
    argv, expected = CLI_BAD[case]
    extra = ["--results", str(tmp_path / "r")] if argv[0] == "train" else []
    rc = cli.main([*argv, *extra, "--data-dir", str(tmp_path / "d")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert err[0].startswith("error: ") and expected in err[0]
    assert not (tmp_path / "r").exists() and not (tmp_path / "d").exists()


def test_cli_subprocess_unknown_task_exits_2(tmp_path):
    proc = subprocess.run([python(), "-m", "ablation", "train", "--task", "12", "--variant",
                           "baseline", "--results", str(tmp_path)], env=child_env(),
                          capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: unknown task 12; valid values: 1, 2, 3")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("bad", ["scale", "loss"])
def test_train_checks_scale_and_loss_before_touching_data(tmp_path, bad):
    folder = _custom_train_folder(tmp_path / "train", n=3)
    kwargs = dict(scale=5) if bad == "scale" else dict(scale=2, loss="l3")
    with pytest.raises(ConfigError) as err:
        train(BASELINE, kwargs.pop("scale"), "smoke", train_set=str(folder), val_images=1,
              data_dir=tmp_path / "data", out_dir=tmp_path / "run", iterations=2, **kwargs,
              **QUIET)
    assert "valid values" in one_line(err.value)
    assert not (tmp_path / "data").exists() and not (tmp_path / "run").exists()


@pytest.mark.slow
def test_papermill_typo_parameter_fails_the_page(tmp_path, monkeypatch):
    import papermill as pm

    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("ABLATION_NONINTERACTIVE", "1")
    with pytest.raises(pm.PapermillExecutionError) as err:
        pm.execute_notebook(str(REPO / "notebooks" / "task04.ipynb"), str(tmp_path / "o.ipynb"),
                            parameters=dict(profile="smoke", iteratons=5,
                                            data_dir=str(tmp_path / "no-data"),
                                            results_dir=str(tmp_path / "results")),
                            kernel_name="python3", progress_bar=False, log_output=False,
                            cwd=str(tmp_path), start_timeout=180)
    assert err.value.ename == "ConfigError"
    assert "iteratons" in err.value.evalue and "iterations" in err.value.evalue


# =========================================================================== 12. partial data


def test_partial_or_missing_dataset_is_refused(t91_data, tmp_path, capsys):
    root = tmp_path / "data"
    shutil.copytree(t91_data, root)
    t91 = root / "train" / "T91"
    victims = sorted(t91.glob("*.png"))[10:13]
    for v in victims:
        v.unlink()
    run = tmp_path / "run"
    with pytest.raises(DataError) as err:
        train(BASELINE_VARIANT, 2, "smoke", out_dir=run, data_dir=root, iterations=2, **QUIET)
    msg = one_line(err.value)
    assert any(str(v) in msg for v in victims) and "3 of 91" in msg
    assert "ablation data fetch t91" in msg
    assert not run.exists() and not (root / "cache").exists()  # nothing trained or decoded

    rc = cli.main(["train", "--task", "4", "--variant", "baseline", "--profile", "smoke",
                   "--data-dir", str(root), "--results", str(tmp_path / "results")])
    err_lines = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err_lines) == 1 and "ablation data fetch t91" in err_lines[0]

    (t91 / "SHA256SUMS").unlink()  # the whole dataset reads as not fetched
    with pytest.raises(DataError) as err:
        train(BASELINE_VARIANT, 2, "smoke", out_dir=run, data_dir=root, iterations=2, **QUIET)
    msg = one_line(err.value)
    assert "not fetched" in msg and "ablation data fetch t91" in msg
    assert not run.exists()


# =========================================================================== soak


@pytest.mark.slow
def test_soak_three_sweeps_leave_no_processes_temp_files_or_growth(data_dir, tmp_path, capsys):
    from ablation import sweep

    results, book_dir = tmp_path / "results", tmp_path / "book"
    argv = ["--profile", "smoke", "--tasks", "4,9", "--scales", "2", "--no-pages",
            "--iterations", "2", "--results", str(results), "--book-dir", str(book_dir),
            "--data-dir", str(data_dir)]
    before_children = set(live_children())
    expected = ["2 ran, 0 reused, 0 failed", "1 ran, 1 reused, 0 failed",
                "0 ran, 2 reused, 0 failed"]
    rss = []
    for round_ in range(3):
        if round_ == 1:  # an invalidated run: its page re-executes and the run retrains
            (_run_folder(results, 9, "l2") / "metrics.json").unlink()
        rc = sweep.main(argv)
        out = capsys.readouterr().out
        assert rc == 0 and expected[round_] in out, out
        wait_for(lambda: set(live_children()) <= before_children
                 and not kernels_started_by(os.getpid()), 30, "the kernels to exit")
        assert temp_leftovers(results, book_dir, data_dir) == []
        gc.collect()
        rss.append(rss_mb())
    assert rss[2] - rss[0] < 100, rss  # MiB


def test_sampler_rss_is_flat_over_3000_batches(data_dir, tmp_path):
    from ablation.sampler import PatchSampler

    files = split_files(make_config("smoke"), data_dir)[0][:20]
    ds = cache.load_decoded(files, 2, tmp_path, label="soak", min_lr_size=24)
    sampler = PatchSampler(ds, 24, 16, torch.device("cpu"), torch.Generator().manual_seed(0))
    for _ in range(200):  # warm up allocator caches
        sampler.sample()
    gc.collect()
    before = rss_mb()
    checksum = 0.0
    for _ in range(3000):
        lr, hr = sampler.sample()
        checksum += float(lr[0, 0, 0, 0])
    gc.collect()
    assert rss_mb() - before < 50
    assert lr.shape == (16, 3, 24, 24) and hr.shape == (16, 3, 48, 48) and checksum >= 0

