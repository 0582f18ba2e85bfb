"""Samplers: turning static back into pictures, step by step on the training timesteps (chapters 05 and 06).

Public API (docs/architecture.md, "Public API"): ``timesteps``, ``ddpm_step``, ``ddim_step``, ``sample``, ``StepOutput``.

- one step at a time on the training timesteps: :func:`ddpm_step` (Ho et al. 2020, Algorithm 2) and
  :func:`ddim_step` (Song et al. 2021, eq. 12), equal to diffusers' DDPM/DDIM ``step``; the visited
  steps come from :func:`course_lib.schedules.timesteps` (re-exported here);
- :func:`sample`: one entry point for every sampler — ddpm and ddim here, the few-step σ-space solvers
  of :mod:`course_lib.solvers` (euler, heun, dpmpp_2m, dpmpp_2m_sde) — with classifier-free guidance
  through :func:`course_lib.guidance.cfg_model` (chapter 07);
- moving around in noise space (chapter 06): :func:`slerp` and :func:`ddim_invert`.

The arguments are checked once per call (:func:`course_lib.sampler_inputs.check_sampling_inputs` and the
sampler's own options); the loops call the unchecked step rules (``_ancestral_step``, ``_ddim_update``),
so a step costs no validation. The public :func:`ddpm_step` and :func:`ddim_step` check their arguments.
"""

from __future__ import annotations

from typing import Literal, NamedTuple, Sequence, get_args

import torch
from tqdm.auto import tqdm

from .forward import (
    PREDICTION_TYPES,
    DiffusionModel,
    PredictionType,
    check_model_output,
    gaussian_noise,
    posterior_between,
    prediction_type_of,
    split_prediction,
)
from .guidance import cfg_model
from .sampler_inputs import check_sampling_inputs
from .schedules import SPACINGS, NoiseSchedule, Spacing, alpha_bar_at, schedule_sigmas, timesteps
from .settings import capped, check_bool, check_choice, check_float, check_int, in_half_precision
from .solvers import (
    EDM_SIGMA_MAX,
    SIGMA_SAMPLERS,
    SIGMA_SOLVERS,
    SIGMA_SPACINGS,
    STOCHASTIC_SIGMA_SAMPLERS,
    DiscreteDenoiser,
    ModelFn,
    SigmaSampler,
    SigmaSpacing,
    check_sigma_max,
    sigma_grid,
)

DiscreteSampler = Literal["ddpm", "ddim"]
DISCRETE_SAMPLERS: tuple[str, ...] = get_args(DiscreteSampler)

Sampler = Literal[DiscreteSampler, SigmaSampler]  # ddpm, ddim, euler, heun, dpmpp_2m, dpmpp_2m_sde
SAMPLERS: tuple[str, ...] = get_args(Sampler)

__all__ = [  # this module's own names, and the option names re-exported from where they live
    "DISCRETE_SAMPLERS", "SAMPLERS", "SIGMA_SAMPLERS", "SIGMA_SPACINGS", "SPACINGS", "DiscreteSampler", "Sampler",
    "SampleResult", "SigmaSampler", "SigmaSpacing", "Spacing", "StepOutput", "ddim_invert", "ddim_step", "ddpm_step",
    "sample", "slerp", "timesteps",
]


# ============================================================================ one step at a time
class StepOutput(NamedTuple):
    """What one reverse step returns: the next, less noisy x and the clean-image guess x̂₀ it used."""

    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor


def _check_step_t(name: str, t: torch.Tensor | int, low: int, high: int) -> torch.Tensor:
    """A timestep (int, 0-d or (B,) integer tensor) as a CPU LongTensor; ValueError if outside [low, high]."""
    if isinstance(t, torch.Tensor):
        if t.is_floating_point() or t.dim() > 1:
            raise ValueError(
                f"{name} must be an int or an integer tensor of shape () or (B,), got {t.dtype} {tuple(t.shape)}"
            )
        t = t.detach().to("cpu", torch.long)
        if t.numel() and (int(t.min()) < low or int(t.max()) > high):
            raise ValueError(f"{name}={t.tolist()} is out of range; allowed: {low} <= {name} <= {high}")
        return t
    return torch.tensor(check_int(name, t, min_value=low, max_value=high))


