"""``run_variant``: train (or reuse), evaluate on the benchmarks, write the run's folder.

A run is resolved once (:func:`ablation.resolve.resolve_run`): the config hash that decides
reuse is the one training writes. A run whose folder holds ``metrics.json`` with that hash is
reused, not retrained.
A per-run lock file stops two processes (two sweeps, a sweep and a notebook) from writing the
same run; the second one waits (``wait=True``) or fails with a one-line error.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

import torch

from ablation import results as results_mod
from ablation.costs import frame_flops
from ablation.errors import AblationError, ConfigError, DiskWriteError
from ablation.evaluate import Bicubic, evaluate, summarize
from ablation.fs import atomic_write_bytes, atomic_write_text, exclusive_lock
from ablation.models import body_gain, count_params, flops_per_output_pixel
from ablation.resolve import resolve_run
from ablation.tasks import get_task
from ablation.train import RunResult, TrainingDiverged, train

# "1": only reuse finished runs, never train or evaluate (the Pages workflow, `--publish`)
REUSE_ONLY_ENV = "ABLATION_REUSE_ONLY"


def cpu_share(cpu_seconds: float, wall_seconds: float, threads: int) -> float | None:
    """Fraction of its threads' wall time a CPU run spent on the cores (``metrics.json``'s
    ``cpu_share``); None when it can't be told (no wall time).

    A run alone on the machine keeps its intra-op threads busy (oneDNN's threads spin between
    kernels): about 0.9-1.0. Work sharing the cores takes time slices away and the share drops,
    so its wall-time figures are not this machine's speed (the results page's compute table marks
    those runs).
    """
    if wall_seconds <= 0 or threads < 1:
        return None
    return cpu_seconds / (wall_seconds * threads)


class RunLocked(AblationError):
    """Another process holds this run's lock."""


def run_lock(folder: Path, wait: bool = True, timeout: float = 24 * 3600):
    """Exclusive lock on ``folder/.lock`` (released if the holder dies: it's an flock).

    A waiter says once, on stderr, whom it waits for (the holder writes its pid there)."""
    def busy(holder: str) -> RunLocked:
        return RunLocked(f"{folder}: another process{holder} is running this run; wait for it "
                         "to finish or stop it")

    try:  # an unwritable results folder is one line, not a traceback from inside the lock
        folder.mkdir(parents=True, exist_ok=True)
        open(folder / ".lock", "a").close()
    except OSError as exc:
        raise DiskWriteError(exc.errno, f"{folder}: cannot write the run's folder "
                             f"({exc.strerror or exc}); make the results folder writable or "
                             "pass another --results") from None
    shown = str(folder).replace("{", "{{").replace("}", "}}")
    return exclusive_lock(folder / ".lock", busy, wait=wait, timeout=timeout,
                          waiting=f"waiting for the process{{who}} running {shown} ...")


def check_run_inputs(seeds, results_dir=None, data_dir=None, iterations=None,
                     device="auto") -> None:
    """Refuse what would make every run of a page fail or land in the wrong place, before any
    run starts: a negative or non-integer seed, iterations < 1, a device this machine lacks, a
    results path that is a file, a data folder without the benchmark sets (every run is
    scored on them)."""
    from ablation import data, paths
    from ablation.device import resolve_device

    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ConfigError(f"seeds must be integers >= 0, got {list(seeds)}")
    if iterations is not None and (isinstance(iterations, bool) or not isinstance(
            iterations, int) or iterations < 1):
        raise ConfigError(f"iterations must be a positive integer (or None), got {iterations!r}")
    resolve_device(device)
    results = paths.results_dir(results_dir)
    if results.exists() and not results.is_dir():
        raise ConfigError(f"results_dir {results}: is a file, not a folder; give a folder")
    root = paths.data_dir(data_dir)
    command = data.fix_command("benchmark") + (f" --data-dir {data_dir}" if data_dir else "")
    data.verify_folder(root / "benchmark", command)


