"""Function exercises of chapters 04–08: the training loss, one DDPM step, one DDIM step, a guided
sampler, guidance with a prompt."""

from __future__ import annotations

from typing import Any, Callable

import torch

from .core import compare_to, attempt


# ---------------------------------------------------------------------------- ch04: the training loss
class TinyDenoiser(torch.nn.Module):
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
    from ..schedules import make_schedule
    from ..objectives import diffusion_loss

    def run() -> None:
        g = torch.Generator().manual_seed(3)
        s, net = make_schedule("cosine"), TinyDenoiser()
        x0, noise = torch.rand(8, 1, 8, 8, generator=g) * 2 - 1, torch.randn(8, 1, 8, 8, generator=g)
        t = torch.randint(1000, (8,), generator=g)
        got = fn(net, s, x0, t, noise)
        if got is not None and (not isinstance(got, torch.Tensor) or got.dim() != 0):
            raise AssertionError("✗ training loss: return ONE number per batch (a 0-d tensor): average over "
                                 "pixels and pictures")
        if got is not None and not got.requires_grad:
            raise AssertionError("✗ training loss: the loss has no gradient — compute it with torch, from the "
                                 "model's output, without .item() or torch.no_grad()")
        compare_to("training loss", "a batch of 8", got, diffusion_loss(net, s, x0, t, noise), atol=1e-6)

    return attempt("the training loss", run, "Make x_t first, then ask the model, then compare with the noise.")


def solution_training_loss(model, schedule, x0, t, noise):
    a_bar = schedule.alphas_cumprod[t].reshape(-1, 1, 1, 1)
    x_t = a_bar.sqrt() * x0 + (1 - a_bar).sqrt() * noise
    eps_hat = model(x_t, t)
    return (eps_hat - noise).square().mean()


# ---------------------------------------------------------------------------- ch05: one DDPM step
def check_ddpm_step(fn: Callable[..., Any]) -> bool:
    """``fn(schedule, eps_hat, t, x_t, z)`` → x_{t−1} of Ho et al.'s Algorithm 2, x̂₀ clamped to [−1, 1]."""
    from ..samplers import ddpm_step
    from ..schedules import make_schedule

    def run() -> None:
        g = torch.Generator().manual_seed(4)
        s = make_schedule("cosine")
        for t in (700, 100, 1, 0):
            eps, x_t, z = (torch.randn(2, 1, 8, 8, generator=g) for _ in range(3))
            want = ddpm_step(s, eps, t, x_t, noise=z).prev_sample
            compare_to("DDPM step", f"t = {t}" + (" (the last step: no fresh noise)" if t == 0 else ""),
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
    from ..samplers import ddim_step
    from ..schedules import make_schedule

    def run() -> None:
        g = torch.Generator().manual_seed(5)
        s = make_schedule("cosine")
        for t, t_prev in ((999, 949), (500, 450), (100, 0), (49, -1)):
            eps, x_t = torch.randn(2, 1, 8, 8, generator=g), torch.randn(2, 1, 8, 8, generator=g)
            want = ddim_step(s, eps, t, t_prev, x_t).prev_sample
            compare_to("DDIM step", f"t = {t} → {t_prev}" + (" (to the clean picture, ᾱ = 1)" if t_prev < 0 else ""),
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
    from ..samplers import sample
    from ..schedules import make_schedule

    def run() -> None:
        g = torch.Generator().manual_seed(6)
        s, model = make_schedule("cosine"), TinyDenoiser()  # a cheap stand-in network whose output depends on the label
        labels, x_T = torch.tensor([0, 1, 5]), torch.randn(3, 1, 8, 8, generator=g)
        for scale in (1.0, 3.0):
            want = sample(model, s, x_T.shape, cond=labels, guidance_scale=scale, noise=x_T, num_steps=5,
                          sampler="ddim", spacing="trailing", clip_sample=True, progress=False)
            compare_to("guided sampler", f"s = {scale}, 5 steps", fn(model, s, labels, scale, x_T, 5), want, atol=1e-3)

    return attempt("a guided sampler", run, "Reuse the DDIM loop; only the network's answer changes.")


def solution_cfg_sampler(model, schedule, labels, s, x_T, num_steps):
    from ..samplers import ddim_step, timesteps

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
    from ..guidance import cfg_model

    def run() -> None:
        for scale in (3.0, 0.0):
            with torch.no_grad():
                want = cfg_model(model, scale)(x_t, t, cond=ids)
                got = fn(model, x_t, t, ids, ids_empty, scale)
            compare_to("prompt guidance", f"s = {scale}", got, want, atol=1e-4)

    return attempt("guidance with a prompt", run, "Two calls of the model, then chapter 07's formula.")


def solution_prompt_guidance(model, x_t, t, ids, ids_empty, s):
    with torch.no_grad():
        out_c = model(x_t, t, cond=ids)
        out_0 = model(x_t, t, cond=ids_empty)
    return out_0 + s * (out_c - out_0)
