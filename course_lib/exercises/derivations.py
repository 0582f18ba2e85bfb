"""Short derivations the learner carries out and writes as a small function, checked numerically against
the library: the posterior variance of a jump (chapter 01), Tweedie's formula on a Gaussian (chapter 04),
DDIM at η = 1 written as DDPM's step (chapter 06), classifier guidance (chapter 07)."""

from __future__ import annotations

from typing import Any, Callable

import torch

from .core import compare_to, frozen_model, as_numbers, attempt


# ---------------------------------------------------------------------------- ch01: the posterior of a jump
def check_posterior_variance(fn: Callable[..., Any]) -> bool:
    """``fn(schedule, t, t_prev)`` → Var q(x_{t_prev} | x_t, x₀) for any earlier step t_prev < t (t_prev = −1:
    the clean picture, ᾱ = 1). Chapter 01, section 6 derives it for t_prev = t − 1 (Ho et al. 2020, eq. 7); a
    jump is one Gaussian step with α' = ᾱ_t/ᾱ_{t_prev}. Checked against :func:`course_lib.forward.posterior_between`
    on the linear and the cosine schedule, one-step and long jumps, and the jump to the clean end."""
    from ..forward import posterior_between
    from ..schedules import make_schedule

    def run() -> None:
        zero = torch.zeros(1, dtype=torch.float64)
        for name in ("linear", "cosine"):
            s = make_schedule(name)
            for t, t_prev in ((300, 299), (500, 450), (999, 0), (10, -1)):
                want = posterior_between(s, zero, zero, t, t_prev)[1].reshape(())
                case = f"{name}, t = {t} → {t_prev}" + (" (to the clean picture)" if t_prev < 0 else "")
                compare_to("posterior variance", case, fn(s, t, t_prev), want, atol=1e-7, rtol=1e-4)

    return attempt("the posterior variance of a jump", run,
                   "Write the jump t_prev → t as ONE step of static: what are its α and β?")


def solution_posterior_variance(schedule, t, t_prev):
    a_t = schedule.alphas_cumprod[t]
    a_prev = schedule.alphas_cumprod[t_prev] if t_prev >= 0 else torch.tensor(1.0)  # ᾱ_{−1} = 1: the clean end
    beta = 1 - a_t / a_prev  # the jump's β' (its α' = ᾱ_t/ᾱ_prev)
    return (1 - a_prev) / (1 - a_t) * beta


# ---------------------------------------------------------------------------- ch04: Tweedie on a Gaussian
def check_tweedie(fn: Callable[..., Any]) -> bool:
    """``fn(x_t, a_bar, mean, std)`` → E[x₀ | x_t] (N, 2) for data x₀ ~ N(mean, std² I), by Tweedie's formula
    E[x₀ | x_t] = (x_t + (1−ᾱ) ∇log p_t(x_t))/√ᾱ (Efron 2011; chapter 04, the score view) with the score of
    the blurred blob. Checked against :class:`course_lib.data.GaussianMixture` with one component."""
    from ..data import GaussianMixture

    def run() -> None:
        g = torch.Generator().manual_seed(41)
        for mean, std in (((0.5, -1.0), 0.5), ((-2.0, 0.3), 1.5)):
            blob = GaussianMixture(torch.tensor([mean]), std=std)
            for a_bar in (0.9, 0.3, 0.02):
                x_t = (a_bar**0.5 * blob.sample(64, generator=g).double()
                       + (1 - a_bar) ** 0.5 * torch.randn(64, 2, generator=g, dtype=torch.float64))
                got = fn(x_t, a_bar, torch.tensor(mean, dtype=torch.float64), std)
                compare_to("Tweedie's formula", f"data N({mean}, {std}²), ᾱ = {a_bar}", got, blob.denoise(x_t, a_bar),
                         atol=1e-6, rtol=1e-5)

    return attempt("Tweedie's formula on a Gaussian", run,
                   "First the blurred blob: where is its centre and what is its variance after noising?")


def solution_tweedie(x_t, a_bar, mean, std):
    var = a_bar * std**2 + 1 - a_bar  # noising N(m, s²) gives N(√ᾱ m, ᾱ s² + 1 − ᾱ)
    score = -(x_t - a_bar**0.5 * mean) / var  # ∇ log of that Gaussian
    return (x_t + (1 - a_bar) * score) / a_bar**0.5


