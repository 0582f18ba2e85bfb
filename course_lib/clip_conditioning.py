"""Stable Diffusion's way: chapter 11's latent denoiser reading a frozen CLIP caption encoder (chapter 13).

Chapter 11 trained its text encoder *together with* the denoiser, from the scenes' captions alone. Stable
Diffusion 1.x (Rombach et al. 2022, §3.3 and Appendix E.2) does not: it takes CLIP ViT-L/14's caption encoder,
trained beforehand to match pictures and captions, freezes it, and lets the U-Net read its per-word outputs
through cross-attention. Here the caption encoder is chapter 13's CLIP (:mod:`course_lib.clip`), frozen inside
:class:`course_lib.models.clip.FrozenCLIPUNet`, and only the U-Net learns.

The U-Net starts from chapter 11's trained cross-attention denoiser (``init``: its weights, its own text encoder
dropped) and learns in :func:`frozen_clip_config`'s steps to read CLIP's words instead: what its cross-attention
layers had learned to ask of chapter 11's word vectors, they must now ask of CLIP's. (Training the U-Net from
scratch, as chapter 11 did, takes about 40 minutes on one CPU thread; this short run measures what the frozen
encoder gives at a small cost, and says so.) The data, the schedule, the sampler and the measurement are
chapter 11's: ``latent.measuring.prompt_accuracy`` on the held-out compositional prompts, judged by the scene judge.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from .clip import clip_identity, clip_model, clip_recipe, random_captions
from .data import SCENES_TRAIN_SEED
from .latent.pipeline import (
    LATENT_SCHEDULE,
    Pipeline,
    autoencoder_identity,
    autoencoder_model,
    latent_identity,
    latent_model,
    latent_recipe,
    scene_latents,
)
from .models.clip import CLIPTextEncoder, FrozenCLIPUNet
from .models.cross_attention import CrossAttentionConfig, CrossAttentionUNet
from .models.embeddings import PositionEmbedding
from .optim import TrainConfig, config_identity
from .registry import Recipe, obtain, register
from .scenes import SCENE_VOCAB, make_scenes, scene_tokenize
from .schedules import make_schedule
from .settings import Profile, resolve_profile


def frozen_clip_config(profile: Profile = "auto") -> TrainConfig:
    """The U-Net's training run: chapter 11's recipe (batch, condition dropout 0.1, v-prediction, peak learning
    rate 0.002), fewer steps from chapter 11's weights and a faster EMA for the short run (6,000 steps for ``cpu``:
    after 1,000 at a peak of 0.001 it read held-out prompts at 0.797, after 3,000 at 0.002 at 0.865, after 6,000
    at 0.943, against chapter 11's 0.953)."""
    prof = resolve_profile(profile)
    base = latent_recipe(prof).train
    if prof == "smoke":
        return base
    steps = 6000 if prof == "cpu" else 8000
    return replace(base, steps=steps, lr=2e-3, warmup=100, ema_decay=0.995, checkpoint_every=500)


def build_frozen_clip_denoiser(profile: Profile = "auto") -> FrozenCLIPUNet:
    """A :class:`FrozenCLIPUNet` of chapter 11's size and layout (its position map after the stem); its weights
    come from :func:`_initial_weights`."""
    recipe = latent_recipe(profile)
    unet = recipe.unet
    config = CrossAttentionConfig(unet, recipe.text, tuple(r for r in unet.resolutions if r <= 16),
                                  clause_separator=SCENE_VOCAB.index("and"))
    model = FrozenCLIPUNet(config, clip_recipe(profile).config)
    model.stem = nn.Sequential(model.stem, PositionEmbedding(unet.widths[0], unet.resolutions[0]))  # as chapter 11's
    return model


