"""The gpu dry run (settings.gpu_dryrun, `make gpu-dryrun`): the gpu configurations execute with every training
run and sampler capped to a few steps, bf16 autocast on, and no figure enforced."""

from __future__ import annotations

import pytest
import torch

from course_lib import settings
from course_lib.claims import claim
from course_lib.optim import TrainConfig
from course_lib.samplers import sample
from course_lib.schedules import make_schedule
from course_lib.training import train


class Counting(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)
        self.calls = 0

    def forward(self, x, t, cond=None):
        self.calls += 1
        return self.lin(x)


@pytest.fixture
def dryrun(monkeypatch):
    monkeypatch.setenv(settings.DRYRUN_ENV, "1")


def test_off_by_default_and_capped_when_on(monkeypatch):
    monkeypatch.delenv(settings.DRYRUN_ENV, raising=False)
    assert not settings.gpu_dryrun() and settings.capped(5000) == 5000 and TrainConfig(steps=5000).steps == 5000
    monkeypatch.setenv(settings.DRYRUN_ENV, "0")
    assert not settings.gpu_dryrun()
    monkeypatch.setenv(settings.DRYRUN_ENV, "1")
    assert settings.capped(5000) == settings.DRYRUN_STEPS and settings.capped(1) == 1


def test_training_and_sampling_keep_a_few_steps_with_bf16_autocast(dryrun):
    config = TrainConfig(steps=5000, batch_size=8, warmup=100, checkpoint_every=0)
    assert config.steps == settings.DRYRUN_STEPS
    seen = []
    model = Counting()
    model.register_forward_hook(lambda m, args, out: seen.append(out.dtype))
    result = train(model, make_schedule("linear", 100), torch.randn(16, 4), config, device="cpu", progress=False)
    assert result.steps == settings.DRYRUN_STEPS and torch.bfloat16 in seen  # the gpu profile's autocast path ran
    net = Counting().eval()
    sample(net, make_schedule("linear", 100), (2, 4), sampler="ddim", num_steps=50, clip_sample=False, progress=False)
    assert net.calls == settings.DRYRUN_STEPS


def test_claims_are_printed_not_enforced(dryrun, capsys):
    assert not claim("a figure", 5.0, at_most=1.0, profile="gpu")
    assert "the text says" in capsys.readouterr().out
