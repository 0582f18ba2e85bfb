"""A small LeNet-style digit classifier: the feature network behind FID/KID on digits (chapter 10).

Inception-v3 features (Heusel et al. 2017, "GANs trained by a two time-scale update rule
converge to a local Nash equilibrium") are the usual yardstick for photos, but they mean
little on 28×28 grey digits and need a 100 MB download. The course instead ships this
~90 k-parameter network, trained on the MNIST-5000 *training* split by
``benchmarks/train_feature_net.py`` (seeded, rerunnable). Its penultimate layer
(:data:`NUM_FEATURES` = 128 numbers per image) is the feature space of
:func:`course_lib.metrics.fid` and :func:`course_lib.metrics.kid`; its logits drive
:func:`course_lib.metrics.class_accuracy`.

The weights live in ``course_lib/weights/digit_classifier.safetensors`` next to a JSON model
card (how it was trained, test accuracy, sha256). :func:`load_digit_classifier` checks the
file's sha256 against the card before it trusts the numbers, so a truncated or altered file
fails loudly instead of silently shifting every FID in the course.

Inputs: images NCHW in [-1, 1] with one channel, 28×28 (padded to 32×32 with background
-1, exactly as ``data.load_mnist5000(size=32)`` pads) or 32×32.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..checkpoints import read_card as read_model_card
from ..registry import PROFILES, Recipe, load_shipped, register
from ..settings import WEIGHTS_DIR, DeviceName, check_images

NUM_CLASSES = 10
NUM_FEATURES = 128
WEIGHTS_FILE = WEIGHTS_DIR / "digit_classifier.safetensors"
CARD_FILE = WEIGHTS_DIR / "digit_classifier.json"
ARCHITECTURE = "LeNet-style CNN: conv5x5(16)-pool, conv5x5(32)-pool, conv3x3(32)-pool, fc 512->128 (features), fc 128->10"
INPUT = "NCHW, 1 channel, 28x28 (padded to 32 with -1) or 32x32, values in [-1, 1]"


class DigitClassifier(nn.Module):
    """LeNet-style CNN (LeCun et al. 1998) for 32×32 grey digits.

    Three conv → ReLU → 2×2 max-pool stages (16, 32, 32 channels: 32 → 16 → 8 → 4 pixels),
    then a 512 → 128 hidden layer, then 128 → 10 logits. The features are the hidden layer's ReLU
    output divided by the buffer ``feature_scale``: their root-mean-square over the training digits,
    fixed after training. So the features are of order 1, like Inception's pool features, which is
    the scale KID's kernel (a·b / d + 1)³ was designed for; unscaled (their RMS is the card's
    ``feature_scale``, ``course_lib/weights/digit_classifier.json``) the cubic term dominates and KID gets
    several times noisier.
    """

    num_features: int = NUM_FEATURES  # torchmetrics reads this instead of running a dummy image

    def __init__(self, dropout: float = 0.3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 5, padding=2)
        self.conv2 = nn.Conv2d(16, 32, 5, padding=2)
        self.conv3 = nn.Conv2d(32, 32, 3, padding=1)
        self.fc1 = nn.Linear(32 * 4 * 4, NUM_FEATURES)
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(NUM_FEATURES, NUM_CLASSES)
        self.register_buffer("feature_scale", torch.ones(()))  # set once, after training

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer activations (N, 128) of images (N, 1, 28|32, 28|32) in [-1, 1]."""
        x = pad_to_32(x)
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)  # (N, 16, 16, 16)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)  # (N, 32, 8, 8)
        x = F.max_pool2d(F.relu(self.conv3(x)), 2)  # (N, 32, 4, 4)
        return F.relu(self.fc1(x.flatten(1)))  # (N, 512) -> (N, 128)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The FID/KID features (N, 128): penultimate activations / ``feature_scale`` (RMS 1 on training digits)."""
        return self.hidden(x) / self.feature_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (N, 10)."""
        return self.fc2(self.dropout(self.hidden(x)))


def pad_to_32(x: torch.Tensor) -> torch.Tensor:
    """Pad 28×28 digits to 32×32 with the background value -1; leave 32×32 as they are."""
    if x.shape[-1] == 28 and x.shape[-2] == 28:
        return F.pad(x, (2, 2, 2, 2), value=-1.0)  # (N, C, 28, 28) -> (N, C, 32, 32)
    return x


def check_digit_images(name: str, images: object) -> torch.Tensor:
    """Validate digit images for the classifier: a float tensor (N, 1, 28|32, 28|32) in [-1, 1] (settings.check_images)."""
    return check_images(name, images, channels=1, size=(28, 32))


# ----------------------------------------------------------------------------- shipped weights
def classifier_identity(profile: str = "cpu") -> dict:
    """What the shipped classifier is; its card must hold exactly this (``benchmarks/train_feature_net.py`` writes it)."""
    return {"architecture": ARCHITECTURE, "input": INPUT, "num_features": NUM_FEATURES,
            "num_parameters": sum(p.numel() for p in DigitClassifier().parameters())}


#: the measuring network of FID/KID on digits (chapter 10), shipped for every profile, float32
DIGIT_CLASSIFIER = register(Recipe(
    name="digit_classifier", chapter="10", build=lambda p: DigitClassifier(), identity=classifier_identity,
    shipped=PROFILES, frozen=True, half=False, script="python benchmarks/train_feature_net.py",
    card_info=("command", "feature_scale", "size_bytes", "train_seconds", "trained_with", "training", "use")))


def read_card(card: str | Path = CARD_FILE) -> dict:
    """The shipped classifier's card: ``{"sha256", "identity", "info", "scores"}`` (:mod:`course_lib.registry`)."""
    return read_model_card(card)


def load_digit_classifier(
    path: str | Path | None = None, *, expected_sha256: str | None = None, device: str | torch.device = "cpu"
) -> DigitClassifier:
    """The shipped classifier in eval mode, frozen, after the registry checked its card's identity and the file's
    sha256 (:func:`course_lib.registry.load_shipped`).

    ``path`` reads another file in place of the shipped one; ``expected_sha256`` defaults to the hash recorded
    in the card. A mismatch raises CheckpointError (a ValueError) naming the file and both hashes; a missing
    file raises FileNotFoundError.
    """
    model, _ = load_shipped(DIGIT_CLASSIFIER, DigitClassifier(), "cpu", weights=path, sha256=expected_sha256)
    return model.requires_grad_(False).to(device)


@lru_cache(maxsize=4)
def cached_digit_classifier(device: DeviceName = "cpu") -> DigitClassifier:
    """The shipped classifier, loaded and sha256-checked once per device and process."""
    return load_digit_classifier(device=device)
