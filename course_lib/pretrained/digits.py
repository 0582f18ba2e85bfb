"""The chapter-04 MNIST digits U-Net, unconditional or class-conditional (chapters 04–07, 10), trained once and cached.

:func:`digits_train_config` holds its recipe and why (the measurements behind it live in the README's
"Performance" section and the shipped card, which it cites); :data:`RACE_STEPS` the training budgets of
chapter 09's race, since the unconditional run keeps a copy of its checkpoint at the race's step
(:class:`~course_lib.callbacks.KeepCheckpoint`) for :func:`course_lib.pretrained.race.digits_race_model`.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..callbacks import KeepCheckpoint
from ..checkpoints import fingerprint
from ..data import load_mnist5000
from ..models.unet import UNet, digits_config
from ..optim import TrainConfig, config_identity
from ..registry import Recipe, obtain, register
from ..schedules import NoiseSchedule, make_schedule
from ..settings import Profile, check_bool, resolve_profile

# Chapter 09's race (course_lib.pretrained.race): each family trains for about the same CPU time. Calibrated on the
# 2-core reference CPU with one torch thread, in process CPU seconds (which a busy, shared machine does not inflate
# as it does wall time): each family's steps = the common budget ÷ the measured cost of one of its steps of 64
# images. The per-step costs, the budget and the measured whole runs are in README "Performance" → "Three families
# on the same budget (chapter 09)". Chapter 04's run commits a checkpoint at the race's step (600 in the cpu
# profile) and keeps a copy of it (:class:`~course_lib.callbacks.KeepCheckpoint`): the race's diffusion model,
# without training twice.
RACE_STEPS: dict[str, dict[str, int]] = {
    "smoke": {"vae": 20, "gan": 20, "diffusion": 10},
    "cpu": {"vae": 2400, "gan": 1240, "diffusion": 600},
    "gpu": {"vae": 6000, "gan": 3000, "diffusion": 1000},
}

DIGITS_SCHEDULE = "cosine"
DIGITS_NUM_CLASSES = 10
COND_CPU_STEPS = 28800  # the class-conditional digits model in the cpu profile (ships: time in its card's info.train_seconds)
COND_PREDICTION_TYPE = "v_prediction"  # clean backgrounds: see digits_train_config
COND_SHIPPED = "digits_cond"  # the cpu class-conditional model ships as course_lib/weights/digits_cond.*
COND_SHIPPED_PROFILES = ("cpu",)
#: the keys of the class-conditional model's info that its shipped card keeps (the rest say where it was loaded from)
COND_CARD_INFO = ("train_seconds", "steps", "config", "train_config", "profile", "losses", "schedule", "prediction_type")


def digits_train_config(profile: Profile = "auto", *, cond: bool = False) -> TrainConfig:
    """The training recipe of the chapter-04 digits model for a profile.

    ε-prediction (the target chapters 03–06 teach) on the cosine schedule (Nichol & Dhariwal 2021,
    eq. 17; chapter 02) with Min-SNR-5 loss weights (Hang et al. 2023; chapter 04), AdamW at a high
    peak lr (2e-3, fine for a small net with warm-up and gradient clipping), batch 64 and many steps
    rather than batch 128 and half as many, EMA with warm-up (the ``gpu`` profile: batch 128, lr 1e-3,
    EMA decay 0.9995). The schedule, the loss weights, the batch and the lr were each chosen against an
    alternative by the FID of the samples at the ``cpu`` budget of the time (1,800 steps); the ``cpu``
    profile now trains twice as long, 3,600 steps. The comparison (and how v-prediction
    would score), the ``cpu`` model's FID and its training time, with the conditions they were
    measured under, are in README "Performance" → "Quality of the chapter-04 digits model"
    (``benchmarks/quality.py --profile cpu`` measures the model again).

    ``cond=True`` (chapters 07 and 10) adds condition dropout 0.1, so that the model also learns the
    unconditional prediction and supports classifier-free guidance (Ho & Salimans 2022), and predicts
    v without Min-SNR weights, for clean backgrounds (chapter 10, issue 11): Min-SNR-γ gives the
    nearly clean steps almost no weight (γ/SNR), so the network never learns to remove the last
    whisper of static; and an ε-network's guess x̂₀ = (x_t − √(1−ᾱ_t) ε̂)/√ᾱ_t multiplies its errors
    by 1/√ᾱ_t at high noise, which a deterministic sampler keeps as speckle, while a v-network's guess
    does not amplify them (Salimans & Ho 2022, §4; chapter 03). The clean background is the last
    thing the model learns, so in the ``cpu`` profile it trains :data:`COND_CPU_STEPS` steps, longer
    than a chapter may, and ships (:func:`digits_model`; ``benchmarks/train_digits_cond.py`` trains
    and writes it). Where its figures live: the training seconds and the margin and class-accuracy
    scores of the shipped run in its card, ``course_lib/weights/digits_cond.json`` (``info``,
    ``scores``); the margins by guidance scale over twelve seeds, against the all-digit reference
    (``benchmarks/backgrounds.py --profile cpu --threads 2 --scales 1,2,3 --seeds 12``), and what was
    tried on the shipped model in README "Performance" → "Clean backgrounds (chapters 07 and 10,
    issue 11)"; the measurements behind each choice (sampler × target × loss weights, training
    length, what was ruled out at 900 steps) in README "Performance" → "Clean backgrounds: how the
    recipe got there". A model trained with this recipe carries ``prediction_type`` (set by
    :func:`course_lib.training.train`) so that samplers read its output right.
    """
    check_bool("cond", cond)
    prof = resolve_profile(profile)
    base = {
        "smoke": TrainConfig(steps=20, batch_size=16, lr=2e-3, warmup=5, checkpoint_every=10, min_snr_gamma=5.0),
        "cpu": TrainConfig(steps=3600, batch_size=64, lr=2e-3, warmup=100, checkpoint_every=600, min_snr_gamma=5.0),
        "gpu": TrainConfig(steps=5000, batch_size=128, lr=1e-3, warmup=250, checkpoint_every=1000, min_snr_gamma=5.0,
                           ema_decay=0.9995),
    }[prof]
    if not cond:
        return base
    return replace(base, cond_drop_prob=0.1, steps=COND_CPU_STEPS if prof == "cpu" else base.steps,
                   prediction_type=COND_PREDICTION_TYPE, min_snr_gamma=None)


def cond_identity(profile: Profile = "auto") -> dict[str, Any]:
    """What makes one class-conditional digits model: the U-Net, the recipe, the schedule and the training
    digits and labels (the shipped file is loaded only when its card holds exactly this)."""
    prof = resolve_profile(profile)
    cfg = digits_config(prof, num_classes=DIGITS_NUM_CLASSES)
    split = load_mnist5000("train", size=cfg.image_size)
    return {"config": cfg.to_dict(), "train_config": config_identity(digits_train_config(prof, cond=True)),
            "schedule": DIGITS_SCHEDULE, "data": fingerprint(split.images)["sha256"],
            "labels": fingerprint(split.labels)["sha256"]}


def digits_run_name(profile: str, *, cond: bool = False) -> str:
    """The folder under ``settings.runs_dir()`` of the digits model: ``digits-<profile>`` or, for the class-
    conditional model, ``digits-<profile>-cond-v`` (v-prediction since issue 11; a new name, so an old
    ε-model cache is neither mistaken for it nor in its way)."""
    return f"digits-{profile}" + ("-cond-v" if cond else "")


def _digits_data(profile: str, *, cond: bool) -> Any:
    split = load_mnist5000("train", size=digits_config(profile).image_size)
    return (split.images, split.labels) if cond else split.images


def _keep_race_checkpoint(profile: str, run_dir: Path) -> list[KeepCheckpoint]:
    """The unconditional run keeps a copy of its checkpoint at chapter 09's race step in ``<run_dir>-race``."""
    return [KeepCheckpoint(run_dir, run_dir.parent / f"{run_dir.name}-race", RACE_STEPS[profile]["diffusion"])]


