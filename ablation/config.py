"""Training configuration: one frozen dataclass and the named profiles.

A profile is a named set of defaults; every field can be overridden per run (papermill passes
plain values, so every field is a JSON-friendly scalar or tuple). ``config_hash`` covers only
the fields that change the numbers, so a run reused on another machine or device still matches.
"""

from __future__ import annotations

import hashlib
import json
import math
import operator
from dataclasses import asdict, dataclass, fields, replace

from ablation.errors import ConfigError, check_choice

SCALES = (2, 3, 4)  # the upscaling factors every net, task and command supports
BENCHMARKS = ("Set5", "Set14", "B100", "Urban100")  # the benchmark sets, in table order


def canonical_set(name: str) -> str:
    """A benchmark name in any case ('set5', 'b100', 'URBAN100') -> its spelling in
    :data:`BENCHMARKS`; anything else (a folder of images) unchanged. A folder that is spelt
    like a benchmark is given with its path (``./set5``)."""
    for bench in BENCHMARKS:
        if isinstance(name, str) and name.lower() == bench.lower():
            return bench
    return name


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run apart from the architecture and the scale."""

    profile: str = "cpu"
    iterations: int = 2000
    batch_size: int = 16
    lr_patch: int = 32  # LR patch side; the HR patch is lr_patch * scale
    learning_rate: float = 2e-3  # peak learning rate
    schedule: str = "onecycle"  # "onecycle" (warm-up + cosine) or "step" (halve at step_at)
    warmup: float = 0.15  # one-cycle: fraction of iterations spent warming up
    step_at: float = 2 / 3  # step: fraction of iterations after which the rate is halved
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    train_set: str = "291"  # "291", "t91", "bsds200", "div2k", or a folder of images
    val_images: int = 10  # held out from the training set (DIV2K: 0801-0810)
    blur_sigma: float = 0.0  # the original README's "simplified degradation"; 0 = protocol
    noise_sigma: float = 0.0
    pixel_weight: float = 0.0  # perceptual loss: weight of an added L1 pixel term
    perceptual_backbone: str = "vgg19"
    seed: int = 0
    eval_sets: tuple[str, ...] = BENCHMARKS
    # --- below: how to run, not what to compute (excluded from the config hash) ---
    device: str = "auto"
    amp: str = "auto"  # auto: bf16 on GPUs that have it, else fp16; always off on CPU
    compile: bool = False
    channels_last: bool = True
    val_every: int = 250
    checkpoint_every: int = 250
    log_every: int = 25
    progress: bool = True

    def __post_init__(self):
        check_choice("profile", self.profile, PROFILE_NAMES)
        check_choice("schedule", self.schedule, ("onecycle", "step"))
        check_choice("amp", self.amp, ("auto", "bf16", "fp16", "off"))
        for name in POSITIVE_INTS + ("seed", "val_images"):
            v, low = getattr(self, name), 1 if name in POSITIVE_INTS else 0
            try:
                ok = not isinstance(v, bool) and operator.index(v) >= low
            except TypeError:
                ok = False
            if not ok:
                kind = "a positive integer" if low else "an integer >= 0"
                raise ConfigError(f"{name} must be {kind}, got {v!r}")
        for name in ("learning_rate", "warmup", "step_at", "adam_eps", "blur_sigma",
                     "noise_sigma", "pixel_weight"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ConfigError(f"{name} must be a finite number, got {v!r}")
        if self.learning_rate <= 0:
            raise ConfigError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.blur_sigma < 0 or self.noise_sigma < 0:
            raise ConfigError("blur_sigma and noise_sigma must be >= 0")
        for s in self.eval_sets:
            if not isinstance(s, str) or not s:
                raise ConfigError(f"eval_sets must be set names or folders, got {self.eval_sets}")

    def to_dict(self) -> dict:
        return asdict(self)


POSITIVE_INTS = ("iterations", "batch_size", "lr_patch", "val_every", "checkpoint_every",
                 "log_every")
PERCEPTUAL_FIELDS = ("pixel_weight", "perceptual_backbone")
RUNTIME_FIELDS = ("device", "amp", "compile", "channels_last", "val_every", "checkpoint_every",
                  "log_every", "progress")

# The compute ladder: the cpu recipe with N times the iterations (same schedule shape: the
# warm-up and the cosine stretch with the run), to see whether an answer holds with more compute.
LADDER = {"cpu4": 4, "cpu16": 16}
PROFILE_NAMES = ("smoke", "cpu", *LADDER, "paper")
PROFILES: dict[str, dict] = {
    # seconds per run: proves the pipeline, never shown as findings
    "smoke": dict(iterations=12, batch_size=4, lr_patch=16, learning_rate=1e-3, train_set="t91",
                  val_images=2, eval_sets=("Set5",), val_every=6, checkpoint_every=6,
                  log_every=3),
    # the budget that runs on 2 CPU cores (see the book's method page for the reasoning);
    # its perceptual loss uses the offline ImageNet substitute (VGG19 weights need internet)
    "cpu": dict(perceptual_backbone="efficientnet_lite0"),
    # the original recipe, for GPUs: DIV2K, 300k iterations, 1e-4 halved at 200k
    "paper": dict(iterations=300_000, batch_size=16, lr_patch=48, learning_rate=1e-4,
                  schedule="step", step_at=2 / 3, train_set="div2k", val_images=10,
                  val_every=5000, checkpoint_every=5000, log_every=100),
}
PROFILES.update({name: dict(PROFILES["cpu"], iterations=TrainConfig.iterations * n,
                            val_every=TrainConfig.val_every * n // 2)
                 for name, n in LADDER.items()})


def base_profile(profile: str) -> str:
    """The profile whose recipe ``profile`` scales ("cpu" for the ladder's cpu4/cpu16)."""
    return "cpu" if profile in LADDER else profile


def budget_multiplier(profile: str) -> int:
    """How many times the base profile's iterations ``profile`` trains for (1 off the ladder)."""
    return LADDER.get(profile, 1)


def _coerce(name: str, value):
    """Papermill and the CLI pass plain values: lists become tuples, '1,2' strings split."""
    if name == "eval_sets":
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        return tuple(canonical_set(v) for v in value)
    if name == "adam_betas" and isinstance(value, list):
        return tuple(value)
    if isinstance(value, list):
        return tuple(value)
    return value


def make_config(profile: str = "cpu", **overrides) -> TrainConfig:
    """The profile's defaults with ``overrides`` applied; unknown names list the valid ones.

    ``None`` values mean "use the profile default" (convenient for notebook parameters).
    """
    check_choice("profile", profile, PROFILE_NAMES)
    valid = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise ConfigError(f"unknown training parameter(s) {unknown}; valid: {sorted(valid)}")
    values = {**PROFILES[profile], **{k: _coerce(k, v) for k, v in overrides.items()
                                      if v is not None}}
    return replace(TrainConfig(profile=profile), **values)


def config_hash(config: TrainConfig, **extra) -> str:
    """A short digest of the fields that change the results (plus ``extra``: spec, scale,
    loss, data fingerprint)."""
    d = {k: v for k, v in config.to_dict().items() if k not in RUNTIME_FIELDS}
    if extra.get("loss") != "perceptual":  # these settings can't change a pixel-loss run
        for k in PERCEPTUAL_FIELDS:
            d.pop(k)
    d.update(extra)
    blob = json.dumps(d, sort_keys=True, default=list)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
