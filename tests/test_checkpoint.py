"""Checkpoints: exact roundtrip, architecture checks, refusal of unsafe / foreign / damaged files,
and atomic writes."""

from __future__ import annotations

import errno
import os
import pickle
import shlex
from dataclasses import replace

import pytest
import torch

from ablation import __version__
from ablation.checkpoint import FORMAT, load_model, read_checkpoint, save_checkpoint
from ablation.errors import CheckpointError
from ablation.models import build_model
from ablation.tasks import BASELINE

SMALL = replace(BASELINE, n_feats=8, n_blocks=2)


def _model(spec=SMALL, scale=2, seed=0):
    torch.manual_seed(seed)
    return build_model(spec, scale)


def _one_line(exc: BaseException) -> str:
    msg = str(exc)
    assert "\n" not in msg, msg
    return msg


def test_roundtrip_is_exact(tmp_path):
    spec = replace(SMALL, act="prelu", block="conv_bn")
    model = _model(spec, 3)
    # non-trivial BN running statistics and PReLU slopes must survive too
    model.train()
    with torch.no_grad():
        model(torch.rand(2, 3, 6, 5) * 255)
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    path = tmp_path / "m.pt"
    save_checkpoint(path, model, iteration=7, variant="task5/batchnorm",
                    config={"seed": 0, "eval_sets": ["Set5"]})

    loaded, state = load_model(path)
    assert not loaded.training
    assert loaded.spec == spec and loaded.scale == 3
    ref, got = model.state_dict(), loaded.state_dict()
    assert list(ref) == list(got)
    for k in ref:
        assert torch.equal(ref[k], got[k]), k
    assert state["format"] == FORMAT
    assert state["iteration"] == 7
    assert state["variant"] == "task5/batchnorm"
    assert state["config"] == {"seed": 0, "eval_sets": ["Set5"]}
    assert state["code_version"] == __version__
    x = torch.rand(1, 3, 5, 7) * 255
    with torch.no_grad():
        assert torch.equal(model.eval()(x), loaded(x))


def test_load_rebuilds_from_stored_spec(tmp_path):
    spec = replace(SMALL, block="res", n_blocks=1, act="lrelu", mean_shift=True)
    save_checkpoint(tmp_path / "m.pt", _model(spec, 4), iteration=1)
    loaded, state = load_model(tmp_path / "m.pt")  # nothing about the architecture given
    assert loaded.spec == spec
    assert loaded.scale == 4
    assert state["spec"] == spec.to_dict()
    assert loaded(torch.rand(1, 3, 3, 5) * 255).shape == (1, 3, 12, 20)
    # expectations that match are accepted
    load_model(tmp_path / "m.pt", expect_spec=spec, expect_scale=4)


def test_expect_spec_mismatch(tmp_path):
    save_checkpoint(tmp_path / "m.pt", _model())
    with pytest.raises(CheckpointError) as err:
        load_model(tmp_path / "m.pt", expect_spec=replace(SMALL, act="prelu"))
    msg = _one_line(err.value)
    assert "differs from the requested" in msg
    assert str(tmp_path / "m.pt") in msg


def test_expect_scale_mismatch(tmp_path):
    save_checkpoint(tmp_path / "m.pt", _model(scale=2))
    with pytest.raises(CheckpointError) as err:
        load_model(tmp_path / "m.pt", expect_scale=4)
    msg = _one_line(err.value)
    assert "x2, not x4" in msg


def test_weights_of_another_architecture_are_refused(tmp_path):
    other = _model(replace(SMALL, n_feats=16))  # same keys, other shapes
    deeper = _model(replace(SMALL, n_blocks=3))  # extra keys
    for i, src in enumerate((other, deeper)):
        path = tmp_path / f"bad{i}.pt"
        torch.save({"format": FORMAT, "spec": SMALL.to_dict(), "scale": 2,
                    "model": src.state_dict()}, path)
        with pytest.raises(CheckpointError) as err:
            load_model(path)
        msg = _one_line(err.value)
        assert "weights don't fit the stored spec" in msg


