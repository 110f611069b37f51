"""benchmarks/train_throughput.py runs end to end and prints its machine-readable lines.

Only the output's shape and internal consistency are checked: speed targets live in the
benchmark itself, never in tests.
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_train_throughput_prints_ratios(data_dir):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "train_throughput.py"), "--seconds", "0.2",
         "--data-dir", str(data_dir), "--workers", "1"],
        capture_output=True, text=True, timeout=600, check=True)
    lines = proc.stdout.strip().splitlines()
    speedup = re.fullmatch(r"speedup_vs_reference: (\d+\.\d\d)", lines[-2])
    fraction = re.fullmatch(r"fraction_of_conv_peak: (\d\.\d\d)", lines[-1])
    assert speedup and fraction
    assert float(speedup.group(1)) > 0 and 0 < float(fraction.group(1)) < 1.5
    baseline = next(line for line in lines if line.startswith("task4 baseline  ours"))
    ours, ref = map(float, re.findall(r"([\d.]+) it/s", baseline))
    # it/s are printed to 2 decimals: at a few it/s their rounding moves the ratio by more
    rounding = (ours / ref) * (0.005 / ours + 0.005 / ref)
    assert float(speedup.group(1)) == pytest.approx(ours / ref, abs=0.01 + rounding)
    # the conv-time bound of each model is printed, and can't be slower than the loop itself
    bound = next(line for line in lines if line.startswith("task4 baseline  per step"))
    ceiling = float(re.search(r"convs alone allow ([\d.]+) it/s", bound).group(1))
    assert ceiling > 0.5 * ours  # profiler overhead aside, convs take at most the whole step
