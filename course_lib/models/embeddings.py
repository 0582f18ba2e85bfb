"""How a denoiser is told *when* it is (t) and *what* to draw (a label or a vector) — chapter 04.

- :func:`sinusoidal_embedding` turns a timestep into a vector of sines and cosines at
  geometrically spaced frequencies (Vaswani et al. 2017, §3.5; used for t by Ho et al. 2020,
  appendix B). ``t`` may be fractional: samplers with fewer steps or continuous time pass floats.
- :class:`TimeEmbedding` is that vector followed by a small MLP, as in DDPM.
- :class:`LabelEmbedding` looks up a class label; the label ``-1`` means "no condition" and maps
  to a learned *empty token*, which classifier-free guidance (Ho & Salimans 2022, chapter 07)
  needs: the same network then predicts both ε(x_t, c) and ε(x_t, ∅).
- :class:`VectorEmbedding` projects a conditioning vector (a text or attribute embedding); a row
  of NaNs (or ``cond=None``) means "no condition" and maps to a learned empty vector.
- :class:`PositionEmbedding` tells every pixel *where* it is: a learned (C, H, W) map added to a
  feature map, as ViT and DiT add one to their patch tokens (chapter 11).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..forward import NULL_LABEL  # −1: the class label that means "no condition" (classifier-free guidance)
from ..settings import check_float, check_int


def sinusoidal_embedding(t: torch.Tensor | float | int, dim: int, *, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal features of the timesteps ``t`` (shape () or (B,), int or float): (B, dim).

    Frequency k is ω_k = max_period^(−k/(dim/2)), k = 0 … dim/2 − 1; the features are
    [cos(t·ω_k) …, sin(t·ω_k) …] (Vaswani et al. 2017, §3.5). Nearby t get nearby vectors, so a
    fractional t (e.g. 499.5) lies between its neighbours instead of failing.
    """
    dim = check_int("dim", dim, min_value=2)
    if dim % 2:
        raise ValueError(f"dim must be even (half cosines, half sines), got {dim}")
    check_float("max_period", max_period, min_value=1.0)
    t = torch.as_tensor(t)
    if t.dim() > 1:
        raise ValueError(f"t must be a scalar or a 1-D tensor of timesteps, got shape {tuple(t.shape)}")
    t = t.reshape(-1).float()  # (B,)
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    angles = t[:, None] * freqs[None, :]  # (B, half)
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)  # (B, dim)


class TimeEmbedding(nn.Module):
    """t → sinusoidal features (``freq_dim``) → Linear → SiLU → Linear → (B, dim)."""

    def __init__(self, dim: int, freq_dim: int | None = None) -> None:
        super().__init__()
        self.dim = check_int("dim", dim, min_value=2)
        self.freq_dim = check_int("freq_dim", freq_dim if freq_dim is not None else dim, min_value=2)
        self.mlp = nn.Sequential(nn.Linear(self.freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(sinusoidal_embedding(t, self.freq_dim).to(self.mlp[0].weight.dtype))


class LabelEmbedding(nn.Module):
    """Class labels (B,) in {−1, 0, …, num_classes−1} → (B, dim); −1 is the learned empty token."""

    def __init__(self, num_classes: int, dim: int) -> None:
        super().__init__()
        self.num_classes = check_int("num_classes", num_classes, min_value=1)
        self.table = nn.Embedding(num_classes + 1, check_int("dim", dim, min_value=1))  # last row = empty token

    def forward(self, labels: torch.Tensor | None, batch_size: int) -> torch.Tensor:
        if labels is None:  # the whole batch unconditional
            labels = torch.full((batch_size,), NULL_LABEL, dtype=torch.long, device=self.table.weight.device)
        if labels.dtype.is_floating_point or labels.dtype == torch.bool or labels.shape != (batch_size,):
            raise ValueError(
                f"cond must be integer class labels of shape ({batch_size},), got dtype {labels.dtype} "
                f"shape {tuple(labels.shape)}"
            )
        lo, hi = int(labels.min()), int(labels.max())
        if lo < NULL_LABEL or hi >= self.num_classes:
            raise ValueError(
                f"cond labels must lie in [-1, {self.num_classes - 1}] (-1 = no condition), got values in [{lo}, {hi}]"
            )
        index = torch.where(labels == NULL_LABEL, torch.full_like(labels, self.num_classes), labels)
        return self.table(index.long())


class VectorEmbedding(nn.Module):
    """Conditioning vectors (B, cond_dim) → (B, dim); a NaN row (or ``None``) is the learned empty vector."""

    def __init__(self, cond_dim: int, dim: int) -> None:
        super().__init__()
        self.cond_dim = check_int("cond_dim", cond_dim, min_value=1)
        self.proj = nn.Sequential(nn.Linear(cond_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.empty = nn.Parameter(torch.zeros(dim))

    def forward(self, cond: torch.Tensor | None, batch_size: int) -> torch.Tensor:
        if cond is None:
            return self.empty[None].expand(batch_size, -1)
        if not cond.dtype.is_floating_point or cond.shape != (batch_size, self.cond_dim):
            raise ValueError(
                f"cond must be a float tensor of shape ({batch_size}, {self.cond_dim}), got dtype {cond.dtype} "
                f"shape {tuple(cond.shape)}"
            )
        empty = torch.isnan(cond).all(dim=1, keepdim=True)  # (B, 1)
        # zero the empty rows *before* the projection so NaNs never reach a gradient
        out = self.proj(torch.where(empty, torch.zeros_like(cond), cond).to(self.empty.dtype))
        return torch.where(empty, self.empty[None].to(out.dtype), out)


class PositionEmbedding(nn.Module):
    """A learned position map (1, C, H, W) added to the features: ``x + pos`` (Dosovitskiy et al. 2021, §3.1).

    Convolutions see only a neighbourhood, and attention sees a set: neither knows where on the
    picture a pixel is, except through the zero padding at the border. Chapter 11's latent U-Nets
    get one after their stem. Measured there (development runs, 4,000 steps): on its own it did not
    stop two hats of two colours from leaking into each other; reading each clause on its own
    (:meth:`~course_lib.models.cross_attention.CrossAttentionUNet.clauses`) did.
    """

    def __init__(self, channels: int, size: int) -> None:
        super().__init__()
        self.pos = nn.Parameter(torch.randn(1, check_int("channels", channels, min_value=1),
                                            check_int("size", size, min_value=1), size) * 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1:] != self.pos.shape[1:]:
            raise ValueError(f"PositionEmbedding of shape {tuple(self.pos.shape[1:])} cannot be added to features "
                             f"{tuple(x.shape)}")
        return x + self.pos
