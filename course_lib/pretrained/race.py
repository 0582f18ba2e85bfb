"""Chapter 09's race of the three families, each trained once and cached for about the same CPU time
(:data:`~course_lib.pretrained.digits.RACE_STEPS`): the VAE (:func:`vae_model`), the GAN (:func:`gan_model`) and
chapter 04's digits model as it was at the race's step (:func:`digits_race_model`)."""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..callbacks import StopAfter
from ..checkpoints import has_checkpoint, read_state
from ..data import load_mnist5000
from ..models.unet import UNet, digits_config
from ..schedules import NoiseSchedule, make_schedule
from ..settings import Profile, check_bool, resolve_device, resolve_profile, runs_dir
from ..training import TrainConfig, train
from .core import run_info, train_once
from .digits import DIGITS_SCHEDULE, RACE_STEPS, digits_train_config

if TYPE_CHECKING:
    from ..adversarial import GANTrainConfig

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


def vae_model(
    profile: Profile = "auto", *, beta: float = 1.0, run_dir: str | os.PathLike | None = None,
    device: str | torch.device | None = None, progress: bool = True, retrain: bool = False,
) -> tuple[nn.Module, dict[str, Any]]:
    """Chapter 09's VAE on the MNIST-5000 digits, trained once through :func:`course_lib.training.train`
    with the :class:`~course_lib.models.vae.ELBO` objective and cached in ``runs/vae-<profile>``
    (``-beta<β>`` when β ≠ 1). Returns ``(ema_model, info)`` (info as :func:`run_info`, plus ``beta``, ``decoder_std``)."""
    from ..models.vae import ELBO, VAE, VAEConfig

    prof = resolve_profile(profile)
    objective = ELBO(beta=beta, decoder_std=VAE_DECODER_STD)
    cfg = VAEConfig(base=8 if prof == "smoke" else 32)
    tcfg = vae_train_config(prof)
    name = f"vae-{prof}" + ("" if objective.beta == 1.0 else f"-beta{objective.beta:g}")
    run_dir = Path(run_dir) if run_dir is not None else runs_dir() / name
    data = load_mnist5000("train", size=cfg.image_size).images
    result, cached = train_once(lambda: VAE(cfg), objective, data, tcfg, run_dir, retrain=retrain,
                                device=resolve_device(device), progress=progress)
    return result.ema_model, {**run_info(result, cached, tcfg, prof, run_dir), **objective.identity()}


def gan_train_config(profile: Profile = "auto") -> "GANTrainConfig":
    """The GAN's recipe: hinge loss, Adam (β₁ = 0, β₂ = 0.9), two time-scales lr_g 4e-4 < lr_d 8e-4, batch 64, EMA."""
    from ..adversarial import GANTrainConfig

    prof = resolve_profile(profile)
    steps = RACE_STEPS[prof]["gan"]
    return GANTrainConfig(steps=steps, batch_size=16 if prof == "smoke" else 64, lr_g=4e-4, lr_d=8e-4,
                          checkpoint_every=max(1, steps // 4))


def gan_model(
    profile: Profile = "auto", *, run_dir: str | os.PathLike | None = None, device: str | torch.device | None = None,
    progress: bool = True, retrain: bool = False,
) -> tuple[nn.Module, dict[str, Any]]:
    """Chapter 09's GAN on the MNIST-5000 digits (:func:`course_lib.adversarial.train_gan`), trained once and
    cached in ``runs/gan-<profile>`` like every model here. Returns ``(ema_generator, info)``; info as
    :func:`run_info` but with ``g_losses`` / ``d_losses`` instead of ``losses``."""
    from ..adversarial import train_gan
    from ..models.gan import Discriminator, GANConfig, Generator

    check_bool("retrain", retrain)
    prof = resolve_profile(profile)
    cfg = GANConfig(g_base=8, d_base=8) if prof == "smoke" else GANConfig()
    tcfg = gan_train_config(prof)
    run_dir = Path(run_dir) if run_dir is not None else runs_dir() / f"gan-{prof}"
    data = load_mnist5000("train", size=cfg.image_size).images
    cached = not retrain and has_checkpoint(run_dir) and int(read_state(run_dir).get("step", -1)) >= tcfg.steps
    torch.manual_seed(tcfg.seed)
    result = train_gan(Generator(cfg), Discriminator(cfg), data, tcfg, run_dir=run_dir, resume=not retrain,
                       device=resolve_device(device), progress=progress)
    info = {"train_seconds": result.seconds, "steps": result.steps, "config": cfg.to_dict(),
            "train_config": asdict(tcfg), "profile": prof, "run_dir": str(run_dir), "cached": cached,
            "g_losses": result.g_losses, "d_losses": result.d_losses}
    return result.ema_generator, info


def digits_race_model(
    profile: Profile = "auto", *, run_dir: str | os.PathLike | None = None, device: str | torch.device | None = None,
    progress: bool = True,
) -> tuple[nn.Module, NoiseSchedule, dict[str, Any]]:
    """Chapter 04's digits model as it was after ``RACE_STEPS[profile]["diffusion"]`` steps: chapter 09's diffusion contestant.

    The same recipe as :func:`digits_model` (same initial weights, data order and learning-rate plan),
    stopped at the race's step and cached in ``runs/digits-<profile>-race``: the EMA weights there are
    exactly what chapter 04's run held at that step. Returns ``(ema_model, schedule, info)``.
    """
    from ..checkpoints import CheckpointError, check_signature, load_checkpoint, state_dict_into

    prof = resolve_profile(profile)
    race = RACE_STEPS[prof]["diffusion"]
    cfg, tcfg = digits_config(prof), digits_train_config(prof)
    run_dir = Path(run_dir) if run_dir is not None else runs_dir() / f"digits-{prof}-race"
    cached = has_checkpoint(run_dir) and int(read_state(run_dir).get("step", -1)) >= race
    if not cached:  # train chapter 04's recipe up to the race's step (a checkpoint is committed there)
        torch.manual_seed(tcfg.seed)
        train(UNet(cfg), make_schedule(DIGITS_SCHEDULE), load_mnist5000("train", size=cfg.image_size).images, tcfg,
              run_dir=run_dir, device=resolve_device(device), progress=progress, callback=StopAfter(steps=race))
    tensors, state = load_checkpoint(run_dir)  # sha256-verified
    model = UNet(cfg)
    check_signature(state["model"], model)
    if state["train_config"] != asdict(tcfg) or int(state["step"]) != race:
        raise CheckpointError(f"{str(run_dir)!r} does not hold chapter 04's recipe at step {race}; delete it to retrain")
    state_dict_into(model, tensors, "ema.")
    info = {"train_seconds": float(state["seconds"]), "steps": int(state["step"]), "config": cfg.to_dict(),
            "train_config": asdict(tcfg), "profile": prof, "run_dir": str(run_dir), "cached": cached,
            "losses": list(state["losses"]), "schedule": DIGITS_SCHEDULE, "prediction_type": tcfg.prediction_type}
    return model.to(resolve_device(device)).eval(), make_schedule(DIGITS_SCHEDULE), info
