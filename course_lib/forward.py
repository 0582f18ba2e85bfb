"""The forward process: adding static, one step or one jump at a time, and reading a prediction (chapters 01 and 03).

Notation: x_t = √ᾱ_t x₀ + √(1−ᾱ_t) ε, ε ~ N(0, I);  v = √ᾱ_t ε − √(1−ᾱ_t) x₀.

- one step:   q(x_t | x_{t−1}) = N(√α_t x_{t−1}, β_t I)          (Ho et al. 2020, eq. 2)
- one jump:   q(x_t | x₀) = N(√ᾱ_t x₀, (1−ᾱ_t) I)               (eq. 4)
- posterior:  q(x_{t−1} | x_t, x₀) = N(μ̃_t, β̃_t I)                (eqs. 6–7)
- a network may predict ε, x₀ or v (Salimans & Ho 2022, "Progressive Distillation", §4 and
  appendix D); the three are interchangeable given x_t and t (:func:`convert`, :func:`convert_at`).

A *diffusion model* (:data:`DiffusionModel`) is any callable ``model(x_t, t, cond=None)`` returning a
tensor shaped like x_t (ε, x₀ or v, as its :data:`PredictionType` says); samplers and guidance take one.
"""

from __future__ import annotations

from typing import Any, Callable, Literal, NamedTuple, Sequence, get_args

import torch

from .schedules import NoiseSchedule, alpha_bar_at
from .settings import check_choice

PredictionType = Literal["epsilon", "sample", "v_prediction"]
PREDICTION_TYPES: tuple[str, ...] = get_args(PredictionType)

#: ``model(x_t, t, cond=None) -> tensor shaped like x_t`` (ε, x₀ or v): what samplers and guidance take.
DiffusionModel = Callable[..., torch.Tensor]
#: The class label that means "no condition" in ``cond`` (the empty token of classifier-free guidance,
#: chapter 07): the label embeddings map it to a learned empty token, guidance asks for it. Vector conditions
#: say "none" with a row of NaNs instead.
NULL_LABEL = -1


def check_model_output(out: Any, x_t: torch.Tensor) -> torch.Tensor:
    """``out`` if it is a tensor shaped like ``x_t``; else ValueError naming both shapes."""
    if not isinstance(out, torch.Tensor) or out.shape != x_t.shape:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"the model returned shape {got} for an input x_t of shape {tuple(x_t.shape)}; "
                         "a denoiser must return a tensor shaped like x_t")
    return out


