"""The training loop: one function for a 2-core laptop and an H100 alike.

Read top to bottom: device and precision, data (decoded cache -> on-device patch sampler),
the learning-rate schedule, then :func:`train` itself, which checkpoints atomically (weights,
optimizer, scheduler, RNG, iteration) so that a run killed at any moment resumes *exactly*: on
CPU an interrupted-and-resumed run ends with bit-identical weights to an uninterrupted one.

Hot loop per iteration: sample (one gather), forward (channels_last, bf16/fp16 autocast on GPU),
loss, backward, Adam step. The loss is only copied to the host every ``log_every`` steps.
Under ``torchrun`` the same function uses DistributedDataParallel (per-rank sampler seeds,
rank 0 writes files).
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import platform
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ablation import __version__, data
from ablation.cache import load_decoded
from ablation.checkpoint import save_checkpoint, unwrap
from ablation.config import TrainConfig
from ablation.costs import conv_peak_gflops
from ablation.degradation import bicubic_down, modcrop, quantize
from ablation.device import resolve_device
from ablation.errors import AblationError, CheckpointError, ConfigError
from ablation.fs import atomic_write_bytes, atomic_write_text
from ablation.hostmem import reuse_freed_memory
from ablation.images import read_image
from ablation.losses import make_loss
from ablation.metrics import psnr
from ablation.models import ModelSpec, SRNet, build_model
from ablation.resolve import ResolvedRun, resolve_run
from ablation.sampler import PatchSampler
from ablation.tasks import Variant


class TrainingDiverged(AblationError):
    """The loss became NaN or inf, or exploded; the last good checkpoint is kept.
    ``iteration``: where it was caught (None if unknown)."""

    def __init__(self, message: str, iteration: int | None = None):
        super().__init__(message)
        self.iteration = iteration


# A logged loss this many times the best logged so far means the run blew up (EDSR-baseline at
# a 2e-3 learning rate: 0.028 -> 3.2 -> 7e9 within 250 iterations, finite throughout).
EXPLODED = 100


@dataclass
class RunResult:
    model: SRNet
    history: pd.DataFrame
    config: TrainConfig
    config_hash: str
    seconds: float
    device: str
    out_dir: Path | None
    data_fingerprint: str
    conv_gflops: float  # the device's 3x3-conv speed, measured before training (costs)


PROBE_SECONDS = 0.5  # the machine-speed probe before each training run (conv_peak_gflops)


# --------------------------------------------------------------------------- device


def autocast_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """bf16 on GPUs that support it, else fp16; fp32 on CPU (bf16 is slower without AMX)."""
    if device.type != "cuda" or config.amp == "off":
        return None
    if config.amp == "fp16" or (config.amp == "auto" and not torch.cuda.is_bf16_supported()):
        return torch.float16
    return torch.bfloat16


def dist_info() -> tuple[int, int]:
    """(rank, world size) from torchrun's environment; (0, 1) otherwise."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


# --------------------------------------------------------------------------- data


def drop_small_images(files: list[Path], scale: int, lr_patch: int,
                      strict: bool) -> list[Path]:
    """Leave out images whose LR version is smaller than the patch (T91 has 78-px images: fine
    at x2, too small for a 96-px HR patch at x3). Named sets skip them with a warning; a
    user's own folder (``strict``) gets a one-line error naming the file. Reads headers only.
    """
    from PIL import Image

    def too_small(f: Path) -> bool:
        try:
            with Image.open(f) as img:
                return min(img.size) // scale < lr_patch
        except Exception:  # unreadable: decoding it reports the file with the fix
            return False

    small = [f for f in files if too_small(f)]
    if small and strict:
        raise data.DataError(f"{small[0]}: image is smaller than the HR patch "
                             f"{lr_patch * scale}x{lr_patch * scale}; remove it or lower lr_patch")
    if small:
        warnings.warn(f"{len(small)} of {len(files)} training images are smaller than the "
                      f"{lr_patch * scale}-px HR patch and are not used (e.g. {small[0].name})",
                      stacklevel=3)
    kept = [f for f in files if f not in set(small)]
    if not kept:
        raise data.DataError(f"{files[0].parent}: every training image is smaller than the HR "
                             f"patch {lr_patch * scale}px; lower lr_patch")
    return kept


