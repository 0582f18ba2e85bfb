"""Samplers against diffusers (the oracle; imported only here and in test_solvers.py) and bad-input errors:
single DDPM/DDIM steps, whole ddpm/ddim loops, trajectories, classifier-free guidance inside sample().
Tolerances: see _sampling_helpers.py."""

from __future__ import annotations

import math

import pytest
import torch
from _sampling_helpers import ATOL, CONFIG, PREDICTION_TYPES, SHAPE, T, close, diffusers_loop, dummy, noise, pair

from course_lib.guidance import cfg_combine
from course_lib.samplers import SampleResult, StepOutput, ddim_step, ddpm_step, sample
from course_lib.schedules import make_schedule

diffusers = pytest.importorskip("diffusers")


@pytest.fixture(scope="module")
def s():
    return make_schedule("linear", T)


# ----------------------------------------------------------------------------- single steps
@pytest.mark.parametrize("prediction_type", PREDICTION_TYPES)
@pytest.mark.parametrize("clip", [True, False])
def test_ddpm_step_matches_diffusers(s, prediction_type, clip):
    sched = diffusers.DDPMScheduler(**CONFIG, variance_type="fixed_small",
                                    clip_sample=clip, prediction_type=prediction_type)
    for t in [0, 1, 7, 500, 999]:
        x, out = pair(t)
        ref = sched.step(out, t, x, generator=torch.Generator().manual_seed(t + 1))
        # the same generator seed: both draw z with torch.randn(shape, generator) (and none at t = 0)
        mine = ddpm_step(s, out, t, x, prediction_type=prediction_type, clip_sample=clip,
                         generator=torch.Generator().manual_seed(t + 1))
        assert isinstance(mine, StepOutput)
        close(mine.prev_sample, ref.prev_sample)
        close(mine.pred_original_sample, ref.pred_original_sample)
        # explicit noise: the z that diffusers drew
        z = torch.randn(x.shape, generator=torch.Generator().manual_seed(t + 1))
        mine_z = ddpm_step(s, out, t, x, prediction_type=prediction_type, clip_sample=clip, noise=z)
        close(mine_z.prev_sample, ref.prev_sample)
        if t == 0:  # no noise at the last step: the result is the (clipped) clean guess itself
            close(mine_z.prev_sample, mine_z.pred_original_sample)


@pytest.mark.parametrize("prediction_type", PREDICTION_TYPES)
@pytest.mark.parametrize("clip", [True, False])
@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_ddim_step_matches_diffusers(s, prediction_type, clip, eta):
    sched = diffusers.DDIMScheduler(**CONFIG, clip_sample=clip,
                                    set_alpha_to_one=True, prediction_type=prediction_type)
    n = 20
    sched.set_timesteps(n)
    for t in [999, 500, 50, 0]:
        t_prev = t - T // n if t - T // n >= 0 else -1
        x, out = pair(t)
        z = torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
        for clipped_eps in (False, True):
            ref = sched.step(out, t, x, eta=eta, use_clipped_model_output=clipped_eps, variance_noise=z)
            mine = ddim_step(s, out, t, t_prev, x, eta=eta, prediction_type=prediction_type, clip_sample=clip,
                             use_clipped_model_output=clipped_eps, noise=z)
            close(mine.prev_sample, ref.prev_sample)
            close(mine.pred_original_sample, ref.pred_original_sample)


