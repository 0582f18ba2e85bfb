"""Samplers against diffusers (the oracle; imported only here) and bad-input errors.

Tolerance 1e-5 (absolute, on tensors of size O(1)) unless a comment says why not.
"""

from __future__ import annotations

import math

import pytest
import torch

from course_lib.schedules import make_schedule
from course_lib.samplers import (
    SampleResult,
    StepOutput,
    cfg_combine,
    ddim_step,
    ddpm_step,
    karras_sigmas,
    sample,
    sample_dpmpp_2m,
    sample_euler,
    sample_heun,
    schedule_sigmas,
    sigma_grid,
    sigma_to_t,
)

diffusers = pytest.importorskip("diffusers")

T = 1000
ATOL = 1e-5
PREDICTION_TYPES = ["epsilon", "sample", "v_prediction"]
CONFIG = dict(num_train_timesteps=T, beta_schedule="linear", beta_start=1e-4, beta_end=0.02)  # Heun's defaults differ
SHAPE = (2, 1, 4, 4)


@pytest.fixture(scope="module")
def s():
    return make_schedule("linear", T)


def dummy(x: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
    """A deterministic stand-in for a network: depends non-trivially on x and on (possibly fractional) t."""
    t = torch.as_tensor(t, dtype=torch.float32).reshape(-1, *([1] * (x.dim() - 1)))  # (B,1,1,1) or (1,1,1,1)
    return x * t / (t + 1) + 0.1 * torch.sin(3 * x)


def pair(seed: int = 0, shape=(2, 3, 8, 8)) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g), torch.randn(shape, generator=g)


def close(a: torch.Tensor, b: torch.Tensor, atol: float = ATOL) -> None:
    assert a.shape == b.shape
    err = (a - b).abs().max().item()
    assert err <= atol, f"max abs difference {err:.3g} > {atol}"


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
def diffusers_loop(sched, x: torch.Tensor, generator=None, **step_kwargs) -> torch.Tensor:
    for t in sched.timesteps:
        x_in = sched.scale_model_input(x, t)
        if generator is not None:
            step_kwargs["generator"] = generator
        x = sched.step(dummy(x_in, t), t, x, **step_kwargs).prev_sample
    return x


def noise(seed: int = 0) -> torch.Tensor:
    return torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed))


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
    mine = sample(dummy, s, SHAPE, sampler="ddim", num_steps=n, spacing=spacing, eta=eta,
                  generator=torch.Generator().manual_seed(0), progress=False)
    close(mine, ref)


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


@pytest.mark.parametrize("prediction_type", PREDICTION_TYPES)
@pytest.mark.parametrize("n", [5, 20])
def test_euler_karras_matches_diffusers(s, prediction_type, n):
    """EulerDiscreteScheduler(use_karras_sigmas=True): the same σ grid and the same fractional t.

    Convention difference: diffusers starts from σ_max·z ("linspace" spacing); we start every sampler
    from x_T = z, i.e. x_σ = √(1+σ_max²)·z, so the oracle gets that start (a factor 1.00002 here).
    """
    sched = diffusers.EulerDiscreteScheduler(**CONFIG,
                                             use_karras_sigmas=True, prediction_type=prediction_type)
    sched.set_timesteps(n)
    sigma_max = float(sched.sigmas[0])
    ref = diffusers_loop(sched, noise() * math.sqrt(1 + sigma_max**2))
    res = sample(dummy, s, SHAPE, sampler="euler", num_steps=n, spacing="karras", prediction_type=prediction_type,
                 generator=torch.Generator().manual_seed(0), progress=False, return_trajectory=True)
    close(res.images, ref)
    close(res.timesteps.float(), sched.timesteps, atol=1e-3)  # float32 vs float64 interpolation in log σ


@pytest.mark.parametrize("spacing", ["leading", "trailing"])
def test_euler_discrete_grid_matches_diffusers(s, spacing):
    sched = diffusers.EulerDiscreteScheduler(**CONFIG, timestep_spacing=spacing)
    sched.set_timesteps(10)
    ref = diffusers_loop(sched, noise() * math.sqrt(1 + float(sched.sigmas[0]) ** 2))
    mine = sample(dummy, s, SHAPE, sampler="euler", num_steps=10, spacing=spacing,
                  generator=torch.Generator().manual_seed(0), progress=False)
    close(mine, ref)


