"""A small CLIP: a picture encoder and a caption encoder that meet in one space (chapter 13).

Radford et al. 2021 ("Learning transferable visual models from natural language supervision", §2.4 and
Figure 3) train two encoders side by side, one for pictures and one for captions, each ending in a linear
projection to a shared space of size D and an L2 normalisation, so that a picture and its caption land on
the same point of the unit sphere. Here, for the 64×64 scenes of chapter 11 (:mod:`course_lib.scenes`):

    picture (B, 3, 64, 64) ─ 2×2 mean ─ 3 × [conv3×3 → ReLU → 2×2 max-pool] ─ (B, C, 4, 4) ─ flatten ─ MLP ─ (B, D) ─ /‖·‖
    caption ids (B, L)     ─ word + position embeddings ─ transformer × n ─ mean over words ─ Linear ─ (B, D) ─ /‖·‖

The picture encoder keeps the 4×4 layout when it flattens (as chapter 11's scene judge does), so "on the
left" and "on the right" stay apart. The caption encoder reads each clause of "… and …" on its own (the words
of one clause attend only to each other and count their positions from the clause's start, as chapter 11's
cross-attention text encoder, :meth:`course_lib.models.cross_attention.CrossAttentionUNet.clauses`): a clause
means the same wherever it stands, and "green" cannot be read as the other animal's hat. Its per-word
outputs (:meth:`CLIPTextEncoder.words`) are what Stable Diffusion's U-Net reads through cross-attention.

The temperature τ of the contrastive loss is a parameter of the model, stored as ``logit_scale`` = log(1/τ)
and started at log(1/0.07), as in CLIP (§2.5; clamped at 100 = 1/τ). The loss itself lives in
:mod:`course_lib.clip`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..scenes import MAX_SCENE_PROMPT_LENGTH, SCENE_SIZE, SCENE_VOCAB, scene_tokenize
from ..settings import check_int
from .cross_attention import CrossAttentionConfig, CrossAttentionUNet
from .embeddings import TimeEmbedding, VectorEmbedding
from .mlp import MLPBlock
from .text import check_tokens

PAD_ID = 0
INITIAL_TEMPERATURE = 0.07  # CLIP §2.5
MAX_LOGIT_SCALE = 100.0  # CLIP clamps 1/τ at 100 "to prevent scaling the logits by more than 100"


@dataclass(frozen=True)
class CLIPConfig:
    """Shapes of a :class:`CLIP`: the shared space ``embed_dim``; the picture CNN's ``input_pool`` (the picture
    is first averaged over input_pool² pixels), ``widths`` (one per conv + 2×2 max-pool stage) and ``hidden``; the caption transformer's ``text_width``/``text_layers``/``text_heads``.
    ``clause_separator`` is the token id ("and") that starts a clause; None reads the caption as one sentence."""

    embed_dim: int = 64
    input_pool: int = 2
    widths: tuple[int, ...] = (16, 32, 64)
    hidden: int = 256
    text_width: int = 64
    text_layers: int = 2
    text_heads: int = 4
    vocab_size: int = len(SCENE_VOCAB)
    max_length: int = MAX_SCENE_PROMPT_LENGTH
    image_size: int = SCENE_SIZE
    clause_separator: int | None = SCENE_VOCAB.index("and")

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(self.widths))
        for name in ("embed_dim", "hidden", "text_width", "text_heads", "vocab_size", "max_length", "image_size"):
            check_int(name, getattr(self, name), min_value=1)
        check_int("text_layers", self.text_layers, min_value=0, max_value=8)
        check_int("input_pool", self.input_pool, min_value=1)
        if not self.widths or self.image_size % (self.input_pool * 2 ** len(self.widths)):
            raise ValueError(f"image_size={self.image_size} must be divisible by input_pool={self.input_pool} times "
                             f"2 ** len(widths) (one 2×2 pooling per width, widths={self.widths})")
        if self.text_width % self.text_heads:
            raise ValueError(f"text_width={self.text_width} must be divisible by text_heads={self.text_heads}")

    def to_dict(self) -> dict:
        return {**asdict(self), "widths": list(self.widths)}


class CLIPImageEncoder(nn.Module):
    """Pictures (B, 3, 64, 64) in [-1, 1] → unnormalised vectors (B, D)."""

    def __init__(self, config: CLIPConfig) -> None:
        super().__init__()
        chans = (3, *config.widths)
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1) for a, b in zip(chans[:-1], chans[1:]))
        self.pool = config.input_pool
        side = config.image_size // (config.input_pool * 2 ** len(config.widths))
        self.head = nn.Sequential(nn.Linear(config.widths[-1] * side * side, config.hidden), nn.SiLU(),
                                  nn.Linear(config.hidden, config.embed_dim))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        h = F.avg_pool2d(images, self.pool) if self.pool > 1 else images  # 64 → 32: the colours survive the blur
        for conv in self.convs:
            h = F.max_pool2d(F.relu(conv(h)), 2)  # 32 → 16 → 8 → 4
        return self.head(h.flatten(1))  # (B, C·4·4) → (B, D): the layout survives the flatten


class CLIPTextEncoder(nn.Module):
    """Caption ids (B, L) → per-word vectors (B, L, width) and one unnormalised vector (B, D)."""

    def __init__(self, config: CLIPConfig) -> None:
        super().__init__()
        self.config = config
        w = config.text_width
        self.embed = nn.Embedding(config.vocab_size, w, padding_idx=PAD_ID)
        self.positions = nn.Parameter(torch.randn(config.max_length, w) * 0.02)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(w, config.text_heads, dim_feedforward=4 * w, dropout=0.0, activation="gelu",
                                       batch_first=True, norm_first=True)
            for _ in range(config.text_layers))
        self.norm = nn.LayerNorm(w)
        self.proj = nn.Linear(w, config.embed_dim)

    def clauses(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Each word's position counted from its clause's start (B, L), and which words may not read each
        other (B, L, L) or None; the separator is a clause of its own (chapter 11's rule)."""
        idx = torch.arange(ids.shape[1], device=ids.device).expand_as(ids)
        sep = self.config.clause_separator
        if sep is None:
            return idx, None
        is_sep = ids == sep
        start = torch.where(is_sep, idx + 1, torch.zeros_like(idx)).cummax(dim=1).values
        positions = torch.where(is_sep, torch.zeros_like(idx), idx - start)
        clause = 2 * (is_sep.long().cumsum(dim=1) - is_sep.long()) + is_sep.long()
        return positions, clause[:, :, None] != clause[:, None, :]

    def words(self, ids: torch.Tensor) -> torch.Tensor:
        """Per-word outputs (B, L, width) after the last layer's norm; padding rows are zero. Every caption
        needs at least one word (an empty caption has nothing to read)."""
        cfg = self.config
        ids = check_tokens("ids", ids, cfg.vocab_size, cfg.max_length).to(self.proj.weight.device)
        pad = ids == PAD_ID  # (B, L)
        if bool(pad.all(1).any()):
            raise ValueError("every caption needs at least one word; got an empty caption")
        positions, apart = self.clauses(ids)
        h = self.embed(ids) + self.positions[positions]  # (B, L, width)
        mask = None if apart is None else apart.repeat_interleave(cfg.text_heads, 0)  # (B·heads, L, L)
        for layer in self.layers:
            h = layer(h, src_mask=mask, src_key_padding_mask=pad)
        return self.norm(h) * (~pad)[..., None]

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if isinstance(ids, torch.Tensor) and ids.dim() == 2 and ids.numel():
            ids = ids[:, : int((ids != PAD_ID).sum(1).max().clamp_min(1))]  # drop the all-padding tail: the same result, faster
        h = self.words(ids)  # (B, L, width)
        real = (ids.to(h.device) != PAD_ID).sum(1, keepdim=True).clamp_min(1)  # (B, 1)
        return self.proj(h.sum(1) / real)  # mean over the real words → (B, D)