def test_ddim_eta1_with_rederived_eps_is_the_ddpm_posterior(s):
    x, out = (v.double() for v in pair(1))  # float64: an identity check, free of float32 cancellation
    z = torch.randn(x.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    for t in [1, 300, 999]:
        a = ddim_step(s, out, t, t - 1, x, eta=1.0, clip_sample=True, use_clipped_model_output=True, noise=z)
        b = ddpm_step(s, out, t, x, clip_sample=True, noise=z)
        close(a.prev_sample, b.prev_sample, atol=1e-9)


# ----------------------------------------------------------------------------- whole loops
@pytest.mark.parametrize("n", [10, 50])
@pytest.mark.parametrize("spacing", ["leading", "trailing"])
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_loop_matches_diffusers(s, n, spacing, eta):
    sched = diffusers.DDIMScheduler(**CONFIG, clip_sample=False,
                                    set_alpha_to_one=True, timestep_spacing=spacing)
    sched.set_timesteps(n)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(SHAPE, generator=g)
    ref = diffusers_loop(sched, x, generator=g, eta=eta)
    mine = sample(dummy, s, SHAPE, sampler="ddim", num_steps=n, spacing=spacing, eta=eta, clip_sample=False,
                  generator=torch.Generator().manual_seed(0), progress=False)
    close(mine, ref)


@pytest.mark.parametrize("prediction_type", PREDICTION_TYPES)
def test_ddim_default_is_trailing_and_clamped_like_diffusers(s, prediction_type):
    """sample(sampler="ddim") with no spacing/clip_sample is chapter 06's DDIM: trailing steps, x̂₀ clamped
    to [-1, 1] — diffusers' DDIMScheduler with timestep_spacing="trailing" and its default clip_sample=True."""
    sched = diffusers.DDIMScheduler(**CONFIG, clip_sample=True, set_alpha_to_one=True, timestep_spacing="trailing",
                                    prediction_type=prediction_type)
    sched.set_timesteps(10)
    g = torch.Generator().manual_seed(0)
    ref = diffusers_loop(sched, 3 * torch.randn(SHAPE, generator=g))  # large x: the clamp is active
    mine = sample(dummy, s, SHAPE, sampler="ddim", num_steps=10, noise=3 * noise(0), prediction_type=prediction_type,
                  progress=False)
    close(mine, ref)
    unclamped = sample(dummy, s, SHAPE, sampler="ddim", num_steps=10, noise=3 * noise(0), clip_sample=False,
                       prediction_type=prediction_type, progress=False)
    assert not torch.allclose(mine, unclamped)  # the clamp did something here


@pytest.mark.parametrize("n,spacing", [(T, "trailing"), (20, "leading"), (20, "trailing")])
def test_ddpm_loop_matches_diffusers(s, n, spacing):
    """Full DDPM and the respaced DDPM of diffusers' DDPMScheduler.set_timesteps(n): same noise stream."""
    sched = diffusers.DDPMScheduler(**CONFIG, variance_type="fixed_small",
                                    clip_sample=True, timestep_spacing=spacing)
    if n < T:
        sched.set_timesteps(n)
    g = torch.Generator().manual_seed(0)
    ref = diffusers_loop(sched, torch.randn(SHAPE, generator=g), generator=g)
    res = sample(dummy, s, SHAPE, sampler="ddpm", num_steps=n, spacing=spacing,
                 generator=torch.Generator().manual_seed(0), progress=False, return_trajectory=True)
    close(res.images, ref, atol=1e-4 if n == T else ATOL)  # 1000 float32 steps accumulate ~1e-5
    assert res.timesteps.tolist() == sched.timesteps.tolist()


@pytest.mark.parametrize("sampler", ["ddim", "euler"])
def test_cosine_schedule_loops_match_diffusers(sampler):
    """The cosine schedule (diffusers "squaredcos_cap_v2"), where σ_max is far larger."""
    s_cos = make_schedule("cosine", T)
    cfg = dict(num_train_timesteps=T, beta_schedule="squaredcos_cap_v2")
    if sampler == "ddim":
        sched = diffusers.DDIMScheduler(**cfg, clip_sample=False, timestep_spacing="trailing")
        sched.set_timesteps(10)
        ref = diffusers_loop(sched, noise())
    else:
        sched = diffusers.EulerDiscreteScheduler(**cfg, use_karras_sigmas=True)
        sched.set_timesteps(10)
        ref = diffusers_loop(sched, noise() * math.sqrt(1 + float(sched.sigmas[0]) ** 2))
    spacing = "trailing" if sampler == "ddim" else "karras"
    mine = sample(dummy, s_cos, SHAPE, sampler=sampler, num_steps=10, spacing=spacing, clip_sample=False,
                  generator=torch.Generator().manual_seed(0), progress=False)
    close(mine, ref)


def test_trajectory_and_x0_preds(s):
    for sampler, n in [("ddim", 6), ("dpmpp_2m", 6), ("heun", 4)]:
        res = sample(dummy, s, SHAPE, sampler=sampler, num_steps=n, generator=torch.Generator().manual_seed(1),
                     progress=False, return_trajectory=True)
        assert isinstance(res, SampleResult)
        assert len(res.trajectory) == n + 1 and len(res.x0_preds) == n and len(res.timesteps) == n
        close(res.trajectory[0], noise(1), atol=0)  # every sampler starts from the same x_T = z
        close(res.trajectory[-1], res.images, atol=0)
        plain = sample(dummy, s, SHAPE, sampler=sampler, num_steps=n, generator=torch.Generator().manual_seed(1),
                       progress=False)
        close(plain, res.images, atol=0)


# ----------------------------------------------------------------------------- guidance
def test_cfg_is_one_batched_call(s):
    calls = []

    def cond_model(x, t, cond=None):
        calls.append((x.shape[0], cond.clone()))
        return dummy(x, t) + 0.1 * cond.float().reshape(-1, 1, 1, 1)  # label-dependent output

    labels = torch.tensor([3, 7])
    out = sample(cond_model, s, SHAPE, num_steps=4, cond=labels, guidance_scale=3.0,
                 generator=torch.Generator().manual_seed(0), progress=False)
    assert len(calls) == 4 and all(b == 4 for b, _ in calls)
    assert calls[0][1].tolist() == [3, 7, -1, -1]

    # the same loop by hand: ε̃ = ε_∅ + s (ε_c − ε_∅), then the unguided DDIM loop on ε̃
    def by_hand(x, t, cond=None):
        return cfg_combine(cond_model(x, t, torch.full_like(labels, -1)), cond_model(x, t, labels), 3.0)

    ref = sample(by_hand, s, SHAPE, num_steps=4, generator=torch.Generator().manual_seed(0), progress=False)
    close(out, ref)
    close(cfg_combine(torch.zeros(2), torch.ones(2), 1.0), torch.ones(2), atol=0)  # s = 1: conditional


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "kwargs,name",
    [
        (dict(num_steps=T + 1), "num_steps"),
        (dict(num_steps=0), "num_steps"),
        (dict(sampler="ddpmpp"), "sampler"),
        (dict(spacing="even"), "spacing"),
        (dict(sampler="ddim", spacing="karras"), "spacing"),
        (dict(eta=1.5), "eta"),
        (dict(eta=-0.1), "eta"),
        (dict(sampler="euler", eta=0.5), "eta"),
        (dict(prediction_type="noise"), "prediction_type"),
        (dict(guidance_scale=2.0), "guidance_scale"),
        (dict(cond=torch.tensor([1, 2, 3])), "cond"),
    ],
)
def test_sample_bad_input(s, kwargs, name):
    with pytest.raises(ValueError, match=name):
        sample(dummy, s, SHAPE, progress=False, **kwargs)


