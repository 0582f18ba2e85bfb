"""Noise schedules: how much static each step adds, and the time axis it defines (chapter 02).

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

This module is also the one place that reads the schedule at a time t (chapters 05–07):
:func:`alpha_bar_at` (integer t, t = −1 and fractional t), :func:`schedule_sigmas` (σ(t)),
:func:`sigma_to_t` (t(σ)) and :func:`timesteps` (the N steps a sampler visits).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import torch

from .settings import check_bool, check_choice, check_float, check_int

ScheduleName = Literal["linear", "scaled_linear", "cosine", "sigmoid"]
SCHEDULE_NAMES: tuple[str, ...] = get_args(ScheduleName)
Spacing = Literal["leading", "trailing", "linspace"]
SPACINGS: tuple[str, ...] = get_args(Spacing)


@dataclass(frozen=True)
class NoiseSchedule:
    """β_t, α_t and ᾱ_t as float32 tensors of length T (index t = 0 … T−1)."""

    name: ScheduleName
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
    name: ScheduleName,
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


# ============================================================================ reading the schedule at a time t
def alpha_bar_at(s: NoiseSchedule, t: torch.Tensor | int | float, like: torch.Tensor | None = None) -> torch.Tensor:
    """ᾱ at timesteps ``t`` (shape () or (B,)): the ONE lookup every module uses (chapters 05–07).

    - integer t ∈ {−1, 0, …, T−1}: ``s.alphas_cumprod[t]``, and ᾱ_{−1} = 1 (the clean end after the last
      sampler step: diffusers' ``set_alpha_to_one``; the ᾱ_{t−1} of the posterior at t = 0);
    - fractional t ∈ [0, T−1] (the σ-space samplers of chapter 06 hand them to the network): log σ
      interpolated linearly between the two neighbouring steps, then ᾱ = 1/(1 + σ²). This is the
      inverse of :func:`sigma_to_t` (and of diffusers' ``_sigma_to_t``), so ᾱ is the noise level the
      sampler is really at.

    Returns ᾱ in the schedule's dtype on its device (float32, computed in float64 for fractional t), or,
    with ``like``, shaped (B, 1, 1, …) on ``like``'s device and dtype to broadcast against it.
    Integer t outside [−1, T−1] raises ValueError (checked for CPU t; an accelerator t is not synced).
    """
    table = s.alphas_cumprod
    t = torch.as_tensor(t)
    if t.is_floating_point():
        tt = t.detach().cpu().double().clamp(0, s.num_timesteps - 1)
        low = tt.floor().long().clamp(max=max(s.num_timesteps - 2, 0))
        log_sigma = schedule_sigmas(s).cpu().double().log()
        w = tt - low
        ls = (1 - w) * log_sigma[low] + w * log_sigma[(low + 1).clamp(max=s.num_timesteps - 1)]
        values = (1.0 / (1.0 + (2 * ls).exp())).to(dtype=table.dtype, device=table.device)
    else:
        if t.device.type == "cpu" and t.numel() and (int(t.min()) < -1 or int(t.max()) > s.num_timesteps - 1):
            raise ValueError(f"t={t.tolist()} is out of range; allowed: -1 <= t <= {s.num_timesteps - 1}")
        padded = torch.cat([table.new_ones(1), table])  # ᾱ_{−1} = 1 at index 0, ᾱ_t at index t + 1
        values = padded[t.to(device=table.device, dtype=torch.long) + 1]
    if like is None:
        return values
    return broadcast_to(values, like).to(device=like.device, dtype=like.dtype)


def schedule_sigmas(s: NoiseSchedule) -> torch.Tensor:
    """σ_t = √((1−ᾱ_t)/ᾱ_t) = 1/√SNR(t) for every training step, ascending (float32, length T).

    In σ-space x_σ = x_t/√ᾱ_t = x₀ + σ ε (Karras et al. 2022, "EDM", §2 and Table 1, "VP"; chapter 06).
    A zero ᾱ (the last step of a zero-terminal-SNR schedule) is replaced by 2⁻²⁴, giving a large finite
    σ_max = 4096, as diffusers does.
    """
    a = s.alphas_cumprod
    a = torch.where(a > 0, a, torch.full_like(a, 2.0**-24))
    return ((1 - a) / a) ** 0.5


def sigma_to_t(s: NoiseSchedule, sigma: torch.Tensor | float) -> torch.Tensor:
    """The (fractional) timestep whose noise level is σ: linear interpolation of t in log σ between the
    two neighbouring training steps, clamped to [0, T−1] (diffusers' ``_sigma_to_t``; chapter 06).
    Returns float64 of ``sigma``'s shape; :func:`alpha_bar_at` inverts it."""
    log_sigmas = schedule_sigmas(s).double().log()  # ascending in t
    ls = torch.as_tensor(sigma, dtype=torch.float64).clamp(min=1e-10).log()
    low = (ls.unsqueeze(-1) >= log_sigmas).sum(-1).sub(1).clamp(0, s.num_timesteps - 2)  # last step with σ_t ≤ σ
    lo, hi = log_sigmas[low], log_sigmas[low + 1]
    w = ((lo - ls) / (lo - hi)).clamp(0.0, 1.0)
    return (1 - w) * low + w * (low + 1)


def timesteps(
    num_train_timesteps: int, num_inference_steps: int, spacing: Spacing = "leading", steps_offset: int = 0
) -> torch.Tensor:
    """The N timesteps a sampler visits, in descending order (equal to diffusers' ``set_timesteps``; chapter 06).

    - ``leading``: 0, k, 2k, … with k = T // N (DDIM paper; never reaches T−1 unless offset).
    - ``trailing``: T−1, T−1−k, … with k = T / N (Lin et al. 2023, Table 2: start from pure noise).
    - ``linspace``: N points evenly spread over [0, T−1], rounded.

    Also importable as ``course_lib.samplers.timesteps`` (docs/architecture.md, "Public API").
    """
    T = check_int("num_train_timesteps", num_train_timesteps, min_value=1)
    N = check_int("num_inference_steps", num_inference_steps, min_value=1, max_value=T)
    check_choice("spacing", spacing, SPACINGS)
    steps_offset = check_int("steps_offset", steps_offset, min_value=0, max_value=T - 1)
    if spacing == "linspace":
        ts = np.linspace(0, T - 1, N).round()[::-1].astype(np.int64)
    elif spacing == "leading":
        ts = (np.arange(0, N) * (T // N)).round()[::-1].astype(np.int64) + steps_offset
    else:
        ts = np.round(np.arange(T, 0, -T / N)).astype(np.int64) - 1
    return torch.from_numpy(ts.copy())
