"""DistributedDataParallel on CPU: the same train() under torchrun with gloo, 2 processes."""

from __future__ import annotations

import os
import subprocess
import sys

import torch

SCRIPT = """
import os, sys, torch
torch.set_num_threads(1)
from ablation.train import train
from ablation.tasks import TASKS
res = train(TASKS[5].variant("batchnorm"), 2, "smoke", out_dir=sys.argv[1],
            data_dir=sys.argv[2], iterations=6, device="cpu", progress=False)
rank = int(os.environ["RANK"])
torch.save(res.model.state_dict(), os.path.join(sys.argv[1], f"rank{rank}.pt"))
assert torch.distributed.get_world_size() == 2
"""


def test_ddp_two_processes_gloo(data_dir, tmp_path):
    script = tmp_path / "ddp_train.py"
    script.write_text(SCRIPT)
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
         "--master_addr=127.0.0.1", "--master_port=29533", str(script), str(out),
         str(data_dir)],
        env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0 = torch.load(out / "rank0.pt", weights_only=True)
    r1 = torch.load(out / "rank1.pt", weights_only=True)
    params = [k for k in r0 if not k.endswith(("running_mean", "running_var",
                                                "num_batches_tracked"))]
    assert len(params) > 10
    for k in params:  # gradients are all-reduced: the replicas' weights stay identical
        assert torch.equal(r0[k], r1[k]), k
    # BN statistics are rank 0's (DDP broadcasts them before each forward); rank 0 writes them
    saved = torch.load(out / "model.pt", weights_only=True)["model"]
    assert torch.equal(saved["body.0.1.running_mean"], r0["body.0.1.running_mean"])
    assert (out / "model.pt").exists() and (out / "history.csv").exists()
    meta = (out / "run.json").read_text()
    assert '"finished": true' in meta
