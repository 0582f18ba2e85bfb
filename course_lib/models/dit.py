"""The Diffusion Transformer (DiT): a denoiser that reads a picture as a sentence of patches (chapter 14).

Peebles & Xie 2023, "Scalable Diffusion Models with Transformers" (DiT), §3.2 and Figure 3, to be
read side by side with this file:

    x_t (B, C, H, W) ── patchify (p×p) ──► (B, N, p·p·C), N = (H/p)·(W/p)      "words" of the picture
                     ── linear ─────────► (B, N, D)  + 2-D sin-cos position (N, D)
    c = MLP(sinusoid(t)) + embed(y)                   (B, D)   time step and class, one vector
    depth × DiT block with adaLN-Zero:
        (β₁, γ₁, α₁, β₂, γ₂, α₂) = Linear(SiLU(c))     six (B, D) vectors, the Linear zero-initialised
        h ← h + α₁ · Attention(LN(h)·(1 + γ₁) + β₁)
        h ← h + α₂ · MLP(LN(h)·(1 + γ₂) + β₂)
    final layer: LN(h)·(1 + γ) + β → Linear(D, p·p·C) (zero-initialised) ── unpatchify ──► (B, C, H, W)

adaLN-Zero (DiT §3.2, "adaLN-Zero block"): the layer norms have no weights of their own; the
condition c sets their scale γ and shift β, and a gate α scales what each branch adds. The Linear
that makes them starts at zero, so α = 0 and every block starts as the identity; the last layer
starts at zero too, so the untrained network outputs 0. The network starts as "do nothing" and
learns what to add (as a ResNet whose last layer of each block starts at zero, Goyal et al. 2017).

The layer names and the order of the six vectors follow diffusers' ``DiTTransformer2DModel``
(``tests/test_dit.py`` loads the same weights into both and compares outputs); there the patch
embedding is a p×p convolution with stride p, which is the same linear map as patchify + Linear.
Call ``model(x_t, t, cond=None)`` as every denoiser of the course: ``t`` integer steps (B,) or
``t·1000`` for a flow (chapter 12); ``cond`` class labels (B,), −1 meaning "no class" (CFG, chapter 07).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..settings import check_bool, check_float, check_int

TIME_FREQUENCIES = 256  # the sinusoid of the time step (DiT's frequency_embedding_size)


# ----------------------------------------------------------------------------- patches
def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """Cut (B, C, H, W) into p×p patches, one row each: (B, N, p·p·C), N = (H/p)·(W/p), row by row.

    Inside a patch the numbers are ordered (row in patch, column in patch, channel), as diffusers'
    unpatchify expects.
    """
    b, c, h, w = x.shape
    if h % p or w % p:
        raise ValueError(f"the picture ({h}×{w}) must be a whole number of {p}×{p} patches")
    x = x.reshape(b, c, h // p, p, w // p, p)  # (B, C, h, p, w, p)
    x = x.permute(0, 2, 4, 3, 5, 1)  # (B, h, w, p, p, C)
    return x.reshape(b, (h // p) * (w // p), p * p * c)  # (B, N, p·p·C)


def unpatchify(tokens: torch.Tensor, p: int, channels: int, height: int | None = None) -> torch.Tensor:
    """The inverse of :func:`patchify`: (B, N, p·p·C) → (B, C, H, W); square unless ``height`` (in patches) is given."""
    b, n, _ = tokens.shape
    h = int(math.isqrt(n)) if height is None else height
    w = n // h
    x = tokens.reshape(b, h, w, p, p, channels)  # (B, h, w, p, p, C)
    x = x.permute(0, 5, 1, 3, 2, 4)  # (B, C, h, p, w, p)
    return x.reshape(b, channels, h * p, w * p)


# ----------------------------------------------------------------------------- embeddings
def sincos_1d(dim: int, positions: torch.Tensor) -> torch.Tensor:
    """(M,) positions → (M, dim): [sin(pos·ω_i), cos(pos·ω_i)], ω_i = 10000^(−2i/dim) (Vaswani et al. 2017)."""
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2))  # (dim/2,)
    out = positions.double().reshape(-1, 1) * omega[None]  # (M, dim/2)
    return torch.cat([out.sin(), out.cos()], dim=1)


def sincos_2d(dim: int, grid: int) -> torch.Tensor:
    """2-D sin-cos position embedding of a grid×grid of patches, row by row: (grid², dim), float32.

    The first half of the channels encodes the patch's column, the second half its row (MAE's and
    DiT's ``get_2d_sincos_pos_embed``). A patch's neighbours get similar vectors in each half.
    """
    if dim % 4:
        raise ValueError(f"the width ({dim}) must be a multiple of 4 for a 2-D sin-cos embedding")
    rows, cols = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")  # (grid, grid) each
    return torch.cat([sincos_1d(dim // 2, cols), sincos_1d(dim // 2, rows)], dim=1).float()  # (grid², dim)


def timestep_sinusoid(t: torch.Tensor, dim: int = TIME_FREQUENCIES) -> torch.Tensor:
    """(B,) times → (B, dim): [cos(t·f_i), sin(t·f_i)], f_i = 10000^(−i/(dim/2 − 1)) (diffusers' DiT ``Timesteps``)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / (half - 1))
    args = t.float()[:, None] * freqs[None]  # (B, half)
    return torch.cat([args.cos(), args.sin()], dim=1)


class TimestepEmbedder(nn.Module):
    """t → sinusoid (256) → Linear → SiLU → Linear: (B, D)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(TIME_FREQUENCIES, width)
        self.linear_2 = nn.Linear(width, width)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.silu(self.linear_1(timestep_sinusoid(t))))


def modulate(h: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN's modulation: LN(h)·(1 + scale) + shift, with h (B, N, D) already normalised, shift/scale (B, D)."""
    return h * (1 + scale[:, None]) + shift[:, None]


# ----------------------------------------------------------------------------- the blocks
class Attention(nn.Module):
    """Multi-head self-attention softmax(QKᵀ/√d)V over the tokens (chapter 11's attention, every token a query)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.to_q, self.to_k, self.to_v = (nn.Linear(width, width) for _ in range(3))
        self.to_out = nn.Linear(width, width)

    def split(self, y: torch.Tensor) -> torch.Tensor:
        """(B, N, D) → (B, heads, N, D/heads)."""
        b, n, d = y.shape
        return y.reshape(b, n, self.heads, d // self.heads).transpose(1, 2)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        b, n, d = h.shape
        q, k, v = self.split(self.to_q(h)), self.split(self.to_k(h)), self.split(self.to_v(h))  # (B, heads, N, d/heads)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, N, d/heads)
        return self.to_out(out.transpose(1, 2).reshape(b, n, d))


class MLP(nn.Module):
    """Linear(D, 4D) → GELU (tanh approximation) → Linear(4D, D), the transformer's feed-forward."""

    def __init__(self, width: int, ratio: int = 4) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(width, ratio * width), nn.Linear(ratio * width, width)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(h), approximate="tanh"))


