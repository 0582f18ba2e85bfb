"""Every exercise: the reference solution passes its own check, a stub is "not tried" (a function returning
None) or "not answered" (answer = None), and a typical wrong answer fails loudly (course_lib.exercises)."""

import pytest
import torch

from course_lib import exercises as E
from course_lib.schedules import make_schedule


def _prompt_inputs():
    model = E.TinyDenoiser()
    g = torch.Generator().manual_seed(0)
    return model, torch.randn(1, 1, 8, 8, generator=g), torch.tensor([500]), torch.tensor([3]), torch.tensor([-1])


def _small_fid_sets():
    from course_lib.data import load_mnist5000

    test = load_mnist5000("test").images
    g = torch.Generator().manual_seed(1)
    return test[:100], (test[100:200] + 0.3 * torch.randn(100, 1, 32, 32, generator=g)).clamp(-1, 1)


def _x0_error_inputs():
    g = torch.Generator().manual_seed(3)
    x0, eps = torch.rand(1, 1, 8, 8, generator=g) * 2 - 1, torch.randn(1, 1, 8, 8, generator=g)
    return make_schedule("cosine"), x0, eps, eps + 0.7 * torch.randn(1, 1, 8, 8, generator=g), 950


def _features():
    g = torch.Generator().manual_seed(10)
    return torch.randn(60, 16, generator=g) @ torch.randn(16, 16, generator=g) + 3 * torch.randn(16, generator=g)


#: what each check gets besides the answer (the notebook passes the chapter's own objects)
INPUTS = {
    "13_blind_clip_loss": lambda: (8,),
    "00_static_share": lambda: (make_schedule("cosine", 1000),),
    "02_snr_one_step": lambda: (make_schedule("cosine", 1000),),
    "03_x0_error": _x0_error_inputs,
    "04_lazy_eraser": lambda: (make_schedule("cosine"), torch.rand(100, 1, 8, 8, generator=torch.Generator().manual_seed(4)) * 2 - 1),
    "04_loss_floor": lambda: (float(make_schedule("cosine").alphas_cumprod[300]), 0.3),
    "05_last_step_weights": lambda: (make_schedule("cosine"),),
    "07_cfg_as_critic_scale": lambda: (3.0,),
    "08_prompt_guidance": _prompt_inputs,
    "10_fid": _small_fid_sets,
    "10_shrunk_crowd_fid": lambda: (_features(),),
    "12_reflow_two_atoms": lambda: ((-1.0, 1.0), (0.3, 0.7)),
}


def run_check(name, answer):
    """``answer``: the learner's function (function exercises), or a function of the inputs that gives the
    learner's value, or the value itself (questions)."""
    check, args = E.EXERCISES[name][0], INPUTS.get(name, lambda: ())()
    if name in E.QUESTIONS and callable(answer):
        answer = answer(*args)
    return check(answer, *args)


def test_every_exercise_is_a_question_or_a_function_exercise():
    assert E.QUESTIONS <= set(E.EXERCISES)
    for name, (check, solution) in E.EXERCISES.items():
        assert check.__name__.startswith("check_") and solution.__name__.startswith("solution_"), name
        assert name in WRONG, f"{name}: add a realistic wrong answer to WRONG"


@pytest.mark.parametrize("name", sorted(E.EXERCISES))
def test_reference_solution_passes_its_check(name):
    assert run_check(name, E.EXERCISES[name][1]) is True


@pytest.mark.parametrize("name", sorted(E.EXERCISES))
def test_empty_stub_is_not_tried_and_does_not_raise(name, capsys):
    if name in E.QUESTIONS:
        assert run_check(name, None) is False
        assert "not answered yet" in capsys.readouterr().out
    else:
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


def _one_step_posterior_variance(schedule, t, t_prev):  # the one-step β_t even for a long jump
    a_prev = schedule.alphas_cumprod[t - 1] if t > 0 else torch.tensor(1.0)
    return (1 - a_prev) / (1 - schedule.alphas_cumprod[t]) * schedule.betas[t]