class CLIP(nn.Module):
    """Both encoders and the learned temperature: ``encode_image`` and ``encode_text`` give unit vectors (N, D)."""

    def __init__(self, config: CLIPConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else CLIPConfig()
        if not isinstance(self.config, CLIPConfig):
            raise ValueError(f"config must be a CLIPConfig, got {type(self.config).__name__}")
        self.image_encoder = CLIPImageEncoder(self.config)
        self.text_encoder = CLIPTextEncoder(self.config)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / INITIAL_TEMPERATURE)))

    @property
    def temperature(self) -> float:
        """τ = 1 / exp(logit_scale), as clamped in the loss."""
        return 1.0 / float(self.logit_scale.detach().exp().clamp(max=MAX_LOGIT_SCALE))

    def scale(self) -> torch.Tensor:
        """1/τ, clamped at :data:`MAX_LOGIT_SCALE` (CLIP §2.5)."""
        return self.logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Unit vectors (N, D) of pictures (N, 3, 64, 64) in [-1, 1]."""
        if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1:] != (3, self.config.image_size,
                                                                                               self.config.image_size):
            got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"images must be (N, 3, {self.config.image_size}, {self.config.image_size}) in [-1, 1], got {got}")
        dev = self.logit_scale.device
        return F.normalize(self.image_encoder(images.to(dev).float()), dim=-1)

    def encode_text(self, prompts: Sequence[str] | torch.Tensor) -> torch.Tensor:
        """Unit vectors (N, D) of captions: a list of strings, or their ids (N, L) from
        :func:`course_lib.scenes.scene_tokenize` (an unknown word raises ValueError listing the vocabulary)."""
        if isinstance(prompts, str):
            raise ValueError(f"prompts must be a list of strings, e.g. [{prompts!r}], or token ids (N, L)")
        ids = prompts if isinstance(prompts, torch.Tensor) else scene_tokenize(list(prompts))
        return F.normalize(self.text_encoder(ids), dim=-1)

    def forward(self, images: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """The similarity logits (N, N): logits[i, j] = (1/τ)·cos(picture i, caption j)."""
        return self.scale() * self.encode_image(images) @ self.encode_text(ids).T




# ----------------------------------------------------------------------------- Stable Diffusion's way
class FrozenCLIPUNet(CrossAttentionUNet):
    """Chapter 11's cross-attention U-Net reading a **frozen** CLIP caption encoder's per-word outputs, as Stable
    Diffusion 1.x reads CLIP ViT-L/14's last hidden states (Rombach et al. 2022, §3.3 and Appendix E.2): the
    words' vectors (B, L, width) after the last layer's norm, behind the learned start vector. ``model(x_t, t,
    cond=ids)``; a row of −1 or of padding is the empty prompt (the start vector alone). The caption encoder is
    ``clip_text``, its parameters never train (``requires_grad`` off; its copy in the checkpoint stays as loaded)."""

    def __init__(self, config: CrossAttentionConfig, clip_config: CLIPConfig) -> None:
        super().__init__(config)
        if clip_config.text_width != config.text.out_dim:
            raise ValueError(f"the U-Net's context size text.out_dim={config.text.out_dim} must equal CLIP's "
                             f"text_width={clip_config.text_width}")
        del self.text_encoder  # the U-Net's own text encoder is replaced by CLIP's
        self.clip_config = clip_config
        self.clip_text = CLIPTextEncoder(clip_config).requires_grad_(False)

    def train(self, mode: bool = True) -> "FrozenCLIPUNet":
        super().train(mode)
        self.clip_text.eval()  # frozen: always in inference mode
        return self

    def encode_prompt(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """CLIP's per-word vectors (B, 1 + L, width), the start vector first, and the mask of real tokens."""
        cfg = self.clip_config
        ids = check_tokens("cond", ids, cfg.vocab_size, cfg.max_length)
        pad = ids == PAD_ID
        words = torch.zeros(*ids.shape, cfg.text_width, device=ids.device, dtype=self.start.dtype)
        nonempty = ~pad.all(1)
        if bool(nonempty.any()):
            with torch.no_grad():
                words[nonempty] = self.clip_text.words(ids[nonempty]).to(words.dtype)
        context = torch.cat([self.start.expand(len(ids), -1, -1), words], 1)
        return context, torch.cat([torch.ones_like(pad[:, :1]), ~pad], 1)



