"""Sampling for evaluation: draw many images batch by batch, then measure them (chapters 06, 07, 10).

:func:`~course_lib.batches.sample_in_batches` (:mod:`course_lib.batches`, re-exported here) is the one
batch-sampling loop of the package: it takes a *sampling function* (anything that turns a :class:`Batch`
into images, usually a ``lambda`` around :func:`course_lib.samplers.sample`), so it works for any model,
sampler or condition. On top of it:

- :func:`sample_images` / :func:`evaluate_model` — the whole check of a trained digits model in one
  call (chapter 10, ``benchmarks/quality.py``): sample n digits, measure FID, KID and class accuracy
  (:mod:`course_lib.metrics`), and measure two disjoint sets of n real digits the same way
  (:func:`disjoint_subsets`) as the floor at that n.
- :func:`guidance_sweep` — chapter 07's trade-off curve: class accuracy and FID at each guidance scale.
- :class:`MemorisingDenoiser` — the ideal denoiser of a finite training set (chapter 10's yardstick).

Chapter 06's steps-versus-quality table lives next door, in :mod:`course_lib.steps_table`.
"""

from __future__ import annotations

import time
from typing import Any, Callable, NamedTuple, Sequence

import torch
import torch.nn as nn

from .batches import SEED_MODES, Batch, SampleFn, SeedMode, sample_in_batches  # noqa: F401 (re-exported: batches is their home)
from .guidance import GUIDANCE_METHODS, GuidanceMethod, cfg_model, check_guidance_scale, classifier_guided_model
from .metrics import check_labels, class_accuracy, fid, kid
from .samplers import SAMPLERS, Sampler, sample
from .schedules import NoiseSchedule, alpha_bar_at
from .settings import check_bool, check_choice, check_int

# ----------------------------------------------------------------------------- evaluating a digits model (chapter 10)
def sample_images(
    model: nn.Module,
    schedule: NoiseSchedule,
    n: int,
    *,
    image_shape: Sequence[int] = (1, 32, 32),
    sampler: Sampler = "ddim",
    num_steps: int = 50,
    seed: int = 0,
    labels: torch.Tensor | None = None,
    guidance_scale: float = 1.0,
    batch_size: int = 250,
    progress: bool = False,
) -> torch.Tensor:
    """``n`` samples (n, *image_shape) on the CPU, clamped to [-1, 1], drawn ``batch_size`` at a time.

    :func:`course_lib.samplers.sample` does the work (chapters 05–07); one generator seeded with
    ``seed`` draws every batch's noise in turn (:func:`sample_in_batches`, ``seeds="shared"``), so the
    result is fixed by ``seed`` and ``batch_size``. ``labels`` (n,) asks a class-conditional model for
    those digits (−1 = none), with classifier-free guidance when ``guidance_scale`` ≠ 1.
    """
    n = check_int("n", n, min_value=1)
    check_choice("sampler", sampler, SAMPLERS)
    check_int("num_steps", num_steps, min_value=1, max_value=schedule.num_timesteps)
    seed = check_int("seed", seed, min_value=0)
    check_int("batch_size", batch_size, min_value=1)
    if not isinstance(image_shape, (tuple, list)) or not all(isinstance(d, int) and d > 0 for d in image_shape):
        raise ValueError(f"image_shape must be a tuple of positive ints (C, H, W), got {image_shape!r}")
    if labels is not None:
        labels = check_labels(labels, n)

    def draw(b: Batch) -> torch.Tensor:
        return sample(model, schedule, (b.size, *image_shape), sampler=sampler, num_steps=num_steps, cond=b.cond,
                      guidance_scale=guidance_scale, generator=b.generator, progress=progress)

    was_training = model.training
    model.eval()
    try:
        return sample_in_batches(draw, n, batch_size=batch_size, seed=seed, cond=labels)  # (n, C, H, W)
    finally:
        model.train(was_training)


def disjoint_subsets(real: torch.Tensor, n: int, *, count: int = 2, seed: int = 0) -> list[torch.Tensor]:
    """``count`` random subsets of ``n`` images each, no image in two of them (a real-vs-real reference)."""
    n = check_int("n", n, min_value=2)
    count = check_int("count", count, min_value=1)
    seed = check_int("seed", seed, min_value=0)
    if not isinstance(real, torch.Tensor) or real.dim() < 2:
        raise ValueError(f"real must be a tensor of images (N, …), got {type(real).__name__}")
    if count * n > real.shape[0]:
        raise ValueError(f"n={n} is too large: {count} disjoint subsets need {count * n} images, real has {real.shape[0]}")
    order = torch.randperm(real.shape[0], generator=torch.Generator().manual_seed(seed))
    return [real[order[i * n : (i + 1) * n]] for i in range(count)]