def validation_pairs(files: list[Path], scale: int, crop: int = 192):
    """Centre crops (HR side <= ``crop``) of the validation images as (lr, hr) float tensors."""
    pairs = []
    for f in files:
        img = read_image(f)
        if img.shape[2] == 1:
            img = np.repeat(img, 3, axis=2)
        hr = torch.from_numpy(np.array(img)).permute(2, 0, 1)[None].double()
        h, w = hr.shape[-2:]
        ch, cw = min(h, crop), min(w, crop)
        top, left = (h - ch) // 2, (w - cw) // 2
        hr = modcrop(hr[..., top:top + ch, left:left + cw], scale)
        pairs.append((quantize(bicubic_down(hr, scale)).float(), hr))
    return pairs


@torch.no_grad()
def validate(model: torch.nn.Module, pairs, scale: int, device: torch.device) -> float:
    """Mean Y-PSNR on the validation pairs (protocol metric, border = scale)."""
    was_training = model.training
    model.eval()
    scores = []
    for lr, hr in pairs:
        sr = model(lr.to(device)).double().cpu()
        scores.append(psnr(sr, hr, border=scale))
    model.train(was_training)
    return float(np.mean(scores))


# --------------------------------------------------------------------------- schedule


def lr_factor(config: TrainConfig, iteration: int) -> float:
    """Multiplier of ``learning_rate`` at ``iteration`` (0-based).

    onecycle: linear warm-up from 1/25 over ``warmup`` of the run, then cosine down to 1/1000:
    a short budget tolerates (and needs) a high peak rate. step: 1, halved after ``step_at``
    (the paper recipe: 1e-4 halved at 200k of 300k).
    """
    n = config.iterations
    if config.schedule == "step":
        return 0.5 if iteration >= int(round(config.step_at * n)) else 1.0
    warm = max(1, int(config.warmup * n))
    if iteration < warm:
        return 1 / 25 + (1 - 1 / 25) * iteration / warm
    t = (iteration - warm) / max(1, n - warm)
    return 1e-3 + (1 - 1e-3) * 0.5 * (1 + math.cos(math.pi * t))


# --------------------------------------------------------------------------- state


