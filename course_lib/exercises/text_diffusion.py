"""Chapter 16's exercises: one unmasking step written by the learner, and a predict-then-run question on stickers.

- :func:`check_unmask_step` — ``fn(x_t, words, u, t, s)`` → x_s: the ancestral step of masked diffusion
  with its random draws handed in (the network's words and one uniform number per position), so the
  answer is exact and comparable with :func:`course_lib.text_diffusion.unmask_step`'s rule.
- :func:`check_stickers_left` — how many stickers a linear-schedule step from t to s leaves on, on average.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .core import attempt, check, compare_to


def solution_unmask_step(x_t: torch.Tensor, words: torch.Tensor, u: torch.Tensor, t: float, s: float,
                         mask_id: int = 25) -> torch.Tensor:
    """Reveal each masked token where u < (α(s) − α(t)) / (1 − α(t)) with α = 1 − t (linear), taking ``words`` there."""
    p = ((1 - s) - (1 - t)) / (1 - (1 - t))  # = (t − s) / t
    reveal = (x_t == mask_id) & (u < p)
    return torch.where(reveal, words, x_t)


def check_unmask_step(fn: Callable[..., Any], mask_id: int = 25) -> bool:
    """``fn(x_t, words, u, t, s)``: ids (B, L) with ``mask_id`` for stickers, the network's drawn words (B, L),
    uniform draws u (B, L), times 1 ≥ t > s ≥ 0 of the linear schedule → x_s (B, L)."""

    def run() -> None:
        g = torch.Generator().manual_seed(16)
        for t, s in ((1.0, 0.75), (0.6, 0.3), (0.2, 0.0)):
            x0 = torch.randint(0, mask_id, (64, 24), generator=g)
            x_t = torch.where(torch.rand(64, 24, generator=g) < t, torch.full_like(x0, mask_id), x0)
            words = torch.randint(0, mask_id, (64, 24), generator=g)
            u = torch.rand(64, 24, generator=g)
            got = fn(x_t.clone(), words.clone(), u.clone(), t, s)
            want = solution_unmask_step(x_t, words, u, t, s, mask_id)
            if got is not None and isinstance(got, torch.Tensor) and got.shape == want.shape:
                if bool((got != x_t)[x_t != mask_id].any()):
                    raise AssertionError(f"✗ one unmasking step (t={t}, s={s}): a visible word changed; a word once "
                                         "revealed never changes")
                if bool((got == mask_id).any()) and s == 0.0:
                    raise AssertionError("✗ one unmasking step (t=0.2, s=0): at s = 0 every sticker must come off")
            compare_to("one unmasking step", f"t={t}, s={s}", got, want.double(), atol=0)

    return attempt("one unmasking step", run, "Which positions may change at all? Then: with what chance does each come off?")


def solution_stickers_left(stickers: int = 12, t: float = 0.5, s: float = 0.25) -> float:
    """Expected stickers left after one linear-schedule step from t to s: each stays with chance s/t."""
    return stickers * s / t


def check_stickers_left(answer: Any, stickers: int = 12, t: float = 0.5, s: float = 0.25) -> bool:
    """Predict: a caption at time t has ``stickers`` stickers; how many are left, on average, at time s?"""
    return check("stickers left after one step", answer, solution_stickers_left(stickers, t, s), rtol=1e-3, atol=1e-3,
                 hint="Each sticker comes off independently; the chance it stays on is 1 − (α(s) − α(t))/(1 − α(t)).",
                 reveal=False)


__all__ = ["check_stickers_left", "check_unmask_step", "solution_stickers_left", "solution_unmask_step"]
