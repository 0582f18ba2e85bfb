"""Automatic checks for the exercises at the end of each chapter, and their reference solutions.

Two kinds of exercise:

- :func:`check` compares a value the learner computed with the expected one (the short questions).
- :func:`attempt` runs a *function the learner wrote* — a piece of the chapter's own algorithm
  (forward noising, a schedule, the training loss, a DDPM step, a DDIM step, a guided sampler, FID)
  — on test inputs and compares it with the library's own implementation. The learner's function
  starts as a stub that returns ``None`` ("not tried yet"): the check then prints where to start and
  the notebook still runs top to bottom. A wrong answer raises AssertionError saying *what* is off
  (shape, scale, which case fails), never the code.

The reference solutions are the ``solution_*`` functions below, out of the learner's way; the tests
(``tests/test_exercises.py``) run every one through its check, and a wrong answer through it too.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

# ============================================================================ value answers
def check(name: str, answer: Any, expected: Any, *, rtol: float = 1e-3, atol: float = 1e-4, hint: str = "") -> bool:
    """Compare ``answer`` with ``expected`` (numbers, tensors, or exact values).

    Returns False (after printing the hint) when ``answer`` is None, True when it matches, and
    raises AssertionError naming the exercise when it does not.
    """
    if answer is None:
        print(f"✎ {name}: not answered yet. {hint}".rstrip())
        return False
    if isinstance(expected, (int, float, torch.Tensor)) and not isinstance(expected, bool):
        got = torch.as_tensor(answer, dtype=torch.float64)
        want = torch.as_tensor(expected, dtype=torch.float64)
        ok = got.shape == want.shape and bool(torch.allclose(got, want, rtol=rtol, atol=atol))
    else:
        ok = answer == expected
    if not ok:
        raise AssertionError(f"✗ {name}: got {answer!r}, expected {expected!r}. {hint}".rstrip())
    print(f"✓ {name}: correct!")
    return True


# ============================================================================ function answers
class NotTried(Exception):
    """The learner's function returned None: the exercise has not been attempted yet."""


def _compare(name: str, case: str, got: Any, want: torch.Tensor, *, atol: float = 1e-4, rtol: float = 1e-4) -> None:
    """Raise a helpful AssertionError unless ``got`` is a tensor close to ``want``."""
    if got is None:
        raise NotTried
    if not isinstance(got, torch.Tensor):
        raise AssertionError(f"✗ {name} ({case}): your function returned a {type(got).__name__}, expected a tensor "
                             f"of shape {tuple(want.shape)}")
    got = got.detach().to("cpu", torch.float64)
    want = want.detach().to("cpu", torch.float64)
    if got.shape != want.shape:
        raise AssertionError(f"✗ {name} ({case}): shape {tuple(got.shape)}, expected {tuple(want.shape)}")
    if not torch.allclose(got, want, atol=atol, rtol=rtol):
        err = (got - want).abs()
        ratio = float((got * want).sum() / want.square().sum().clamp_min(1e-30))
        raise AssertionError(
            f"✗ {name} ({case}): largest difference {float(err.max()):.3g} (typical size of the right answer "
            f"{float(want.abs().mean()):.3g}); your answer ≈ {ratio:.3f} × the right one along its direction. "
            "Read the next hint.")


def attempt(name: str, run_check: Callable[[], None], first_hint: str = "") -> bool:
    """Run one function check: True if it passes, False (with a nudge) if the stub is still empty."""
    try:
        run_check()
    except NotTried:
        print(f"✎ {name}: not tried yet — your function returned None. {first_hint}".rstrip())
        return False
    print(f"✓ {name}: correct!")
    return True


