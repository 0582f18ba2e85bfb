"""Exercises of chapter 13: write CLIP's contrastive loss (a function exercise, checked against
:func:`course_lib.clip.clip_loss`), and a predict-then-run question on the loss of a CLIP that cannot tell
anything apart."""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
import torch.nn.functional as F

from .core import attempt, check, compare_to


def _reference(image_vectors: torch.Tensor, text_vectors: torch.Tensor, temperature: float) -> torch.Tensor:
    from ..clip import clip_loss

    return clip_loss(image_vectors @ text_vectors.T / temperature)


def check_clip_loss(loss_fn: Callable[..., Any]) -> bool:
    """``loss_fn(image_vectors, text_vectors, temperature)``: unit vectors (N, D) of N pictures and of their N
    captions (row i of each belongs together) and τ; returns the symmetric contrastive loss, a scalar.
    Checked on random unit vectors, on a batch where the two directions give different losses, and at two τ."""

    def run() -> None:
        g = torch.Generator().manual_seed(13)
        for n, d, tau, case in ((8, 16, 0.07, "8 pairs, τ = 0.07"), (5, 4, 1.0, "5 pairs, τ = 1")):
            img = F.normalize(torch.randn(n, d, generator=g), dim=-1)
            txt = F.normalize(torch.randn(n, d, generator=g), dim=-1)
            compare_to("clip loss", case, loss_fn(img, txt, tau), _reference(img, txt, tau), atol=1e-5, rtol=1e-5)
        # one caption close to two pictures: the picture → caption and caption → picture losses differ
        img = F.normalize(torch.tensor([[1.0, 0.0, 0.0], [0.9, 0.1, 0.0], [0.0, 0.0, 1.0]]), dim=-1)
        txt = F.normalize(torch.tensor([[1.0, 0.05, 0.0], [0.0, 1.0, 0.0], [0.0, 0.3, 1.0]]), dim=-1)
        compare_to("clip loss", "a batch where the two directions disagree", loss_fn(img, txt, 0.1),
                   _reference(img, txt, 0.1), atol=1e-5, rtol=1e-5)

    return attempt("the contrastive loss", run,
                   "Start from the N×N matrix of similarities between every picture and every caption.")


def solution_clip_loss(image_vectors: torch.Tensor, text_vectors: torch.Tensor, temperature: float) -> torch.Tensor:
    logits = image_vectors @ text_vectors.T / temperature  # (N, N): row i = picture i against every caption
    right = torch.arange(len(logits))
    return (F.cross_entropy(logits, right) + F.cross_entropy(logits.T, right)) / 2


def check_blind_clip_loss(answer: Any, batch_size: int) -> bool:
    """The loss of a CLIP that gives every (picture, caption) pair the same similarity, for a batch of
    ``batch_size`` pairs: predicted, then computed with :func:`course_lib.clip.clip_loss` on a constant matrix."""
    from ..clip import clip_loss

    expected = float(clip_loss(torch.zeros(batch_size, batch_size)))
    return check(f"the loss of a blind CLIP on {batch_size} pairs", answer, expected, rtol=1e-3, reveal=False,
                 hint="With every similarity equal, how likely does the softmax make the right caption?")


def solution_blind_clip_loss(batch_size: int) -> float:
    return math.log(batch_size)


__all__ = ["check_blind_clip_loss", "check_clip_loss", "solution_blind_clip_loss", "solution_clip_loss"]