def run_variant(task: int, variant: str, scale: int, profile: str = "cpu", seed: int = 0,
                results_dir=None, data_dir=None, retrain: bool = False, wait: bool = True,
                **overrides) -> dict:
    """Train + evaluate one run (or reuse it) and return its metrics dict.

    Writes ``results/<profile>/task<NN>/<variant>/x<scale>/seed<k>/`` (see ablation.results).
    ``overrides`` are :class:`~ablation.config.TrainConfig` fields (e.g. ``iterations=...``).
    ``task=0`` are the reference models: ``bicubic`` (computed) and ``edsr_baseline``.
    """
    t = get_task(task)
    v = t.variant(variant)
    run = resolve_run(v, scale, profile, data_dir=data_dir, seed=seed, **overrides)
    folder = results_mod.run_dir(profile, task, variant, scale, seed, results_dir)
    done = results_mod.read_metrics(folder)
    if done is not None and done.get("config_hash") == run.config_hash and not retrain:
        done["reused"] = True
        return done
    if os.environ.get(REUSE_ONLY_ENV, "") in ("1", "true", "yes"):
        raise AblationError(f"{folder}: no finished run with config hash {run.config_hash}, and "
                            f"{REUSE_ONLY_ENV}=1 forbids training it; unset it to train")
    with run_lock(folder, wait=wait):
        done = results_mod.check_run(folder).metrics  # another process may have finished it
        if done is not None and done.get("config_hash") == run.config_hash and not retrain:
            done["reused"] = True
            return done
        for stale in folder.glob(".*.tmp"):  # left by a process killed mid-write
            stale.unlink(missing_ok=True)
        if retrain:
            for name in ("metrics.json", "state.pt", results_mod.DIVERGED_FILE):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(folder / name)
        prior = results_mod.read_diverged(folder)
        if prior is not None and prior["config_hash"] == run.config_hash:
            raise TrainingDiverged(f"{folder / results_mod.DIVERGED_FILE}: this run diverged "
                                   f"before ({prior['message']}); rerun with --retrain to try "
                                   "again", prior.get("iteration"))
        t0, c0 = time.perf_counter(), time.process_time()
        if run.trainable:
            try:
                res: RunResult = train(run, out_dir=folder)
            except TrainingDiverged as exc:  # an outcome of the recipe: recorded, then raised
                record = dict(task=task, variant=variant, scale=scale, seed=seed,
                              profile=profile, config_hash=run.config_hash,
                              iteration=exc.iteration,
                              message=str(exc).split(";")[0])  # what happened; no paths
                atomic_write_bytes(folder / results_mod.DIVERGED_FILE,
                                   json.dumps(record, indent=2).encode())
                raise
            t1 = time.perf_counter()
            per_image = evaluate(res.model, run.config.eval_sets, scale, f"{t.key}/{variant}",
                                 data_dir, device=res.device)
            label = v.label
            if v.loss == "perceptual" and run.config.perceptual_backbone != "vgg19":
                label += f" [substitute backbone: {run.config.perceptual_backbone}, not VGG19]"
            flops = flops_per_output_pixel(v.spec, scale)
            info = dict(params=count_params(v.spec, scale), train_seconds=res.seconds,
                        eval_seconds=time.perf_counter() - t1, device=res.device,
                        body_gain=body_gain(res.model), conv_gflops=res.conv_gflops)
            if res.device == "cpu":  # over what this process did: a resumed run's last part
                info["cpu_share"] = cpu_share(time.process_time() - c0,
                                              time.perf_counter() - t0, torch.get_num_threads())
        else:  # the computed reference: the protocol's bicubic, evaluated only
            per_image = evaluate(Bicubic(scale), run.config.eval_sets, scale, variant, data_dir)
            label, flops = v.label, 0.0
            info = dict(params=0, train_seconds=0.0, eval_seconds=time.perf_counter() - t0,
                        device="cpu")
        atomic_write_text(folder / "per_image.csv", per_image.to_csv(index=False))
        summary = summarize(per_image)
        metrics = dict(
            task=task, task_key=t.key, variant=variant, label=label, scale=scale,
            seed=seed, profile=profile, config_hash=run.config_hash,
            data_fingerprint=run.data_fingerprint, loss=run.loss,
            spec=v.spec.to_dict() if v.spec is not None else None, params=info["params"],
            perceptual_backbone=run.config.perceptual_backbone if run.loss == "perceptual"
            else None,
            flops_per_pixel=flops,
            flops_1280x720=frame_flops(flops),
            iterations=run.config.iterations if run.trainable else 0,
            train_seconds=info["train_seconds"],
            eval_seconds=info["eval_seconds"],
            cpu_share=info.get("cpu_share"),
            conv_gflops=info.get("conv_gflops"),  # 3x3-conv GFLOP/s measured before training
            device=info["device"],
            body_gain=info.get("body_gain"),  # how much the body adds (None: not measurable)
            sets={r.set: dict(psnr=r.psnr, ssim=r.ssim, n_images=int(r.n_images))
                  for r in summary.itertuples()},
        )
        atomic_write_bytes(folder / "metrics.json", json.dumps(metrics, indent=2).encode())
        with contextlib.suppress(FileNotFoundError):  # an older hash's record (other settings)
            os.unlink(folder / results_mod.DIVERGED_FILE)
        metrics["reused"] = False
        metrics["run_dir"] = str(folder)
        return metrics
