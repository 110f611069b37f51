"""``ablation sweep --executor slurm`` against a real one-node SLURM (.ci/slurm-up.sh).

The ``slurm_cluster`` fixture starts the cluster when none answers and stops what it started;
it skips only where the SLURM binaries are missing outside CI (in CI that is a failure).
Jobs train the ``smoke`` profile (seconds) with one core each; runs compared with a local
run use one thread there too, so both sum in the same order and must agree exactly.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch

from ablation import slurm, slurmstate, sweep
from ablation.checkpoint import read_checkpoint
from ablation.config import PROFILE_NAMES
from ablation.planning import planned_runs
from ablation.runs import run_lock

REPO = Path(__file__).resolve().parents[1]
BINARIES = ("sbatch", "squeue", "scancel", "scontrol", "sinfo", "slurmctld", "slurmd")
# task 4's page with seeds 0 and 1: bicubic once, two seeds of its baseline and of its variant
TASK4_RUNS = ["task00/bicubic/x2/seed0", "task03/8layers_grc/x2/seed0",
              "task03/8layers_grc/x2/seed1", "task04/baseline/x2/seed0", "task04/baseline/x2/seed1"]
KEY = "task04/baseline/x2/seed0"


def _cluster_answers() -> bool:
    if not all(shutil.which(b) for b in ("sinfo", "sbatch")):
        return False
    proc = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True,
                          timeout=30)
    return proc.returncode == 0 and any(
        s.startswith(("idle", "mix", "alloc")) for s in proc.stdout.split())


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """A SLURM cluster that answers: the one running, or .ci/slurm-up.sh's (stopped after)."""
    if _cluster_answers():
        yield
        return
    in_ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    missing = [b for b in BINARIES if shutil.which(b) is None]
    if missing and not in_ci:
        pytest.skip(f"SLURM is not installed ({', '.join(missing)} missing): run "
                    ".ci/slurm-up.sh as root to install and start a one-node cluster")
    env = {**os.environ, "ABLATION_SLURM_STARTED": str(tmp_path_factory.mktemp("slurm") /
                                                        "started")}  # what this fixture starts
    up = subprocess.run(["bash", str(REPO / ".ci" / "slurm-up.sh")], capture_output=True,
                        text=True, timeout=900, env=env)
    try:
        if up.returncode != 0 or not _cluster_answers():
            pytest.fail(f"could not start SLURM with .ci/slurm-up.sh: {up.stdout[-1500:]}"
                        f"{up.stderr[-1500:]}")
        yield
    finally:
        subprocess.run(["bash", str(REPO / ".ci" / "slurm-down.sh")], timeout=120, env=env)


def cli(tmp_path: Path, data_dir: Path, *extra: str, results: str = "results") -> list[str]:
    return ["--tasks", "4", "--scales", "2", "--seeds", "0,1", "--profile", "smoke", "--no-pages",
            "--results", str(tmp_path / results), "--book-dir", str(tmp_path / f"book-{results}"),
            "--data-dir", str(data_dir), *extra]


def settings(root: Path, data_dir: Path, **kw) -> sweep.Settings:
    return sweep.Settings(tasks=[4], scales=[2], profile="smoke", seeds=[0, 1], results_dir=root,
                          data_dir=str(data_dir), book_dir=root / "book", pages=False, **kw)


def squeue(*args: str) -> str:
    return subprocess.run(["squeue", "-h", "-r", "-t", "all", *args], capture_output=True,
                          text=True, check=True).stdout


def wait_until(what: str, check, timeout: float = 240.0, every: float = 0.2):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(every)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


# --------------------------------------------------------------------------- no cluster needed


def test_resources_cover_every_profile_and_become_sbatch_options():
    assert set(slurm.RESOURCES) == set(PROFILE_NAMES)
    opts = slurm.SlurmOptions(partition="gpu", account="lab", extra=(("qos", "high"),
                                                                    ("exclusive", True)))
    r = slurm.RESOURCES["paper"]
    p = slurm.sbatch_parameters("paper", r, opts)
    assert (p["gpus_per_node"], p["cpus_per_task"], p["mem"], p["time"]) == \
        (r.gpus, r.cpus, f"{r.mem_gb}GB", r.hours * 60)
    assert (p["partition"], p["account"]) == ("gpu", "lab")
    assert p["additional_parameters"] == {"qos": "high", "exclusive": True}
    smoke = slurm.sbatch_parameters("smoke", slurm.RESOURCES["smoke"], slurm.SlurmOptions())
    assert "gpus_per_node" not in smoke and "partition" not in smoke
    # bicubic evaluates only: no GPU; the cost bound counts the trained runs' GPU-hours
    keys = ["task00/bicubic/x2/seed0", "task04/baseline/x2/seed0", "task04/baseline/x3/seed0"]
    assert slurm.job_resources(keys[0], "paper").gpus == 0
    assert slurm.job_resources(keys[1], "paper") == r
    assert slurm.cost(keys, "paper") == (f"2 GPU jobs, at most {2 * r.hours:g} GPU-hours "
                                         "(time limits) + 1 CPU-only jobs (computed references)")


