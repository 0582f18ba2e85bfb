"""Checkpoints: atomic safetensors + JSON, sha256, config checks, and exact resume after kill -9."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from course_lib.checkpoints import (
    CheckpointError,
    load_checkpoint,
    load_weights,
    read_state,
    save_weights,
    sha256_file,
)
from course_lib.models import UNet, UNetConfig
from course_lib.schedules import make_schedule
from course_lib.training import TrainConfig, train

TINY = UNetConfig.preset("tiny")


def _model(cfg: UNetConfig = TINY, seed: int = 0) -> UNet:
    torch.manual_seed(seed)  # initial weights are part of a run: seed them like the loop
    return UNet(cfg)


def _images(n: int = 16) -> torch.Tensor:
    return torch.rand(n, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1


def _run(run_dir, steps=6, every=3, cfg=TINY, schedule="linear", **kw):
    tc = TrainConfig(steps=steps, batch_size=4, checkpoint_every=every, warmup=2, **kw)
    return train(_model(cfg), make_schedule(schedule), _images(), tc, run_dir=run_dir, progress=False)


def _equal_states(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_checkpoint_round_trip(tmp_path):
    res = _run(tmp_path)
    tensors, state = load_checkpoint(tmp_path)
    assert state["step"] == 6 and state["losses"] == res.losses
    assert state["sha256"] == sha256_file(tmp_path / state["weights"])
    assert state["model"]["config"] == TINY.to_dict()
    for k, v in res.model.state_dict().items():
        assert torch.equal(tensors[f"model.{k}"], v)
    for k, v in res.ema_model.state_dict().items():
        assert torch.equal(tensors[f"ema.{k}"], v)
    assert any(k.startswith("optim.") for k in tensors) and "rng.data" in tensors
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.json", "weights-00000006.safetensors"]
    # a finished run is loaded, not retrained
    again = _run(tmp_path)
    assert again.losses == res.losses and again.seconds == pytest.approx(state["seconds"])
    assert _equal_states(again.ema_model, res.ema_model)


def test_save_and_load_weights(tmp_path):
    model = _model()
    digest = save_weights(model, tmp_path / "w.safetensors")
    fresh = load_weights(_model(), tmp_path / "w.safetensors", sha256=digest)
    assert _equal_states(model, fresh)
    with pytest.raises(CheckpointError, match="base_channels"):
        load_weights(UNet(UNetConfig.preset("tiny", base_channels=16)), tmp_path / "w.safetensors")
    with pytest.raises(CheckpointError, match="corrupted"):
        load_weights(_model(), tmp_path / "w.safetensors", sha256="0" * 64)


def test_save_weights_is_deterministic(tmp_path):
    """Identical weights give identical files: a sha256 printed in a notebook is reproducible."""
    digests = {save_weights(_model(), tmp_path / f"w{i}.safetensors") for i in range(8)}
    assert len(digests) == 1


def test_resume_in_process_equals_an_uninterrupted_run(tmp_path):
    full = _run(tmp_path / "a", steps=8, every=3)

    def stop(info):
        if info.step == 5:  # after the checkpoint at step 3
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(_model(), make_schedule("linear"), _images(),
              TrainConfig(steps=8, batch_size=4, checkpoint_every=3, warmup=2), run_dir=tmp_path / "b",
              progress=False, callback=stop)
    assert read_state(tmp_path / "b")["step"] == 3
    resumed = _run(tmp_path / "b", steps=8, every=3)
    assert resumed.losses == full.losses
    assert _equal_states(resumed.model, full.model) and _equal_states(resumed.ema_model, full.ema_model)


SCRIPT = textwrap.dedent("""
    import sys, time, torch
    torch.set_num_threads(1)
    from course_lib.models import UNet, UNetConfig
    from course_lib.schedules import make_schedule
    from course_lib.training import TrainConfig, train
    run_dir, slow = sys.argv[1], float(sys.argv[2])
    x = torch.rand(16, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    first = []
    def cb(info):
        first.append(info.step)
        time.sleep(slow)
    cfg = TrainConfig(steps=30, batch_size=4, checkpoint_every=4, warmup=3, cond_drop_prob=0.0)
    torch.manual_seed(0)
    model = UNet(UNetConfig.preset("tiny", dropout=0.1))  # dropout: the global RNG must be restored too
    train(model, make_schedule("cosine"), x, cfg, run_dir=run_dir, progress=False, callback=cb)
    print("first step", first[0] if first else None)
""")


def _python(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", SCRIPT, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


def test_kill_9_during_training_then_rerun_resumes_exactly(tmp_path):
    """A real SIGKILL mid-run; the rerun continues from the last checkpoint and ends bit-identical."""
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    proc = _python([str(killed), "0.1"])  # slowed down so that the kill lands mid-run
    uninterrupted = _python([str(clean), "0"])
    deadline = time.time() + 60
    while not (killed / "checkpoint.json").exists():
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    time.sleep(0.25)  # a few more steps, perhaps mid-write of the next checkpoint
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    step_at_kill = read_state(killed)["step"]
    assert 4 <= step_at_kill < 30

    rerun = _python([str(killed), "0"])
    out, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err
    assert f"first step {step_at_kill + 1}" in out  # it resumed, it did not start again
    out2, err2 = uninterrupted.communicate(timeout=120)
    assert uninterrupted.returncode == 0, err2

    a, state_a = load_checkpoint(killed)
    b, state_b = load_checkpoint(clean)
    assert state_a["step"] == state_b["step"] == 30
    assert state_a["losses"] == state_b["losses"]
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a if not k.startswith("rng.")) and torch.equal(a["rng.data"], b["rng.data"])
    assert not list(killed.glob(".*.tmp"))  # the interrupted write left nothing behind that matters (or was cleaned)


# ----------------------------------------------------------------------------- bad checkpoints
def test_a_checkpoint_from_a_different_config_is_refused(tmp_path):
    _run(tmp_path)
    with pytest.raises(CheckpointError, match=r"different model config.*base_channels: checkpoint 8 vs now 16"):
        _run(tmp_path, cfg=UNetConfig.preset("tiny", base_channels=16))
    with pytest.raises(CheckpointError, match=r"different training config.*lr"):
        _run(tmp_path, lr=5e-4)
    with pytest.raises(CheckpointError, match="noise schedule"):
        _run(tmp_path, schedule="cosine")


def test_resume_false_overwrites(tmp_path):
    _run(tmp_path)
    tc = TrainConfig(steps=4, batch_size=4, checkpoint_every=2, lr=5e-4)
    train(_model(), make_schedule("linear"), _images(), tc, run_dir=tmp_path, resume=False, progress=False)
    assert read_state(tmp_path)["train_config"]["lr"] == 5e-4
    assert len(list(tmp_path.glob("weights-*.safetensors"))) == 1


def test_a_corrupted_weights_file_is_refused(tmp_path):
    _run(tmp_path)
    weights = tmp_path / read_state(tmp_path)["weights"]
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupted.*sha256"):
        _run(tmp_path)
    weights.unlink()
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path)


def test_a_corrupted_state_file_is_refused(tmp_path):
    _run(tmp_path)
    (tmp_path / "checkpoint.json").write_text('{"format_version": 1, "step": ')
    with pytest.raises(CheckpointError, match="not valid JSON"):
        _run(tmp_path)
    (tmp_path / "checkpoint.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(CheckpointError, match="not a course checkpoint"):
        load_checkpoint(tmp_path)


def test_loading_never_unpickles(tmp_path, monkeypatch):
    _run(tmp_path)

    def refuse(*args, **kwargs):
        raise AssertionError("unpickling was attempted")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    tensors, state = load_checkpoint(tmp_path)
    assert state["step"] == 6 and tensors
    header_len = int.from_bytes((tmp_path / state["weights"]).read_bytes()[:8], "little")
    header = json.loads((tmp_path / state["weights"]).read_bytes()[8 : 8 + header_len])  # safetensors: JSON header
    assert "model.stem.weight" in header


def test_data_must_match_on_resume(tmp_path):
    _run(tmp_path, steps=6, every=3)
    tc = TrainConfig(steps=6, batch_size=4, checkpoint_every=3, warmup=2)
    with pytest.raises(CheckpointError, match="different data set"):
        train(_model(), make_schedule("linear"), _images() * 0.5, tc, run_dir=tmp_path, progress=False)
    assert Path(tmp_path / "checkpoint.json").exists()


def test_the_verified_tensor_reader_and_card_reader(tmp_path):
    from course_lib.checkpoints import WeightsNotFound, atomic_copy, cached_tensors, load_tensors, read_card

    model = _model()
    digest = save_weights(model, tmp_path / "w.safetensors")
    (tmp_path / "card.json").write_text(json.dumps({"sha256": digest}))
    assert read_card(tmp_path / "card.json") == {"sha256": digest}
    atomic_copy(tmp_path / "w.safetensors", tmp_path / "copy" / "w.safetensors", sha256=digest)
    assert load_tensors(tmp_path / "copy" / "w.safetensors", sha256=digest).keys() == model.state_dict().keys()
    with pytest.raises(CheckpointError, match="corrupted or was changed"):
        atomic_copy(tmp_path / "w.safetensors", tmp_path / "copy2", sha256="0" * 64)
    assert not (tmp_path / "copy2").exists()
    with pytest.raises(WeightsNotFound, match="path=") as err:
        load_tensors(tmp_path / "missing.safetensors")
    assert isinstance(err.value, FileNotFoundError) and isinstance(err.value, CheckpointError)
    with pytest.raises(CheckpointError, match=f"sha256 is {digest}, expected {'0' * 64}; rebuild it"):
        load_tensors(tmp_path / "w.safetensors", sha256="0" * 64, hint="rebuild it")
    calls = []
    make = lambda: calls.append(1) or {"x": torch.ones(2)}  # noqa: E731
    first, again = cached_tensors(tmp_path / "side.safetensors", make), cached_tensors(tmp_path / "side.safetensors", make)
    assert calls == [1] and torch.equal(first["x"], again["x"])
