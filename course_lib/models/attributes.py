"""An attribute classifier for the cats-with-hats pictures: does the sample show what the prompt asked? (guidance chapter)

Guidance makes samples follow a condition more closely (Dhariwal & Nichol 2021, "Diffusion models
beat GANs on image synthesis", §4; Ho & Salimans 2022, "Classifier-free diffusion guidance").
To *measure* that, the course ships a small multi-head CNN trained on :mod:`course_lib.hats`
pictures. It reads a picture and names its animal, whether it wears a hat, the hat's colour
and the background colour; :func:`prompt_accuracy` is then the share of samples in which every
attribute the prompt asked for is recognised — the y-axis of a "guidance scale vs. prompt
following" curve.

The weights (``course_lib/weights/attributes.safetensors``, about 0.6 MB) are trained by
``benchmarks/train_attribute_net.py`` (seeded, rerunnable, a few minutes on a CPU) and described
by the JSON card ``attributes.json`` (recipe, held-out accuracies, sha256). :func:`load_attribute_classifier`
checks the file's sha256 before it trusts the numbers, so an altered file fails loudly.

Inputs: pictures NCHW in [-1, 1] with 3 channels, square, at least 16 pixels; other sizes
than 32 (e.g. 48) are resized to 32×32 first. Attribute rows follow
:data:`course_lib.captions.ATTRIBUTE_NAMES`; -1 means "not requested" (and, for ``hat_colour``,
"no hat").
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..captions import ATTRIBUTE_NAMES, ATTRIBUTE_VALUES, NUM_ATTRIBUTES, UNSPECIFIED
from ..checkpoints import read_card as read_model_card
from ..registry import PROFILES, Recipe, load_shipped, register
from ..settings import WEIGHTS_DIR, DeviceName, check_images

WEIGHTS_FILE = WEIGHTS_DIR / "attributes.safetensors"
CARD_FILE = WEIGHTS_DIR / "attributes.json"
ARCHITECTURE = ("CNN: conv3x3(16)-pool, conv3x3(32)-pool, conv3x3(64)-pool, fc 1024->128, heads animal(2) hat(2) "
                "hat_colour(5) background(4)")
INPUT = "NCHW, 3 channels, square, values in [-1, 1]; resized to 32x32 when another size"
INPUT_SIZE = 32
HEAD_SIZES: dict[str, int] = {name: len(values) for name, values in ATTRIBUTE_VALUES.items()}


class AttributeClassifier(nn.Module):
    """A small CNN with one linear head per attribute (multi-task learning, Caruana 1997).

    Three conv3×3 → ReLU → 2×2 max-pool stages (16, 32, 64 channels: 32 → 16 → 8 → 4 pixels),
    a shared 1024 → 128 hidden layer, then four heads: animal (2), hat (2: no / yes),
    hat_colour (5; only meaningful when there is a hat) and background (4) logits.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.conv3 = nn.Conv2d(32, 64, 3, padding=1)
        self.fc = nn.Linear(64 * 4 * 4, 128)
        self.heads = nn.ModuleDict({name: nn.Linear(128, HEAD_SIZES[name]) for name in ATTRIBUTE_NAMES})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits per attribute name, each (N, number of values), for pictures (N, 3, H, H) in [-1, 1]."""
        if x.shape[-1] != INPUT_SIZE:
            x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", antialias=True, align_corners=False)
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)  # (N, 16, 16, 16)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)  # (N, 32, 8, 8)
        x = F.max_pool2d(F.relu(self.conv3(x)), 2)  # (N, 64, 4, 4)
        h = F.relu(self.fc(x.flatten(1)))  # (N, 1024) -> (N, 128)
        return {name: head(h) for name, head in self.heads.items()}


def check_hat_images(name: str, images: object) -> torch.Tensor:
    """Validate pictures for the classifier: a float tensor (N, 3, H, H), H >= 16, values in [-1, 1] (settings.check_images)."""
    return check_images(name, images, channels=3, min_size=16)


def check_attribute_rows(name: str, attrs: object, n: int) -> torch.Tensor:
    """Validate attribute rows: (4,) or (n, 4) integer indices, -1 = not requested; returns (n, 4)."""
    if not isinstance(attrs, torch.Tensor) or attrs.is_floating_point() or attrs.dtype == torch.bool:
        raise ValueError(f"{name} must be an integer tensor of attribute indices (N, {NUM_ATTRIBUTES}), got {attrs!r:.80}")
    if attrs.dim() == 1:
        attrs = attrs[None].expand(n, -1)  # (4,) -> (n, 4): one request for every picture
    if attrs.dim() != 2 or attrs.shape[1] != NUM_ATTRIBUTES or attrs.shape[0] != n:
        raise ValueError(f"{name} must be ({n}, {NUM_ATTRIBUTES}) or ({NUM_ATTRIBUTES},), columns {ATTRIBUTE_NAMES}; "
                         f"got shape {tuple(attrs.shape)}")
    for col, attr in enumerate(ATTRIBUTE_NAMES):
        column = attrs[:, col]
        if bool(((column < UNSPECIFIED) | (column >= HEAD_SIZES[attr])).any()):
            raise ValueError(f"{name}[:, {col}] ({attr}) must lie in -1..{HEAD_SIZES[attr] - 1}, got {column.unique().tolist()}")
    return attrs.long()


# ----------------------------------------------------------------------------- shipped weights
def attributes_identity(profile: str = "cpu") -> dict:
    """What the shipped classifier is; its card must hold exactly this (``benchmarks/train_attribute_net.py`` writes it)."""
    return {"architecture": ARCHITECTURE, "input": INPUT,
            "num_parameters": sum(p.numel() for p in AttributeClassifier().parameters())}


#: the hat reader of chapter 08 (prompt accuracy), shipped for every profile, float32
ATTRIBUTES = register(Recipe(
    name="attributes", chapter="08", build=lambda p: AttributeClassifier(), identity=attributes_identity,
    shipped=PROFILES, frozen=True, half=False, script="python benchmarks/train_attribute_net.py",
    card_info=("command", "size_bytes", "train_seconds", "trained_with", "training", "use")))


def read_card(card: str | Path = CARD_FILE) -> dict:
    """A shipped card, by default the classifier's: ``{"sha256", "identity", "info", "scores"}`` (:mod:`course_lib.registry`)."""
    return read_model_card(card)


