"""The chapter-04 MNIST digits U-Net, unconditional or class-conditional (chapters 04–07, 10), trained once and cached.

:func:`digits_train_config` holds its recipe (and the measurements behind it); :data:`RACE_STEPS` the
training budgets of chapter 09's race, since the unconditional run keeps a copy of its checkpoint at the
race's step (:class:`~course_lib.callbacks.KeepCheckpoint`) for :func:`course_lib.pretrained.race.digits_race_model`.
"""

from __future__ import annotations

import os
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..callbacks import KeepCheckpoint
from ..checkpoints import fingerprint
from ..data import load_mnist5000
from ..models.unet import UNet, digits_config
from ..schedules import NoiseSchedule, make_schedule
from ..settings import Profile, check_bool, resolve_profile, runs_dir
from ..training import TrainConfig
from .core import run_info, shipped_model, train_once

# Chapter 09's race (course_lib.pretrained.race): each family trains for about the same CPU time. Calibrated on the 2-core reference CPU with one torch
# thread, in process CPU seconds (which a busy, shared machine does not inflate as it does wall time):
# a step of 64 images costs the digits U-Net 0.222 s, the VAE 0.056 s and the GAN 0.107 s, so 600, 2,400
# and 1,240 steps each cost about 133 s. Measured whole runs (1 thread, data loading and checkpoints
# included): VAE 145 s, GAN 143 s of CPU time. Chapter 04's run commits a checkpoint at its step 600 and
# keeps a copy of it (:class:`~course_lib.callbacks.KeepCheckpoint`): the race's diffusion model, without training twice.
RACE_STEPS: dict[str, dict[str, int]] = {
    "smoke": {"vae": 20, "gan": 20, "diffusion": 10},
    "cpu": {"vae": 2400, "gan": 1240, "diffusion": 600},
    "gpu": {"vae": 6000, "gan": 3000, "diffusion": 1000},
}

DIGITS_SCHEDULE = "cosine"
DIGITS_NUM_CLASSES = 10
COND_CPU_STEPS = 28800  # the class-conditional digits model in the cpu profile (ships: about an hour, 2 threads)
COND_PREDICTION_TYPE = "v_prediction"  # clean backgrounds: see digits_train_config
COND_SHIPPED = "digits_cond"  # the cpu class-conditional model ships as course_lib/weights/digits_cond.*
COND_SHIPPED_PROFILES = ("cpu",)
#: the keys of the class-conditional model's info that its shipped card keeps (the rest say where it was loaded from)
COND_CARD_INFO = ("train_seconds", "steps", "config", "train_config", "profile", "losses", "schedule", "prediction_type")


