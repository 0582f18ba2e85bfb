"""Chapter 11's edits of existing pictures (img2img, inpainting, DDIM-inversion edits) and cross-attention maps."""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

from ..guidance import cfg_model
from ..models.autoencoder import decode_latents
from ..models.cross_attention import CrossAttentionUNet
from ..samplers import ddim_invert, ddim_step, sample
from ..scenes import MAX_SCENE_PROMPT_LENGTH, scene_tokenize
from ..schedules import timesteps
from ..settings import check_float
from .pipeline import DEFAULT_STRENGTH, LATENT_DDIM, LATENT_PREDICTION_TYPE, Pipeline, scene_latents

# ----------------------------------------------------------------------------- editing
def _check_images(images: torch.Tensor) -> torch.Tensor:
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3:
        got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be scenes (B, 3, 64, 64) in [-1, 1], got {got}")
    return images


def _prompt_ids(prompts: Sequence[str] | str, n: int) -> torch.Tensor:
    prompts = [prompts] * n if isinstance(prompts, str) else list(prompts)
    if len(prompts) != n:
        raise ValueError(f"give one prompt for all {n} pictures or one per picture, got {len(prompts)}")
    return scene_tokenize(prompts)


def denoise_from(pipe: Pipeline, z0: torch.Tensor, ids: torch.Tensor, strength: float, *, seed: int = 0,
                 guidance_scale: float | None = None, known_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Noise clean latents z0 to the level ``strength`` and run DDIM back down under the prompt ids.

    The sampler's first ``(1 − strength)·num_steps`` steps are skipped (as diffusers'
    img2img pipeline): strength 1 starts from pure noise, 0 returns z0. With ``known_mask``
    (B, 1, h, w), 1 = keep, the kept region is reset after every step to z0 noised to the current
    level, so only the rest is repainted (inpainting).
    """
    strength = check_float("strength", strength, min_value=0.0, max_value=1.0)
    s = pipe.guidance_scale if guidance_scale is None else guidance_scale
    T = pipe.schedule.num_timesteps
    ts = timesteps(T, pipe.num_steps, LATENT_DDIM["spacing"]).tolist()  # descending, the pipeline's grid
    skip = pipe.num_steps - int(round(pipe.num_steps * strength))
    ts = ts[skip:]
    if not ts:
        return z0
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(z0.shape, generator=gen)
    guided = cfg_model(pipe.denoiser, s)

    def model_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return guided(x, t, cond=ids)

    sched = pipe.schedule
    x = sched.add_noise(z0, noise, torch.full((len(z0),), ts[0], dtype=torch.long))
    with torch.no_grad():
        for i, t in enumerate(ts):
            t_prev = ts[i + 1] if i + 1 < len(ts) else -1
            out = model_fn(x, torch.full((len(x),), t, dtype=torch.long))
            x = ddim_step(sched, out, t, t_prev, x, prediction_type=LATENT_PREDICTION_TYPE).prev_sample
            if known_mask is not None:
                known = z0 if t_prev < 0 else sched.add_noise(z0, noise, torch.full((len(z0),), t_prev, dtype=torch.long))
                x = known_mask * known + (1 - known_mask) * x
    return x


def img2img(pipe: Pipeline, images: torch.Tensor, prompts: Sequence[str] | str, *, strength: float = DEFAULT_STRENGTH,
            seed: int = 0, guidance_scale: float | None = None) -> torch.Tensor:
    """SDEdit (Meng et al. 2022): encode, noise to ``strength``, denoise under the new prompt, decode.

    Low strength keeps the picture and may ignore the prompt; high strength follows the prompt and
    forgets the picture (at 1 it is text-to-image).
    """
    images = _check_images(images)
    z0 = scene_latents(pipe.autoencoder, images, pipe.scale_factor)
    z = denoise_from(pipe, z0, _prompt_ids(prompts, len(images)), strength, seed=seed, guidance_scale=guidance_scale)
    return decode_latents(pipe.autoencoder, z / pipe.scale_factor)


def inpaint(pipe: Pipeline, images: torch.Tensor, mask: torch.Tensor, prompts: Sequence[str] | str, *,
            strength: float = 1.0, seed: int = 0, guidance_scale: float | None = None) -> torch.Tensor:
    """Repaint where ``mask`` (B or 1, 1, 64, 64) is 1 and keep the rest: latent replacement at every step,
    then the original pixels pasted back outside the mask."""
    images = _check_images(images)
    mask = mask.float().expand(len(images), 1, *images.shape[-2:])
    f = images.shape[-1] // pipe.latent_shape[-1]
    keep = 1.0 - F.max_pool2d(mask, f)  # a latent cell is repainted if any of its pixels is
    z0 = scene_latents(pipe.autoencoder, images, pipe.scale_factor)
    z = denoise_from(pipe, z0, _prompt_ids(prompts, len(images)), strength, seed=seed, guidance_scale=guidance_scale,
                     known_mask=keep)
    out = decode_latents(pipe.autoencoder, z / pipe.scale_factor)
    return mask * out + (1 - mask) * images


def inversion_edit(pipe: Pipeline, images: torch.Tensor, source_prompts: Sequence[str] | str,
                   target_prompts: Sequence[str] | str, *, guidance_scale: float | None = None) -> torch.Tensor:
    """Edit by DDIM inversion (chapter 06's ``ddim_invert``): run DDIM backwards under the source
    prompt (no guidance) to the noise that regenerates the picture, then sample from that noise
    under the target prompt. What the two prompts share tends to stay where it was."""
    images = _check_images(images)
    z0 = scene_latents(pipe.autoencoder, images, pipe.scale_factor)
    src = _prompt_ids(source_prompts, len(images))
    # both legs on leading steps: the way up must stop short of t = T−1, where nothing of z0 is left (chapter 06 §6)
    zT = ddim_invert(lambda x, t: pipe.denoiser(x, t, cond=src), pipe.schedule, z0, num_steps=pipe.num_steps,
                     spacing="leading", prediction_type=LATENT_PREDICTION_TYPE)
    s = pipe.guidance_scale if guidance_scale is None else guidance_scale
    z = sample(pipe.denoiser, pipe.schedule, tuple(z0.shape), sampler="ddim", num_steps=pipe.num_steps,
               cond=_prompt_ids(target_prompts, len(images)), guidance_scale=s, noise=zT, progress=False,
               prediction_type=LATENT_PREDICTION_TYPE, spacing="leading", clip_sample=False)
    return decode_latents(pipe.autoencoder, z / pipe.scale_factor)


# ----------------------------------------------------------------------------- cross-attention maps
def attention_maps(pipe: Pipeline, prompt: str, words: Sequence[str], *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Which pixels listened to which word: (the sampled scene (3, 64, 64), maps (len(words), 64, 64)).

    Sampling one picture with CFG, every cross-attention layer records its weights; for each word
    the weights of the conditional half are averaged over heads, layers and steps and upsampled to
    64×64. A word that appears twice gets the sum of its positions.
    """
    model = pipe.denoiser
    if not isinstance(model, CrossAttentionUNet):
        raise ValueError("attention maps need the cross-attention denoiser (conditioning='crossattn')")
    tokens = prompt.lower().split()
    missing = [w for w in words if w not in tokens]
    if missing:
        raise ValueError(f"words {missing} are not in the prompt {prompt!r}")
    layers = [m for _, m in model.cross_attention_layers()]
    total = torch.zeros(1 + MAX_SCENE_PROMPT_LENGTH, 64, 64)

    def recording(x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        out = model(x, t, cond=cond)
        for layer in layers:
            a = layer.maps[:1].mean(1)[0]  # the conditional row, heads averaged: (HW, 1 + L)
            side = int(math.isqrt(a.shape[0]))
            a = a.T.reshape(-1, 1, side, side)
            total.add_(F.interpolate(a, size=(64, 64), mode="bilinear", align_corners=False)[:, 0])
        return out

    for layer in layers:
        layer.keep_maps = True
    try:
        z = sample(recording, pipe.schedule, (1, *pipe.latent_shape), sampler="ddim", num_steps=pipe.num_steps,
                   cond=scene_tokenize([prompt]), guidance_scale=pipe.guidance_scale,
                   generator=torch.Generator().manual_seed(seed), progress=False, prediction_type=LATENT_PREDICTION_TYPE, **LATENT_DDIM)
    finally:
        for layer in layers:
            layer.keep_maps, layer.maps = False, None
    image = decode_latents(pipe.autoencoder, z / pipe.scale_factor)[0]
    maps = torch.stack([sum(total[1 + i] for i, w in enumerate(tokens) if w == word) for word in words])
    return image, maps / maps.flatten(1).amax(1)[:, None, None].clamp_min(1e-12)