def _wrapped_posterior_variance(schedule, t, t_prev):  # ᾱ at t_prev = −1 read as the LAST entry
    a_t, a_prev = schedule.alphas_cumprod[t], schedule.alphas_cumprod[t_prev]
    return (1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)


def _unblurred_tweedie(x_t, a_bar, mean, std):  # the data's variance s², not the noised blob's ᾱs² + 1 − ᾱ
    return (x_t - (1 - a_bar) * (x_t - a_bar**0.5 * mean) / std**2) / a_bar**0.5


def _tweedie_without_rescaling(x_t, a_bar, mean, std):  # forgets the final 1/√ᾱ
    return E.solution_tweedie(x_t, a_bar, mean, std) * a_bar**0.5


def _ddim_weights_left_in_eps(schedule, t, t_prev):  # (√ᾱ', weight of ε̂, σ): ε̂ not rewritten through x_t and x̂₀
    a_t = schedule.alphas_cumprod[t].double()
    a_prev = schedule.alphas_cumprod[t_prev].double() if t_prev >= 0 else torch.tensor(1.0, dtype=torch.float64)
    sigma = ((1 - a_prev) / (1 - a_t)).sqrt() * (1 - a_t / a_prev).sqrt()
    return a_prev.sqrt(), (1 - a_prev - sigma**2).clamp(min=0).sqrt(), sigma


def _ddim_weights_without_root(schedule, t, t_prev):  # the kept static's weight taken as 1 − ᾱ' − σ², no √
    a_t = schedule.alphas_cumprod[t].double()
    a_prev = schedule.alphas_cumprod[t_prev].double() if t_prev >= 0 else torch.tensor(1.0, dtype=torch.float64)
    sigma = ((1 - a_prev) / (1 - a_t)).sqrt() * (1 - a_t / a_prev).sqrt()
    keep = 1 - a_prev - sigma**2
    return a_prev.sqrt() - keep * a_t.sqrt() / (1 - a_t).sqrt(), keep / (1 - a_t).sqrt(), sigma


def _guidance_uphill(model, classifier, schedule, x_t, t, labels, s):  # the push with the wrong sign
    return 2 * E.solution_classifier_guidance(model, classifier, schedule, x_t, t, labels, 0.0) - \
        E.solution_classifier_guidance(model, classifier, schedule, x_t, t, labels, s)


def _guidance_on_probabilities(model, classifier, schedule, x_t, t, labels, s):  # ∇p(y | x) instead of ∇log p
    eps = model(x_t, t).detach()
    x = x_t.detach().requires_grad_(True)
    p = classifier(x, t).softmax(-1)[torch.arange(len(labels)), labels]
    (grad,) = torch.autograd.grad(p.sum(), x)
    return eps - s * (1 - schedule.alphas_cumprod[t].reshape(-1, 1, 1, 1)).sqrt() * grad


def _last_step_with_wrapped_index(schedule):  # ᾱ_{t−1} at t = 0 read as alphas_cumprod[−1]
    a_t, a_prev = schedule.alphas_cumprod[0], schedule.alphas_cumprod[-1]
    beta = 1 - a_t / a_prev
    return float(a_prev.sqrt() * beta / (1 - a_t)), float((1 - beta).sqrt() * (1 - a_prev) / (1 - a_t))


