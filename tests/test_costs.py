"""The cost table and ``ablation tasks --json``: one row per study run with its real costs."""

from __future__ import annotations

import json

import pytest
import torch

from ablation.cli import main
from ablation.costs import FRAME_720P, conv_peak_gflops, cost_table, time_per_call
from ablation.models import count_params, flops_per_output_pixel
from ablation.tasks import all_variants

RUNS = [(t.number, v.name, s) for t, v, s in all_variants()]
HAND_CHECKED = {  # see tests/test_models.py for the arithmetic
    (1, "3layers", 2): 40_320, (1, "3layers", 3): 40_320, (1, "3layers", 4): 40_320,
    (0, "edsr_baseline", 2): 1_369_859, (0, "edsr_baseline", 3): 1_554_499,
    (0, "edsr_baseline", 4): 1_517_571,
}


@pytest.fixture(scope="module")
def table():
    return cost_table(latency=False)


def test_one_row_per_run(table):
    assert len(table) == len(RUNS) == 22
    assert list(zip(table.task, table.variant, table.scale, strict=True)) == RUNS
    assert not any(c.startswith("cpu_ms") for c in table.columns)


def test_rows_carry_the_right_costs(table):
    variants = {(t.number, v.name, s): v for t, v, s in all_variants()}
    for row in table.itertuples():
        key = (row.task, row.variant, row.scale)
        v = variants[key]
        assert row.params == count_params(v.spec, row.scale)
        assert row.flops_per_pixel == flops_per_output_pixel(v.spec, row.scale)
        assert row.gflops_1280x720 == pytest.approx(
            row.flops_per_pixel * FRAME_720P[0] * FRAME_720P[1] / 1e9)
        assert row.n_convs == v.spec.n_convs
        assert row.loss == v.loss
        assert row.spec == v.spec.to_dict()
        if key in HAND_CHECKED:
            assert row.params == HAND_CHECKED[key]


def test_cost_ordering_sanity(table):
    by = {(r.task, r.variant, r.scale): r for r in table.itertuples()}
    base = by[(4, "baseline", 2)]
    # Same architecture, different loss: identical costs.
    for name, task in [("l2", 9), ("perceptual", 11)]:
        assert by[(task, name, 2)].params == base.params
        assert by[(task, name, 2)].flops_per_pixel == base.flops_per_pixel
    # PReLU adds one slope per channel per body activation (6 x 64).
    assert by[(7, "prelu", 2)].params - base.params == 6 * 64
    # Batch norm on the bias-free baseline adds 6 x (gamma, beta).
    assert by[(5, "batchnorm", 2)].params - base.params == 6 * 2 * 64
    # Task 3 runs its 8 convs at HR size: 2 * 9 * (3*64 + 6*64*64 + 64*3) per HR pixel.
    assert by[(3, "8layers_grc", 2)].flops_per_pixel == 2 * 9 * (3 * 64 + 6 * 64 * 64 + 64 * 3)
    assert by[(3, "8layers_grc", 2)].flops_per_pixel == 449_280
    # The x2 baseline: head + body at LR (1/4 pixel), upsampler 64->256 at LR, tail at HR.
    assert base.flops_per_pixel == 2 * 9 * ((3 * 64 + 6 * 64 * 64 + 64 * 256) / 4 + 64 * 3)
    assert base.flops_per_pixel == 188_640
    assert by[(10, "rcan", 2)].flops_per_pixel > 8 * base.flops_per_pixel


def test_cli_tasks_json(capsys):
    assert main(["tasks", "--json", "--no-latency"]) == 0
    out = capsys.readouterr().out
    records = json.loads(out)
    assert len(records) == len(RUNS)
    for rec, (task, name, scale) in zip(records, RUNS, strict=True):
        assert list(rec)[:6] == ["task", "variant", "scale", "params", "flops_per_pixel", "spec"]
        assert (rec["task"], rec["variant"], rec["scale"]) == (task, name, scale)
        assert isinstance(rec["params"], int)
        assert isinstance(rec["spec"], dict)
        assert not any(k.startswith("cpu_ms") for k in rec)
    by = {(r["task"], r["variant"], r["scale"]): r for r in records}
    for key, n in HAND_CHECKED.items():
        assert by[key]["params"] == n
    assert by[(4, "baseline", 2)]["spec"]["n_blocks"] == 6
    assert by[(10, "rcan", 2)]["spec"]["n_groups"] == 10


def test_cli_tasks_table(capsys):
    assert main(["tasks", "--no-latency"]) == 0
    out = capsys.readouterr().out
    assert "edsr_baseline" in out and "1369859" in out
    assert "spec" not in out.splitlines()[0]


def test_machine_speed_probe_leaves_the_training_rng_alone():
    """The probe runs before every training run: it must not draw from the global generator
    (that would change the run), and it reports a plausible CPU speed (1 GFLOP/s to 100
    TFLOP/s: any machine that can train at all)."""
    before = torch.get_rng_state()
    speed = conv_peak_gflops(torch.device("cpu"), seconds=0.05)
    assert torch.equal(torch.get_rng_state(), before)
    assert 1.0 < speed < 1e5


def test_time_per_call_is_the_median_of_at_least_three_calls():
    calls = []
    assert time_per_call(lambda: calls.append(1), torch.device("cpu"), 0.0, warmup=2) >= 0
    assert len(calls) == 2 + 3  # warm-up, then the three timed calls a zero budget still makes