# ---------------------------------------------------------------------------- ch00: the cheating eraser
def check_cheat_eraser(fn: Callable[..., Any]) -> bool:
    """``fn(schedule, x0, generator)`` → list of T+1 tensors: x_{T−1} (pure static), …, x_0, then the result.

    Checked statistically: the stop at t must look like the forward process at t (mean √ᾱ_t x₀,
    spread √(1−ᾱ_t)) and the last picture must be x₀ itself.
    """
    from .schedules import make_schedule

    def run() -> None:
        s = make_schedule("cosine", 100)
        x0 = torch.linspace(-1, 1, 4096).reshape(1, 1, 64, 64)
        frames = fn(s, x0, torch.Generator().manual_seed(0))
        if frames is None:
            raise NotTried
        if not isinstance(frames, (list, tuple)) or len(frames) != s.num_timesteps + 1:
            got = len(frames) if isinstance(frames, (list, tuple)) else type(frames).__name__
            raise AssertionError(f"✗ cheat eraser: return a list of T + 1 = {s.num_timesteps + 1} pictures "
                                 f"(the static, then one after every step), got {got}")
        _compare("cheat eraser", "the last picture", frames[-1], x0, atol=1e-3)
        for t in (80, 50, 20):
            x = frames[s.num_timesteps - 1 - t].double()  # frames[0] is x_{T−1}
            a = float(s.alphas_cumprod[t])
            resid = x - a**0.5 * x0.double()
            if abs(float(resid.mean())) > 0.1 or abs(float(resid.std()) - (1 - a) ** 0.5) > 0.1:
                raise AssertionError(
                    f"✗ cheat eraser: the picture after reaching t = {t} should be √ᾱ·x₀ plus static of spread "
                    f"{(1 - a) ** 0.5:.3f}, but its static has spread {float(resid.std()):.3f} and mean "
                    f"{float(resid.mean()):+.3f}. Did you add √β̃ · fresh noise after every step but the last?")

    return attempt("the cheating eraser", run, "Start from torch.randn and walk t from T−1 down to 0.")


def solution_cheat_eraser(schedule, x0, generator):
    from .forward import posterior_mean_variance

    x = torch.randn(x0.shape, generator=generator)
    frames = [x]
    for t in range(schedule.num_timesteps - 1, -1, -1):
        mean, var = posterior_mean_variance(schedule, x0, x, t)
        x = mean + var.sqrt() * torch.randn(x.shape, generator=generator) if t > 0 else mean
        frames.append(x)
    return frames


# ---------------------------------------------------------------------------- ch01: closed-form noising
def check_q_sample(fn: Callable[..., Any]) -> bool:
    """``fn(schedule, x0, t, noise)`` → x_t = √ᾱ_t x₀ + √(1−ᾱ_t) ε, one t per batch item."""
    from .schedules import make_schedule

    def run() -> None:
        g = torch.Generator().manual_seed(1)
        for name in ("linear", "cosine"):
            s = make_schedule(name)
            x0, noise = torch.rand(4, 3, 8, 8, generator=g) * 2 - 1, torch.randn(4, 3, 8, 8, generator=g)
            t = torch.tensor([0, 10, 500, 999])
            _compare("closed-form noising", f"{name} schedule, t = {t.tolist()}", fn(s, x0, t, noise),
                     s.add_noise(x0, noise, t), atol=1e-5)

    return attempt("closed-form noising", run, "Look up ᾱ_t for each picture, then mix x₀ and ε.")


def solution_q_sample(schedule, x0, t, noise):
    a_bar = schedule.alphas_cumprod[t]  # (B,)
    a_bar = a_bar.reshape(-1, *([1] * (x0.dim() - 1)))  # (B, 1, 1, 1) to broadcast over the pixels
    return a_bar.sqrt() * x0 + (1 - a_bar).sqrt() * noise


# ---------------------------------------------------------------------------- ch02: the cosine schedule
def check_cosine_schedule(fn: Callable[..., Any]) -> bool:
    """``fn(T)`` → ᾱ_t for t = 0 … T−1 of the cosine schedule (Nichol & Dhariwal 2021, eq. 17)."""
    from .schedules import make_schedule

    def run() -> None:
        for T in (1000, 50):
            want = make_schedule("cosine", T).alphas_cumprod
            got = fn(T)
            if got is None:
                raise NotTried
            got = torch.as_tensor(got)
            if got.shape == want.shape and abs(float(got[0]) - 1.0) < 1e-9:
                raise AssertionError("✗ cosine schedule: your ᾱ_0 is exactly 1 — that is f(0)/f(0), the clean "
                                     "picture. In the course's 0-based counting step 0 already adds noise.")
            _compare("cosine schedule", f"T = {T}", got, want, atol=2e-5, rtol=1e-4)

    return attempt("cosine schedule", run, "Write f(τ) first, then divide.")


