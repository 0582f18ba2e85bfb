"""The one recipe behind every shared model: train once, cache under ``settings.runs_dir()``, verify on load.

:func:`train_once`: if the run directory holds a finished checkpoint whose sha256, model config,
training config, schedule (or objective) and data all match, it is loaded in seconds; a partial one
is resumed exactly; otherwise the model is trained from scratch (course_lib.training.train). A
checkpoint that does not verify raises CheckpointError naming the problem; ``retrain=True`` trains
afresh over it. :func:`run_info` is the info dict every cached model returns; :func:`card_scores`
keeps scores measured after training in a model card next to the checkpoint (``card.json``).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..checkpoints import atomic_write_text, has_checkpoint, read_card, read_state
from ..schedules import NoiseSchedule
from ..settings import check_bool, resolve_device
from ..shipped import load_shipped_model
from ..training import TrainConfig, TrainResult, train

CARD_FILE = "card.json"


def train_once(
    build: Callable[[], nn.Module], objective: NoiseSchedule | Any, data: Any, config: TrainConfig,
    run_dir: Path, *, retrain: bool = False, device: str | torch.device | None = None, progress: bool = True,
    callback: Any = None,
) -> tuple[TrainResult, bool]:
    """Train ``build()`` (seeded with ``config.seed``: the initial weights are part of the recipe) once, cached in ``run_dir``.

    Returns ``(result, cached)``; ``cached`` is True when a finished checkpoint was loaded and
    nothing was trained. A checkpoint written by an older course version (no optimizer state) is
    retrained over. ``callback`` goes to :func:`course_lib.training.train`.
    """
    check_bool("retrain", retrain)
    check_bool("progress", progress)
    state = read_state(run_dir) if has_checkpoint(run_dir) else None
    stale = state is not None and "optimizer_param_groups" not in state
    fresh = retrain or stale
    cached = not fresh and state is not None and int(state.get("step", -1)) >= config.steps
    torch.manual_seed(config.seed)
    result = train(build(), objective, data, config, run_dir=run_dir, resume=not fresh, device=device, progress=progress,
                   callback=callback)
    return result, cached


def run_info(result: TrainResult, cached: bool, config: TrainConfig, profile: str, run_dir: Path) -> dict[str, Any]:
    """The info dict every cached model returns: seconds, steps, configs, profile, run_dir, losses, cached."""
    return {"train_seconds": result.seconds, "steps": result.steps, "config": result.model.config.to_dict(),
            "train_config": asdict(config), "profile": profile, "run_dir": str(run_dir), "losses": result.losses,
            "cached": cached}


def card_scores(run_dir: Path, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Scores stored in ``run_dir/card.json`` for the checkpoint there (by its sha256), else ``compute()`` and store them."""
    digest, path = read_state(run_dir)["sha256"], run_dir / CARD_FILE
    if path.is_file():
        card = read_card(path)
        if card.get("sha256") == digest:
            return card["scores"]
    scores = compute()
    atomic_write_text(path, json.dumps({"sha256": digest, "scores": scores}))
    return scores


def shipped_model(model: nn.Module, name: str, identity: dict[str, Any], device: str | torch.device | None,
                  ) -> tuple[nn.Module, dict[str, Any]]:
    """``model`` with the weights that ship as ``course_lib/weights/<name>.*`` (verified against ``identity``,
    :func:`course_lib.shipped.load_shipped_model`) on ``device``, and the info its card keeps plus
    ``cached``/``shipped`` True, ``run_dir`` None and the weights' ``sha256``."""
    model, card = load_shipped_model(model, name, identity)
    return model.to(resolve_device(device)), {**card["info"], "cached": True, "shipped": True, "run_dir": None,
                                       "sha256": card["sha256"]}
