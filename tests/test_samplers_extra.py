"""Chapter 06 additions: slerp, DDIM inversion, sampling from a given x_T, and the steps-vs-quality table."""

from __future__ import annotations

import math

import pytest
import torch

from course_lib.benchmarking import (
    SamplerConfig,
    best_within,
    format_table,
    network_evaluations,
    reference_fid,
    steps_for_nfe,
    steps_vs_quality,
    table_configs,
)
from course_lib.samplers import ddim_invert, sample, slerp
from course_lib.schedules import make_schedule


@pytest.fixture(scope="module")
def s():
    return make_schedule("linear", 1000)


def gaussian_denoiser(s, data_std: float):
    """The exact ε-prediction for data ~ N(0, data_std² I): E[ε | x_t] = √(1−ᾱ) x_t / (ᾱ σ_d² + 1 − ᾱ)."""

    def model(x: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
        a = s.alphas_cumprod[t.long().cpu()].to(x).reshape(-1, *([1] * (x.dim() - 1)))  # (B, 1, 1, 1)
        return (1 - a).sqrt() * x / (a * data_std**2 + 1 - a)

    return model


# ----------------------------------------------------------------------------- slerp
def test_slerp_endpoints_and_quarter_circle():
    z0, z1 = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    assert torch.allclose(slerp(z0, z1, 0.0), z0, atol=1e-6)
    assert torch.allclose(slerp(z0, z1, 1.0), z1, atol=1e-6)
    half = math.sqrt(0.5)
    assert torch.allclose(slerp(z0, z1, 0.5), torch.tensor([[half, half]]), atol=1e-6)
    third = slerp(z0, z1, 1 / 3)  # a third of the way round the arc: angle 30°
    assert torch.allclose(third, torch.tensor([[math.cos(math.pi / 6), math.sin(math.pi / 6)]]), atol=1e-6)


def test_slerp_keeps_noise_loud_where_lerp_does_not():
    g = torch.Generator().manual_seed(0)
    z0, z1 = torch.randn(4, 1, 32, 32, generator=g), torch.randn(4, 1, 32, 32, generator=g)
    mid = slerp(z0, z1, 0.5)
    assert mid.shape == z0.shape and mid.dtype == z0.dtype
    norms = mid.flatten(1).norm(dim=1) / z0.flatten(1).norm(dim=1)
    assert torch.allclose(norms, torch.ones(4), atol=0.06)  # about √d, like the ends
    lerp_norms = ((z0 + z1) / 2).flatten(1).norm(dim=1) / z0.flatten(1).norm(dim=1)
    assert (lerp_norms < 0.8).all()  # ≈ 1/√2: too quiet


def test_slerp_per_row_weights_and_parallel_fallback():
    g = torch.Generator().manual_seed(1)
    z0, z1 = torch.randn(3, 5, generator=g), torch.randn(3, 5, generator=g)
    w = torch.tensor([0.0, 0.25, 1.0])
    out = slerp(z0, z1, w)
    assert torch.allclose(out[0], z0[0], atol=1e-6) and torch.allclose(out[2], z1[2], atol=1e-6)
    assert torch.allclose(out[1], slerp(z0[1:2], z1[1:2], 0.25)[0], atol=1e-6)
    par = slerp(z0, 2 * z0, 0.5)  # parallel rows: the straight line
    assert torch.allclose(par, 1.5 * z0, atol=1e-5)


def test_slerp_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        slerp(torch.zeros(2, 3), torch.zeros(2, 4), 0.5)
    with pytest.raises(ValueError, match="weight"):
        slerp(torch.ones(2, 3), torch.ones(2, 3), torch.tensor([0.5]))
    with pytest.raises(ValueError, match="weight"):
        slerp(torch.ones(2, 3), torch.ones(2, 3), float("nan"))


# ----------------------------------------------------------------------------- sampling from a given x_T, inversion
def test_sample_from_given_noise_equals_drawing_it(s):
    model = gaussian_denoiser(s, 0.5)
    shape = (2, 1, 4, 4)
    drawn = sample(model, s, shape, sampler="ddim", num_steps=10, generator=torch.Generator().manual_seed(3), progress=False)
    z = torch.randn(shape, generator=torch.Generator().manual_seed(3))
    given = sample(model, s, shape, sampler="ddim", num_steps=10, noise=z, progress=False)
    assert torch.equal(drawn, given)
    with pytest.raises(ValueError, match="noise"):
        sample(model, s, shape, noise=torch.zeros(1, 1, 4, 4), progress=False)


def test_ddim_inversion_round_trip_improves_with_steps(s):
    model = gaussian_denoiser(s, 0.5)
    x0 = 0.5 * torch.randn(64, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    errors = {}
    for n in (10, 100, 1000):  # first order in the step: error ∝ 1/N
        x_T = ddim_invert(model, s, x0, num_steps=n, spacing="trailing")
        back = sample(model, s, x0.shape, sampler="ddim", num_steps=n, spacing="trailing", noise=x_T, progress=False)
        errors[n] = float((back - x0).abs().mean())
    assert errors[100] < errors[10] / 4 and errors[1000] < errors[100] / 4 and errors[1000] < 0.005, errors
    assert abs(float(x_T.std()) - 1.0) < 0.1  # the data's Gaussian is carried to (nearly) pure noise


def test_ddim_inversion_trajectory(s):
    model = gaussian_denoiser(s, 0.5)
    x0 = torch.zeros(2, 1, 4, 4)
    res = ddim_invert(model, s, x0, num_steps=5, spacing="leading", return_trajectory=True)
    assert len(res.trajectory) == 6 and len(res.x0_preds) == 5 and torch.equal(res.trajectory[0], x0)
    assert res.timesteps.tolist() == [0, 200, 400, 600, 800]
    with pytest.raises(ValueError, match="spacing"):
        ddim_invert(model, s, x0, spacing="karras")


# ----------------------------------------------------------------------------- steps-vs-quality table
def test_network_evaluations_and_budget():
    assert network_evaluations("heun", 10) == 19 and network_evaluations("dpmpp_2m", 10) == 10
    for sampler in ("ddim", "euler", "heun", "dpmpp_2m"):
        for budget in (1, 9, 10, 20):
            n = steps_for_nfe(sampler, budget)
            assert network_evaluations(sampler, n) <= budget < network_evaluations(sampler, n + 1)


def test_sampler_config_validation_and_table():
    with pytest.raises(ValueError, match="eta"):
        SamplerConfig("euler", 10, eta=0.5)
    with pytest.raises(ValueError, match="spacing"):
        SamplerConfig("ddim", 10, "karras")
    rows = table_configs()
    assert (rows[0].sampler, rows[0].num_steps) == ("ddpm", 1000)
    assert [c.num_steps for c in rows if c.sampler == "ddim"] == [10, 20, 50, 100]
    for sampler in ("euler", "heun", "dpmpp_2m", "dpmpp_2m_sde"):
        assert [c.nfe for c in rows if c.sampler == sampler] in ([10, 20], [9, 19])
        assert all(c.spacing == "karras" and c.sigma_max == 80.0 for c in rows if c.sampler == sampler)
    assert all(c.clips for c in rows) and rows[1].label == "DDIM-10 trailing clip"
    assert rows[-1].label == "SDE-DPM-Solver++(2M)-20 karras σmax=80 clip"
    assert all(c.sigma_max is None for c in table_configs(sigma_max=None))
    with pytest.raises(ValueError, match="sigma_max"):
        SamplerConfig("euler", 10, "trailing", sigma_max=80.0)
    assert SamplerConfig("ddim", 10).clips is False and SamplerConfig("ddpm", 1000).clips is True
    assert SamplerConfig("ddpm", 1000, clip_sample=False).label == "DDPM-1000 no-clip"
    with pytest.raises(ValueError, match="clip_sample"):
        SamplerConfig("ddim", 10, clip_sample="yes")


def test_steps_vs_quality_shares_starting_noise_and_counts_calls(s):
    calls = []

    def model(x, t, cond=None):
        calls.append(x.shape[0])
        return 0.1 * x

    configs = [SamplerConfig("ddim", 7, "leading"), SamplerConfig("euler", 7, "leading"), SamplerConfig("heun", 3, "karras")]
    real = torch.zeros(5, 1, 4, 4)
    fid_fn = lambda r, f: float(f.mean() * 1000 + f.std())  # noqa: E731 - a deterministic stand-in for FID
    rows = steps_vs_quality(model, s, real, configs, n_samples=6, seed=2, batch_size=4, progress=False, fid_fn=fid_fn)
    assert [r["nfe"] for r in rows] == [7, 7, 5]
    assert sum(calls) == 6 * (7 + 7 + 5)  # every image, every network call, batches of 4 + 2
    assert set(rows[0]) >= {"sampler", "steps", "nfe", "fid", "seconds", "spacing", "label"}
    assert rows[0]["fid"] == pytest.approx(rows[1]["fid"], abs=1e-3)  # Euler on DDIM's grid is DDIM, same noise
    assert all(r["seconds"] >= 0 for r in rows)
    again = steps_vs_quality(model, s, real, configs[:1], n_samples=6, seed=2, progress=False, fid_fn=fid_fn)
    assert again[0]["fid"] == rows[0]["fid"]  # the seed fixes everything
    other = steps_vs_quality(model, s, real, configs[:1], n_samples=6, seed=3, progress=False, fid_fn=fid_fn)
    assert other[0]["fid"] != rows[0]["fid"]
    assert best_within(rows, 6)["sampler"] == "heun" and reference_fid(rows) == rows[0]["fid"]
    assert "DDIM-7 leading" in format_table(rows)
    with pytest.raises(ValueError, match="configs"):
        steps_vs_quality(model, s, real, [], n_samples=6)


def test_steps_vs_quality_with_real_fid(s):
    from course_lib.data import load_mnist5000

    real = load_mnist5000("test").images[:64]
    rows = steps_vs_quality(lambda x, t, cond=None: torch.zeros_like(x), s, real, [SamplerConfig("ddim", 2)],
                            n_samples=16, progress=False)
    assert math.isfinite(rows[0]["fid"]) and rows[0]["fid"] > 1.0  # static-like images are far from digits
