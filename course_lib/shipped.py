"""Networks that ship trained in ``course_lib/weights``, for the ``cpu`` profile of chapters 07, 10, 11 and 12.

Training some of the course's networks well takes longer on a laptop CPU than a chapter may (ten
minutes in the ``cpu`` profile): chapter 11's autoencoder and latent denoisers, chapter 12's flow and
reflow digits models and chapter 07's class-conditional digits model, whose clean backgrounds take many
more steps than chapter 04's model. How long each took is in its card (``info.train_seconds``; the
reflow's also ``info.extra_seconds``), the conditions in README "Performance". Their ``cpu`` weights
ship here, the way the scene judge and the digit classifier do: each file's sha256 is checked against
its card, and the card's recipe must equal the recipe the code asks for (a file trained for another
recipe is refused, not silently used). ``retrain=True`` in the functions that load them trains the same
recipe on your machine instead; ``benchmarks/train_latent.py``, ``benchmarks/train_flows.py`` and
``benchmarks/train_digits_cond.py`` write the files.

A card (``<name>.json``) holds ``sha256``, ``identity`` (the recipe), ``info`` (training seconds,
steps, losses, …) and ``scores`` (what the training script measured). Weights are stored as
float16 (half the file; the networks compute in float32 after loading).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .checkpoints import CheckpointError, atomic_save_tensors, atomic_write_text, load_tensors, read_card
from .settings import WEIGHTS_DIR  # re-exported: the one home of the path is settings

HINT = ("rerun its script in benchmarks/ (train_latent.py, train_flows.py or train_digits_cond.py), "
        "or pass retrain=True to train it here")


def shipped_paths(name: str, weights_dir: Path = WEIGHTS_DIR) -> tuple[Path, Path]:
    """``(weights, card)`` of the shipped network ``name`` (e.g. ``"latent_ae"``)."""
    return weights_dir / f"{name}.safetensors", weights_dir / f"{name}.json"


def save_shipped(model: nn.Module, name: str, identity: dict[str, Any], info: dict[str, Any],
                 scores: dict[str, Any] | None = None, weights_dir: Path = WEIGHTS_DIR) -> str:
    """Write ``model``'s weights (float16) and its card atomically, weights first; returns the sha256."""
    weights, card = shipped_paths(name, weights_dir)
    tensors = {k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    digest = atomic_save_tensors(weights, tensors)
    atomic_write_text(card, json.dumps({"sha256": digest, "identity": identity, "info": info, "scores": scores or {}},
                                       indent=1, sort_keys=True))
    return digest


def card_info(info: dict[str, Any], keys: tuple[str, ...], *, loss_every: int = 1) -> dict[str, Any]:
    """What a card keeps of a trained model's info: ``keys``, every ``loss_every``-th loss rounded to 4
    decimals (``loss_every`` is kept too when > 1, so a long run's card stays small), and the thread count."""
    kept = {k: info[k] for k in keys}
    thinned = {"loss_every": loss_every} if loss_every > 1 else {}
    return {**kept, "losses": [round(v, 4) for v in kept["losses"][::loss_every]], **thinned, "threads": torch.get_num_threads()}


def load_shipped_model(model: nn.Module, name: str, identity: dict[str, Any],
                       weights_dir: Path = WEIGHTS_DIR) -> tuple[nn.Module, dict[str, Any]]:
    """Load the shipped ``name`` into ``model`` (eval mode) after checking its sha256 and recipe; returns ``(model, card)``.

    Raises :class:`~course_lib.checkpoints.WeightsNotFound` when the file is missing and
    CheckpointError when it was changed or trained for another recipe.
    """
    weights, card_path = shipped_paths(name, weights_dir)
    card = read_card(card_path)
    if card.get("identity") != json.loads(json.dumps(identity)):  # as JSON stores it: tuples become lists
        raise CheckpointError(f"{weights} was trained for another recipe ({card.get('identity')}), not the one asked for "
                              f"({identity}); {HINT}")
    tensors = load_tensors(weights, sha256=card["sha256"], hint=HINT)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in tensors.items()})
    return model.eval(), card


__all__ = ["WEIGHTS_DIR", "card_info", "load_shipped_model", "save_shipped", "shipped_paths"]
