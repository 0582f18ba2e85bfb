"""Nucleus (top-p) sampling of words (course_lib.nucleus, chapter 16): the kept set, the renormalisation,
draws that never leave the nucleus, both writers' samplers, and clear errors."""

from __future__ import annotations

import pytest
import torch

from course_lib.autoregressive import sample_autoregressive
from course_lib.nucleus import draw_words, nucleus_probabilities
from course_lib.text_diffusion import MASK_ID, sample_masked


def test_the_nucleus_is_the_smallest_most_likely_set_reaching_p():
    probs = torch.tensor([[0.15, 0.5, 0.05, 0.3]])
    assert torch.allclose(nucleus_probabilities(probs, 0.8), torch.tensor([[0.0, 0.625, 0.0, 0.375]]))
    assert torch.allclose(nucleus_probabilities(probs, 0.81), torch.tensor([[0.15, 0.5, 0.0, 0.3]]) / 0.95)
    assert torch.allclose(nucleus_probabilities(probs, 0.3), torch.tensor([[0.0, 1.0, 0.0, 0.0]]))  # the top word always stays
    assert torch.equal(nucleus_probabilities(probs, 1.0), probs)


def test_a_close_call_stays_a_close_call_and_the_tail_is_never_drawn():
    probs = torch.tensor([0.32, 0.32, 0.32, 0.02, 0.02])  # three equal choices and a tail of two
    logits = probs.log().expand(20_000, 5)
    words = draw_words(logits, top_p=0.95, generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(words, minlength=5).float() / len(words)
    assert counts[3:].sum() == 0
    assert torch.allclose(counts[:3], torch.full((3,), 1 / 3), atol=0.015)


def test_top_p_one_draws_exactly_what_plain_sampling_draws():
    logits = torch.randn(4, 6, 9, generator=torch.Generator().manual_seed(1))
    ours = draw_words(logits, temperature=0.7, top_p=1.0, generator=torch.Generator().manual_seed(2))
    plain = torch.multinomial((logits / 0.7).softmax(-1).flatten(0, 1), 1, generator=torch.Generator().manual_seed(2))
    assert torch.equal(ours, plain.view(4, 6))
    assert torch.equal(draw_words(logits, temperature=0.0), logits.argmax(-1))


class _Favourite(torch.nn.Module):
    """A writer that gives word 3 probability 0.97 at every position and spreads the rest thinly."""

    def __init__(self, vocab: int = MASK_ID + 1):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.logits = torch.full((vocab,), -6.0)
        self.logits[3] = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(*x.shape, -1) + 0 * self.dummy


@pytest.mark.parametrize("writer", ["diffusion", "next_word"])
def test_both_writers_draw_only_from_the_nucleus(writer):
    model = _Favourite()
    g = torch.Generator().manual_seed(0)
    if writer == "diffusion":
        full, cut = (sample_masked(model, 64, num_steps=6, remasking="random", top_p=p, generator=g) for p in (1.0, 0.9))
    else:
        full, cut = (sample_autoregressive(model, 64, top_p=p, generator=g) for p in (1.0, 0.9))
    assert (full != 3).any()  # straight from p_θ the thin tail shows up
    assert (cut == 3).all()


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), "0.9"])
def test_a_bad_top_p_is_refused_by_name(bad):
    with pytest.raises(ValueError, match="top_p"):
        draw_words(torch.zeros(2, 3), top_p=bad)
    with pytest.raises(ValueError, match="top_p"):
        sample_masked(_Favourite(), 2, top_p=bad)
