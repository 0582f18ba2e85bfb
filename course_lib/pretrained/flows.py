"""Chapter 12's flow models: the chapter-04 U-Net trained by flow matching at the chapter-04 budget
(:func:`flow_digits_model`) and its 2-rectified copy (:func:`reflow_digits_model`), each trained once and cached."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checkpoints import read_state
from ..data import load_mnist5000
from ..models.unet import UNet, digits_config
from ..settings import Profile, resolve_profile, runs_dir
from ..training import TrainConfig
from .core import _device, run_info, train_once
from .digits import digits_train_config

FLOW_REFLOW_SAMPLER = "midpoint"  # how the reflow pairs are drawn from the base flow …
FLOW_REFLOW_PAIR_STEPS = {"smoke": 1, "cpu": 5, "gpu": 10}  # … and with how many steps (midpoint: 2 calls each)


def flow_train_config(profile: Profile = "auto") -> TrainConfig:
    """The flow model's recipe: the chapter-04 digits recipe (same steps, batch, lr, EMA: the same
    training time) without Min-SNR, which weighs the ε-loss only; the flow loss has its own weighting,
    the logit-normal choice of t (:class:`course_lib.flow.FlowMatching`, Esser et al. 2024)."""
    return replace(digits_train_config(profile), min_snr_gamma=None)


def flow_digits_model(
    profile: Profile = "auto", *, run_dir: str | os.PathLike | None = None, device: str | torch.device | None = None,
    progress: bool = True, retrain: bool = False,
) -> tuple[nn.Module, dict[str, Any]]:
    """The chapter-12 flow-matching digits model: the chapter-04 U-Net, trained as a velocity model
    ``v(x_t, t·1000)`` with :class:`~course_lib.flow.FlowMatching` (logit-normal t) at the chapter-04 budget.

    Cached in ``runs/flow-digits-<profile>`` (see :func:`train_once`). Returns ``(ema_model, info)``;
    info as :func:`digits_model`'s plus ``objective``.
    """
    from ..flow import FlowMatching

    prof = resolve_profile(profile)
    cfg, tcfg, objective = digits_config(prof), flow_train_config(prof), FlowMatching()
    run_dir = Path(run_dir) if run_dir is not None else runs_dir() / f"flow-digits-{prof}"
    images = load_mnist5000("train", size=cfg.image_size).images
    result, cached = train_once(lambda: UNet(cfg), objective, images, tcfg, run_dir, retrain=retrain, device=device,
                                progress=progress)
    return result.ema_model, {**run_info(result, cached, tcfg, prof, run_dir), "objective": objective.identity()}


def reflow_train_config(profile: Profile = "auto") -> TrainConfig:
    """Reflow's fine-tuning recipe: half the base flow's steps at half its peak lr, from the base flow's
    EMA weights (Liu et al. 2023, §2.2: the *k*-rectified flow starts from the (k−1)-th). With the pairs
    (4,000 × 10 network calls) the extra cost stays below the base training's (measured at 600 steps of
    the cpu recipe: 579 s of extra for 877 s of base training, 1 thread)."""
    base = flow_train_config(profile)
    return replace(base, steps=max(1, base.steps // 2), lr=base.lr / 2, warmup=max(1, base.warmup // 2))


def reflow_pairs_for(flow_model: nn.Module, base_sha256: str, profile: Profile, run_dir: Path, *, num_pairs: int,
                     device: torch.device) -> tuple[torch.Tensor, float]:
    """The (picture, static) couplings of reflow: ``num_pairs`` statics (seed 12) carried to pictures by the
    base flow (:data:`FLOW_REFLOW_SAMPLER`, :data:`FLOW_REFLOW_PAIR_STEPS`), cached in ``run_dir/pairs-<base sha256>.safetensors``
    (a new base flow gets new pairs); returns the pairs (:func:`course_lib.flow.reflow_pairs`) and the
    seconds spent drawing them."""
    import time

    from ..checkpoints import atomic_save_tensors, load_tensors
    from ..flow import reflow_pairs, sample_flow

    path = run_dir / f"pairs-{base_sha256[:16]}.safetensors"
    if path.is_file():
        stored = load_tensors(path)
        return stored["pairs"], float(stored["seconds"])
    tic = time.perf_counter()
    noise = torch.randn((num_pairs, 1, 32, 32), generator=torch.Generator().manual_seed(12))  # (N, 1, 32, 32)
    steps = FLOW_REFLOW_PAIR_STEPS[resolve_profile(profile)]
    flow_model = flow_model.to(device).eval()
    images = torch.cat([sample_flow(flow_model, tuple(z.shape), sampler=FLOW_REFLOW_SAMPLER, num_steps=steps,
                                    noise=z, device=device).cpu() for z in noise.split(250)])
    pairs = reflow_pairs(images, noise)
    seconds = time.perf_counter() - tic
    atomic_save_tensors(path, {"pairs": pairs, "seconds": torch.tensor(seconds, dtype=torch.float64)})
    return pairs, seconds


def reflow_digits_model(
    profile: Profile = "auto", *, run_dir: str | os.PathLike | None = None, device: str | torch.device | None = None,
    progress: bool = True, retrain: bool = False,
) -> tuple[nn.Module, dict[str, Any]]:
    """The 2-rectified flow of chapter 12 (Liu et al. 2023, Algorithm 1): the base flow
    (:func:`flow_digits_model`) draws one picture from each of 4,000 statics (64 in smoke), and a copy
    of it is trained further on the straight lines between exactly those pairs (uniform t: a one-step
    sampler uses the velocity at t = 1, so every t matters).

    Cached in ``runs/reflow-digits-<profile>``. Returns ``(ema_model, info)``; info as
    :func:`flow_digits_model`'s plus ``pair_seconds`` (drawing the pairs) and ``extra_seconds`` (pairs +
    training: the cost on top of the base flow's ``train_seconds``).
    """
    from ..flow import FlowMatching

    prof = resolve_profile(profile)
    base, base_info = flow_digits_model(prof, device=device, progress=progress)
    cfg, tcfg = digits_config(prof), reflow_train_config(prof)
    objective = FlowMatching(timestep_sampling="uniform", reflow=True)
    run_dir = Path(run_dir) if run_dir is not None else runs_dir() / f"reflow-digits-{prof}"
    base_sha = read_state(base_info["run_dir"])["sha256"]
    if retrain:
        for old in run_dir.glob("pairs-*.safetensors"):
            old.unlink()
    num_pairs = {"smoke": 64, "cpu": 4000, "gpu": 4000}[prof]
    pairs, pair_seconds = reflow_pairs_for(base, base_sha, prof, run_dir, num_pairs=num_pairs, device=_device(device))
    weights = {k: v.detach().cpu().clone() for k, v in base.state_dict().items()}

    def build() -> nn.Module:  # the base flow's EMA weights, trainable again
        model = UNet(cfg)
        model.load_state_dict(weights)
        return model

    result, cached = train_once(build, objective, pairs, tcfg, run_dir, retrain=retrain, device=device,
                                progress=progress)
    info = {**run_info(result, cached, tcfg, prof, run_dir), "objective": objective.identity(),
            "base_train_seconds": base_info["train_seconds"], "pair_seconds": pair_seconds,
            "extra_seconds": pair_seconds + result.seconds, "num_pairs": num_pairs}
    return result.ema_model, info
