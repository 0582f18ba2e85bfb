"""What chapter 09's one-pass generators share: a code z ~ N(0, I) of ``latent_dim`` numbers, grown into a
picture by three ×2 transposed convolutions ending in tanh — the VAE's decoder (:mod:`.vae`) and the GAN's
generator (:mod:`.gan`). A sample is one network pass: :meth:`LatentGenerator.sample`.
"""

from __future__ import annotations

from typing import Any, TypeVar

import torch
from torch import nn

from ..settings import check_int

C = TypeVar("C")


def check_latent_config(image_size: Any, channels: Any, latent_dim: Any) -> None:
    """The checks every latent generator's config needs: a side of 8·k pixels (three ×2 steps), channels, code length."""
    check_int("image_size", image_size, min_value=8)
    if image_size % 8:
        raise ValueError(f"image_size must be a multiple of 8 (three ×2 steps between 4×4 and 32×32), got {image_size}")
    check_int("channels", channels, min_value=1)
    check_int("latent_dim", latent_dim, min_value=1)


def config_or_default(config: C | None, cls: type[C]) -> C:
    """``config`` if it is a ``cls``, ``cls()`` if it is None; anything else raises ValueError."""
    if config is not None and not isinstance(config, cls):
        raise ValueError(f"config must be a {cls.__name__}, got {type(config).__name__}")
    return config if config is not None else cls()


def upsampler(widths: tuple[int, int, int], channels: int, act: type[nn.Module]) -> nn.Sequential:
    """(B, widths[0], s, s) → (B, channels, 8s, 8s) in [−1, 1]: BatchNorm and ``act``, then three 4×4 stride-2
    transposed convolutions through ``widths[1]`` and ``widths[2]`` (each followed by BatchNorm and ``act``) to
    ``channels``, and tanh."""
    a, b, c = widths
    return nn.Sequential(
        nn.BatchNorm2d(a), act(),
        nn.ConvTranspose2d(a, b, 4, 2, 1), nn.BatchNorm2d(b), act(),  # s → 2s
        nn.ConvTranspose2d(b, c, 4, 2, 1), nn.BatchNorm2d(c), act(),  # → 4s
        nn.ConvTranspose2d(c, channels, 4, 2, 1), nn.Tanh(),  # → 8s
    )


class LatentGenerator(nn.Module):
    """A network with a ``config.latent_dim`` whose :meth:`decode` turns codes (B, d) into images."""

    config: Any

    def check_codes(self, z: torch.Tensor) -> None:
        """Raise ValueError unless ``z`` is a batch of codes (B, latent_dim)."""
        if z.dim() != 2 or z.shape[1] != self.config.latent_dim:
            raise ValueError(f"z must be (B, {self.config.latent_dim}), got {tuple(z.shape)}")

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None, z: torch.Tensor | None = None) -> torch.Tensor:
        """``n`` images decoded from z ~ N(0, I) drawn with ``generator`` on the CPU (or from the given codes ``z``)."""
        n = check_int("n", n, min_value=1)
        dev = next(self.parameters()).device
        if z is None:
            z = torch.randn(n, self.config.latent_dim, generator=generator)
        return self.decode(z.to(dev))