def solution_cosine_schedule(T):
    import math

    def f(tau):
        return math.cos((tau + 0.008) / 1.008 * math.pi / 2) ** 2

    return torch.tensor([f((t + 1) / T) / f(0) for t in range(T)])


# ---------------------------------------------------------------------------- ch03: reading the output
def check_to_x0(fn: Callable[..., Any]) -> bool:
    """``fn(model_output, x_t, a_bar, prediction_type)`` → x̂₀ for "epsilon", "sample" and "v_prediction"."""
    from .forward import split_prediction_at

    def run() -> None:
        g = torch.Generator().manual_seed(2)
        out, x_t = torch.randn(2, 1, 8, 8, generator=g), torch.randn(2, 1, 8, 8, generator=g)
        for kind in ("epsilon", "sample", "v_prediction"):
            for a_bar in (0.9, 0.3):
                want = split_prediction_at(torch.tensor(a_bar), out, x_t, kind).x0
                _compare("reading the output", f"{kind}, ᾱ = {a_bar}", fn(out, x_t, torch.tensor(a_bar), kind), want)

    return attempt("reading the output as x̂₀", run, "Solve x_t = √ᾱ x₀ + √(1−ᾱ) ε for x₀, one type at a time.")


def solution_to_x0(model_output, x_t, a_bar, prediction_type):
    if prediction_type == "epsilon":
        return (x_t - (1 - a_bar).sqrt() * model_output) / a_bar.sqrt()
    if prediction_type == "sample":
        return model_output
    return a_bar.sqrt() * x_t - (1 - a_bar).sqrt() * model_output  # v = √ᾱ ε − √(1−ᾱ) x₀


# ---------------------------------------------------------------------------- ch04: the training loss
class _TinyDenoiser(torch.nn.Module):
    """A fixed, cheap network ``model(x_t, t)`` for the checks: one conv whose output depends on t."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x_t) * (1 + t.float().reshape(-1, 1, 1, 1) / 1000)
        if cond is not None:
            out = out + 0.1 * cond.float().reshape(-1, 1, 1, 1)
        return out


def check_training_loss(fn: Callable[..., Any]) -> bool:
    """``fn(model, schedule, x0, t, noise)`` → the scalar ε-prediction loss of one batch (Ho et al. L_simple)."""
    from .schedules import make_schedule
    from .training import diffusion_loss

    def run() -> None:
        g = torch.Generator().manual_seed(3)
        s, net = make_schedule("cosine"), _TinyDenoiser()
        x0, noise = torch.rand(8, 1, 8, 8, generator=g) * 2 - 1, torch.randn(8, 1, 8, 8, generator=g)
        t = torch.randint(1000, (8,), generator=g)
        got = fn(net, s, x0, t, noise)
        if got is not None and (not isinstance(got, torch.Tensor) or got.dim() != 0):
            raise AssertionError("✗ training loss: return ONE number per batch (a 0-d tensor): average over "
                                 "pixels and pictures")
        if got is not None and not got.requires_grad:
            raise AssertionError("✗ training loss: the loss has no gradient — compute it with torch, from the "
                                 "model's output, without .item() or torch.no_grad()")
        _compare("training loss", "a batch of 8", got, diffusion_loss(net, s, x0, t, noise), atol=1e-6)

    return attempt("the training loss", run, "Make x_t first, then ask the model, then compare with the noise.")


def solution_training_loss(model, schedule, x0, t, noise):
    a_bar = schedule.alphas_cumprod[t].reshape(-1, 1, 1, 1)
    x_t = a_bar.sqrt() * x0 + (1 - a_bar).sqrt() * noise
    eps_hat = model(x_t, t)
    return (eps_hat - noise).square().mean()


# ---------------------------------------------------------------------------- ch05: one DDPM step
def check_ddpm_step(fn: Callable[..., Any]) -> bool:
    """``fn(schedule, eps_hat, t, x_t, z)`` → x_{t−1} of Ho et al.'s Algorithm 2, x̂₀ clamped to [−1, 1]."""
    from .samplers import ddpm_step
    from .schedules import make_schedule

    def run() -> None:
        g = torch.Generator().manual_seed(4)
        s = make_schedule("cosine")
        for t in (700, 100, 1, 0):
            eps, x_t, z = (torch.randn(2, 1, 8, 8, generator=g) for _ in range(3))
            want = ddpm_step(s, eps, t, x_t, noise=z).prev_sample
            _compare("DDPM step", f"t = {t}" + (" (the last step: no fresh noise)" if t == 0 else ""),
                     fn(s, eps, t, x_t, z), want, atol=1e-4)

    return attempt("one DDPM step", run, "Three pieces: the guess x̂₀, the posterior mean and variance, the noise.")