def _step_noise(noise: torch.Tensor | None, generator: torch.Generator | None, like: torch.Tensor) -> torch.Tensor:
    if noise is not None and generator is not None:
        raise ValueError("pass either noise or generator, not both (noise is used as it is; generator draws it)")
    if noise is None:
        return gaussian_noise(like.shape, like, generator)
    if noise.shape != like.shape:
        raise ValueError(f"noise has shape {tuple(noise.shape)} but x_t has shape {tuple(like.shape)}; they must match")
    return noise.to(device=like.device, dtype=like.dtype)


def ddpm_step(
    s: NoiseSchedule,
    model_output: torch.Tensor,
    t: torch.Tensor | int,
    x_t: torch.Tensor,
    *,
    prediction_type: PredictionType = "epsilon",
    clip_sample: bool = True,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> StepOutput:
    """One ancestral DDPM step x_t → x_{t−1} (Ho et al. 2020, Algorithm 2; chapter 05).

    1. read the output as a clean-image guess x̂₀ (:func:`course_lib.forward.split_prediction`),
       clamped to [−1, 1] when ``clip_sample``;
    2. x_{t−1} = μ̃_t(x_t, x̂₀) + √β̃_t · z, the posterior of eqs. 6–7 with the "fixed small"
       variance β̃_t = (1−ᾱ_{t−1})/(1−ᾱ_t) β_t (:func:`course_lib.forward.posterior_between`);
       no noise at t = 0, where β̃_0 = 0.

    ``noise`` (z) is drawn from ``generator`` when not given, and only when t > 0, so a shared generator
    reproduces ``diffusers.DDPMScheduler(variance_type="fixed_small").step`` exactly.
    """
    check_choice("prediction_type", prediction_type, PREDICTION_TYPES)
    check_bool("clip_sample", clip_sample)
    tt = _check_step_t("t", t, 0, s.num_timesteps - 1)
    _check_output_shape(model_output, x_t)
    return _ancestral_step(s, model_output, tt, tt - 1, x_t, prediction_type, clip_sample, noise, generator)


def _ancestral_step(s: NoiseSchedule, model_output: torch.Tensor, t: torch.Tensor, t_prev: torch.Tensor,
                    x_t: torch.Tensor, prediction_type: PredictionType, clip_sample: bool, noise: torch.Tensor | None,
                    generator: torch.Generator | None) -> StepOutput:
    """x_t → x_{t_prev} by sampling the posterior q(x_{t_prev} | x_t, x̂₀): DDPM on a respaced schedule
    when t_prev < t − 1 (Nichol & Dhariwal 2021, §4); the same as DDIM with η = 1 and ε̂ re-derived.
    Unchecked: :func:`ddpm_step` and :func:`sample` check the arguments."""
    x0 = split_prediction(s, model_output, x_t, t, prediction_type).x0
    if clip_sample:
        x0 = x0.clamp(-1.0, 1.0)
    mean, var = posterior_between(s, x0, x_t, t, t_prev)
    if bool((t > 0).any()):  # no noise at t = 0 (its variance is 0 anyway; this keeps generators in step)
        mean = mean + var.sqrt() * _step_noise(noise, generator, x_t)
    return StepOutput(mean, x0)


def ddim_step(
    s: NoiseSchedule,
    model_output: torch.Tensor,
    t: torch.Tensor | int,
    t_prev: torch.Tensor | int,
    x_t: torch.Tensor,
    *,
    eta: float = 0.0,
    prediction_type: PredictionType = "epsilon",
    clip_sample: bool = False,
    use_clipped_model_output: bool = False,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> StepOutput:
    """One DDIM step x_t → x_{t_prev} (Song et al. 2021, "DDIM", eq. 12; chapter 05).

    x_{t_prev} = √ᾱ_prev x̂₀ + √(1 − ᾱ_prev − σ²) ε̂ + σ z,
    σ = η √((1−ᾱ_prev)/(1−ᾱ_t)) √(1 − ᾱ_t/ᾱ_prev)   (eq. 16)

    η = 0 is the deterministic DDIM; η = 1 is the DDPM posterior between t and t_prev. ``t_prev = -1``
    is the final step with ᾱ_prev = 1 (diffusers' ``set_alpha_to_one=True``).

    Clipping clamps x̂₀ to [−1, 1]. As in ``diffusers.DDIMScheduler.step`` the noise direction ε̂ stays
    the model's own unless ``use_clipped_model_output=True``, which re-derives
    ε̂ = (x_t − √ᾱ_t x̂₀)/√(1−ᾱ_t) from the clipped x̂₀ (then η = 1 is exactly the clipped DDPM
    posterior). Noise is drawn whenever η > 0, even on the last step where σ = 0, as diffusers does,
    so that a shared generator stays in step.
    """
    check_choice("prediction_type", prediction_type, PREDICTION_TYPES)
    eta = check_float("eta", eta, min_value=0.0, max_value=1.0)
    check_bool("clip_sample", clip_sample)
    check_bool("use_clipped_model_output", use_clipped_model_output)
    tt = _check_step_t("t", t, 0, s.num_timesteps - 1)
    tp = _check_step_t("t_prev", t_prev, -1, s.num_timesteps - 2)
    if bool((tp >= tt).any()):
        raise ValueError(
            f"t_prev must be smaller than t (the sampler walks towards 0), got t={tt.tolist()}, t_prev={tp.tolist()}"
        )
    _check_output_shape(model_output, x_t)
    return _ddim_update(s, model_output, tt, tp, x_t, eta, prediction_type, clip_sample, use_clipped_model_output,
                        noise, generator)


def _check_output_shape(model_output: torch.Tensor, x_t: torch.Tensor) -> None:
    if model_output.shape != x_t.shape:
        raise ValueError(f"model_output has shape {tuple(model_output.shape)} but x_t has {tuple(x_t.shape)}")


def _ddim_update(s: NoiseSchedule, model_output: torch.Tensor, tt: torch.Tensor, tp: torch.Tensor, x_t: torch.Tensor,
                 eta: float, prediction_type: PredictionType, clip_sample: bool, use_clipped_model_output: bool,
                 noise: torch.Tensor | None, generator: torch.Generator | None) -> StepOutput:
    """The DDIM update of :func:`ddim_step` (eqs. 12 and 16), unchecked: :func:`ddim_step` and :func:`sample` check."""
    x0, eps = split_prediction(s, model_output, x_t, tt, prediction_type)
    if clip_sample:
        x0 = x0.clamp(-1.0, 1.0)
    a_t, a_prev = alpha_bar_at(s, tt, like=x_t), alpha_bar_at(s, tp, like=x_t)  # ᾱ_{−1} = 1
    if use_clipped_model_output:
        eps = (x_t - a_t**0.5 * x0) / (1 - a_t) ** 0.5
    sigma = eta * ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)) ** 0.5
    x_prev = a_prev**0.5 * x0 + (1 - a_prev - sigma**2) ** 0.5 * eps
    if eta > 0:
        x_prev = x_prev + sigma * _step_noise(noise, generator, x_t)
    return StepOutput(x_prev, x0)


