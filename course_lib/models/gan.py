"""A small DCGAN for 1×32×32 digits — "the artist and the detective" of chapter 09.

Goodfellow et al. 2014: a generator G turns a random code z ~ N(0, I) into an image; a
discriminator D scores images, high for real, low for fake. They play the minimax game
min_G max_D E[log D(x)] + E[log(1 − D(G(z)))]. What makes it train reliably on a CPU here:

- DCGAN layout (Radford et al. 2016): transposed convolutions with BatchNorm and ReLU in G,
  strided convolutions with LeakyReLU in D, tanh output in [−1, 1].
- **Spectral normalisation** of every layer of D (Miyato et al. 2018): each weight matrix is divided by
  its largest singular value, so D is 1-Lipschitz-ish and cannot become arbitrarily sharp.
- The **hinge loss** (Lim & Ye 2017; Miyato et al. 2018, eq. 16):
  L_D = E[max(0, 1 − D(x))] + E[max(0, 1 + D(G(z)))],  L_G = −E[D(G(z))].
- **Two time-scale** learning rates (TTUR, Heusel et al. 2017): D learns faster than G
  (chosen in the trainer, :mod:`course_lib.adversarial`).

A sample is G(z): one network pass.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from ..settings import check_int
from .latent import LatentGenerator, check_latent_config, config_or_default, upsampler


@dataclass(frozen=True)
class GANConfig:
    """``image_size``: 32 (G grows 4 → 8 → 16 → 32); ``channels``; ``latent_dim``: length of z;
    ``g_base`` / ``d_base``: widths of G's last and D's first hidden layer (the others 2×, 4×)."""

    image_size: int = 32
    channels: int = 1
    latent_dim: int = 64
    g_base: int = 32
    d_base: int = 32

    def __post_init__(self) -> None:
        check_latent_config(self.image_size, self.channels, self.latent_dim)
        check_int("g_base", self.g_base, min_value=1)
        check_int("d_base", self.d_base, min_value=1)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "GANConfig":
        return cls(**d)


class Generator(LatentGenerator):
    """z (B, d) → linear → (4·g_base, s, s) → three ×2 transposed convs (4 → 8 → 16 → 32) → tanh image (B, C, H, W).

    ``sample(n, generator=…)`` draws n codes and returns G(z) (:class:`~.latent.LatentGenerator`)."""

    def __init__(self, config: GANConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config_or_default(config, GANConfig)
        c1, c2, c3 = 4 * cfg.g_base, 2 * cfg.g_base, cfg.g_base
        self.side = cfg.image_size // 8
        self.fc = nn.Linear(cfg.latent_dim, c1 * self.side * self.side)
        self.net = upsampler((c1, c2, c3), cfg.channels, nn.ReLU)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        self.check_codes(z)
        return self.net(self.fc(z).view(z.shape[0], -1, self.side, self.side))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """G(z): the artist's picture of each code (B, d)."""
        return self(z)


class Discriminator(nn.Module):
    """Image (B, C, H, W) → score (B,): three stride-2 spectral-normed convs, LeakyReLU(0.2), a linear head."""

    def __init__(self, config: GANConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config_or_default(config, GANConfig)
        c1, c2, c3 = cfg.d_base, 2 * cfg.d_base, 4 * cfg.d_base
        side = cfg.image_size // 8
        sn = spectral_norm
        self.net = nn.Sequential(
            sn(nn.Conv2d(cfg.channels, c1, 4, 2, 1)), nn.LeakyReLU(0.2),  # → 16
            sn(nn.Conv2d(c1, c2, 4, 2, 1)), nn.LeakyReLU(0.2),  # → 8
            sn(nn.Conv2d(c2, c3, 4, 2, 1)), nn.LeakyReLU(0.2),  # → 4
            nn.Flatten(), sn(nn.Linear(c3 * side * side, 1)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)


def hinge_d_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """The detective's hinge loss: mean max(0, 1 − D(x)) + mean max(0, 1 + D(G(z))). 0 when it wins by a margin."""
    return F.relu(1.0 - real_scores).mean() + F.relu(1.0 + fake_scores).mean()


def hinge_g_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """The artist's loss: −mean D(G(z)) — push the detective's score of the fakes up."""
    return -fake_scores.mean()
