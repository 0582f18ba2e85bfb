"""Chapter 12's flow models: the chapter-04 U-Net trained by flow matching at the chapter-04 budget
(:func:`flow_digits_model`) and its 2-rectified copy (:func:`reflow_digits_model`).

In the ``cpu`` profile both ship in ``course_lib/weights`` (:mod:`course_lib.registry`; written by
``benchmarks/train_flows.py``): together they take longer to train on the 2-core reference machine than
the whole chapter may run. Their cards keep the measured training seconds (``info.train_seconds``; the
reflow's also ``info.pair_seconds`` and ``info.extra_seconds``), which the chapter quotes. Other
profiles, ``retrain=True`` or a ``run_dir`` train them once and cache them
like every shared model."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from ..batches import sample_in_batches
from ..checkpoints import fingerprint
from ..data import load_mnist5000
from ..flow import FlowMatching
from ..models.unet import UNet, digits_config
from ..optim import TrainConfig, config_identity
from ..registry import Recipe, obtain, register, shipped_profile
from ..settings import Profile, capped_count, check_bool, resolve_device, resolve_profile
from .digits import digits_train_config

FLOW_REFLOW_SAMPLER = "dpmpp_2m"  # how the reflow pairs are drawn from the base flow …
FLOW_REFLOW_PAIR_STEPS = {"smoke": 1, "cpu": 10, "gpu": 10}  # … with how many steps (one network call each) …
FLOW_REFLOW_PAIRS = {"smoke": 64, "cpu": 12000, "gpu": 12000}  # … and how many pairs
PAIR_SEED = 12  # the statics of the pairs
SHIPPED_PROFILES = ("cpu",)  # profiles whose flow and reflow models ship in course_lib/weights
#: the keys of a model's info that its shipped card keeps (the rest describe where it was loaded from)
CARD_INFO = ("train_seconds", "steps", "config", "train_config", "profile", "losses", "objective")


def flow_train_config(profile: Profile = "auto") -> TrainConfig:
    """The flow model's recipe: the chapter-04 digits recipe (same steps, batch, lr, EMA: the same
    training time) without Min-SNR, which weighs the ε-loss only; the flow loss has its own weighting,
    the logit-normal choice of t (:class:`course_lib.flow.FlowMatching`, Esser et al. 2024)."""
    return replace(digits_train_config(profile), min_snr_gamma=None)


def flow_identity(profile: Profile = "auto") -> dict[str, Any]:
    """What makes one flow digits model: the U-Net, the recipe, the objective and the training digits
    (a shipped file is loaded only when its card holds exactly this)."""
    prof = resolve_profile(profile)
    cfg = digits_config(prof)
    return {"config": cfg.to_dict(), "train_config": config_identity(flow_train_config(prof)),
            "objective": FlowMatching().identity(), "data": fingerprint(_digits(prof))["sha256"]}


def _digits(profile: str) -> torch.Tensor:
    return load_mnist5000("train", size=digits_config(profile).image_size).images


#: chapter 12's flow-matching digits model (ships for the cpu profile)
FLOW = register(Recipe(
    name="flow_digits", chapter="12", build=lambda p: UNet(digits_config(p)), objective=lambda p: FlowMatching(),
    train_config=flow_train_config, data=_digits, identity=flow_identity, shipped=SHIPPED_PROFILES,
    run_name=lambda p: f"flow-digits-{p}", card_info=CARD_INFO, script="python benchmarks/train_flows.py"))


def flow_digits_model(
    profile: Profile = "auto", *, run_dir: str | os.PathLike | None = None, device: str | torch.device | None = None,
    progress: bool = True, retrain: bool = False,
) -> tuple[nn.Module, dict[str, Any]]:
    """The chapter-12 flow-matching digits model (:data:`FLOW`): the chapter-04 U-Net, trained as a velocity model
    ``v(x_t, t·1000)`` with :class:`~course_lib.flow.FlowMatching` (logit-normal t) at the chapter-04 budget.

    ``cpu`` profile: the shipped ``course_lib/weights/flow_digits.*``, checked by sha256 and
    :func:`flow_identity`. Otherwise, or with ``retrain=True`` or a ``run_dir``: trained once and
    cached in ``runs/flow-digits-<profile>`` (:func:`course_lib.registry.obtain`). Returns ``(ema_model, info)``;
    info as :func:`digits_model`'s plus ``objective``, ``shipped`` and ``sha256`` (of the weights).
    """
    model, info = obtain(FLOW, profile, run_dir=run_dir, device=device, progress=progress, retrain=retrain)
    return model, {"objective": FlowMatching().identity(), **info}


def reflow_train_config(profile: Profile = "auto") -> TrainConfig:
    """Reflow's fine-tuning recipe: two thirds of the base flow's steps at its peak lr and half its
    warm-up, from the base flow's EMA weights (Liu et al. 2023, §2.2: the *k*-rectified flow starts
    from the (k−1)-th).

    Chosen one change at a time in the ``cpu`` profile, by the FID at 4 network calls of
    DPM-Solver++(2M) (chapter 12's few-step goal): pairs drawn with DPM-Solver++(2M)-10 rather than the
    midpoint rule (:data:`FLOW_REFLOW_SAMPLER`, :data:`FLOW_REFLOW_PAIR_STEPS`), 12,000 of them
    (:data:`FLOW_REFLOW_PAIRS`), the full lr rather than half or twice it, two thirds of the steps; then
    the objective's times drawn U-shaped and the pseudo-Huber loss (Lee et al. 2024; see
    :func:`reflow_digits_model`). The extra cost, drawing the pairs plus these steps, is meant to stay
    below the base flow's training time. Where the figures live: the shipped run's seconds in its card,
    ``course_lib/weights/reflow_digits.json`` (``info.pair_seconds``, ``info.train_seconds``,
    ``info.extra_seconds``, ``info.base_train_seconds``); the FID after each change, with the conditions,
    in README "Performance" → "Flow matching (chapter 12)" ("How the reflow recipe got there";
    ``benchmarks/train_flows.py`` retrains the shipped pair, ``benchmarks/samplers.py --profile cpu
    --threads 2 --json`` measures it)."""
    base = flow_train_config(profile)
    return replace(base, steps=max(1, base.steps * 2 // 3), warmup=max(1, base.warmup // 2))


def reflow_pairs_for(flow_model: nn.Module, base_sha256: str, profile: Profile, run_dir: Path, *, num_pairs: int,
                     device: torch.device) -> tuple[torch.Tensor, float]:
    """The (picture, static) couplings of reflow: ``num_pairs`` statics (seed :data:`PAIR_SEED`) carried to pictures by the
    base flow (:data:`FLOW_REFLOW_SAMPLER`, :data:`FLOW_REFLOW_PAIR_STEPS`), cached in ``run_dir/pairs-<key>.safetensors``,
    the key a hash of the base flow's sha256 and of how the pairs are drawn (another base flow or
    another recipe gets new pairs); returns the pairs (:func:`course_lib.flow.reflow_pairs`) and the
    seconds spent drawing them."""
    import hashlib
    import json
    import time

    from ..checkpoints import cached_tensors
    from ..flow import reflow_pairs, sample_flow

    steps = FLOW_REFLOW_PAIR_STEPS[resolve_profile(profile)]
    recipe = {"base": base_sha256, "sampler": FLOW_REFLOW_SAMPLER, "steps": steps, "num_pairs": num_pairs, "seed": PAIR_SEED}
    path = run_dir / f"pairs-{hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]}.safetensors"

    def draw() -> dict[str, torch.Tensor]:
        tic = time.perf_counter()
        noise = torch.randn((num_pairs, 1, 32, 32), generator=torch.Generator().manual_seed(PAIR_SEED))  # (N, 1, 32, 32)
        base = flow_model.to(device).eval()
        images = sample_in_batches(lambda b: sample_flow(base, tuple(b.noise.shape), sampler=FLOW_REFLOW_SAMPLER,
                                                         num_steps=steps, noise=b.noise, device=device),
                                   num_pairs, batch_size=250, noise=noise, clamp=False)  # deterministic: no draws
        seconds = time.perf_counter() - tic
        return {"pairs": reflow_pairs(images, noise), "seconds": torch.tensor(seconds, dtype=torch.float64)}

    stored = cached_tensors(path, draw)  # kept beside the run: a second call reads them
    return stored["pairs"], float(stored["seconds"])


def reflow_identity(profile: Profile = "auto") -> dict[str, Any]:
    """What makes one reflow digits model: the U-Net, the fine-tuning recipe, how the pairs are drawn
    and the base flow's :func:`flow_identity`."""
    prof = resolve_profile(profile)
    pairs = {"sampler": FLOW_REFLOW_SAMPLER, "steps": FLOW_REFLOW_PAIR_STEPS[prof], "num_pairs": FLOW_REFLOW_PAIRS[prof],
             "seed": PAIR_SEED}
    return {"config": digits_config(prof).to_dict(), "train_config": config_identity(reflow_train_config(prof)),
            "objective": _reflow_objective().identity(), "pairs": pairs, "base": flow_identity(prof)}


