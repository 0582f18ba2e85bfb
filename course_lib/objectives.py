"""What :func:`course_lib.training.train` minimises (chapter 04): the diffusion loss and the other objectives.

    x₀ ~ data,  t ~ Uniform{0, …, T−1},  ε ~ N(0, I),  x_t = √ᾱ_t x₀ + √(1−ᾱ_t) ε
    loss = w(t) · ‖ model(x_t, t, c) − target ‖²,   target = ε, x₀ or v  (course_lib.forward.target)

- :func:`diffusion_loss` — that loss for one batch; ``min_snr_gamma`` sets w(t) by Min-SNR-γ
  weighting (Hang et al. 2023, eq. 8 and §3.4, :func:`min_snr_weight`).
- :func:`drop_condition` — "no condition" in place of some labels (classifier-free guidance, chapter 07).
- :class:`Objective` — the protocol :func:`~course_lib.training.train` trains through: a scalar
  ``loss(model, x0, cond, generator)`` and an ``identity()`` that must match to resume a run.
  :class:`DiffusionObjective` is the diffusion loss with its own draws; :class:`NoisyClassifierObjective`
  the noise-aware classifier of chapter 07 (Dhariwal & Nichol 2021, §4.1). Others live with their
  models (``course_lib.flow.FlowMatching``, ``course_lib.models.vae.ELBO``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoints import schedule_id
from .forward import PredictionType, target
from .guidance import null_condition
from .schedules import NoiseSchedule, broadcast_to


class Objective(Protocol):
    """What :func:`train` minimises: a scalar loss of a batch, and what must match to resume a run."""

    def loss(self, model: nn.Module, x0: torch.Tensor, cond: torch.Tensor | None,
             generator: torch.Generator) -> torch.Tensor: ...

    def identity(self) -> dict[str, Any]: ...


def to_device(x: torch.Tensor, dev: torch.device) -> torch.Tensor:
    """CPU draws onto the device; on CUDA through pinned memory, without waiting for the GPU (no host sync)."""
    if dev.type != "cuda":
        return x.to(dev)
    return x.pin_memory().to(dev, non_blocking=True)


def min_snr_weight(schedule: NoiseSchedule, t: torch.Tensor, gamma: float, prediction_type: PredictionType) -> torch.Tensor:
    """Per-sample loss weights of Min-SNR-γ (Hang et al. 2023) for each target type: shape (B,)."""
    snr = schedule.snr(t.to(schedule.alphas_cumprod.device)).to(t.device)  # no host round trip on a GPU
    clipped = torch.clamp(snr, max=gamma)
    if prediction_type == "epsilon":
        return clipped / snr
    if prediction_type == "sample":
        return clipped
    return clipped / (snr + 1.0)


def diffusion_loss(
    model: nn.Module, schedule: NoiseSchedule, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor,
    cond: torch.Tensor | None = None, *, prediction_type: PredictionType = "epsilon", min_snr_gamma: float | None = None,
) -> torch.Tensor:
    """The (optionally Min-SNR-weighted) mean squared error of one batch — a scalar."""
    x_t = schedule.add_noise(x0, noise, t)
    out = model(x_t, t, cond) if cond is not None else model(x_t, t)
    goal = target(schedule, x0, noise, t, prediction_type)
    per_item = (out.float() - goal.float()).pow(2).flatten(1).mean(dim=1)  # (B,)
    if min_snr_gamma is not None:
        per_item = per_item * min_snr_weight(schedule, t, min_snr_gamma, prediction_type)
    return per_item.mean()


def drop_condition(cond: torch.Tensor, drop: torch.Tensor) -> torch.Tensor:
    """Replace the conditions where ``drop`` (B,) is True by "none" (:func:`course_lib.guidance.null_condition`).

    Labels become −1, vectors a NaN row; token ids (B, L) of a prompt (chapter 08) a whole row of −1.
    """
    return torch.where(broadcast_to(drop, cond), null_condition(cond), cond)


# ----------------------------------------------------------------------------- objectives
@dataclass(frozen=True)
class DiffusionObjective:
    """The diffusion loss of one batch: draws t, ε (and condition drops) from ``generator``, in that order.

    ``batch_size``/``part`` (data-parallel training): draw for the whole global batch of ``batch_size``
    and keep the slice ``part`` that this process's ``x0`` holds, so every rank sees what one process would.
    """

    schedule: NoiseSchedule
    prediction_type: PredictionType = "epsilon"
    min_snr_gamma: float | None = None
    cond_drop_prob: float = 0.0

    def loss(self, model: nn.Module, x0: torch.Tensor, cond: torch.Tensor | None, generator: torch.Generator,
             *, batch_size: int | None = None, part: slice | None = None) -> torch.Tensor:
        B, dev = batch_size or x0.shape[0], x0.device
        part = part or slice(0, B)
        t = torch.randint(self.schedule.num_timesteps, (B,), generator=generator)[part]
        noise = torch.randn((B, *x0.shape[1:]), generator=generator)[part]
        if cond is not None and self.cond_drop_prob > 0:
            cond = drop_condition(cond, to_device((torch.rand(B, generator=generator) < self.cond_drop_prob)[part], dev))
        noise = to_device(noise, dev)
        if x0.is_contiguous(memory_format=torch.channels_last) and x0.dim() == 4:
            noise = noise.contiguous(memory_format=torch.channels_last)
        return diffusion_loss(model, self.schedule, x0, to_device(t, dev), noise, cond,
                              prediction_type=self.prediction_type, min_snr_gamma=self.min_snr_gamma)

    def identity(self) -> dict[str, Any]:
        return schedule_id(self.schedule)


@dataclass(frozen=True)
class NoisyClassifierObjective:
    """Cross-entropy of ``model(x_t, t)`` against the labels at t ~ U{0, …, T−1} (Dhariwal & Nichol 2021, §4.1).

    The classifier of classifier guidance (chapter 07) reads noisy pictures. At large t nothing can
    be told apart, so the loss there stays near log K; guidance needs the gradient at small and middle t.
    """

    schedule: NoiseSchedule

    def loss(self, model: nn.Module, x0: torch.Tensor, cond: torch.Tensor | None, generator: torch.Generator,
             *, batch_size: int | None = None, part: slice | None = None) -> torch.Tensor:
        if cond is None:
            raise ValueError("the noisy classifier needs labels: data=(images, labels)")
        B, dev = batch_size or x0.shape[0], x0.device
        part = part or slice(0, B)
        t = to_device(torch.randint(self.schedule.num_timesteps, (B,), generator=generator)[part], dev)
        noise = to_device(torch.randn((B, *x0.shape[1:]), generator=generator)[part], dev)
        return F.cross_entropy(model(self.schedule.to(dev).add_noise(x0, noise, t), t), cond.long())

    def identity(self) -> dict[str, Any]:
        return {"loss": "noisy_classifier_cross_entropy", "schedule": schedule_id(self.schedule)}
