"""Noise schedules: how much static each step adds (chapter 02).

Notation (book/notation.md): t ∈ {0,…,T−1}; β_t the variance added at step t; α_t = 1 − β_t;
ᾱ_t = ∏_{s≤t} α_s; x_t = √ᾱ_t x₀ + √(1−ᾱ_t) ε;  SNR(t) = ᾱ_t / (1 − ᾱ_t).

Each schedule is computed exactly as diffusers computes it (float32, same operations), so that
``make_schedule(...).betas`` equals ``DDPMScheduler(...).betas``; tests/ checks this.

References
- linear: Ho et al. 2020, "Denoising Diffusion Probabilistic Models", §4 (β from 1e-4 to 0.02).
- scaled_linear: the Stable Diffusion (latent diffusion) schedule, linear in √β.
- cosine: Nichol & Dhariwal 2021, "Improved DDPM", eq. 17 (diffusers ``squaredcos_cap_v2``).
- sigmoid: the GeoDiff schedule (Xu et al. 2022), β on a sigmoid between beta_start and beta_end.
- zero terminal SNR: Lin et al. 2023, "Common Diffusion Noise Schedules and Sample Steps are
  Flawed", Algorithm 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

import torch

from .settings import check_bool, check_choice, check_float, check_int

ScheduleName = Literal["linear", "scaled_linear", "cosine", "sigmoid"]
SCHEDULE_NAMES: tuple[str, ...] = get_args(ScheduleName)


@dataclass(frozen=True)
class NoiseSchedule:
    """β_t, α_t and ᾱ_t as float32 tensors of length T (index t = 0 … T−1)."""

    name: str
    betas: torch.Tensor
    alphas: torch.Tensor
    alphas_cumprod: torch.Tensor

    @property
    def num_timesteps(self) -> int:
        return int(self.betas.shape[0])

    def snr(self, t: torch.Tensor | int) -> torch.Tensor:
        """Signal-to-noise ratio SNR(t) = ᾱ_t / (1 − ᾱ_t) (infinite never; 0 at a zero-SNR end)."""
        a = self.alphas_cumprod[torch.as_tensor(t, dtype=torch.long)]
        return a / (1.0 - a)

    def log_snr(self, t: torch.Tensor | int) -> torch.Tensor:
        """log SNR(t); −inf at the last step of a zero-terminal-SNR schedule."""
        return torch.log(self.snr(t))

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Closed-form forward process x_t = √ᾱ_t x₀ + √(1−ᾱ_t) ε (Ho et al. 2020, eq. 4).

        ``t`` holds one timestep per batch item (or a scalar). Equals diffusers'
        ``scheduler.add_noise(x0, noise, t)`` bit for bit on float32 input.
        """
        t = torch.as_tensor(t, dtype=torch.long, device=x0.device)
        a_bar = self.alphas_cumprod.to(device=x0.device, dtype=x0.dtype)
        sqrt_a = broadcast_to(a_bar[t] ** 0.5, x0)
        sqrt_1ma = broadcast_to((1 - a_bar[t]) ** 0.5, x0)
        return sqrt_a * x0 + sqrt_1ma * noise

    def to(self, device: torch.device | str) -> "NoiseSchedule":
        """The same schedule with its tensors on ``device``."""
        return NoiseSchedule(
            self.name, self.betas.to(device), self.alphas.to(device), self.alphas_cumprod.to(device)
        )

    def __repr__(self) -> str:
        a = self.alphas_cumprod
        return f"NoiseSchedule({self.name!r}, T={self.num_timesteps}, ᾱ_0={a[0]:.5f}, ᾱ_T-1={a[-1]:.3g})"


def broadcast_to(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape per-item values (B,) or () to (B, 1, 1, …) so they broadcast against ``like``."""
    values = values.flatten()  # (B,) or (1,)
    return values.reshape(values.shape[0], *([1] * (like.dim() - 1)))


def make_schedule(
    name: str,
    num_timesteps: int = 1000,
    *,
    beta_start: float = 1e-4,
    beta_end: float = 0.02,
    zero_terminal_snr: bool = False,
) -> NoiseSchedule:
    """Build a named schedule. ``cosine`` is diffusers' ``squaredcos_cap_v2`` (it ignores beta_start/end).

    Raises ValueError for an unknown ``name``, ``num_timesteps < 2`` or betas outside (0, 1).
    """
    check_choice("schedule", name, SCHEDULE_NAMES)
    num_timesteps = check_int("num_timesteps", num_timesteps, min_value=2, max_value=100_000)
    beta_start = check_float("beta_start", beta_start, min_value=0.0, max_value=1.0)
    beta_end = check_float("beta_end", beta_end, min_value=0.0, max_value=1.0)
    check_bool("zero_terminal_snr", zero_terminal_snr)
    if name != "cosine" and not 0 < beta_start <= beta_end < 1:
        raise ValueError(f"need 0 < beta_start <= beta_end < 1, got beta_start={beta_start}, beta_end={beta_end}")

    betas = _BETAS[name](num_timesteps, beta_start, beta_end)
    if zero_terminal_snr:
        betas = rescale_zero_terminal_snr(betas)
    alphas = 1.0 - betas
    return NoiseSchedule(name, betas, alphas, torch.cumprod(alphas, dim=0))


def linear_betas(T: int, beta_start: float, beta_end: float) -> torch.Tensor:
    """β_t evenly spaced from beta_start to beta_end (DDPM)."""
    return torch.linspace(beta_start, beta_end, T, dtype=torch.float32)


def scaled_linear_betas(T: int, beta_start: float, beta_end: float) -> torch.Tensor:
    """√β_t evenly spaced (Stable Diffusion); gentler at the start than ``linear``."""
    return torch.linspace(beta_start**0.5, beta_end**0.5, T, dtype=torch.float32) ** 2


def cosine_betas(T: int, beta_start: float = 0.0, beta_end: float = 0.0, max_beta: float = 0.999) -> torch.Tensor:
    """Nichol & Dhariwal 2021, eq. 17: ᾱ(τ) = cos²((τ + s)/(1 + s) · π/2), s = 0.008, β capped at 0.999."""

    def alpha_bar(tau: float) -> float:
        return math.cos((tau + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = [min(1 - alpha_bar((i + 1) / T) / alpha_bar(i / T), max_beta) for i in range(T)]
    return torch.tensor(betas, dtype=torch.float32)


def sigmoid_betas(T: int, beta_start: float, beta_end: float) -> torch.Tensor:
    """β_t = beta_start + (beta_end − beta_start)·sigmoid(u), u evenly spaced in [−6, 6]."""
    u = torch.linspace(-6, 6, T)
    return torch.sigmoid(u) * (beta_end - beta_start) + beta_start


_BETAS = {"linear": linear_betas, "scaled_linear": scaled_linear_betas, "cosine": cosine_betas, "sigmoid": sigmoid_betas}


def rescale_zero_terminal_snr(betas: torch.Tensor) -> torch.Tensor:
    """Lin et al. 2023, Algorithm 1: shift and scale √ᾱ so that ᾱ_{T−1} = 0 (pure noise at the end)
    while ᾱ_0 is unchanged."""
    sqrt_ab = torch.cumprod(1.0 - betas, dim=0).sqrt()
    first, last = sqrt_ab[0].clone(), sqrt_ab[-1].clone()
    sqrt_ab = (sqrt_ab - last) * (first / (first - last))
    alphas_cumprod = sqrt_ab**2
    alphas = torch.cat([alphas_cumprod[0:1], alphas_cumprod[1:] / alphas_cumprod[:-1]])
    return 1 - alphas
