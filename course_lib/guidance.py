"""Guidance: steering a diffusion model towards a class — the math only (chapter 07).

Two ways to steer a diffusion model towards a class y, each packaged as a *denoiser*
``model(x_t, t, cond=None)`` (:data:`course_lib.forward.DiffusionModel`) that every sampler of
:func:`course_lib.samplers.sample` accepts:

- **Classifier-free guidance** (Ho & Salimans 2022, "Classifier-Free Diffusion Guidance", eq. 6):
  one network trained with condition dropout predicts both ε_c = ε(x_t, y) and ε_∅ = ε(x_t, ∅);
  extrapolate past the conditional prediction:

      ε̃ = ε_∅ + s · (ε_c − ε_∅)

  with s = ``guidance_scale`` (the course's convention, book/notation.md): s = 0 is the
  unconditional model, s = 1 the plain conditional one, s > 1 guided. Ho & Salimans write
  ε̃ = (1 + w) ε_c − w ε_∅, i.e. **w = s − 1**. :func:`cfg_model` — the one way to apply CFG —
  evaluates both predictions in ONE batched forward pass on [x_t, x_t] with conditions [c, ∅]. The
  optional *guidance rescale* of Lin et al. 2023 ("Common Diffusion Noise Schedules and Sample Steps
  are Flawed", §3.4, eqs. 15–16) pulls the per-image standard deviation of the guided output back
  towards that of the conditional one, which tames the over-exposed look of large s.
- **Classifier guidance** (Dhariwal & Nichol 2021, "Diffusion Models Beat GANs on Image
  Synthesis", §4.2, Algorithm 2 and the ε̂ formula above it): with a classifier p_φ(y | x_t, t)
  trained on noisy images (:class:`course_lib.models.noisy_classifier.NoisyClassifier`),

      ε̂_guided = ε̂(x_t) − s · √(1−ᾱ_t) · ∇_{x_t} log p_φ(y | x_t),

  because ε̂/(−√(1−ᾱ_t)) is the score ∇ log p(x_t) and Bayes adds ∇ log p(y | x_t) to it; s is the
  classifier scale. :func:`classifier_guided_model` wraps any denoiser that way.

Both wrappers take the labels through ``cond``: ``sample(cfg_model(net, 3.0), s, shape, cond=labels)``.
``sample(net, s, shape, cond=labels, guidance_scale=3.0)`` is the same as the first (sample calls
:func:`cfg_model` itself). Label −1 (:data:`~course_lib.forward.NULL_LABEL`, re-exported here) means
"no condition"; for embedding-vector conditions a row of NaNs does (the convention of the U-Net and of
``objectives.drop_condition``).
"""

from __future__ import annotations

from typing import Any, Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

from .forward import (
    NULL_LABEL,
    DiffusionModel,
    PredictionType,
    check_model_output,
    convert_at,
    prediction_type_of,
    split_prediction_at,
)
from .schedules import NoiseSchedule, alpha_bar_at
from .settings import check_bool, check_float

GuidanceMethod = Literal["cfg", "classifier"]  # classifier-free, or steered by a noisy classifier
GUIDANCE_METHODS: tuple[str, ...] = get_args(GuidanceMethod)


# ============================================================================ classifier-free guidance
def check_guidance_scale(guidance_scale: Any, name: str = "guidance_scale") -> float:
    """A guidance scale as a float ≥ 0; ValueError (naming ``name``) for negatives, NaN, inf or non-numbers."""
    return check_float(name, guidance_scale, min_value=0.0)