# ----------------------------------------------------------------------------- DALL·E 2's way: the decoder
def decoder_condition(vectors: torch.Tensor | None, ids: torch.Tensor | None, *, embed_dim: int | None = None,
                      batch_size: int | None = None) -> torch.Tensor:
    """What :class:`CLIPVectorUNet` reads, as one float tensor (B, D + L): the picture vectors (B, D) (already
    scaled; ``None``: none, NaN), then the caption's token ids (B, L) as floats (``None``: none, NaN). One tensor,
    so that classifier-free guidance's "no condition" (a NaN row, :func:`course_lib.guidance.null_condition`) drops
    both. ``embed_dim`` / ``batch_size``: needed only when ``vectors`` / both are ``None``."""
    if vectors is None and ids is None and batch_size is None:
        raise ValueError("decoder_condition needs vectors, ids or batch_size")
    b = batch_size if batch_size is not None else len(vectors if vectors is not None else ids)
    if vectors is None:
        if embed_dim is None:
            raise ValueError("decoder_condition(vectors=None) needs embed_dim")
        vectors = torch.full((b, embed_dim), float("nan"))
    if ids is None:
        ids = torch.full((b, MAX_SCENE_PROMPT_LENGTH), float("nan"))
    if vectors.dim() != 2 or ids.dim() != 2 or len(vectors) != b or len(ids) != b or not vectors.is_floating_point():
        raise ValueError(f"vectors must be float (B, D) and ids (B, L) with B = {b}, got {tuple(vectors.shape)} "
                         f"and {tuple(ids.shape)}")
    return torch.cat([vectors.float(), ids.to(vectors.device).float()], 1)


