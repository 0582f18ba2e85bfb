"""MMDiT: words and picture patches in one sequence, one joint attention (chapter 14; Stable Diffusion 3's backbone).

Esser et al. 2024, "Scaling Rectified Flow Transformers for High-Resolution Image Synthesis", §4
and Figure 2. Chapter 11's U-Net let pixels *ask* the words (cross-attention: queries from pixels,
keys and values from words, the words never change). MMDiT puts both in one sequence:

    words  (B, 1 + L, D)  ── their own adaLN, Q/K/V, MLP ──┐
                                                         ├─ concat ─► joint attention over 1 + L + N tokens
    patches (B, N, D)     ── their own adaLN, Q/K/V, MLP ──┘           (every token reads every token)
    then split back: each stream adds its share through its own output layer and MLP.

"Separate weights per modality": text and image tokens are different kinds of thing, so each has
its own projections and MLP, and only the attention mixes them. The condition c (time step +
pooled prompt, SD3's pooled CLIP vector) modulates both streams by adaLN-Zero as in DiT
(:mod:`course_lib.models.dit`). The rows of the joint attention that belong to patches, restricted
to the word columns, are the "which patch reads which word" maps of the chapter.

The words: chapter 11's vocabulary and tokenizer (:func:`course_lib.scenes.scene_tokenize`), a
learned embedding per word, positions counted from the start of each "… and …" clause plus a
clause number (as chapter 11's encoder reads clauses, so "on the left" belongs to its own animal),
and a learned start token that is always there (an empty prompt still has something to attend to).
Call ``model(x_t, t, cond=token_ids)``; a row of −1 is the empty prompt (CFG's "no condition").
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..settings import check_int
from .dit import MLP, FinalLayer, TimestepEmbedder, modulate, patchify, sincos_2d, unpatchify, zero_init_
from .text import NO_PROMPT

PAD_ID = 0
MAX_CLAUSES = 8
POSITION_INIT_STD = 1.0  # the initial N(0, std²) of the word and clause positions, as the word embedding's


@dataclass(frozen=True)
class MMDiTConfig:
    """Latents ``in_channels``×``latent_size``² in ``patch_size``² patches; prompts of ``max_length`` ids from ``vocab_size``."""

    latent_size: int = 16
    in_channels: int = 4
    patch_size: int = 2
    width: int = 96
    depth: int = 4
    heads: int = 4
    vocab_size: int = 25
    max_length: int = 24
    clause_separator: int | None = None  # the id of "and": positions restart after it

    def __post_init__(self) -> None:
        for name in ("latent_size", "in_channels", "patch_size", "width", "depth", "heads", "vocab_size", "max_length"):
            check_int(name, getattr(self, name), min_value=1)
        if self.latent_size % self.patch_size or self.width % self.heads or self.width % 4:
            raise ValueError("latent_size must be a multiple of patch_size, width a multiple of 4 and of heads")

    @property
    def conditional(self) -> bool:
        return True

    def to_dict(self) -> dict:
        return asdict(self)


class StreamWeights(nn.Module):
    """One modality's own weights in a joint block: adaLN (6 vectors), Q/K/V, output, MLP."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.to_q, self.to_k, self.to_v, self.to_out = (nn.Linear(width, width) for _ in range(4))
        self.mlp = MLP(width)
        self.ada = nn.Linear(width, 6 * width)