def digits_train_config(profile: Profile = "auto", *, cond: bool = False) -> TrainConfig:
    """The training recipe of the chapter-04 digits model for a profile.

    ε-prediction on the cosine schedule with Min-SNR-5 weighting, AdamW at a high peak lr
    (2e-3, fine for a small net with warm-up and clipping), batch 64 and many steps rather than
    batch 128 and half as many, EMA with warm-up. Measured on the digits (FID on the shipped
    digit features, 1,000 samples with 50 DDIM steps, 1,800 steps of training): this recipe 12.5;
    linear schedule 17.8; no Min-SNR 15.5; batch 128 for half the steps 32.7; lr 1e-3 much worse.
    The ``cpu`` profile then trains twice as long, 3,600 steps (about 6½ minutes on the 2-core
    reference CPU, two threads): FID 6.5 instead of 13 (v-prediction at 3,600 steps: 5.5; the
    course keeps ε, the target chapters 03–06 teach).
    ``cond=True`` adds condition dropout 0.1 so that the model supports classifier-free guidance,
    and — measured on the background of its samples (chapter 10, issue 11) — predicts v without
    Min-SNR weights. In the ``cpu`` profile it trains 28,800 steps (3,821 s on the 2-core reference CPU,
    2 threads) and ships (:func:`digits_model`). Margin noise (RMS distance from
    black of the pixels that are black in every training digit; real test digits 0.0020), 200
    samples at s = 3, 20 steps, 1 thread: ε with Min-SNR-5 (the recipe before): DDIM 0.10, SDE-DPM-
    Solver++(2M) 0.052, DDPM-1000 0.055; ε without Min-SNR: DDIM 0.25, SDE 0.045; v without Min-SNR:
    DDIM 0.039, SDE 0.020 at 99.5 % class accuracy. Min-SNR-γ gives the nearly clean steps almost
    no weight (γ/SNR), so the network never learns to remove the last whisper of static; an
    ε-network's x̂₀ at high noise amplifies its errors by 1/√ᾱ, and a deterministic sampler keeps
    them as speckle. What remains is training length: the same recipe at 900 steps gives 10× real,
    at 1,800 steps 7–9×, at 3,600 steps 5.0–5.4× (two seeds each), at 28,800 steps 1.98× and 2.33×
    (500 samples, seeds 0 and 1; the card's scores) — 2.0–4.5× over six such seeds, 2.87× pooled over
    3,000: 30 of the 3,000 digits hold 58 % of it (the worst, a 6 whose stroke touches the top edge,
    scores 89× alone), and the median digit's margin is 0.0020 from black, a quarter of one 8-bit
    grey level (real digits: exactly black in 99 % of them). Those digits are drawn too big by the
    guidance: the same 3,000 starting noises give 1.81× pooled at s = 1 and 1.98× at s = 2
    (``benchmarks/backgrounds.py``). A second phase from this model's EMA weights (14,400 steps at
    lr 5e-4, another seed) made it worse, 3.16× pooled at s = 3. Ruled out at 900 steps: the 2×2
    patches (patch_size=1, 3.5× slower per step: 11×), x₀-prediction (8.2×), input perturbation
    γ = 0.1 (10–11×), drawing t log-normally as EDM does (ln σ ~ N(−1.2, 1.2²): 13–15×; N(0.6, 1.2²):
    17–18×; N(0, 1): 17×) or half of the draws log-uniform in t (14–17×), guidance on a limited
    interval of t (9–10×); on the 1,800-step model a final denoising step (7.2–8.2×). All these
    ratios are × the 1,000 test digits' 0.0020; chapter 10 now measures against all 5,000 real digits,
    each on the margin of 4,000 others (``metrics.held_out_background_noise``: 0.0033, because three
    test digits made the old value), and there the shipped model gives 1.08× pooled at s = 1 and 1.68×
    at s = 3 (95 % interval 1.19–2.61×) over twelve seeds of 500. The returned
    model carries ``prediction_type`` so that samplers read it right.
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
    return {"config": cfg.to_dict(), "train_config": asdict(digits_train_config(prof, cond=True)),
            "schedule": DIGITS_SCHEDULE, "data": fingerprint(split.images)["sha256"],
            "labels": fingerprint(split.labels)["sha256"]}


def digits_run_name(profile: str, *, cond: bool = False) -> str:
    """The folder under ``settings.runs_dir()`` of the digits model: ``digits-<profile>`` or, for the class-
    conditional model, ``digits-<profile>-cond-v`` (v-prediction since issue 11; a new name, so an old
    ε-model cache is neither mistaken for it nor in its way)."""
    return f"digits-{profile}" + ("-cond-v" if cond else "")


def digits_model(
    profile: Profile = "auto", *, cond: bool = False, run_dir: str | os.PathLike | None = None,
    device: str | torch.device | None = None, progress: bool = True, retrain: bool = False,
) -> tuple[nn.Module, NoiseSchedule, dict[str, Any]]:
    """The chapter-04 MNIST digits U-Net (32×32, ``course_lib.data.load_mnist5000``), trained once and cached.

    ``run_dir`` defaults to ``runs/digits-<profile>`` or ``runs/digits-<profile>-cond-v`` (see
    :func:`train_once` for loading, resuming and verifying). The unconditional run also keeps a copy of
    its checkpoint at chapter 09's race step in ``<run_dir>-race`` (:class:`~course_lib.callbacks.KeepCheckpoint`). ``cond=True`` gives a class-conditional
    model (labels 0–9, −1 = no label) trained with condition dropout for classifier-free guidance.
    In the ``cpu`` profile that one ships (``course_lib/weights/digits_cond.*``, checked by sha256 and
    :func:`cond_identity`; ``benchmarks/train_digits_cond.py`` writes it): its clean backgrounds take
    longer to train than a chapter may (see :func:`digits_train_config`). ``retrain=True`` or a
    ``run_dir`` trains it here instead.

    Returns ``(ema_model, schedule, info)`` with info keys ``train_seconds``, ``steps``,
    ``config`` (the UNetConfig as a dict), ``train_config``, ``schedule``, ``prediction_type``, ``profile``,
    ``run_dir``, ``losses`` and ``cached`` (True when nothing had to be trained); a shipped model's info
    also has ``shipped`` and ``sha256`` (of the weights), and ``run_dir`` None.
    """
    check_bool("cond", cond)
    check_bool("retrain", retrain)
    prof = resolve_profile(profile)
    cfg = digits_config(prof, num_classes=DIGITS_NUM_CLASSES if cond else None)
    tcfg = digits_train_config(prof, cond=cond)
    schedule = make_schedule(DIGITS_SCHEDULE)
    if cond and prof in COND_SHIPPED_PROFILES and run_dir is None and not retrain:
        model, info = shipped_model(UNet(cfg), COND_SHIPPED, cond_identity(prof), device)
        model.prediction_type = tcfg.prediction_type  # what train() sets on a trained denoiser
        return model, schedule, info
    run_dir = Path(run_dir) if run_dir is not None else runs_dir() / digits_run_name(prof, cond=cond)
    split = load_mnist5000("train", size=cfg.image_size)
    data = (split.images, split.labels) if cond else split.images
    keep = None if cond else KeepCheckpoint(run_dir, run_dir.parent / f"{run_dir.name}-race", RACE_STEPS[prof]["diffusion"])
    result, cached = train_once(lambda: UNet(cfg), schedule, data, tcfg, run_dir, retrain=retrain, device=device,
                                progress=progress, callback=keep)
    info = {**run_info(result, cached, tcfg, prof, run_dir), "schedule": DIGITS_SCHEDULE,
            "prediction_type": tcfg.prediction_type}
    return result.ema_model, schedule, info
