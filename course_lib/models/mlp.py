"""A small MLP denoiser for 2-D toy data (chapter 03: the swiss roll, two moons, eight Gaussians).

Same call as the U-Net, ``model(x_t, t, cond=None)`` with x_t of shape (B, dim), so the training
loop and the samplers work on points exactly as on images. Each block is a residual MLP
(LayerNorm → SiLU → Linear, add the time embedding, SiLU → Linear), the 1-D cousin of the
U-Net's ResBlock.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..settings import check_int
from .embeddings import LabelEmbedding, TimeEmbedding


@dataclass(frozen=True)
class MLPConfig:
    """``dim``: data dimension (2 for the toys); ``hidden``: width; ``num_blocks``: residual blocks;
    ``num_classes``: optional class conditioning (label −1 = no condition)."""

    dim: int = 2
    hidden: int = 128
    num_blocks: int = 3
    num_classes: int | None = None

    def __post_init__(self) -> None:
        check_int("dim", self.dim, min_value=1)
        check_int("hidden", self.hidden, min_value=2)
        if self.hidden % 2:
            raise ValueError(f"hidden must be even (it is also the sinusoidal embedding width), got {self.hidden}")
        check_int("num_blocks", self.num_blocks, min_value=1)
        if self.num_classes is not None:
            check_int("num_classes", self.num_classes, min_value=1)

    @property
    def conditional(self) -> bool:
        return self.num_classes is not None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "MLPConfig":
        return cls(**d)


class MLPBlock(nn.Module):
    """h + Linear(SiLU(Linear(SiLU(LayerNorm(h))) + emb))."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.fc1 = nn.Linear(hidden, hidden)
        self.emb = nn.Linear(hidden, hidden)
        self.fc2 = nn.Linear(hidden, hidden)

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        return h + self.fc2(F.silu(self.fc1(F.silu(self.norm(h))) + self.emb(emb)))


class MLPDenoiser(nn.Module):
    """ε_θ(x_t, t, c) for points: (B, dim) → (B, dim)."""

    def __init__(self, config: MLPConfig | None = None) -> None:
        super().__init__()
        config = MLPConfig() if config is None else config
        if not isinstance(config, MLPConfig):
            raise ValueError(f"config must be an MLPConfig, got {type(config).__name__}")
        self.config = cfg = config
        self.time_embed = TimeEmbedding(cfg.hidden)
        self.cond_embed = LabelEmbedding(cfg.num_classes, cfg.hidden) if cfg.num_classes is not None else None
        self.inp = nn.Linear(cfg.dim, cfg.hidden)
        self.blocks = nn.ModuleList(MLPBlock(cfg.hidden) for _ in range(cfg.num_blocks))
        self.out = nn.Sequential(nn.LayerNorm(cfg.hidden), nn.SiLU(), nn.Linear(cfg.hidden, cfg.dim))

    def forward(self, x_t: torch.Tensor, t: torch.Tensor | float | int, cond: torch.Tensor | None = None) -> torch.Tensor:
        cfg = self.config
        if not isinstance(x_t, torch.Tensor) or x_t.dim() != 2 or x_t.shape[1] != cfg.dim:
            shape = tuple(x_t.shape) if isinstance(x_t, torch.Tensor) else type(x_t).__name__
            raise ValueError(f"x_t has shape {shape}, but this MLPConfig expects (B, {cfg.dim}) (dim={cfg.dim})")
        if cond is not None and self.cond_embed is None:
            raise ValueError("cond was given, but this model is unconditional (num_classes=None); "
                             "build it with MLPConfig(num_classes=K) or call model(x_t, t) without cond")
        b = x_t.shape[0]
        t = torch.as_tensor(t, device=x_t.device)
        t = t.expand(b) if t.dim() == 0 else t
        if t.shape != (b,):
            raise ValueError(f"t must be a scalar or have shape ({b},), got {tuple(t.shape)}")
        emb = self.time_embed(t)
        if self.cond_embed is not None:
            emb = emb + self.cond_embed(cond, b)
        emb = F.silu(emb)
        h = self.inp(x_t)
        for block in self.blocks:
            h = block(h, emb)
        return self.out(h)
