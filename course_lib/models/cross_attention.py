"""Cross-attention: every pixel reads the words that concern it (chapter 11; Stable Diffusion's conditioning).

Chapter 08 squeezed a prompt into one vector and added it to the time embedding: every pixel got
the same nudge. Stable Diffusion (Rombach et al. 2022, §3.3) keeps one vector *per word* and lets
each pixel of the U-Net ask the words a question:

    Q = W_q · (the pixel's features)        (HW, d)   — queries from pixels
    K = W_k · (word vectors), V = W_v · (word vectors)   (L, d)   — keys and values from words
    attention weights A = softmax(Q Kᵀ / √d)  (HW, L); a padding word gets weight 0
    output = A V, projected and added to the pixel's features (a residual)

Row p of A says which words pixel p listened to: the cross-attention maps of the chapter. A
learned "start" vector is always present in the context (CLIP's start-of-text token plays this
role in SD), so that an empty prompt — every word padding — still has something to attend to.

:class:`CrossAttentionUNet` is the course U-Net (:class:`course_lib.models.unet.UNet`) with a
:class:`CrossAttention` after every ResBlock (and self-attention) at the resolutions in
``cross_attention_resolutions``, and the chapter-08 :class:`~course_lib.models.text.TextEncoder`
run per token (no pooling). Call it as ``model(x_t, t, cond=token_ids)``; a row of −1 (condition
dropout, CFG's "no condition") is read as the empty prompt, as by ``PromptDenoiser``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .text import NO_PROMPT, TextEncoder, TextEncoderConfig, check_tokens
from .unet import UNet, UNetConfig

PAD_ID = 0


def cross_attention_weights(q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """softmax(q kᵀ / √d) over the words, with masked-out words at weight 0.

    q (B, heads, P, d) from P pixels; k (B, heads, L, d) from L words; mask (B, L) bool, True = a
    real word. Returns (B, heads, P, L); each row sums to 1.
    """
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])  # (B, heads, P, L)
    scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
    return scores.softmax(dim=-1)


class CrossAttention(nn.Module):
    """Queries from the pixels of ``x`` (B, C, H, W), keys and values from ``context`` (B, L, D); residual."""

    def __init__(self, channels: int, context_dim: int, groups: int, head_channels: int) -> None:
        super().__init__()
        self.heads = max(1, channels // head_channels)
        self.norm = nn.GroupNorm(groups, channels)
        self.to_q = nn.Linear(channels, channels, bias=False)
        self.to_k = nn.Linear(context_dim, channels, bias=False)
        self.to_v = nn.Linear(context_dim, channels, bias=False)
        self.proj = nn.Linear(channels, channels)
        self.keep_maps = False  # set True to record the attention weights of the next calls
        self.maps: torch.Tensor | None = None  # (B, heads, HW, L) of the last call when keep_maps

    def forward(self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        n = self.heads

        def split(y: torch.Tensor) -> torch.Tensor:  # (B, tokens, C) -> (B, heads, tokens, C/heads)
            return y.reshape(b, y.shape[1], n, c // n).transpose(1, 2)

        pixels = self.norm(x).flatten(2).transpose(1, 2)  # (B, HW, C)
        q, k, v = split(self.to_q(pixels)), split(self.to_k(context)), split(self.to_v(context))
        weights = cross_attention_weights(q, k, mask)  # (B, heads, HW, L)
        if self.keep_maps:
            self.maps = weights.detach()
        out = (weights @ v).transpose(1, 2).reshape(b, h * w, c)  # (B, HW, C)
        return x + self.proj(out).transpose(1, 2).reshape(b, c, h, w)


@dataclass(frozen=True)
class CrossAttentionConfig:
    """The U-Net, the text encoder, and where cross-attention sits (feature-map sizes)."""

    unet: UNetConfig
    text: TextEncoderConfig
    cross_attention_resolutions: tuple[int, ...] = (16, 8)
    clause_separator: int | None = None  # a token id ("and") that starts a clause: the text encoder reads each on its own

    def __post_init__(self) -> None:
        object.__setattr__(self, "cross_attention_resolutions", tuple(self.cross_attention_resolutions))
        if self.unet.conditional:
            raise ValueError("the U-Net of a CrossAttentionUNet takes its condition through cross-attention; "
                             "build it with num_classes=None and cond_dim=None")
        bad = [r for r in self.cross_attention_resolutions if r not in self.unet.resolutions]
        if bad:
            raise ValueError(f"cross_attention_resolutions {bad} are not among the U-Net's levels {self.unet.resolutions}")

    @property
    def conditional(self) -> bool:
        return True

    @property
    def image_size(self) -> int:
        return self.unet.image_size

    @property
    def in_channels(self) -> int:
        return self.unet.in_channels

    def to_dict(self) -> dict:
        return {"unet": self.unet.to_dict(), "text": self.text.to_dict(),
                "cross_attention_resolutions": list(self.cross_attention_resolutions),
                "clause_separator": self.clause_separator}


class CrossAttentionUNet(UNet):
    """The course U-Net conditioned on per-word vectors through cross-attention: ``model(x_t, t, cond=ids)``."""

    def __init__(self, config: CrossAttentionConfig) -> None:
        if not isinstance(config, CrossAttentionConfig):
            raise ValueError(f"config must be a CrossAttentionConfig, got {type(config).__name__}")
        super().__init__(config.unet)
        self.config = config  # type: ignore[assignment]
        cfg, tcfg = config.unet, config.text
        self.text_encoder = TextEncoder(tcfg)
        self.start = nn.Parameter(torch.randn(1, 1, tcfg.out_dim) * 0.02)  # always-present context token
        res = cfg.resolutions

        def cross(ch: int, r: int) -> nn.Module:
            if r in config.cross_attention_resolutions:
                return CrossAttention(ch, tcfg.out_dim, cfg.norm_groups, cfg.head_channels)
            return nn.Identity()

        self.down_cross = nn.ModuleList(nn.ModuleList(cross(cfg.widths[i], res[i]) for _ in lvl.res)
                                        for i, lvl in enumerate(self.down))
        self.mid_cross = cross(cfg.widths[-1], res[-1])
        self.up_cross = nn.ModuleList(nn.ModuleList(cross(cfg.widths[i], res[i]) for _ in lvl.res)
                                      for i, lvl in zip(reversed(range(len(res))), self.up))

    # ------------------------------------------------------------------ the text side
    def as_prompt_ids(self, cond: torch.Tensor | None, batch_size: int, device: torch.device) -> torch.Tensor:
        L = self.config.text.max_length
        if cond is None:
            return torch.full((batch_size, L), PAD_ID, dtype=torch.long, device=device)
        if not isinstance(cond, torch.Tensor) or cond.dim() != 2 or cond.shape[0] != batch_size or cond.is_floating_point():
            got = tuple(cond.shape) if isinstance(cond, torch.Tensor) else type(cond).__name__
            raise ValueError(f"cond must be integer token ids ({batch_size}, <= {L}) from course_lib.scenes.scene_tokenize, got {got}")
        no_prompt = (cond == NO_PROMPT).all(dim=1, keepdim=True)
        return torch.where(no_prompt, torch.full_like(cond, PAD_ID), cond).to(device)

    def encode_prompt(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-word vectors (B, 1 + L, D) (the start token first) and the mask (B, 1 + L) of real tokens."""
        enc = self.text_encoder
        ids = check_tokens("cond", ids, enc.config.vocab_size, enc.config.max_length)
        pad = ids == PAD_ID
        positions, apart = self.clauses(ids)
        h = enc.words(ids) + enc.positions[positions]  # (B, L, width)
        nonempty = ~pad.all(1)
        if bool(nonempty.any()):  # a prompt with no word skips the layers (a fully masked row would give NaN)
            hn = h[nonempty]
            mask = None if apart is None else apart[nonempty].repeat_interleave(enc.config.num_heads, 0)  # (B'·heads, L, L)
            for layer in enc.layers:
                hn = layer(hn, src_mask=mask, src_key_padding_mask=pad[nonempty])
            h = h.to(hn.dtype).index_put((nonempty.nonzero().squeeze(1),), hn)  # autocast: hn may be bf16/fp16
        words = enc.out(enc.norm(h))  # (B, L, D): one vector per word, no pooling
        context = torch.cat([self.start.expand(len(ids), -1, -1), words], 1)
        mask = torch.cat([torch.ones_like(pad[:, :1]), ~pad], 1)
        return context, mask

    def clauses(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Each word's position and which words may not read each other, (B, L) and (B, L, L) or None.

        Without a ``clause_separator`` the whole prompt is one sentence (positions 0 … L−1, no
        mask). With one, as Structured Diffusion Guidance does with noun phrases (Feng et al. 2023),
        each clause ("a dog in a green hat on the left") is read on its own: its words attend only
        to each other and count positions from the clause's start (the separator is a clause of
        its own), so a clause means the same wherever it stands in the prompt, and "green" cannot
        leak into the other animal's words.
        """
        idx = torch.arange(ids.shape[1], device=ids.device).expand_as(ids)  # (B, L)
        sep = self.config.clause_separator
        if sep is None:
            return idx, None
        is_sep = (ids == sep).long()
        start = torch.where(is_sep.bool(), idx + 1, torch.zeros_like(idx)).cummax(dim=1).values  # the clause's first word
        positions = torch.where(is_sep.bool(), torch.zeros_like(idx), idx - start)
        clause = 2 * (is_sep.cumsum(dim=1) - is_sep) + is_sep  # (B, L): 0, then 1 for the separator alone, 2, …
        return positions, clause[:, :, None] != clause[:, None, :]

    # ------------------------------------------------------------------ the network
    def forward(self, x_t: torch.Tensor, t: torch.Tensor | float | int, cond: torch.Tensor | None = None) -> torch.Tensor:
        t = self.check_inputs(x_t, t, None)
        context, mask = self.encode_prompt(self.as_prompt_ids(cond, x_t.shape[0], x_t.device))
        return self.denoise(x_t, F.silu(self.time_embed(t)), context, mask)

    def denoise(self, x_t: torch.Tensor, emb: torch.Tensor, context: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The U-Net's pass given the embedding ``emb`` (B, emb_dim) (after its SiLU), the ``context`` (B, T, D)
        its cross-attentions read and the ``mask`` (B, T) of the tokens they may read."""
        p = self.config.unet.patch_size
        h = self.stem(F.pixel_unshuffle(x_t, p) if p > 1 else x_t)
        skips: list[torch.Tensor] = []
        for level, crosses, down in zip(self.down, self.down_cross, self.downsample):
            for res, attn, cross in zip(level.res, level.attn, crosses):
                h = attn(res(h, emb))
                h = cross(h, context, mask) if isinstance(cross, CrossAttention) else h
                skips.append(h)
            h = down(h)
        h = self.mid_attn(self.mid1(h, emb))
        h = self.mid_cross(h, context, mask) if isinstance(self.mid_cross, CrossAttention) else h
        h = self.mid2(h, emb)
        for level, crosses, up in zip(self.up, self.up_cross, self.upsample):
            for res, attn, cross in zip(level.res, level.attn, crosses):
                h = attn(res(torch.cat([h, skips.pop()], dim=1), emb))
                h = cross(h, context, mask) if isinstance(cross, CrossAttention) else h
            h = up(h)
        h = self.out_conv(F.silu(self.out_norm(h)))
        return F.pixel_shuffle(h, p) if p > 1 else h

    def cross_attention_layers(self) -> list[tuple[str, CrossAttention]]:
        """(name, layer) for every cross-attention, from the way down to the way up."""
        return [(n, m) for n, m in self.named_modules() if isinstance(m, CrossAttention)]


__all__ = ["CrossAttention", "CrossAttentionConfig", "CrossAttentionUNet", "cross_attention_weights"]