# ============================================================================ the model call
def _bind_model(model: DiffusionModel, cond: torch.Tensor | None = None, guidance_scale: float = 1.0) -> ModelFn:
    """``model`` as a function (x_t, t) → output: ``cond`` bound, classifier-free guidance applied by
    :func:`course_lib.guidance.cfg_model` when s ≠ 1 (one batched call on [x, x] with [cond, −1…]), the
    network run by :func:`course_lib.settings.in_half_precision` (a GPU's float16/bfloat16 autocast, as in
    training; float32 on a CPU) and its output returned in float32, and
    the first output checked to be shaped like x_t (:func:`course_lib.forward.check_model_output`).
    With ``cond=None`` the model is called as ``model(x_t, t)``."""
    net = cfg_model(model, guidance_scale) if cond is not None and guidance_scale != 1.0 else model
    checked = False

    def call(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        nonlocal checked
        out = in_half_precision(net, x, t) if cond is None else in_half_precision(net, x, t, cond=cond)
        if not checked:
            checked = check_model_output(out, x) is out
        return out

    return call


# ============================================================================ the sampling loop
class SampleResult(NamedTuple):
    """``sample(..., return_trajectory=True)``: final images, x_t after every step (trajectory[0] is the
    starting noise, so N+1 entries, all in the x_t scale), the x̂₀ guess of every step (N entries), and
    the timesteps the network saw (LongTensor for ddpm/ddim, float t(σ) for the σ-samplers)."""

    images: torch.Tensor
    trajectory: list[torch.Tensor]
    x0_preds: list[torch.Tensor]
    timesteps: torch.Tensor


def sample(
    model: DiffusionModel,
    s: NoiseSchedule,
    shape: Sequence[int],
    *,
    sampler: Sampler = "dpmpp_2m_sde",
    num_steps: int = 50,
    eta: float = 0.0,
    cond: torch.Tensor | None = None,
    guidance_scale: float = 1.0,
    generator: torch.Generator | None = None,
    progress: bool = True,
    return_trajectory: bool = False,
    spacing: SigmaSpacing | None = None,
    sigma_max: float | None = None,
    prediction_type: PredictionType | None = None,
    clip_sample: bool | None = None,
    round_timesteps: bool = False,
    device: torch.device | str | None = None,
    noise: torch.Tensor | None = None,
) -> torch.Tensor | SampleResult:
    """Draw images from pure noise with any sampler (chapters 05–07). Returns (B, C, H, W), or a
    :class:`SampleResult` with ``return_trajectory=True``.

    ``model(x_t, t, cond=None)`` returns a tensor like x_t (ε, x₀ or v as ``prediction_type`` says);
    t is a (B,) tensor: LongTensor for ddpm/ddim, float32 for euler/heun/dpmpp_2m (a fractional
    timestep, see :class:`course_lib.solvers.DiscreteDenoiser`). Run it under ``model.eval()``;
    sampling runs under no_grad.

    Samplers (all start from the same x_T = z ~ N(0, I) drawn from ``generator``):

    - ``ddpm``: ancestral sampling (:func:`ddpm_step`). With num_steps = T it visits every step. With
      fewer steps it samples the DDPM posterior q(x_{t_prev} | x_t, x̂₀) between the visited timesteps
      ("respacing", Nichol & Dhariwal 2021, §4) — what diffusers' DDPMScheduler does after
      ``set_timesteps(N)``, and the same as :func:`ddim_step` with η = 1 and ε̂ re-derived from x̂₀.
    - ``ddim``: :func:`ddim_step` with ``eta`` (0 = deterministic).
    - ``euler`` / ``heun`` / ``dpmpp_2m``: ODE solvers in σ-space (:mod:`course_lib.solvers`:
      ``sample_euler``, ``sample_heun``, ``sample_dpmpp_2m``) started at x_σ = √(1+σ_max²)·z.
      num_steps counts steps; network calls are N for euler and dpmpp_2m, 2N − 1 for heun.
    - ``dpmpp_2m_sde``: the same multistep solver for the reverse SDE (``solvers.sample_dpmpp_2m_sde``),
      N calls; its fresh noise at every step comes from ``generator``.

    Defaults: chapter 06's recommendation, one recipe for every chapter. SDE-DPM-Solver++(2M) on Karras
    steps from σ = 80 (``spacing=None``: ``karras`` with ``sigma_max`` = min(:data:`~course_lib.solvers.EDM_SIGMA_MAX`,
    σ(T−1)) for the σ-samplers); it is the best sampler of chapter 06's steps-versus-FID table (its
    figures: README "Performance" → "Steps versus quality (chapter 06)", from ``benchmarks/samplers.py
    --profile cpu --spacings``). Where a chapter needs a
    sampler without fresh noise (DDIM inversion, interpolating between two noises, the copier of
    chapter 10) it takes DDIM, whose default grid is ``trailing`` (``spacing=None`` for ddpm/ddim):
    chapter 06 §5 shows that ``leading`` steps (diffusers' DDIM default) begin at t = T − T/N, where
    x_t still holds part of the picture that pure noise z does not have, and draw fainter digits.

    ``spacing`` places the N steps (:func:`timesteps`): ``leading`` | ``trailing`` | ``linspace`` for every
    sampler, and ``karras`` (EDM eq. 5 between σ(0) and σ(T−1)) for the σ-samplers. ``sigma_max``
    (karras only: :func:`course_lib.solvers.check_sigma_max`) starts the σ-samplers lower than σ(T−1): the
    cosine schedule's σ(T−1) ≈ 20,000 would spend most Karras steps at noise levels where nothing is
    left to decide, so chapter 06 uses EDM's σ_max = 80 (Karras et al. 2022, Table 1); x_T is still z,
    read as pure noise.
    ``clip_sample`` (None = True for ddpm and ddim, as in diffusers' schedulers, False for the σ-samplers)
    clamps x̂₀ to [−1, 1]; pass False for pictures that do not live in [−1, 1] (latents, 2-D points). ``prediction_type``
    (None: the model's own ``prediction_type`` attribute, else "epsilon"; see
    :func:`course_lib.forward.prediction_type_of`) says how to read the model's output.
    ``round_timesteps`` (σ-samplers) gives the network the nearest integer t, as diffusers'
    DPMSolverMultistepScheduler does.

    Classifier-free guidance: with ``cond`` (LongTensor of labels (B,), −1 = no condition) and
    ``guidance_scale`` s ≠ 1, each step makes one batched call on [x, x] with labels [cond, −1] and
    combines the two halves (:func:`course_lib.guidance.cfg_model`). ``device``: default the model's
    parameters', else the generator's, else CPU.

    ``noise``: the starting x_T (shaped ``shape``) instead of a fresh draw — e.g. the output of
    :func:`ddim_invert` or a :func:`slerp` between two noises (chapter 06). ``generator`` then only
    draws the per-step noise of ddpm, ddim with η > 0 and dpmpp_2m_sde.
    """
    check_choice("sampler", sampler, SAMPLERS)
    T = s.num_timesteps
    num_steps = capped(check_int("num_steps", num_steps, min_value=1, max_value=T))  # a gpu dry run: a few steps
    eta = check_float("eta", eta, min_value=0.0, max_value=1.0)
    if eta != 0.0 and sampler != "ddim":
        raise ValueError(f"eta={eta} is only used by sampler='ddim'; leave eta=0 for sampler={sampler!r}")
    discrete = sampler in DISCRETE_SAMPLERS
    if spacing is None:  # the recommended grid: karras from EDM's σ = 80 for the σ-samplers
        spacing = "trailing" if discrete else "karras"
        if not discrete and sigma_max is None:
            sigma_max = min(EDM_SIGMA_MAX, float(schedule_sigmas(s)[-1]))
    check_choice("spacing", spacing, SPACINGS if discrete else SIGMA_SPACINGS)
    sigma_max = check_sigma_max(spacing, sigma_max, s)
    prediction_type = prediction_type_of(model, prediction_type)
    if clip_sample is None:  # pixel pictures live in [-1, 1]: clamp x̂₀ on the DDPM/DDIM grids (chapter 06 §5)
        clip_sample = discrete
    check_bool("clip_sample", clip_sample)
    check_bool("round_timesteps", round_timesteps)
    check_bool("progress", progress)
    check_bool("return_trajectory", return_trajectory)
    shape, dev, cond, guidance_scale = check_sampling_inputs(model, shape, noise=noise, generator=generator, cond=cond,
                                                             guidance_scale=guidance_scale, device=device)
    if cond is not None and guidance_scale != 1.0 and cond.is_floating_point():  # labels (B,) or token ids (B, L)
        raise ValueError("guidance needs cond as a LongTensor of labels (B,) (or token ids (B, L)), "
                         "where -1 means 'no condition'")

    model_fn = _bind_model(model, cond, guidance_scale)
    with torch.no_grad():
        z = gaussian_noise(shape, torch.empty(0, device=dev), generator) if noise is None else noise.to(dev)
        if discrete:
            return _sample_discrete(model_fn, s, z, sampler, num_steps, eta, spacing, prediction_type,
                                    clip_sample, generator, progress, return_trajectory)
        return _sample_sigma(model_fn, s, z, sampler, num_steps, spacing, sigma_max, prediction_type, clip_sample,
                             round_timesteps, generator, progress, return_trajectory)


def _sample_discrete(model_fn: ModelFn, s: NoiseSchedule, x: torch.Tensor, sampler: DiscreteSampler,
                     num_steps: int, eta: float, spacing: Spacing, prediction_type: PredictionType, clip_sample: bool,
                     generator: torch.Generator | None, progress: bool, keep: bool) -> torch.Tensor | SampleResult:
    """The ddpm/ddim loop over the visited timesteps t_0 > t_1 > … > t_{N−1}, then t = −1 (clean)."""
    ts = timesteps(s.num_timesteps, num_steps, spacing)
    prev = torch.cat([ts[1:], torch.tensor([-1])])
    traj, x0s = [x], []
    for i in tqdm(range(num_steps), disable=not progress, desc=sampler, leave=False):
        t, t_prev = int(ts[i]), int(prev[i])
        out = model_fn(x, torch.full((x.shape[0],), t, dtype=torch.long, device=x.device))
        if sampler == "ddpm":
            step = _ancestral_step(s, out, torch.tensor(t), torch.tensor(t_prev), x, prediction_type,
                                   clip_sample, None, generator)
        else:
            step = _ddim_update(s, out, torch.tensor(t), torch.tensor(t_prev), x, eta, prediction_type,
                                clip_sample, False, None, generator)
        x = step.prev_sample
        if keep:
            traj.append(x)
            x0s.append(step.pred_original_sample)
    return SampleResult(x, traj, x0s, ts) if keep else x


def _sample_sigma(model_fn: ModelFn, s: NoiseSchedule, z: torch.Tensor, sampler: SigmaSampler,
                  num_steps: int, spacing: SigmaSpacing, sigma_max: float | None, prediction_type: PredictionType,
                  clip_sample: bool, round_timesteps: bool, generator: torch.Generator | None, progress: bool,
                  keep: bool) -> torch.Tensor | SampleResult:
    """Run one of the σ-space solvers from x_T = z and return to the x_t scale (σ = 0: x_σ = x₀)."""
    sigmas = sigma_grid(s, num_steps, spacing, sigma_max=sigma_max)
    denoiser = DiscreteDenoiser(model_fn, s, prediction_type=prediction_type, clip_sample=clip_sample,
                                round_timesteps=round_timesteps)
    traj, x0s = [z], []

    def record(i: int, x_next: torch.Tensor, denoised: torch.Tensor) -> None:
        traj.append(x_next / (1 + float(sigmas[i + 1]) ** 2) ** 0.5)  # x_t = √ᾱ x_σ
        x0s.append(denoised)

    x = z * (1 + float(sigmas[0]) ** 2) ** 0.5  # x_σ = x_T/√ᾱ
    extra = {"generator": generator} if sampler in STOCHASTIC_SIGMA_SAMPLERS else {}
    x = SIGMA_SOLVERS[sampler](denoiser, x, sigmas, progress=progress, callback=record if keep else None, **extra)
    return SampleResult(x, traj, x0s, denoiser.timestep(sigmas[:-1])) if keep else x


# ============================================================================ moving around in noise space (chapter 06)
def slerp(z0: torch.Tensor, z1: torch.Tensor, weight: float | torch.Tensor) -> torch.Tensor:
    """Spherical linear interpolation between two noise tensors, row by row (dim 0 is the batch).

    slerp(z₀, z₁; w) = sin((1−w)θ)/sin θ · z₀ + sin(wθ)/sin θ · z₁,  cos θ = ⟨z₀, z₁⟩/(‖z₀‖‖z₁‖)
    (Shoemake 1985; for generative models White 2016, "Sampling Generative Networks"; the DDIM paper
    interpolates x_T this way, Song et al. 2021, §5.3; chapter 06).

    Why not a straight line: two independent N(0, I) draws in d dimensions both have length ≈ √d
    and are almost perpendicular, so their midpoint (z₀ + z₁)/2 has length ≈ √(d/2) — a much too
    quiet x_T that the model never saw. Along the arc the length stays ≈ √d.

    ``weight``: a number, or a tensor (B,) with one weight per row; w = 0 gives z₀, w = 1 gives z₁.
    Rows that are (nearly) parallel, where sin θ ≈ 0, fall back to the straight line.
    """
    if not isinstance(z0, torch.Tensor) or not isinstance(z1, torch.Tensor) or z0.shape != z1.shape or z0.dim() < 1:
        got = [tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__ for z in (z0, z1)]
        raise ValueError(f"z0 and z1 must be tensors of the same shape (B, ...), got {got[0]} and {got[1]}")
    if isinstance(weight, torch.Tensor):
        if weight.dim() != 1 or weight.shape[0] != z0.shape[0] or not weight.is_floating_point():
            raise ValueError(f"weight as a tensor must be float of shape ({z0.shape[0]},), got {weight.dtype} "
                             f"{tuple(weight.shape)}")
        w = weight.to(z0.device, torch.float64)
    else:
        w = torch.full((z0.shape[0],), check_float("weight", weight), dtype=torch.float64, device=z0.device)
    a, b = z0.flatten(1).double(), z1.flatten(1).double()  # (B, D)
    cos = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-30)
    theta = cos.clamp(-1.0, 1.0).acos()  # (B,)
    sin = theta.sin()
    parallel = sin.abs() < 1e-6
    safe = torch.where(parallel, torch.ones_like(sin), sin)
    c0 = torch.where(parallel, 1 - w, ((1 - w) * theta).sin() / safe)[:, None]  # (B, 1)
    c1 = torch.where(parallel, w, (w * theta).sin() / safe)[:, None]
    return (c0 * a + c1 * b).reshape(z0.shape).to(z0.dtype)


