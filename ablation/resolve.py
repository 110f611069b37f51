"""A run resolved once: its settings, files, data fingerprint and config hash, frozen.

:func:`ablation.runs.run_variant` decides whether a finished run can be reused by comparing
its config hash with the one in ``metrics.json``, and :func:`ablation.train.train` writes
that hash into the checkpoints it resumes from. Both take the :class:`ResolvedRun` that
:func:`resolve_run` returns, so the hash that decides reuse is the hash training used, by
construction. The computed reference (bicubic, ``Variant.spec is None``) resolves like any
other variant: no files, fingerprint ``"none"``, a hash of the evaluation sets only.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from ablation import data, paths
from ablation.config import SCALES, TrainConfig, config_hash, make_config
from ablation.device import resolve_device
from ablation.errors import check_choice
from ablation.models import ModelSpec
from ablation.tasks import LOSSES, Variant


@dataclass(frozen=True)
class ResolvedRun:
    """Everything that defines one run's numbers, computed once.

    ``spec`` None is the protocol's bicubic upsampling: evaluated, never trained. Runs
    resolved from a known fingerprint (:func:`resolve_run` with ``fingerprint``) carry
    no file lists: they can be matched against a finished run but not trained.
    """

    name: str  # the variant's name ("baseline", "bicubic"), or "" for a bare ModelSpec
    spec: ModelSpec | None
    scale: int
    profile: str
    config: TrainConfig
    loss: str | None
    train_files: tuple[Path, ...]
    val_files: tuple[Path, ...]
    data_fingerprint: str
    config_hash: str
    data_dir: Path  # where the training data and its decoded cache live

    @property
    def trainable(self) -> bool:
        """False for the computed reference (bicubic)."""
        return self.spec is not None


def resolve_run(what: Variant | ModelSpec, scale: int, profile: str = "cpu", *,
                loss: str | None = None, data_dir=None, fingerprint: str | None = None,
                **overrides) -> ResolvedRun:
    """Resolve a task variant (its own profile overrides first, then ``overrides``) or a bare
    :class:`ModelSpec` (L1 loss unless ``loss``) into a :class:`ResolvedRun`.

    Checks scale, loss and device before touching any data. ``fingerprint`` skips listing
    the training files (e.g. to recompute a finished run's hash from the fingerprint
    its ``metrics.json`` recorded).
    """
    variant = what if isinstance(what, Variant) else None
    if variant is not None:
        overrides = {**variant.overrides(profile), **overrides}
    config = make_config(profile, **overrides)
    check_choice("scale", scale, SCALES)
    spec = variant.spec if variant is not None else what
    name = variant.name if variant is not None else ""
    root = paths.data_dir(data_dir)
    resolve_device(config.device)  # a device this machine lacks fails before anything runs
    if spec is None:  # computed reference: depends on the evaluation sets only
        chash = config_hash(make_config(profile, eval_sets=config.eval_sets), model=name,
                            scale=scale)
        return ResolvedRun(name, None, scale, profile, config, None, (), (), "none", chash,
                           root)
    loss_kind = loss or (variant.loss if variant is not None else "l1")
    check_choice("loss", loss_kind, LOSSES)
    train_files: tuple[Path, ...] = ()
    val_files: tuple[Path, ...] = ()
    if fingerprint is None:
        train, val = split_files(config, data_dir)
        train_files, val_files = tuple(train), tuple(val)
        fingerprint = data_fingerprint([*train_files, *val_files])
    chash = config_hash(config, spec=spec.to_dict(), scale=scale, loss=loss_kind,
                        data=fingerprint)
    return ResolvedRun(name, spec, scale, profile, config, loss_kind, train_files, val_files,
                       fingerprint, chash, root)


def split_files(config: TrainConfig, data_dir=None) -> tuple[list[Path], list[Path]]:
    """(training files, validation files); validation is never a test set."""
    files = data.train_files(config.train_set, data_dir)
    if config.train_set == "div2k":
        return files, data.div2k_valid_files(data_dir, 801, 800 + config.val_images)
    if len(files) <= config.val_images:
        raise data.DataError(f"{config.train_set}: only {len(files)} images, fewer than "
                             f"val_images + 1 = {config.val_images + 1}; use a bigger set")
    # hold out an evenly spread subset (deterministic) from the sorted list
    step = len(files) / config.val_images
    val_idx = {int(i * step + step / 2) for i in range(config.val_images)}
    train = [f for i, f in enumerate(files) if i not in val_idx]
    val = [f for i, f in enumerate(files) if i in val_idx]
    return train, val


def data_fingerprint(files: list[Path]) -> str:
    """Content-independent of paths and mtimes: names and sizes, so a fresh fetch matches."""
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.name}|{f.stat().st_size}\n".encode())
    return h.hexdigest()[:16]