def joint_attention_weights(q: torch.Tensor, k: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
    """softmax(q kᵀ/√d) over every key token, masked keys at 0: q, k (B, heads, T, d), key_mask (B, T) → (B, heads, T, T)."""
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    return scores.masked_fill(~key_mask[:, None, None, :], float("-inf")).softmax(dim=-1)


class JointBlock(nn.Module):
    """One MMDiT block: both streams modulated by c, attention over [words; patches], each stream's own MLP."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.text, self.image = StreamWeights(width), StreamWeights(width)
        self.keep_maps = False  # True: keep the patch-to-word attention of the next call
        self.maps: torch.Tensor | None = None  # (B, heads, N patches, 1 + L words)

    def forward(self, words: torch.Tensor, patches: torch.Tensor, c: torch.Tensor,
                word_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, lw, d = words.shape
        n, hd = self.heads, d // self.heads
        mods = [s.ada(F.silu(c)).chunk(6, dim=1) for s in (self.text, self.image)]  # per stream: 6 × (B, D)
        qkv = []
        for s, h, m in ((self.text, words, mods[0]), (self.image, patches, mods[1])):
            x = modulate(s.norm1(h), m[0], m[1])  # (B, tokens, D)
            qkv.append([lin(x).reshape(b, -1, n, hd).transpose(1, 2) for lin in (s.to_q, s.to_k, s.to_v)])
        q, k, v = (torch.cat([qkv[0][i], qkv[1][i]], dim=2) for i in range(3))  # (B, heads, 1+L+N, d/heads)
        key_mask = torch.cat([word_mask, word_mask.new_ones(b, patches.shape[1])], dim=1)  # (B, 1+L+N)
        if self.keep_maps:
            weights = joint_attention_weights(q, k, key_mask)  # (B, heads, T, T)
            self.maps = weights[:, :, lw:, :lw].detach()  # patches (queries) reading words (keys)
            out = weights @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask[:, None, None, :])
        out = out.transpose(1, 2).reshape(b, -1, d)  # (B, 1+L+N, D)
        result = []
        for s, h, m, o in ((self.text, words, mods[0], out[:, :lw]), (self.image, patches, mods[1], out[:, lw:])):
            h = h + m[2][:, None] * s.to_out(o)  # gate α₁
            result.append(h + m[5][:, None] * s.mlp(modulate(s.norm2(h), m[3], m[4])))  # gate α₂
        return result[0], result[1]


class MMDiT(nn.Module):
    """Text-to-latent velocity (or noise) model: ``model(z_t, t, cond=token_ids)`` → shaped like z_t."""

    def __init__(self, config: MMDiTConfig) -> None:
        super().__init__()
        if not isinstance(config, MMDiTConfig):
            raise ValueError(f"config must be an MMDiTConfig, got {type(config).__name__}")
        self.config = cfg = config
        p, d = cfg.patch_size, cfg.width
        self.patch_embed = nn.Linear(p * p * cfg.in_channels, d)
        self.register_buffer("pos_embed", sincos_2d(d, cfg.latent_size // p)[None], persistent=False)  # (1, N, D)
        self.words = nn.Embedding(cfg.vocab_size, d)
        # as loud as the words (issue 27): at N(0, 0.02²) "which clause" was ~1/50 of a word vector, and the
        # held-out two-animal prompts, which need it to bind each animal to its side, failed (README "Performance")
        self.word_pos = nn.Parameter(torch.randn(cfg.max_length, d) * POSITION_INIT_STD)  # position inside the clause
        self.clause_pos = nn.Parameter(torch.randn(MAX_CLAUSES, d) * POSITION_INIT_STD)  # which clause
        self.start = nn.Parameter(torch.randn(1, 1, d) * 0.02)  # always present
        self.time_embed = TimestepEmbedder(d)
        self.pooled = nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d))  # SD3's pooled text → c
        self.blocks = nn.ModuleList(JointBlock(d, cfg.heads) for _ in range(cfg.depth))
        self.final = FinalLayer(d, p * p * cfg.in_channels)
        for block in self.blocks:
            zero_init_(block.text.ada, block.image.ada)
        zero_init_(self.final.ada, self.final.linear)

    def prompt_ids(self, cond: torch.Tensor | None, batch: int, device: torch.device) -> torch.Tensor:
        """Token ids (B, L); ``None`` or a row of −1 is the empty prompt (all padding)."""
        L = self.config.max_length
        if cond is None:
            return torch.full((batch, L), PAD_ID, dtype=torch.long, device=device)
        if cond.dim() != 2 or cond.shape[0] != batch or cond.shape[1] > L or cond.is_floating_point():
            raise ValueError(f"cond must be token ids ({batch}, <= {L}) from course_lib.scenes.scene_tokenize, "
                             f"got {tuple(cond.shape)} {cond.dtype}")
        empty = (cond == NO_PROMPT).all(dim=1, keepdim=True)
        ids = torch.where(empty, torch.full_like(cond, PAD_ID), cond).to(device)
        if bool(((ids < 0) | (ids >= self.config.vocab_size)).any()):
            raise ValueError(f"cond holds ids outside the vocabulary 0 … {self.config.vocab_size - 1}")
        return F.pad(ids, (0, L - ids.shape[1]), value=PAD_ID)

    def embed_words(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Word vectors with the start token first, (B, 1 + L, D), and the mask of real tokens (B, 1 + L)."""
        idx = torch.arange(ids.shape[1], device=ids.device).expand_as(ids)  # (B, L)
        sep = self.config.clause_separator
        if sep is None:
            pos, clause = idx, torch.zeros_like(idx)
        else:
            is_sep = ids == sep
            start = torch.where(is_sep, idx + 1, torch.zeros_like(idx)).cummax(dim=1).values  # the clause's first word
            pos = torch.where(is_sep, torch.zeros_like(idx), idx - start)
            clause = (2 * (is_sep.long().cumsum(1) - is_sep.long()) + is_sep.long()).clamp(max=MAX_CLAUSES - 1)
        h = self.words(ids) + self.word_pos[pos] + self.clause_pos[clause]  # (B, L, D)
        h = torch.cat([self.start.expand(len(ids), -1, -1), h], dim=1)  # (B, 1 + L, D)
        mask = torch.cat([torch.ones_like(ids[:, :1], dtype=torch.bool), ids != PAD_ID], dim=1)
        return h, mask

    def forward(self, x_t: torch.Tensor, t: torch.Tensor | float | int, cond: torch.Tensor | None = None) -> torch.Tensor:
        cfg = self.config
        if x_t.dim() != 4 or x_t.shape[1:] != (cfg.in_channels, cfg.latent_size, cfg.latent_size):
            raise ValueError(f"x_t must be (B, {cfg.in_channels}, {cfg.latent_size}, {cfg.latent_size}), got {tuple(x_t.shape)}")
        b = x_t.shape[0]
        t = torch.as_tensor(t, device=x_t.device, dtype=torch.float32).reshape(-1).expand(b)
        words, mask = self.embed_words(self.prompt_ids(cond, b, x_t.device))  # (B, 1+L, D), (B, 1+L)
        pooled = (words * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)  # (B, D): mean of the real tokens
        c = self.time_embed(t) + self.pooled(pooled)  # (B, D)
        patches = self.patch_embed(patchify(x_t, cfg.patch_size)) + self.pos_embed  # (B, N, D)
        for block in self.blocks:
            words, patches = block(words, patches, c, mask)
        return unpatchify(self.final(patches, c), cfg.patch_size, cfg.in_channels)  # (B, C, h, w)


__all__ = ["JointBlock", "MMDiT", "MMDiTConfig", "joint_attention_weights"]