def _rng_state(gen: torch.Generator) -> dict:
    state = {"sampler": gen.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _save_state(path: Path, model, optimizer, scheduler, scaler, gen, iteration: int,
                chash: str, history: list[dict]) -> None:
    save_checkpoint(
        path, unwrap(model), optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
        scaler=scaler.state_dict() if scaler is not None else {}, rng=_rng_state(gen),
        iteration=iteration, config_hash=chash,
        history=pd.DataFrame(history).to_csv(index=False) if history else "",
    )


def _load_state(path: Path, model, optimizer, scheduler, scaler, gen, chash: str):
    """Restore a state checkpoint in place; returns (iteration, history rows) or None."""
    from ablation.checkpoint import read_checkpoint

    try:
        state = read_checkpoint(path)
    except CheckpointError:
        return None  # unreadable: start over (the run folder's other files are untouched)
    if state.get("config_hash") != chash:
        return None
    unwrap(model).load_state_dict(state["model"], strict=True)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    gen.set_state(state["rng"]["sampler"])
    torch.set_rng_state(state["rng"]["torch"])
    if "cuda" in state["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    rows = pd.read_csv(io.StringIO(state["history"])).to_dict("records") \
        if state.get("history") else []
    return int(state["iteration"]), rows


def environment_info(device: torch.device) -> dict:
    info = dict(python=platform.python_version(), torch=torch.__version__, ablation=__version__,
                numpy=np.__version__, platform=platform.platform(), device=str(device),
                threads=torch.get_num_threads())
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


# --------------------------------------------------------------------------- train


def train(
    what: ResolvedRun | ModelSpec | Variant,
    scale: int | None = None,
    profile: str = "cpu",
    *,
    out_dir: str | os.PathLike | None = None,
    resume: bool = True,
    loss: str | None = None,
    data_dir=None,
    vgg_weights: str | None = None,
    **overrides,
) -> RunResult:
    """Train one network; returns the final model and its history.

    Args:
        what: a :class:`~ablation.resolve.ResolvedRun` (what ``run_variant`` passes: the run
            it decided to train, hash included), or a :class:`ModelSpec` (loss L1 unless
            ``loss``) or task ``Variant`` that is resolved here with ``scale``, ``profile``,
            ``loss``, ``data_dir`` and ``overrides`` (any :class:`TrainConfig` field).
        scale: 2, 3 or 4 (not with a ResolvedRun).
        out_dir: where ``state.pt``, ``model.pt``, ``history.csv`` and ``run.json`` go; with
            ``resume`` a matching ``state.pt`` there is continued exactly.
    """
    if isinstance(what, ResolvedRun):
        if scale is not None or loss is not None or data_dir is not None or overrides:
            raise ConfigError("train(ResolvedRun): the run is already resolved; give scale, "
                              "loss, data_dir and overrides to resolve_run instead")
        run = what
    else:
        run = resolve_run(what, scale, profile, loss=loss, data_dir=data_dir, **overrides)
    if not run.trainable:
        raise ConfigError(f"{run.name}: a computed reference, not a trainable network; "
                          "evaluate it with `ablation eval --model bicubic`")
    if not run.train_files:
        raise ConfigError("this run was resolved from a fingerprint, without its training "
                          "files; resolve it with the data (resolve_run without fingerprint)")
    config, spec, scale, chash = run.config, run.spec, run.scale, run.config_hash
    rank, world = dist_info()
    device = resolve_device(config.device)
    if device.type == "cuda" and world > 1:  # one GPU per process, bound before NCCL starts
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    out = Path(out_dir) if out_dir is not None else None
    writer = rank == 0 and out is not None

    train_files = drop_small_images(list(run.train_files), scale, config.lr_patch,
                                    strict=config.train_set not in data.TRAIN_SETS)
    decoded = load_decoded(train_files, scale, run.data_dir / "cache",
                           label=Path(config.train_set).name, min_lr_size=config.lr_patch,
                           fingerprint=run.data_fingerprint)
    val_pairs = validation_pairs(list(run.val_files), scale)

    # the speed of the device this rank trains on, so minutes from different machines compare
    speed = conv_peak_gflops(device, PROBE_SECONDS)
    torch.manual_seed(config.seed)  # identical init on every rank
    model = build_model(spec, scale).to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    gen = torch.Generator(device=device)
    gen.manual_seed(config.seed * 1009 + rank + 1)
    sampler = PatchSampler(decoded, config.lr_patch, max(1, config.batch_size // world),
                           device, gen, config.blur_sigma, config.noise_sigma)
    loss_fn = make_loss(run.loss, config.pixel_weight, config.perceptual_backbone,
                        vgg_weights, cache_dir=run.data_dir / "weights").to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate,
                                 betas=tuple(config.adam_betas), eps=config.adam_eps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: lr_factor(config, i))
    amp_dtype = autocast_dtype(config, device)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None

    start, history = 0, []
    state_path = out / "state.pt" if out is not None else None
    if resume and state_path is not None and state_path.exists():
        restored = _load_state(state_path, model, optimizer, scheduler, scaler, gen, chash)
        if restored is not None:
            start, history = restored

    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if config.compile:
        net = torch.compile(net)

    if writer:
        out.mkdir(parents=True, exist_ok=True)
        _write_run_json(out, run, device, seconds=None, loss_module=loss_fn)

    t0 = time.perf_counter()
    elapsed_before = history[-1]["seconds"] if history else 0.0
    running = torch.zeros((), device=device)
    n_running = 0
    bad_iter = torch.full((), -1, device=device, dtype=torch.long)
    best_loss = min((r["loss"] for r in history), default=math.inf)
    bar = _progress(config, start, rank)
    autocast = (torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None
                else contextlib.nullcontext())
    model.train()
    with reuse_freed_memory(device.type == "cpu"), compiled_backward(config.compile):
        try:
            for it in range(start, config.iterations):
                ld = train_step(net, sampler, loss_fn, optimizer, scaler, autocast,
                                config.channels_last)
                scheduler.step()
                running += ld
                n_running += 1
                bad_iter = torch.where((bad_iter < 0) & ~torch.isfinite(ld), it + 1, bad_iter)
                done = it + 1
                is_ckpt = done % config.checkpoint_every == 0 or done == config.iterations
                is_val = done % config.val_every == 0 or done == config.iterations
                if done % config.log_every == 0 or is_ckpt or is_val:
                    bad = int(bad_iter.item())
                    if bad >= 0:
                        raise _diverged(f"loss became NaN/inf at iteration {bad}", state_path,
                                        "lower learning_rate or check the data", bad)
                    row = dict(iteration=done, loss=running.item() / n_running,
                               learning_rate=optimizer.param_groups[0]["lr"], val_psnr=float("nan"),
                               seconds=elapsed_before + time.perf_counter() - t0)
                    running.zero_()
                    n_running = 0
                    if row["loss"] > EXPLODED * best_loss:  # finite but blown up: stop now
                        raise _diverged(f"loss exploded at iteration {done}: {row['loss']:.4g}, "
                                        f"over {EXPLODED}x its best so far ({best_loss:.4g})",
                                        state_path, "lower learning_rate", done)
                    best_loss = min(best_loss, row["loss"])
                    if is_val and rank == 0:
                        row["val_psnr"] = validate(model, val_pairs, scale, device)
                    history.append(row)
                    bar.set_postfix(loss=f"{row['loss']:.4f}", val=f"{row['val_psnr']:.2f}",
                                    refresh=False)
                    if is_ckpt and writer:
                        _save_state(state_path, model, optimizer, scheduler, scaler, gen, done,
                                    chash, history)
                        atomic_write_text(out / "history.csv",
                                          pd.DataFrame(history).to_csv(index=False))
                bar.update(1)
        finally:
            bar.close()  # before any error message, so the message is the last line
    seconds = elapsed_before + time.perf_counter() - t0
    model.eval()
    if writer:
        save_checkpoint(out / "model.pt", model, config=config.to_dict(), config_hash=chash,
                        data_fingerprint=run.data_fingerprint, loss=run.loss,
                        iteration=config.iterations)
        atomic_write_text(out / "history.csv", pd.DataFrame(history).to_csv(index=False))
        _write_run_json(out, run, device, seconds=seconds, loss_module=loss_fn)
    return RunResult(model, pd.DataFrame(history), config, chash, seconds, str(device), out,
                     run.data_fingerprint, speed)


def _diverged(what: str, state_path: Path | None, fix: str, iteration: int
              ) -> TrainingDiverged:
    """The one-line error of a diverged run, naming the checkpoint that was kept."""
    kept = f"; last good checkpoint kept: {state_path}" if state_path and state_path.exists() \
        else ""
    return TrainingDiverged(f"{what}{kept}; {fix}", iteration)


def compiled_backward(compiled: bool):
    """What torch.compile must assume of the backward pass (read when it traces a graph).

    ``train_step`` runs the backward outside autocast (the AMP recipe), but torch.compile
    traces the backward with the forward and by default assumes the forward's autocast
    ("same_as_forward"); "off" is what eager mode does here (PyTorch docs: "torch.compile has
    different autograd semantics"; ``torch._functorch.config.backward_pass_autocast``).
    """
    from torch._functorch import config as functorch_config

    if not compiled or not hasattr(functorch_config, "backward_pass_autocast"):  # older torch
        return contextlib.nullcontext()
    return functorch_config.patch(backward_pass_autocast="off")


def train_step(net, sampler: PatchSampler, loss_fn, optimizer, scaler, autocast,
               channels_last: bool) -> torch.Tensor:
    """One iteration: sample a batch, forward, loss, backward, optimizer step.

    Returns the detached loss as a device tensor (no host sync; the caller reads it every
    ``log_every`` steps). ``benchmarks/train_throughput.py`` times exactly this function.
    """
    lr_img, hr_img = sampler.sample()  # (B, 3, p, p), (B, 3, s*p, s*p) float in [0, 255]
    if channels_last:
        lr_img = lr_img.contiguous(memory_format=torch.channels_last)
    with autocast:
        sr_img = net(lr_img)
    loss = loss_fn(sr_img.float(), hr_img)
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()
    return loss.detach()


def _progress(config: TrainConfig, start: int, rank: int):
    from tqdm.auto import tqdm

    interactive = sys.stderr.isatty()
    return tqdm(total=config.iterations, initial=start, desc="train", unit="it",
                disable=not config.progress or rank != 0, dynamic_ncols=True,
                mininterval=0.5 if interactive else 15.0, file=sys.stderr)


def _write_run_json(out: Path, run: ResolvedRun, device: torch.device, seconds, loss_module):
    import json

    meta = dict(config=run.config.to_dict(), spec=run.spec.to_dict(), scale=run.scale,
                loss=run.loss, config_hash=run.config_hash, data_fingerprint=run.data_fingerprint,
                train_seconds=seconds,
                finished=seconds is not None, environment=environment_info(device),
                perceptual_backbone=getattr(loss_module, "backbone", None))
    atomic_write_bytes(out / "run.json", json.dumps(meta, indent=2, default=list).encode())
