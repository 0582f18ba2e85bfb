"""Chapter 15's one-step digits models: a consistency model distilled from chapter 12's flow
(:data:`CONSISTENCY`, and :data:`CONSISTENCY_FREE`, the same without the boundary condition), the distilled
model trained on with a critic (:data:`CONSISTENCY_CRITIC`) and a MeanFlow model trained from scratch
(:data:`MEANFLOW`).

In the ``cpu`` profile all four ship in ``course_lib/weights`` (written by ``benchmarks/train_onestep.py``
through :func:`course_lib.registry.write_shipped`): together they take longer to train on the 2-core
reference machine than the chapter may run. Their cards keep the measured seconds: the consistency
models' ``info.path_seconds`` (the teacher drawing its paths), ``info.train_seconds`` and their sum
``info.extra_seconds`` (the cost on top of the teacher's training, ``info.base_train_seconds``; the
critic-tuned model's adds its own training to the distillation's, ``info.distill_seconds``); the MeanFlow
model's ``info.train_seconds``. Other profiles, ``retrain=True`` or a ``run_dir`` train them once and cache them like every shared model (:func:`course_lib.registry.obtain`).

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

from ..checkpoints import cached_tensors, fingerprint
from ..consistency import AdversarialConsistency, ConsistencyModel, PathConsistency, StudentCritic, path_sigmas, teacher_paths
from ..data import load_mnist5000
from ..meanflow import MeanFlowNet, MeanFlowObjective
from ..models.gan import Discriminator, GANConfig
from ..models.unet import UNet, digits_config
from ..optim import TrainConfig, config_identity
from ..registry import Recipe, gpu_recipes_only, obtain, register, shipped_profile
from ..settings import Profile, capped_count, check_bool, resolve_device, resolve_profile, runs_dir
from .flows import flow_digits_model, flow_identity, flow_train_config

#: how many teacher paths, and how many DPM-Solver++(2M) steps (= points, = teacher calls) each
PATHS = {"smoke": 64, "cpu": 4000, "gpu": 12000}
PATH_STEPS = {"smoke": 2, "cpu": 10, "gpu": 10}
PATH_SEED = 15  # the statics the teacher's paths start from


def num_paths(profile: str) -> int:
    """:data:`PATHS` of ``profile`` (in a gpu dry run, ``make gpu-dryrun``, no more than the smoke profile's)."""
    return capped_count(PATHS[profile], PATHS["smoke"])

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
    paths = {"sampler": "dpmpp_2m", "steps": PATH_STEPS[prof], "num_paths": num_paths(prof), "seed": PATH_SEED}
    return {"config": _build(prof, boundary).config.to_dict(), "train_config": config_identity(consistency_train_config(prof)),
            "objective": consistency_objective(prof).identity(), "paths": paths, "teacher": flow_identity(prof)}


def paths_for(teacher: nn.Module, teacher_sha256: str, profile: str, run_dir: Path, *,
              device: torch.device) -> tuple[torch.Tensor, float]:
    """The teacher's paths (:func:`course_lib.consistency.teacher_paths`) from :data:`PATHS` statics (seed
    :data:`PATH_SEED`), cached in ``run_dir/paths-<key>.safetensors`` (float16; the key hashes the teacher's
    sha256 and how the paths are drawn); returns the paths as float32 and the seconds spent drawing them."""
    recipe = {"teacher": teacher_sha256, "steps": PATH_STEPS[profile], "num_paths": num_paths(profile), "seed": PATH_SEED}
    path = run_dir / f"paths-{hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]}.safetensors"

    def draw() -> dict[str, torch.Tensor]:
        tic = time.perf_counter()
        noise = torch.randn((num_paths(profile), 1, 32, 32), generator=torch.Generator().manual_seed(PATH_SEED))  # (N, 1, 32, 32)
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
    with gpu_recipes_only(profile):  # only training reaches here: a gpu student learns from the gpu-size teacher
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
    if shipped_profile(record, prof) is not None and run_dir is None and not retrain:  # gpu: cpu's weights
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
                   "base_train_seconds": start.teacher_info["train_seconds"], "num_paths": num_paths(prof)}


# ----------------------------------------------------------------------------- the student sharpened by a critic
#: the critic of :data:`CONSISTENCY_CRITIC`: chapter 09's spectral-normed detective, and the seed of its first weights
CRITIC_CONFIG = GANConfig(d_base=32)
CRITIC_SEED = 15


