"""What one optimisation is made of (chapter 04): the recipe :class:`TrainConfig`, the learning-rate schedules
(:func:`lr_at`), the EMA of the weights (:func:`ema_update`) and the course's one optimizer step (:func:`optimizer_step`).

:mod:`course_lib.training` runs them in its loop (and re-exports every name here). A run's identity records its
config through :func:`config_identity`, so that fields added later (:data:`LATER_FIELDS`) leave the identity of
every run recorded before them unchanged: cached runs resume and shipped weights verify.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

import torch
from torch import nn

from .forward import PREDICTION_TYPES, PredictionType
from .settings import capped, check_bool, check_choice, check_float, check_int, gpu_dryrun

LRSchedule = Literal["warmup-cosine", "warmup-times-cosine", "constant"]
LR_SCHEDULES: tuple[str, ...] = get_args(LRSchedule)


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of :func:`train`. All but ``checkpoint_every`` must match to resume a run.

    - ``steps``: optimizer steps; ``batch_size``: examples per step (drawn with replacement).
    - ``lr``: peak learning rate, reached after ``warmup`` steps, then cosine decay to 0.
    - ``lr_schedule``: ``"warmup-cosine"`` (that), ``"warmup-times-cosine"`` (the warm-up ramp times one cosine
      over all steps: chapter 11's autoencoder phases) or ``"constant"`` (chapter 09's GAN); :func:`lr_at`.
    - ``weight_decay``: AdamW's decoupled decay; ``grad_clip``: max gradient norm (None = off).
    - ``ema_decay``: the EMA's final decay (with warm-up, see the module docstring).
    - ``prediction_type``: "epsilon" | "sample" | "v_prediction"; ``min_snr_gamma``: γ or None.
    - ``cond_drop_prob``: chance of replacing a condition by "none" (classifier-free guidance).
      These three shape the diffusion loss only; another objective needs them at their defaults.
    - ``checkpoint_every``: steps between checkpoints (0 = only at the end; needs a run_dir).
    - ``seed``: seeds the model's dropout and every random draw of the loop.
    - ``amp``: autocast of the forward passes on a CUDA GPU: bfloat16 where the GPU has it in hardware, float16
      with loss scaling on older ones such as Colab's T4 (``settings.autocast_dtype``); float32 on the CPU.
    """

    steps: int = 1000
    batch_size: int = 128
    lr: float = 1e-3
    warmup: int = 100
    weight_decay: float = 0.0
    grad_clip: float | None = 1.0
    ema_decay: float = 0.999
    prediction_type: PredictionType = "epsilon"
    min_snr_gamma: float | None = None
    cond_drop_prob: float = 0.0
    checkpoint_every: int = 500
    seed: int = 0
    amp: bool = True
    lr_schedule: LRSchedule = "warmup-cosine"

    def __post_init__(self) -> None:
        check_int("steps", self.steps, min_value=1)
        if gpu_dryrun():  # a dry run of the gpu profile: every recipe keeps a few steps (settings.capped)
            object.__setattr__(self, "steps", capped(self.steps))
        check_int("batch_size", self.batch_size, min_value=1)
        check_float("lr", self.lr, min_value=0.0, max_value=1.0)
        check_int("warmup", self.warmup, min_value=0)
        check_float("weight_decay", self.weight_decay, min_value=0.0)
        if self.grad_clip is not None:
            check_float("grad_clip", self.grad_clip, min_value=0.0)
        check_float("ema_decay", self.ema_decay, min_value=0.0, max_value=1.0)
        check_choice("prediction_type", self.prediction_type, PREDICTION_TYPES)
        if self.min_snr_gamma is not None:
            check_float("min_snr_gamma", self.min_snr_gamma, min_value=1e-6)
        check_float("cond_drop_prob", self.cond_drop_prob, min_value=0.0, max_value=1.0)
        check_int("checkpoint_every", self.checkpoint_every, min_value=0)
        check_int("seed", self.seed, min_value=0, max_value=2**63 - 1)
        check_bool("amp", self.amp)
        check_choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)


#: fields added to TrainConfig after runs were cached and weights shipped: a run's identity records them only when
#: they differ from their defaults, so every run recorded before they existed keeps its identity (and still verifies)
LATER_FIELDS: tuple[str, ...] = ("lr_schedule",)


