"""The scene judge: which animal, hat and hat colour is on the left and on the right? (chapter 11)

Prompt accuracy for compositional prompts ("a dog in a green hat on the left and a cat with no
hat on the right") needs a reader that knows *where* things are. This small CNN reads a 64×64
scene of :mod:`course_lib.scenes` and predicts every column of :data:`course_lib.scenes.SCENE_COLUMNS`
with its own head: for each side the animal (cat, dog, nobody), the hat (no / yes) and its colour,
and the background. Its flattened 4×4 feature map keeps the layout, so left and right stay apart.

The weights (``course_lib/weights/scene_judge.safetensors``, about 0.7 MB) are trained by
``benchmarks/train_scene_judge.py`` (seeded, a few minutes on a CPU) and described by the card
``scene_judge.json`` (recipe, held-out accuracies, sha256); :func:`load_scene_judge` checks the
sha256 before it trusts the file.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..captions import UNSPECIFIED
from ..registry import PROFILES, Recipe, load_shipped, register
from ..scenes import HEAD_SIZES, NUM_SCENE_COLUMNS, SCENE_COLUMNS, SCENE_SIZE
from ..settings import WEIGHTS_DIR, DeviceName
from .attributes import check_hat_images

JUDGE_WEIGHTS = WEIGHTS_DIR / "scene_judge.safetensors"
JUDGE_CARD = WEIGHTS_DIR / "scene_judge.json"
ARCHITECTURE = "CNN: 4 × (conv3x3-relu-maxpool) 16/32/64/64, fc 1024->128, one head per scene column"
INPUT = "NCHW, 3 channels, 64x64, values in [-1, 1]"


class SceneJudge(nn.Module):
    """Four conv3×3 → ReLU → 2×2 max-pool stages (16, 32, 64, 64 channels: 64 → 4 pixels), a shared
    1024 → 128 layer, and one linear head per scene column."""

    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1) for a, b in ((3, 16), (16, 32), (32, 64), (64, 64)))
        self.fc = nn.Linear(64 * 4 * 4, 128)
        self.heads = nn.ModuleDict({name: nn.Linear(128, HEAD_SIZES[name]) for name in SCENE_COLUMNS})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits per column, each (N, values), for scenes (N, 3, 64, 64) in [-1, 1]."""
        for conv in self.convs:
            x = F.max_pool2d(F.relu(conv(x)), 2)
        h = F.relu(self.fc(x.flatten(1)))
        return {name: head(h) for name, head in self.heads.items()}


def judge_identity(profile: str = "cpu") -> dict:
    """What the shipped judge is; its card must hold exactly this (``benchmarks/train_scene_judge.py`` writes it)."""
    return {"architecture": ARCHITECTURE, "input": INPUT, "num_parameters": sum(p.numel() for p in SceneJudge().parameters())}


#: the scene judge of chapter 11 (prompt accuracy), shipped for every profile, float32
SCENE_JUDGE = register(Recipe(
    name="scene_judge", chapter="11", build=lambda p: SceneJudge(), identity=judge_identity, shipped=PROFILES,
    frozen=True, half=False, script="python benchmarks/train_scene_judge.py",
    card_info=("command", "size_bytes", "train_seconds", "trained_with", "training")))


def load_scene_judge(path: str | Path | None = None, *, expected_sha256: str | None = None,
                     device: str | torch.device = "cpu") -> SceneJudge:
    """The shipped judge in eval mode, frozen, after the registry checked its card and sha256 (``path``: another file)."""
    model, _ = load_shipped(SCENE_JUDGE, SceneJudge(), "cpu", weights=path, sha256=expected_sha256)
    return model.requires_grad_(False).to(device)


@lru_cache(maxsize=2)
def cached_scene_judge(device: DeviceName = "cpu") -> SceneJudge:
    return load_scene_judge(device=device)


@torch.no_grad()
def judge_scenes(images: torch.Tensor, judge: SceneJudge | None = None, batch_size: int = 500) -> torch.Tensor:
    """Recognised scene rows (N, 7): a colour is -1 where no hat is seen; an empty slot has hat 0."""
    images = check_hat_images("images", images)
    if images.shape[-1] != SCENE_SIZE:
        raise ValueError(f"images must be {SCENE_SIZE}×{SCENE_SIZE} scenes, got {tuple(images.shape[-2:])}")
    model = cached_scene_judge() if judge is None else judge
    dev = next(model.parameters()).device
    rows = []
    for chunk in images.split(batch_size):
        logits = model(chunk.to(dev).float())
        pred = torch.stack([logits[c].argmax(1) for c in SCENE_COLUMNS], 1)
        for b in (0, 3):
            pred[:, b + 2] = torch.where(pred[:, b + 1] == 1, pred[:, b + 2], torch.full_like(pred[:, b + 2], UNSPECIFIED))
        rows.append(pred.cpu())
    return torch.cat(rows)


def scene_matches(images: torch.Tensor, asked: torch.Tensor, judge: SceneJudge | None = None) -> torch.Tensor:
    """Bool (N,): every column the prompt row asked for (not -1) is what the judge sees."""
    pred = judge_scenes(images, judge)
    asked = asked.long()
    if asked.dim() == 1:
        asked = asked[None].expand(len(pred), -1)
    if asked.shape != (len(pred), NUM_SCENE_COLUMNS):
        raise ValueError(f"asked must be ({NUM_SCENE_COLUMNS},) or ({len(pred)}, {NUM_SCENE_COLUMNS}), got {tuple(asked.shape)}")
    return ((pred == asked) | (asked == UNSPECIFIED)).all(1)


def scene_accuracy(images: torch.Tensor, asked: torch.Tensor, judge: SceneJudge | None = None) -> float:
    """The share of scenes that show everything asked."""
    return float(scene_matches(images, asked, judge).float().mean())


__all__ = ["JUDGE_CARD", "JUDGE_WEIGHTS", "SceneJudge", "cached_scene_judge", "judge_scenes", "load_scene_judge",
           "scene_accuracy", "scene_matches"]
