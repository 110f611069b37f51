"""Every variant of the study as a built network: shapes, parameter and FLOP counts, gradients,
spec validation, and the one-factor-at-a-time structure of the task table."""

from __future__ import annotations

import json
import math
from dataclasses import fields, replace

import pytest
import torch
from torch import nn

from ablation.degradation import bicubic_up
from ablation.errors import ConfigError
from ablation.models import (
    SCALES,
    ModelSpec,
    build_model,
    count_params,
    flops_per_output_pixel,
    macs_per_output_pixel,
)
from ablation.tasks import BASELINE, EDSR_BASELINE, REFERENCE, SRCNN3, TASKS, all_variants, get_task

# Small odd-sized LR input: odd sizes catch off-by-one padding / cropping in every style.
LR_H, LR_W = 7, 9


def _every_variant():
    """(task number, variant name) of every variant, tasks 1-11 and the reference models."""
    for task in [*TASKS.values(), REFERENCE]:
        for v in task.variants:
            yield task.number, v.name


VARIANTS = list(_every_variant())
# all_variants() runs plus scales 2, 3, 4 for every variant (timm-style full grid).
GRID = [(t, v, s) for t, v in VARIANTS for s in SCALES]
IDS = [f"task{t}-{v}-x{s}" for t, v, s in GRID]
# Off-study combinations (narrow, for speed) so the closed forms are checked beyond the table.
EXTRA_SPECS = {
    "bicubic-res-prelu-bodyconv": ModelSpec(input="bicubic", n_blocks=2, n_feats=16, block="res",
                                      act="prelu", body_conv=True),
    "bicubic-convbn-meanshift": ModelSpec(input="bicubic", n_blocks=2, n_feats=16,
                                          block="conv_bn", mean_shift=True),
    "bicubic-rcab-groups": ModelSpec(input="bicubic", n_blocks=1, n_groups=2, n_feats=16,
                                     block="rcab", reduction=4),
    "lr-convbn-prelu-nobias": ModelSpec(n_blocks=3, n_feats=16, block="conv_bn", act="prelu",
                                        bias=False),
    "lr-rcab-groups-nobias": ModelSpec(n_blocks=2, n_groups=2, n_feats=16, block="rcab",
                                       reduction=8, bias=False, body_conv=True),
    "lr-res-scale-noresidual": ModelSpec(n_blocks=2, n_feats=16, block="res", res_scale=0.1,
                                         global_residual=False),
    "lr-gray-meanshift": ModelSpec(n_blocks=1, n_feats=8, n_colors=1, mean_shift=True),
    "lr-no-body": ModelSpec(n_blocks=0, n_feats=8),
}
CASES = [pytest.param(get_task(t).variant(v).spec, s, id=i)
         for (t, v, s), i in zip(GRID, IDS, strict=True)]
CASES += [pytest.param(spec, s, id=f"{name}-x{s}")
          for name, spec in EXTRA_SPECS.items() for s in SCALES]


def _variant(task: int, name: str):
    return get_task(task).variant(name)


def _lr(batch: int = 1, h: int = LR_H, w: int = LR_W, seed: int = 0, c: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, c, h, w, generator=g) * 255.0


def test_grid_covers_all_variants():
    runs = {(t.number, v.name, s) for t, v, s in all_variants()}
    assert runs <= set(GRID)
    # 11 tasks + reference: 18 distinct variants (task 8's He-init diagnostic included), 22
    # study runs (task 1 and EDSR at x2/x3/x4)
    assert len(VARIANTS) == 18
    assert len(runs) == 22


@pytest.mark.parametrize(("spec", "scale"), CASES)
def test_forward_shape_params_and_backward(spec, scale):
    torch.manual_seed(0)
    model = build_model(spec, scale).train()
    x = _lr(c=spec.n_colors)
    out = model(x)
    assert out.shape == (1, spec.n_colors, scale * LR_H, scale * LR_W)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()

    params = list(model.parameters())
    assert sum(p.numel() for p in params) == count_params(spec, scale)

    target = torch.rand(out.shape, generator=torch.Generator().manual_seed(1)) * 255.0
    ((out - target) ** 2).mean().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{pname} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{pname} has a non-finite gradient"
    head = model.head[0].weight.grad
    assert head.abs().sum() > 0  # the gradient really flows back through the whole net


