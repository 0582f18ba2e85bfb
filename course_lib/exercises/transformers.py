"""Exercises of chapter 14: patchify and its inverse (a function exercise), and a predict-then-run question on
adaLN-Zero (what an untrained DiT outputs)."""

from __future__ import annotations

from typing import Any, Callable

import torch

from .core import compare_to, attempt, check


# ---------------------------------------------------------------------------- ch14: patchify / unpatchify
def check_patchify(patchify_fn: Callable[..., Any], unpatchify_fn: Callable[..., Any]) -> bool:
    """``patchify_fn(x, p)``: (B, C, H, W) → (B, N, p·p·C), the patches row by row, inside each patch (row,
    column, channel); ``unpatchify_fn(tokens, p, C)`` (square pictures) puts them back. Checked against
    :func:`course_lib.models.dit.patchify` and :func:`~course_lib.models.dit.unpatchify`."""
    from ..models.dit import patchify, unpatchify

    def run() -> None:
        g = torch.Generator().manual_seed(14)
        for shape, p, case in (((2, 1, 8, 8), 4, "one channel, 4×4 patches"), ((3, 4, 16, 16), 2, "four channels (latents)")):
            x = torch.randn(shape, generator=g)
            tokens = patchify_fn(x, p)
            compare_to("patchify", case, tokens, patchify(x, p), atol=0, rtol=0)
            compare_to("unpatchify", case, unpatchify_fn(patchify(x, p), p, shape[1]), unpatchify(patchify(x, p), p, shape[1]),
                     atol=0, rtol=0)

    return attempt("patchify and unpatchify", run, "Split H and W each into (patches, p) with reshape, then permute.")


def solution_patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    b, c, h, w = x.shape
    return x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1).reshape(b, (h // p) * (w // p), p * p * c)


def solution_unpatchify(tokens: torch.Tensor, p: int, channels: int) -> torch.Tensor:
    b, n, _ = tokens.shape
    s = int(round(n ** 0.5))
    return tokens.reshape(b, s, s, p, p, channels).permute(0, 5, 1, 3, 2, 4).reshape(b, channels, s * p, s * p)


# ---------------------------------------------------------------------------- ch14: adaLN-Zero at step 0
def _untrained_output_size() -> float:
    from ..models.dit import DiT, DiTConfig

    torch.manual_seed(0)
    model = DiT(DiTConfig(image_size=32, in_channels=1, patch_size=4, width=64, depth=4, heads=4, num_classes=10))
    with torch.no_grad():
        out = model(torch.randn(8, 1, 32, 32), torch.randint(1000, (8,)), cond=torch.arange(8))
    return float(out.abs().max())


def check_patchify_alone(patchify_fn: Callable[..., Any]) -> bool:
    """:func:`check_patchify` of a learner's ``patchify`` beside the reference ``unpatchify``."""
    return check_patchify(patchify_fn, solution_unpatchify)


def check_untrained_dit(answer: Any) -> bool:
    """The largest |output| of a freshly built (adaLN-Zero) DiT on random inputs: predicted, then measured."""
    return check("an untrained DiT's largest output", answer, _untrained_output_size(), atol=1e-6, reveal=False,
                 hint="Follow one block with α = 0, then the final layer whose weights are all zero.")


def solution_untrained_dit() -> float:
    return 0.0


__all__ = ["check_patchify", "check_patchify_alone", "check_untrained_dit", "solution_patchify", "solution_unpatchify", "solution_untrained_dit"]
