"""Chapter 09's race of the three families, each trained once and cached for about the same CPU time
(:data:`~course_lib.pretrained.digits.RACE_STEPS`): the VAE (:func:`vae_model`), the GAN (:func:`gan_model`) and
chapter 04's digits model as it was at the race's step (:func:`digits_race_model`)."""

from __future__ import annotations

import os
from dataclasses import asdict
from typing import Any

import torch
from torch import nn

from ..adversarial import GANTrainConfig, gan_pair
from ..data import load_mnist5000
from ..models.gan import GANConfig
from ..models.vae import ELBO, VAE, VAEConfig
from ..optim import TrainConfig
from ..registry import Recipe, obtain, register
from ..schedules import NoiseSchedule, make_schedule
from ..settings import Profile, resolve_profile
from .digits import DIGITS_RACE, DIGITS_SCHEDULE, RACE_STEPS, digits_train_config

# The Gaussian decoder's standard deviation (models.vae.ELBO): tuned by the FID of short runs over 0.1 … 1.0; FID
# flattens out at 0.7, so the sharper 0.7 is kept. The sweep and its conditions: README "Performance" → "Three
# families on the same budget (chapter 09)".
VAE_DECODER_STD = 0.7


def vae_train_config(profile: Profile = "auto") -> TrainConfig:
    """The VAE's recipe: AdamW, lr 2e-3 with warm-up and cosine decay, batch 64, EMA, no clipping (the ELBO is in nats per image)."""
    prof = resolve_profile(profile)
    steps = RACE_STEPS[prof]["vae"]
    return TrainConfig(steps=steps, batch_size=16 if prof == "smoke" else 64, lr=2e-3, warmup=min(100, steps // 4),
                       grad_clip=None, ema_decay=0.999, checkpoint_every=max(1, steps // 4))


def _race_digits(profile: str) -> torch.Tensor:
    return load_mnist5000("train", size=32).images


def vae_recipe(beta: float = 1.0) -> Recipe:
    """Chapter 09's VAE with KL weight β as a record: ``runs/vae-<profile>`` (``-beta<β>`` when β ≠ 1)."""
    objective = ELBO(beta=beta, decoder_std=VAE_DECODER_STD)
    suffix = "" if objective.beta == 1.0 else f"-beta{objective.beta:g}"
    return Recipe(name="vae" + suffix.replace("-", "_"), chapter="09",
                  build=lambda p: VAE(VAEConfig(base=8 if p == "smoke" else 32)), objective=lambda p: objective,
                  train_config=vae_train_config, data=_race_digits, run_name=lambda p: f"vae-{p}{suffix}")


VAE_RECIPE = register(vae_recipe())


def vae_model(
    profile: Profile = "auto", *, beta: float = 1.0, run_dir: str | os.PathLike | None = None,
    device: str | torch.device | None = None, progress: bool = True, retrain: bool = False,
) -> tuple[nn.Module, dict[str, Any]]:
    """Chapter 09's VAE on the MNIST-5000 digits with the :class:`~course_lib.models.vae.ELBO` objective, obtained
    from the registry (:func:`vae_recipe`). Returns ``(ema_model, info)`` (info as
    :func:`course_lib.registry.obtain`'s, plus ``beta``, ``decoder_std``)."""
    recipe = VAE_RECIPE if beta == 1.0 else vae_recipe(beta)
    model, info = obtain(recipe, profile, run_dir=run_dir, device=device, progress=progress, retrain=retrain)
    return model, {**info, **recipe.objective(info["profile"]).identity()}


def gan_train_config(profile: Profile = "auto") -> GANTrainConfig:
    """The GAN's recipe: hinge loss, Adam (β₁ = 0, β₂ = 0.9), two time-scales lr_g 4e-4 < lr_d 8e-4, batch 64, EMA."""
    prof = resolve_profile(profile)
    steps = RACE_STEPS[prof]["gan"]
    return GANTrainConfig(steps=steps, batch_size=16 if prof == "smoke" else 64, lr_g=4e-4, lr_d=8e-4,
                          checkpoint_every=max(1, steps // 4))


#: chapter 09's GAN: the artist and the detective as one GANPair, trained by the one loop taking turns
GAN = register(Recipe(
    name="gan", chapter="09", build=lambda p: gan_pair(GANConfig(g_base=8, d_base=8) if p == "smoke" else GANConfig()),
    objective=lambda p: gan_train_config(p).objective(), train_config=lambda p: gan_train_config(p).loop_config(),
    data=_race_digits, run_name=lambda p: f"gan-{p}"))


def gan_model(
    profile: Profile = "auto", *, run_dir: str | os.PathLike | None = None, device: str | torch.device | None = None,
    progress: bool = True, retrain: bool = False,
) -> tuple[nn.Module, dict[str, Any]]:
    """Chapter 09's GAN on the MNIST-5000 digits (:data:`GAN`, :mod:`course_lib.adversarial`), obtained from the
    registry like every model here. Returns ``(ema_generator, info)``; info as :func:`course_lib.registry.obtain`'s,
    with ``g_losses`` / ``d_losses`` instead of ``losses`` and the GAN's own ``train_config``."""
    pair, info = obtain(GAN, profile, run_dir=run_dir, device=device, progress=progress, retrain=retrain)
    losses = info.pop("losses")
    return pair.generator, {**info, "config": pair.config.to_dict(), "train_config": asdict(gan_train_config(info["profile"])),
                            "g_losses": [g for _, g in losses], "d_losses": [d for d, _ in losses]}


def digits_race_model(
    profile: Profile = "auto", *, run_dir: str | os.PathLike | None = None, device: str | torch.device | None = None,
    progress: bool = True,
) -> tuple[nn.Module, NoiseSchedule, dict[str, Any]]:
    """Chapter 04's digits model as it was after ``RACE_STEPS[profile]["diffusion"]`` steps: chapter 09's diffusion
    contestant (:data:`~course_lib.pretrained.digits.DIGITS_RACE`).

    The same recipe as :func:`digits_model` (same initial weights, data order and learning-rate plan),
    stopped at the race's step and cached in ``runs/digits-<profile>-race`` (chapter 04's run leaves a copy
    of its checkpoint there): the EMA weights are exactly what chapter 04's run held at that step.
    Returns ``(ema_model, schedule, info)``.
    """
    model, info = obtain(DIGITS_RACE, profile, run_dir=run_dir, device=device, progress=progress)
    model.prediction_type = digits_train_config(info["profile"]).prediction_type
    return model, make_schedule(DIGITS_SCHEDULE), {**info, "schedule": DIGITS_SCHEDULE,
                                                   "prediction_type": model.prediction_type}
