"""Chapter 15's one-step digits models: a consistency model distilled from chapter 12's flow
(:data:`CONSISTENCY`, and :data:`CONSISTENCY_FREE`, the same without the boundary condition) and a
MeanFlow model trained from scratch (:data:`MEANFLOW`).

In the ``cpu`` profile all three ship in ``course_lib/weights`` (written by ``benchmarks/train_onestep.py``
through :func:`course_lib.registry.write_shipped`): together they take longer to train on the 2-core
reference machine than the chapter may run. Their cards keep the measured seconds: the consistency
models' ``info.path_seconds`` (the teacher drawing its paths), ``info.train_seconds`` and their sum
``info.extra_seconds`` (the cost on top of the teacher's training, ``info.base_train_seconds``); the
MeanFlow model's ``info.train_seconds``. Other profiles, ``retrain=True`` or a ``run_dir`` train them once
and cache them like every shared model (:func:`course_lib.registry.obtain`).

The teacher is chapter 12's flow model (:data:`course_lib.pretrained.flows.FLOW`), not chapter 04's
ε-prediction model: its paths are already nearly straight, so the few teacher steps that make each
path are accurate (its DPM-Solver++(2M) at 10 calls matches DDPM-1000 of the diffusion model), its
network reads directly as the student's denoiser, and its ``cpu`` weights ship (sha256-checked).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from ..checkpoints import cached_tensors
from ..consistency import ConsistencyModel, PathConsistency, path_sigmas, teacher_paths
from ..data import load_mnist5000
from ..meanflow import MeanFlowNet, MeanFlowObjective
from ..models.unet import UNet, digits_config
from ..optim import TrainConfig, config_identity
from ..registry import Recipe, obtain, register
from ..settings import Profile, check_bool, resolve_device, resolve_profile, runs_dir
from .flows import flow_digits_model, flow_identity, flow_train_config

#: how many teacher paths, and how many DPM-Solver++(2M) steps (= points, = teacher calls) each
PATHS = {"smoke": 64, "cpu": 4000, "gpu": 12000}
PATH_STEPS = {"smoke": 2, "cpu": 10, "gpu": 10}
PATH_SEED = 15  # the statics the teacher's paths start from
SHIPPED_PROFILES = ("cpu",)
CARD_INFO = ("train_seconds", "steps", "config", "train_config", "profile", "losses", "objective")
PATH_INFO = ("path_seconds", "extra_seconds", "base_train_seconds", "num_paths")


def consistency_train_config(profile: Profile = "auto") -> TrainConfig:
    """The distillation's recipe: fine-tuning the teacher's weights at lr 1e-3 (half the teacher's peak),
    batch 64, EMA 0.999, for a third of the teacher's steps in the ``cpu`` profile, so that drawing the paths
    plus training costs less than the teacher's own training (chapter 15 measures both)."""
    base = flow_train_config(profile)
    steps = max(1, base.steps // 3)  # cpu: 1,200
    return replace(base, steps=steps, lr=1e-3, warmup=min(50, base.warmup), checkpoint_every=min(300, steps))


def consistency_objective(profile: Profile = "auto") -> PathConsistency:
    """Any-pair consistency on the teacher's paths, pseudo-Huber distance (:class:`~course_lib.consistency.PathConsistency`)."""
    return PathConsistency(tuple(path_sigmas(PATH_STEPS[resolve_profile(profile)]).tolist()), skip="any")


def _build(profile: str, boundary: bool) -> ConsistencyModel:
    return ConsistencyModel(UNet(digits_config(profile)), boundary=boundary)


def consistency_identity(profile: Profile = "auto", *, boundary: bool = True) -> dict[str, Any]:
    """What makes one distilled model: the network, the recipe, the objective, how the paths are drawn and the teacher."""
    prof = resolve_profile(profile)
    paths = {"sampler": "dpmpp_2m", "steps": PATH_STEPS[prof], "num_paths": PATHS[prof], "seed": PATH_SEED}
    return {"config": _build(prof, boundary).config.to_dict(), "train_config": config_identity(consistency_train_config(prof)),
            "objective": consistency_objective(prof).identity(), "paths": paths, "teacher": flow_identity(prof)}


def paths_for(teacher: nn.Module, teacher_sha256: str, profile: str, run_dir: Path, *,
              device: torch.device) -> tuple[torch.Tensor, float]:
    """The teacher's paths (:func:`course_lib.consistency.teacher_paths`) from :data:`PATHS` statics (seed
    :data:`PATH_SEED`), cached in ``run_dir/paths-<key>.safetensors`` (float16; the key hashes the teacher's
    sha256 and how the paths are drawn); returns the paths as float32 and the seconds spent drawing them."""
    recipe = {"teacher": teacher_sha256, "steps": PATH_STEPS[profile], "num_paths": PATHS[profile], "seed": PATH_SEED}
    path = run_dir / f"paths-{hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]}.safetensors"

    def draw() -> dict[str, torch.Tensor]:
        tic = time.perf_counter()
        noise = torch.randn((PATHS[profile], 1, 32, 32), generator=torch.Generator().manual_seed(PATH_SEED))  # (N, 1, 32, 32)
        paths, _ = teacher_paths(teacher.to(device).eval(), noise.to(device), PATH_STEPS[profile])
        seconds = time.perf_counter() - tic  # stored float16: what is stored is what trains, first run or resumed
        return {"paths": paths.half(), "seconds": torch.tensor(seconds, dtype=torch.float64)}

    stored = cached_tensors(path, draw)
    return stored["paths"].float(), float(stored["seconds"])


class PathStart(NamedTuple):
    """What distillation starts from: the teacher's weights (as the student's), its paths, their seconds, its info."""

    weights: dict[str, torch.Tensor]
    paths: torch.Tensor
    path_seconds: float
    teacher_info: dict[str, Any]


def path_start(profile: str, run_dir: Path, *, teacher_dir: Path | None = None, device: str | torch.device | None = None,
               progress: bool = True) -> PathStart:
    """The teacher (the shipped flow in the ``cpu`` profile, else the cached or trained one; ``teacher_dir`` trains
    it there) and its paths, cached in ``run_dir``."""
    teacher, info = flow_digits_model(profile, run_dir=teacher_dir, device=device, progress=progress)
    paths, seconds = paths_for(teacher, info["sha256"], profile, run_dir, device=resolve_device(device))
    weights = {f"net.{k}": v.detach().cpu().clone() for k, v in teacher.state_dict().items()}
    return PathStart(weights, paths, seconds, info)


def _record(name: str, boundary: bool) -> Recipe:
    def start(p: str) -> PathStart:  # the record's default run directory, runs/<name>-<profile>
        return path_start(p, runs_dir() / f"{name}-{p}")

    return Recipe(
        name=name, chapter="15", build=lambda p: _build(p, boundary), objective=consistency_objective,
        train_config=consistency_train_config, data=lambda p: start(p).paths, init=lambda p: start(p).weights,
        identity=lambda p: consistency_identity(p, boundary=boundary), shipped=SHIPPED_PROFILES,
        card_info=CARD_INFO + PATH_INFO, script="python benchmarks/train_onestep.py")


#: the consistency model distilled from chapter 12's flow (ships for the cpu profile)
CONSISTENCY = register(_record("consistency_digits", True))
#: the same recipe without the boundary condition (f = the denoiser itself): chapter 15's ablation
CONSISTENCY_FREE = register(_record("consistency_digits_free", False))


def consistency_model(profile: Profile = "auto", *, boundary: bool = True, run_dir: str | os.PathLike | None = None,
                      device: str | torch.device | None = None, progress: bool = True,
                      retrain: bool = False) -> tuple[nn.Module, dict[str, Any]]:
    """Chapter 15's consistency model f(x, σ) (:class:`~course_lib.consistency.ConsistencyModel`), distilled from
    chapter 12's flow on its paths (:data:`CONSISTENCY`; ``boundary=False``: :data:`CONSISTENCY_FREE`).

    ``cpu`` profile: the shipped weights, checked by sha256 and :func:`consistency_identity`. Otherwise, or with
    ``retrain=True`` or a ``run_dir``: the teacher draws its paths (cached in the run directory) and the student,
    a copy of the teacher, trains on them. Returns ``(ema_model, info)``; info as :func:`course_lib.registry.obtain`'s
    plus ``path_seconds``, ``extra_seconds`` (paths + training: the cost on top of the teacher),
    ``base_train_seconds`` (the teacher's training) and ``num_paths``.
    """
    check_bool("retrain", retrain)
    prof = resolve_profile(profile)
    record = CONSISTENCY if check_bool("boundary", boundary) else CONSISTENCY_FREE
    if prof in record.shipped and run_dir is None and not retrain:
        return obtain(record, prof, device=device)
    run_dir = Path(run_dir) if run_dir is not None else record.run_dir(prof)
    if retrain:
        for old in run_dir.glob("paths-*.safetensors"):
            old.unlink()
    start = path_start(prof, run_dir, device=device, progress=progress)
    recipe = replace(record, data=lambda p: start.paths, init=lambda p: start.weights)
    model, info = obtain(recipe, prof, run_dir=run_dir, device=device, progress=progress, retrain=retrain)
    return model, {**info, "objective": consistency_objective(prof).identity(), "path_seconds": start.path_seconds,
                   "extra_seconds": start.path_seconds + info["train_seconds"],
                   "base_train_seconds": start.teacher_info["train_seconds"], "num_paths": PATHS[prof]}


# ----------------------------------------------------------------------------- MeanFlow, from scratch
def meanflow_train_config(profile: Profile = "auto") -> TrainConfig:
    """MeanFlow's recipe: the flow model's (chapter 12: batch, lr, EMA, warm-up) for as many steps as the
    distillation takes (:func:`consistency_train_config`). A MeanFlow step costs what a distillation step does
    (two forward passes and one backward: the finite difference of :func:`course_lib.meanflow.path_derivative`),
    so the two one-step models get the same training compute, and only the distilled one also has a teacher."""
    return replace(flow_train_config(profile), steps=consistency_train_config(profile).steps)


def _digits(profile: str) -> torch.Tensor:
    return load_mnist5000("train", size=digits_config(profile).image_size).images


#: MeanFlow trained from scratch on the digits (ships for the cpu profile)
MEANFLOW = register(Recipe(
    name="meanflow_digits", chapter="15", build=lambda p: MeanFlowNet(digits_config(p)),
    objective=lambda p: MeanFlowObjective(), train_config=meanflow_train_config, data=_digits,
    shipped=SHIPPED_PROFILES, card_info=CARD_INFO, script="python benchmarks/train_onestep.py"))


def meanflow_model(profile: Profile = "auto", *, run_dir: str | os.PathLike | None = None,
                   device: str | torch.device | None = None, progress: bool = True,
                   retrain: bool = False) -> tuple[nn.Module, dict[str, Any]]:
    """Chapter 15's MeanFlow model u(x_t, r, t) (:class:`~course_lib.meanflow.MeanFlowNet`, :data:`MEANFLOW`):
    shipped in the ``cpu`` profile, else trained once and cached. Returns ``(ema_model, info)``."""
    model, info = obtain(MEANFLOW, profile, run_dir=run_dir, device=device, progress=progress, retrain=retrain)
    return model, {"objective": MeanFlowObjective().identity(), **info}


__all__ = [
    "CONSISTENCY", "CONSISTENCY_FREE", "MEANFLOW", "PATHS", "PATH_SEED", "PATH_STEPS", "PathStart",
    "consistency_identity", "consistency_model", "consistency_objective", "consistency_train_config",
    "meanflow_model", "meanflow_train_config", "path_start", "paths_for",
]