def config_identity(config: TrainConfig) -> dict[str, Any]:
    """The training config as a run's identity records it: every field, less :data:`LATER_FIELDS` at their defaults."""
    fields = asdict(config)
    for name in LATER_FIELDS:
        if fields[name] == TrainConfig.__dataclass_fields__[name].default:
            del fields[name]
    return fields


def lr_at(step: int, config: TrainConfig, peak: float | None = None) -> float:
    """Learning rate for step ``step`` (0-based) under ``config.lr_schedule``, peaking at ``peak`` (default ``config.lr``).

    ``"warmup-cosine"``: linear warm-up, then cosine decay to 0; ``"warmup-times-cosine"``: the warm-up ramp
    min(1, (step + 1)/warmup) times ½(1 + cos(π·step/steps)); ``"constant"``: ``peak`` throughout."""
    peak = config.lr if peak is None else peak
    if config.lr_schedule == "constant":
        return peak
    if config.lr_schedule == "warmup-times-cosine":
        ramp = min(1.0, (step + 1) / config.warmup) if config.warmup else 1.0
        return peak * ramp * 0.5 * (1 + math.cos(math.pi * step / config.steps))
    if step < config.warmup:
        return peak * (step + 1) / config.warmup
    progress = (step - config.warmup) / max(1, config.steps - config.warmup)
    return peak * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def ema_decay_at(num_updates: int, decay: float) -> float:
    """EMA decay after ``num_updates`` updates: min(decay, (1 + n)/(10 + n)) — small at first, then ``decay``."""
    return min(decay, (1.0 + num_updates) / (10.0 + num_updates))


@torch.no_grad()
def ema_update(ema_model: nn.Module, model: nn.Module, decay: float) -> None:
    """θ_ema ← decay·θ_ema + (1 − decay)·θ for every parameter; buffers are copied."""
    ema_params = [p for p in ema_model.parameters()]
    params = [p.detach() for p in model.parameters()]
    torch._foreach_lerp_(ema_params, params, 1.0 - decay)
    for b_ema, b in zip(ema_model.buffers(), model.buffers()):
        b_ema.copy_(b)


def optimizer_step(opt: torch.optim.Optimizer, loss: torch.Tensor, grad_clip: float | None = None,
                   scaler: torch.amp.GradScaler | None = None) -> None:
    """The course's one optimizer step: zero the gradients, backpropagate ``loss``, clip their norm, step.

    With a ``scaler`` (float16 autocast, on a GPU without bfloat16 such as Colab's T4: :func:`course_lib.settings.
    autocast_dtype`) the loss is multiplied by the scaler's factor before the backward pass, so that small
    gradients do not underflow float16, and the gradients are divided by it again before clipping; a step
    whose gradients overflowed is skipped and the factor lowered (loss scaling: Micikevicius et al. 2018,
    "Mixed precision training", §3.2; ``torch.amp.GradScaler``).

    Every parameter update of ``course_lib`` (and of the benchmarks that train the shipped judges) is this call."""
    opt.zero_grad(set_to_none=True)
    params = [p for g in opt.param_groups for p in g["params"]]
    if scaler is None:
        loss.backward()
        if grad_clip is not None:
            nn.utils.clip_grad_norm_(params, grad_clip)
        opt.step()
        return
    scaler.scale(loss).backward()
    if grad_clip is not None:
        scaler.unscale_(opt)  # clip the true gradients, not the scaled ones
        nn.utils.clip_grad_norm_(params, grad_clip)
    scaler.step(opt)  # skipped if a gradient is inf/NaN
    scaler.update()


def noisy_classifier_config(**changes: Any) -> TrainConfig:
    """A :class:`TrainConfig` for the noisy classifier: AdamW with weight decay 0.01, lr 2e-3, no clipping, no AMP.

    Defaults (changed by keyword): 600 steps of 128, warm-up 50, one checkpoint at the end.
    """
    base = dict(steps=600, batch_size=128, lr=2e-3, warmup=50, weight_decay=0.01, grad_clip=None, amp=False,
                checkpoint_every=0)
    return TrainConfig(**{**base, **changes})
