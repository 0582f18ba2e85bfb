"""Schedules and add_noise against diffusers' DDPMScheduler (the oracle), plus bad input."""

import pytest
import torch
from diffusers import DDPMScheduler

from course_lib.schedules import SCHEDULE_NAMES, alpha_bar_at, make_schedule, schedule_sigmas, sigma_to_t

DIFFUSERS_NAME = {"linear": "linear", "scaled_linear": "scaled_linear", "cosine": "squaredcos_cap_v2", "sigmoid": "sigmoid"}


@pytest.mark.parametrize("name", SCHEDULE_NAMES)
@pytest.mark.parametrize("T", [2, 10, 250, 1000, 4000])
@pytest.mark.parametrize("zero_snr", [False, True])
def test_schedule_matches_diffusers(name, T, zero_snr):
    ref = DDPMScheduler(num_train_timesteps=T, beta_schedule=DIFFUSERS_NAME[name], rescale_betas_zero_snr=zero_snr)
    s = make_schedule(name, T, zero_terminal_snr=zero_snr)
    assert s.num_timesteps == T
    for ours, theirs in [(s.betas, ref.betas), (s.alphas, ref.alphas), (s.alphas_cumprod, ref.alphas_cumprod)]:
        assert ours.dtype == torch.float32 and ours.shape == (T,)
        torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", ["linear", "scaled_linear", "sigmoid"])
def test_custom_beta_range_matches_diffusers(name):
    ref = DDPMScheduler(num_train_timesteps=500, beta_schedule=name, beta_start=5e-4, beta_end=0.03)
    s = make_schedule(name, 500, beta_start=5e-4, beta_end=0.03)
    torch.testing.assert_close(s.alphas_cumprod, ref.alphas_cumprod, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", SCHEDULE_NAMES)
@pytest.mark.parametrize("zero_snr", [False, True])
def test_add_noise_matches_diffusers(name, zero_snr):
    T = 1000
    ref = DDPMScheduler(num_train_timesteps=T, beta_schedule=DIFFUSERS_NAME[name], rescale_betas_zero_snr=zero_snr)
    s = make_schedule(name, T, zero_terminal_snr=zero_snr)
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(6, 3, 8, 8, generator=g) * 2 - 1
    noise = torch.randn(6, 3, 8, 8, generator=g)
    t = torch.tensor([0, 1, 17, 500, 998, 999])
    torch.testing.assert_close(s.add_noise(x0, noise, t), ref.add_noise(x0, noise, t), atol=1e-6, rtol=0)


def test_zero_terminal_snr_ends_in_pure_noise():
    s = make_schedule("linear", 1000, zero_terminal_snr=True)
    assert s.alphas_cumprod[-1] == 0
    assert s.snr(999) == 0
    plain = make_schedule("linear", 1000)
    assert plain.alphas_cumprod[-1] > 1e-5  # the flaw Lin et al. point out: signal leaks at t = T-1
    torch.testing.assert_close(s.alphas_cumprod[0], plain.alphas_cumprod[0])


def test_snr_is_decreasing():
    s = make_schedule("cosine", 1000)
    snr = s.snr(torch.arange(1000))
    assert torch.all(snr[1:] < snr[:-1])
    torch.testing.assert_close(snr, s.alphas_cumprod / (1 - s.alphas_cumprod))


@pytest.mark.parametrize(
    "kwargs, word",
    [
        (dict(name="cosin"), "schedule"),
        (dict(name="linear", num_timesteps=0), "num_timesteps"),
        (dict(name="linear", num_timesteps=2.5), "num_timesteps"),
        (dict(name="linear", beta_start=0.1, beta_end=0.01), "beta_start"),
        (dict(name="linear", zero_terminal_snr="yes"), "zero_terminal_snr"),
    ],
)
def test_bad_input_names_the_parameter(kwargs, word):
    with pytest.raises(ValueError, match=word):
        make_schedule(**kwargs)


def test_unknown_schedule_lists_the_allowed_names():
    with pytest.raises(ValueError) as err:
        make_schedule("cosin")
    for name in SCHEDULE_NAMES:
        assert repr(name) in str(err.value)
    assert "did you mean 'cosine'" in str(err.value)


# ----------------------------------------------------------------------------- ᾱ at a time t: the one lookup
def test_alpha_bar_at_integer_and_minus_one():
    s = make_schedule("linear", 1000)
    t = torch.tensor([-1, 0, 10, 999])
    expected = torch.cat([torch.ones(1), s.alphas_cumprod[[0, 10, 999]]])
    assert torch.equal(alpha_bar_at(s, t), expected)  # ᾱ_{−1} = 1: the clean end
    assert torch.equal(alpha_bar_at(s, 5), s.alphas_cumprod[5])
    like = torch.zeros(4, 3, 2, 2, dtype=torch.float64)
    shaped = alpha_bar_at(s, t, like=like)
    assert shaped.shape == (4, 1, 1, 1) and shaped.dtype == torch.float64 and torch.equal(shaped.flatten(), expected.double())
    for bad in (torch.tensor([1000]), torch.tensor([-2]), 1000):
        with pytest.raises(ValueError, match="t="):
            alpha_bar_at(s, bad)


def test_alpha_bar_at_fractional_t_is_the_samplers_noise_level():
    """Fractional t: log σ interpolated between steps, the inverse of sigma_to_t (what the σ-samplers use)."""
    s = make_schedule("linear", 1000)
    sigmas = schedule_sigmas(s)[[0, 17, 400, 999]] * torch.tensor([1.0, 1.3, 0.9, 1.0])
    t = sigma_to_t(s, sigmas).float()
    torch.testing.assert_close(alpha_bar_at(s, t), 1 / (1 + sigmas**2), rtol=1e-4, atol=1e-6)
    whole = torch.tensor([0.0, 10.0, 999.0])
    torch.testing.assert_close(alpha_bar_at(s, whole), s.alphas_cumprod[[0, 10, 999]], rtol=1e-6, atol=0)