class CLIPVectorUNet(CrossAttentionUNet):
    """unCLIP's decoder as Ramesh et al. 2022 build it (§2.1), on GLIDE (Nichol et al. 2022): chapter 11's
    cross-attention U-Net reading the **caption** through its own text encoder (chapter 11's, per word) **and** a CLIP
    **picture vector** (B, D), the vector read twice: projected to ``num_tokens`` extra context tokens appended after
    the caption's words (a learned linear map, ``to_tokens``), and added to the time embedding (``vector_embed``).

    ``model(x_t, t, cond)``, ``cond`` (B, D + L) from :func:`decoder_condition`: a NaN picture vector is "no
    picture" (its tokens masked, the learned empty vector in the time embedding), a caption of NaN or −1 "no
    caption" (the start token alone); training drops each on its own (10 % and 50 %, as theirs), so that
    classifier-free guidance can use either. With neither it is chapter 11's network given an empty prompt.
    ``time_embedding=False``: the tokens only."""

    def __init__(self, config: CrossAttentionConfig, embed_dim: int, num_tokens: int = 4, time_embedding: bool = True) -> None:
        super().__init__(config)
        self.embed_dim = check_int("embed_dim", embed_dim, min_value=1)
        self.num_tokens = check_int("num_tokens", num_tokens, min_value=1)
        self.to_tokens = nn.Linear(embed_dim, num_tokens * config.text.out_dim)
        self.vector_embed = VectorEmbedding(embed_dim, config.unet.emb_dim) if time_embedding else None

    def split_condition(self, cond: torch.Tensor | None, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``cond`` (B, D + L) → the picture vectors (B, D) (NaN rows: none) and the token ids (B, L) (−1 rows: none)."""
        d, L = self.embed_dim, self.config.text.max_length
        if cond is None:
            cond = torch.full((batch_size, d + L), float("nan"), device=self.start.device)
        if not isinstance(cond, torch.Tensor) or not cond.is_floating_point() or cond.shape != (batch_size, d + L):
            got = tuple(cond.shape) if isinstance(cond, torch.Tensor) else type(cond).__name__
            raise ValueError(f"cond must be a picture vector and a caption ({batch_size}, {d} + {L}) from "
                             f"course_lib.models.clip.decoder_condition, got {got}")
        words = cond[:, d:]
        none = torch.isnan(words).any(1, keepdim=True) | (words == -1).all(1, keepdim=True)
        ids = torch.where(none, torch.full_like(words, -1), torch.nan_to_num(words, nan=-1.0)).round().long()
        return cond[:, :d], ids

    def encode_condition(self, vectors: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The context (B, 1 + L + num_tokens, width) — the start token, the caption's words, the picture vector's
        tokens — and its mask."""
        b = len(vectors)
        context, mask = self.encode_prompt(self.as_prompt_ids(ids, b, vectors.device))
        empty = torch.isnan(vectors).all(1, keepdim=True)  # (B, 1)
        v = torch.where(empty, torch.zeros_like(vectors), vectors).to(self.start.dtype)
        tokens = self.to_tokens(v).view(b, self.num_tokens, -1)  # (B, K, width)
        return torch.cat([context, tokens], 1), torch.cat([mask, (~empty).expand(-1, self.num_tokens)], 1)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor | float | int, cond: torch.Tensor | None = None) -> torch.Tensor:
        t = self.check_inputs(x_t, t, None)
        b = x_t.shape[0]
        vectors, ids = self.split_condition(None if cond is None else cond.to(x_t.device), b)
        context, mask = self.encode_condition(vectors, ids)
        emb = self.time_embed(t)
        if self.vector_embed is not None:
            emb = emb + self.vector_embed(vectors, b)
        return self.denoise(x_t, F.silu(emb), context, mask)


