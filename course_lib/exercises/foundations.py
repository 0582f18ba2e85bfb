"""Function exercises of chapters 00–03: the cheating eraser, closed-form noising, the cosine schedule,
reading the network's output as x̂₀."""

from __future__ import annotations

from typing import Any, Callable

import torch

from .core import NotTried, compare_to, attempt


# ---------------------------------------------------------------------------- ch00: the cheating eraser
def check_cheat_eraser(fn: Callable[..., Any]) -> bool:
    """``fn(schedule, x0, generator)`` → list of T+1 tensors: x_{T−1} (pure static), …, x_0, then the result.

    Checked statistically: the stop at t must look like the forward process at t (mean √ᾱ_t x₀,
    spread √(1−ᾱ_t)) and the last picture must be x₀ itself.
    """
    from ..schedules import make_schedule

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
        compare_to("cheat eraser", "the last picture", frames[-1], x0, atol=1e-3)
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
    from ..forward import posterior_mean_variance

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
    from ..schedules import make_schedule

    def run() -> None:
        g = torch.Generator().manual_seed(1)
        for name in ("linear", "cosine"):
            s = make_schedule(name)
            x0, noise = torch.rand(4, 3, 8, 8, generator=g) * 2 - 1, torch.randn(4, 3, 8, 8, generator=g)
            t = torch.tensor([0, 10, 500, 999])
            compare_to("closed-form noising", f"{name} schedule, t = {t.tolist()}", fn(s, x0, t, noise),
                     s.add_noise(x0, noise, t), atol=1e-5)

    return attempt("closed-form noising", run, "Look up ᾱ_t for each picture, then mix x₀ and ε.")


def solution_q_sample(schedule, x0, t, noise):
    a_bar = schedule.alphas_cumprod[t]  # (B,)
    a_bar = a_bar.reshape(-1, *([1] * (x0.dim() - 1)))  # (B, 1, 1, 1) to broadcast over the pixels
    return a_bar.sqrt() * x0 + (1 - a_bar).sqrt() * noise


# ---------------------------------------------------------------------------- ch02: the cosine schedule
def check_cosine_schedule(fn: Callable[..., Any]) -> bool:
    """``fn(T)`` → ᾱ_t for t = 0 … T−1 of the cosine schedule (Nichol & Dhariwal 2021, eq. 17)."""
    from ..schedules import make_schedule

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
            compare_to("cosine schedule", f"T = {T}", got, want, atol=2e-5, rtol=1e-4)

    return attempt("cosine schedule", run, "Write f(τ) first, then divide.")


def solution_cosine_schedule(T):
    import math

    def f(tau):
        return math.cos((tau + 0.008) / 1.008 * math.pi / 2) ** 2

    return torch.tensor([f((t + 1) / T) / f(0) for t in range(T)])


# ---------------------------------------------------------------------------- ch03: reading the output
def check_to_x0(fn: Callable[..., Any]) -> bool:
    """``fn(model_output, x_t, a_bar, prediction_type)`` → x̂₀ for "epsilon", "sample" and "v_prediction"."""
    from ..forward import split_prediction_at

    def run() -> None:
        g = torch.Generator().manual_seed(2)
        out, x_t = torch.randn(2, 1, 8, 8, generator=g), torch.randn(2, 1, 8, 8, generator=g)
        for kind in ("epsilon", "sample", "v_prediction"):
            for a_bar in (0.9, 0.3):
                want = split_prediction_at(torch.tensor(a_bar), out, x_t, kind).x0
                compare_to("reading the output", f"{kind}, ᾱ = {a_bar}", fn(out, x_t, torch.tensor(a_bar), kind), want)

    return attempt("reading the output as x̂₀", run, "Solve x_t = √ᾱ x₀ + √(1−ᾱ) ε for x₀, one type at a time.")


def solution_to_x0(model_output, x_t, a_bar, prediction_type):
    if prediction_type == "epsilon":
        return (x_t - (1 - a_bar).sqrt() * model_output) / a_bar.sqrt()
    if prediction_type == "sample":
        return model_output
    return a_bar.sqrt() * x_t - (1 - a_bar).sqrt() * model_output  # v = √ᾱ ε − √(1−ᾱ) x₀
