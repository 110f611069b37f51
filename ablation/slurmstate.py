"""Where each run of a sweep stands: done, running, queued, failed or to run.

Read from the results folder and the queue only (no daemon, no database; see
:mod:`ablation.slurm`): a run is *done* when its ``metrics.json`` carries the config hash the
sweep's pages would give it now; *running* while its ``.lock`` is held or its last job (in
``<run>/slurm/job.json``) is running; *queued* while that job waits in ``squeue``; *failed*
when that job ended without finishing it (with the job's end state and its log's last line);
*to run* otherwise. ``ablation sweep --status`` prints :func:`status_report`; the SLURM
executor decides from :func:`run_states` what to submit and waits on it.
"""

from __future__ import annotations

import fcntl
import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ablation.errors import ConfigError

JOBS_DIR = ".slurm"  # submitit's job folders, under <results>/<profile>/
RECORD = "job.json"  # <run>/slurm/job.json: the run's submissions
LIVE = {"PENDING": "queued", "REQUEUED": "queued", "REQUEUE_HOLD": "queued",
        "REQUEUE_FED": "queued", "CONFIGURING": "running", "RUNNING": "running",
        "COMPLETING": "running", "SUSPENDED": "running", "STOPPED": "running",
        "SIGNALING": "running", "STAGE_OUT": "running", "RESIZING": "running"}


# --------------------------------------------------------------------------- run states


KEY_RE = re.compile(r"task(\d+)/([^/]+)/x(\d+)/seed(\d+)")


def parse_key(key: str) -> tuple[int, str, int, int]:
    """'task04/baseline/x2/seed0' -> (4, 'baseline', 2, 0): the inverse of PlannedRun.key."""
    m = KEY_RE.fullmatch(key)
    if m is None:
        raise ConfigError(f"{key!r} is not a run key like task04/baseline/x2/seed0")
    return int(m[1]), m[2], int(m[3]), int(m[4])


@dataclass
class RunState:
    """Where one run stands: done, running, queued, failed or todo (not submitted)."""

    key: str
    state: str
    job_id: str = ""
    detail: str = ""  # failed: the job's end state and its log's last line


def expected_hash(s, key: str) -> str:
    """The config hash the sweep's pages would give this run (see RunJob); the device is not
    part of it (a login node without the jobs' GPU resolves the same hash)."""
    from ablation.resolve import resolve_run
    from ablation.tasks import get_task

    task, variant, scale, seed = parse_key(key)
    return resolve_run(get_task(task).variant(variant), scale, s.profile, data_dir=s.data_dir,
                       seed=seed, iterations=s.iterations).config_hash


def read_record(run_folder: Path) -> list[dict]:
    """The run's submissions, oldest first ([] when none)."""
    try:
        return json.loads((run_folder / "slurm" / RECORD).read_text())["jobs"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError, TypeError):
        return []


