"""A small transformer over caption tokens: bidirectional for masked diffusion, causal for next-word prediction (chapter 16).

The same network, two reading rules (the seed explainer's "super-smart reader"):

    ids (B, L) ─ word embedding + position embedding ─ [pre-norm transformer layer] × n ─ LayerNorm ─ Linear ─ logits (B, L, num_words)

- ``causal=False`` (masked diffusion, :mod:`course_lib.text_diffusion`): every position reads every
  other one, the masked ones included; the network guesses the word under each ``[MASK]``
  (Sahoo et al. 2024, "Simple and effective masked diffusion language models" (MDLM), §3; Nie et
  al. 2025, LLaDA, §2.1: a "mask predictor" with no causal mask and no time input).
- ``causal=True`` (the autoregressive baseline, :mod:`course_lib.autoregressive`): position i reads
  positions ≤ i only (Vaswani et al. 2017, §3.2.3), so output i is a guess of the *next* word.

The inputs are the ``num_words`` words (id 0 is the padding that ends a caption, a word like any
other here) plus one more id, ``num_words`` itself: ``[MASK]`` for the diffusion model and the
"start" token for the causal one — in both cases "nothing known here yet". The outputs are the
``num_words`` words only, so a prediction can never be ``[MASK]`` (MDLM's "zero masking
probabilities", §3.2.3). No time input: how many ``[MASK]`` a sentence holds already tells the
network how far the erasing went (MDLM §3.2.3, Ou et al. 2024 prove the optimum does not depend on t).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..scenes import MAX_SCENE_PROMPT_LENGTH, SCENE_VOCAB
from ..settings import check_bool, check_int


@dataclass(frozen=True)
class CaptionTransformerConfig:
    """Shape of a :class:`CaptionTransformer`.

    - ``num_words``: output classes (the scene vocabulary with its padding); inputs add one id, ``[MASK]``/start.
    - ``max_length``: tokens per caption; ``width``: size of each token vector; ``num_heads``: attention heads.
    - ``num_layers``: transformer layers; ``causal``: read only to the left (autoregressive) or everywhere.
    """

    num_words: int = len(SCENE_VOCAB)
    max_length: int = MAX_SCENE_PROMPT_LENGTH
    width: int = 64
    num_layers: int = 2
    num_heads: int = 4
    causal: bool = False

    def __post_init__(self) -> None:
        check_int("num_words", self.num_words, min_value=2)
        check_int("max_length", self.max_length, min_value=1)
        check_int("width", self.width, min_value=1)
        check_int("num_layers", self.num_layers, min_value=1, max_value=12)
        check_int("num_heads", self.num_heads, min_value=1)
        check_bool("causal", self.causal)
        if self.width % self.num_heads:
            raise ValueError(f"width={self.width} must be divisible by num_heads={self.num_heads}")

    @property
    def mask_id(self) -> int:
        """The extra input id: ``[MASK]`` (diffusion) or the start token (causal)."""
        return self.num_words

    def to_dict(self) -> dict[str, int | bool]:
        return asdict(self)


class CaptionTransformer(nn.Module):
    """Token ids (B, L) → logits over the words (B, L, num_words); ``model(ids)``.

    Ids may come as floats (the training loop stores data as floating point); they are rounded to
    integers and checked to lie in 0..num_words (``num_words`` = ``[MASK]``/start).
    """

    def __init__(self, config: CaptionTransformerConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config if config is not None else CaptionTransformerConfig()
        if not isinstance(cfg, CaptionTransformerConfig):
            raise ValueError(f"config must be a CaptionTransformerConfig, got {type(cfg).__name__}")
        self.words = nn.Embedding(cfg.num_words + 1, cfg.width)
        self.positions = nn.Parameter(torch.randn(cfg.max_length, cfg.width) * 0.02)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(cfg.width, cfg.num_heads, dim_feedforward=4 * cfg.width, dropout=0.0,
                                       activation="gelu", batch_first=True, norm_first=True)
            for _ in range(cfg.num_layers)
        )
        self.norm = nn.LayerNorm(cfg.width)
        self.out = nn.Linear(cfg.width, cfg.num_words)

    def forward(self, ids: torch.Tensor, t: torch.Tensor | None = None, cond: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, L, num_words). ``t`` and ``cond`` are accepted for the denoiser contract and ignored."""
        cfg = self.config
        if not isinstance(ids, torch.Tensor) or ids.dim() != 2 or ids.shape[1] > cfg.max_length:
            got = tuple(ids.shape) if isinstance(ids, torch.Tensor) else type(ids).__name__
            raise ValueError(f"ids must be token ids (B, L) with L <= {cfg.max_length}, got {got}")
        ids = ids.round().long() if ids.is_floating_point() else ids.long()
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) > cfg.num_words):
            raise ValueError(f"ids hold [{int(ids.min())}, {int(ids.max())}], outside 0..{cfg.num_words} "
                             f"(the words and [MASK] = {cfg.num_words})")
        L = ids.shape[1]
        h = self.words(ids.to(self.out.weight.device)) + self.positions[:L]  # (B, L, width)
        mask = nn.Transformer.generate_square_subsequent_mask(L, device=h.device, dtype=h.dtype) if cfg.causal else None
        for layer in self.layers:
            h = layer(h, src_mask=mask, is_causal=cfg.causal)
        return self.out(self.norm(h))  # (B, L, num_words)


__all__ = ["CaptionTransformer", "CaptionTransformerConfig"]