@torch.no_grad()
def word_translation(base: CrossAttentionUNet, clip_text: CLIPTextEncoder, num_captions: int = 1200) -> tuple[torch.Tensor, float]:
    """The linear map A (width_clip, width_base) that best turns CLIP's per-word vectors into chapter 11's
    (least squares over the words of ``num_captions`` training captions, freshly phrased), and its R²."""
    data = make_scenes(num_captions // 2, seed=SCENES_TRAIN_SEED)
    ids = scene_tokenize(random_captions(data.attributes.repeat(2, 1), torch.Generator().manual_seed(0)))
    real = ids != 0
    x, y = clip_text.words(ids)[real], base.encode_prompt(ids)[0][:, 1:][real]  # (words, width) each
    a = torch.linalg.lstsq(x, y).solution
    return a, float(1 - (y - x @ a).pow(2).sum() / (y - y.mean(0)).pow(2).sum())


def _initial_weights(profile: str) -> dict[str, torch.Tensor]:
    """Chapter 11's cross-attention denoiser without its text encoder, with the frozen CLIP's caption encoder, and
    every cross-attention's keys and values translated to CLIP's words: W_k ← W_k Aᵀ, W_v ← W_v Aᵀ, with A the
    least-squares map from CLIP's word vectors to chapter 11's (:func:`word_translation`)."""
    ae, ae_info = autoencoder_model(profile, progress=False)
    base, _, _ = latent_model(profile, "crossattn", ae=ae, scale_factor=ae_info["scale_factor"], progress=False)
    clip, _ = clip_model(profile, progress=False)
    a, _ = word_translation(base, clip.text_encoder)
    state = {k: v for k, v in base.state_dict().items() if not k.startswith("text_encoder.")}
    for k in state:
        if k.endswith(("to_k.weight", "to_v.weight")):
            state[k] = state[k] @ a.T  # k = (x A) W_kᵀ = x (W_k Aᵀ)ᵀ
    state.update({f"clip_text.{k}": v for k, v in clip.text_encoder.state_dict().items()})
    return state


def _latents_and_tokens(profile: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Chapter 11's training data: the scaled latents of its training scenes and their tokenized captions."""
    ae, ae_info = autoencoder_model(profile, progress=False)
    data = make_scenes(latent_recipe(profile).num_images, seed=SCENES_TRAIN_SEED)
    return scene_latents(ae, data.images, ae_info["scale_factor"]), scene_tokenize(data.captions)


def frozen_clip_identity(profile: str) -> dict[str, Any]:
    """What a shipped card must hold: the U-Net, the frozen CLIP's recipe, the start weights, data and config."""
    recipe = latent_recipe(profile)
    return {"conditioning": "frozen_clip", "unet": recipe.unet.to_dict(), "clip": clip_identity(profile),
            "init": {"from": latent_identity(recipe, "crossattn"), "keys_values": "least-squares word translation, 1200"},
            "train": config_identity(frozen_clip_config(profile)),
            "schedule": LATENT_SCHEDULE, "num_images": recipe.num_images, "data_seed": SCENES_TRAIN_SEED,
            "autoencoder": autoencoder_identity(recipe)}


#: chapter 13's latent denoiser on a frozen CLIP caption encoder (ships for the cpu profile)
FROZEN_CLIP_DENOISER = register(Recipe(
    name="latent_frozen_clip", chapter="13", build=build_frozen_clip_denoiser,
    objective=lambda p: make_schedule(LATENT_SCHEDULE), train_config=frozen_clip_config, data=_latents_and_tokens,
    init=_initial_weights, identity=frozen_clip_identity, shipped=("cpu",), run_name=lambda p: f"latent-frozen-clip-{p}",
    loss_every=10, card_info=("losses", "steps", "train_seconds", "profile"), script="python benchmarks/train_clip.py"))


def frozen_clip_pipeline(profile: Profile = "auto", *, run_dir: str | os.PathLike | None = None, retrain: bool = False,
                         progress: bool = True) -> tuple[Pipeline, dict[str, Any]]:
    """Chapter 11's pipeline with the frozen-CLIP denoiser (:data:`FROZEN_CLIP_DENOISER`) in place of its own:
    shipped for ``cpu`` (sha256 and recipe checked), else trained once and cached. Returns ``(pipeline, info)``."""
    prof = resolve_profile(profile)
    ae, ae_info = autoencoder_model(prof, progress=progress)
    model, info = obtain(FROZEN_CLIP_DENOISER, prof, run_dir=run_dir, retrain=retrain, progress=progress)
    return Pipeline(ae, model, make_schedule(LATENT_SCHEDULE), ae_info["scale_factor"],
                    num_steps=latent_recipe(prof).num_steps), info


__all__ = ["FROZEN_CLIP_DENOISER", "build_frozen_clip_denoiser", "frozen_clip_config", "frozen_clip_identity",
           "frozen_clip_pipeline"]
