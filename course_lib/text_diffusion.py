"""Masked (absorbing-state) diffusion for text: the forward masking, the ELBO loss and the unmasking samplers (chapter 16).

The eraser of chapter 01 for words. Instead of adding static, the forward process covers each
token of a sentence x₀ = (x⁰, …, x^{L−1}) **independently** with a ``[MASK]`` sticker, more and more
as the time t runs from 0 (the sentence) to 1 (all stickers):

    q(x_tˡ = x₀ˡ) = α(t),   q(x_tˡ = [MASK]) = 1 − α(t),   α(0) = 1, α(1) = 0          (MDLM eq. 2–3)

with α the *keep probability* (``"linear"``: α = 1 − t, LLaDA's choice; ``"cosine"``: α = cos(πt/2)).
A sticker once on stays on (the state is absorbing: Austin et al. 2021, D3PM, §3.1). Going back,
from t to s < t, a masked token is revealed with probability (α(s) − α(t)) / (1 − α(t)), and then
it takes the value of x₀ — which the reverse model must guess: a network reads x_t and gives
p_θ(x₀ˡ | x_t) at every masked position.

**The loss** (chapter 04's ELBO, written out in the chapter): each reverse step's KL term is, per
masked token, (α(s) − α(t))/(1 − α(t)) · (−log p_θ(x₀ˡ | x_t)); with infinitely many steps the sum
becomes

    NELBO = ∫₀¹ w(t) · E_q [ Σ_{l masked in x_t} −log p_θ(x₀ˡ | x_t) ] dt,   w(t) = −α′(t) / (1 − α(t))

(Sahoo et al. 2024, MDLM, eq. 10; Shi et al. 2024, MD4; Nie et al. 2025, LLaDA eq. 3 with w = 1/t).
It is the cross-entropy on the masked positions, weighted by :func:`elbo_weight` — 1/t for the
linear schedule — and it does not depend on the schedule (substitute m = 1 − α: ∫₀¹ (1/m) E[…] dm).
:class:`MaskedDiffusionObjective` trains it through :func:`course_lib.training.train`.

**Samplers** (:func:`sample_masked`): start from all ``[MASK]`` (or from a partly masked sentence:
:func:`infill`) and walk a time grid 1 = t_N > … > t_0 = 0.

- ``"ancestral"``: the reverse process itself; each masked token is revealed with probability
  (α(s) − α(t))/(1 − α(t)), drawn from p_θ; revealed tokens never change (MDLM §3.3 and its caching:
  a row that did not change is not read again, since the network has no time input).
- ``"random"``: the same with a fixed number of stickers per step (as many as the schedule takes off
  on average), on random positions: LLaDA's random remasking (Nie et al. 2025, Algorithm 4). With as
  many steps as stickers it reveals exactly one token per network call: the many-step limit of the
  ancestral sampler (any-order autoregression, Ou et al. 2024), in L calls.
- ``"confidence"``: LLaDA's low-confidence remasking (Nie et al. 2025, §2.4, Algorithm 5): guess
  every masked token, keep the most confident guesses, as many as the schedule reveals in that step,
  and put the sticker back on the others.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

from .caption_text import CAPTION_LENGTH, MASK_ID
from .nucleus import draw_words
from .objectives import to_device
from .settings import check_choice, check_float, check_int

MaskSchedule = Literal["linear", "cosine"]
MASK_SCHEDULES: tuple[str, ...] = get_args(MaskSchedule)
Remasking = Literal["ancestral", "random", "confidence"]
REMASKING: tuple[str, ...] = get_args(Remasking)


# ----------------------------------------------------------------------------- the forward process
def keep_probability(t: torch.Tensor | float, schedule: MaskSchedule = "linear") -> torch.Tensor:
    """α(t): the chance that a token is still visible at time t ∈ [0, 1] (1 at t = 0, 0 at t = 1)."""
    check_choice("schedule", schedule, MASK_SCHEDULES)
    t = torch.as_tensor(t, dtype=torch.float64)
    return 1.0 - t if schedule == "linear" else torch.cos(0.5 * math.pi * t)


def elbo_weight(t: torch.Tensor | float, schedule: MaskSchedule = "linear") -> torch.Tensor:
    """w(t) = −α′(t) / (1 − α(t)), the ELBO's weight of the masked cross-entropy at time t (1/t if linear)."""
    check_choice("schedule", schedule, MASK_SCHEDULES)
    t = torch.as_tensor(t, dtype=torch.float64)
    if schedule == "linear":
        return 1.0 / t
    h = 0.5 * math.pi * t
    return 0.5 * math.pi * torch.sin(h) / (1.0 - torch.cos(h))


