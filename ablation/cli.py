"""The ``ablation`` command (also ``python -m ablation``).

Subcommands: ``data fetch``, ``eval``, ``tasks``, ``train``, ``sweep``, ``upscale``, ``book``.
Every user-facing failure is an :class:`~ablation.errors.AblationError` printed as one line
(``error: ...``) with exit code 2; nothing is parsed at import time.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path

from ablation import publish, sweep, upscale
from ablation.command import (
    DATA_DIR_HELP,
    DEVICE_HELP,
    RESULTS_HELP,
    Parser,
    add_progress_option,
    int_list,
    package_version,
    progress_wanted,
    run,
    set_list,
    str_list,
)
from ablation.config import BENCHMARKS, PROFILE_NAMES, SCALES, TrainConfig
from ablation.errors import MissingModelError
from ablation.tasks import TASK_RANGE

# modules with add_parser(subparsers); publish registers `ablation book` (ablation.book's
# options plus --check, --publish and --remote)
SUBCOMMANDS = (sweep, upscale, publish)
# TrainConfig fields with an option of their own in `ablation train` (not a config override)
TRAIN_OWN_OPTIONS = ("profile", "seed")
TRAIN_HELP = {
    "perceptual_backbone": "vgg19 (default; needs its weights) or efficientnet_lite0 (offline)",
}


# --------------------------------------------------------------------------- data


def cmd_data_fetch(args) -> int:
    from ablation.fetch import fetch

    folders = fetch(args.name, args.data_dir, args.mirror, tuple(args.lr_scales or ()))
    for f in folders:
        print(f"ok: {f}")
    return 0


# --------------------------------------------------------------------------- eval


def _model_for_eval(name: str, scale: int, args):
    """The model ``--model`` names at ``scale`` and its label; MissingModelError when it has
    none at that scale (a checkpoint trained at another one, no finished run)."""
    from ablation.checkpoint import load_model, read_checkpoint
    from ablation.evaluate import Bicubic

    if name == "bicubic":
        return Bicubic(scale), "bicubic"
    if name.endswith(".pt") or Path(name).exists():
        stored = read_checkpoint(name).get("scale")
        if stored != scale:
            raise MissingModelError(f"{name}: checkpoint is for x{stored}, not x{scale}")
        model, state = load_model(name, expect_scale=scale)
        return model, Path(name).stem
    from ablation.results import resolve_model

    path = resolve_model(name, scale, args.profile, results_dir=args.results)
    model, _ = load_model(path, expect_scale=scale)
    return model, name


def cmd_eval(args) -> int:
    import pandas as pd

    from ablation.device import resolve_device
    from ablation.errors import ConfigError, check_choice
    from ablation.evaluate import evaluate, summarize
    from ablation.fs import atomic_write_text
    from ablation.inference import Enhanced

    for option in ("scales", "sets"):
        if not getattr(args, option):
            raise ConfigError(f"--{option}: empty; give a comma-separated list, e.g. "
                              f"{'2,3,4' if option == 'scales' else 'Set5,Set14'}")
    for scale in args.scales:
        check_choice("scale", scale, SCALES)
    if args.tile < 0:
        raise ConfigError(f"--tile must be >= 0 (0: whole image), got {args.tile}")
    device = resolve_device(args.device)
    frames, skipped = [], []
    for scale in dict.fromkeys(args.scales):
        try:
            model, label = _model_for_eval(args.model, scale, args)
        except MissingModelError as exc:
            skipped.append(f"x{scale}")
            print(f"note: skipped x{scale}: {exc}", file=sys.stderr)
            continue
        if hasattr(model, "to") and args.model != "bicubic":
            model = model.to(device)
        if args.tile or args.self_ensemble:
            model = Enhanced(model, tile=args.tile or None, self_ensemble=args.self_ensemble,
                             device=device)
        per_image = evaluate(model, args.sets, scale, label, args.data_dir, device=device,
                             save_dir=args.save_dir, progress=progress_wanted(args))
        frames.append(summarize(per_image))
    if not frames:
        raise MissingModelError(f"--scales {','.join(map(str, args.scales))}: {args.model} has "
                                f"no model at any of them ({', '.join(skipped)} skipped, see "
                                "above); evaluate a scale it was trained at")
    table = pd.concat(frames, ignore_index=True)
    pivot = table.pivot_table(index=["model", "scale"], columns="set", values="psnr",
                              sort=False)
    with pd.option_context("display.float_format", "{:.2f}".format, "display.width", 120):
        print("PSNR (dB, Y, shave = scale)")
        print(pivot.to_string())
        print("SSIM")
        print(table.pivot_table(index=["model", "scale"], columns="set", values="ssim",
                                sort=False).to_string(float_format="{:.4f}".format))
    if args.json:
        records = [dict(model=r.model, set=r.set, scale=int(r.scale), psnr=float(r.psnr),
                        ssim=float(r.ssim), n_images=int(r.n_images))
                   for r in table.itertuples()]
        atomic_write_text(args.json, json.dumps(records, indent=2))
    return 0


# --------------------------------------------------------------------------- tasks


def cmd_tasks(args) -> int:
    from ablation.costs import cost_table

    table = cost_table(latency=not args.no_latency)
    if args.json:
        cols = ["task", "variant", "scale", "params", "flops_per_pixel", "spec"]
        print(json.dumps(table[cols + [c for c in table.columns if c not in cols]]
                         .to_dict("records"), indent=1, default=str))
        return 0
    shown = table.drop(columns=["spec"])
    import pandas as pd

    with pd.option_context("display.width", 160, "display.max_rows", 500):
        print(shown.to_string(index=False))
    return 0


# --------------------------------------------------------------------------- train


def cmd_train(args) -> int:
    from ablation.device import resolve_device
    from ablation.errors import ConfigError
    from ablation.runs import run_variant

    if args.seed < 0:
        raise ConfigError(f"--seed must be >= 0, got {args.seed}")
    if args.device is not None:
        resolve_device(args.device)  # a device this machine lacks: refused before any work
    overrides = {f.name: getattr(args, f.name) for f in train_config_fields()
                 if getattr(args, f.name) is not None}
    m = run_variant(args.task, args.variant, args.scale, args.profile, args.seed,
                    results_dir=args.results, data_dir=args.data_dir, retrain=args.retrain,
                    **overrides)
    state = "reused" if m.get("reused") else "trained"
    print(f"{state}: task {args.task} / {args.variant} x{args.scale} ({args.profile}, "
          f"seed {args.seed}), train {m['train_seconds']:.0f} s")
    for set_name, s in m["sets"].items():
        print(f"  {set_name:9s} PSNR {s['psnr']:.2f} dB  SSIM {s['ssim']:.4f}  "
              f"({s['n_images']} images)")
    return 0


def train_config_fields():
    """The TrainConfig fields ``ablation train`` takes as ``--field-name`` overrides."""
    return [f for f in fields(TrainConfig) if f.name not in TRAIN_OWN_OPTIONS]


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """One option per TrainConfig field, typed like the field's default; unset options keep
    the profile's value (None), booleans get ``--x`` / ``--no-x``."""
    for f in train_config_fields():
        flag = "--" + f.name.replace("_", "-")
        default = f.default
        help_text = TRAIN_HELP.get(f.name, f"TrainConfig.{f.name} (default: the profile's)")
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                                help=help_text)
        elif isinstance(default, tuple):
            kind = str_list if all(isinstance(v, str) for v in default) else _float_list
            parser.add_argument(flag, type=kind, default=None, help=help_text + ", comma-separated")
        else:
            parser.add_argument(flag, type=type(default), default=None, help=help_text)


