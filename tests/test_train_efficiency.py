"""The training loop's speed options: losses read every k steps (no host sync per step), channels_last,
the command line's limits; and, where a CUDA GPU exists, the benchmark's GPU row (skipped elsewhere)."""

import json
import subprocess
import sys

import pytest
import torch

from course_lib import training
from course_lib.checkpoints import load_checkpoint
from course_lib.models import UNet, digits_config
from course_lib.schedules import make_schedule
from course_lib.sweep import REPO_ROOT
from course_lib.training import TrainConfig, limits, train

DATA = torch.randn(64, 1, 32, 32, generator=torch.Generator().manual_seed(0)).clamp(-1, 1)
CONFIG = TrainConfig(steps=10, batch_size=8, warmup=2, checkpoint_every=0, min_snr_gamma=5.0)


def fresh():
    torch.manual_seed(0)
    return UNet(digits_config("smoke"))


def test_losses_are_read_every_k_steps(monkeypatch):
    reads = []
    real = training.distributed.all_mean
    monkeypatch.setattr(training.distributed, "all_mean", lambda v: reads.append(len(v)) or real(v))
    result = train(fresh(), make_schedule("cosine"), DATA, CONFIG, device="cpu", progress=False, log_every=4)
    assert reads == [4, 4, 2]  # after steps 4, 8 and the last: 3 syncs for 10 steps
    assert len(result.losses) == 10


def test_a_callback_still_sees_every_loss():
    seen = []
    result = train(fresh(), make_schedule("cosine"), DATA, CONFIG, device="cpu", progress=False,
                   callback=lambda info: seen.append(info.loss))
    assert seen == result.losses and all(isinstance(v, float) for v in seen)


def test_channels_last_gives_the_same_weights():
    a = train(fresh(), make_schedule("cosine"), DATA, CONFIG, device="cpu", progress=False, channels_last=False)
    b = train(fresh(), make_schedule("cosine"), DATA, CONFIG, device="cpu", progress=False, channels_last=True)
    for (k, x), y in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        torch.testing.assert_close(x, y, rtol=1e-3, atol=1e-4, msg=lambda m: f"{k}: {m}")


def test_limits_stop_early_and_the_run_resumes_bit_for_bit(tmp_path):
    config = TrainConfig(steps=10, batch_size=8, warmup=2, checkpoint_every=5)
    whole = train(fresh(), make_schedule("cosine"), DATA, config, run_dir=tmp_path / "a", device="cpu", progress=False)
    with limits(until=4, checkpoint_every=2):
        part = train(fresh(), make_schedule("cosine"), DATA, config, run_dir=tmp_path / "b", device="cpu", progress=False)
    assert part.steps == 4 and load_checkpoint(tmp_path / "b")[1]["step"] == 4
    rest = train(fresh(), make_schedule("cosine"), DATA, config, run_dir=tmp_path / "b", device="cpu", progress=False)
    assert rest.losses == whole.losses
    for x, y in zip(whole.ema_model.state_dict().values(), rest.ema_model.state_dict().values()):
        assert torch.equal(x, y)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_row_of_the_throughput_benchmark():
    out = subprocess.run([sys.executable, "benchmarks/train_throughput.py", "--device", "cuda", "--profile", "smoke",
                          "--json"], capture_output=True, text=True, cwd=REPO_ROOT, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    row = json.loads(out.stdout.strip().splitlines()[-1])
    assert row["device"] != "cpu" and row["course_loop_img_per_s"] > 0 and row["amp_bf16_channels_last"]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_training_on_the_gpu_reads_losses_rarely():
    result = train(fresh(), make_schedule("cosine"), DATA, CONFIG, device="cuda", progress=False, log_every=5)
    assert len(result.losses) == 10 and all(map(torch.isfinite, torch.tensor(result.losses)))
    assert next(result.model.parameters()).is_cuda