#: chapter 04's digits U-Net (chapters 04–06, 10)
DIGITS = register(Recipe(
    name="digits", chapter="04", build=lambda p: UNet(digits_config(p)),
    objective=lambda p: make_schedule(DIGITS_SCHEDULE), train_config=digits_train_config,
    data=lambda p: _digits_data(p, cond=False), run_name=digits_run_name, callbacks=_keep_race_checkpoint))

#: chapter 04's recipe stopped at chapter 09's race step: the race's diffusion contestant (runs/digits-<profile>-race)
DIGITS_RACE = register(Recipe(
    name="digits_race", chapter="09", build=DIGITS.build, objective=DIGITS.objective, train_config=digits_train_config,
    data=DIGITS.data, run_name=lambda p: f"{digits_run_name(p)}-race", until=lambda p: RACE_STEPS[p]["diffusion"]))

#: the class-conditional digits U-Net with condition dropout (chapters 07, 10); ships for the cpu profile
DIGITS_COND = register(Recipe(
    name=COND_SHIPPED, chapter="07", build=lambda p: UNet(digits_config(p, num_classes=DIGITS_NUM_CLASSES)),
    objective=DIGITS.objective, train_config=lambda p: digits_train_config(p, cond=True),
    data=lambda p: _digits_data(p, cond=True), identity=cond_identity, shipped=COND_SHIPPED_PROFILES,
    run_name=lambda p: digits_run_name(p, cond=True), card_info=COND_CARD_INFO, loss_every=24,
    script="python benchmarks/train_digits_cond.py"))