def evaluate_samples(
    real: torch.Tensor,
    fake: torch.Tensor,
    *,
    labels: torch.Tensor | None = None,
    kid_subsets: int = 100,
    seed: int = 0,
) -> dict[str, float | int]:
    """FID, KID (mean, std) and — with the requested ``labels`` — class accuracy and confidence of ``fake``.

    A plain dict (``fid``, ``kid_mean``, ``kid_std``, ``n_real``, ``n_fake``, and ``class_accuracy``,
    ``class_confidence`` when labels are given), ready for ``json.dumps``.
    """
    out: dict[str, float | int] = {"fid": fid(real, fake)}
    out["kid_mean"], out["kid_std"] = kid(real, fake, subsets=kid_subsets, seed=seed)
    out["n_real"], out["n_fake"] = int(real.shape[0]), int(fake.shape[0])
    if labels is not None:
        out["class_accuracy"], out["class_confidence"] = class_accuracy(fake, labels, return_confidence=True)
    return out


def evaluate_model(
    model: nn.Module,
    schedule: NoiseSchedule,
    real: torch.Tensor,
    *,
    n: int = 1000,
    seed: int = 0,
    labels: torch.Tensor | None = None,
    kid_subsets: int = 100,
    floor: bool = True,
    sampler: Sampler = "ddim",
    num_steps: int = 50,
    guidance_scale: float = 1.0,
    batch_size: int = 250,
    progress: bool = False,
) -> dict[str, Any]:
    """Sample ``n`` digits from ``model`` and measure them against ``n`` random digits of ``real`` (chapter 10).

    Returns a JSON-ready dict: ``fid``, ``kid_mean``, ``kid_std`` (and ``class_accuracy``,
    ``class_confidence`` with ``labels``), ``n_samples``, ``sampler``, ``num_steps``, ``seed``,
    ``guidance_scale``, ``sample_seconds``, ``metric_seconds``; with ``floor=True`` also
    ``fid_floor`` / ``kid_floor_mean``: the same metrics between that reference set and a second,
    disjoint set of ``n`` real digits — what a perfect model would score at this ``n`` (FID is biased
    upwards for small sets, so only compare numbers measured at the same n). ``floor`` needs 2n
    images in ``real``.
    """
    check_bool("floor", floor)
    n = check_int("n", n, min_value=2)
    check_choice("sampler", sampler, SAMPLERS)
    check_int("kid_subsets", kid_subsets, min_value=1)
    refs = disjoint_subsets(real, n, count=2 if floor else 1, seed=seed)
    shape = tuple(real.shape[1:])
    tic = time.perf_counter()
    fake = sample_images(model, schedule, n, image_shape=shape, sampler=sampler, num_steps=num_steps, seed=seed,
                         labels=labels, guidance_scale=guidance_scale, batch_size=batch_size, progress=progress)
    sample_seconds = time.perf_counter() - tic
    tic = time.perf_counter()
    out: dict[str, Any] = evaluate_samples(refs[0], fake, labels=labels, kid_subsets=kid_subsets, seed=seed)
    if floor:
        out["fid_floor"] = fid(refs[0], refs[1])
        out["kid_floor_mean"] = kid(refs[0], refs[1], subsets=kid_subsets, seed=seed)[0]
    out.update(n_samples=n, sampler=sampler, num_steps=num_steps, seed=seed, guidance_scale=float(guidance_scale),
               sample_seconds=sample_seconds, metric_seconds=time.perf_counter() - tic)
    return out


# ----------------------------------------------------------------------------- a guidance-scale sweep (chapter 07)
class SweepPoint(NamedTuple):
    """One guidance strength of :func:`guidance_sweep`: the scale, the share of samples the shipped
    digit classifier puts in the asked-for class, its mean confidence there, FID against real
    digits, the sampling seconds, and the samples themselves (class-balanced, label order)."""

    guidance_scale: float
    class_accuracy: float
    confidence: float
    fid: float
    seconds: float
    images: torch.Tensor


def balanced_labels(num_classes: int, per_class: int) -> torch.Tensor:
    """Labels 0,…,0, 1,…,1, …: ``per_class`` of each class, (num_classes·per_class,)."""
    check_int("num_classes", num_classes, min_value=1)
    check_int("per_class", per_class, min_value=1)
    return torch.arange(num_classes).repeat_interleave(per_class)