def test_run_keys_round_trip():
    for run in planned_runs(4, [2], [0, 1], (), "smoke") + planned_runs(0, [3], [0], (), "paper"):
        assert slurmstate.parse_key(run.key) == (run.task, run.variant, run.scale, run.seed)
    with pytest.raises(slurm.ConfigError, match="not a run key"):
        slurmstate.parse_key("task4/baseline")


@pytest.mark.parametrize("bad, option", [(["--slurm-opt", "=x"], "--slurm-opt"),
                                         (["--slurm-opt", "qos="], "--slurm-opt"),
                                         (["--executor", "pbs"], "--executor")])
def test_bad_executor_arguments_are_refused(tmp_path, capsys, bad, option):
    with pytest.raises(SystemExit) as exc:
        sweep.main(["--profile", "smoke", "--results", str(tmp_path / "r"), *bad])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and f"argument {option}" in err[0]


def test_no_wait_needs_the_slurm_executor(tmp_path, capsys):
    assert sweep.main(["--profile", "smoke", "--results", str(tmp_path / "r"), "--no-wait"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: --no-wait only applies to --executor slurm"


def test_last_log_line_skips_srun_and_submitit_lines(tmp_path):
    (tmp_path / "7_0_log.err").write_text(
        "train:  50%|#####| 6/12\rtrain: 100%|#####| 12/12\n"
        "Traceback (most recent call last):\nablation.errors.DataError: x: set missing\n"
        "submitit ERROR (2026-01-01 00:00:00,000) - Submitted job triggered an exception\n"
        "srun: error: vm: task 0: Exited with exit code 1\n")
    assert slurmstate.last_log_line(tmp_path, "7") == "ablation.errors.DataError: x: set missing"
    assert "never started" in slurmstate.last_log_line(tmp_path, "8")


# --------------------------------------------------------------------------- the real cluster


@pytest.mark.slow
def test_smoke_sweep_on_slurm_matches_the_local_executor(slurm_cluster, data_dir, tmp_path,
                                                         capsys):
    # the local executor in a subprocess meanwhile (one thread, like the one-core jobs)
    local = subprocess.Popen([sys.executable, "-m", "ablation", "sweep",
                              *cli(tmp_path, data_dir, results="local")],
                             env={**os.environ, "OMP_NUM_THREADS": "1"},
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    argv = cli(tmp_path, data_dir, "--executor", "slurm", "--slurm-poll", "1",
               "--slurm-partition", "debug")
    assert sweep.main(argv) == 0
    out = capsys.readouterr().out
    assert "5 runs: 0 done, 5 submitted" in out and "1 ran, 0 reused, 0 failed" in out
    assert local.wait(timeout=900) == 0, local.stdout.read()[-3000:]

    root_s, root_l = tmp_path / "results/smoke", tmp_path / "local/smoke"
    jobs = [slurmstate.read_record(root_s / key)[-1]["job_id"] for key in TASK4_RUNS]
    array = {j.split("_")[0] for j in jobs}
    assert len(array) == 1 and sorted(j.split("_")[1] for j in jobs) == list("01234")
    for key, job in zip(TASK4_RUNS, jobs, strict=True):
        ms, ml = (json.loads((r / key / "metrics.json").read_text()) for r in (root_s, root_l))
        assert ms["config_hash"] == ml["config_hash"], key
        assert ms["sets"] == ml["sets"], key  # exactly: PSNR and SSIM to the last bit
        ps, pl = (pd.read_csv(r / key / "per_image.csv") for r in (root_s, root_l))
        assert ps[["image", "psnr", "ssim"]].equals(pl[["image", "psnr", "ssim"]]), key
        log = root_s / key / "slurm" / job / f"{job}_0_log.out"  # the run's folder links it
        assert "Job completed successfully" in log.read_text()
    array_id = array.pop()
    script = (root_s / ".slurm" / array_id / f"{array_id}_submission.sh").read_text()
    assert "#SBATCH --partition=debug" in script and "#SBATCH --cpus-per-task=1" in script

    assert sweep.main([*argv, "--status"]) == 0
    assert "5 runs: 5 done, 0 running, 0 queued, 0 failed, 0 to run" in capsys.readouterr().out
    # a later sweep reuses every finished run (config hash) and the page
    assert sweep.main(argv) == 0
    out = capsys.readouterr().out
    assert "5 runs: 5 done, 0 submitted" in out and "0 ran, 1 reused, 0 failed" in out


def seconds_per_iteration(data_dir: Path, root: Path, iters: int = 30) -> float:
    """Wall seconds per smoke iteration on one thread (what a one-core job gets), validation
    and checkpoints included: the rows of a short local run's history."""
    from ablation.runs import run_variant

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_variant(4, "baseline", 2, "smoke", 0, results_dir=root, data_dir=data_dir,
                    iterations=iters)
    finally:
        torch.set_num_threads(threads)
    h = pd.read_csv(root / "smoke" / KEY / "history.csv")
    first, last = h.iloc[1], h.iloc[-1]  # from the second row: past the first-step warm-up
    return (last["seconds"] - first["seconds"]) / (last["iteration"] - first["iteration"])


@pytest.mark.slow
def test_cancelled_and_preempted_jobs_resume_bit_identical(slurm_cluster, data_dir, tmp_path):
    # submitit ignores scancel's SIGTERM and SLURM kills KillWait (2 s) later, so a job
    # caught in its first half must still have far more than 2 s to go: size the run to this
    # machine (about 12 s of training; the checkpoint read lands in iterations [6, iters/2])
    per_iter = seconds_per_iteration(data_dir, tmp_path / "speed")
    iters = max(60, 6 * math.ceil(12.0 / per_iter / 6))
    runs = {name: settings(tmp_path / name, data_dir, iterations=iters)
            for name in ("cancelled", "preempted", "reference")}
    opts = slurm.SlurmOptions(poll=1.0)
    ids = {name: slurm.submit(s, opts, [KEY])[0] for name, s in runs.items()}
    state = {name: s.results_root / KEY / "state.pt" for name, s in runs.items()}

    def mid_training(name: str) -> int:
        """Wait for a checkpoint in the run's first half; returns its iteration."""
        def check():
            assert not (runs[name].results_root / KEY / "metrics.json").exists(), \
                f"{name}: finished before it could be interrupted"
            try:
                it = read_checkpoint(state[name])["iteration"]
            except Exception:  # not written yet
                return 0
            return it if 6 <= it <= iters // 2 else 0
        return wait_until(f"{name} mid-training", check)

    # both interrupted runs start first (one core each); the reference queues behind them
    cancel_at = mid_training("cancelled")
    subprocess.run(["scancel", ids["cancelled"]], check=True)
    preempt_at = mid_training("preempted")
    job = ids["preempted"]  # pre-emption / time limit: SIGUSR2 (submitit's protocol)
    subprocess.run(["scancel", "--signal=USR2", job], check=True)

    # scancel: the job is gone; the next sweep resubmits it and it resumes from state.pt
    (st,) = wait_until("the cancelled job to end", lambda: [
        x for x in slurmstate.run_states(runs["cancelled"], [KEY]) if x.state == "failed"])
    assert st.job_id == ids["cancelled"] and "CANCELLED" in st.detail
    assert cancel_at <= read_checkpoint(state["cancelled"])["iteration"] < iters
    # the next sweep resubmits it (its own decision: the run failed, no job is queued)
    assert slurm.execute(runs["cancelled"], replace(opts, wait=False), keys=[KEY]) == 0

    # SIGUSR2: submitit calls RunJob.checkpoint and requeues the same job id; SLURM holds a
    # requeued job for 120 s (its BeginTime): release it now to save the wait
    wait_until("the requeue", lambda: "PENDING" in squeue("-j", job, "-o", "%T"))
    subprocess.run(["scontrol", "update", f"jobid={job}", "starttime=now"], check=True)
    for name, s in runs.items():
        assert [x.state for x in slurm.wait_for(s, [KEY], poll=1.0)] == ["done"], name
    log = (runs["preempted"].results_root / ".slurm" / job / f"{job}_0_log.out").read_text()
    assert "this job is preempted" in log and "Calling checkpoint method" in log
    assert f"Requeued job {job}" in log and log.count("Starting with JobEnvironment") == 2
    record = slurmstate.read_record(runs["cancelled"].results_root / KEY)
    resubmitted = [j["job_id"] for j in record]
    assert resubmitted[0] == ids["cancelled"] and len(resubmitted) == 2
    assert 6 <= preempt_at < iters

    ref = runs["reference"].results_root / KEY
    for name in ("cancelled", "preempted"):
        run = runs[name].results_root / KEY
        w_ref = torch.load(ref / "model.pt", weights_only=True)["model"]
        w = torch.load(run / "model.pt", weights_only=True)["model"]
        assert w.keys() == w_ref.keys() and all(torch.equal(w[k], w_ref[k]) for k in w), name
        m_ref, m = (json.loads((r / "metrics.json").read_text()) for r in (ref, run))
        assert m["sets"] == m_ref["sets"] and m["config_hash"] == m_ref["config_hash"], name
        h_ref, h = (pd.read_csv(r / "history.csv") for r in (ref, run))
        assert h["loss"].equals(h_ref["loss"]) and len(h) > 0, name


@pytest.mark.slow
def test_failing_job_is_reported_with_its_log_line(slurm_cluster, data_dir, tmp_path, capsys):
    empty = tmp_path / "no-data"  # the node can't see the benchmark sets: bicubic fails
    empty.mkdir()
    s = settings(tmp_path / "results", empty)
    assert slurm.execute(s, slurm.SlurmOptions(poll=1.0), keys=["task00/bicubic/x2/seed0"]) == 1
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if "task00/bicubic/x2/seed0" in x)
    assert line.split()[0] == "failed" and "FAILED: ablation.errors.DataError: " in line
    assert f"{empty}/benchmark: dataset missing" in line and "ablation data fetch" in line
    assert "pages not executed" in out
    # --status through the command line: the same line, the other runs still to run
    assert sweep.main(["--tasks", "4", "--scales", "2", "--seeds", "0,1", "--profile", "smoke",
                       "--no-pages", "--results", str(tmp_path / "results"), "--data-dir",
                       str(data_dir), "--status"]) == 0
    out = capsys.readouterr().out
    assert "5 runs: 0 done, 0 running, 0 queued, 1 failed, 4 to run" in out
    assert "dataset missing or not fetched" in out


@pytest.mark.slow
def test_queued_and_locked_runs_are_not_submitted_twice(slurm_cluster, data_dir, tmp_path,
                                                        capsys):
    argv = cli(tmp_path, data_dir, "--executor", "slurm", "--no-wait",
               "--slurm-opt", "begin=now+3600")  # stays queued
    root = tmp_path / "results/smoke"
    submitted = []
    try:
        with run_lock(root / "task04/baseline/x2/seed1"):  # 'trained by another process'
            assert sweep.main(argv) == 0
            assert "5 runs: 0 done, 4 submitted" in capsys.readouterr().out
            submitted = [slurmstate.read_record(root / k)[-1]["job_id"] for k in TASK4_RUNS
                         if k != "task04/baseline/x2/seed1"]
            assert not slurmstate.read_record(root / "task04/baseline/x2/seed1")
            array = submitted[0].split("_")[0]
            assert squeue("-j", array, "-o", "%T").split() == ["PENDING"] * 4
            # a second sweep while they are queued submits nothing
            assert sweep.main(argv) == 0
            assert "0 submitted, 5 already queued or running" in capsys.readouterr().out
            assert sweep.main([*argv, "--status"]) == 0
            status = capsys.readouterr().out
        assert "5 runs: 0 done, 1 running, 4 queued, 0 failed, 0 to run" in status
        for key, job in zip([k for k in TASK4_RUNS if k != "task04/baseline/x2/seed1"],
                            submitted, strict=True):
            assert f"queued   {key}" in status and f"job {job}" in status
            assert len(slurmstate.read_record(root / key)) == 1
        assert "running  task04/baseline/x2/seed1" in status and "lock is held" in status
        assert len(squeue("-j", array, "-o", "%i").split()) == 4
    finally:
        for job in submitted:
            subprocess.run(["scancel", job], check=False)


@pytest.mark.slow
def test_sbatch_refusal_is_a_one_line_error(slurm_cluster, data_dir, tmp_path, capsys):
    argv = cli(tmp_path, data_dir, "--executor", "slurm", "--no-wait",
               "--slurm-partition", "no-such-partition")
    assert sweep.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: sbatch refused the jobs: ")
    assert "invalid partition" in err[0].lower() and "--slurm-partition" in err[0]
    assert not list((tmp_path / "results/smoke").glob("task*/*/x*/seed*/slurm/job.json"))
