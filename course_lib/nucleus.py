"""Drawing words from a network's guesses: temperature and nucleus (top-p) sampling (chapter 16).

Both of chapter 16's writers end each network call the same way: logits (…, V) over the vocabulary
become one word per position. Drawing straight from p_θ (temperature 1, top-p 1) copies the network's
mistakes too: a word it gives 1 % is written once in a hundred draws, and one such word is enough
to break a caption ("… on the the left"). **Nucleus sampling** (Holtzman et al. 2020, "The curious
case of neural text degeneration", §3.1) keeps, at each position, the smallest set of most likely
words whose probabilities add up to at least ``top_p``, and draws from p_θ renormalised on that set:

    V_p = the smallest {v₁, v₂, …} (sorted by p_θ, largest first) with Σ_{v ∈ V_p} p_θ(v) ≥ p,
    p̃(v) = p_θ(v) · 1[v ∈ V_p] / Σ_{u ∈ V_p} p_θ(u).

Unlike a lower temperature, it leaves the choices the network is unsure about (six hat colours at
about 1/6 each) exactly as likely as before; it only removes the tail.
"""

from __future__ import annotations

import torch

from .settings import check_float


def nucleus_probabilities(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """p̃ (…, V): ``probs`` (…, V) kept on the smallest most-likely set holding ≥ ``top_p`` of the mass, renormalised."""
    check_float("top_p", top_p, min_value=0.0, max_value=1.0)
    if top_p >= 1.0:
        return probs
    ranked, order = probs.sort(-1, descending=True)
    keep = (ranked.cumsum(-1) - ranked) < top_p  # the mass *before* a word is < p: it belongs to V_p (the first always does)
    kept = torch.zeros_like(probs).scatter(-1, order, ranked * keep)
    return kept / kept.sum(-1, keepdim=True)


def draw_words(logits: torch.Tensor, *, temperature: float = 1.0, top_p: float = 1.0,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """One word id per position of logits (…, V): the most likely at ``temperature`` 0, otherwise drawn
    from softmax(logits / temperature) cut to its top-``top_p`` nucleus. The draw is made on the CPU
    from ``generator`` (reproducible on any device); the ids come back on the logits' device."""
    check_float("temperature", temperature, min_value=0.0)
    check_float("top_p", top_p, min_value=0.0, max_value=1.0)
    if temperature == 0:
        return logits.argmax(-1)
    probs = nucleus_probabilities((logits.float() / temperature).softmax(-1).cpu(), top_p)
    words = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1, generator=generator)  # (prod(…), 1)
    return words.view(probs.shape[:-1]).to(logits.device)


__all__ = ["draw_words", "nucleus_probabilities"]
