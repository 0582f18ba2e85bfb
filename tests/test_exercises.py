"""Every function exercise: the reference solution passes its own check, a stub is "not tried",
and a typical wrong answer fails loudly (course_lib.exercises)."""

import pytest
import torch

from course_lib import exercises as E


def _prompt_inputs():
    model = E._TinyDenoiser()
    g = torch.Generator().manual_seed(0)
    return model, torch.randn(1, 1, 8, 8, generator=g), torch.tensor([500]), torch.tensor([3]), torch.tensor([-1])


def _small_fid_sets():
    from course_lib.data import load_mnist5000

    test = load_mnist5000("test").images
    g = torch.Generator().manual_seed(1)
    return test[:100], (test[100:200] + 0.3 * torch.randn(100, 1, 32, 32, generator=g)).clamp(-1, 1)


def run_check(name, fn):
    check = E.EXERCISES[name][0]
    if name == "08_prompt_guidance":
        return check(fn, *_prompt_inputs())
    if name == "10_fid":
        return check(fn, *_small_fid_sets())
    return check(fn)


@pytest.mark.parametrize("name", sorted(E.EXERCISES))
def test_reference_solution_passes_its_check(name):
    assert run_check(name, E.EXERCISES[name][1]) is True


@pytest.mark.parametrize("name", sorted(E.EXERCISES))
def test_empty_stub_is_not_tried_and_does_not_raise(name, capsys):
    assert run_check(name, lambda *args: None) is False
    assert "not tried yet" in capsys.readouterr().out


def _no_noise_eraser(schedule, x0, generator):
    from course_lib.forward import posterior_mean_variance

    x = torch.randn(x0.shape, generator=generator)
    frames = [x]
    for t in range(schedule.num_timesteps - 1, -1, -1):
        x = posterior_mean_variance(schedule, x0, x, t)[0]
        frames.append(x)
    return frames


def _unshifted_cosine(T):
    import math

    f = lambda tau: math.cos((tau + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    return torch.tensor([f(t / T) / f(0) for t in range(T)])


def _unclamped_ddpm_step(schedule, eps_hat, t, x_t, z):
    from course_lib.forward import posterior_mean_variance, predict_x0

    mean, var = posterior_mean_variance(schedule, predict_x0(schedule, eps_hat, x_t, t), x_t, t)
    return mean + var.sqrt() * z if t > 0 else mean


def _guidance_backwards(model, schedule, labels, s, x_T, num_steps):
    return E.solution_cfg_sampler(model, schedule, labels, 1.0 / s if s else 0.0, x_T, num_steps)


def _kl_without_its_half(x, encode, decode, eps, s, beta):
    mu, logvar = encode(x)
    return E.solution_negative_elbo(x, encode, decode, eps, s, beta) + beta * 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)


def _euler_without_time_scale(model, noise, sigmas):  # tells the network t ∈ [0, 1] instead of t·1000
    x = noise
    for i in range(len(sigmas) - 1):
        x = x + (sigmas[i + 1] - sigmas[i]) * model(x, torch.full((x.shape[0],), float(sigmas[i])))
    return x


WRONG = {
    "00_cheat_eraser": _no_noise_eraser,
    "01_q_sample": lambda s, x0, t, noise: (s.alphas_cumprod[t].reshape(-1, 1, 1, 1) * x0
                                            + (1 - s.alphas_cumprod[t]).reshape(-1, 1, 1, 1) * noise),
    "02_cosine_schedule": _unshifted_cosine,
    "03_to_x0": lambda out, x_t, a, kind: E.solution_to_x0(out, x_t, a, "epsilon"),  # every output read as ε
    "04_training_loss": lambda m, s, x0, t, noise: E.solution_training_loss(m, s, x0, t, noise) * 2,
    "05_ddpm_step": _unclamped_ddpm_step,
    "06_ddim_step": lambda s, eps, t, tp, x: E.solution_ddim_step(s, eps, t, tp, x) + 0.01,
    "07_cfg_sampler": _guidance_backwards,
    "08_prompt_guidance": lambda m, x, t, ids, empty, s: E.solution_prompt_guidance(m, x, t, empty, ids, s),
    "09_negative_elbo": _kl_without_its_half,
    "10_fid": lambda fr, ff: float((fr.mean(0) - ff.mean(0)).square().sum()),  # the mean term alone
    "11_cross_attention": lambda q, k, mask: (q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5).softmax(-1),  # no mask
    "12_flow_euler": _euler_without_time_scale,
}


def test_negative_elbo_other_slips_fail():
    """σ read as log σ² (the code drawn with the wrong spread) and a forgotten β fail too."""
    def sigma_as_logvar(x, encode, decode, eps, s, beta):
        mu, logvar = encode(x)
        return E.solution_negative_elbo(x, lambda v: (mu, 2 * torch.log(logvar.abs() + 1e-3)), decode, eps, s, beta)

    def no_beta(x, encode, decode, eps, s, beta):
        return E.solution_negative_elbo(x, encode, decode, eps, s, 1.0)

    for wrong in (sigma_as_logvar, no_beta):
        with pytest.raises(AssertionError, match="negative ELBO"):
            E.check_negative_elbo(wrong)


def test_exercises_of_chapters_09_and_12_run_on_a_given_model():
    from course_lib.models import MLPConfig, MLPDenoiser
    from course_lib.models.vae import VAE, VAEConfig

    torch.manual_seed(0)
    assert E.check_negative_elbo(E.solution_negative_elbo, VAE(VAEConfig(latent_dim=4, base=4))) is True
    assert E.check_flow_euler(E.solution_flow_euler, MLPDenoiser(MLPConfig(dim=2, hidden=16, num_blocks=1))) is True


@pytest.mark.parametrize("name", sorted(E.EXERCISES))
def test_a_wrong_answer_fails_with_a_message(name):
    with pytest.raises(AssertionError, match="✗"):
        run_check(name, WRONG[name])


def test_wrong_fid_names_the_missing_term():
    with pytest.raises(AssertionError, match="mean term alone"):
        run_check("10_fid", WRONG["10_fid"])


def test_value_check_still_works():
    assert E.check("x", None, 1.0) is False
    assert E.check("x", 1.0, 1.0) is True
    with pytest.raises(AssertionError):
        E.check("x", 2.0, 1.0)