@pytest.mark.parametrize("cut", [0.5, 0.95])
def test_truncated_file_is_refused(tmp_path, cut):
    path = tmp_path / "m.pt"
    save_checkpoint(path, _model())
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(CheckpointError) as err:
        load_model(path)
    msg = _one_line(err.value)
    assert "corrupt or truncated" in msg


def test_garbage_file_is_refused(tmp_path):
    path = tmp_path / "m.pt"
    path.write_bytes(b"garbage" * 10)
    with pytest.raises(CheckpointError) as err:
        load_model(path)
    assert "refusing to load" in _one_line(err.value)


def test_garbage_file_is_called_corrupt_not_unsafe(tmp_path):
    path = tmp_path / "m.pt"
    path.write_bytes(b"garbage" * 10)
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_model(path)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_model(tmp_path / "nope.pt")


class _Payload:
    """Pickles as a call to os.system that creates a marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(self.marker)}",)


def test_payload_is_live(tmp_path):
    # Sanity check of the fixture: an unsafe loader really would run the command.
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(_Payload(marker)))
    assert marker.exists()


@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
def test_malicious_pickle_is_refused_without_running(tmp_path, writer):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    state = {"format": FORMAT, "spec": SMALL.to_dict(), "scale": 2, "model": {},
             "x": _Payload(marker)}
    if writer == "torch.save":
        torch.save(state, path)
    else:
        path.write_bytes(pickle.dumps(state, protocol=2))
    with pytest.raises(CheckpointError) as err:
        load_model(path)
    msg = _one_line(err.value)
    assert "refusing to load" in msg
    if writer == "torch.save":
        assert "unsafe pickle" in msg
    assert not marker.exists()


def test_plain_state_dict_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "weights.pth"
    torch.save(_model().state_dict(), path)
    with pytest.raises(CheckpointError) as err:
        load_model(path)
    assert "not an sr-ablation checkpoint" in _one_line(err.value)
    # the same with a dict that has a wrong format tag
    torch.save({"format": "something-else", "model": {}}, path)
    with pytest.raises(CheckpointError, match="not an sr-ablation checkpoint"):
        read_checkpoint(path)


def test_save_is_atomic_on_full_disk(tmp_path, monkeypatch):
    path = tmp_path / "m.pt"
    save_checkpoint(path, _model(seed=0), iteration=1)
    before = path.read_bytes()
    mode = path.stat().st_mode

    def full_disk(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(OSError) as err:
        save_checkpoint(path, _model(seed=1), iteration=2)
    assert err.value.errno == errno.ENOSPC
    monkeypatch.undo()

    assert path.read_bytes() == before
    assert path.stat().st_mode == mode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]  # no temp file left
    _, state = load_model(path)
    assert state["iteration"] == 1


def test_save_overwrites_and_creates_folders(tmp_path):
    path = tmp_path / "a" / "b" / "m.pt"
    save_checkpoint(path, _model(seed=0), iteration=1)
    save_checkpoint(path, _model(seed=1), iteration=2)
    loaded, state = load_model(path)
    assert state["iteration"] == 2
    ref = _model(seed=1).state_dict()
    assert all(torch.equal(ref[k], v) for k, v in loaded.state_dict().items())
    assert sorted(p.name for p in path.parent.iterdir()) == ["m.pt"]


@pytest.mark.parametrize("broken", ["no model", "no spec", "bad spec", "bad scale"])
def test_tagged_but_malformed_checkpoint_is_a_checkpoint_error(tmp_path, broken):
    state = {"format": FORMAT, "spec": SMALL.to_dict(), "scale": 2,
             "model": _model().state_dict()}
    if broken == "no model":
        del state["model"]
    elif broken == "no spec":
        del state["spec"]
    elif broken == "bad spec":
        state["spec"] = {**SMALL.to_dict(), "act": "gelu"}
    else:
        state["scale"] = 5
    torch.save(state, tmp_path / "m.pt")
    with pytest.raises(CheckpointError):
        load_model(tmp_path / "m.pt")
