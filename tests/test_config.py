"""Training configuration: profiles, overrides, validation and the config hash."""

from __future__ import annotations

from dataclasses import fields

import pytest

from ablation.config import (
    BENCHMARKS,
    PROFILE_NAMES,
    RUNTIME_FIELDS,
    TrainConfig,
    config_hash,
    make_config,
)
from ablation.errors import ConfigError

FIELD_NAMES = sorted(f.name for f in fields(TrainConfig))


def test_profile_defaults():
    cpu = make_config()
    assert cpu == TrainConfig(perceptual_backbone="efficientnet_lite0")
    assert cpu.profile == "cpu"
    assert (cpu.iterations, cpu.batch_size, cpu.lr_patch) == (2000, 16, 32)
    assert cpu.learning_rate == 2e-3 and cpu.schedule == "onecycle"
    assert cpu.train_set == "291" and cpu.eval_sets == BENCHMARKS
    assert cpu.adam_betas == (0.9, 0.999)

    assert make_config("paper").perceptual_backbone == "vgg19"

    smoke = make_config("smoke")
    assert smoke.profile == "smoke"
    assert (smoke.iterations, smoke.batch_size, smoke.lr_patch) == (12, 4, 16)
    assert smoke.train_set == "t91" and smoke.eval_sets == ("Set5",)
    assert (smoke.val_every, smoke.checkpoint_every, smoke.log_every) == (6, 6, 3)

    paper = make_config("paper")
    assert paper.iterations == 300_000 and paper.lr_patch == 48
    assert paper.learning_rate == 1e-4
    assert paper.schedule == "step" and paper.step_at == pytest.approx(2 / 3)
    assert paper.train_set == "div2k"
    assert paper.eval_sets == BENCHMARKS


def test_overrides_apply_on_top_of_profile():
    cfg = make_config("smoke", iterations=30, learning_rate=5e-4, seed=3)
    assert (cfg.iterations, cfg.learning_rate, cfg.seed) == (30, 5e-4, 3)
    assert cfg.batch_size == 4 and cfg.train_set == "t91"  # the rest stays smoke
    # None means "the profile default" (notebook parameters)
    assert make_config("paper", iterations=None, batch_size=None) == make_config("paper")


def test_papermill_style_plain_values():
    cfg = make_config("cpu", eval_sets="Set5, Set14,", adam_betas=[0.8, 0.99])
    assert cfg.eval_sets == ("Set5", "Set14")
    assert cfg.adam_betas == (0.8, 0.99)
    assert isinstance(cfg.adam_betas, tuple)
    assert make_config("cpu", eval_sets=["B100", "Urban100"]).eval_sets == ("B100", "Urban100")
    hash(cfg)  # frozen and hashable once lists became tuples
    assert make_config("cpu", eval_sets=["Set5", "Set14"]) == make_config(
        "cpu", eval_sets=("Set5", "Set14"))


def test_unknown_parameter_lists_valid_names():
    with pytest.raises(ConfigError) as err:
        make_config("cpu", iterationz=10, lr=1)
    msg = str(err.value)
    assert "unknown training parameter(s) ['iterationz', 'lr']" in msg
    assert f"valid: {FIELD_NAMES}" in msg
    assert "\n" not in msg


@pytest.mark.parametrize(("overrides", "match"), [
    (dict(iterations=-5), "iterations must be a positive integer, got -5"),
    (dict(iterations=0), "iterations must be a positive integer"),
    (dict(batch_size=0), "batch_size must be a positive integer"),
    (dict(log_every=0), "log_every must be a positive integer"),
    (dict(learning_rate=0.0), "learning_rate must be > 0"),
    (dict(noise_sigma=-1.0), "blur_sigma and noise_sigma must be >= 0"),
    (dict(schedule="cosine"), "unknown schedule 'cosine'; valid values: onecycle, step"),
    (dict(amp="fp8"), "unknown amp 'fp8'; valid values: auto, bf16, fp16, off"),
    (dict(eval_sets=("Set5", "")), "eval_sets must be set names or folders"),
])
def test_bad_values(overrides, match):
    with pytest.raises(ConfigError) as err:
        make_config("cpu", **overrides)
    assert match in str(err.value)
    assert isinstance(err.value, ValueError)  # ConfigError is also a ValueError


