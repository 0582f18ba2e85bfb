"""σ-space solvers: few-step samplers on the noise-level axis σ (chapter 06).

In σ-space x_σ = x_t/√ᾱ_t = x₀ + σ ε with σ = √((1−ᾱ)/ᾱ) (Karras et al. 2022, "EDM", Table 1, "VP"),
and sampling is solving the probability-flow ODE dx/dσ = (x − D(x; σ))/σ from a large σ down to 0.

- where the steps go: :func:`sigma_grid` (the :func:`karras_sigmas` grid of EDM eq. 5, or σ at the
  integer :func:`course_lib.schedules.timesteps`); the rule "``sigma_max`` only with karras spacing"
  lives in :func:`check_sigma_max`, the one copy that ``samplers.sample``, the steps-vs-quality table
  and chapter 06's validation cell call;
- the network as an EDM denoiser D(x_σ; σ) ≈ x₀: :class:`DiscreteDenoiser` (a :data:`SigmaDenoiser`),
  and a flow-matching velocity model as one: :func:`flow_denoiser`, run by :func:`solve_flow` (chapter 12);
- the solvers, one plain function each in the style of the papers' algorithms: :func:`sample_euler`,
  :func:`sample_heun` (Karras et al. 2022, Algorithm 1), :func:`sample_dpmpp_2m` (Lu et al. 2022,
  "DPM-Solver++", Algorithm 2) and :func:`sample_dpmpp_2m_sde` (its SDE variant);
- the one home of the σ-grid constants (:data:`EDM_SIGMA_MAX`, :data:`EDM_SIGMA_MIN`) and of the
  network-call account of every sampler, diffusion and flow alike (:func:`network_calls`,
  :func:`steps_within`: chapter 06's NFE).

``course_lib.samplers.sample(..., sampler="euler" | "heun" | "dpmpp_2m" | "dpmpp_2m_sde")`` runs them.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Literal, Sequence, get_args

import torch
from tqdm.auto import tqdm

from .forward import PREDICTION_TYPES, PredictionType, gaussian_noise, split_prediction_at
from .schedules import NoiseSchedule, Spacing, schedule_sigmas, sigma_to_t, timesteps
from .settings import check_bool, check_choice, check_float, check_int

SigmaSampler = Literal["euler", "heun", "dpmpp_2m", "dpmpp_2m_sde"]
SIGMA_SAMPLERS: tuple[str, ...] = get_args(SigmaSampler)
SigmaSpacing = Literal["karras", Spacing]  # karras, leading, trailing, linspace
SIGMA_SPACINGS: tuple[str, ...] = get_args(SigmaSpacing)

#: ``model_fn(x_t, t) -> ε, x₀ or v``: a diffusion model with its condition (and guidance) bound.
ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: ``D(x_σ, σ) ≈ x₀``: an EDM denoiser in σ-space (Karras et al. 2022, §2), what the solvers call.
SigmaDenoiser = Callable[[torch.Tensor, float], torch.Tensor]
#: ``callback(i, x_next, denoised)``: run after step i of a solver.
StepCallback = Callable[[int, torch.Tensor, torch.Tensor], None]

#: EDM's largest and smallest noise levels (Karras et al. 2022, Table 1): where the karras grids of
#: ``samplers.sample`` (by default), the chapter-06 table and the flow's DPM-Solver++ (chapter 12) start and end
EDM_SIGMA_MAX, EDM_SIGMA_MIN = 80.0, 0.002
#: network calls per step of every sampler of ``samplers.sample`` and ``flow.sample_flow``, and the calls
#: its last step saves (Heun's last step, to σ = 0, has no correction: Karras et al. 2022, Algorithm 1)
CALLS_PER_STEP: dict[str, tuple[int, int]] = {
    "ddpm": (1, 0), "ddim": (1, 0), "euler": (1, 0), "heun": (2, 1), "midpoint": (2, 0), "dpmpp_2m": (1, 0),
    "dpmpp_2m_sde": (1, 0),
}


# ============================================================================ what a sampler costs
def network_calls(sampler: str, num_steps: int) -> int:
    """Network calls (NFE) of ``num_steps`` steps of ``sampler`` (chapter 06): N, 2N − 1 for heun, 2N for midpoint."""
    per_step, saved = CALLS_PER_STEP[check_choice("sampler", sampler, tuple(CALLS_PER_STEP))]
    return per_step * check_int("num_steps", num_steps, min_value=1) - saved


def steps_within(sampler: str, nfe: int) -> int:
    """The most steps ``sampler`` can take within ``nfe`` network calls (at least 1): the inverse of
    :func:`network_calls`."""
    per_step, saved = CALLS_PER_STEP[check_choice("sampler", sampler, tuple(CALLS_PER_STEP))]
    return max(1, (check_int("nfe", nfe, min_value=1) + saved) // per_step)


# ============================================================================ where the steps go
def karras_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    """The EDM noise levels (Karras et al. 2022, eq. 5), with a final 0 appended: n+1 values, descending.

    σ_i = (σ_max^{1/ρ} + i/(n−1) · (σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ for i < n, and σ_n = 0.
    ρ = 7 spends more steps at low noise, where detail forms. Float32, like the rest of the sampler.
    """
    n = check_int("n", n, min_value=1)
    sigma_min = check_float("sigma_min", sigma_min, min_value=0.0)
    sigma_max = check_float("sigma_max", sigma_max, min_value=sigma_min)
    rho = check_float("rho", rho, min_value=1e-3)
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (hi + ramp * (lo - hi)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros(1)]).float()


def check_sigma_max(spacing: SigmaSpacing, sigma_max: Any, s: NoiseSchedule | None = None) -> float | None:
    """The one rule for ``sigma_max``: None, or a number used only with ``spacing='karras'``.

    With the schedule ``s`` it must also lie in [σ(0), σ(T−1)] (:func:`course_lib.schedules.schedule_sigmas`);
    without it (a notebook's validation cell, before the model is loaded) it must be a positive number.
    Returns ``sigma_max`` as a float (or None); raises ValueError otherwise.
    """
    if sigma_max is None:
        return None
    if spacing != "karras":
        raise ValueError(f"sigma_max={sigma_max} only applies to spacing='karras' (the σ-samplers {SIGMA_SAMPLERS}); "
                         f"set sigma_max=None for spacing={spacing!r}")
    if s is None:
        return check_float("sigma_max", sigma_max, min_value=0.0)
    table = schedule_sigmas(s)
    return check_float("sigma_max", sigma_max, min_value=float(table[0]), max_value=float(table[-1]))


def sigma_grid(s: NoiseSchedule, num_steps: int, spacing: SigmaSpacing = "karras", rho: float = 7.0,
               sigma_max: float | None = None) -> torch.Tensor:
    """The σ-samplers' noise levels, descending, ending in 0 (N+1 values, float32).

    ``karras``: :func:`karras_sigmas` between σ_min = σ(t=0) and σ_max = σ(t=T−1), or the given
    ``sigma_max``. ``leading`` / ``trailing`` / ``linspace``: σ at the integer timesteps of
    that spacing (``sigma_max`` must then be None, :func:`check_sigma_max`).
    """
    check_choice("spacing", spacing, SIGMA_SPACINGS)
    check_sigma_max(spacing, sigma_max, s)
    table = schedule_sigmas(s)
    if spacing == "karras":
        return karras_sigmas(num_steps, float(table[0]), float(table[-1]) if sigma_max is None else sigma_max, rho)
    ts = timesteps(s.num_timesteps, num_steps, spacing)
    return torch.cat([table[ts], table.new_zeros(1)])


# ============================================================================ the network as D(x_σ; σ)
class DiscreteDenoiser:
    """Wrap a discrete-time network as an EDM denoiser D(x_σ; σ) ≈ x₀ (Karras et al. 2022, §2, Table 1).

    For a noise level σ: ᾱ = 1/(1+σ²); the network sees x_t = √ᾱ x_σ and the timestep t(σ) from
    :func:`course_lib.schedules.sigma_to_t` (a float, between training steps — so the network's time
    embedding must accept a float t; the course's sinusoidal embedding does). Its ε, x₀ or v output is
    read as x̂₀ at that ᾱ. ``round_timesteps=True`` rounds t to the nearest integer for the network only
    (the solver keeps the exact σ), which is what
    ``diffusers.DPMSolverMultistepScheduler(use_karras_sigmas=True)`` does.
    """

    def __init__(self, model_fn: ModelFn, s: NoiseSchedule, *, prediction_type: PredictionType = "epsilon",
                 clip_sample: bool = False, round_timesteps: bool = False) -> None:
        self.model_fn, self.s = model_fn, s
        self.prediction_type = check_choice("prediction_type", prediction_type, PREDICTION_TYPES)
        self.clip_sample = check_bool("clip_sample", clip_sample)
        self.round_timesteps = check_bool("round_timesteps", round_timesteps)

    def timestep(self, sigma: torch.Tensor | float) -> torch.Tensor:
        """t(σ) as the network receives it: float32, or int64 when rounding."""
        t = sigma_to_t(self.s, sigma)
        return t.round().long() if self.round_timesteps else t.float()

    def __call__(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        sigma = float(sigma)
        a_bar = 1.0 / (1.0 + sigma**2)  # python float: full precision at small σ
        x_t = x * a_bar**0.5
        t = self.timestep(sigma).to(x.device).expand(x.shape[0])  # (B,)
        out = self.model_fn(x_t, t)
        x0 = split_prediction_at(a_bar, out, x_t, self.prediction_type).x0
        return x0.clamp(-1.0, 1.0) if self.clip_sample else x0


# ============================================================================ the solvers
def _bar(n: int, progress: bool, desc: str) -> Iterable[int]:
    return tqdm(range(n), disable=not progress, desc=desc, leave=False)


def sample_euler(denoiser: SigmaDenoiser, x: torch.Tensor, sigmas: torch.Tensor, *, progress: bool = False,
                 callback: StepCallback | None = None) -> torch.Tensor:
    """Euler's method on the probability-flow ODE dx/dσ = (x − D(x; σ))/σ (Karras et al. 2022, eqs. 1
    and 3, Algorithm 1 without its correction step; chapter 06). One network call per step.

    ``x`` starts at σ = sigmas[0] (x = σ-space sample, x₀ + σ ε); ``sigmas`` descends to 0.
    ``callback(i, x_next, denoised)`` runs after step i. On the discrete grid this is DDIM (EDM §3).
    """
    for i in _bar(len(sigmas) - 1, progress, "euler"):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        denoised = denoiser(x, sigma)
        d = (x - denoised) / sigma  # dx/dσ
        x = x + (sigma_next - sigma) * d
        if callback is not None:
            callback(i, x, denoised)
    return x


def sample_heun(denoiser: SigmaDenoiser, x: torch.Tensor, sigmas: torch.Tensor, *, progress: bool = False,
                callback: StepCallback | None = None) -> torch.Tensor:
    """Heun's second-order method (Karras et al. 2022, Algorithm 1, deterministic: S_churn = 0; chapter 06).

    Each step takes an Euler step to σ_{i+1}, evaluates the slope there and averages the two slopes;
    the last step (to σ = 0) stays Euler. So N steps cost 2N − 1 network calls.
    """
    for i in _bar(len(sigmas) - 1, progress, "heun"):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        denoised = denoiser(x, sigma)
        d = (x - denoised) / sigma
        x_euler = x + (sigma_next - sigma) * d
        if sigma_next == 0:
            x = x_euler
        else:
            d_next = (x_euler - denoiser(x_euler, sigma_next)) / sigma_next
            x = x + (sigma_next - sigma) * (d + d_next) / 2
        if callback is not None:
            callback(i, x, denoised)
    return x


def sample_dpmpp_2m(denoiser: SigmaDenoiser, x: torch.Tensor, sigmas: torch.Tensor, *, progress: bool = False,
                    callback: StepCallback | None = None) -> torch.Tensor:
    """DPM-Solver++(2M): the multistep second-order data-prediction solver (Lu et al. 2022,
    "DPM-Solver++", Algorithm 2; chapter 06). One network call per step.

    In σ-space, with λ = −log σ (half the log-SNR) and h = λ_{i+1} − λ_i, the ODE solved exactly with
    x̂₀ held constant over the step gives x_{i+1} = (σ_{i+1}/σ_i) x_i − (e^{−h} − 1) x̂₀ (first order:
    DDIM). The 2M solver uses instead the linear extrapolation of the last two guesses,
    D = (1 + 1/(2r)) x̂₀_i − 1/(2r) x̂₀_{i−1} with r = h_{i−1}/h. The first step (no history yet) and
    the step to σ = 0 are first order, so the final step returns the last x̂₀.
    """

    def step(x: torch.Tensor, sigma: float, sigma_next: float, h: float, denoised: torch.Tensor,
             old_denoised: torch.Tensor | None, h_last: float) -> torch.Tensor:
        d = denoised
        if old_denoised is not None:
            r = h_last / h
            d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
        return (sigma_next / sigma) * x - math.expm1(-h) * d

    return _multistep(denoiser, x, sigmas, step, "dpm++(2m)", progress, callback)


def sample_dpmpp_2m_sde(denoiser: SigmaDenoiser, x: torch.Tensor, sigmas: torch.Tensor, *,
                        generator: torch.Generator | None = None, progress: bool = False,
                        callback: StepCallback | None = None) -> torch.Tensor:
    """SDE-DPM-Solver++(2M): DPM-Solver++(2M) for the reverse *SDE* instead of the ODE (Lu et al. 2022,
    "DPM-Solver++", §5 and App. B; diffusers' ``algorithm_type="sde-dpmsolver++"``; chapter 06).
    One network call per step, plus fresh noise.

    Solving the reverse SDE exactly with x̂₀ held constant over a step (h = λ_{i+1} − λ_i, λ = −log σ)
    gives x_{i+1} = (σ_{i+1}/σ_i) e^{−h} x_i + (1 − e^{−2h}) D + σ_{i+1} √(1 − e^{−2h}) z, z ~ N(0, I):
    next to the ODE step it keeps less of x_i (the factor e^{−h}) and adds fresh noise back, as DDPM
    does. The second-order (midpoint) version uses D = x̂₀_i + ½ (x̂₀_i − x̂₀_{i−1})/r with
    r = h_{i−1}/h. The first step has no history and the step to σ = 0 returns x̂₀. The fresh noise
    corrects part of the network's errors instead of carrying them along (Karras et al. 2022, §4),
    which is why it beats the ODE solvers on an imperfect model (chapter 06's table).
    """

    def step(x: torch.Tensor, sigma: float, sigma_next: float, h: float, denoised: torch.Tensor,
             old_denoised: torch.Tensor | None, h_last: float) -> torch.Tensor:
        w = -math.expm1(-2 * h)  # 1 − e^{−2h}: the weight of the guess, and of the fresh noise's variance
        d = denoised
        if old_denoised is not None:
            d = denoised + 0.5 * (denoised - old_denoised) / (h_last / h)
        x = (sigma_next / sigma) * math.exp(-h) * x + w * d
        return x + sigma_next * math.sqrt(w) * gaussian_noise(x.shape, x, generator)

    return _multistep(denoiser, x, sigmas, step, "dpm++(2m) sde", progress, callback)


def _multistep(denoiser: SigmaDenoiser, x: torch.Tensor, sigmas: torch.Tensor, step: Callable[..., torch.Tensor],
               desc: str, progress: bool, callback: StepCallback | None) -> torch.Tensor:
    """The loop both DPM-Solver++(2M) variants share: one network call per step, the last two guesses
    x̂₀ remembered, ``step(x, σ, σ_next, h, x̂₀, previous x̂₀ or None, previous h)`` for every step but
    the last, which returns x̂₀ itself (σ = 0)."""
    old_denoised: torch.Tensor | None = None
    h_last = 0.0
    for i in _bar(len(sigmas) - 1, progress, desc):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        denoised = denoiser(x, sigma)
        if sigma_next == 0:
            x = denoised
        else:
            h = math.log(sigma) - math.log(sigma_next)  # λ_{i+1} − λ_i > 0
            x = step(x, sigma, sigma_next, h, denoised, old_denoised, h_last)
            h_last = h
        old_denoised = denoised
        if callback is not None:
            callback(i, x, denoised)
    return x


SIGMA_SOLVERS: dict[str, Callable[..., torch.Tensor]] = {
    "euler": sample_euler, "heun": sample_heun, "dpmpp_2m": sample_dpmpp_2m, "dpmpp_2m_sde": sample_dpmpp_2m_sde,
}
#: σ-solvers that draw fresh noise at every step (they take the sampler's generator)
STOCHASTIC_SIGMA_SAMPLERS: tuple[str, ...] = ("dpmpp_2m_sde",)


# ----------------------------------------------------------------------------- flow models (chapter 12)
def flow_denoiser(velocity_fn: Callable[[torch.Tensor, float], torch.Tensor]) -> SigmaDenoiser:
    """The velocity model read as chapter 06's σ-denoiser D(x, σ) = x̂₀ for x = x₀ + σ·ε (chapter 12 §4).

    The point x on the diffusion path at noise level σ is the point x_t = x/(1 + σ) of the straight
    path at t = σ/(1 + σ), and there x̂₀ = x_t − t·v (``course_lib.flow.x0_from_velocity``). So every
    σ-solver here samples a flow model (``course_lib.flow.sample_flow``) — what diffusers does for SD3 with
    ``DPMSolverMultistepScheduler(use_flow_sigmas=True, prediction_type="flow_prediction")``.
    """
    def denoiser(x: torch.Tensor, sigma: float) -> torch.Tensor:
        t = sigma / (1 + sigma)
        x_t = x / (1 + sigma)  # (1 − t)·x
        return x_t - t * velocity_fn(x_t, t)

    return denoiser


def solve_flow(velocity_fn: Callable[[torch.Tensor, float], torch.Tensor], noise: torch.Tensor, times: Sequence[float],
               sampler: str, generator: torch.Generator | None, path: list[torch.Tensor] | None) -> torch.Tensor:
    """DPM-Solver++(2M) (``dpmpp_2m``) or its SDE version (``dpmpp_2m_sde``) on :func:`flow_denoiser`,
    over the flow times ``times`` read as noise levels σ = t/(1 − t); x after each step (in flow
    coordinates, x_t = x/(1 + σ)) goes to ``path``."""
    if times[0] >= 1:
        raise ValueError(f"sigmas must start below t = 1 for sampler={sampler!r} (it reads t as the noise level "
                         "σ = t/(1 − t), infinite at 1); use flow_dpm_sigmas(num_steps)")
    levels = torch.tensor([t / (1 - t) for t in times], dtype=torch.float64)  # (N + 1,), descending to 0

    def keep(i: int, x: torch.Tensor, denoised: torch.Tensor) -> None:
        if path is not None:
            path.append((x / (1 + float(levels[i + 1]))).cpu())

    extra = {"generator": generator} if sampler == "dpmpp_2m_sde" else {}
    # the static at t_0 < 1 is x = σ_0·ε in diffusion coordinates (the picture's (1 − t_0)·x₀ is negligible)
    return SIGMA_SOLVERS[sampler](flow_denoiser(velocity_fn), noise * float(levels[0]), levels, callback=keep, **extra)