# ----------------------------------------------------------------------------- DALL·E 2's way: the prior's network
@dataclass(frozen=True)
class PriorConfig:
    """A :class:`VectorPrior`: CLIP picture vectors of size ``dim`` denoised given a caption vector of size
    ``cond_dim``, by ``num_blocks`` residual MLP blocks of width ``hidden``."""

    dim: int = 64
    cond_dim: int = 64
    hidden: int = 512
    num_blocks: int = 4

    def __post_init__(self) -> None:
        for name in ("dim", "cond_dim", "num_blocks"):
            check_int(name, getattr(self, name), min_value=1)
        if check_int("hidden", self.hidden, min_value=2) % 2:
            raise ValueError(f"hidden must be even (it is also the sinusoidal embedding width), got {self.hidden}")

    @property
    def conditional(self) -> bool:
        return True

    def to_dict(self) -> dict:
        return asdict(self)


class VectorPrior(nn.Module):
    """unCLIP's prior as a denoiser of vectors: ``model(z_t (B, dim), t, cond=caption vectors (B, cond_dim))`` →
    (B, dim). Ramesh et al. 2022 (§2.1) use a transformer over the caption's tokens and vectors; ours is the
    residual MLP of chapter 04's toys with the caption vector added to the time embedding (a NaN row: the learned
    "no caption", for classifier-free guidance)."""

    def __init__(self, config: PriorConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config if config is not None else PriorConfig()
        if not isinstance(cfg, PriorConfig):
            raise ValueError(f"config must be a PriorConfig, got {type(cfg).__name__}")
        self.time_embed = TimeEmbedding(cfg.hidden)
        self.cond_embed = VectorEmbedding(cfg.cond_dim, cfg.hidden)
        self.inp = nn.Linear(cfg.dim, cfg.hidden)
        self.blocks = nn.ModuleList(MLPBlock(cfg.hidden) for _ in range(cfg.num_blocks))
        self.out = nn.Sequential(nn.LayerNorm(cfg.hidden), nn.SiLU(), nn.Linear(cfg.hidden, cfg.dim))

    def forward(self, x_t: torch.Tensor, t: torch.Tensor | float | int, cond: torch.Tensor | None = None) -> torch.Tensor:
        cfg = self.config
        if not isinstance(x_t, torch.Tensor) or x_t.dim() != 2 or x_t.shape[1] != cfg.dim:
            shape = tuple(x_t.shape) if isinstance(x_t, torch.Tensor) else type(x_t).__name__
            raise ValueError(f"x_t must be CLIP vectors (B, {cfg.dim}), got {shape}")
        b = x_t.shape[0]
        t = torch.as_tensor(t, device=x_t.device)
        t = t.expand(b) if t.dim() == 0 else t
        emb = F.silu(self.time_embed(t) + self.cond_embed(cond, b))
        h = self.inp(x_t)
        for block in self.blocks:
            h = block(h, emb)
        return self.out(h)

__all__ = ["CLIP", "CLIPConfig", "CLIPImageEncoder", "CLIPTextEncoder", "CLIPVectorUNet", "FrozenCLIPUNet", "decoder_condition", "INITIAL_TEMPERATURE",
           "MAX_LOGIT_SCALE", "PriorConfig", "VectorPrior"]