def test_unknown_profile_lists_profiles():
    with pytest.raises(ConfigError,
                       match="unknown profile 'gpu'; valid values: smoke, cpu, cpu4, cpu16, paper"):
        make_config("gpu")
    with pytest.raises(ConfigError, match="valid values: smoke, cpu, cpu4, cpu16, paper"):
        TrainConfig(profile="fast")
    assert PROFILE_NAMES == ("smoke", "cpu", "cpu4", "cpu16", "paper")


def test_config_hash_ignores_runtime_fields():
    base = make_config("cpu")
    h = config_hash(base)
    assert len(h) == 16 and int(h, 16) >= 0
    assert config_hash(make_config("cpu")) == h  # deterministic
    runtime = dict(device="cuda", amp="bf16", compile=True, channels_last=False, val_every=7,
                   checkpoint_every=9, log_every=1, progress=False)
    assert set(runtime) == set(RUNTIME_FIELDS)
    for name, value in runtime.items():
        assert config_hash(make_config("cpu", **{name: value})) == h, name
    assert config_hash(make_config("cpu", **runtime)) == h


@pytest.mark.parametrize("override", [
    dict(iterations=1501), dict(seed=1), dict(batch_size=8), dict(learning_rate=1e-3),
    dict(eval_sets="Set5"), dict(train_set="t91"), dict(noise_sigma=1.0),
    dict(schedule="step"),
])
def test_config_hash_changes_with_what_changes_results(override):
    assert config_hash(make_config("cpu", **override)) != config_hash(make_config("cpu"))


def test_config_hash_extra_and_profile():
    cfg = make_config("cpu")
    assert config_hash(cfg, scale=2) != config_hash(cfg, scale=3)
    assert config_hash(cfg, loss="l1") != config_hash(cfg)
    assert config_hash(cfg, scale=2, loss="l1") == config_hash(cfg, loss="l1", scale=2)
    assert config_hash(make_config("smoke")) != config_hash(cfg)
    # list and tuple spellings of the same values hash the same (JSON arrays)
    assert config_hash(make_config("cpu", eval_sets=["Set5"])) == \
        config_hash(make_config("cpu", eval_sets=("Set5",)))
    assert config_hash(cfg, spec={"n_feats": 64}) != config_hash(cfg, spec={"n_feats": 32})


def test_hash_ignores_perceptual_settings_for_pixel_losses():
    vgg = make_config("cpu", perceptual_backbone="vgg19")
    lite = make_config("cpu")
    assert config_hash(vgg, loss="l1") == config_hash(lite, loss="l1")
    assert config_hash(vgg, loss="perceptual") != config_hash(lite, loss="perceptual")


def test_ladder_profiles_scale_the_cpu_recipe_and_nothing_else():
    from ablation.config import LADDER, PROFILES, base_profile, budget_multiplier
    from ablation.tasks import get_task

    cpu = make_config("cpu")
    for name, n in LADDER.items():
        cfg = make_config(name)
        assert cfg.iterations == n * cpu.iterations == {"cpu4": 8000, "cpu16": 32000}[name]
        same = {k: v for k, v in cfg.to_dict().items()
                if k not in ("profile", "iterations", "val_every")}
        assert same == {k: v for k, v in cpu.to_dict().items()
                        if k not in ("profile", "iterations", "val_every")}
        assert base_profile(name) == "cpu" and budget_multiplier(name) == n
        assert config_hash(cfg) != config_hash(cpu)
        assert name in PROFILES
    assert budget_multiplier("cpu") == 1 and base_profile("paper") == "paper"
    edsr = get_task(0).variant("edsr_baseline")  # the cpu profile's overrides carry up the ladder
    assert edsr.overrides("cpu4") == edsr.overrides("cpu") != {}
    assert edsr.overrides("paper") == {}
