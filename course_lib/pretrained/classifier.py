"""The noise-aware digit classifier of classifier guidance (chapter 07), trained once and cached, with its test accuracy on the model card."""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from ..data import load_mnist5000
from ..models.noisy_classifier import NoisyClassifier, NoisyClassifierConfig
from ..objectives import NoisyClassifierObjective
from ..optim import TrainConfig, noisy_classifier_config
from ..registry import Recipe, card_scores, obtain, register
from ..schedules import NoiseSchedule, make_schedule
from ..settings import Profile, check_int, resolve_profile
from .digits import DIGITS_SCHEDULE


def classifier_train_config(profile: Profile = "auto") -> TrainConfig:
    """The noise-aware digit classifier's recipe per profile (``cpu``: about a minute of training on 2 CPU cores)."""
    return {
        "smoke": noisy_classifier_config(steps=10, batch_size=16, warmup=2),
        "cpu": noisy_classifier_config(steps=500, batch_size=64),
        "gpu": noisy_classifier_config(steps=3000, batch_size=256, lr=1e-3, warmup=200),
    }[resolve_profile(profile)]


def noisy_classifier_accuracy(classifier: nn.Module, schedule: NoiseSchedule, images: torch.Tensor,
                              labels: torch.Tensor, t: int, *, seed: int = 0) -> float:
    """Share of ``images`` noised to step ``t`` (fixed-seed ε) that ``classifier`` puts in the right class."""
    t = check_int("t", t, min_value=0, max_value=schedule.num_timesteps - 1)
    dev = next(classifier.parameters()).device
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(seed))
    tt = torch.full((images.shape[0],), t, dtype=torch.long)
    x_t = schedule.add_noise(images, noise, tt).to(dev)
    with torch.no_grad():
        pred = classifier(x_t, tt.to(dev)).argmax(-1).cpu()
    return float((pred == labels).float().mean())


def noisy_classifier_recipe(schedule: NoiseSchedule) -> Recipe:
    """The noise-aware digit classifier on ``schedule`` as a record (``runs/noisy-classifier-<profile>``); it
    reads the raw weights, not an EMA."""
    return Recipe(name="noisy_classifier", chapter="07", build=lambda p: NoisyClassifier(NoisyClassifierConfig.preset("digits")),
                  objective=lambda p: NoisyClassifierObjective(schedule), train_config=classifier_train_config,
                  data=_labelled_digits, run_name=lambda p: f"noisy-classifier-{p}", ema=False)


def _labelled_digits(profile: str) -> tuple[torch.Tensor, torch.Tensor]:
    split = load_mnist5000("train", size=NoisyClassifierConfig.preset("digits").image_size)
    return split.images, split.labels


NOISY_CLASSIFIER = register(noisy_classifier_recipe(make_schedule(DIGITS_SCHEDULE)))


def digits_noisy_classifier(
    profile: Profile = "auto", *, schedule: NoiseSchedule | None = None, run_dir: str | os.PathLike | None = None,
    device: str | torch.device | None = None, progress: bool = True, retrain: bool = False,
) -> tuple[NoisyClassifier, dict[str, Any]]:
    """The noise-aware MNIST digit classifier of chapter 07 (:data:`NOISY_CLASSIFIER`), obtained from the registry.

    Trained on ``load_mnist5000("train")`` noised with ``schedule`` (default: the digits model's,
    :data:`DIGITS_SCHEDULE`) through :func:`course_lib.training.train` with a
    :class:`~course_lib.objectives.NoisyClassifierObjective`. ``run_dir`` defaults to
    ``runs/noisy-classifier-<profile>``; a mismatch raises CheckpointError (``retrain=True`` trains afresh).

    Returns ``(classifier, info)``; info keys: ``train_seconds``, ``steps``, ``config``,
    ``train_config``, ``profile``, ``run_dir``, ``losses``, ``cached`` and ``test_accuracy``
    ({t: accuracy on the test split noised to t}, kept in the run's card).
    """
    if schedule is not None and not isinstance(schedule, NoiseSchedule):
        raise ValueError(f"schedule must be a NoiseSchedule, got {type(schedule).__name__}")
    recipe = NOISY_CLASSIFIER if schedule is None else noisy_classifier_recipe(schedule)
    schedule = recipe.objective("cpu").schedule
    classifier, info = obtain(recipe, profile, run_dir=run_dir, device=device, progress=progress, retrain=retrain)

    def test_accuracy() -> dict[str, float]:
        test = load_mnist5000("test", size=classifier.config.image_size)
        return {str(t): noisy_classifier_accuracy(classifier, schedule, test.images, test.labels, t)
                for t in (0, 250, 500, 750)}

    return classifier, {**info, "test_accuracy": card_scores(info["run_dir"], test_accuracy)}