def _float_list(text: str) -> tuple[float, ...]:
    """argparse type: '0.9,0.999' -> (0.9, 0.999)."""
    try:
        return tuple(float(x) for x in str(text).split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") \
            from None


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="ablation", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("data", help="fetch datasets")
    dsub = d.add_subparsers(dest="data_command", required=True)
    f = dsub.add_parser("fetch", help="download (or copy from a mirror) and verify a dataset")
    f.add_argument("name", help="benchmark, div2k, t91, bsds200, 291")
    f.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    f.add_argument("--mirror", default=None,
                   help="local folder laid out like shared/datasets (default: $ABLATION_MIRROR, "
                        "else download from the official URLs)")
    f.add_argument("--lr-scales", type=int_list, default=None,
                   help="DIV2K: also fetch the official LR bicubic files for these scales "
                        "(default: none)")
    f.set_defaults(func=cmd_data_fetch)

    e = sub.add_parser("eval", help="score a model on benchmark sets (PSNR/SSIM on Y)")
    e.add_argument("--model", default="bicubic",
                   help="bicubic, TASK/VARIANT (e.g. task4/baseline) or a checkpoint .pt "
                        "(default bicubic)")
    e.add_argument("--sets", type=set_list, default=list(BENCHMARKS),
                   help="benchmark names (any case) or folders of HR images, comma-separated "
                        f"(default {','.join(BENCHMARKS)})")
    e.add_argument("--scales", type=int_list, default=list(SCALES),
                   help="comma-separated; scales without a model are skipped with a note "
                        f"(default {','.join(map(str, SCALES))})")
    e.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    e.add_argument("--results", default=None,
                   help="for TASK/VARIANT models: " + RESULTS_HELP)
    e.add_argument("--profile", default="cpu",
                   help=f"results profile of TASK/VARIANT models: {' | '.join(PROFILE_NAMES)} "
                        "(default cpu)")
    e.add_argument("--device", default="auto", help=DEVICE_HELP)
    e.add_argument("--tile", type=int, default=0,
                   help="tiled inference: LR tile size, 0 = whole image (default 0)")
    e.add_argument("--self-ensemble", action="store_true", help="x8 flip/transpose ensemble")
    e.add_argument("--save-dir", default=None,
                   help="also write SR images here (default: none written)")
    e.add_argument("--json", default=None,
                   help="write records to this JSON file (default: none written)")
    add_progress_option(e)
    e.set_defaults(func=cmd_eval)

    t = sub.add_parser("tasks", help="list every variant with params, FLOPs and CPU latency")
    t.add_argument("--json", action="store_true", help="print JSON records instead of a table")
    t.add_argument("--no-latency", action="store_true", help="skip the CPU latency column")
    t.set_defaults(func=cmd_tasks)

    tr = sub.add_parser("train", help="train and evaluate one variant (reuses finished runs)")
    tr.add_argument("--task", type=int, required=True,
                    help=f"{TASK_RANGE}, or 0 for reference models (required)")
    tr.add_argument("--variant", required=True,
                    help="a variant of the task, as `ablation tasks` lists (required)")
    tr.add_argument("--scale", type=int, default=2,
                    help=f"{' | '.join(map(str, SCALES))} (default 2)")
    tr.add_argument("--profile", default="cpu",
                    help=f"{' | '.join(PROFILE_NAMES)} (default cpu)")
    tr.add_argument("--seed", type=int, default=0, help="(default 0)")
    add_config_options(tr)
    tr.add_argument("--retrain", action="store_true", help="ignore a finished run")
    tr.add_argument("--results", default=None, help=RESULTS_HELP)
    tr.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    tr.set_defaults(func=cmd_train)

    for module in SUBCOMMANDS:
        module.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    return run(build_parser(), argv)
