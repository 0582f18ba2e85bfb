"""Training a GAN with the course's machinery: EMA, progress bar, atomic checkpoints, exact resume (chapter 09).

One step, the hinge GAN (course_lib.models.gan):

    x ~ data,  z ~ N(0, I)
    detective:  L_D = mean max(0, 1 − D(x)) + mean max(0, 1 + D(G(z)))     (one Adam step on D, lr_d)
    artist:     L_G = −mean D(G(z))                                         (one Adam step on G, lr_g)

Two optimizers and two losses do not fit the one-objective loop of :mod:`course_lib.training`,
so this loop is the second, smaller one; everything around the step is the same machinery:
:func:`course_lib.training.ema_update` / ``ema_decay_at`` (sample from the EMA generator),
:mod:`course_lib.checkpoints` (safetensors + JSON committed atomically, sha256-verified, every
identity — models, config, data — checked on resume) and the same RNG bookkeeping, so a run killed
at any moment resumes exactly: bit for bit on the CPU.
"""

from __future__ import annotations

import math
import os
import time
from copy import deepcopy
from dataclasses import asdict, dataclass
from typing import Any, Callable, NamedTuple

import torch
from torch import nn

from .checkpoints import (
    check_same,
    check_signature,
    fingerprint,
    has_checkpoint,
    load_checkpoint,
    model_signature,
    optimizer_tensors,
    restore_optimizer,
    restore_rng,
    rng_tensors,
    save_checkpoint,
    state_dict_into,
)
from .models.gan import hinge_d_loss, hinge_g_loss
from .settings import check_bool, check_float, check_int, resolve_device
from .training import TrainingDiverged, ema_decay_at, ema_update