def solution_ddpm_step(schedule, eps_hat, t, x_t, z):
    a_t = schedule.alphas_cumprod[t]
    a_prev = schedule.alphas_cumprod[t - 1] if t > 0 else torch.tensor(1.0)
    beta = 1 - a_t / a_prev
    x0_hat = ((x_t - (1 - a_t).sqrt() * eps_hat) / a_t.sqrt()).clamp(-1, 1)
    mean = a_prev.sqrt() * beta / (1 - a_t) * x0_hat + (1 - beta).sqrt() * (1 - a_prev) / (1 - a_t) * x_t
    var = (1 - a_prev) / (1 - a_t) * beta
    return mean + var.sqrt() * z if t > 0 else mean


# ---------------------------------------------------------------------------- ch06: one DDIM step
def check_ddim_step(fn: Callable[..., Any]) -> bool:
    """``fn(schedule, eps_hat, t, t_prev, x_t)`` → x_{t_prev} of deterministic DDIM (η = 0); t_prev = −1: clean."""
    from .samplers import ddim_step
    from .schedules import make_schedule

    def run() -> None:
        g = torch.Generator().manual_seed(5)
        s = make_schedule("cosine")
        for t, t_prev in ((999, 949), (500, 450), (100, 0), (49, -1)):
            eps, x_t = torch.randn(2, 1, 8, 8, generator=g), torch.randn(2, 1, 8, 8, generator=g)
            want = ddim_step(s, eps, t, t_prev, x_t).prev_sample
            _compare("DDIM step", f"t = {t} → {t_prev}" + (" (to the clean picture, ᾱ = 1)" if t_prev < 0 else ""),
                     fn(s, eps, t, t_prev, x_t), want, atol=1e-3, rtol=1e-4)

    return attempt("one DDIM step", run, "Guess x̂₀, then rebuild x at the lower noise level with the SAME ε̂.")


def solution_ddim_step(schedule, eps_hat, t, t_prev, x_t):
    a_t = schedule.alphas_cumprod[t]
    a_prev = schedule.alphas_cumprod[t_prev] if t_prev >= 0 else torch.tensor(1.0)
    x0_hat = (x_t - (1 - a_t).sqrt() * eps_hat) / a_t.sqrt()
    return a_prev.sqrt() * x0_hat + (1 - a_prev).sqrt() * eps_hat


