"""The GPU check: run this first on a machine with a CUDA GPU (one GPU, under 8 minutes).

    python benchmarks/gpu_check.py [--data-dir DIR] [--mirror DIR] [--json gpu_check.json]
    make gpu-check

It runs the GPU path that the 2-core CPU machines of this project never executed, with the
package's own model (``build_model``), patch sampler (``PatchSampler``), ``train_step`` and
``train``, at the ``paper`` profile's settings (batch 16, LR patch 48, Adam at 1e-4, x2), on
the task-4 baseline and EDSR-baseline:

1. throughput, ``--iters`` timed iterations after ``--warmup``: (a) bf16 autocast +
   channels_last, as ``train`` runs on a GPU; (b) the same under torch.compile (compile time
   reported apart). Iterations/s, training TFLOP/s (3 x the forward conv FLOPs) and their
   fraction of the GPU's dense bf16 peak (``PEAK_BF16`` by device name; a large bf16 matmul
   is timed too and reported beside it, and used when the name is unknown), peak memory, and
   the data time per step (the sampler alone, timed apart);
2. bf16 vs fp32: the first ``--loss-steps`` losses of a bf16 run and of an fp32 run (TF32 off)
   from the same initial weights and the same batches differ by at most ``LOSS_RTOL``;
3. resume: ``train`` interrupted after its checkpoint at iteration N and run again (it resumes
   from ``state.pt``) ends with the same weights, bit for bit, as an uninterrupted ``train``
   on the same GPU, with deterministic algorithms on;
4. DDP: with two or more GPUs, ``train`` under torchrun over all of them (NCCL) for
   ``DDP_STEPS`` iterations; the replicas' weights must be equal.

Writes one JSON (``--json``) and prints a summary; exit code 1 if a check failed. Without
CUDA it prints "no GPU" and exits 0. ``--device cpu`` rehearses every step on the CPU with
small counts (the tests do, so the code has run somewhere); its numbers mean nothing. The
training images are DIV2K's when fetched, else the 291 set: patches are sampled on the GPU
from decoded images, so the image set does not change the throughput.

Not yet run on a GPU: written and reviewed against PyTorch's documentation, which found two
things in ``ablation.train`` (fixed there):

- torch.autocast (torch.amp docs): autocast wraps the forward pass and the loss only, the
  backward runs outside it, bf16 needs no GradScaler (fp16 does); ``train_step`` autocasts
  the forward only, takes the loss on ``sr.float()`` and uses a scaler only for fp16.
- torch.compile ("torch.compile has different autograd semantics"): the backward is traced
  with the forward and assumed to run under the forward's autocast ("same_as_forward"); with
  the backward outside autocast, ``torch._functorch.config.backward_pass_autocast`` must be
  "off". ``train`` used the default; ``train.compiled_backward`` now sets "off" (here too).
- DistributedDataParallel / NCCL (DDP and init_process_group docstrings): one process per
  GPU with exclusive access, its device set before the process group starts (``train``
  called ``torch.cuda.set_device`` after ``init_process_group``; now before); parameters
  with the same strides in every rank (channels_last in all); DDP first, then compile.
- Determinism (torch.use_deterministic_algorithms, the Reproducibility notes):
  ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` set before the CUDA context exists (first thing in
  ``main``), ``torch.backends.cudnn.benchmark`` off (never turned on in this package),
  deterministic algorithms only for the resume check (they may be slower).
- TF32: cuDNN convolutions use TF32 by default on Ampere and later, so the fp32 reference
  turns ``torch.backends.cudnn.allow_tf32`` and ``torch.backends.cuda.matmul.allow_tf32`` off.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # before any CUDA context

import torch  # noqa: E402

import ablation.train as train_mod  # noqa: E402
from ablation import data, paths  # noqa: E402
from ablation.cache import load_decoded  # noqa: E402
from ablation.checkpoint import read_checkpoint  # noqa: E402
from ablation.config import make_config  # noqa: E402
from ablation.errors import AblationError  # noqa: E402
from ablation.fetch import fetch  # noqa: E402
from ablation.fs import atomic_write_text  # noqa: E402
from ablation.losses import make_loss  # noqa: E402
from ablation.models import build_model, flops_per_output_pixel  # noqa: E402
from ablation.resolve import data_fingerprint, split_files  # noqa: E402
from ablation.sampler import PatchSampler  # noqa: E402
from ablation.tasks import BASELINE, EDSR_BASELINE  # noqa: E402
from ablation.train import (  # noqa: E402
    autocast_dtype,
    compiled_backward,
    drop_small_images,
    train_step,
)

SCALE = 2
MODELS = {"baseline": ("task4 baseline", BASELINE), "edsr": ("EDSR-baseline", EDSR_BASELINE)}
# dense (no sparsity) bf16 tensor-core TFLOP/s from NVIDIA's datasheets; first match wins
PEAK_BF16 = (("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.0), ("H200 NVL", 835.0),
             ("H200", 989.0), ("A100", 312.0), ("L40S", 362.0), ("L40", 181.0), ("A40", 150.0),
             ("A30", 165.0), ("A10", 125.0), ("L4", 121.0))
# bf16 keeps 8 significant bits (rounding error <= 2^-9 = 0.2% a value); the convs accumulate
# in fp32 and the loss is taken in fp32, so the first 50 losses stay within 2% of an fp32 run;
# a broken cast (overflow, a wrong dtype) shows as 10% or more, or NaN
LOSS_RTOL = 0.02
DDP_STEPS = 50
MODES = (("bf16_channels_last", False), ("bf16_channels_last_compiled", True))
BUDGET_SKIP = "not run: the time budget (--budget-s) was spent"


# --------------------------------------------------------------------------- measuring


def peak_bf16_tflops(name: str) -> float | None:
    """The GPU's dense bf16 peak from its name (None when not in ``PEAK_BF16``)."""
    for pattern, tflops in PEAK_BF16:
        if re.search(rf"\b{re.escape(pattern)}\b", name, re.IGNORECASE):
            return tflops
    return None


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_tflops(device: torch.device, n: int, reps: int = 10) -> float:
    """bf16 TFLOP/s of an n x n x n matmul (the measured peak)."""
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(2):
        a @ b
    sync(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e12


@contextlib.contextmanager
def fp32_exact():
    """Plain fp32 convolutions and matmuls (no TF32) for the reference run."""
    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


class Setup:
    """Model, sampler, loss and optimizer for one run, set up as ``train`` sets them up."""

    def __init__(self, spec, decoded, config, device: torch.device, amp: bool,
                 compiled: bool = False, seed: int = 0):
        torch.manual_seed(seed)
        self.device = device
        self.model = build_model(spec, SCALE).to(device, memory_format=torch.channels_last)
        self.net = torch.compile(self.model) if compiled else self.model
        gen = torch.Generator(device=device)
        gen.manual_seed(seed * 1009 + 1)
        self.sampler = PatchSampler(decoded, config.lr_patch, config.batch_size, device, gen)
        self.loss_fn = make_loss("l1").to(device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.learning_rate,
                                          betas=tuple(config.adam_betas), eps=config.adam_eps)
        dtype = autocast_dtype(config, device) if device.type == "cuda" else torch.bfloat16
        self.autocast = torch.autocast(device.type, dtype=dtype) if amp else \
            contextlib.nullcontext()
        self.scaler = torch.amp.GradScaler("cuda") if amp and dtype == torch.float16 else None

    def step(self) -> torch.Tensor:
        return train_step(self.net, self.sampler, self.loss_fn, self.optimizer, self.scaler,
                          self.autocast, True)


def throughput(spec, decoded, config, device, compiled: bool, warmup: int, iters: int) -> dict:
    """Iterations/s, TFLOP/s, peak memory and data time of bf16 + channels_last training."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    s = Setup(spec, decoded, config, device, amp=True, compiled=compiled)
    with compiled_backward(compiled):
        t0 = time.perf_counter()
        for _ in range(warmup):  # the first call compiles (forward and backward)
            s.step()
        sync(device)
        t1 = time.perf_counter()
        for _ in range(iters):
            loss = s.step()
        sync(device)
        t2 = time.perf_counter()
    finite = bool(torch.isfinite(loss).item())
    n_data = max(10, iters // 2)
    t3 = time.perf_counter()
    for _ in range(n_data):
        s.sampler.sample()
    sync(device)
    data_s = (time.perf_counter() - t3) / n_data
    step_s = (t2 - t1) / iters
    hr_pixels = config.batch_size * (config.lr_patch * SCALE) ** 2
    train_flops = 3 * flops_per_output_pixel(spec, SCALE) * hr_pixels
    return dict(it_per_s=1 / step_s, ms_per_step=step_s * 1e3, tflops=train_flops / step_s / 1e12,
                warmup_s=t1 - t0, data_ms_per_step=data_s * 1e3, data_fraction=data_s / step_s,
                peak_memory_gb=torch.cuda.max_memory_allocated(device) / 2**30
                if device.type == "cuda" else None, final_loss_finite=finite)


def losses(spec, decoded, config, device, amp: bool, steps: int) -> torch.Tensor:
    """The first ``steps`` losses (fp32 values) of a run from seed 0."""
    s = Setup(spec, decoded, config, device, amp=amp)
    with contextlib.nullcontext() if amp else fp32_exact():
        return torch.stack([s.step() for _ in range(steps)]).float().cpu()


def loss_check(spec, decoded, config, device, steps: int) -> dict:
    """bf16's first losses against an fp32 run's: same weights, same batches."""
    ref = losses(spec, decoded, config, device, amp=False, steps=steps)
    bf16 = losses(spec, decoded, config, device, amp=True, steps=steps)
    rel = ((bf16 - ref).abs() / ref.abs().clamp_min(1e-12))
    finite = bool(torch.isfinite(rel).all())
    worst = float(rel.max()) if finite else None  # None: NaN/inf in a run (JSON has no inf)
    return dict(steps=steps, max_rel_diff=worst, mean_rel_diff=float(rel.mean()) if finite
                else None, tolerance=LOSS_RTOL, first_fp32=float(ref[0]),
                last_fp32=float(ref[-1]), passed=finite and worst <= LOSS_RTOL)


class Interrupted(Exception):
    """Raised by the patched train_step: the interrupted run stops here."""


def resume_check(config, data_dir, device, at: int) -> dict:
    """``train`` interrupted after its checkpoint at ``at`` and resumed vs uninterrupted."""
    kw = dict(iterations=2 * at, checkpoint_every=at, val_every=2 * at, log_every=max(1, at // 4),
              train_set=config.train_set, batch_size=config.batch_size,
              lr_patch=config.lr_patch, device=str(device), progress=False)
    torch.use_deterministic_algorithms(True)
    try:
        with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
            whole = train_mod.train(BASELINE, SCALE, "paper", out_dir=Path(tmp, "whole"),
                                    data_dir=data_dir, **kw)
            calls = {"n": 0}
            real_step = train_mod.train_step

            def failing_step(*args, **kwargs):
                calls["n"] += 1
                if calls["n"] > at + max(1, at // 10):  # past the checkpoint at `at`
                    raise Interrupted
                return real_step(*args, **kwargs)

            with mock.patch.object(train_mod, "train_step", failing_step), \
                    contextlib.suppress(Interrupted):
                train_mod.train(BASELINE, SCALE, "paper", out_dir=Path(tmp, "resumed"),
                                data_dir=data_dir, **kw)
            stopped_at = read_checkpoint(Path(tmp, "resumed", "state.pt"))["iteration"]
            resumed = train_mod.train(BASELINE, SCALE, "paper", out_dir=Path(tmp, "resumed"),
                                      data_dir=data_dir, **kw)
            a, b = whole.model.state_dict(), resumed.model.state_dict()
            diff = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
            equal = all(torch.equal(a[k], b[k]) for k in a)
    finally:
        torch.use_deterministic_algorithms(False)
    return dict(iterations=2 * at, interrupted_after=calls["n"] - 1, resumed_from=stopped_at,
                weights_equal=equal, max_abs_weight_diff=diff,
                passed=equal and stopped_at == at)


def ddp_check(train_set: str, data_dir, n_gpus: int, timeout: float) -> dict:
    """``train`` under torchrun over every GPU (NCCL); the replicas' weights must agree."""
    with tempfile.TemporaryDirectory(prefix="gpu-check-ddp-") as tmp:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={n_gpus}", __file__, "--ddp-worker", tmp,
               "--train-set", train_set]
        if data_dir:
            cmd += ["--data-dir", str(data_dir)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            return dict(gpus=n_gpus, passed=False, error=last)
        weights = [torch.load(Path(tmp, f"rank{r}.pt"), weights_only=True)
                   for r in range(n_gpus)]
        equal = all(torch.equal(w[k], weights[0][k]) for w in weights[1:] for k in w)
        seconds = json.loads(Path(tmp, "run.json").read_text())["train_seconds"]
    return dict(gpus=n_gpus, iterations=DDP_STEPS, it_per_s=DDP_STEPS / seconds,
                replicas_equal=equal, passed=equal)


def ddp_worker(out: str, train_set: str, data_dir) -> None:
    """One torchrun rank: ``train`` (which starts NCCL itself), then save this rank's weights."""
    res = train_mod.train(BASELINE, SCALE, "paper", out_dir=out, data_dir=data_dir,
                          iterations=DDP_STEPS, checkpoint_every=DDP_STEPS, val_every=DDP_STEPS,
                          log_every=10, train_set=train_set, progress=False)
    torch.save(res.model.state_dict(), Path(out, f"rank{os.environ['RANK']}.pt"))
    torch.distributed.destroy_process_group()


# --------------------------------------------------------------------------- the check


def pick_train_set(data_dir) -> str:
    """DIV2K when fetched (the paper's set), else 291."""
    try:
        data.train_files("div2k", data_dir)
        return "div2k"
    except data.DataError:
        return "291"


def run_checks(args, device: torch.device) -> dict:
    """Every check in turn, each skipped once the time budget is spent; returns the report."""
    t_start = time.perf_counter()
    train_set = args.train_set or pick_train_set(args.data_dir)
    config = make_config("paper", train_set=train_set, batch_size=args.batch_size,
                         lr_patch=args.lr_patch)  # None: the profile's
    train_files, val_files = split_files(config, args.data_dir)  # as train() splits them
    files = drop_small_images(train_files, SCALE, config.lr_patch, strict=False)
    decoded = load_decoded(files, SCALE, paths.data_dir(args.data_dir) / "cache",  # train()'s
                           label=Path(train_set).name, min_lr_size=config.lr_patch,
                           fingerprint=data_fingerprint(train_files + val_files))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (rehearsal)"
    table = peak_bf16_tflops(name) if device.type == "cuda" else None
    measured = matmul_tflops(device, args.matmul_n)
    report: dict = dict(
        device=name, torch=torch.__version__, cuda=torch.version.cuda,
        cudnn=torch.backends.cudnn.version() if device.type == "cuda" else None,
        gpus_visible=torch.cuda.device_count() if device.type == "cuda" else 0,
        settings=dict(profile="paper", batch_size=config.batch_size, lr_patch=config.lr_patch,
                      learning_rate=config.learning_rate, scale=SCALE, train_set=train_set,
                      iters=args.iters, warmup=args.warmup),
        peak_bf16_tflops=dict(table=table, measured_matmul=measured,
                              used=table if table is not None else measured,
                              source="datasheet" if table is not None else "measured"),
        models={}, loss_tolerance=LOSS_RTOL)
    peak = report["peak_bf16_tflops"]["used"]

    def time_left() -> bool:
        return time.perf_counter() - t_start < args.budget_s

    def attempt(what: str, fn):
        if not time_left():
            return dict(passed=None, skipped=BUDGET_SKIP)
        try:
            return fn()
        except Exception as exc:  # one failing check must not hide the others
            first = (str(exc).strip().splitlines() or [""])[0]
            print(f"  {what}: {exc.__class__.__name__}: {first}", file=sys.stderr)
            return dict(passed=False, error=f"{exc.__class__.__name__}: {first}")

    for key in args.models:
        label, spec = MODELS[key]
        entry = {}
        for mode, compiled in MODES:
            r = attempt(f"{label} {mode}", lambda spec=spec, c=compiled: throughput(
                spec, decoded, config, device, c, args.warmup, args.iters))
            if "it_per_s" in r:
                r["fraction_of_peak"] = r["tflops"] / peak
                r["passed"] = r["final_loss_finite"]
            entry[mode] = r
        entry["bf16_vs_fp32_losses"] = attempt(f"{label} losses", lambda spec=spec: loss_check(
            spec, decoded, config, device, args.loss_steps))
        report["models"][label] = entry
    report["resume"] = attempt("resume", lambda: resume_check(
        config, args.data_dir, device, args.resume_at))
    n_gpus = report["gpus_visible"]
    ddp_timeout = max(60.0, args.budget_s + 60 - (time.perf_counter() - t_start))
    report["ddp"] = attempt("ddp", lambda: ddp_check(train_set, args.data_dir, n_gpus,
                                                     ddp_timeout)) \
        if n_gpus >= 2 else dict(passed=None, skipped=f"{n_gpus} GPU visible: DDP needs 2+")
    report["seconds"] = time.perf_counter() - t_start
    results = [r for m in report["models"].values() for r in m.values()]
    results += [report["resume"], report["ddp"]]
    report["failed"] = sum(r.get("passed") is False for r in results)
    report["skipped_for_time"] = sum(r.get("skipped") == BUDGET_SKIP for r in results)
    report["passed"] = report["failed"] == 0 and report["skipped_for_time"] == 0
    return report


def summary(report: dict) -> str:
    """The printed summary: one line per measurement and check."""
    peak = report["peak_bf16_tflops"]
    lines = [f"gpu check: {report['device']} (torch {report['torch']}, CUDA {report['cuda']}); "
             f"settings (paper profile): batch {report['settings']['batch_size']}, LR patch "
             f"{report['settings']['lr_patch']}, x{report['settings']['scale']}, images "
             f"{report['settings']['train_set']}",
             f"bf16 peak: {peak['used']:.3g} TFLOP/s ({peak['source']}); measured matmul "
             f"{peak['measured_matmul']:.3g} TFLOP/s"]
    for label, entry in report["models"].items():
        for mode, r in entry.items():
            if "it_per_s" in r:
                mem = f"{r['peak_memory_gb']:.2f} GB" if r["peak_memory_gb"] is not None else "-"
                lines.append(f"  {label:15s} {mode:28s} {r['it_per_s']:8.1f} it/s  "
                             f"{r['tflops']:7.3g} TFLOP/s = {r['fraction_of_peak']:6.1%} of peak  "
                             f"peak mem {mem}  data {r['data_ms_per_step']:.2f} ms/step "
                             f"({r['data_fraction']:.0%})  warm-up {r['warmup_s']:.1f} s")
            elif "max_rel_diff" in r:
                worst = "NaN/inf" if r["max_rel_diff"] is None else f"{r['max_rel_diff']:.2e}"
                lines.append(f"  {label:15s} bf16 vs fp32, first {r['steps']} losses: max rel "
                             f"diff {worst} (tolerance {r['tolerance']:g}): "
                             f"{'ok' if r['passed'] else 'FAILED'}")
            else:
                lines.append(f"  {label:15s} {mode}: {r.get('error') or r.get('skipped')}")
    for key in ("resume", "ddp"):
        r = report[key]
        if r.get("passed") is None or "error" in r:
            lines.append(f"  {key}: {r.get('error') or r.get('skipped')}")
        elif key == "resume":
            lines.append(f"  resume: stopped after {r['interrupted_after']} of {r['iterations']}"
                         f" iterations, resumed from {r['resumed_from']}: weights "
                         f"{'bit-identical' if r['weights_equal'] else 'DIFFER'} "
                         f"(max |diff| {r['max_abs_weight_diff']:.2e})")
        else:
            lines.append(f"  ddp: {r['gpus']} GPUs, {r['it_per_s']:.1f} it/s, replicas "
                         f"{'equal' if r['replicas_equal'] else 'DIFFER'}")
    verdict = "passed" if report["passed"] else (
        f"FAILED ({report['failed']} checks)" if report["failed"] else
        f"INCOMPLETE ({report['skipped_for_time']} checks not run for time)")
    lines.append(f"{verdict} in {report['seconds']:.0f} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--mirror", default=None, help="fetch the 291 set from this mirror first")
    ap.add_argument("--train-set", default=None, help="default: div2k when fetched, else 291")
    ap.add_argument("--json", default="gpu_check.json", help="where the report goes")
    ap.add_argument("--device", default="cuda",
                    help="cuda (default); cpu rehearses the code path, numbers meaningless")
    ap.add_argument("--models", type=lambda t: t.split(","), default=list(MODELS),
                    help="comma-separated: baseline,edsr (default both)")
    ap.add_argument("--batch-size", type=int, default=None,
                    help="default: the paper profile's (only a CPU rehearsal changes it)")
    ap.add_argument("--lr-patch", type=int, default=None, help="default: the paper profile's")
    ap.add_argument("--iters", type=int, default=300, help="timed iterations per mode")
    ap.add_argument("--warmup", type=int, default=30, help="untimed iterations (compiles)")
    ap.add_argument("--loss-steps", type=int, default=50)
    ap.add_argument("--resume-at", type=int, default=100, help="checkpoint to resume from")
    ap.add_argument("--matmul-n", type=int, default=8192)
    ap.add_argument("--budget-s", type=float, default=420.0,
                    help="checks not started after this many seconds are skipped")
    ap.add_argument("--ddp-worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.ddp_worker:
        ddp_worker(args.ddp_worker, args.train_set, args.data_dir)
        return 0
    for m in args.models:
        if m not in MODELS:
            ap.error(f"--models: unknown {m!r}; use {','.join(MODELS)}")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        print(f"no GPU: CUDA is not available here (torch {torch.__version__}, {build}); "
              "nothing to check. Run this on a machine with an NVIDIA GPU.")
        return 0
    if device.type == "cpu":
        print("CPU rehearsal: runs every step of the check on the CPU; the numbers mean nothing")
    try:
        if args.mirror:
            fetch("291", args.data_dir, args.mirror)
        report = run_checks(args, device)
    except AblationError as exc:  # no data, a bad folder: one line, as the CLI does
        print(f"error: {exc}", file=sys.stderr)
        return 2
    atomic_write_text(args.json, json.dumps(report, indent=2))
    print(summary(report))
    print(f"report: {args.json}")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
