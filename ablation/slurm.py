"""``ablation sweep --executor slurm``: every run of a sweep as a SLURM job, through submitit.

The book's pages train whatever run they miss, inside one notebook process on one machine.
On a cluster that is the wrong place, so the SLURM executor first gets every run the selected
pages show finished, one job per run (task, variant, scale, seed; the runs of one submission
go out as one job array), waits for them, then executes the pages locally exactly as
``--executor local`` does: they find every run finished and only read it.

The results folder is the only coordination (no daemon, no database; the states below are
read by :mod:`ablation.slurmstate`, which ``ablation sweep --status`` prints):

- a run is *done* when its ``metrics.json`` carries the config hash that
  :func:`ablation.resolve.resolve_run` gives it now: the local executor's own reuse test;
- a run whose ``.lock`` (an flock: see :func:`ablation.runs.run_lock`) is held is being
  trained by some process: it is not submitted;
- each submission is recorded in the run's ``slurm/job.json`` (job id, config hash); a run
  whose last job is still in the queue (``squeue``) is not submitted again. So a second
  ``ablation sweep`` while jobs are queued submits nothing twice, and after ``--no-wait`` a
  later sweep (any executor) picks up what finished. A failed or cancelled run is submitted
  again by the next sweep.

Logs: submitit's job folder ``<results>/<profile>/.slurm/<job id>/`` (stdout, stderr, the
pickled call and its result), linked from the run's folder as ``slurm/<job id>``.

Pre-emption and time limits (submitit's checkpoint protocol): submitit asks SLURM for SIGUSR2
90 s before the time limit (``--signal=USR2@90``), and pre-emption sends it as well; submitit
then calls :meth:`RunJob.checkpoint`, which hands back the same call, requeues the job and
exits. The requeued job resumes from the run's ``state.pt`` (written atomically every
``checkpoint_every`` iterations; weights, optimizer, schedule, RNG and iteration), so it ends
bit-identical to an uninterrupted run; only the iterations since the last checkpoint are
done twice. A job killed outright (``scancel``, a node failure) resumes the same way when the
next ``ablation sweep`` resubmits it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass, replace

from ablation.errors import AblationError, ConfigError
from ablation.slurmstate import (
    JOBS_DIR,
    RECORD,
    RunState,
    counts,
    expected_hash,
    job_folder,
    parse_key,
    read_record,
    run_states,
    status_report,
)

EXECUTORS = ("local", "slurm")
MAX_REQUEUES = 4  # requeues after a time limit (submitit counts pre-emptions apart)


@dataclass(frozen=True)
class Resources:
    """What one run's job asks for. ``hours`` is the time limit; a run that needs longer is
    requeued (at most ``MAX_REQUEUES`` times) and resumes from its checkpoint."""

    gpus: int
    cpus: int
    mem_gb: int
    hours: float


RESOURCES = {
    # seconds of training; 1 core each so that two jobs share a 2-core test node
    "smoke": Resources(gpus=0, cpus=1, mem_gb=4, hours=0.25),
    # 2,000 iterations: 8-20 min a run on 2 cores (the committed runs), evaluation included
    "cpu": Resources(gpus=0, cpus=2, mem_gb=8, hours=2.0),
    # the compute ladder: the cpu recipe with 4x / 16x the iterations
    "cpu4": Resources(gpus=0, cpus=2, mem_gb=8, hours=6.0),
    "cpu16": Resources(gpus=0, cpus=2, mem_gb=8, hours=20.0),
    # 300k iterations on DIV2K: ~10 GPU-hours a variant in the original study; patches are
    # sampled on the GPU, so a few cores suffice (evaluation and the decoded-image cache)
    "paper": Resources(gpus=1, cpus=4, mem_gb=32, hours=12.0),
}


def job_resources(key: str, profile: str) -> Resources:
    """The profile's resources; a computed reference (bicubic: evaluated, never trained)
    needs no GPU."""
    from ablation.tasks import get_task

    task, variant, _, _ = parse_key(key)
    r = RESOURCES[profile]
    computed = get_task(task).variant(variant).spec is None
    return replace(r, gpus=0, hours=min(r.hours, 1.0)) if computed else r


class SubmitError(AblationError):
    """sbatch refused the jobs (bad partition, account or option) or SLURM is missing."""


@dataclass(frozen=True)
class SlurmOptions:
    """The command line's SLURM options."""

    partition: str | None = None
    account: str | None = None
    extra: tuple[tuple[str, str | bool], ...] = ()  # --slurm-opt KEY=VALUE, passed to sbatch
    wait: bool = True  # False: --no-wait
    poll: float = 15.0  # seconds between looks at the queue and the results folder


# --------------------------------------------------------------------------- the job


