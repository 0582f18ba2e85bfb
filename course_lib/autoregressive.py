"""The next-word baseline of chapter 16: a causal transformer trained and sampled left to right.

A sentence's probability factorises word by word, p(x) = Π_l p(xˡ | x⁰ … x^{l−1}) (the chain rule;
Bengio et al. 2003, GPT: Radford et al. 2018). A causal :class:`course_lib.models.caption_transformer.CaptionTransformer`
reads a start token followed by the sentence shifted one place to the right and guesses, at every
position, the next word; the loss is the plain cross-entropy of all L words
(:class:`NextTokenObjective`), which is exactly −log p_θ(x)/L: no bound, no time, no stickers.

Sampling (:func:`sample_autoregressive`) takes L network calls, one word each, and each call needs
the words before it — the sequential cost that masked diffusion's parallel unmasking avoids.
The padding (id 0) is a word here too: after the caption the model writes padding to the end.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .caption_text import CAPTION_LENGTH, MASK_ID
from .nucleus import draw_words
from .settings import check_float, check_int

START_ID = MASK_ID  # the extra input id: "nothing written yet"


def shift_right(ids: torch.Tensor, start_id: int = START_ID) -> torch.Tensor:
    """(B, L) → (B, L): the start token, then the sentence without its last token (the causal model's input)."""
    return torch.cat([torch.full_like(ids[:, :1], start_id), ids[:, :-1]], dim=1)


@dataclass(frozen=True)
class NextTokenObjective:
    """Cross-entropy of the next word at every position (an :class:`~course_lib.objectives.Objective`), nats per token."""

    start_id: int = START_ID

    def loss(self, model: nn.Module, x0: torch.Tensor, cond: torch.Tensor | None, generator: torch.Generator,
             **_: Any) -> torch.Tensor:
        ids = x0.round().long() if x0.is_floating_point() else x0.long()
        logits = model(shift_right(ids, self.start_id)).float()  # (B, L, V)
        return F.cross_entropy(logits.transpose(1, 2), ids)

    def identity(self) -> dict[str, Any]:
        return {"loss": "next_token_cross_entropy", "start_id": self.start_id}


@torch.no_grad()
def sequence_nll(model: nn.Module, ids: torch.Tensor, start_id: int = START_ID) -> torch.Tensor:
    """−log p_θ(caption) of each row of ids (B, L), nats: the exact likelihood of a next-word model."""
    ids = ids.long().to(next(model.parameters()).device)
    logits = model(shift_right(ids, start_id)).float()
    return F.cross_entropy(logits.transpose(1, 2), ids, reduction="none").sum(1).double().cpu()


@torch.no_grad()
def sample_autoregressive(model: nn.Module, num: int, *, prefix: torch.Tensor | None = None, temperature: float = 1.0,
                          top_p: float = 1.0, generator: torch.Generator | None = None, length: int = CAPTION_LENGTH,
                          start_id: int = START_ID) -> torch.Tensor:
    """``num`` captions (num, L) written left to right, one network call per word after ``prefix`` (k,) or (num, k);
    each word drawn at ``temperature`` from the top-``top_p`` nucleus (:func:`course_lib.nucleus.draw_words`)."""
    check_int("num", num, min_value=1)
    check_float("temperature", temperature, min_value=0.0)
    check_float("top_p", top_p, min_value=0.0, max_value=1.0)
    dev = next(model.parameters()).device
    g = generator or torch.Generator().manual_seed(0)
    x = torch.full((num, length + 1), start_id, dtype=torch.long, device=dev)  # column 0: the start token
    k = 0
    if prefix is not None:
        prefix = prefix.long().to(dev).expand(num, -1) if prefix.dim() == 1 else prefix.long().to(dev)
        k = prefix.shape[1]
        x[:, 1:k + 1] = prefix
    for pos in range(k, length):
        logits = model(x[:, :pos + 1])[:, -1].float()  # (num, V): the guess of word ``pos``
        x[:, pos + 1] = draw_words(logits, temperature=temperature, top_p=top_p, generator=g)
    return x[:, 1:]


__all__ = ["START_ID", "NextTokenObjective", "sample_autoregressive", "sequence_nll", "shift_right"]
