"""The forward process: adding static, one step or one jump at a time (chapters 01 and 03).

Notation: x_t = √ᾱ_t x₀ + √(1−ᾱ_t) ε, ε ~ N(0, I);  v = √ᾱ_t ε − √(1−ᾱ_t) x₀.

- one step:   q(x_t | x_{t−1}) = N(√α_t x_{t−1}, β_t I)          (Ho et al. 2020, eq. 2)
- one jump:   q(x_t | x₀) = N(√ᾱ_t x₀, (1−ᾱ_t) I)               (eq. 4)
- posterior:  q(x_{t−1} | x_t, x₀) = N(μ̃_t, β̃_t I)                (eqs. 6–7)
- a network may predict ε, x₀ or v (Salimans & Ho 2022, "Progressive Distillation", §4 and
  appendix D); the three are interchangeable given x_t and t.
"""

from __future__ import annotations

from typing import Literal, NamedTuple, get_args

import torch

from .schedules import NoiseSchedule, broadcast_to
from .settings import check_choice

PredictionType = Literal["epsilon", "sample", "v_prediction"]
PREDICTION_TYPES: tuple[str, ...] = get_args(PredictionType)


def _coef(values: torch.Tensor, t: torch.Tensor | int, like: torch.Tensor) -> torch.Tensor:
    """values[t] on ``like``'s device and dtype, shaped (B, 1, 1, …) to broadcast against it."""
    t = torch.as_tensor(t, dtype=torch.long, device=values.device)
    return broadcast_to(values[t], like).to(device=like.device, dtype=like.dtype)