@dataclass(frozen=True)
class RunJob:
    """One run as a SLURM job: what submitit pickles and calls on the node. Its arguments
    are the ones a task page passes to ``run_variant``, so the config hash is the same."""

    key: str  # 'task04/baseline/x2/seed0'
    profile: str
    results_dir: str
    data_dir: str | None
    device: str = "auto"
    iterations: int | None = None

    def __call__(self) -> dict:
        import torch

        from ablation.runs import run_variant

        cpus = os.environ.get("SLURM_CPUS_PER_TASK")
        if cpus:  # the job's share, not every core of the node
            torch.set_num_threads(int(cpus))
        task, variant, scale, seed = parse_key(self.key)
        m = run_variant(task, variant, scale, self.profile, seed, results_dir=self.results_dir,
                        data_dir=self.data_dir, device=self.device, iterations=self.iterations)
        return {k: m.get(k) for k in ("config_hash", "sets", "train_seconds", "reused")}

    def checkpoint(self, *args, **kwargs):
        """submitit calls this on SIGUSR2 (time limit near, pre-emption): requeue the same
        call; ``train`` resumes from the run's ``state.pt``."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, *args, **kwargs)


# --------------------------------------------------------------------------- submitting


def sbatch_parameters(profile: str, r: Resources, opts: SlurmOptions) -> dict:
    """submitit's SlurmExecutor parameters: a job's resources plus the options."""
    params = dict(job_name=f"ablation-{profile}", nodes=1, ntasks_per_node=1,
                  cpus_per_task=r.cpus, mem=f"{r.mem_gb}GB", time=max(1, round(r.hours * 60)))
    if r.gpus:
        params["gpus_per_node"] = r.gpus
    if opts.partition:
        params["partition"] = opts.partition
    if opts.account:
        params["account"] = opts.account
    if opts.extra:
        params["additional_parameters"] = dict(opts.extra)
    return params


def submit(s, opts: SlurmOptions, keys: list[str]) -> list[str]:
    """Submit one job per run (one array per set of resources); record each in the run's
    folder. Returns the job ids, in the order of ``keys``."""
    if not keys:
        return []
    if shutil.which("sbatch") is None:
        raise SubmitError("sbatch not found: run the slurm executor on a SLURM login node, or "
                          "use --executor local")
    groups: dict[Resources, list[str]] = {}
    for key in keys:
        groups.setdefault(job_resources(key, s.profile), []).append(key)
    ids = {}
    for resources, group in groups.items():
        for key, job_id in zip(group, _submit_array(s, opts, resources, group), strict=True):
            record_job(s, key, job_id)  # at once: a later sbatch refusal loses no record
            ids[key] = job_id
    return [ids[key] for key in keys]


def _submit_array(s, opts: SlurmOptions, resources: Resources, keys: list[str]) -> list[str]:
    """One sbatch (an array when several runs) through submitit; the job ids."""
    import submitit

    executor = submitit.SlurmExecutor(folder=s.results_root / JOBS_DIR / "%j",
                                      max_num_timeout=MAX_REQUEUES)
    executor.update_parameters(**sbatch_parameters(s.profile, resources, opts))
    calls = [RunJob(key, s.profile, str(s.results_dir), s.data_dir, s.device, s.iterations)
             for key in keys]
    try:  # submitit prints sbatch's complaint too: it goes into the one-line error instead
        with contextlib.redirect_stderr(io.StringIO()), executor.batch():
            jobs = [executor.submit(call) for call in calls]
    except submitit.core.utils.FailedJobError as exc:
        first = (str(exc).strip().splitlines() or ["no message"])[-1]
        raise SubmitError(f"sbatch refused the jobs: {first}; check --slurm-partition, "
                          "--slurm-account and --slurm-opt") from None
    return [job.job_id for job in jobs]


def record_job(s, key: str, job_id: str) -> None:
    """Append the job to ``<run>/slurm/job.json`` and link its folder there."""
    from ablation.fs import atomic_write_text

    slurm_dir = s.results_root / key / "slurm"
    slurm_dir.mkdir(parents=True, exist_ok=True)
    link = slurm_dir / job_id
    if not link.is_symlink():
        link.symlink_to(os.path.relpath(job_folder(s, job_id), slurm_dir))
    jobs = read_record(s.results_root / key) + [dict(
        job_id=job_id, config_hash=expected_hash(s, key), profile=s.profile,
        submitted=time.strftime("%Y-%m-%dT%H:%M:%S"))]
    atomic_write_text(slurm_dir / RECORD, json.dumps(dict(jobs=jobs), indent=2))


# --------------------------------------------------------------------------- the executor


def cost(keys: list[str], profile: str) -> str:
    """Upper bound of what the runs ``keys`` cost: every job running to its time limit."""
    jobs = [job_resources(key, profile) for key in keys]
    gpu = [r for r in jobs if r.gpus]
    if gpu:
        hours = sum(r.gpus * r.hours for r in gpu)
        text = f"{len(gpu)} GPU jobs, at most {hours:g} GPU-hours (time limits)"
        cpu_only = len(jobs) - len(gpu)
        return text + (f" + {cpu_only} CPU-only jobs (computed references)" if cpu_only else "")
    hours = sum(r.cpus * r.hours for r in jobs)
    return f"{len(jobs)} CPU jobs, at most {hours:g} CPU core-hours (time limits)"


def dry_run(s, keys: list[str]) -> str:
    """What ``--executor slurm`` would submit, with the resources and the cost bound."""
    states = run_states(s, keys)
    todo = [st.key for st in states if st.state in ("todo", "failed")]
    r = RESOURCES[s.profile]
    gpus = f"{r.gpus} GPU, " if r.gpus else ""
    lines = [status_report(s, states),
             f"would submit {len(todo)} jobs, each {gpus}{r.cpus} CPUs, {r.mem_gb} GB, time "
             f"limit {r.hours:g} h (bicubic: no GPU); {cost(todo, s.profile)}"]
    return "\n".join(lines)


def wait_for(s, keys: list[str], poll: float) -> list[RunState]:
    """Poll until no run is queued or running; print a line whenever the counts change."""
    last, hashes = "", {key: expected_hash(s, key) for key in keys}
    while True:
        states = run_states(s, keys, hashes)
        now = counts(states)
        if now != last:
            print(f"slurm: {now}", file=sys.stderr, flush=True)
            last = now
        if not any(st.state in ("queued", "running", "unknown") for st in states):
            return states
        time.sleep(poll)


def execute(s, opts: SlurmOptions, keys: list[str], lock=None) -> int | None:
    """Get the runs ``keys`` finished on SLURM. Returns None when all are done (the caller
    then executes the pages), else the exit code (0 after --no-wait, 1 on failures).
    ``lock``: a context manager held while deciding and submitting (the sweep's lock on the
    results folder), so that two submitting sweeps can't race."""
    with lock if lock is not None else contextlib.nullcontext():
        states = run_states(s, keys)
        todo = [st.key for st in states if st.state in ("todo", "failed")]
        ids = submit(s, opts, todo)
    busy = sum(st.state in ("queued", "running") for st in states)
    done = sum(st.state == "done" for st in states)
    array = f" (job {ids[0].split('_')[0]})" if ids else ""
    print(f"slurm: {len(keys)} runs: {done} done, {len(ids)} submitted{array}, {busy} already "
          "queued or running")
    if not opts.wait:
        print("not waiting (--no-wait): `ablation sweep --status` lists the runs; the same "
              "sweep command again picks up the finished ones and executes the pages")
        return 0
    try:
        states = wait_for(s, keys, opts.poll)
    except KeyboardInterrupt:
        print("\nstopped waiting; the jobs keep running: `ablation sweep --status` lists them",
              file=sys.stderr)
        return 130
    failed = [st for st in states if st.state != "done"]
    if failed:
        print(status_report(s, states))
        print(f"slurm: {len(failed)} runs failed; pages not executed (fix the cause, then rerun "
              "the same command: finished runs are kept, failed ones resubmitted)")
        return 1
    return None