def _reflow_objective() -> FlowMatching:
    return FlowMatching(timestep_sampling="u_shaped", reflow=True, distance="pseudo_huber")


class ReflowStart(NamedTuple):
    """What reflow trains from: the base flow's EMA weights, the pairs it drew, their seconds and the base's info."""

    weights: dict[str, torch.Tensor]
    pairs: torch.Tensor
    pair_seconds: float
    base_info: dict[str, Any]


def reflow_start(profile: str, base_dir: Path, run_dir: Path, *, device: str | torch.device | None = None,
                 progress: bool = True) -> ReflowStart:
    """The base flow in ``base_dir`` (trained there first if it is not: a retrained reflow never starts from shipped
    weights) and the pairs it draws, cached in ``run_dir`` (:func:`reflow_pairs_for`)."""
    base, base_info = flow_digits_model(profile, run_dir=base_dir, device=device, progress=progress)
    pairs_wanted = capped_count(FLOW_REFLOW_PAIRS[profile], FLOW_REFLOW_PAIRS["smoke"])  # a gpu dry run: a few
    pairs, seconds = reflow_pairs_for(base, base_info["sha256"], profile, run_dir, num_pairs=pairs_wanted,
                                      device=resolve_device(device))
    return ReflowStart({k: v.detach().cpu().clone() for k, v in base.state_dict().items()}, pairs, seconds, base_info)