@pytest.mark.parametrize(("spec", "scale"), CASES)
def test_macs_match_conv_hook_count(spec, scale):
    torch.manual_seed(0)
    model = build_model(spec, scale).eval()
    counted = {"macs": 0, "ca_macs": 0}

    def hook(module: nn.Conv2d, _inp, out):
        _, c_out, oh, ow = out.shape
        kh, kw = module.kernel_size
        macs = oh * ow * c_out * (module.in_channels // module.groups) * kh * kw
        counted["macs"] += macs
        if module.kernel_size == (1, 1):
            counted["ca_macs"] += macs

    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            m.register_forward_hook(hook)
    with torch.no_grad():
        out = model(_lr(c=spec.n_colors))
    per_pixel = counted["macs"] / (out.shape[-2] * out.shape[-1])
    closed = macs_per_output_pixel(spec, scale)
    assert closed == pytest.approx(per_pixel, rel=1e-2)
    # The closed form leaves out only the 1x1 channel-attention convs: exact without them.
    ca_per_pixel = counted["ca_macs"] / (out.shape[-2] * out.shape[-1])
    assert closed == pytest.approx(per_pixel - ca_per_pixel, rel=1e-12)
    assert (ca_per_pixel > 0) == (spec.block == "rcab")
    assert flops_per_output_pixel(spec, scale) == 2.0 * closed


def test_hand_checked_param_counts():
    # Task 1 (bias-free 3->64->64->3, 3x3): 3*64*9 + 64*64*9 + 64*3*9 = 1728 + 36864 + 1728
    assert 3 * 64 * 9 + 64 * 64 * 9 + 64 * 3 * 9 == 40_320
    for s in SCALES:
        assert count_params(SRCNN3, s) == 40_320
    # EDSR-baseline: head 3*64*9+64 = 1,792; 16 res blocks of 2 convs (64*64*9+64 = 36,928
    # each) = 1,181,696; body conv 36,928; tail 64*3*9+3 = 1,731 -> 1,222,147 before the
    # upsampler. x2: conv 64->256: 64*256*9+256 = 147,712 -> 1,369,859.
    # x3: conv 64->576: 64*576*9+576 = 332,352 -> 1,554,499.
    # x4: two x2 stages: 2 * 147,712 = 295,424 -> 1,517,571.
    common = 1_792 + 16 * 2 * 36_928 + 36_928 + 1_731
    assert common == 1_222_147
    assert common + 147_712 == 1_369_859
    assert common + 332_352 == 1_554_499
    assert common + 2 * 147_712 == 1_517_571
    assert count_params(EDSR_BASELINE, 2) == 1_369_859
    assert count_params(EDSR_BASELINE, 3) == 1_554_499
    assert count_params(EDSR_BASELINE, 4) == 1_517_571
    # the official EDSR-baseline x2 model has 1,369,859 parameters too
    assert sum(p.numel() for p in build_model(EDSR_BASELINE, 2).parameters()) == 1_369_859


N_CONVS = {
    (1, "3layers"): 3, (2, "3layers_grc"): 3, (3, "8layers_grc"): 8,
    (4, "baseline"): 8, (5, "batchnorm"): 8, (6, "resblocks"): 8,
    (7, "leakyrelu"): 8, (7, "prelu"): 8,
    (8, "depth16"): 16, (8, "depth16_kaiming"): 16, (8, "depth32"): 32,
    (8, "width96"): 8, (8, "width128"): 8,
    (9, "l2"): 8, (10, "rcab"): 8, (11, "perceptual"): 8,
    # reference: EDSR-baseline head + 16*2 + body conv + tail; RCAN head + 10*(4*2+1) + 1 + 1
    (0, "edsr_baseline"): 35, (10, "rcan"): 93,
}


def test_n_convs_table_is_complete():
    assert set(N_CONVS) == set(VARIANTS)


@pytest.mark.parametrize(("task", "name"), list(N_CONVS), ids=[f"{t}-{n}" for t, n in N_CONVS])
def test_n_convs_matches_study_and_built_model(task, name):
    spec = _variant(task, name).spec
    assert spec.n_convs == N_CONVS[(task, name)]
    model = build_model(spec, 2)
    convs3 = [m for m in model.modules()
              if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    upsampler = [m for m in model.upsampler.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs3) - len(upsampler) == spec.n_convs


def test_mean_shift_is_a_buffer_not_a_parameter():
    model = build_model(EDSR_BASELINE, 2)
    buffers = dict(model.named_buffers())
    assert "rgb_mean" in buffers
    assert torch.allclose(buffers["rgb_mean"].flatten(), torch.tensor([0.4488, 0.4371, 0.4040]))
    assert "rgb_mean" not in dict(model.named_parameters())
    assert not any(p is buffers["rgb_mean"] for p in model.parameters())
    assert "rgb_mean" not in model.state_dict()  # a constant: not stored in checkpoints


def test_zero_weights_lr_style_outputs_the_mean():
    model = build_model(EDSR_BASELINE, 2)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        out = model(_lr())
    expected = torch.tensor([0.4488, 0.4371, 0.4040]).view(1, 3, 1, 1) * 255.0
    assert torch.allclose(out, expected.expand_as(out), atol=1e-4)


BICUBIC_GRC = [
    ("task2", _variant(2, "3layers_grc").spec),
    ("task3", _variant(3, "8layers_grc").spec),
    ("task1+grc", replace(SRCNN3, global_residual=True)),
    ("task3+prelu+meanshift", replace(_variant(3, "8layers_grc").spec, act="prelu",
                                      mean_shift=True)),
]


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("spec", [s for _, s in BICUBIC_GRC], ids=[n for n, _ in BICUBIC_GRC])
def test_zero_weights_bicubic_input_is_matlab_bicubic(spec, scale):
    assert spec.input == "bicubic" and spec.global_residual
    model = build_model(spec, scale)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        lr = _lr()
        out = model(lr)
    expected = bicubic_up(lr.double(), scale)
    assert out.shape == expected.shape
    assert (out.double() - expected).abs().max().item() < 1e-4
    # and it is not just any upsampling: nearest-neighbour is far from it
    nearest = torch.nn.functional.interpolate(lr, scale_factor=scale, mode="nearest")
    assert (out - nearest).abs().max().item() > 1.0


def test_zero_weights_bicubic_input_without_residual_is_zero():
    model = build_model(SRCNN3, 2)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        out = model(_lr())
    assert torch.equal(out, torch.zeros_like(out))


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(("field", "value", "valid"), [
    ("block", "dense", "conv, conv_bn, res, rcab"),
    ("act", "gelu", "relu, lrelu, prelu"),
    ("input", "hr", "lr, bicubic"),
])
def test_spec_rejects_unknown_choices(field, value, valid):
    with pytest.raises(ConfigError) as err:
        ModelSpec(**{field: value})
    msg = str(err.value)
    assert f"unknown {field} {value!r}" in msg
    assert f"valid values: {valid}" in msg
    assert "\n" not in msg


def test_spec_rejects_groups_without_rcab():
    with pytest.raises(ConfigError, match="n_groups.*needs block='rcab'"):
        ModelSpec(block="res", n_groups=2)
    ModelSpec(block="rcab", n_groups=2)  # fine with RCABs


def test_spec_rejects_bad_sizes():
    with pytest.raises(ConfigError):
        ModelSpec(n_blocks=-1)
    with pytest.raises(ConfigError):
        ModelSpec(n_feats=0)
    with pytest.raises(ConfigError, match="not divisible by reduction"):
        ModelSpec(block="rcab", n_feats=60, reduction=16)


def test_build_rejects_unknown_scale():
    with pytest.raises(ConfigError, match="valid values: 2, 3, 4"):
        build_model(BASELINE, 5)


def test_spec_json_roundtrip_and_unknown_fields():
    for task, name in VARIANTS:
        spec = _variant(task, name).spec
        assert ModelSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    with pytest.raises(ConfigError, match=r"unknown ModelSpec fields \['depth'\]; valid: "):
        ModelSpec.from_dict({**BASELINE.to_dict(), "depth": 3})


def test_specs_are_hashable_and_frozen():
    assert len({BASELINE, replace(BASELINE), EDSR_BASELINE}) == 2
    with pytest.raises(AttributeError):
        BASELINE.n_feats = 32  # type: ignore[misc]


# --------------------------------------------------------------------------- the task table

SPEC_FIELDS = tuple(f.name for f in fields(ModelSpec))


def _diff(a, b) -> set[str]:
    """Fields (spec fields plus the loss) in which two variants differ."""
    out = {f for f in SPEC_FIELDS if getattr(a.spec, f) != getattr(b.spec, f)}
    if a.loss != b.loss:
        out.add("loss")
    return out


# (task, variant) -> {compare_to run: the fields in which it must differ from it}
INTENDED_DIFFS = {
    (2, "3layers_grc"): {(1, "3layers"): {"global_residual"}},
    (3, "8layers_grc"): {(2, "3layers_grc"): {"n_blocks"}},
    # task 4 changes the input style only (all of tasks 1-9 are bias-free)
    (4, "baseline"): {(3, "8layers_grc"): {"input"}},
    (5, "batchnorm"): {(4, "baseline"): {"block"}},
    (6, "resblocks"): {(4, "baseline"): {"block", "n_blocks"}},
    (7, "leakyrelu"): {(4, "baseline"): {"act"}},
    (7, "prelu"): {(4, "baseline"): {"act"}},
    (8, "depth16"): {(4, "baseline"): {"n_blocks"}},
    (8, "depth32"): {(4, "baseline"): {"n_blocks"}},
    (8, "depth16_kaiming"): {(4, "baseline"): {"n_blocks", "init"}},
    (8, "width96"): {(4, "baseline"): {"n_feats"}},
    (8, "width128"): {(4, "baseline"): {"n_feats"}},
    (9, "l2"): {(4, "baseline"): {"loss"}},
    (10, "rcab"): {(4, "baseline"): {"block", "n_blocks"}, (6, "resblocks"): {"block"}},
    # the RCAN-style reference is the published architecture (with biases), not a control
    (10, "rcan"): {(4, "baseline"): {"block", "n_blocks", "n_groups", "body_conv",
                                     "mean_shift", "bias"},
                   (6, "resblocks"): {"block", "n_blocks", "n_groups", "body_conv",
                                      "mean_shift", "bias"}},
    (11, "perceptual"): {(4, "baseline"): {"loss"}},
}


def test_intended_diffs_cover_every_compared_variant():
    compared = {(t.number, v.name) for t in TASKS.values() if t.compare_to for v in t.variants}
    assert set(INTENDED_DIFFS) == compared
    for (task, _), expected in INTENDED_DIFFS.items():
        assert set(expected) == set(get_task(task).compare_to)


@pytest.mark.parametrize(("task", "name"), list(INTENDED_DIFFS),
                         ids=[f"{t}-{n}" for t, n in INTENDED_DIFFS])
def test_variant_differs_from_baselines_in_intended_fields_only(task, name):
    variant = _variant(task, name)
    for (btask, bname), expected in INTENDED_DIFFS[(task, name)].items():
        assert _diff(variant, _variant(btask, bname)) == expected, (btask, bname)


def test_equal_conv_count_comparisons():
    # Tasks 5, 6, 7, 10 (rcab) compare at the baseline's 8 convolutions.
    base = _variant(4, "baseline").spec.n_convs
    assert base == 8
    for task, name in [(5, "batchnorm"), (6, "resblocks"), (7, "leakyrelu"), (7, "prelu"),
                       (10, "rcab"), (8, "width96"), (8, "width128")]:
        assert _variant(task, name).spec.n_convs == base, name
    assert _variant(3, "8layers_grc").spec.n_convs == base


def test_only_rcan_is_gpu_only():
    gpu_only = [(t, n) for t, n in VARIANTS if not _variant(t, n).cpu]
    assert gpu_only == [(10, "rcan")]


@pytest.mark.parametrize("spec_kwargs", [dict(block="rcab", reduction=0),
                                         dict(block="rcab", reduction=-16),
                                         dict(block="res", reduction=0)],
                         ids=["rcab-0", "rcab-neg", "res-0"])
def test_reduction_is_validated(spec_kwargs):
    try:
        spec = ModelSpec(**spec_kwargs)
    except ConfigError:
        return  # rejected with a one-line message: fine
    assert spec.block != "rcab", "an rcab spec with reduction < 1 must be a ConfigError"
    assert count_params(spec, 2) == sum(p.numel() for p in build_model(spec, 2).parameters())


def test_init_field_is_hash_neutral_at_its_default_and_part_of_the_spec_otherwise():
    plain = _variant(8, "depth16").spec
    assert "init" not in plain.to_dict()  # every committed run keeps its spec dict and hash
    assert ModelSpec.from_dict(plain.to_dict()) == plain
    kaiming = _variant(8, "depth16_kaiming").spec
    assert kaiming == replace(plain, init="kaiming") and kaiming.to_dict()["init"] == "kaiming"
    assert ModelSpec.from_dict(kaiming.to_dict()) == kaiming
    with pytest.raises(ConfigError, match="init"):
        replace(plain, init="xavier")


def test_kaiming_body_keeps_the_signal_where_the_default_init_loses_it():
    """Depth 16, plain ReLU body: PyTorch's default init shrinks the activations' std about
    sqrt(6)-fold a layer (gain 1/sqrt(3), half the units dead), He init keeps it of order 1."""
    x = _lr(2, 48, 48)
    ratios = {}
    for name in ("depth16", "depth16_kaiming"):
        torch.manual_seed(0)
        net = build_model(_variant(8, name).spec, 2).eval()
        with torch.no_grad():
            feats = net.head(x / 255.0)
            ratios[name] = float(net.body(feats).std() / feats.std())
    assert ratios["depth16"] < 1e-3 < 0.1 < ratios["depth16_kaiming"] < 10, ratios
    torch.manual_seed(0)
    net = build_model(_variant(8, "depth16_kaiming").spec, 2)
    conv = net.body[0][0]
    fan_in = conv.weight[0].numel()
    assert abs(float(conv.weight.std()) - math.sqrt(2 / fan_in)) < 0.05 * math.sqrt(2 / fan_in)
    assert net.head[0].weight.std() < 0.7 * math.sqrt(2 / net.head[0].weight[0].numel())
