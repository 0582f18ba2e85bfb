"""Chapter 09's GAN as two players taking turns in the course's one training loop (:func:`course_lib.training.train`).

One step, the hinge GAN (course_lib.models.gan):

    x ~ data,  z ~ N(0, I)
    detective:  L_D = mean max(0, 1 − D(x)) + mean max(0, 1 + D(G(z)))     (one Adam step on D, lr_d)
    artist:     L_G = −mean D(G(z))                                         (one Adam step on G, lr_g)

:class:`HingeGAN` is that step as an objective with *turns*: it names each player's optimizer and yields the
detective's loss, then — after the loop has stepped the detective — the artist's, scored by the updated
detective. :class:`GANPair` holds both networks as one model, so everything around the step is the loop's
own: the EMA (sample from the EMA generator), the progress bar, atomic sha256-verified checkpoints of both
players and both optimizers, the NaN stop and exact resume (bit for bit on the CPU). :func:`train_gan` is the
chapter's entry point with the GAN's own hyper-parameters (:class:`GANTrainConfig`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Iterator, NamedTuple

import torch
from torch import nn

from .models.gan import Discriminator, GANConfig, Generator, hinge_d_loss, hinge_g_loss
from .settings import check_float, check_int
from .training import StepInfo, TrainConfig, train


@dataclass(frozen=True)
class GANTrainConfig:
    """Hyper-parameters of :func:`train_gan`; all but ``checkpoint_every`` must match to resume.

    - ``lr_g`` / ``lr_d``: Adam learning rates of the artist and the detective (two time-scales:
      the detective learns faster), constant; ``beta1`` / ``beta2``: Adam's moment decays.
    - ``ema_decay``: the EMA generator's final decay (warm-up as in course_lib.training).
    """

    steps: int = 2000
    batch_size: int = 64
    lr_g: float = 2e-4
    lr_d: float = 4e-4
    beta1: float = 0.0
    beta2: float = 0.9
    ema_decay: float = 0.999
    checkpoint_every: int = 500
    seed: int = 0

    def __post_init__(self) -> None:
        check_int("steps", self.steps, min_value=1)
        check_int("batch_size", self.batch_size, min_value=2)
        check_float("lr_g", self.lr_g, min_value=0.0, max_value=1.0)
        check_float("lr_d", self.lr_d, min_value=0.0, max_value=1.0)
        check_float("beta1", self.beta1, min_value=0.0, max_value=1.0)
        check_float("beta2", self.beta2, min_value=0.0, max_value=1.0)
        check_float("ema_decay", self.ema_decay, min_value=0.0, max_value=1.0)
        check_int("checkpoint_every", self.checkpoint_every, min_value=0)
        check_int("seed", self.seed, min_value=0, max_value=2**63 - 1)

    def loop_config(self) -> TrainConfig:
        """The loop's :class:`TrainConfig`: these steps, batch, EMA, checkpoints and seed; a constant learning rate
        (each player's own, from :class:`HingeGAN`), no weight decay, no clipping, no AMP."""
        return TrainConfig(steps=self.steps, batch_size=self.batch_size, lr=self.lr_g, warmup=0, weight_decay=0.0,
                           grad_clip=None, ema_decay=self.ema_decay, checkpoint_every=self.checkpoint_every,
                           seed=self.seed, amp=False, lr_schedule="constant")

    def objective(self) -> "HingeGAN":
        return HingeGAN(self.lr_g, self.lr_d, self.beta1, self.beta2)


class GANPair(nn.Module):
    """The artist and the detective as one model (``.generator``, ``.discriminator``): what the loop trains,
    checkpoints and averages (the EMA of ``.generator`` is the one to sample from)."""

    def __init__(self, generator: nn.Module, discriminator: nn.Module) -> None:
        super().__init__()
        self.generator, self.discriminator = generator, discriminator
        self.config = getattr(generator, "config", None)
        check_int("generator.config.latent_dim", getattr(self.config, "latent_dim", None), min_value=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.generator(z)


@dataclass(frozen=True)
class HingeGAN:
    """The hinge GAN's step as two turns (Lim & Ye 2017; Miyato et al. 2018, eq. 16): the detective, then the artist."""

    lr_g: float
    lr_d: float
    beta1: float = 0.0
    beta2: float = 0.9

    def optimizers(self, model: GANPair, config: TrainConfig) -> dict[str, torch.optim.Optimizer]:
        betas = (self.beta1, self.beta2)
        return {"discriminator": torch.optim.Adam(model.discriminator.parameters(), lr=self.lr_d, betas=betas),
                "generator": torch.optim.Adam(model.generator.parameters(), lr=self.lr_g, betas=betas)}

    def turns(self, model: GANPair, x0: torch.Tensor, cond: torch.Tensor | None,
              generator: torch.Generator) -> Iterator[tuple[str, torch.Tensor]]:
        z = torch.randn(x0.shape[0], model.config.latent_dim, generator=generator)  # (B, d), after the batch's indices
        fake = model.generator(z.to(x0.device))
        yield "discriminator", hinge_d_loss(model.discriminator(x0), model.discriminator(fake.detach()))
        yield "generator", hinge_g_loss(model.discriminator(fake))  # scored by the detective the loop just stepped

    def identity(self) -> dict[str, Any]:
        return {"objective": "hinge-gan", "lr_g": self.lr_g, "lr_d": self.lr_d, "betas": [self.beta1, self.beta2]}


class GANResult(NamedTuple):
    """The trained generator, its EMA copy (sample from this one), the discriminator, both loss
    histories, the steps done and the training seconds (all sessions)."""

    generator: nn.Module
    ema_generator: nn.Module
    discriminator: nn.Module
    g_losses: list[float]
    d_losses: list[float]
    steps: int
    seconds: float


class GANStepInfo(NamedTuple):
    step: int
    g_loss: float
    d_loss: float
    generator: nn.Module
    ema_generator: nn.Module


def train_gan(
    generator: nn.Module,
    discriminator: nn.Module,
    data: torch.Tensor,
    config: GANTrainConfig,
    *,
    run_dir: str | os.PathLike | None = None,
    resume: bool = True,
    device: str | torch.device | None = None,
    progress: bool = True,
    callback: Callable[[GANStepInfo], None] | None = None,
) -> GANResult:
    """Train ``generator`` (z → image, with ``config.latent_dim``) against ``discriminator`` on ``data`` (N, C, H, W)
    in the one training loop (:class:`HingeGAN` on a :class:`GANPair`).

    With a ``run_dir`` a checkpoint is committed every ``config.checkpoint_every`` steps and at the
    end; ``resume=True`` verifies and continues an existing one (a finished one trains nothing).
    Raises :class:`course_lib.training.TrainingDiverged` on a NaN/inf loss.
    """
    for name, m in (("generator", generator), ("discriminator", discriminator)):
        if not isinstance(m, nn.Module):
            raise ValueError(f"{name} must be a torch.nn.Module, got {type(m).__name__}")
    if not isinstance(config, GANTrainConfig):
        raise ValueError(f"config must be a GANTrainConfig, got {type(config).__name__}")
    if not isinstance(data, torch.Tensor) or data.dim() != 4 or data.shape[0] < 1 or not data.is_floating_point():
        raise ValueError(f"data must be a float tensor of images (N, C, H, W), got {getattr(data, 'shape', type(data))}")
    pair = GANPair(generator, discriminator)
    relay = None if callback is None else (lambda info: callback(_gan_step_info(info)))
    result = train(pair, config.objective(), data, config.loop_config(), run_dir=run_dir, resume=resume, device=device,
                   progress=progress, callback=relay)
    return GANResult(result.model.generator, result.ema_model.generator, result.model.discriminator,
                     [g for _, g in result.losses], [d for d, _ in result.losses], result.steps, result.seconds)


def _gan_step_info(info: StepInfo) -> GANStepInfo:
    d_loss, g_loss = info.loss
    return GANStepInfo(info.step, g_loss, d_loss, info.model.generator, info.ema_model.generator)


def gan_pair(config: GANConfig) -> GANPair:
    """A fresh artist and detective of ``config`` as one :class:`GANPair` (the generator built first)."""
    generator = Generator(config)
    return GANPair(generator, Discriminator(config))