def cfg_combine(eps_uncond: torch.Tensor, eps_cond: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    """Classifier-free guidance: ε̃ = ε_∅ + s·(ε_c − ε_∅) (Ho & Salimans 2022, eq. 6, w = s − 1; chapter 07).

    s = 1 is the plain conditional model, s = 0 the unconditional one. Because x̂₀ and v are affine
    in ε at fixed (x_t, t), the same combination is correct for x₀- and v-prediction outputs.
    """
    return eps_uncond + guidance_scale * (eps_cond - eps_uncond)


def rescale_guidance(guided: torch.Tensor, cond_pred: torch.Tensor, rescale: float) -> torch.Tensor:
    """Guidance rescale (Lin et al. 2023, §3.4, eqs. 15–16): with σ = per-image std over (C, H, W),

        x_rescaled = x_cfg · σ(x_c)/σ(x_cfg),    x_final = φ·x_rescaled + (1 − φ)·x_cfg

    φ = ``rescale`` ∈ [0, 1]: 0 leaves plain CFG, 1 gives the guided direction with exactly the
    conditional prediction's spread. (The paper rescales a v-prediction; like diffusers we apply it
    to whatever the network outputs.)
    """
    phi = check_float("rescale", rescale, min_value=0.0, max_value=1.0)
    if phi == 0.0:
        return guided
    dims = tuple(range(1, guided.dim()))
    std_cond = cond_pred.std(dim=dims, keepdim=True)  # (B, 1, 1, 1)
    std_cfg = guided.std(dim=dims, keepdim=True).clamp(min=1e-12)
    return phi * guided * (std_cond / std_cfg) + (1 - phi) * guided


def null_condition(cond: torch.Tensor) -> torch.Tensor:
    """The "no condition" version of ``cond``: labels → −1 (:data:`NULL_LABEL`), vectors → rows of NaN."""
    if cond.is_floating_point():
        return torch.full_like(cond, float("nan"))
    return torch.full_like(cond, NULL_LABEL)


def _check_denoiser(name: str, model: Any) -> None:
    if not callable(model):
        raise ValueError(f"{name} must be a callable denoiser model(x_t, t, cond=None), got {type(model).__name__}")


def _per_item(t: torch.Tensor | int, x_t: torch.Tensor) -> torch.Tensor:
    """``t`` as one timestep per image (B,) on x_t's device (a scalar is repeated)."""
    t = torch.as_tensor(t, device=x_t.device)
    return t.expand(x_t.shape[0]) if t.dim() == 0 else t


def cfg_model(model: DiffusionModel, guidance_scale: float, *, rescale: float = 0.0) -> DiffusionModel:
    """``model`` with classifier-free guidance, as a denoiser ``guided(x_t, t, cond=None)`` (chapter 07).

    The one public way to apply CFG (``sample(..., guidance_scale=s)`` calls it). Each call with labels
    (B,) — or token ids (B, L), or embedding vectors (B, D) — makes ONE batched forward pass
    ``model(cat[x_t, x_t], cat[t, t], cond=cat[cond, ∅])`` and returns
    ε̃ = ε_∅ + s·(ε_c − ε_∅) (:func:`cfg_combine`), then the guidance rescale φ = ``rescale``
    (:func:`rescale_guidance`). s = ``guidance_scale`` ≥ 0 (w = s − 1 in Ho & Salimans' notation).
    With s = 1 and φ = 0 the conditional model is called alone (nothing to combine); with
    ``cond=None`` the model is called unconditionally. The model must accept ``cond`` with −1
    labels (or NaN rows) meaning "no condition", as the course U-Net does when trained with
    ``TrainConfig(cond_drop_prob > 0)``.
    """
    _check_denoiser("model", model)
    s = check_guidance_scale(guidance_scale)
    phi = check_float("rescale", rescale, min_value=0.0, max_value=1.0)

    def guided(x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if cond is None:
            return model(x_t, t)
        if not isinstance(cond, torch.Tensor) or cond.shape[:1] != x_t.shape[:1]:
            got = tuple(cond.shape) if isinstance(cond, torch.Tensor) else type(cond).__name__
            raise ValueError(f"cond must be a tensor with one entry per image, shape ({x_t.shape[0]}, ...), got {got}")
        if s == 1.0 and phi == 0.0:
            return model(x_t, t, cond=cond)
        t = _per_item(t, x_t)
        x_in = torch.cat([x_t, x_t])  # (2B, C, H, W): conditional half, then unconditional half
        out = check_model_output(model(x_in, torch.cat([t, t]), cond=torch.cat([cond, null_condition(cond)])), x_in)
        out_cond, out_uncond = out.chunk(2)  # (2B, …) -> two (B, …)
        return rescale_guidance(cfg_combine(out_uncond, out_cond, s), out_cond, phi)

    guided.prediction_type = prediction_type_of(model)  # type: ignore[attr-defined]  (guidance keeps the type)
    return guided


# ============================================================================ classifier guidance
def classifier_log_prob_grad(classifier: nn.Module, x_t: torch.Tensor, t: torch.Tensor,
                             labels: torch.Tensor) -> torch.Tensor:
    """∇_{x_t} log p_φ(y | x_t, t) for each image (same shape as x_t) — by autograd, even under no_grad.

    Rows with label −1 ("no condition") get a zero gradient.
    """
    keep = labels != NULL_LABEL  # (B,)
    with torch.enable_grad():
        x = x_t.detach().requires_grad_(True)
        log_probs = F.log_softmax(classifier(x, t), dim=-1)  # (B, K)
        picked = log_probs.gather(1, labels.clamp(min=0).long()[:, None])[:, 0]  # log p(y_i | x_i): (B,)
        (grad,) = torch.autograd.grad((picked * keep).sum(), x)  # each image's term depends on it alone
    return grad


def classifier_guided_model(
    model: DiffusionModel,
    classifier: nn.Module,
    schedule: NoiseSchedule,
    scale: float,
    *,
    prediction_type: PredictionType | None = None,
    pass_cond: bool = False,
) -> DiffusionModel:
    """``model`` steered by a noise-aware classifier, as a denoiser ``guided(x_t, t, cond=labels)`` (chapter 07).

    Dhariwal & Nichol 2021, §4.2 (Algorithm 2 and the ε̂ formula above it):

        ε̂_guided = ε̂(x_t) − s · √(1−ᾱ_t) · ∇_{x_t} log p_φ(y | x_t, t)

    with s = ``scale`` ≥ 0 (0: no guidance). ``classifier(x_t, t)`` returns logits; it sees the same
    (possibly fractional) t as the denoiser, and ᾱ_t comes from :func:`course_lib.schedules.alpha_bar_at`.
    An x₀- or v-predicting model (``prediction_type``; None: the model's own,
    :func:`course_lib.forward.prediction_type_of`) is read as ε̂, guided, and re-expressed in its
    own type (:func:`course_lib.forward.convert_at`). ``cond`` (required) holds the labels y (B,); −1
    rows are left unguided. ``pass_cond=True`` also hands the labels to ``model`` (guidance on top of a
    conditional model); by default the model is called as ``model(x_t, t)`` — for the course's
    conditional U-Net that is its unconditional prediction ε_∅.
    """
    _check_denoiser("model", model)
    if not isinstance(classifier, nn.Module):
        raise ValueError(f"classifier must be a torch.nn.Module classifier(x_t, t) -> logits, got {type(classifier).__name__}")
    if not isinstance(schedule, NoiseSchedule):
        raise ValueError(f"schedule must be a NoiseSchedule (course_lib.schedules.make_schedule), got {type(schedule).__name__}")
    s = check_guidance_scale(scale, "scale")
    prediction_type = prediction_type_of(model, prediction_type)
    check_bool("pass_cond", pass_cond)

    def guided(x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if cond is None or not isinstance(cond, torch.Tensor) or cond.is_floating_point() or cond.shape != x_t.shape[:1]:
            got = "None" if cond is None else (tuple(cond.shape) if isinstance(cond, torch.Tensor) else type(cond).__name__)
            raise ValueError(f"classifier guidance needs the labels to steer towards: cond as integer labels of shape "
                             f"({x_t.shape[0]},), e.g. sample(guided, schedule, shape, cond=labels); got {got}")
        out = model(x_t, t, cond=cond) if pass_cond else model(x_t, t)
        if s == 0.0:
            return out
        t = _per_item(t, x_t)
        a_bar = alpha_bar_at(schedule, t, like=x_t)  # (B, 1, 1, 1)
        eps = split_prediction_at(a_bar, out, x_t, prediction_type).eps
        grad = classifier_log_prob_grad(classifier, x_t, t, cond.to(x_t.device))
        eps = eps - s * (1 - a_bar) ** 0.5 * grad
        return convert_at(a_bar, eps, x_t, "epsilon", prediction_type)

    guided.prediction_type = prediction_type  # type: ignore[attr-defined]  (what sample() reads it as)
    return guided


__all__ = [
    "GUIDANCE_METHODS", "GuidanceMethod", "NULL_LABEL", "cfg_combine", "cfg_model", "check_guidance_scale",
    "classifier_guided_model", "classifier_log_prob_grad", "null_condition", "rescale_guidance",
]
