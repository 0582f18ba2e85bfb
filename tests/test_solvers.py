"""σ-space solvers (course_lib.solvers) against diffusers' Euler, Heun and DPM-Solver++ schedulers, their
convergence order, the σ grids and the sigma_max rule (tolerances: _sampling_helpers.py)."""

from __future__ import annotations

import math

import pytest
import torch
from _sampling_helpers import CONFIG, PREDICTION_TYPES, SHAPE, T, close, diffusers_loop, dummy, noise

from course_lib.samplers import sample
from course_lib.schedules import make_schedule, schedule_sigmas, sigma_to_t
from course_lib.solvers import check_sigma_max, karras_sigmas, sample_dpmpp_2m, sample_euler, sample_heun, sigma_grid

diffusers = pytest.importorskip("diffusers")


@pytest.fixture(scope="module")
def s():
    return make_schedule("linear", T)


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


@pytest.mark.parametrize("spacing", ["leading", "trailing"])
def test_euler_on_the_discrete_grid_is_ddim(s, spacing):
    """Karras et al. 2022, §3: DDIM (η = 0) is Euler's method in σ-space on the same noise levels."""
    kw = dict(num_steps=12, spacing=spacing, prediction_type="v_prediction", clip_sample=False, progress=False)
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
    (dict(sampler="euler", spacing="trailing", sigma_max=80.0), "only applies to spacing='karras'"),
    (dict(sampler="euler", spacing="karras", sigma_max=1e9), "sigma_max"),
    (dict(sampler="euler", spacing="karras", sigma_max=0.0), "sigma_max"),
])
def test_sigma_max_bad_input(s, kwargs, match):
    with pytest.raises(ValueError, match=match):
        sample(dummy, s, SHAPE, num_steps=5, progress=False, **kwargs)


def test_check_sigma_max_is_the_one_rule(s):
    """samplers.sample, the steps-vs-quality table and chapter 06's validation cell all call this."""
    assert check_sigma_max("karras", None) is None and check_sigma_max("trailing", None) is None
    assert check_sigma_max("karras", 80) == 80.0 and check_sigma_max("karras", 80.0, s) == 80.0
    with pytest.raises(ValueError, match="sigma_max=80.0 only applies to spacing='karras'"):
        check_sigma_max("trailing", 80.0)
    with pytest.raises(ValueError, match="sigma_max"):
        check_sigma_max("karras", -1.0)
    with pytest.raises(ValueError, match="sigma_max"):
        check_sigma_max("karras", 1e9, s)  # above σ(T−1) of the schedule