# ---------------------------------------------------------------------------- ch07: a guided sampler
def check_cfg_sampler(fn: Callable[..., Any]) -> bool:
    """``fn(model, schedule, labels, s, x_T, num_steps)`` → images: DDIM (η = 0, trailing steps, x̂₀ clamped)
    with classifier-free guidance ε̃ = ε_∅ + s (ε_c − ε_∅), labels −1 meaning "no label"."""
    from .samplers import sample
    from .schedules import make_schedule

    def run() -> None:
        g = torch.Generator().manual_seed(6)
        s, model = make_schedule("cosine"), _TinyDenoiser()  # a cheap stand-in network whose output depends on the label
        labels, x_T = torch.tensor([0, 1, 5]), torch.randn(3, 1, 8, 8, generator=g)
        for scale in (1.0, 3.0):
            want = sample(model, s, x_T.shape, cond=labels, guidance_scale=scale, noise=x_T, num_steps=5,
                          sampler="ddim", spacing="trailing", clip_sample=True, progress=False)
            _compare("guided sampler", f"s = {scale}, 5 steps", fn(model, s, labels, scale, x_T, 5), want, atol=1e-3)

    return attempt("a guided sampler", run, "Reuse the DDIM loop; only the network's answer changes.")


def solution_cfg_sampler(model, schedule, labels, s, x_T, num_steps):
    from .samplers import ddim_step, timesteps

    ts = timesteps(schedule.num_timesteps, num_steps, "trailing").tolist() + [-1]
    x, empty = x_T, torch.full_like(labels, -1)
    with torch.no_grad():
        for t, t_prev in zip(ts[:-1], ts[1:]):
            tt = torch.full((x.shape[0],), t)
            eps_c, eps_0 = model(x, tt, cond=labels), model(x, tt, cond=empty)
            x = ddim_step(schedule, eps_0 + s * (eps_c - eps_0), t, t_prev, x, clip_sample=True).prev_sample
    return x


# ---------------------------------------------------------------------------- ch08: guidance with a prompt
def check_prompt_guidance(fn: Callable[..., Any], model: Any, x_t: torch.Tensor, t: torch.Tensor,
                          ids: torch.Tensor, ids_empty: torch.Tensor) -> bool:
    """``fn(model, x_t, t, ids, ids_empty, s)`` → ε̃ (or ṽ) = out_∅ + s (out_c − out_∅) for a prompt."""
    from .guidance import cfg_model

    def run() -> None:
        for scale in (3.0, 0.0):
            with torch.no_grad():
                want = cfg_model(model, scale)(x_t, t, cond=ids)
                got = fn(model, x_t, t, ids, ids_empty, scale)
            _compare("prompt guidance", f"s = {scale}", got, want, atol=1e-4)

    return attempt("guidance with a prompt", run, "Two calls of the model, then chapter 07's formula.")


def solution_prompt_guidance(model, x_t, t, ids, ids_empty, s):
    with torch.no_grad():
        out_c = model(x_t, t, cond=ids)
        out_0 = model(x_t, t, cond=ids_empty)
    return out_0 + s * (out_c - out_0)


# ---------------------------------------------------------------------------- ch10: FID from features
def check_fid(fn: Callable[..., Any], real: torch.Tensor | None = None, fake: torch.Tensor | None = None) -> bool:
    """``fn(f_real, f_fake)`` → the Fréchet distance between Gaussians fitted to two (N, d) feature sets,
    checked against :func:`course_lib.metrics.fid` on the same pictures (default: 200 real test digits
    against 200 of them with static added)."""
    from .data import load_mnist5000
    from .metrics import digit_features, fid

    def run() -> None:
        nonlocal real, fake
        if real is None or fake is None:
            test = load_mnist5000("test").images
            g = torch.Generator().manual_seed(7)
            real, fake = test[:200], (test[200:400] + 0.3 * torch.randn(200, 1, 32, 32, generator=g)).clamp(-1, 1)
        got = fn(digit_features(real).double(), digit_features(fake).double())
        if got is None:
            raise NotTried
        want = fid(real, fake)
        if not isinstance(got, (int, float, torch.Tensor)) or torch.as_tensor(got).numel() != 1:
            raise AssertionError(f"✗ FID: return one number, got {type(got).__name__}")
        got = float(got)
        if abs(got - want) > 1e-3 * max(1.0, abs(want)):
            mean_only = float((digit_features(real).double().mean(0) - digit_features(fake).double().mean(0)).square().sum())
            clue = (" That is the mean term alone: add the covariance term." if abs(got - mean_only) < 1e-3 * max(1, mean_only)
                    else " Check the covariances (divide by N − 1) and the matrix square root of Σ_r Σ_f.")
            raise AssertionError(f"✗ FID: got {got:.4f}, expected {want:.4f}.{clue}")

    return attempt("FID from features", run, "Two means, two covariances, then the formula of section 4.")


