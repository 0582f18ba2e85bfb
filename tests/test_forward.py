"""The forward process: one jump equals many small steps; ε/x₀/v conversions are inverses."""

import pytest
import torch

from course_lib.forward import (
    PREDICTION_TYPES, check_model_output, convert, convert_at, noise_report, posterior_mean_variance, q_sample, q_step,
    split_prediction, target,
)
from course_lib.schedules import alpha_bar_at, make_schedule


@pytest.fixture(scope="module")
def s():
    return make_schedule("linear", 1000)


def test_many_small_steps_match_one_jump_in_distribution(s):
    x0 = torch.full((20000, 1), 0.7)  # many copies of one "pixel"
    g = torch.Generator().manual_seed(0)
    x = x0.clone()
    for t in range(300):
        x = q_step(s, x, t, generator=g)
    jump, _ = q_sample(s, x0, 299, generator=g)
    mean, std = s.alphas_cumprod[299].sqrt() * 0.7, (1 - s.alphas_cumprod[299]).sqrt()
    for sample in (x, jump):
        assert abs(sample.mean() - mean) < 0.02
        assert abs(sample.std() - std) < 0.02


@pytest.mark.parametrize("source", PREDICTION_TYPES)
@pytest.mark.parametrize("dest", PREDICTION_TYPES)
def test_conversions_are_inverse(s, source, dest):
    g = torch.Generator().manual_seed(1)
    x0 = torch.rand(5, 2, 4, 4, generator=g) * 2 - 1
    eps = torch.randn(5, 2, 4, 4, generator=g)
    t = torch.tensor([0, 10, 400, 800, 999])
    x_t = s.add_noise(x0, eps, t)
    out = target(s, x0, eps, t, source)
    there = convert(s, out, x_t, t, source, dest)
    back = convert(s, there, x_t, t, dest, source)
    torch.testing.assert_close(back, out, atol=2e-4, rtol=1e-4)
    torch.testing.assert_close(there, target(s, x0, eps, t, dest), atol=2e-4, rtol=1e-4)


def test_split_prediction_recovers_truth(s):
    x0 = torch.rand(3, 1, 4, 4) * 2 - 1
    eps = torch.randn(3, 1, 4, 4)
    t = torch.tensor([5, 500, 990])
    x_t = s.add_noise(x0, eps, t)
    for kind in PREDICTION_TYPES:
        pred = split_prediction(s, target(s, x0, eps, t, kind), x_t, t, kind)
        torch.testing.assert_close(pred.x0, x0, atol=1e-3, rtol=1e-3)
        torch.testing.assert_close(pred.eps, eps, atol=1e-3, rtol=1e-3)


def test_posterior_is_consistent_with_forward(s):
    # sampling x_{t-1} ~ q(x_{t-1}|x_t, x0) then x_t' ~ q(x_t|x_{t-1}) has the q(x_t|x0) marginal
    x0 = torch.full((40000, 1), -0.4)
    t = 200
    x_t, _ = q_sample(s, x0, t, generator=torch.Generator().manual_seed(2))
    mean, var = posterior_mean_variance(s, x0, x_t, t)
    x_prev = mean + var.sqrt() * torch.randn(x0.shape, generator=torch.Generator().manual_seed(3))
    a_prev = s.alphas_cumprod[t - 1]
    assert abs(x_prev.mean() - a_prev.sqrt() * -0.4) < 0.01
    assert abs(x_prev.std() - (1 - a_prev).sqrt()) < 0.01


def test_posterior_variance_is_beta_tilde(s):
    x = torch.zeros(1, 1)
    for t in (1, 50, 999):
        _, var = posterior_mean_variance(s, x, x, t)
        expected = (1 - s.alphas_cumprod[t - 1]) / (1 - s.alphas_cumprod[t]) * s.betas[t]
        torch.testing.assert_close(var.flatten()[0], expected)
    _, var0 = posterior_mean_variance(s, x, x, 0)
    assert var0.item() == 0.0


def test_unknown_prediction_type(s):
    with pytest.raises(ValueError, match="prediction_type"):
        target(s, torch.zeros(1, 1), torch.zeros(1, 1), torch.tensor([0]), "eps")


def test_convert_at_a_given_alpha_bar_equals_convert_at_t():
    s = make_schedule("cosine", 1000)
    g = torch.Generator().manual_seed(3)
    x_t, out = torch.randn(3, 1, 4, 4, generator=g), torch.randn(3, 1, 4, 4, generator=g)
    t = torch.tensor([1, 400, 990])
    for source in PREDICTION_TYPES:
        for dest in PREDICTION_TYPES:
            at_t = convert(s, out, x_t, t, source, dest)
            assert torch.equal(convert_at(alpha_bar_at(s, t, like=x_t), out, x_t, source, dest), at_t)


def test_check_model_output_names_both_shapes():
    x = torch.zeros(2, 1, 4, 4)
    assert check_model_output(x + 1, x).shape == x.shape
    with pytest.raises(ValueError, match=r"\(2, 1, 2, 4\).*\(2, 1, 4, 4\)"):
        check_model_output(x[:, :, :2], x)
    with pytest.raises(ValueError, match="list"):
        check_model_output([1.0], x)


def test_noise_report_tells_noise_from_a_picture():
    g = torch.Generator().manual_seed(0)
    picture = torch.linspace(-1, 1, 32).repeat(1, 1, 32, 1)  # (1, 1, 32, 32): a smooth ramp
    noise = noise_report(torch.randn(1, 1, 32, 32, generator=g), picture, "ramp")
    assert set(noise) == {"mean", "std", "KS p-value vs N(0,1)", "neighbour corr.", "corr. with ramp"}
    assert abs(noise["std"] - 1) < 0.1 and abs(noise["neighbour corr."]) < 0.1 and noise["KS p-value vs N(0,1)"] > 0.01
    ramp = noise_report(picture, picture)
    assert ramp["neighbour corr."] > 0.9 and ramp["corr. with reference"] > 0.999