def q_sample(
    s: NoiseSchedule,
    x0: torch.Tensor,
    t: torch.Tensor | int,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Jump straight to step t: return (x_t, ε) with x_t = √ᾱ_t x₀ + √(1−ᾱ_t) ε (eq. 4)."""
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
    t = torch.as_tensor(t, dtype=torch.long)
    t = t.expand(x0.shape[0]) if t.dim() == 0 else t  # one timestep per batch item
    return s.add_noise(x0, noise, t), noise


def q_step(
    s: NoiseSchedule, x_prev: torch.Tensor, t: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """One small step of static: x_t = √α_t x_{t−1} + √β_t ε (eq. 2). ``x_prev`` is x_{t−1}."""
    noise = torch.randn(x_prev.shape, generator=generator, dtype=x_prev.dtype).to(x_prev.device)
    return s.alphas[t].sqrt() * x_prev + s.betas[t].sqrt() * noise


def posterior_mean_variance(
    s: NoiseSchedule, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor | int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean μ̃_t and variance β̃_t of q(x_{t−1} | x_t, x₀) (Ho et al. 2020, eq. 7).

    μ̃_t = √ᾱ_{t−1} β_t/(1−ᾱ_t) · x₀ + √α_t (1−ᾱ_{t−1})/(1−ᾱ_t) · x_t,
    β̃_t = (1−ᾱ_{t−1})/(1−ᾱ_t) · β_t, with ᾱ_{−1} = 1.

    Computed from ᾱ alone (see :func:`posterior_between`), as diffusers does, so that at t = 0
    the mean is exactly x₀ in float32.
    """
    return posterior_between(s, x0, x_t, t, torch.as_tensor(t, dtype=torch.long) - 1)


def posterior_between(
    s: NoiseSchedule, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor | int, t_prev: torch.Tensor | int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of q(x_{t_prev} | x_t, x₀) for any earlier step t_prev < t (t_prev = −1: ᾱ = 1).

    The same formulas as :func:`posterior_mean_variance` with the one-step α_t replaced by the jump
    α' = ᾱ_t/ᾱ_prev and β' = 1 − α' (Nichol & Dhariwal 2021, §4 "respacing"; Song et al. 2021, eq. 16
    with η = 1). Written with ᾱ only, as diffusers' DDPMScheduler does, so that at t = 0 the mean is
    exactly x₀ in float32; for t_prev = t − 1 it is the usual DDPM posterior.
    """
    a_bar_padded = torch.cat([torch.ones(1, dtype=s.alphas_cumprod.dtype), s.alphas_cumprod])  # index t+1
    a_bar = _coef(s.alphas_cumprod, t, x_t)
    a_prev = _coef(a_bar_padded, torch.as_tensor(t_prev, dtype=torch.long) + 1, x_t)
    alpha = a_bar / a_prev
    beta = 1 - alpha
    mean = (a_prev.sqrt() * beta / (1 - a_bar)) * x0 + (alpha.sqrt() * (1 - a_prev) / (1 - a_bar)) * x_t
    var = (1 - a_prev) / (1 - a_bar) * beta
    return mean, var


def target(
    s: NoiseSchedule, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, prediction_type: str = "epsilon"
) -> torch.Tensor:
    """What a network is trained to output at (x_t, t): ε, x₀, or v = √ᾱ_t ε − √(1−ᾱ_t) x₀."""
    check_choice("prediction_type", prediction_type, PREDICTION_TYPES)
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "sample":
        return x0
    a_bar = _coef(s.alphas_cumprod, t, x0)
    return a_bar.sqrt() * noise - (1 - a_bar).sqrt() * x0


class Prediction(NamedTuple):
    """A network output read both ways: the clean-image guess x̂₀ and the noise guess ε̂."""

    x0: torch.Tensor
    eps: torch.Tensor


def prediction_type_of(model: object, prediction_type: str | None = None) -> str:
    """The output type to read ``model``'s output as: ``prediction_type`` when given, else the model's own
    ``model.prediction_type`` attribute (set by the course's trained models, e.g. the v-predicting
    class-conditional digits model), else ``"epsilon"``. Raises ValueError for an unknown type."""
    if prediction_type is None:
        prediction_type = getattr(model, "prediction_type", "epsilon")
    return check_choice("prediction_type", prediction_type, PREDICTION_TYPES)


def split_prediction(
    s: NoiseSchedule, model_output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor | int,
    prediction_type: str = "epsilon",
) -> Prediction:
    """Turn an ε, x₀ or v output into both (x̂₀, ε̂) using x_t = √ᾱ x₀ + √(1−ᾱ) ε.

    - ε:  x̂₀ = (x_t − √(1−ᾱ) ε̂)/√ᾱ
    - x₀: ε̂ = (x_t − √ᾱ x̂₀)/√(1−ᾱ)
    - v:  x̂₀ = √ᾱ x_t − √(1−ᾱ) v,  ε̂ = √ᾱ v + √(1−ᾱ) x_t   (Salimans & Ho 2022, app. D)
    """
    check_choice("prediction_type", prediction_type, PREDICTION_TYPES)
    return split_prediction_at(_coef(s.alphas_cumprod, t, x_t), model_output, x_t, prediction_type)


def split_prediction_at(
    a_bar: torch.Tensor, model_output: torch.Tensor, x_t: torch.Tensor, prediction_type: str = "epsilon"
) -> Prediction:
    """:func:`split_prediction` at a given ᾱ instead of an integer t (ᾱ broadcastable against x_t).

    Used by the σ-space samplers (chapter 06), whose noise levels fall between the training steps.
    """
    check_choice("prediction_type", prediction_type, PREDICTION_TYPES)
    sa, s1 = a_bar**0.5, (1 - a_bar) ** 0.5
    if prediction_type == "epsilon":
        return Prediction((x_t - s1 * model_output) / sa, model_output)
    if prediction_type == "sample":
        return Prediction(model_output, (x_t - sa * model_output) / s1)
    return Prediction(sa * x_t - s1 * model_output, sa * model_output + s1 * x_t)


def predict_x0(s: NoiseSchedule, model_output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor | int,
               prediction_type: str = "epsilon") -> torch.Tensor:
    """The clean-image guess x̂₀ from any output type (see :func:`split_prediction`)."""
    return split_prediction(s, model_output, x_t, t, prediction_type).x0


def predict_eps(s: NoiseSchedule, model_output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor | int,
                prediction_type: str = "epsilon") -> torch.Tensor:
    """The noise guess ε̂ from any output type (see :func:`split_prediction`)."""
    return split_prediction(s, model_output, x_t, t, prediction_type).eps


def convert(s: NoiseSchedule, model_output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor | int,
            source: str, dest: str) -> torch.Tensor:
    """Re-express an output of type ``source`` as type ``dest`` (ε, x₀ or v)."""
    check_choice("dest", dest, PREDICTION_TYPES)
    x0, eps = split_prediction(s, model_output, x_t, t, source)
    return target(s, x0, eps, t, dest)