@pytest.mark.parametrize("prediction_type", PREDICTION_TYPES)
@pytest.mark.parametrize("n", [8, 20])
def test_heun_karras_matches_diffusers(s, prediction_type, n):
    """HeunDiscreteScheduler(use_karras_sigmas=True) runs EDM Algorithm 1 too: 2N − 1 calls."""
    sched = diffusers.HeunDiscreteScheduler(**CONFIG,
                                            use_karras_sigmas=True, prediction_type=prediction_type)
    sched.set_timesteps(n)
    ref = diffusers_loop(sched, noise() * math.sqrt(1 + float(sched.sigmas[0]) ** 2))
    calls = []

    def counting(x, t, cond=None):
        calls.append(t)
        return dummy(x, t)

    mine = sample(counting, s, SHAPE, sampler="heun", num_steps=n, spacing="karras", prediction_type=prediction_type,
                  generator=torch.Generator().manual_seed(0), progress=False)
    close(mine, ref)
    assert len(calls) == 2 * n - 1 == len(sched.timesteps)


@pytest.mark.parametrize("prediction_type", PREDICTION_TYPES)
@pytest.mark.parametrize("n", [10, 25])
def test_dpmpp_2m_karras_matches_diffusers(s, prediction_type, n):
    """DPMSolverMultistepScheduler(dpmsolver++, order 2, Karras σ): diffusers gives the network the
    ROUNDED timestep while its solver keeps the exact σ — round_timesteps=True reproduces that.
    (For the cosine schedule diffusers truncates instead of rounding; not reproduced.)"""
    sched = diffusers.DPMSolverMultistepScheduler(**CONFIG, solver_order=2,
                                                  algorithm_type="dpmsolver++", use_karras_sigmas=True,
                                                  prediction_type=prediction_type)
    sched.set_timesteps(n)
    ref = diffusers_loop(sched, noise())  # VP-space sampler: starts from z like ours
    res = sample(dummy, s, SHAPE, sampler="dpmpp_2m", num_steps=n, spacing="karras", prediction_type=prediction_type,
                 round_timesteps=True, generator=torch.Generator().manual_seed(0), progress=False,
                 return_trajectory=True)
    close(res.images, ref)
    assert res.timesteps.tolist() == sched.timesteps.tolist()
    # without rounding the network sees the exact, fractional t(σ) that belongs to the solver's σ
    exact = sample(dummy, s, SHAPE, sampler="dpmpp_2m", num_steps=n, spacing="karras",
                   prediction_type=prediction_type, generator=torch.Generator().manual_seed(0), progress=False,
                   return_trajectory=True)
    assert exact.timesteps.dtype == torch.float32 and (exact.timesteps.frac() != 0).any()
    close(exact.timesteps.round(), res.timesteps.float(), atol=0)


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
    mine = sample(dummy, s_cos, SHAPE, sampler=sampler, num_steps=10, spacing=spacing,
                  generator=torch.Generator().manual_seed(0), progress=False)
    close(mine, ref)


@pytest.mark.parametrize("spacing", ["leading", "trailing"])
def test_euler_on_the_discrete_grid_is_ddim(s, spacing):
    """Karras et al. 2022, §3: DDIM (η = 0) is Euler's method in σ-space on the same noise levels."""
    kw = dict(num_steps=12, spacing=spacing, prediction_type="v_prediction", progress=False)
    euler = sample(dummy, s, SHAPE, sampler="euler", generator=torch.Generator().manual_seed(4), **kw)
    ddim = sample(dummy, s, SHAPE, sampler="ddim", generator=torch.Generator().manual_seed(4), **kw)
    close(euler, ddim)


# ----------------------------------------------------------------------------- σ-space pieces
@pytest.mark.parametrize("solver,order", [(sample_euler, 1), (sample_heun, 2), (sample_dpmpp_2m, 2)])
def test_solvers_converge_with_their_order(solver, order):
    """Gaussian data N(0, c²I): D(x; σ) = c²/(c²+σ²)·x and the ODE solution is known exactly,
    x(σ) = x(σ_max)·√((c²+σ²)/(c²+σ_max²)). Doubling the steps divides the error by about 2^order."""
    c = 0.5
    x_start = 80.0 * torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    errors = []
    for n in (16, 32, 64):
        sig = karras_sigmas(n, 0.002, 80.0).double()[:-1]  # stop at σ_min: the exact answer is finite there
        x = solver(lambda x, sg: c**2 / (c**2 + float(sg) ** 2) * x, x_start, sig)
        exact = x_start * math.sqrt((c**2 + float(sig[-1]) ** 2) / (c**2 + float(sig[0]) ** 2))
        errors.append((x - exact).abs().max().item())
    ratio = errors[1] / errors[2]
    assert 0.75 * 2**order < ratio < 1.5 * 2**order, f"errors {errors}"