def gaussian_noise(shape: Sequence[int], like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Standard normal noise of ``shape`` drawn on the generator's device (CPU by default; ``like``'s
    device without a generator) and moved to ``like``'s device and dtype — so a CPU generator gives the
    same static on every machine."""
    dev = generator.device if generator is not None else like.device
    return torch.randn(tuple(shape), generator=generator, device=dev, dtype=like.dtype).to(like.device)


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


def noise_report(x: torch.Tensor, reference: torch.Tensor, reference_name: str = "reference") -> dict[str, float]:
    """Summary numbers for "is x just N(0, I) noise?" (chapter 01, the end of the forward process).

    Mean and standard deviation (0 and 1 for noise), the Kolmogorov–Smirnov p-value against N(0, 1)
    (scipy's ``kstest``), the correlation of horizontally neighbouring pixels (0 for noise: it has no
    edges) and the correlation with ``reference`` (the clean picture), keyed ``corr. with <reference_name>``.
    """
    from scipy.stats import kstest  # scipy comes with scikit-learn

    flat = x.flatten()
    neighbours = torch.corrcoef(torch.stack([x[..., :-1].flatten(), x[..., 1:].flatten()]))[0, 1]
    with_ref = torch.corrcoef(torch.stack([flat, reference.flatten()]))[0, 1]
    return {"mean": flat.mean().item(), "std": flat.std().item(),
            "KS p-value vs N(0,1)": float(kstest(flat.numpy(), "norm").pvalue),
            "neighbour corr.": neighbours.item(), f"corr. with {reference_name}": with_ref.item()}


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
    a_bar = alpha_bar_at(s, t, like=x_t)
    a_prev = alpha_bar_at(s, t_prev, like=x_t)  # ᾱ_{−1} = 1
    alpha = a_bar / a_prev
    beta = 1 - alpha
    mean = (a_prev.sqrt() * beta / (1 - a_bar)) * x0 + (alpha.sqrt() * (1 - a_prev) / (1 - a_bar)) * x_t
    var = (1 - a_prev) / (1 - a_bar) * beta
    return mean, var


def target(
    s: NoiseSchedule, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor,
    prediction_type: PredictionType = "epsilon",
) -> torch.Tensor:
    """What a network is trained to output at (x_t, t): ε, x₀ or v = √ᾱ_t ε − √(1−ᾱ_t) x₀ (chapter 03)."""
    check_choice("prediction_type", prediction_type, PREDICTION_TYPES)
    if prediction_type != "v_prediction":  # ᾱ is not needed (nor looked up) for ε and x₀
        return noise if prediction_type == "epsilon" else x0
    return target_at(alpha_bar_at(s, t, like=x0), x0, noise, prediction_type)


def target_at(
    a_bar: torch.Tensor, x0: torch.Tensor, noise: torch.Tensor, prediction_type: PredictionType = "epsilon"
) -> torch.Tensor:
    """:func:`target` at a given ᾱ (broadcastable against x₀) instead of an integer t."""
    check_choice("prediction_type", prediction_type, PREDICTION_TYPES)
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "sample":
        return x0
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
    prediction_type: PredictionType = "epsilon",
) -> Prediction:
    """Turn an ε, x₀ or v output into both (x̂₀, ε̂) using x_t = √ᾱ x₀ + √(1−ᾱ) ε.

    - ε:  x̂₀ = (x_t − √(1−ᾱ) ε̂)/√ᾱ
    - x₀: ε̂ = (x_t − √ᾱ x̂₀)/√(1−ᾱ)
    - v:  x̂₀ = √ᾱ x_t − √(1−ᾱ) v,  ε̂ = √ᾱ v + √(1−ᾱ) x_t   (Salimans & Ho 2022, app. D)
    """
    check_choice("prediction_type", prediction_type, PREDICTION_TYPES)
    return split_prediction_at(alpha_bar_at(s, t, like=x_t), model_output, x_t, prediction_type)


def split_prediction_at(
    a_bar: torch.Tensor | float, model_output: torch.Tensor, x_t: torch.Tensor,
    prediction_type: PredictionType = "epsilon",
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
               prediction_type: PredictionType = "epsilon") -> torch.Tensor:
    """The clean-image guess x̂₀ from any output type (see :func:`split_prediction`)."""
    return split_prediction(s, model_output, x_t, t, prediction_type).x0


def predict_eps(s: NoiseSchedule, model_output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor | int,
                prediction_type: PredictionType = "epsilon") -> torch.Tensor:
    """The noise guess ε̂ from any output type (see :func:`split_prediction`)."""
    return split_prediction(s, model_output, x_t, t, prediction_type).eps


def convert(s: NoiseSchedule, model_output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor | int,
            source: PredictionType, dest: PredictionType) -> torch.Tensor:
    """Re-express an output of type ``source`` as type ``dest`` (ε, x₀ or v)."""
    check_choice("dest", dest, PREDICTION_TYPES)
    x0, eps = split_prediction(s, model_output, x_t, t, source)
    return target(s, x0, eps, t, dest)


def convert_at(a_bar: torch.Tensor, model_output: torch.Tensor, x_t: torch.Tensor,
               source: PredictionType, dest: PredictionType) -> torch.Tensor:
    """:func:`convert` at a given ᾱ (broadcastable against x_t), e.g. a fractional t's (chapter 07's
    classifier guidance reads ε̂, steers it, and hands it back in the network's own type)."""
    check_choice("dest", dest, PREDICTION_TYPES)
    x0, eps = split_prediction_at(a_bar, model_output, x_t, source)
    return target_at(a_bar, x0, eps, dest)