def load_attribute_classifier(
    path: str | Path | None = None, *, expected_sha256: str | None = None, device: str | torch.device = "cpu"
) -> AttributeClassifier:
    """The shipped classifier in eval mode, frozen, after the registry checked its card and sha256 (``path``: another file)."""
    model, _ = load_shipped(ATTRIBUTES, AttributeClassifier(), "cpu", weights=path, sha256=expected_sha256)
    return model.requires_grad_(False).to(device)


@lru_cache(maxsize=4)
def cached_attribute_classifier(device: DeviceName = "cpu") -> AttributeClassifier:
    """The shipped classifier, loaded and sha256-checked once per device and process."""
    return load_attribute_classifier(device=device)


# ----------------------------------------------------------------------------- predictions & scores
@torch.no_grad()
def predict_attributes(images: torch.Tensor, classifier: AttributeClassifier | None = None,
                       batch_size: int = 1000) -> torch.Tensor:
    """Recognised attribute rows (N, 4): hat_colour is -1 where the classifier sees no hat."""
    images = check_hat_images("images", images)
    model = cached_attribute_classifier() if classifier is None else classifier
    device = next(model.parameters()).device
    rows = []
    for chunk in images.split(batch_size):
        logits = model(chunk.to(device).float())
        pred = torch.stack([logits[name].argmax(1) for name in ATTRIBUTE_NAMES], 1)  # (n, 4)
        pred[:, 2] = torch.where(pred[:, 1] == 1, pred[:, 2], torch.full_like(pred[:, 2], UNSPECIFIED))
        rows.append(pred.cpu())
    return torch.cat(rows)


def attribute_accuracies(images: torch.Tensor, attrs: torch.Tensor,
                         classifier: AttributeClassifier | None = None) -> dict[str, float]:
    """Per attribute, the share of pictures where the requested value is recognised.

    Only pictures that request the attribute (entry != -1) count; an attribute nobody requested
    gets NaN. A hat colour counts as recognised only if the classifier also sees a hat.
    """
    pred = predict_attributes(images, classifier)
    attrs = check_attribute_rows("attrs", attrs, len(pred))
    out = {}
    for col, name in enumerate(ATTRIBUTE_NAMES):
        asked = attrs[:, col] != UNSPECIFIED
        out[name] = float((pred[asked, col] == attrs[asked, col]).float().mean()) if asked.any() else float("nan")
    return out


def prompt_accuracy(images: torch.Tensor, attrs: torch.Tensor, classifier: AttributeClassifier | None = None) -> float:
    """The share of pictures in which *every* requested attribute is recognised.

    ``attrs``: (N, 4) rows or one (4,) row for all pictures (e.g. ``captions.parse_prompt("a dog in
    a green hat")``); -1 entries are not checked. Asking for ``hat = 0`` checks that no hat is seen.
    """
    pred = predict_attributes(images, classifier)
    attrs = check_attribute_rows("attrs", attrs, len(pred))
    asked = attrs != UNSPECIFIED  # (N, 4)
    ok = (pred == attrs) | ~asked
    return float(ok.all(1).float().mean())


__all__ = [
    "AttributeClassifier", "attribute_accuracies", "cached_attribute_classifier",
    "check_hat_images", "load_attribute_classifier", "predict_attributes", "prompt_accuracy", "read_card",
]
