"""The training engine: sampler alignment, schedule, exact resume after SIGKILL, reuse."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from ablation.cache import load_decoded
from ablation.config import make_config
from ablation.degradation import bicubic_down, quantize
from ablation.models import count_params
from ablation.resolve import split_files
from ablation.sampler import PatchSampler, augment
from ablation.tasks import BASELINE
from ablation.train import lr_factor

WORKER = """
import sys, torch
torch.set_num_threads(1)
from ablation.train import train
from ablation.tasks import TASKS
train(TASKS[4].variant("baseline"), 2, "smoke", out_dir=sys.argv[1], data_dir=sys.argv[2],
      iterations=int(sys.argv[3]), checkpoint_every=2, log_every=2, val_every=1000,
      progress=False)
"""


def _worker(out: Path, data_dir: Path, iterations: int) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", WORKER, str(out), str(data_dir),
                             str(iterations)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def _weights(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def test_sampler_patches_are_aligned_and_augmented_together(data_dir):
    files = split_files(make_config("smoke"), data_dir)[0][:6]
    ds = load_decoded(files, 3, data_dir / "cache", label="align-test", min_lr_size=8)
    gen = torch.Generator().manual_seed(0)
    sampler = PatchSampler(ds, 16, 8, torch.device("cpu"), gen)
    lr, hr = sampler.sample()
    assert lr.shape == (8, 3, 16, 16) and hr.shape == (8, 3, 48, 48)
    assert lr.dtype == torch.float32 and 0 <= lr.min() and lr.max() <= 255
    # LR comes from the whole image; downscaling the HR patch differs only near its border
    down = quantize(bicubic_down(hr.double(), 3))
    interior = (down - lr.double())[..., 3:-3, 3:-3].abs()
    assert interior.max() == 0.0  # a misaligned crop or flip would differ by tens of levels
    # the same generator state gives the same batch
    gen2 = torch.Generator().manual_seed(0)
    lr2, hr2 = PatchSampler(ds, 16, 8, torch.device("cpu"), gen2).sample()
    assert torch.equal(lr, lr2) and torch.equal(hr, hr2)


def test_augment_is_a_per_sample_dihedral_map():
    x = torch.arange(2 * 1 * 3 * 3, dtype=torch.float32).view(2, 1, 3, 3)
    flips = torch.tensor([[True, False], [False, False], [True, True]])
    out = augment(x, flips)
    assert torch.equal(out[0], x[0].flip(-1).transpose(-1, -2))
    assert torch.equal(out[1], x[1].transpose(-1, -2))


def test_cache_is_reused_and_rebuilt_when_corrupt(data_dir, tmp_path):
    files = split_files(make_config("smoke"), data_dir)[0][:3]
    ds = load_decoded(files, 2, tmp_path, label="c", min_lr_size=4)
    folder = next(tmp_path.glob("c-x2-*"))
    raw = bytearray((folder / "hr.npy").read_bytes())
    raw[-10] ^= 0xFF
    (folder / "hr.npy").write_bytes(bytes(raw))
    again = load_decoded(files, 2, tmp_path, label="c", min_lr_size=4)
    assert np.array_equal(again.hr, ds.hr)  # detected by digest and rebuilt


def test_schedules():
    c = make_config("cpu", iterations=1000, learning_rate=1e-3)
    assert lr_factor(c, 0) == pytest.approx(1 / 25)
    assert lr_factor(c, int(0.15 * 1000)) == pytest.approx(1.0)
    assert lr_factor(c, 999) < 0.01
    p = make_config("paper", iterations=300)
    assert lr_factor(p, 199) == 1.0 and lr_factor(p, 200) == 0.5


def test_kill_and_resume_is_bit_identical(data_dir, tmp_path):
    n = 16
    ref = _worker(tmp_path / "ref", data_dir, n)
    assert ref.wait(timeout=300) == 0, ref.stderr.read().decode()[-2000:]
    run = tmp_path / "killed"
    for delay in (2.5, 1.0):  # kill twice at different points, then finish
        p = _worker(run, data_dir, n)
        deadline = time.time() + 120
        while not (run / "state.pt").exists() and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(delay * 0.1)
        p.send_signal(signal.SIGKILL)
        p.wait()
    state = torch.load(run / "state.pt", map_location="cpu", weights_only=True)
    assert 0 < state["iteration"] <= n
    done = _worker(run, data_dir, n)
    assert done.wait(timeout=300) == 0, done.stderr.read().decode()[-2000:]
    a, b = _weights(tmp_path / "ref" / "model.pt"), _weights(run / "model.pt")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    hist = (run / "history.csv").read_text().splitlines()
    assert hist[0].startswith("iteration,loss,learning_rate,val_psnr,seconds")
    assert len(hist) == 1 + n // 2  # one row per log point, no duplicates after resume


def test_run_variant_writes_and_reuses(data_dir, tmp_path):
    from ablation.runs import run_variant

    m = run_variant(4, "baseline", 2, "smoke", seed=0, results_dir=tmp_path, data_dir=data_dir,
                    progress=False)
    assert not m["reused"]
    folder = Path(m["run_dir"])
    for name in ("metrics.json", "history.csv", "run.json", "model.pt", "per_image.csv"):
        assert (folder / name).exists(), name
    saved = json.loads((folder / "metrics.json").read_text())
    assert saved["sets"]["Set5"]["n_images"] == 5
    assert saved["params"] == count_params(BASELINE, 2) == 372352
    again = run_variant(4, "baseline", 2, "smoke", seed=0, results_dir=tmp_path,
                        data_dir=data_dir, progress=False)
    assert again["reused"] and again["config_hash"] == saved["config_hash"]
    # a different budget is a different config: not reused
    other = run_variant(4, "baseline", 2, "smoke", seed=0, results_dir=tmp_path,
                        data_dir=data_dir, iterations=6, progress=False)
    assert not other["reused"]


def test_small_images_are_skipped_for_named_sets_and_refused_for_folders(data_dir, tmp_path):
    from ablation.errors import DataError
    from ablation.train import drop_small_images

    files = split_files(make_config("cpu"), data_dir)[0]
    with pytest.warns(UserWarning, match="smaller than the 96-px HR patch"):
        kept = drop_small_images(files, 3, 32, strict=False)
    assert 0 < len(kept) < len(files)
    assert not any(f.name == "t20.png" for f in kept)  # T91's 78x78 image
    assert len(drop_small_images(files, 2, 32, strict=False)) == len(files)  # x2: all fit
    with pytest.raises(DataError, match="t20.png"):
        drop_small_images([f for f in files if f.name == "t20.png"], 3, 32, strict=True)


def test_variant_profile_overrides_reach_the_config_and_its_hash(tmp_path, data_dir):
    from dataclasses import replace

    from ablation.tasks import EDSR_CPU_LEARNING_RATE, REFERENCE
    from ablation.train import train

    edsr = REFERENCE.variant("edsr_baseline")
    assert edsr.overrides("cpu") == {"learning_rate": EDSR_CPU_LEARNING_RATE}
    assert edsr.overrides("paper") == {}  # the EDSR recipe itself
    res = train(edsr, 2, "smoke", data_dir=data_dir, iterations=1, progress=False)
    assert res.config.learning_rate == make_config("smoke").learning_rate  # no smoke override
    tiny = replace(edsr, spec=replace(edsr.spec, n_blocks=1),
                   profile_overrides={"smoke": {"learning_rate": 3e-4}})
    res = train(tiny, 2, "smoke", data_dir=data_dir, iterations=1, progress=False)
    assert res.config.learning_rate == 3e-4
    res2 = train(tiny, 2, "smoke", data_dir=data_dir, iterations=1, progress=False,
                 learning_rate=1e-3)  # the caller's override wins
    assert res2.config.learning_rate == 1e-3 and res2.config_hash != res.config_hash