# --------------------------------------------------------------------------- command line


def _slurm_opt(text: str) -> tuple[str, str | bool]:
    """argparse type: 'qos=high' -> ('qos', 'high'); 'exclusive' -> ('exclusive', True)."""
    import argparse

    key, eq, value = text.partition("=")
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", key) or (eq and not value):
        raise argparse.ArgumentTypeError(f"--slurm-opt {text!r}: use KEY=VALUE (an sbatch "
                                         "option without its dashes), e.g. qos=high")
    return key, (value if eq else True)


def add_arguments(p) -> None:
    """The sweep's executor options (registered by ``ablation.sweep.add_parser``)."""
    p.add_argument("--executor", default="local", choices=EXECUTORS,
                   help="local: train inside the page notebooks (default); slurm: one SLURM "
                        "job per run via submitit, then the pages here")
    p.add_argument("--status", action="store_true",
                   help="list the selection's runs: done, running, queued, failed, to run")
    p.add_argument("--no-wait", action="store_true",
                   help="slurm: return after submitting; rerun the sweep to pick up results")
    p.add_argument("--slurm-partition", default=None,
                   help="slurm: partition to submit to (default: the cluster's default)")
    p.add_argument("--slurm-account", default=None,
                   help="slurm: account to charge (default: your default account)")
    p.add_argument("--slurm-opt", type=_slurm_opt, action="append", default=[],
                   metavar="KEY=VALUE", help="slurm: any other sbatch option, e.g. qos=high "
                                             "(repeatable; default: none)")
    p.add_argument("--slurm-poll", type=float, default=15.0, metavar="SECONDS",
                   help="slurm: seconds between looks at the queue (default 15)")


def run(args, s, keys: list[str], lock) -> int | None:
    """The sweep's executor step, before the pages: None means every run is finished (or the
    local executor trains in the pages): go on and execute them; else the exit code.
    ``keys``: the runs the sweep's pages show; ``lock``: the sweep's lock (see execute)."""
    if args.status:
        print(status_report(s, run_states(s, keys)))
        return 0
    if args.executor == "local":
        if args.no_wait:
            raise ConfigError("--no-wait only applies to --executor slurm")
        return None
    if args.slurm_poll <= 0:
        raise ConfigError(f"--slurm-poll must be > 0 seconds, got {args.slurm_poll}")
    opts = SlurmOptions(args.slurm_partition, args.slurm_account, tuple(args.slurm_opt),
                        wait=not args.no_wait, poll=args.slurm_poll)
    if args.dry_run:
        print(dry_run(s, keys))
        return 0
    return execute(s, opts, keys, lock)
