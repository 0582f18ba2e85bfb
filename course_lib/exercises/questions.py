"""Predict-then-run questions and numeric derivations: the learner writes a number (or a pair), the check
compares it with what the library computes or measures, then shows the measurement.

Each question is a pair ``check_x(answer, *inputs)`` / ``solution_x(*inputs)``: the solution carries the
reasoning (a formula), the check runs the library — they meet only if the reasoning is right.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from .core import check


def _answer(name: str, answer: Any, expected: Any, measured: str, **kwargs: Any) -> bool:
    """:func:`check` without revealing the expected value, then (when right) the measurement that confirms it."""
    ok = check(name, answer, expected, reveal=False, **kwargs)
    if ok and measured:
        print(f"  {measured}")
    return ok


# ---------------------------------------------------------------------------- ch00: the static's share
def check_static_share(answer: Any, schedule: Any, t: int = 300) -> bool:
    """The static's share √(1−ᾱ_t) of the noisy picture at step ``t``, predicted from the cat's share √ᾱ_t
    (Ho et al. 2020, eq. 4; chapter 00, section 1)."""
    a_bar = float(schedule.alphas_cumprod[t])
    return _answer(f"the static's share at t = {t}", answer, (1 - a_bar) ** 0.5,
                   f"the cat's share {a_bar ** 0.5:.4f} and the static's {(1 - a_bar) ** 0.5:.4f}: their squares add up to "
                   f"{a_bar + (1 - a_bar):.4f}", rtol=2e-3,
                   hint="The mix keeps the picture's overall spread the same at every t. What adds up then, the shares "
                        "or something else?")


def solution_static_share(schedule, t=300):
    cat_share = float(schedule.alphas_cumprod[t]) ** 0.5
    return (1 - cat_share**2) ** 0.5  # the variances add up to 1, not the shares


# ---------------------------------------------------------------------------- ch02: where SNR is 1
def check_snr_one_step(answer: Any, schedule: Any) -> bool:
    """The step t whose SNR(t) = ᾱ_t/(1−ᾱ_t) is closest to 1, for the cosine ``schedule`` (Nichol & Dhariwal
    2021, eq. 17; chapter 02): measured on the schedule itself."""
    log_snr = schedule.log_snr(torch.arange(schedule.num_timesteps)).double()
    t = int(log_snr.abs().argmin())
    snr = [f"SNR({u}) = {float(log_snr[u].exp()):.4f}" for u in (t - 1, t, t + 1) if 0 <= u < schedule.num_timesteps]
    return _answer("the step where SNR = 1", answer, t, "measured: " + ", ".join(snr), rtol=0.0, atol=0.5,
                   hint="SNR 1 means as much picture as static: which ᾱ is that, and which angle of the cosine? Then "
                        "mind the small offset s and where step t sits on the τ axis.")


def solution_snr_one_step(schedule):
    # ᾱ = ½ ⇔ cos²((τ + s)/(1 + s)·π/2) = ½·f(0) ≈ ½ ⇔ (τ + s)/(1 + s) = ½ ⇔ τ = (1 − s)/2; step t sits at τ = (t + 1)/T
    s = 0.008
    return round(schedule.num_timesteps * (1 - s) / 2 - 1)


# ---------------------------------------------------------------------------- ch03: how an ε error moves x̂₀
def check_x0_error(answer: Any, schedule: Any, x0: torch.Tensor, eps: torch.Tensor, eps_hat: torch.Tensor,
                   t: int) -> bool:
    """The mean squared error of x̂₀ read from the guess ``eps_hat`` of the static ``eps`` at step ``t``,
    predicted from the guess's own error (Salimans & Ho 2022, §4; chapter 03, section 4): measured with
    :func:`course_lib.forward.predict_x0`."""
    from ..forward import predict_x0

    x_t = schedule.add_noise(x0, eps, torch.tensor([t]))
    x0_hat = predict_x0(schedule, eps_hat, x_t, t)
    mse_x0 = float((x0_hat.double() - x0.double()).square().mean())
    mse_eps = float((eps_hat.double() - eps.double()).square().mean())
    return _answer(f"the error of x̂₀ at t = {t}", answer, mse_x0,
                   f"measured: static guess off by {mse_eps:.3f}, picture guess off by {mse_x0:.3f} (mean squared)",
                   rtol=1e-2, hint="Section 4 says by how much an output error δ moves x̂₀. Here you know a mean "
                                   "*squared* error.")


def solution_x0_error(schedule, x0, eps, eps_hat, t):
    a_bar = float(schedule.alphas_cumprod[t])
    mse_eps = float((eps_hat - eps).square().mean())
    return mse_eps * (1 - a_bar) / a_bar  # δ moves x̂₀ by δ·√((1−ᾱ)/ᾱ): squared, the factor is (1−ᾱ)/ᾱ


# ---------------------------------------------------------------------------- ch04: the lazy eraser
def check_lazy_eraser(answer: Any, schedule: Any, digits: torch.Tensor) -> bool:
    """The L_simple loss (Ho et al. 2020, eq. 14; chapter 04) of a network that always answers ε̂ = 0,
    measured on 512 noisy digits."""
    from ..objectives import diffusion_loss

    g = torch.Generator().manual_seed(7)
    x0 = digits[torch.randint(len(digits), (512,), generator=g)]
    t = torch.randint(schedule.num_timesteps, (512,), generator=g)
    lazy = float(diffusion_loss(lambda x_t, tt: torch.zeros_like(x_t), schedule, x0, t, torch.randn(x0.shape, generator=g)))
    return _answer("loss of the lazy eraser", answer, lazy, f"measured on 512 noisy digits: {lazy:.3f}", rtol=0.05,
                   hint="The loss averages (0 − ε)² over all pixels. What is the average of ε² for ε ~ N(0, 1)?")


def solution_lazy_eraser(schedule, digits):
    return 1.0  # E[(0 − ε)²] = Var ε = 1, whatever the picture and the step


# ---------------------------------------------------------------------------- ch04: the floor of the loss
def check_loss_floor(answer: Any, a_bar: float, std: float) -> bool:
    """The smallest possible L_simple at one noise level ᾱ when the data are one round blob N(0, std² I):
    the loss of the exact ε̂ = −√(1−ᾱ) ∇log p_t (Vincent 2011; Song & Ermon 2019; chapter 04, the score view),
    measured by Monte Carlo."""
    from ..data import GaussianMixture

    a_bar = float(a_bar)
    blob, g = GaussianMixture(torch.zeros(1, 2), std=std), torch.Generator().manual_seed(42)
    eps = torch.randn(400_000, 2, generator=g, dtype=torch.float64)
    x_t = a_bar**0.5 * blob.sample(400_000, generator=g).double() + (1 - a_bar) ** 0.5 * eps
    best = -(1 - a_bar) ** 0.5 * blob.score(x_t, a_bar)  # E[ε | x_t]: the best possible guess
    floor = float((best - eps).square().mean())
    return _answer("the loss of a perfect eraser", answer, floor,
                   f"measured: the exact score's guess scores {floor:.4f} on 400,000 noisy points", rtol=0.02,
                   hint="The best guess is E[ε | x_t]; what is left is how much ε still varies once x_t is known. "
                        "x_t and ε are jointly Gaussian here.")


def solution_loss_floor(a_bar, std):
    signal = a_bar * std**2  # x_t = √ᾱ x₀ + √(1−ᾱ) ε has variance ᾱs² + (1−ᾱ), of which 1−ᾱ is shared with ε
    return signal / (signal + 1 - a_bar)  # Var(ε | x_t) = 1 − (1−ᾱ)/(ᾱs² + 1 − ᾱ)


# ---------------------------------------------------------------------------- ch05: the last step
def check_last_step_weights(answer: Any, schedule: Any) -> bool:
    """(weight of x̂₀, weight of x_t) in the posterior mean μ̃_0 of the last DDPM step, t = 0 (Ho et al. 2020,
    eq. 7; chapter 05): read off :func:`course_lib.forward.posterior_mean_variance` with unit inputs."""
    from ..forward import posterior_mean_variance

    one, zero = torch.ones(1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
    weights = torch.stack([posterior_mean_variance(schedule, one, zero, 0)[0][0],
                           posterior_mean_variance(schedule, zero, one, 0)[0][0]]).double()
    return _answer("the weights of the last step", answer, weights, "", atol=1e-4,
                   hint="Answer a pair (weight of x̂₀, weight of x_t). At t = 0 the step before is the clean picture: "
                        "what is ᾱ there, and what does that do to each factor of μ̃?")


def solution_last_step_weights(schedule):
    return (1.0, 0.0)  # ᾱ_{−1} = 1: β_0 = 1 − ᾱ_0 makes x̂₀'s factor 1, and 1 − ᾱ_{−1} = 0 removes x_t


# ---------------------------------------------------------------------------- ch07: CFG as a critic's push
def check_cfg_as_critic_scale(answer: Any, s: float = 3.0) -> bool:
    """The scale λ at which classifier guidance on the *unconditional* prediction, ε_∅ − λ√(1−ᾱ)∇log p(y | x_t),
    equals CFG at scale ``s`` when the classifier is the implicit one (Ho & Salimans 2022, §3.2; chapter 07):
    fitted on the mixture of Gaussians, whose scores and classifier are exact."""
    from ..data import GaussianMixture

    mixture, g = GaussianMixture(), torch.Generator().manual_seed(72)
    along, size = 0.0, 0.0
    for a in (0.9, 0.5, 0.1):
        x = (a**0.5 * mixture.sample(256, generator=g) + (1 - a) ** 0.5 * torch.randn(256, 2, generator=g)).double()
        k = torch.randint(6, (256,), generator=g)
        eps_c, eps_0 = -(1 - a) ** 0.5 * mixture.class_score(x, a, k), -(1 - a) ** 0.5 * mixture.score(x, a)
        x_var = x.clone().requires_grad_(True)
        log_p = mixture.class_posterior(x_var, a).clamp_min(1e-300).log()[torch.arange(256), k].sum()
        push = -(1 - a) ** 0.5 * torch.autograd.grad(log_p, x_var)[0]  # the critic's push at scale 1
        cfg = eps_0 + s * (eps_c - eps_0)
        along, size = along + float(((cfg - eps_0) * push).sum()), size + float(push.square().sum())
    return _answer(f"the critic's scale that is CFG at s = {s:g}", answer, along / size, "", atol=1e-3,
                   hint="Section 6's critic pushes the unconditional prediction ε_∅. Write CFG as ε_∅ plus something, "
                        "and the something with the implicit classifier's gradient.")


def solution_cfg_as_critic_scale(s=3.0):
    return s  # ε_∅ + s(ε_c − ε_∅) and ε_c − ε_∅ = −√(1−ᾱ)∇log p(y | x_t): the push on ε_∅ has scale s itself


# ---------------------------------------------------------------------------- ch10: a crowd with too little variety
def check_shrunk_crowd_fid(answer: Any, features: torch.Tensor, c: float = 0.5) -> bool:
    """FID (Heusel et al. 2017, eq. 6; chapter 10) between real ``features`` (N, d) and the same crowd pulled
    towards its mean, μ + c(f − μ): computed by :func:`course_lib.metrics.fid` on the two feature sets."""
    from ..metrics import fid

    f = features.double()
    shrunk = f.mean(0) + c * (f - f.mean(0))
    value = fid(f, shrunk, features=torch.nn.Identity())
    return _answer(f"FID of the crowd pulled to {c:g} × its spread", answer, value,
                   f"measured by metrics.fid: {value:.4f}", rtol=5e-3,
                   hint="Same mean, so only the trace term is left. Σ_f is a multiple of Σ_r: what is (Σ_r Σ_f)^½ then? "
                        "Estimate covariances dividing by N − 1, as FID does.")


def solution_shrunk_crowd_fid(features, c=0.5):
    total_variance = float(torch.cov(features.double().T).trace())  # Tr Σ_r
    return (1 - c) ** 2 * total_variance  # Tr(Σ + c²Σ − 2cΣ): Σ_f = c²Σ_r, so (Σ_r Σ_f)^½ = cΣ_r


# ---------------------------------------------------------------------------- ch12: reflow in one dimension
def _atoms_velocity(atoms: torch.Tensor, weights: torch.Tensor):
    """The exact marginal velocity v*(x, t) = E[ε − x₀ | x_t = x] for data on a few atoms (chapter 12, section 1)."""
    def velocity(x: torch.Tensor, t: torch.Tensor, cond: Any = None) -> torch.Tensor:
        tt = (torch.as_tensor(t, dtype=x.dtype) / 1000).clamp(min=1e-4).reshape(-1, 1)
        post = (weights.log() - (x - (1 - tt) * atoms) ** 2 / (2 * tt**2)).softmax(dim=1)  # P(x₀ = a | x_t = x)
        return (post * (x - atoms) / tt).sum(dim=1, keepdim=True)

    return velocity


def check_reflow_two_atoms(answer: Any, atoms: Sequence[float] = (-1.0, 1.0),
                           weights: Sequence[float] = (0.3, 0.7)) -> bool:
    """``answer = (where one Euler step of the exact flow lands, the static z* where the reflow pairs switch
    from the lower atom to the upper one)`` for data on two atoms (Liu et al. 2023, §2.2; chapter 12, section 6):
    both measured by running the exact velocity through :func:`course_lib.flow.sample_flow`."""
    from ..flow import sample_flow

    a, w = torch.as_tensor(atoms, dtype=torch.float64), torch.as_tensor(weights, dtype=torch.float64)
    velocity = _atoms_velocity(a, w)
    z = torch.linspace(-3, 3, 3001, dtype=torch.float64)[:, None]  # sorted static
    lands = float(sample_flow(velocity, z.shape, num_steps=1, noise=z).mean())
    ends = sample_flow(velocity, z.shape, sampler="heun", num_steps=200, noise=z)[:, 0]
    boundary = float(z[int((ends > float(a.mean())).nonzero()[0])])  # the first static that ends at the upper atom
    pair = "Answer a pair: (where ONE Euler step of the base flow lands, the static z* where reflow's pairs switch atoms)."
    if answer is None:
        return check("reflow in one dimension", None, 0.0, hint=pair)
    if not isinstance(answer, (tuple, list)) or len(answer) != 2:
        raise AssertionError(f"✗ reflow in one dimension: got {answer!r}. {pair}")
    ok = check("one Euler step of the base flow", answer[0], lands, atol=1e-3, reveal=False,
               hint="At t = 1 the point is pure static, whatever picture it will become: what is the best guess of "
                    "ε − x₀ there?")
    ok = check("where reflow's pairs switch atoms", answer[1], boundary, atol=0.02, reveal=False,
               hint="In one dimension two walks of the ODE never swap order. Which share of the static must end on "
                    "the lower atom?") and ok
    if ok:
        print(f"  measured: every static lands on {lands:.3f} after one step; walked to the end, static below "
              f"{boundary:.3f} ends at {float(a[0]):g}, above it at {float(a[1]):g}")
    return ok


def solution_reflow_two_atoms(atoms=(-1.0, 1.0), weights=(0.3, 0.7)):
    mean = sum(a * w for a, w in zip(atoms, weights))  # v*(x, 1) = x − E[x₀]: one step lands on the data's mean
    lower = weights[0] if atoms[0] < atoms[1] else weights[1]
    boundary = float(torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(lower)))  # order kept: quantiles match
    return mean, boundary