WRONG = {
    "13_clip_loss": lambda img, txt, tau: torch.nn.functional.cross_entropy(img @ txt.T / tau, torch.arange(len(img))),
    "13_blind_clip_loss": lambda n: 1.0 / n,  # "the chance of the right caption", not its negative log
    "15_consistency_scalings": lambda sigma: (torch.ones_like(sigma), sigma),  # no boundary: f(x, σ_min) ≠ x
    "15_meanflow_jump": (0.4, 0.4),  # "one jump lands where one Euler step does"
    "14_patchify": lambda x, p: x.reshape(x.shape[0], -1, p * p * x.shape[1]),  # a plain reshape: patches scrambled
    "14_untrained_dit": 1.0,  # "about unit size, like the noise it is asked to predict"
    "16_unmask_step": lambda x, w, u, t, s: torch.where((x == 25) & (u < s / t), w, x),  # unmasks with the wrong share
    "16_stickers_left": 3.0,
    "00_static_share": lambda s: 1 - float(s.alphas_cumprod[300]) ** 0.5,  # the shares as halves of 1
    "00_cheat_eraser": _no_noise_eraser,
    "01_posterior_variance": _one_step_posterior_variance,
    "01_q_sample": lambda s, x0, t, noise: (s.alphas_cumprod[t].reshape(-1, 1, 1, 1) * x0
                                            + (1 - s.alphas_cumprod[t]).reshape(-1, 1, 1, 1) * noise),
    "02_cosine_schedule": _unshifted_cosine,
    "02_snr_one_step": lambda s: round(s.num_timesteps * (1 - 0.008) / 2),  # τ·T, the step's τ = (t + 1)/T forgotten
    "03_x0_error": lambda s, x0, eps, eps_hat, t: E.solution_x0_error(s, x0, eps, eps_hat, t) ** 0.5,  # no square
    "03_to_x0": lambda out, x_t, a, kind: E.solution_to_x0(out, x_t, a, "epsilon"),  # every output read as ε
    "04_lazy_eraser": lambda s, digits: 0.0,
    "04_tweedie": _unblurred_tweedie,
    "04_loss_floor": lambda a_bar, std: 0.0,  # "a perfect network makes no error"
    "05_last_step_weights": _last_step_with_wrapped_index,
    "06_ddim_as_ddpm": _ddim_weights_left_in_eps,
    "07_classifier_guidance": _guidance_uphill,
    "07_cfg_as_critic_scale": lambda s: s - 1,  # Ho & Salimans' w: the push on ε_c, not on ε_∅
    "10_shrunk_crowd_fid": lambda f: (1 + 0.5**2) * float(torch.cov(f.double().T).trace()),  # no cross term
    "12_reflow_two_atoms": lambda atoms, weights: (0.4, 0.5244),  # the 70 % quantile: the upper atom's share
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


@pytest.mark.parametrize("name, wrong", [
    ("01_posterior_variance", _wrapped_posterior_variance),
    ("04_tweedie", _tweedie_without_rescaling),
    ("04_loss_floor", lambda a_bar, std: 1 - E.solution_loss_floor(a_bar, std)),  # the explained part, not the rest
    ("06_ddim_as_ddpm", _ddim_weights_without_root),
    ("07_classifier_guidance", _guidance_on_probabilities),
    ("12_reflow_two_atoms", lambda atoms, weights: (0.0, -0.5244)),  # one step "lands on the static's mean"
    ("12_reflow_two_atoms", lambda atoms, weights: (0.4, 0.0)),  # "half the static goes to each atom"
])
def test_other_realistic_slips_fail(name, wrong):
    with pytest.raises(AssertionError, match="✗"):
        run_check(name, wrong)


@pytest.mark.parametrize("name", sorted(E.QUESTIONS))
def test_a_wrong_prediction_does_not_reveal_the_answer(name):
    with pytest.raises(AssertionError) as err:
        run_check(name, WRONG[name])
    assert "expected" not in str(err.value) and "library measures" in str(err.value)


def test_questions_follow_the_notebooks_parameters():
    """The SNR-1 step of a cosine schedule with another T, and reflow on other atoms, still check."""
    short = make_schedule("cosine", 50)
    assert E.check_snr_one_step(E.solution_snr_one_step(short), short) is True
    atoms, weights = (-2.0, 1.0), (0.6, 0.4)
    assert E.check_reflow_two_atoms(E.solution_reflow_two_atoms(atoms, weights), atoms, weights) is True


def test_a_question_answered_with_the_wrong_type_says_so():
    with pytest.raises(AssertionError, match="a pair"):
        E.check_reflow_two_atoms(0.4)
    with pytest.raises(AssertionError, match="a number"):
        E.check_static_share("half", make_schedule("cosine"))


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
