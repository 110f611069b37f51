"""The ``ablation`` command (also ``python -m ablation``).

Subcommands: ``data fetch``, ``eval``, ``tasks``, ``train``, ``sweep``, ``upscale``, ``book``.
Every user-facing failure is an :class:`~ablation.errors.AblationError` printed as one line
(``error: ...``) with exit code 2; nothing is parsed at import time.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        msg = f"expected comma-separated integers, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None


def _strs(text: str) -> list[str]:
    return [x.strip() for x in str(text).split(",") if x.strip()]


# --------------------------------------------------------------------------- data


def cmd_data_fetch(args) -> int:
    from ablation.fetch import fetch

    folders = fetch(args.name, args.data_dir, args.mirror, tuple(args.lr_scales or ()))
    for f in folders:
        print(f"ok: {f}")
    return 0


# --------------------------------------------------------------------------- eval


def _model_for_eval(name: str, scale: int, args):
    from ablation.checkpoint import load_model
    from ablation.evaluate import Bicubic

    if name == "bicubic":
        return Bicubic(scale), "bicubic"
    if name.endswith(".pt") or Path(name).exists():
        model, state = load_model(name, expect_scale=scale)
        return model, Path(name).stem
    from ablation.results import resolve_model

    path = resolve_model(name, scale, args.profile, results_dir=args.results)
    model, _ = load_model(path, expect_scale=scale)
    return model, name


def cmd_eval(args) -> int:
    import pandas as pd

    from ablation.errors import check_choice
    from ablation.evaluate import evaluate, summarize
    from ablation.fs import atomic_write_text
    from ablation.train import resolve_device

    device = resolve_device(args.device)
    frames = []
    for scale in args.scales:
        check_choice("scale", scale, (2, 3, 4))
        model, label = _model_for_eval(args.model, scale, args)
        if hasattr(model, "to") and args.model != "bicubic":
            model = model.to(device)
        if args.tile or args.self_ensemble:
            from ablation.inference import Enhanced

            model = Enhanced(model, tile=args.tile or None, self_ensemble=args.self_ensemble,
                             device=device)
        per_image = evaluate(model, args.sets, scale, label, args.data_dir, device=device,
                             save_dir=args.save_dir, progress=sys.stderr.isatty())
        frames.append(summarize(per_image))
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
    from ablation.runs import run_variant

    overrides = {}
    for name in ("iterations", "batch_size", "lr_patch", "learning_rate", "train_set",
                 "device", "amp", "perceptual_backbone"):
        value = getattr(args, name)
        if value is not None:
            overrides[name] = value
    if args.compile:
        overrides["compile"] = True
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


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ablation", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("data", help="fetch datasets")
    dsub = d.add_subparsers(dest="data_command", required=True)
    f = dsub.add_parser("fetch", help="download (or copy from a mirror) and verify a dataset")
    f.add_argument("name", help="benchmark, div2k, t91, bsds200, 291")
    f.add_argument("--data-dir", default=None, help="default: $ABLATION_DATA or ./data")
    f.add_argument("--mirror", default=None,
                   help="local folder laid out like shared/datasets (or $ABLATION_MIRROR)")
    f.add_argument("--lr-scales", type=_ints, default=None,
                   help="DIV2K: also fetch the official LR bicubic files for these scales")
    f.set_defaults(func=cmd_data_fetch)

    e = sub.add_parser("eval", help="score a model on benchmark sets (PSNR/SSIM on Y)")
    e.add_argument("--model", default="bicubic",
                   help="bicubic, TASK/VARIANT (e.g. task4/baseline) or a checkpoint .pt")
    e.add_argument("--sets", type=_strs, default=["Set5", "Set14", "B100", "Urban100"],
                   help="benchmark names or folders of HR images")
    e.add_argument("--scales", type=_ints, default=[2, 3, 4])
    e.add_argument("--data-dir", default=None)
    e.add_argument("--results", default=None, help="results folder for TASK/VARIANT models")
    e.add_argument("--profile", default="cpu")
    e.add_argument("--device", default="auto")
    e.add_argument("--tile", type=int, default=0, help="tiled inference (LR tile size)")
    e.add_argument("--self-ensemble", action="store_true", help="x8 flip/transpose ensemble")
    e.add_argument("--save-dir", default=None, help="also write SR images here")
    e.add_argument("--json", default=None, help="write records to this JSON file")
    e.set_defaults(func=cmd_eval)

    t = sub.add_parser("tasks", help="list every variant with params, FLOPs and CPU latency")
    t.add_argument("--json", action="store_true")
    t.add_argument("--no-latency", action="store_true", help="skip the CPU latency column")
    t.set_defaults(func=cmd_tasks)

    tr = sub.add_parser("train", help="train and evaluate one variant (reuses finished runs)")
    tr.add_argument("--task", type=int, required=True, help="1-11, or 0 for reference models")
    tr.add_argument("--variant", required=True)
    tr.add_argument("--scale", type=int, default=2)
    tr.add_argument("--profile", default="cpu", help="smoke, cpu or paper")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--iterations", type=int, default=None)
    tr.add_argument("--batch-size", type=int, default=None)
    tr.add_argument("--lr-patch", type=int, default=None)
    tr.add_argument("--learning-rate", type=float, default=None)
    tr.add_argument("--train-set", default=None)
    tr.add_argument("--device", default=None)
    tr.add_argument("--amp", default=None)
    tr.add_argument("--perceptual-backbone", default=None,
                    help="vgg19 (default; needs its weights) or efficientnet_lite0 (offline)")
    tr.add_argument("--compile", action="store_true")
    tr.add_argument("--retrain", action="store_true", help="ignore a finished run")
    tr.add_argument("--results", default=None)
    tr.add_argument("--data-dir", default=None)
    tr.set_defaults(func=cmd_train)

    for module in ("sweep", "upscale", "book"):
        try:
            mod = __import__(f"ablation.{module}", fromlist=["add_parser"])
        except ImportError:
            continue
        if hasattr(mod, "add_parser"):
            mod.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    from ablation.errors import AblationError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except AblationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished work is kept and a rerun resumes", file=sys.stderr)
        return 130