def test_step_bad_input(s):
    x, out = pair()
    with pytest.raises(ValueError, match="eta"):
        ddim_step(s, out, 10, 5, x, eta=2.0)
    with pytest.raises(ValueError, match="t_prev"):
        ddim_step(s, out, 10, 10, x)
    with pytest.raises(ValueError, match="t"):
        ddpm_step(s, out, T, x)
    with pytest.raises(ValueError, match="prediction_type"):
        ddpm_step(s, out, 5, x, prediction_type="eps")
    with pytest.raises(ValueError, match="noise"):
        ddpm_step(s, out, 5, x, noise=torch.zeros(1), )


@pytest.mark.parametrize("sampler", ["ddim", "euler"])
def test_wrong_shape_model(s, sampler):
    def bad(x, t, cond=None):
        return x[:, :, :2]

    with pytest.raises(ValueError, match=r"\(2, 1, 2, 4\).*\(2, 1, 4, 4\)"):
        sample(bad, s, SHAPE, sampler=sampler, num_steps=3, progress=False)


@pytest.mark.parametrize("dryrun", ["0", "1"])
def test_network_calls_run_in_the_training_autocast(monkeypatch, dryrun):
    """Sampling calls the network under the autocast training uses on the device (``settings.half_precision``):
    float32 on a CPU, bfloat16 in a gpu dry run (a T4 gets float16); the sampler's own arithmetic stays float32."""
    monkeypatch.setenv("COURSE_GPU_DRYRUN", dryrun)
    lin = torch.nn.Linear(2, 2).eval()
    seen: list[torch.dtype] = []

    def model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        out = lin(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)  # (B, 2, H, W): channels through a linear layer
        seen.append(out.dtype)
        return out

    gen = torch.Generator().manual_seed(0)
    images = sample(model, make_schedule("cosine", 100), (2, 2, 4, 4), num_steps=2, generator=gen, progress=False)
    assert seen and set(seen) == {torch.bfloat16 if dryrun == "1" else torch.float32}
    assert images.dtype == torch.float32 and bool(torch.isfinite(images).all())


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_a_gpu_the_network_runs_in_half_precision_and_the_pictures_match_float32():
    from course_lib.models import UNet, UNetConfig
    from course_lib.settings import autocast_dtype

    torch.manual_seed(0)
    unet = UNet(UNetConfig.preset("tiny")).eval()
    seen: list[torch.dtype] = []
    unet.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    s, z = make_schedule("cosine", 1000), torch.randn(4, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    cpu = sample(unet, s, z.shape, sampler="ddim", num_steps=10, noise=z, progress=False)
    seen.clear()
    gpu = sample(unet.cuda(), s, z.shape, sampler="ddim", num_steps=10, noise=z.cuda(), progress=False)
    assert set(seen) == {autocast_dtype(True, torch.device("cuda"))} and gpu.dtype == torch.float32
    assert float((gpu.cpu() - cpu).abs().max()) < 0.05  # half precision inside the network only