@dataclass(frozen=True)
class GANTrainConfig:
    """Hyper-parameters of :func:`train_gan`; all but ``checkpoint_every`` must match to resume.

    - ``lr_g`` / ``lr_d``: Adam learning rates of the artist and the detective (two time-scales:
      the detective learns faster); ``beta1`` / ``beta2``: Adam's moment decays.
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
    """Train ``generator`` (z → image, with ``config.latent_dim``) against ``discriminator`` on ``data`` (N, C, H, W).

    With a ``run_dir`` a checkpoint is committed every ``config.checkpoint_every`` steps and at the
    end; ``resume=True`` verifies and continues an existing one (a finished one trains nothing).
    Raises :class:`course_lib.training.TrainingDiverged` on a NaN/inf loss.
    """
    for name, m in (("generator", generator), ("discriminator", discriminator)):
        if not isinstance(m, nn.Module):
            raise ValueError(f"{name} must be a torch.nn.Module, got {type(m).__name__}")
    if not isinstance(config, GANTrainConfig):
        raise ValueError(f"config must be a GANTrainConfig, got {type(config).__name__}")
    check_bool("resume", resume)
    check_bool("progress", progress)
    if not isinstance(data, torch.Tensor) or data.dim() != 4 or data.shape[0] < 1 or not data.is_floating_point():
        raise ValueError(f"data must be a float tensor of images (N, C, H, W), got {getattr(data, 'shape', type(data))}")
    latent_dim = check_int("generator.config.latent_dim", getattr(getattr(generator, "config", None), "latent_dim", None),
                           min_value=1)
    dev = resolve_device(device)
    identity = {"generator": model_signature(generator), "discriminator": model_signature(discriminator),
                "train_config": asdict(config), "objective": {"objective": "hinge-gan"}, "data": fingerprint(data)}

    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)  # every draw of the loop: indices and codes
    G, D = generator.to(dev).train(), discriminator.to(dev).train()
    G_ema = deepcopy(G).eval().requires_grad_(False)
    betas = (config.beta1, config.beta2)
    opt_g = torch.optim.Adam(G.parameters(), lr=config.lr_g, betas=betas)
    opt_d = torch.optim.Adam(D.parameters(), lr=config.lr_d, betas=betas)
    g_losses: list[float] = []
    d_losses: list[float] = []
    start, seconds_before = 0, 0.0
    if run_dir is not None and resume and has_checkpoint(run_dir):
        tensors, state = load_checkpoint(run_dir)
        check_signature(state["generator"], G)
        check_signature(state["discriminator"], D)
        check_same("training config", state["train_config"], identity["train_config"], ignore=("checkpoint_every",))
        check_same("objective", state["objective"], identity["objective"])
        check_same("data set", {"data": state["data"]}, {"data": identity["data"]})
        state_dict_into(G, tensors, "gen.")
        state_dict_into(D, tensors, "disc.")
        state_dict_into(G_ema, tensors, "ema.")
        restore_optimizer(opt_g, {k[2:]: v for k, v in tensors.items() if k.startswith("g.optim.")},
                          state["optimizer_g"])
        restore_optimizer(opt_d, {k[2:]: v for k, v in tensors.items() if k.startswith("d.optim.")},
                          state["optimizer_d"])
        restore_rng(gen, tensors, dev)
        start, seconds_before = int(state["step"]), float(state["seconds"])
        g_losses, d_losses = list(state["g_losses"]), list(state["d_losses"])

    tic = time.perf_counter()

    def seconds() -> float:
        return seconds_before + (time.perf_counter() - tic if start < config.steps else 0.0)

    committed: dict[str, float] = {}

    def commit(step: int) -> None:
        committed["seconds"] = seconds()
        g_t, g_groups = optimizer_tensors(opt_g)
        d_t, d_groups = optimizer_tensors(opt_d)
        tensors = {**{f"gen.{k}": v for k, v in G.state_dict().items()},
                   **{f"disc.{k}": v for k, v in D.state_dict().items()},
                   **{f"ema.{k}": v for k, v in G_ema.state_dict().items()},
                   **{f"g.{k}": v for k, v in g_t.items()}, **{f"d.{k}": v for k, v in d_t.items()},
                   **rng_tensors(gen, dev)}
        save_checkpoint(run_dir, tensors, {**identity, "step": step, "seconds": committed["seconds"],
                                           "g_losses": g_losses, "d_losses": d_losses,
                                           "optimizer_g": g_groups, "optimizer_d": d_groups})

    images = data.to(dev)
    n, B = data.shape[0], config.batch_size
    from tqdm.auto import tqdm

    bar = tqdm(total=config.steps, initial=start, disable=not progress or start >= config.steps,
               desc="training the GAN", dynamic_ncols=True)
    try:
        for step in range(start, config.steps):
            idx = torch.randint(n, (B,), generator=gen)
            z = torch.randn(B, latent_dim, generator=gen)
            real = images[idx.to(dev)]
            fake = G(z.to(dev))
            d_loss = hinge_d_loss(D(real), D(fake.detach()))  # the detective's turn
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
            g_loss = hinge_g_loss(D(fake))  # the artist's turn, against the updated detective
            opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            opt_g.step()
            gv, dv = float(g_loss.detach()), float(d_loss.detach())
            if not (math.isfinite(gv) and math.isfinite(dv)):
                raise TrainingDiverged(f"the GAN losses became G {gv}, D {dv} at step {step + 1}; "
                                       f"try lower lr_g/lr_d (now {config.lr_g:g}/{config.lr_d:g})")
            ema_update(G_ema, G, ema_decay_at(step, config.ema_decay))
            g_losses.append(gv)
            d_losses.append(dv)
            done = step + 1
            if progress and (done % 10 == 0 or done == config.steps):
                bar.set_postfix(G=f"{sum(g_losses[-50:]) / len(g_losses[-50:]):.3f}",
                                D=f"{sum(d_losses[-50:]) / len(d_losses[-50:]):.3f}", refresh=False)
            bar.update(1)
            if callback is not None:
                callback(GANStepInfo(done, gv, dv, G, G_ema))
            if run_dir is not None and (done == config.steps or (config.checkpoint_every and done % config.checkpoint_every == 0)):
                commit(done)
    finally:
        bar.close()
    G.eval()
    D.eval()
    total = committed["seconds"] if run_dir is not None and start < config.steps else seconds()
    return GANResult(G, G_ema, D, g_losses, d_losses, max(start, config.steps), total)