# ---------------------------------------------------------------------------- ch06: DDIM at η = 1 is DDPM
def check_ddim_as_ddpm(fn: Callable[..., Any]) -> bool:
    """``fn(schedule, t, t_prev)`` → (w₀, w_t, σ): DDIM's η = 1 step (Song et al. 2021, eqs. 12 and 16) rewritten
    as w₀·x̂₀ + w_t·x_t + σ·z. Checked first against :func:`course_lib.samplers.ddim_step` (η = 1) on random
    inputs, then against DDPM's posterior between the two steps (:func:`course_lib.forward.posterior_between`):
    equal numbers are the derivation that DDIM at η = 1 is DDPM (chapter 06, section 2)."""
    from ..forward import posterior_between, predict_x0
    from ..samplers import ddim_step
    from ..schedules import make_schedule

    def run() -> None:
        s, g = make_schedule("cosine"), torch.Generator().manual_seed(61)
        worst = 0.0
        for t, t_prev in ((500, 450), (999, 949), (100, 99), (40, -1)):
            case = f"t = {t} → {t_prev}" + (" (to the clean picture, ᾱ = 1)" if t_prev < 0 else "")
            w0, wt, sigma = as_numbers("DDIM as DDPM", fn(s, t, t_prev), 3)
            eps, x_t, z = (torch.randn(2, 1, 8, 8, generator=g, dtype=torch.float64) for _ in range(3))
            x0_hat = predict_x0(s, eps, x_t, t).double()
            ddim = ddim_step(s, eps, t, t_prev, x_t, eta=1.0, noise=z).prev_sample
            compare_to("DDIM as DDPM", f"{case}: w₀·x̂₀ + w_t·x_t + σ·z against ddim_step(η = 1)",
                     w0 * x0_hat + wt * x_t + sigma * z, ddim, atol=1e-4)
            one, zero = torch.ones(1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
            want = torch.stack([posterior_between(s, one, zero, t, t_prev)[0][0], posterior_between(s, zero, one, t, t_prev)[0][0],
                                posterior_between(s, zero, zero, t, t_prev)[1].reshape(()).sqrt()]).double()
            compare_to("DDIM as DDPM", f"{case}: (w₀, w_t, σ) against DDPM's posterior", torch.stack([w0, wt, sigma]),
                     want, atol=1e-5)
            ddpm_mean, ddpm_var = posterior_between(s, x0_hat, x_t, t, t_prev)
            worst = max(worst, float((ddim - ddpm_mean - ddpm_var.sqrt() * z).abs().max()))
        print(f"  DDIM at η = 1 against DDPM's posterior step, same z: largest difference {worst:.1e}")

    return attempt("DDIM at η = 1 in DDPM's form", run,
                   "Start from DDIM's step and replace ε̂ by what it is in terms of x_t and x̂₀.")


def solution_ddim_as_ddpm(schedule, t, t_prev):
    a_t = schedule.alphas_cumprod[t].double()
    a_prev = schedule.alphas_cumprod[t_prev].double() if t_prev >= 0 else torch.tensor(1.0, dtype=torch.float64)
    sigma = ((1 - a_prev) / (1 - a_t)).sqrt() * (1 - a_t / a_prev).sqrt()  # eq. 16, η = 1
    keep = (1 - a_prev - sigma**2).clamp(min=0).sqrt()  # the weight of ε̂ in DDIM's step
    # ε̂ = (x_t − √ᾱ_t x̂₀)/√(1−ᾱ_t): the kept static is part x_t, part x̂₀
    return a_prev.sqrt() - keep * a_t.sqrt() / (1 - a_t).sqrt(), keep / (1 - a_t).sqrt(), sigma


# ---------------------------------------------------------------------------- ch07: classifier guidance
class _TinyCritic(torch.nn.Module):
    """A fixed, cheap noise-aware classifier ``critic(x_t, t)`` → logits over 10 labels, for the checks."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.head = torch.nn.Linear(4 * 4 * 4, 10)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        h = torch.nn.functional.avg_pool2d(torch.tanh(self.conv(x_t)), 2)  # (B, 4, 4, 4)
        return self.head(h.flatten(1)) * (2 - t.float().reshape(-1, 1) / 1000)  # surer at low noise


def check_classifier_guidance(fn: Callable[..., Any]) -> bool:
    """``fn(model, classifier, schedule, x_t, t, labels, s)`` → ε̂(x_t) − s·√(1−ᾱ_t)·∇log p_φ(y | x_t, t) for an
    ε-predicting ``model(x_t, t)`` and ``classifier(x_t, t)`` → logits (Dhariwal & Nichol 2021, §4.2; chapter 07,
    section 6). Checked against :func:`course_lib.guidance.classifier_guided_model` with small stand-in networks."""
    from ..guidance import classifier_guided_model
    from ..schedules import make_schedule
    from .sampling import TinyDenoiser

    def run() -> None:
        g = torch.Generator().manual_seed(71)
        s, model, critic = make_schedule("cosine"), frozen_model(TinyDenoiser, 0), frozen_model(_TinyCritic, 71)
        x_t, t, labels = torch.randn(3, 1, 8, 8, generator=g), torch.tensor([900, 500, 100]), torch.tensor([7, 0, 3])
        for scale in (0.0, 2.0, 5.0):
            want = classifier_guided_model(model, critic, s, scale, prediction_type="epsilon")(x_t, t, cond=labels)
            compare_to("classifier guidance", f"s = {scale}, one t per picture {t.tolist()}",
                     fn(model, critic, s, x_t, t, labels, scale), want, atol=1e-5)

    return attempt("classifier guidance", run,
                   "Three pieces: the model's ε̂, the critic's gradient of log p(y | x_t), and ᾱ_t of each picture.")


def solution_classifier_guidance(model, classifier, schedule, x_t, t, labels, s):
    with torch.no_grad():
        eps = model(x_t, t)
    x = x_t.detach().requires_grad_(True)
    log_p = classifier(x, t).log_softmax(dim=-1)[torch.arange(len(labels)), labels]  # log p(y_i | x_i), (B,)
    (grad,) = torch.autograd.grad(log_p.sum(), x)  # each picture's term depends on it alone
    a_bar = schedule.alphas_cumprod[t].reshape(-1, 1, 1, 1)
    return eps - s * (1 - a_bar).sqrt() * grad