def lock_held(run_folder: Path) -> bool:
    """True while some process holds the run's flock (probes it without waiting)."""
    lock = run_folder / ".lock"
    if not lock.exists():
        return False
    with open(lock, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
    return False


def queue_states() -> dict[str, str] | None:
    """Job id -> SLURM state of every job the controller knows, recently ended ones included
    (``squeue -t all`` keeps them for MinJobAge); every user's, as a group may share one
    results folder; None when squeue is not available here."""
    if shutil.which("squeue") is None:
        return None
    proc = subprocess.run(["squeue", "-h", "-r", "-t", "all", "-o", "%i|%T"],
                          capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        return None
    return dict(line.split("|", 1) for line in proc.stdout.split() if "|" in line)


def ended_states(job_ids: list[str]) -> dict[str, str]:
    """End states from accounting (``sacct``) for jobs squeue has forgotten; {} without it."""
    if not job_ids or shutil.which("sacct") is None:
        return {}
    proc = subprocess.run(["sacct", "-n", "-P", "-X", "-o", "JobID,State", "-j",
                           ",".join(job_ids)], capture_output=True, text=True, timeout=60)
    out = {}
    for line in proc.stdout.splitlines() if proc.returncode == 0 else []:
        job, _, state = line.partition("|")
        out[job] = state.split()[0] if state else ""
    return out


def run_states(s, keys: list[str], hashes: dict[str, str] | None = None) -> list[RunState]:
    """The state of every run in ``keys`` (one squeue call). ``hashes``: the runs' expected
    config hashes, when the caller already has them."""
    from ablation.stamps import run_hash

    hashes = hashes or {key: expected_hash(s, key) for key in keys}
    records = {key: read_record(s.results_root / key) for key in keys}
    queue = queue_states() if any(records.values()) else {}
    states = []
    for key in keys:
        folder = s.results_root / key
        last = records[key][-1] if records[key] else None
        job_id = last["job_id"] if last else ""
        if run_hash(s.results_root, key) == hashes[key]:
            states.append(RunState(key, "done", job_id))
        elif last and queue is not None and queue.get(job_id) in LIVE:
            states.append(RunState(key, LIVE[queue[job_id]], job_id))
        elif lock_held(folder):
            states.append(RunState(key, "running", "", "its lock is held by a process"))
        elif last and last.get("config_hash") != hashes[key]:
            states.append(RunState(key, "todo", "", f"job {job_id} ran another configuration"))
        elif last and queue is None:
            states.append(RunState(key, "unknown", job_id, "squeue is not available here"))
        elif last:
            states.append(RunState(key, "failed", job_id, ""))
        else:
            states.append(RunState(key, "todo"))
    failed = [st for st in states if st.state == "failed"]
    ended = ended_states([st.job_id for st in failed if st.job_id not in (queue or {})])
    for st in failed:
        end = (queue or {}).get(st.job_id) or ended.get(st.job_id) or "ENDED"
        st.detail = f"{end}: {last_log_line(job_folder(s, st.job_id), st.job_id)}"
    return states


def job_folder(s, job_id: str) -> Path:
    """submitit's folder of one job (logs, pickles)."""
    return s.results_root / JOBS_DIR / job_id


SUBMITIT_LOG = re.compile(r"^submitit (DEBUG|INFO|WARNING|ERROR|CRITICAL) \(")


def last_log_line(folder: Path, job_id: str) -> str:
    """The last informative line of the job's logs (stderr, then stdout): the error of a
    failed run, or SLURM's 'CANCELLED' notice; srun's and submitit's own lines are skipped."""
    for name in (f"{job_id}_0_log.err", f"{job_id}_0_log.out"):
        try:
            text = (folder / name).read_text(errors="replace")
        except FileNotFoundError:
            continue
        lines = [x.strip() for x in re.split(r"[\r\n]+", text)]
        lines = [x for x in lines if x and not x.startswith("srun: ")
                 and not SUBMITIT_LOG.match(x)]
        if lines:
            line = lines[-1]
            return line if len(line) <= 300 else line[:297] + "..."
    return f"no log in {folder} (the job never started)"



# --------------------------------------------------------------------------- reporting


def counts(states: list[RunState]) -> str:
    """'5 runs: 2 done, 1 running, 1 queued, 1 failed, 0 to run'."""
    n = {k: sum(st.state == k for st in states)
         for k in ("done", "running", "queued", "failed", "todo", "unknown")}
    text = (f"{len(states)} runs: {n['done']} done, {n['running']} running, {n['queued']} "
            f"queued, {n['failed']} failed, {n['todo']} to run")
    return text + (f", {n['unknown']} unknown" if n["unknown"] else "")


def status_report(s, states: list[RunState]) -> str:
    """``ablation sweep --status``: one line per run of the selection."""
    lines = [f"status (profile {s.profile}, results {s.results_root}): {counts(states)}"]
    for st in states:
        job = f"job {st.job_id}" if st.job_id and st.state != "done" else ""
        name = "to run" if st.state == "todo" else st.state
        detail = f"  {st.detail}" if st.detail else ""
        log = (f" (log: {job_folder(s, st.job_id) / f'{st.job_id}_0_log.err'})"
               if st.state == "failed" else "")
        lines.append(f"  {name:8s} {st.key:34s} {job}{detail}{log}".rstrip())
    return "\n".join(lines)

