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
by the JSON card ``attributes.json`` (recipe, held-out accuracies, sha256). :func:`load_verified`
checks the file's sha256 before it trusts the numbers, so an altered file fails loudly.

Inputs: pictures NCHW in [-1, 1] with 3 channels, square, at least 16 pixels; other sizes
than 32 (e.g. 48) are resized to 32×32 first. Attribute rows follow
:data:`course_lib.hats.ATTRIBUTE_NAMES`; -1 means "not requested" (and, for ``hat_colour``,
"no hat").
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..hats import ATTRIBUTE_NAMES, ATTRIBUTE_VALUES, NUM_ATTRIBUTES, UNSPECIFIED

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
WEIGHTS_FILE = WEIGHTS_DIR / "attributes.safetensors"
CARD_FILE = WEIGHTS_DIR / "attributes.json"
INPUT_SIZE = 32
RANGE_TOLERANCE = 1e-3  # how far outside [-1, 1] a pixel may stray (float rounding) before we refuse
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
    """Validate pictures for the classifier: a float tensor (N, 3, H, H), H >= 16, values in [-1, 1]."""
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of pictures (N, 3, H, W) in [-1, 1], got {type(images).__name__}")
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"{name} must be NCHW colour pictures (N, 3, H, W), got shape {tuple(images.shape)}")
    if images.shape[-1] != images.shape[-2] or images.shape[-1] < 16:
        raise ValueError(f"{name} must be square pictures of at least 16×16, got {tuple(images.shape[-2:])}")
    if images.shape[0] == 0:
        raise ValueError(f"{name} is empty (N = 0)")
    if not images.is_floating_point():
        raise ValueError(f"{name} must be a float tensor in [-1, 1], got dtype {images.dtype}")
    if not bool(torch.isfinite(images).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    lo, hi = float(images.min()), float(images.max())
    if lo < -1 - RANGE_TOLERANCE or hi > 1 + RANGE_TOLERANCE:
        raise ValueError(f"{name} must lie in [-1, 1] (book/notation.md), got values in [{lo:.3g}, {hi:.3g}]; "
                         "clamp samples with .clamp(-1, 1)")
    return images


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
def sha256_of(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_verified(path: str | Path, sha256: str) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, after checking that the file's sha256 is ``sha256``.

    A missing file raises FileNotFoundError; a mismatch raises ValueError naming the file and
    both hashes (the file is corrupt, truncated or was changed).
    """
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path={str(path)!r}: no such weights file")
    actual = sha256_of(path)
    if actual != sha256:
        raise ValueError(f"sha256 mismatch for {path}: expected {sha256}, got {actual}. "
                         "The file is corrupt or was changed; reinstall course_lib or retrain it")
    return load_file(str(path))


def read_card(card: str | Path = CARD_FILE) -> dict:
    """The JSON model card of the shipped weights (training recipe, held-out accuracies, sha256)."""
    return json.loads(Path(card).read_text())


def load_attribute_classifier(
    path: str | Path | None = None, *, expected_sha256: str | None = None, device: str | torch.device = "cpu"
) -> AttributeClassifier:
    """Load the classifier in eval mode after checking its sha256 (default: the shipped file and its card's hash)."""
    path = Path(WEIGHTS_FILE if path is None else path)
    if not path.is_file():
        raise FileNotFoundError(f"path={str(path)!r}: no such weights file; run benchmarks/train_attribute_net.py to create it")
    expected = read_card()["sha256"] if expected_sha256 is None else expected_sha256
    model = AttributeClassifier()
    model.load_state_dict(load_verified(path, expected))
    return model.eval().requires_grad_(False).to(device)


@lru_cache(maxsize=4)
def cached_attribute_classifier(device: str = "cpu") -> AttributeClassifier:
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

    ``attrs``: (N, 4) rows or one (4,) row for all pictures (e.g. ``hats.parse_prompt("a dog in
    a green hat")``); -1 entries are not checked. Asking for ``hat = 0`` checks that no hat is seen.
    """
    pred = predict_attributes(images, classifier)
    attrs = check_attribute_rows("attrs", attrs, len(pred))
    asked = attrs != UNSPECIFIED  # (N, 4)
    ok = (pred == attrs) | ~asked
    return float(ok.all(1).float().mean())


__all__ = [
    "AttributeClassifier", "attribute_accuracies", "cached_attribute_classifier",
    "check_hat_images", "load_attribute_classifier", "load_verified", "predict_attributes", "prompt_accuracy", "sha256_of",
]