def mask_tokens(x0: torch.Tensor, t: torch.Tensor, generator: torch.Generator | None = None, *,
                schedule: MaskSchedule = "linear", mask_id: int = MASK_ID) -> tuple[torch.Tensor, torch.Tensor]:
    """x_t ~ q(x_t | x₀): each token of x₀ (B, L) replaced by ``mask_id`` with probability 1 − α(t), t (B,).

    Returns (x_t (B, L), masked (B, L) bool). The draw is made on the CPU from ``generator``.
    """
    if x0.dim() != 2 or t.shape != x0.shape[:1]:
        raise ValueError(f"x0 must be (B, L) and t (B,), got {tuple(x0.shape)} and {tuple(t.shape)}")
    u = torch.rand(x0.shape, generator=generator)  # (B, L)
    masked = to_device(u < (1.0 - keep_probability(t.cpu(), schedule)).float()[:, None], x0.device)
    return torch.where(masked, torch.full_like(x0, mask_id), x0), masked


@dataclass(frozen=True)
class MaskedDiffusionObjective:
    """The masked-diffusion NELBO per token (MDLM eq. 10, LLaDA eq. 3) as an :class:`~course_lib.objectives.Objective`.

    Two unbiased estimates of the same bound (``draw``):

    - ``"time"``: loss = mean over the batch of w(t) · Σ_{masked l} −log p_θ(x₀ˡ | x_t) / L, with t
      drawn stratified over [t_min, 1] (MDLM's low-discrepancy sampler: one t in each of B equal
      slices, shifted together);
    - ``"count"`` (default): the number of stickers k is drawn uniformly from 1 … L (stratified over
      the batch), k random positions are covered, and the weight is L/k. Integrating t out of the
      bound gives exactly this: ∫₀¹ (1/t) · C(L, k) tᵏ (1 − t)^{L−k} dt = 1/k for each set of k
      stickers (Ou et al. 2024, "Your absorbing discrete diffusion secretly models the conditional
      distributions of clean data", §3; the any-order autoregressive form of Hoogeboom et al. 2022).
      Its weight is at most L where 1/t is unbounded, so its gradients are far less noisy.

    ``x0`` may come as floats (the training loop's data): ids are rounded.
    """

    schedule: MaskSchedule = "linear"
    t_min: float = 1e-3
    mask_id: int = MASK_ID
    draw: Literal["time", "count"] = "count"

    def __post_init__(self) -> None:
        check_choice("schedule", self.schedule, MASK_SCHEDULES)
        check_float("t_min", self.t_min, min_value=1e-6, max_value=0.5)
        check_choice("draw", self.draw, ("time", "count"))

    def draw_t(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        """Stratified times (B,) in [t_min, 1]."""
        u = (torch.rand(1, generator=generator) + torch.arange(batch) / batch) % 1.0
        return self.t_min + (1.0 - self.t_min) * u

    def per_caption(self, model: nn.Module, x0: torch.Tensor, t: torch.Tensor,
                    generator: torch.Generator | None) -> torch.Tensor:
        """w(t) · Σ_masked −log p_θ(x₀ˡ | x_t) for each caption: (B,), in nats."""
        x0 = x0.round().long() if x0.is_floating_point() else x0.long()
        x_t, masked = mask_tokens(x0, t, generator, schedule=self.schedule, mask_id=self.mask_id)
        logits = model(x_t).float()  # (B, L, V)
        ce = F.cross_entropy(logits.transpose(1, 2), x0, reduction="none")  # (B, L)
        w = elbo_weight(t, self.schedule).float().to(x0.device)  # (B,)
        return w * (ce * masked).sum(dim=1)

    def per_caption_count(self, model: nn.Module, x0: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """(L/k) · Σ_masked −log p_θ(x₀ˡ | x_t) with k ~ U{1 … L} stickers on random positions: (B,), nats."""
        x0 = x0.round().long() if x0.is_floating_point() else x0.long()
        B, L = x0.shape
        k = 1 + ((torch.rand(1, generator=generator) + torch.arange(B) / B) % 1.0 * L).long().clamp(max=L - 1)  # (B,)
        rank = torch.rand(B, L, generator=generator).argsort(1).argsort(1)  # a random order of the positions
        masked = to_device(rank < k[:, None], x0.device)  # the k positions first in that order
        x_t = torch.where(masked, torch.full_like(x0, self.mask_id), x0)
        ce = F.cross_entropy(model(x_t).float().transpose(1, 2), x0, reduction="none")  # (B, L)
        return (L / k.to(x0.device).float()) * (ce * masked).sum(dim=1)

    def loss(self, model: nn.Module, x0: torch.Tensor, cond: torch.Tensor | None, generator: torch.Generator,
             **_: Any) -> torch.Tensor:
        if self.draw == "count":
            return self.per_caption_count(model, x0, generator).mean() / x0.shape[1]
        t = self.draw_t(x0.shape[0], generator)
        return self.per_caption(model, x0, t, generator).mean() / x0.shape[1]

    def identity(self) -> dict[str, Any]:
        return {"loss": "masked_diffusion_nelbo", "schedule": self.schedule, "t_min": self.t_min, "mask_id": self.mask_id,
                "draw": self.draw}


@torch.no_grad()
def masked_nelbo(model: nn.Module, ids: torch.Tensor, *, schedule: MaskSchedule = "linear", num_times: int = 64,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """A Monte-Carlo estimate of the NELBO of each caption (B,), nats: ``num_times`` stratified t per caption.

    An upper bound on −log p_θ(caption) (chapter 04); compare with the exact
    :func:`course_lib.autoregressive.sequence_nll` of a next-word model.
    """
    check_int("num_times", num_times, min_value=1)
    obj = MaskedDiffusionObjective(schedule)
    g = generator or torch.Generator().manual_seed(0)
    total = torch.zeros(ids.shape[0], dtype=torch.float64)
    for k in range(num_times):
        t = obj.t_min + (1 - obj.t_min) * ((k + torch.rand(ids.shape[0], generator=g)) / num_times)
        total += obj.per_caption(model, ids, t, g).double().cpu()
    return total / num_times


# ----------------------------------------------------------------------------- the reverse process
def _draw(logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A word for every position of logits (B, L, V) (:func:`course_lib.nucleus.draw_words`) and its probability under p_θ."""
    words = draw_words(logits, temperature=temperature, top_p=top_p, generator=generator)
    return words, logits.float().softmax(-1).gather(-1, words[..., None])[..., 0]


def unmask_step(logits: torch.Tensor, x_t: torch.Tensor, t: float, s: float, *, remasking: Remasking = "ancestral",
                schedule: MaskSchedule = "linear", start_masked: torch.Tensor | None = None, temperature: float = 1.0,
                top_p: float = 1.0, generator: torch.Generator | None = None, mask_id: int = MASK_ID) -> torch.Tensor:
    """One step from time t to s < t: x_t (B, L) → x_s, given the network's logits (B, L, V) for x_t.

    ``"ancestral"``: each masked token is revealed with probability (α(s) − α(t))/(1 − α(t)) and drawn
    from p_θ. ``"random"``: reveal exactly as many as the schedule takes off on average, so that
    round(m₀ · (1 − α(s))) stickers stay on (m₀ = ``start_masked``, each row's number of stickers at
    the start), chosen at random; ``"confidence"``: the same number, the most confident guesses.
    Visible tokens are kept either way. Revealed words are drawn at ``temperature`` from the
    top-``top_p`` nucleus of p_θ (:mod:`course_lib.nucleus`; 1 = from p_θ itself).
    """
    g = generator or torch.Generator().manual_seed(0)
    masked = x_t == mask_id
    words, confidence = _draw(logits, temperature, top_p, g)
    a_t, a_s = float(keep_probability(t, schedule)), float(keep_probability(s, schedule))
    if remasking == "ancestral":
        p = 1.0 if a_t >= 1.0 else (a_s - a_t) / (1.0 - a_t)
        reveal = masked & to_device(torch.rand(x_t.shape, generator=g) < p, x_t.device)
    elif remasking in ("random", "confidence"):
        m0 = masked.sum(1) if start_masked is None else start_masked.to(x_t.device)
        stay = torch.round(m0.double() * (1.0 - a_s)).long()  # (B,): stickers left after this step
        n_reveal = (masked.sum(1) - stay).clamp(min=0)  # (B,)
        if remasking == "random":  # which ones: at random (LLaDA's random remasking)
            confidence = to_device(torch.rand(x_t.shape, generator=g), x_t.device)
        score = torch.where(masked, confidence, torch.full_like(confidence, -1.0))
        rank = score.argsort(dim=1, descending=True).argsort(dim=1)  # 0 = most confident
        reveal = masked & (rank < n_reveal[:, None])
    else:
        check_choice("remasking", remasking, REMASKING)
    return torch.where(reveal, words, x_t)


@torch.no_grad()
def sample_masked(model: nn.Module, num: int | None = None, *, init: torch.Tensor | None = None, num_steps: int = 24,
                  remasking: Remasking = "ancestral", schedule: MaskSchedule = "linear", temperature: float = 1.0,
                  top_p: float = 1.0, generator: torch.Generator | None = None, length: int = CAPTION_LENGTH,
                  mask_id: int = MASK_ID, return_calls: bool = False) -> torch.Tensor | tuple[torch.Tensor, int]:
    """Unmask ``num`` all-``[MASK]`` captions (or ``init`` (B, L), whose visible tokens are kept) in ``num_steps`` steps.

    Returns ids (B, L) with no ``[MASK]`` left (and, with ``return_calls``, the number of caption
    rows the network read: a row whose tokens did not change since its last reading, or that has no
    ``[MASK]`` left, is not read again, so no row is read more often than it has stickers).
    """
    num_steps = check_int("num_steps", num_steps, min_value=1, max_value=10_000)
    check_choice("remasking", remasking, REMASKING)
    check_float("temperature", temperature, min_value=0.0)
    check_float("top_p", top_p, min_value=0.0, max_value=1.0)
    dev = next(model.parameters()).device
    if init is None:
        x = torch.full((check_int("num", num, min_value=1), length), mask_id, dtype=torch.long, device=dev)
    else:
        x = init.round().long().to(dev) if init.is_floating_point() else init.long().to(dev)
    g = generator or torch.Generator().manual_seed(0)
    start_masked = (x == mask_id).sum(1)
    times = torch.linspace(1.0, 0.0, num_steps + 1, dtype=torch.float64).tolist()
    logits, read, calls = None, None, 0
    for t, s in zip(times[:-1], times[1:]):
        pending = (x == mask_id).any(1)  # rows with a sticker left; a finished row is not read again
        stale = pending if read is None else pending & (x != read).any(1)
        if bool(stale.any()):
            fresh = model(x[stale]).float()  # (b, L, V): only the rows that changed
            if logits is None:
                logits = torch.zeros(*x.shape, fresh.shape[-1], device=dev)
            logits[stale] = fresh
            calls += int(stale.sum())
            read = x.clone()
        x = unmask_step(logits, x, t, s, remasking=remasking, schedule=schedule, start_masked=start_masked,
                        temperature=temperature, top_p=top_p, generator=g, mask_id=mask_id)
    return (x, calls) if return_calls else x


def mask_words(ids: torch.Tensor, share: float, generator: torch.Generator | None = None, *,
               mask_id: int = MASK_ID, pad_id: int = 0) -> torch.Tensor:
    """Cover each word of ids (B, L) with ``[MASK]`` with probability ``share`` (at least one per caption);
    the padding stays, so the length is known."""
    check_float("share", share, min_value=0.0, max_value=1.0)
    g = generator or torch.Generator().manual_seed(0)
    words = ids != pad_id
    u = torch.rand(ids.shape, generator=g).to(ids.device)
    chosen = words & (u < share)
    first = torch.where(words, u, torch.full_like(u, 2.0)).argmin(1)  # the word with the smallest draw, if none chosen
    none = ~chosen.any(1)
    chosen[none, first[none]] = True
    return torch.where(chosen, torch.full_like(ids, mask_id), ids)


def infill(model: nn.Module, masked_ids: torch.Tensor, **kwargs: Any) -> torch.Tensor:
    """Fill the ``[MASK]`` of ``masked_ids`` (B, L) and keep every visible token: :func:`sample_masked` from ``init``.

    The visible tokens may sit anywhere, at the start, in the middle or at the end: a bidirectional
    model reads them all (what a left-to-right model cannot do without retraining).
    """
    return sample_masked(model, init=masked_ids, **kwargs)


def kept_visible(masked_ids: torch.Tensor, filled: torch.Tensor, mask_id: int = MASK_ID) -> torch.Tensor:
    """Bool (B,): whether ``filled`` keeps every visible token of ``masked_ids``."""
    visible = masked_ids != mask_id
    return ((filled == masked_ids) | ~visible).all(1)


__all__ = [
    "MASK_ID",
    "MASK_SCHEDULES",
    "REMASKING",
    "MaskSchedule",
    "MaskedDiffusionObjective",
    "Remasking",
    "elbo_weight",
    "infill",
    "keep_probability",
    "kept_visible",
    "mask_tokens",
    "mask_words",
    "masked_nelbo",
    "sample_masked",
    "unmask_step",
]