def ddim_invert(
    model: DiffusionModel,
    s: NoiseSchedule,
    x0: torch.Tensor,
    *,
    num_steps: int = 50,
    spacing: Spacing = "leading",
    prediction_type: PredictionType | None = None,
    progress: bool = False,
    return_trajectory: bool = False,
) -> torch.Tensor | SampleResult:
    """Run deterministic DDIM backwards: a clean image x₀ → the noise x_T that DDIM turns back into it.

    DDIM with η = 0 is an Euler step of an ODE (Song et al. 2021, "DDIM", §4.3, eq. 14), and an ODE
    can be run either way. Each step goes *up* from level t to the next visited level t' > t:

        x̂₀, ε̂ from model(x_t, t);   x_t' = √ᾱ_t' x̂₀ + √(1 − ᾱ_t') ε̂

    — the η = 0 step of :func:`ddim_step` with t and t_prev swapped. The first step starts from the
    clean image itself and asks the network at the first visited level. Inversion reads ε̂ at the
    lower end of each step, the sampler at the upper end (where each of them starts), so the round trip ``sample(..., sampler="ddim", noise=ddim_invert(...))`` is exact only as the steps
    shrink; the leftover error is what chapter 06 measures. ``num_steps`` and ``spacing`` must match
    the sampler's. Returns x_T (the x_t scale, shaped like x₀), or a :class:`SampleResult` whose
    trajectory runs from x₀ up to x_T and whose timesteps ascend.
    """
    T = s.num_timesteps
    num_steps = check_int("num_steps", num_steps, min_value=1, max_value=T)
    check_choice("spacing", spacing, SPACINGS)
    prediction_type = prediction_type_of(model, prediction_type)
    check_bool("progress", progress)
    check_bool("return_trajectory", return_trajectory)
    if not isinstance(x0, torch.Tensor) or x0.dim() < 2 or not x0.is_floating_point():
        got = tuple(x0.shape) if isinstance(x0, torch.Tensor) else type(x0).__name__
        raise ValueError(f"x0 must be a float tensor of images (B, C, H, W), got {got}")
    model_fn = _bind_model(model)
    ts = timesteps(T, num_steps, spacing).flip(0)  # ascending t_0 < t_1 < … < t_{N−1}
    x, traj, x0s = x0, [x0], []
    with torch.no_grad():
        for i in tqdm(range(num_steps), disable=not progress, desc="ddim inversion", leave=False):
            t_from, t_to = int(ts[max(i - 1, 0)]), int(ts[i])  # step i: level t_{i−1} → t_i (i = 0: x₀ → t_0)
            out = model_fn(x, torch.full((x.shape[0],), t_from, dtype=torch.long, device=x.device))
            x0_hat, eps = split_prediction(s, out, x, t_from, prediction_type)
            if i == 0:
                x0_hat = x0  # the start is the clean image itself, not a noisy x_{t_0}
            a_to = alpha_bar_at(s, t_to, like=x)
            x = a_to.sqrt() * x0_hat + (1 - a_to).sqrt() * eps
            if return_trajectory:
                traj.append(x)
                x0s.append(x0_hat)
    return SampleResult(x, traj, x0s, ts) if return_trajectory else x