def digits_model(
    profile: Profile = "auto", *, cond: bool = False, run_dir: str | os.PathLike | None = None,
    device: str | torch.device | None = None, progress: bool = True, retrain: bool = False,
) -> tuple[nn.Module, NoiseSchedule, dict[str, Any]]:
    """The chapter-04 MNIST digits U-Net (32×32, ``course_lib.data.load_mnist5000``): :data:`DIGITS`, or
    :data:`DIGITS_COND` with ``cond=True``, obtained from the registry (:func:`course_lib.registry.obtain`).

    ``run_dir`` defaults to ``runs/digits-<profile>`` or ``runs/digits-<profile>-cond-v``. The unconditional
    run also keeps a copy of its checkpoint at chapter 09's race step in ``<run_dir>-race``
    (:class:`~course_lib.callbacks.KeepCheckpoint`). ``cond=True`` gives a class-conditional model (labels
    0–9, −1 = no label) trained with condition dropout for classifier-free guidance. In the ``cpu`` profile
    that one ships (``course_lib/weights/digits_cond.*``, checked by sha256 and :func:`cond_identity`;
    ``benchmarks/train_digits_cond.py`` writes it): its clean backgrounds take longer to train than a chapter
    may (see :func:`digits_train_config`; the card's ``info.train_seconds``). ``retrain=True`` or a
    ``run_dir`` trains it here instead.

    Returns ``(ema_model, schedule, info)`` with info keys ``train_seconds``, ``steps``,
    ``config`` (the UNetConfig as a dict), ``train_config``, ``schedule``, ``prediction_type``, ``profile``,
    ``run_dir``, ``losses`` and ``cached`` (True when nothing had to be trained); a shipped model's info
    also has ``shipped`` and ``sha256`` (of the weights), and ``run_dir`` None.
    """
    check_bool("cond", cond)
    prof = resolve_profile(profile)
    tcfg = digits_train_config(prof, cond=cond)
    model, info = obtain(DIGITS_COND if cond else DIGITS, prof, run_dir=run_dir, device=device, progress=progress,
                         retrain=retrain)
    model.prediction_type = tcfg.prediction_type  # what train() sets on a trained denoiser (and a shipped one needs)
    return model, make_schedule(DIGITS_SCHEDULE), {**info, "schedule": DIGITS_SCHEDULE,
                                                   "prediction_type": tcfg.prediction_type}
