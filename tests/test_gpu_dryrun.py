"""The gpu dry run (settings.gpu_dryrun, `make gpu-dryrun`): the gpu configurations execute with every training
run and sampler capped to a few steps, every count a notebook picks capped to a handful, bf16 autocast on, and no
figure enforced."""

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


def test_picked_counts_are_capped_to_the_smoke_count(dryrun):
    run = settings.Run(profile="gpu", device=torch.device("cpu"), seed=0)
    assert run.pick(smoke=8, cpu=200, gpu=1000) == 8  # pictures, FID sizes: the smoke profile's handful
    assert run.pick(smoke=400_000, cpu=2_000_000, gpu=2_000_000) == 400_000  # a Monte Carlo keeps the smoke draws
    assert run.pick(smoke=1, cpu=20, gpu=100) == settings.DRYRUN_COUNT  # never below DRYRUN_COUNT
    assert run.pick(smoke=8, cpu=16, gpu=2) == 2 and run.pick(smoke=1.0, cpu=2.0, gpu=3.5) == 3.5  # smaller, floats: kept
    assert run.pick(smoke=[10, 20], cpu=[100], gpu=[100, 250, 2000]) == [10, 20]  # a list of sizes: the smoke list
    assert run.pick(smoke=[5], cpu=[10], gpu=[1, 2]) == [1, 2] and run.pick(smoke=0, cpu=0, gpu=True) is True


def test_counts_are_untouched_outside_a_dry_run(monkeypatch):
    monkeypatch.delenv(settings.DRYRUN_ENV, raising=False)
    run = settings.Run(profile="gpu", device=torch.device("cpu"), seed=0)
    assert run.pick(smoke=8, cpu=200, gpu=1000) == 1000 and run.pick(smoke=[1], cpu=[2], gpu=[100, 250]) == [100, 250]


def test_text_encoder_with_an_empty_prompt_runs_under_bf16_autocast():
    """Classifier-free guidance's training drops prompts to "" (a NaN row); under a bf16 GPU's autocast (and the dry
    run's) the encoded rows are bfloat16 and must land in the output as they are (chapters 08 and 11)."""
    from course_lib.captions import tokenize
    from course_lib.models.text import TextEncoder, TextEncoderConfig

    torch.manual_seed(0)
    enc = TextEncoder(TextEncoderConfig(width=16, num_layers=1, num_heads=4, out_dim=10))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = enc(tokenize(["a cat", ""]))
    assert out.dtype == torch.bfloat16 and torch.isfinite(out[0]).all() and torch.isnan(out[1]).all()


def test_cross_attention_prompts_encode_under_bf16_autocast():
    """The cross-attention U-Net's per-word encoder (chapters 11 and 13) writes its encoded rows back by index_put:
    under autocast — a GPU's, and since the samplers call networks in it, every guided sampling step — the rows
    are bfloat16 and an empty prompt (classifier-free guidance's unconditional half) sits beside them."""
    from course_lib.latent.pipeline import build_latent_denoiser, latent_recipe
    from course_lib.scenes import scene_tokenize

    model = build_latent_denoiser(latent_recipe("smoke"), "crossattn").eval()
    ids = scene_tokenize(["a cat in a red hat on the left", ""])
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        context, mask = model.encode_prompt(model.as_prompt_ids(ids, 2, torch.device("cpu")))
    assert context.shape[0] == 2 and bool(torch.isfinite(context[0]).all()) and bool(mask[0].any())