def test_karras_sigmas_and_sigma_to_t(s):
    sig = schedule_sigmas(s)
    k = karras_sigmas(7, float(sig[0]), float(sig[-1]))
    assert k.shape == (8,) and k[-1] == 0 and bool((k[:-1].diff() < 0).all())
    assert math.isclose(float(k[0]), float(sig[-1]), rel_tol=1e-6)
    assert math.isclose(float(k[-2]), float(sig[0]), rel_tol=1e-6)
    # t(σ) hits the training steps exactly and interpolates in log σ between them
    close(sigma_to_t(s, sig[[0, 10, 999]]), torch.tensor([0.0, 10.0, 999.0], dtype=torch.float64))
    mid = (sig[10].double().log() + sig[11].double().log()).div(2).exp()
    assert math.isclose(float(sigma_to_t(s, mid)), 10.5, abs_tol=1e-6)


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


@pytest.mark.parametrize("prediction_type", PREDICTION_TYPES)
@pytest.mark.parametrize("n", [10, 25])
def test_dpmpp_2m_sde_karras_matches_diffusers(s, prediction_type, n):
    """SDE-DPM-Solver++(2M) (midpoint) = DPMSolverMultistepScheduler(algorithm_type="sde-dpmsolver++"),
    with the same per-step noise: both draw one standard normal per step from the same generator."""
    sched = diffusers.DPMSolverMultistepScheduler(**CONFIG, solver_order=2, algorithm_type="sde-dpmsolver++",
                                                  use_karras_sigmas=True, prediction_type=prediction_type)
    sched.set_timesteps(n)
    ref = diffusers_loop(sched, noise(), generator=torch.Generator().manual_seed(7))
    mine = sample(dummy, s, SHAPE, sampler="dpmpp_2m_sde", num_steps=n, spacing="karras",
                  prediction_type=prediction_type, round_timesteps=True, noise=noise(),
                  generator=torch.Generator().manual_seed(7), progress=False)
    close(mine, ref)


def test_dpmpp_2m_sde_is_random_and_seeded(s):
    """Fresh noise at every step: other seeds give other pictures from the same x_T; a seed repeats."""
    kw = dict(sampler="dpmpp_2m_sde", num_steps=8, spacing="karras", noise=noise(), progress=False)
    a = sample(dummy, s, SHAPE, generator=torch.Generator().manual_seed(1), **kw)
    b = sample(dummy, s, SHAPE, generator=torch.Generator().manual_seed(1), **kw)
    c = sample(dummy, s, SHAPE, generator=torch.Generator().manual_seed(2), **kw)
    assert torch.equal(a, b) and not torch.allclose(a, c)


def test_sigma_max_starts_the_karras_grid_lower(s):
    """sigma_max caps where the karras grid starts (EDM's 80); the rest of the grid keeps its shape."""
    full, capped = sigma_grid(s, 10, "karras"), sigma_grid(s, 10, "karras", sigma_max=80.0)
    assert float(capped[0]) == pytest.approx(80.0) and float(full[0]) > 80.0
    assert float(capped[-2]) == pytest.approx(float(full[-2])) and float(capped[-1]) == 0.0
    res = sample(dummy, s, SHAPE, sampler="euler", num_steps=10, spacing="karras", sigma_max=80.0, noise=noise(),
                 progress=False, return_trajectory=True)
    assert 0 < float(res.timesteps[0]) < s.num_timesteps - 1  # the network first sees t(σ = 80), below T−1


@pytest.mark.parametrize("kwargs, match", [
    (dict(sampler="ddim", spacing="trailing", sigma_max=80.0), "sigma_max"),
    (dict(sampler="euler", spacing="trailing", sigma_max=80.0), "only used with spacing='karras'"),
    (dict(sampler="euler", spacing="karras", sigma_max=1e9), "sigma_max"),
    (dict(sampler="euler", spacing="karras", sigma_max=0.0), "sigma_max"),
])
def test_sigma_max_bad_input(s, kwargs, match):
    with pytest.raises(ValueError, match=match):
        sample(dummy, s, SHAPE, num_steps=5, progress=False, **kwargs)
