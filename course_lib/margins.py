"""Clean backgrounds: how far the margin of generated digits is from black, next to real digits' (chapter 10, issue 11).

The margin is the set of pixels that are pure black (−1) in every training digit (:func:`margin_mask`);
a spotless picture leaves it black. :func:`background_noise` is the RMS distance from black there,
:func:`background_noise_per_image` the same per image, :func:`held_out_background_noise` the fair real
reference (each real digit on the margin of the *other* digits) and :func:`background_ratio_interval` a
bootstrap interval of generated ÷ real. Pure measurements on NCHW images in [−1, 1]; re-exported by
:mod:`course_lib.metrics`.
"""

from __future__ import annotations

import torch

from .settings import check_float, check_int


def margin_mask(real: torch.Tensor, *, background: float = -1.0) -> torch.Tensor:
    """The margin: the pixels (H, W) where *every* image of ``real`` is pure background (chapter 10).

    For the MNIST-5000 training digits (32×32) these are 364 of the 1,024 pixels: the 2-pixel
    padding all around and the corners the strokes never reach. Returns a bool tensor (H, W);
    raises ValueError when ``real`` is not a non-empty (N, 1, H, W) tensor or no pixel qualifies.
    """
    if not isinstance(real, torch.Tensor) or real.dim() != 4 or real.shape[1] != 1 or real.shape[0] < 1:
        got = tuple(real.shape) if isinstance(real, torch.Tensor) else type(real).__name__
        raise ValueError(f"real must be a tensor of grey images (N, 1, H, W), got {got}")
    mask = (real == background).all(0)[0]
    if not bool(mask.any()):
        raise ValueError(f"no pixel is {background} in every image of real; there is no margin to measure")
    return mask


def background_noise(images: torch.Tensor, mask: torch.Tensor, *, background: float = -1.0) -> float:
    """How speckled the margin is: the root-mean-square deviation from pure black (−1) over the
    ``mask`` pixels (:func:`margin_mask`) of every image, after clamping to [−1, 1] as a picture is shown.

    0 means a spotless margin. Real held-out digits measured on the training digits' margin give a
    small nonzero value (a few of their strokes reach pixels no training digit touches).
    """
    return float(background_noise_per_image(images, mask, background=background).square().mean().sqrt())


def background_noise_per_image(images: torch.Tensor, mask: torch.Tensor, *, background: float = -1.0) -> torch.Tensor:
    """:func:`background_noise` of each image alone, (N,): the pooled value is the RMS of these, so a few
    digits whose strokes reach into the margin can outweigh hundreds of spotless ones (chapter 10).
    Raises ValueError as :func:`background_noise` does."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 1:
        got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a tensor of grey images (N, 1, H, W), got {got}")
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or tuple(mask.shape) != tuple(images.shape[-2:]):
        got = (mask.dtype, tuple(mask.shape)) if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise ValueError(f"mask must be a bool tensor of shape {tuple(images.shape[-2:])} (margin_mask), got {got}")
    margin = images.detach().float().clamp(-1, 1)[:, 0][:, mask.to(images.device)]  # (N, M)
    return (margin - background).square().mean(1).sqrt()


def held_out_background_noise(
    real: torch.Tensor, *, folds: int = 5, repeats: int = 40, seed: int = 0, background: float = -1.0,
) -> torch.Tensor:
    """The real reference of :func:`background_noise`, from every real digit: each digit's margin noise
    measured on the margin of the *other* digits, (N,) (chapter 10).

    A generated digit is measured on the margin of the training digits; the fair reference is a real
    digit measured the same way, on the margin of digits it is not among. So ``real`` is split into
    ``folds`` parts at random, each part is measured on :func:`margin_mask` of the rest (with 5,000
    digits and 5 folds: 4,000 others, as many as the training digits), and that is repeated over
    ``repeats`` random splits; each digit's value is the root of its mean square over the repeats, so
    the pooled reference is ``values.square().mean().sqrt()``. Real digits leave the margin exactly
    black nearly always, so a handful of digits make the whole value: on MNIST-5000, 68 of the 5,000
    digits; on the 1,000 test digits, three. One 1,000-digit part alone gives anything from 0 to nearly
    3× the all-digit value (the test split: 0.6×) — hence all the digits, and the repeats (different
    ``seed`` values move the all-digit value by a few per cent).
    Raises ValueError for a non-image ``real`` or fewer than 2 of them, fewer than 2 folds or more folds
    than digits, ``repeats`` < 1 or a negative ``seed``.
    """
    if not isinstance(real, torch.Tensor) or real.dim() != 4 or real.shape[1] != 1:
        got = tuple(real.shape) if isinstance(real, torch.Tensor) else type(real).__name__
        raise ValueError(f"real must be a tensor of grey images (N, 1, H, W), got {got}")
    if real.shape[0] < 2:
        raise ValueError(f"real must hold at least 2 images (each is measured on the others' margin), got {real.shape[0]}")
    folds = check_int("folds", folds, min_value=2, max_value=real.shape[0])
    repeats = check_int("repeats", repeats, min_value=1)
    n, gen = real.shape[0], torch.Generator().manual_seed(check_int("seed", seed, min_value=0))
    squares = torch.zeros(n)
    for _ in range(repeats):
        for part in torch.randperm(n, generator=gen).tensor_split(folds):  # (≈ n/folds,) digits measured this time
            rest = torch.ones(n, dtype=torch.bool)
            rest[part] = False
            mask = margin_mask(real[rest], background=background)
            squares[part] += background_noise_per_image(real[part], mask, background=background).square().cpu()
    return (squares / repeats).sqrt()


def background_ratio_interval(
    generated: torch.Tensor, real: torch.Tensor, *, draws: int = 2000, level: float = 0.95, seed: int = 0,
) -> tuple[float, float]:
    """A bootstrap interval of the pooled margin ratio generated ÷ real (chapter 10).

    ``generated`` and ``real`` are per-image values (:func:`background_noise_per_image`,
    :func:`held_out_background_noise`); both sides are resampled with replacement, ``draws`` times,
    and the central ``level`` share of the ratios of their RMS values is returned. A few digits make
    each side's value, so the interval is wide — it says how far a ratio can be trusted. A reference
    made by a handful of nonzero values (the 1,000 test digits: three) makes it useless: resamples
    that miss them all have a reference near 0. Raises ValueError when ``real`` has no positive value.
    """
    for name, v in (("generated", generated), ("real", real)):
        if not isinstance(v, torch.Tensor) or v.dim() != 1 or v.numel() < 2:
            raise ValueError(f"{name} must be a 1-D tensor of at least 2 per-image values, got "
                             f"{tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__}")
    if not bool((real > 0).any()):
        raise ValueError("real has no positive value: there is no reference to divide by")
    draws = check_int("draws", draws, min_value=10)
    level = check_float("level", level, min_value=0.5, max_value=0.999)
    gen = torch.Generator().manual_seed(check_int("seed", seed, min_value=0))
    g_sq, r_sq = generated.detach().double().cpu().square(), real.detach().double().cpu().square()
    g_mean = g_sq[torch.randint(len(g_sq), (draws, len(g_sq)), generator=gen)].mean(1)  # (draws,)
    r_mean = r_sq[torch.randint(len(r_sq), (draws, len(r_sq)), generator=gen)].mean(1)  # (draws,)
    ratios = (g_mean / r_mean.clamp(min=1e-24)).sqrt()
    lo, hi = torch.quantile(ratios, torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=ratios.dtype))
    return float(lo), float(hi)