def solution_fid(f_real, f_fake):
    mu_r, mu_f = f_real.mean(0), f_fake.mean(0)
    cov_r, cov_f = torch.cov(f_real.T), torch.cov(f_fake.T)
    eig = torch.linalg.eigvals(cov_r @ cov_f)  # Tr (Σ_r Σ_f)^{1/2} = Σ √λ_i of the product
    return float((mu_r - mu_f).square().sum() + cov_r.trace() + cov_f.trace() - 2 * eig.sqrt().real.sum())


#: every function exercise: chapter → (check, reference solution)
# ---------------------------------------------------------------------------- ch11: cross-attention weights
def check_cross_attention(fn: Callable[..., Any]) -> bool:
    """``fn(q, k, mask)`` → softmax(q kᵀ/√d) over the words, padding words at weight 0 (B, heads, P, L)."""
    from .models.cross_attention import cross_attention_weights

    def run() -> None:
        g = torch.Generator().manual_seed(11)
        for d, words, case in ((8, 3, "three words, then padding"), (32, 5, "wider heads (√d matters more)")):
            q, k = torch.randn(2, 2, 6, d, generator=g), torch.randn(2, 2, 7, d, generator=g)
            mask = torch.arange(7)[None, :] < torch.tensor([[words], [1]])  # the second prompt has one word
            _compare("cross-attention weights", case, fn(q, k, mask), cross_attention_weights(q, k, mask), atol=1e-5)

    return attempt("cross-attention weights", run, "Scores q·kᵀ/√d, padding to −∞, softmax over the words.")


def solution_cross_attention(q, k, mask):
    scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5  # (B, heads, P, L)
    return scores.masked_fill(~mask[:, None, None, :], float("-inf")).softmax(dim=-1)


EXERCISES: dict[str, tuple[Callable[..., bool], Callable[..., Any]]] = {
    "00_cheat_eraser": (check_cheat_eraser, solution_cheat_eraser),
    "01_q_sample": (check_q_sample, solution_q_sample),
    "02_cosine_schedule": (check_cosine_schedule, solution_cosine_schedule),
    "03_to_x0": (check_to_x0, solution_to_x0),
    "04_training_loss": (check_training_loss, solution_training_loss),
    "05_ddpm_step": (check_ddpm_step, solution_ddpm_step),
    "06_ddim_step": (check_ddim_step, solution_ddim_step),
    "07_cfg_sampler": (check_cfg_sampler, solution_cfg_sampler),
    "08_prompt_guidance": (check_prompt_guidance, solution_prompt_guidance),
    "10_fid": (check_fid, solution_fid),
    "11_cross_attention": (check_cross_attention, solution_cross_attention),
}


def flow_euler_solution(model: Any, noise: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """Chapter 12's exercise, solved: Euler steps x ← x + (t' − t)·v(x, t·1000) down the grid ``sigmas``."""
    x = noise
    for i in range(len(sigmas) - 1):
        t = torch.full((x.shape[0],), float(sigmas[i]) * 1000)  # the network's time: t·1000
        x = x + (sigmas[i + 1] - sigmas[i]) * model(x, t)
    return x


def negative_elbo_solution(x, encode, decode, eps, decoder_std, beta):
    """Chapter 09's exercise, solved: reparameterise z = μ + σ ε, then reconstruction + β·KL per picture (nats)."""
    import math

    mu, logvar = encode(x)
    z = mu + torch.exp(0.5 * logvar) * eps  # σ = exp(½ log σ²)
    d = x[0].numel()
    recon = (x - decode(z)).pow(2).flatten(1).sum(1) / (2 * decoder_std**2) + d * math.log(decoder_std * math.sqrt(2 * math.pi))
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)
    return recon + beta * kl