class DiTBlock(nn.Module):
    """One adaLN-Zero block (DiT Figure 3, right): attention and MLP, each modulated by c and gated."""

    def __init__(self, width: int, heads: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=eps)
        self.attn = Attention(width, heads)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=eps)
        self.mlp = MLP(width)
        self.ada = nn.Linear(width, 6 * width)  # c → (β₁, γ₁, α₁, β₂, γ₂, α₂)

    def forward(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(F.silu(c)).chunk(6, dim=1)  # each (B, D)
        h = h + gate1[:, None] * self.attn(modulate(self.norm1(h), shift1, scale1))  # (B, N, D)
        return h + gate2[:, None] * self.mlp(modulate(self.norm2(h), shift2, scale2))


class FinalLayer(nn.Module):
    """LN(h)·(1 + γ) + β, then Linear(D, p·p·C): every token back to its patch's numbers."""

    def __init__(self, width: int, patch_values: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.ada = nn.Linear(width, 2 * width)  # c → (β, γ)
        self.linear = nn.Linear(width, patch_values)

    def forward(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.ada(F.silu(c)).chunk(2, dim=1)
        return self.linear(modulate(self.norm(h), shift, scale))  # (B, N, p·p·C)


# ----------------------------------------------------------------------------- the network
@dataclass(frozen=True)
class DiTConfig:
    """A DiT: pictures ``in_channels``×``image_size``² cut in ``patch_size``² patches, ``depth`` blocks of ``width``.

    ``num_classes``: class-conditional (labels 0 … K−1, −1 = none) or None. ``zero_init=False`` starts the
    adaLN and output layers at PyTorch's default random init instead of zero (the chapter's ablation).
    ``label_init_std``: the class embedding's initial N(0, std²); DiT's 0.02 suits its 400,000 steps, but
    it makes the class ~10× fainter than the time step in c, and with adaLN-Zero's zero layers the class
    then takes thousands of steps to reach the blocks (chapter 14's race uses 1.0, PyTorch's default for an
    embedding: class accuracy of its samples 13 % → 22 % after 600 steps, README "Performance").
    DiT-S/2 is width 384, depth 12, heads 6, patch 2; the course's are far smaller.
    """

    image_size: int = 32
    in_channels: int = 1
    patch_size: int = 2
    width: int = 96
    depth: int = 4
    heads: int = 4
    num_classes: int | None = None
    zero_init: bool = True
    label_init_std: float = 0.02

    def __post_init__(self) -> None:
        check_int("image_size", self.image_size, min_value=1)
        check_int("in_channels", self.in_channels, min_value=1)
        check_int("patch_size", self.patch_size, min_value=1)
        check_int("width", self.width, min_value=4)
        check_int("depth", self.depth, min_value=1)
        check_int("heads", self.heads, min_value=1)
        check_bool("zero_init", self.zero_init)
        check_float("label_init_std", self.label_init_std, min_value=0.0)
        if self.num_classes is not None:
            check_int("num_classes", self.num_classes, min_value=1)
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size={self.image_size} must be a multiple of patch_size={self.patch_size}")
        if self.width % self.heads or self.width % 4:
            raise ValueError(f"width={self.width} must be a multiple of 4 and of heads={self.heads}")

    @property
    def conditional(self) -> bool:
        return self.num_classes is not None

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    def to_dict(self) -> dict:
        return asdict(self)


def zero_init_(*layers: nn.Linear) -> None:
    """adaLN-Zero: these layers start at exactly zero (weights and biases)."""
    for layer in layers:
        nn.init.zeros_(layer.weight)
        nn.init.zeros_(layer.bias)


class DiT(nn.Module):
    """The class-conditional (or unconditional) DiT denoiser: ``model(x_t, t, cond=None)`` → shaped like x_t."""

    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        if not isinstance(config, DiTConfig):
            raise ValueError(f"config must be a DiTConfig, got {type(config).__name__}")
        self.config = cfg = config
        p, d = cfg.patch_size, cfg.width
        self.patch_embed = nn.Linear(p * p * cfg.in_channels, d)  # = a p×p convolution with stride p
        self.register_buffer("pos_embed", sincos_2d(d, cfg.image_size // p)[None], persistent=False)  # (1, N, D)
        self.time_embed = TimestepEmbedder(d)
        # one row per class and one for "no class" (index K), as diffusers' LabelEmbedding with dropout
        self.class_embed = nn.Embedding(cfg.num_classes + 1, d) if cfg.conditional else None
        self.blocks = nn.ModuleList(DiTBlock(d, cfg.heads) for _ in range(cfg.depth))
        self.final = FinalLayer(d, p * p * cfg.in_channels)
        self.initialize()

    def initialize(self) -> None:
        """DiT's init: Xavier-uniform linear layers, N(0, 0.02) time MLP, N(0, ``label_init_std``²) class embedding
        (DiT: 0.02), and (adaLN-Zero) zero adaLN and output."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        for lin in (self.time_embed.linear_1, self.time_embed.linear_2):
            nn.init.normal_(lin.weight, std=0.02)
        if self.class_embed is not None:
            nn.init.normal_(self.class_embed.weight, std=self.config.label_init_std)
        if self.config.zero_init:
            zero_init_(*(b.ada for b in self.blocks), self.final.ada, self.final.linear)

    def condition(self, t: torch.Tensor, cond: torch.Tensor | None, batch: int) -> torch.Tensor:
        """c = time embedding + class embedding: (B, D). Labels −1 (or ``cond=None``) use the "no class" row."""
        c = self.time_embed(t)
        if self.class_embed is None:
            if cond is not None:
                raise ValueError("this DiT is unconditional (num_classes=None) but got cond")
            return c
        k = self.config.num_classes
        labels = torch.full((batch,), k, device=c.device) if cond is None else cond.long().to(c.device)
        if labels.shape != (batch,) or bool(((labels < -1) | (labels >= k)).any()):
            raise ValueError(f"cond must be class labels (B,) in 0 … {k - 1}, or −1 for no class")
        return c + self.class_embed(torch.where(labels < 0, torch.full_like(labels, k), labels))

    def forward(self, x_t: torch.Tensor, t: torch.Tensor | float | int, cond: torch.Tensor | None = None) -> torch.Tensor:
        cfg = self.config
        if x_t.dim() != 4 or x_t.shape[1:] != (cfg.in_channels, cfg.image_size, cfg.image_size):
            raise ValueError(f"x_t must be (B, {cfg.in_channels}, {cfg.image_size}, {cfg.image_size}), got {tuple(x_t.shape)}")
        b = x_t.shape[0]
        t = torch.as_tensor(t, device=x_t.device).reshape(-1).expand(b) if torch.as_tensor(t).numel() == 1 \
            else torch.as_tensor(t, device=x_t.device)
        c = self.condition(t, cond, b)  # (B, D)
        h = self.patch_embed(patchify(x_t, cfg.patch_size)) + self.pos_embed  # (B, N, D)
        for block in self.blocks:
            h = block(h, c)  # (B, N, D)
        out = self.final(h, c)  # (B, N, p·p·C)
        return unpatchify(out, cfg.patch_size, cfg.in_channels)  # (B, C, H, W)


__all__ = ["DiT", "DiTBlock", "DiTConfig", "FinalLayer", "modulate", "patchify", "sincos_2d", "timestep_sinusoid",
           "unpatchify"]
