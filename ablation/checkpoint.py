"""Checkpoints that carry their architecture, so they can't be evaluated with the wrong one.

A checkpoint is a dict saved with ``torch.save``: plain containers, tensors and strings only,
so it loads with ``torch.load(weights_only=True)`` (no pickled code runs). It holds:

    format, spec (ModelSpec dict), scale, model (state_dict), and optionally
    optimizer / scheduler / rng / iteration (training state), config, data_fingerprint,
    code_version, variant ("task4/baseline").

:func:`load_model` rebuilds the network from the stored spec and loads weights strictly:
the original study lost two rows to ``strict=False`` with an edited model file.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from pathlib import Path

import torch

from ablation import __version__
from ablation.config import SCALES
from ablation.errors import CheckpointError, ConfigError, check_choice
from ablation.fs import atomic_write_bytes
from ablation.models import ModelSpec, SRNet, build_model

FORMAT = "sr-ablation-checkpoint-v1"


def save_checkpoint(path: str | os.PathLike, model: SRNet, **extra) -> None:
    """Atomically write ``model``'s weights, spec and scale plus any JSON-like ``extra``."""
    state = {
        "format": FORMAT,
        "spec": model.spec.to_dict(),
        "scale": model.scale,
        "model": {k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()},
        "code_version": __version__,
        **extra,
    }
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module inside DDP / torch.compile wrappers."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Load a checkpoint dict safely (``weights_only=True``) and check its format."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found; train it first or check the path")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols it won't run
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt zip, truncated file, or a pickle with code in it
        # the safe unpickler refused a global (code), or an opcode it doesn't run: in a pickle
        # (a torch zip or a raw pickle) that is unsafe content; in anything else, garbage
        refused = re.search(r"weights only load failed|weightsunpickler", str(exc), re.I)
        unsafe = re.search(r"unsupported global", str(exc), re.I) or (refused and _is_pickle(path))
        kind = ("unsafe pickle (contains code or objects the safe loader refuses)" if unsafe
                else "corrupt or truncated")
        raise CheckpointError(
            f"{path}: refusing to load: {kind}; delete it and retrain or re-download it"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: not an sr-ablation checkpoint (no spec inside); only checkpoints written "
            "by `ablation train` can be evaluated"
        )
    return state


def _is_pickle(path: Path) -> bool:
    """A torch zip or a raw pickle (protocol 2+), as opposed to arbitrary bytes."""
    import zipfile

    with open(path, "rb") as fh:
        head = fh.read(2)
    return zipfile.is_zipfile(path) or (head[:1] == b"\x80" and head[1:2] in b"\x02\x03\x04\x05")


def load_model(path: str | os.PathLike, expect_spec: ModelSpec | None = None,
               expect_scale: int | None = None) -> tuple[SRNet, dict]:
    """Rebuild the network from the checkpoint's own spec and load its weights strictly.

    ``expect_spec`` / ``expect_scale`` (e.g. from a task variant) must match the stored ones.
    Returns ``(model in eval mode on CPU, checkpoint dict)``.
    """
    state = read_checkpoint(path)
    try:
        spec = ModelSpec.from_dict(state["spec"])
        scale = int(state["scale"])
        check_choice("scale", scale, SCALES)
        weights = state["model"]
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: damaged checkpoint ({exc}); retrain it") from None
    if expect_spec is not None and expect_spec != spec:
        raise CheckpointError(f"{path}: checkpoint architecture {spec} differs from the "
                              f"requested {expect_spec}; evaluate it with its own spec")
    if expect_scale is not None and expect_scale != scale:
        raise CheckpointError(f"{path}: checkpoint is for x{scale}, not x{expect_scale}; "
                              "pick the checkpoint trained at that scale")
    try:
        model = build_model(spec, scale)
    except ConfigError as exc:
        raise CheckpointError(f"{path}: refusing to build its network ({exc}); the file is "
                              "damaged or not from this project: retrain it") from None
    try:
        model.load_state_dict(weights, strict=True)
    except (RuntimeError, TypeError, AttributeError) as exc:
        first = str(exc).splitlines()[0]
        raise CheckpointError(f"{path}: weights don't fit the stored spec ({first}); the file is "
                              "damaged: retrain it") from None
    bad = next((k for k, v in weights.items()
                if v.is_floating_point() and not torch.isfinite(v).all()), None)
    if bad is not None:
        raise CheckpointError(f"{path}: weights hold NaN or inf (first in {bad!r}); the run "
                              "diverged or the file is damaged: retrain it")
    return model.eval(), state