def guidance_sweep(
    model: Callable[..., torch.Tensor],
    schedule: NoiseSchedule,
    scales: list[float] | tuple[float, ...],
    real: torch.Tensor,
    *,
    per_class: int = 20,
    method: GuidanceMethod = "cfg",
    classifier: nn.Module | None = None,
    rescale: float = 0.0,
    sampler: Sampler = "ddim",
    num_steps: int = 20,
    seed: int = 0,
    progress: bool = False,
) -> list[SweepPoint]:
    """Sample a class-balanced set of digits (``per_class`` of each of 10 classes) at each guidance
    strength and measure it (chapter 07's trade-off curve): class accuracy goes up with s, while
    FID against ``real`` (digits in [−1, 1]) first falls — the samples become recognisable — then
    rises again as guidance squeezes out the variety. Every scale starts from the same noise
    (seed ``seed``). ``method``: ``cfg`` (:func:`course_lib.guidance.cfg_model`, φ = ``rescale``) or
    ``classifier`` (:func:`course_lib.guidance.classifier_guided_model` with ``classifier``).
    FID is biased upwards for small sets: compare values only at equal ``per_class`` and ``len(real)``.
    """
    check_choice("method", method, GUIDANCE_METHODS)
    if method == "classifier" and classifier is None:
        raise ValueError("method='classifier' needs classifier= (a NoisyClassifier)")
    if not isinstance(scales, (list, tuple)) or not scales:
        raise ValueError(f"scales must be a non-empty list of guidance scales, got {scales!r}")
    scales = [check_guidance_scale(v, "scales[i]") for v in scales]
    labels = balanced_labels(10, per_class)
    points = []
    for scale in scales:
        net = (cfg_model(model, scale, rescale=rescale) if method == "cfg"
               else classifier_guided_model(model, classifier, schedule, scale))

        def draw(b: Batch) -> torch.Tensor:  # called at once, inside this iteration
            return sample(net, schedule, (b.size, *real.shape[1:]), sampler=sampler, num_steps=num_steps,
                          cond=b.cond, generator=b.generator, progress=progress)

        tic = time.perf_counter()
        images = sample_in_batches(draw, len(labels), seed=seed, cond=labels)  # one batch, (10·per_class, C, H, W)
        seconds = time.perf_counter() - tic
        accuracy, confidence = class_accuracy(images, labels, return_confidence=True)
        points.append(SweepPoint(scale, accuracy, confidence, fid(real, images), seconds, images))
    return points


# ----------------------------------------------------------------------------- the copier (chapter 10)
class MemorisingDenoiser(nn.Module):
    """The *ideal* denoiser of a finite training set — a model that has learned it by heart (chapter 10).

    If the data were exactly the K training images x_k, the best possible guess of x₀ from x_t is a
    softmax-weighted average of them, w_k ∝ exp(−‖x_t − √ᾱ_t x_k‖² / (2(1 − ᾱ_t))) (the posterior
    mean of a mixture of point masses; Karras et al. 2022, "Elucidating the design space…", App. B.3).
    Returned as ε̂ = (x_t − √ᾱ_t x̂₀)/√(1 − ᾱ_t), it is a denoiser ``model(x_t, t, cond=None)`` for any
    sampler. Sampling it ends on a training image, every time: perfect pictures, zero creativity —
    the yardstick for the memorisation check, and a reminder that a low FID alone proves nothing.
    ``labels`` (K,) make it class-conditional: ``cond`` (B,) restricts the average to that class
    (−1 = any). ᾱ_t comes from :func:`course_lib.schedules.alpha_bar_at` (integer t, or the fractional
    t of the σ-samplers).
    """

    def __init__(self, train: torch.Tensor, schedule: NoiseSchedule, labels: torch.Tensor | None = None) -> None:
        super().__init__()
        if not isinstance(train, torch.Tensor) or train.dim() < 2 or train.shape[0] < 1 or not train.is_floating_point():
            raise ValueError("train must be a float tensor of K >= 1 images (K, …)")
        if labels is not None:
            labels = check_labels(labels, train.shape[0])
        self.register_buffer("data", train.flatten(1).double())  # (K, D)
        self.register_buffer("labels", labels if labels is not None else torch.zeros(0, dtype=torch.long))
        self.schedule = schedule  # ᾱ(t) through schedules.alpha_bar_at, the package's one lookup
        self.eval()  # nothing to train

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        x = x_t.flatten(1).double()  # (B, D)
        a = alpha_bar_at(self.schedule, t.expand(x.shape[0])).double().to(x.device)[:, None]  # (B, 1)
        # ‖x − √a x_k‖² = ‖x‖² − 2√a x·x_k + a‖x_k‖², in float64 (a near 1 leaves tiny differences)
        d2 = x.square().sum(1, keepdim=True) - 2 * a.sqrt() * (x @ self.data.T) + a * self.data.square().sum(1)  # (B, K)
        logits = -d2 / (2 * (1 - a))
        if cond is not None and self.labels.numel():
            c = cond.to(x.device).long()[:, None]  # (B, 1)
            logits = logits.masked_fill((c >= 0) & (self.labels[None, :] != c), float("-inf"))
        x0 = logits.softmax(dim=1) @ self.data  # (B, D)
        eps = (x - a.sqrt() * x0) / (1 - a).sqrt()
        return eps.reshape(x_t.shape).to(x_t.dtype)