def critic_train_config(profile: Profile = "auto") -> TrainConfig:
    """The critic stage's recipe: two thirds of the distillation's steps (``cpu``: 800), batch 64, EMA 0.999, both
    players at constant rates (:class:`~course_lib.consistency.AdversarialConsistency` holds them; ``lr`` here is the
    student's, for the record). Distillation + this stage stay below the teacher's training time (chapter 15 and
    ``benchmarks/one_step.py`` measure both side by side). Chosen in the ``cpu`` profile against the *training* digits
    (1,000 samples of a development seed: 800 constant-rate steps beat 400, and 800 with the rates cosine-decayed to
    zero; README "Performance" → "One step (chapter 15)")."""
    base = consistency_train_config(profile)
    steps = max(1, 2 * base.steps // 3)
    return replace(base, steps=steps, lr=1e-4, warmup=0, lr_schedule="constant", checkpoint_every=min(200, steps))


def critic_objective(profile: Profile = "auto") -> AdversarialConsistency:
    """Any-pair consistency on the teacher's paths (:func:`consistency_objective`) plus the critic's hinge loss on the
    student's answers at every level, λ = 0.05; real pictures: the training digits."""
    digits = _digits(resolve_profile(profile))
    return AdversarialConsistency(consistency_objective(profile), digits, fingerprint(digits)["sha256"], weight=0.05)


def _build_critic_pair(profile: str) -> StudentCritic:
    return StudentCritic(_build(profile, True), Discriminator(CRITIC_CONFIG))


def _critic_init(profile: str) -> dict[str, torch.Tensor]:
    """The distilled student's weights (:func:`consistency_model`) and a fresh critic (seed :data:`CRITIC_SEED`)."""
    student, _ = consistency_model(profile, progress=False)
    with torch.random.fork_rng():
        torch.manual_seed(CRITIC_SEED)
        critic = Discriminator(CRITIC_CONFIG)
    return {**{f"student.{k}": v.detach().cpu().clone() for k, v in student.state_dict().items()},
            **{f"critic.{k}": v.detach().cpu().clone() for k, v in critic.state_dict().items()}}


def critic_identity(profile: Profile = "auto") -> dict[str, Any]:
    """What makes the sharpened student: the distilled student it starts from (:func:`consistency_identity`), the
    critic, this stage's recipe and objective."""
    prof = resolve_profile(profile)
    return {"start": consistency_identity(prof), "critic": CRITIC_CONFIG.to_dict(), "critic_seed": CRITIC_SEED,
            "train_config": config_identity(critic_train_config(prof)), "objective": critic_objective(prof).identity()}


#: the distilled student fine-tuned with a critic (ships for the cpu profile)
CONSISTENCY_CRITIC = register(Recipe(
    name="consistency_critic_digits", chapter="15", build=_build_critic_pair, objective=critic_objective,
    train_config=critic_train_config, data=lambda p: path_start(p, runs_dir() / f"consistency_digits-{p}").paths,
    init=_critic_init, identity=critic_identity, shipped=SHIPPED_PROFILES, card_info=CARD_INFO + PATH_INFO + ("distill_seconds",),
    script="python benchmarks/train_onestep.py"))


def consistency_critic_model(profile: Profile = "auto", *, run_dir: str | os.PathLike | None = None,
                             device: str | torch.device | None = None, progress: bool = True,
                             retrain: bool = False) -> tuple[nn.Module, dict[str, Any]]:
    """Chapter 15's distilled student sharpened by a critic (:data:`CONSISTENCY_CRITIC`): a
    :class:`~course_lib.consistency.StudentCritic`, called as the student f(x, σ).

    ``cpu`` profile: the shipped weights. Otherwise, or with ``retrain=True`` or a ``run_dir``: the distilled student
    (:func:`consistency_model`, shipped or trained) trains on with :func:`critic_objective` on the same teacher paths
    (cached in ``run_dir``). Returns ``(ema_model, info)``; info as :func:`consistency_model`'s, ``extra_seconds`` now
    the distillation's (paths + training) plus this stage's ``train_seconds``; ``distill_seconds`` the former."""
    check_bool("retrain", retrain)
    prof = resolve_profile(profile)
    if shipped_profile(CONSISTENCY_CRITIC, prof) is not None and run_dir is None and not retrain:  # gpu: cpu's weights
        return obtain(CONSISTENCY_CRITIC, prof, device=device)
    run_dir = Path(run_dir) if run_dir is not None else CONSISTENCY_CRITIC.run_dir(prof)
    with gpu_recipes_only(prof):  # retrained at gpu size: from the gpu-size student, not the cpu one
        _, cm_info = consistency_model(prof, device=device, progress=progress)
        start = path_start(prof, run_dir, device=device, progress=progress)
        recipe = replace(CONSISTENCY_CRITIC, data=lambda p: start.paths)
        model, info = obtain(recipe, prof, run_dir=run_dir, device=device, progress=progress, retrain=retrain)
    return model, {**info, "objective": critic_objective(prof).identity(), "path_seconds": cm_info["path_seconds"],
                   "distill_seconds": cm_info["extra_seconds"], "extra_seconds": cm_info["extra_seconds"] + info["train_seconds"],
                   "base_train_seconds": cm_info["base_train_seconds"], "num_paths": num_paths(prof)}


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
    "CONSISTENCY", "CONSISTENCY_CRITIC", "CONSISTENCY_FREE", "CRITIC_CONFIG", "MEANFLOW", "consistency_critic_model",
    "critic_identity", "critic_objective", "critic_train_config", "num_paths", "PATHS", "PATH_SEED", "PATH_STEPS", "PathStart",
    "consistency_identity", "consistency_model", "consistency_objective", "consistency_train_config",
    "meanflow_model", "meanflow_train_config", "path_start", "paths_for",
]
