"""Negative prompts and prompt weighting in classifier-free guidance, and how well they work (chapter 13).

Classifier-free guidance (Ho & Salimans 2022, eq. 6; chapter 07, :func:`course_lib.guidance.cfg_model`)
walks from the *unconditional* prediction towards the conditional one and past it:

    ε̃ = ε_∅ + s · (ε_c − ε_∅)

A **negative prompt** (popularised by the Stable Diffusion web UIs; diffusers' ``negative_prompt``) puts the
prediction for an unwanted prompt n where ε_∅ stood:

    ε̃ = ε_n + s · (ε_c − ε_n)                                   (:func:`negative_cfg_model`)

so each step walks *away* from what n describes as well as towards c. **Prompt weighting** in the sense of
composable diffusion (Liu et al. 2022, "Compositional visual generation with composable diffusion models",
eq. 9) adds several prompts, each with its own weight, around the unconditional prediction:

    ε̃ = ε_∅ + Σ_k w_k · (ε_k − ε_∅)                              (:func:`weighted_cfg_model`)

and a negative weight pushes away from a prompt. The two agree: the negative prompt is the weighting
w_c = s, w_n = 1 − s (then the ε_∅ terms cancel, 1 − s − (1 − s) = 0), which the tests check. As in
:func:`course_lib.guidance.cfg_combine`, the combination is right for ε-, x₀- and v-predictions alike.

:func:`negative_prompt_benchmark` measures chapter 11's latent pipeline with and without a negative prompt:
how often the scene judge sees what the prompt asked *and* no trace of what the negative prompt named.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from .forward import DiffusionModel, check_model_output, prediction_type_of
from .guidance import cfg_combine, check_guidance_scale, null_condition
from .latent.pipeline import LATENT_DDIM, LATENT_PREDICTION_TYPE, Pipeline
from .models.autoencoder import decode_latents
from .samplers import sample
from .scenes import parse_scene_prompt, scene_tokenize
from .settings import check_int


def _per_image(ids: torch.Tensor, batch: int, name: str) -> torch.Tensor:
    """Token ids (L,) or (B, L) as (B, L)."""
    if not isinstance(ids, torch.Tensor) or ids.is_floating_point() or ids.dim() not in (1, 2):
        got = tuple(ids.shape) if isinstance(ids, torch.Tensor) else type(ids).__name__
        raise ValueError(f"{name} must be token ids (L,) or (B, L) from course_lib.scenes.scene_tokenize, got {got}")
    if ids.dim() == 1:
        return ids[None].expand(batch, -1)
    if ids.shape[0] != batch:
        raise ValueError(f"{name} holds {ids.shape[0]} prompts for a batch of {batch}")
    return ids


def negative_cfg_model(model: DiffusionModel, guidance_scale: float, negative: torch.Tensor) -> DiffusionModel:
    """``model`` guided towards ``cond`` and away from the ``negative`` prompt: ε̃ = ε_n + s·(ε_c − ε_n).

    ``negative``: token ids (L,) for the whole batch or (B, L), the same length as the condition's.
    One batched call on [x_t, x_t] with [cond, negative] per step; ``cond=None`` calls the model
    unconditionally. A negative row of −1 (``guidance.null_condition``) is chapter 07's plain CFG.
    """
    s = check_guidance_scale(guidance_scale)

    def guided(x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if cond is None:
            return model(x_t, t)
        neg = _per_image(negative, x_t.shape[0], "negative").to(cond.device)
        if neg.shape != cond.shape:
            raise ValueError(f"negative prompt ids {tuple(neg.shape)} must be shaped like cond {tuple(cond.shape)}")
        t = torch.as_tensor(t, device=x_t.device).expand(x_t.shape[0]) if torch.as_tensor(t).dim() == 0 else t
        x_in = torch.cat([x_t, x_t])  # conditional half, then the negative half
        out = check_model_output(model(x_in, torch.cat([t, t]), cond=torch.cat([cond, neg])), x_in)
        out_cond, out_neg = out.chunk(2)
        return cfg_combine(out_neg, out_cond, s)  # the negative prediction stands where ε_∅ stood

    guided.prediction_type = prediction_type_of(model)  # type: ignore[attr-defined]
    return guided


def weighted_cfg_model(model: DiffusionModel, weights: Sequence[float]) -> DiffusionModel:
    """Composable guidance: ε̃ = ε_∅ + Σ_k w_k·(ε_k − ε_∅) (Liu et al. 2022, eq. 9), a negative w_k pushes away.

    The guided model takes ``cond`` as token ids (B, K, L): K prompts per picture, one per weight. One
    batched call on K + 1 copies of x_t (the K prompts, then the empty prompt).
    """
    w = [float(v) for v in weights]
    if not w:
        raise ValueError("weights must hold one weight per prompt, got none")

    def guided(x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if cond is None or cond.dim() != 3 or cond.shape[:2] != (x_t.shape[0], len(w)):
            got = None if cond is None else tuple(cond.shape)
            raise ValueError(f"cond must be token ids (B, K, L) = ({x_t.shape[0]}, {len(w)}, L), got {got}")
        b, k = x_t.shape[0], len(w)
        t = torch.as_tensor(t, device=x_t.device).expand(b) if torch.as_tensor(t).dim() == 0 else t
        conds = torch.cat([cond.transpose(0, 1).reshape(k * b, -1), null_condition(cond[:, 0])])  # (K·B + B, L)
        out = model(x_t.repeat(k + 1, *[1] * (x_t.dim() - 1)), t.repeat(k + 1), cond=conds)
        parts = out.chunk(k + 1)  # K prompts, then ε_∅
        return parts[-1] + sum(wk * (pk - parts[-1]) for wk, pk in zip(w, parts[:-1]))

    guided.prediction_type = prediction_type_of(model)  # type: ignore[attr-defined]
    return guided


def draw_with(pipe: Pipeline, guided: DiffusionModel, cond: torch.Tensor, *, seed: int = 0,
              num_steps: int | None = None) -> torch.Tensor:
    """Scenes (B, 3, 64, 64) from chapter 11's pipeline with a guided denoiser in place of plain CFG: the same
    DDIM (:data:`course_lib.latent.pipeline.LATENT_DDIM`), starting noise from ``seed``, decoder."""
    z = sample(guided, pipe.schedule, (len(cond), *pipe.latent_shape), sampler="ddim",
               num_steps=pipe.num_steps if num_steps is None else num_steps, cond=cond, guidance_scale=1.0,
               generator=torch.Generator().manual_seed(seed), progress=False, prediction_type=LATENT_PREDICTION_TYPE,
               **LATENT_DDIM)
    return decode_latents(pipe.autoencoder, z / pipe.scale_factor)


def shows_hat_colour(rows: torch.Tensor, colour: int) -> torch.Tensor:
    """Bool (N,): a judged scene row (N, 7) shows a hat of ``colour`` (an index of ``hats.HAT_COLOURS``) on either side."""
    return ((rows[:, 1] == 1) & (rows[:, 2] == colour)) | ((rows[:, 4] == 1) & (rows[:, 5] == colour))


def negative_prompt_benchmark(pipe: Pipeline, prompt: str, negative: str, colour: int, *, per_prompt: int = 32,
                              guidance_scale: float | None = None, seed: int = 0) -> dict[str, Any]:
    """``prompt`` drawn ``per_prompt`` times with the empty prompt as the negative (chapter 11's CFG) and with
    ``negative``, from the same starting noises. For each: ``asked`` (the judge sees what the prompt asked),
    ``unwanted`` (a hat of ``colour`` anywhere) and ``success`` (asked and no unwanted hat). Also the pictures."""
    from .models.scene_judge import judge_scenes

    n = check_int("per_prompt", per_prompt, min_value=1)
    s = pipe.guidance_scale if guidance_scale is None else check_guidance_scale(guidance_scale)
    ids = scene_tokenize([prompt] * n)
    asked = parse_scene_prompt(prompt)
    out: dict[str, Any] = {}
    for name, neg in (("plain", null_condition(ids[0])), ("negative", scene_tokenize(negative))):
        images = draw_with(pipe, negative_cfg_model(pipe.denoiser, s, neg), ids, seed=seed)
        rows = judge_scenes(images)
        ok = ((rows == asked) | (asked == -1)).all(1)
        bad = shows_hat_colour(rows, colour)
        out[name] = {"asked": float(ok.float().mean()), "unwanted": float(bad.float().mean()),
                     "success": float((ok & ~bad).float().mean()), "images": images}
    return out


__all__ = ["draw_with", "negative_cfg_model", "negative_prompt_benchmark", "shows_hat_colour", "weighted_cfg_model"]