def _default_start(profile: str) -> ReflowStart:
    return reflow_start(profile, FLOW.run_dir(profile), REFLOW.run_dir(profile))


#: chapter 12's 2-rectified flow: the base flow's copy trained on the pairs it drew (ships for the cpu profile)
REFLOW = register(Recipe(
    name="reflow_digits", chapter="12", build=lambda p: UNet(digits_config(p)), objective=lambda p: _reflow_objective(),
    train_config=reflow_train_config, data=lambda p: _default_start(p).pairs, init=lambda p: _default_start(p).weights,
    identity=reflow_identity, shipped=SHIPPED_PROFILES, run_name=lambda p: f"reflow-digits-{p}",
    card_info=CARD_INFO + ("base_train_seconds", "pair_seconds", "extra_seconds", "num_pairs"),
    script="python benchmarks/train_flows.py"))


def reflow_digits_model(
    profile: Profile = "auto", *, run_dir: str | os.PathLike | None = None, device: str | torch.device | None = None,
    progress: bool = True, retrain: bool = False, base_run_dir: str | os.PathLike | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """The 2-rectified flow of chapter 12 (Liu et al. 2023, Algorithm 1; :data:`REFLOW`): the base flow
    (:func:`flow_digits_model`) draws one picture from each of :data:`FLOW_REFLOW_PAIRS` statics, and a
    copy of it is trained further on the straight lines between exactly those pairs, with times drawn
    U-shaped and the pseudo-Huber loss (Lee et al. 2024: a one-step sampler uses the velocity at
    t = 1 only, and a few-step one mostly near the ends).

    ``cpu`` profile: the shipped ``course_lib/weights/reflow_digits.*``, checked by sha256 and
    :func:`reflow_identity`. Otherwise, or with ``retrain=True`` or a ``run_dir``: trained once from
    the base flow in ``base_run_dir`` (default ``runs/flow-digits-<profile>``, trained first if it is
    not there: a retrained reflow never starts from shipped weights) and cached in
    ``runs/reflow-digits-<profile>``. Returns ``(ema_model, info)``; info as
    :func:`flow_digits_model`'s plus ``num_pairs``, ``pair_seconds`` (drawing the pairs),
    ``extra_seconds`` (pairs + training: the cost on top of the base flow's training) and
    ``base_train_seconds``.
    """
    check_bool("retrain", retrain)
    prof = resolve_profile(profile)
    if shipped_profile(REFLOW, prof) is not None and run_dir is None and not retrain:  # gpu: cpu's weights
        model, info = obtain(REFLOW, prof, device=device)
        return model, {"objective": _reflow_objective().identity(), **info}
    run_dir = Path(run_dir) if run_dir is not None else REFLOW.run_dir(prof)
    if retrain:
        for old in run_dir.glob("pairs-*.safetensors"):
            old.unlink()
    base_dir = Path(base_run_dir) if base_run_dir is not None else FLOW.run_dir(prof)
    start = reflow_start(prof, base_dir, run_dir, device=device, progress=progress)
    recipe = replace(REFLOW, data=lambda p: start.pairs, init=lambda p: start.weights)
    model, info = obtain(recipe, prof, run_dir=run_dir, device=device, progress=progress, retrain=retrain)
    return model, {**info, "objective": _reflow_objective().identity(), "base_train_seconds": start.base_info["train_seconds"],
                   "pair_seconds": start.pair_seconds, "extra_seconds": start.pair_seconds + info["train_seconds"],
                   "num_pairs": FLOW_REFLOW_PAIRS[prof]}
