"""benchmarks/gpu_check.py: "no GPU" on a machine without CUDA, and every step rehearsed on
the CPU (no GPU here: the CUDA numbers come from the first machine that has one)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from torch._functorch import config as functorch_config

from ablation.train import compiled_backward

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_without_cuda_it_says_no_gpu_and_exits_0(tmp_path):
    out = tmp_path / "gpu_check.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--json", str(out)], cwd=tmp_path,
                          env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("no GPU: CUDA is not available here")
    assert not out.exists()  # nothing measured, nothing written


def test_peak_by_device_name():
    gc = load_script()
    assert gc.peak_bf16_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert gc.peak_bf16_tflops("NVIDIA H100 PCIe") == 756.0
    assert gc.peak_bf16_tflops("NVIDIA H200") == 989.0
    assert gc.peak_bf16_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert gc.peak_bf16_tflops("NVIDIA A10") == 125.0  # not the A100's
    assert gc.peak_bf16_tflops("NVIDIA L40S") == 362.0 and gc.peak_bf16_tflops("NVIDIA L4") == 121.0
    assert gc.peak_bf16_tflops("Tesla V100-SXM2-16GB") is None  # no bf16: measured instead


def test_compiled_backward_runs_outside_autocast():
    """torch.compile must be told the backward runs outside autocast (train_step's AMP)."""
    before = functorch_config.backward_pass_autocast
    with compiled_backward(True):
        assert functorch_config.backward_pass_autocast == "off"
    assert functorch_config.backward_pass_autocast == before
    with compiled_backward(False):
        assert functorch_config.backward_pass_autocast == before


@pytest.mark.slow
def test_cpu_rehearsal_runs_every_check(tmp_path, data_dir):
    out = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu", "--models", "baseline",
         "--batch-size", "2", "--lr-patch", "16", "--iters", "2", "--warmup", "1",
         "--loss-steps", "3", "--resume-at", "2", "--matmul-n", "128",
         "--train-set", "t91", "--data-dir", str(data_dir), "--json", str(out)],
        cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert proc.stdout.startswith("CPU rehearsal")
    report = json.loads(out.read_text())
    assert report["passed"] and report["failed"] == 0 and report["skipped_for_time"] == 0
    modes = report["models"]["task4 baseline"]
    for mode in ("bf16_channels_last", "bf16_channels_last_compiled"):
        assert modes[mode]["it_per_s"] > 0 and modes[mode]["final_loss_finite"], mode
        assert modes[mode]["data_ms_per_step"] > 0
    losses = modes["bf16_vs_fp32_losses"]
    assert losses["steps"] == 3 and 0 <= losses["max_rel_diff"] <= losses["tolerance"]
    resume = report["resume"]
    assert resume["resumed_from"] == 2 and resume["interrupted_after"] == 3
    assert resume["weights_equal"] and resume["max_abs_weight_diff"] == 0.0
    assert report["ddp"]["passed"] is None and "DDP needs 2+" in report["ddp"]["skipped"]
    lines = proc.stdout.splitlines()
    assert any("bf16 vs fp32, first 3 losses" in line and line.endswith("ok") for line in lines)
    assert any("weights bit-identical" in line for line in lines)
    assert lines[-2].startswith("passed in ")
