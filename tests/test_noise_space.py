"""Moving around in noise space (chapter 06): slerp, sampling from a given x_T, and DDIM inversion."""

from __future__ import annotations

import math

import pytest
import torch

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
        back = sample(model, s, x0.shape, sampler="ddim", num_steps=n, spacing="trailing", clip_sample=False, noise=x_T,
                      progress=False)
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
