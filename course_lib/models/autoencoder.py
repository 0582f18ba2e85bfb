"""A KL-regularised convolutional autoencoder: Stable Diffusion's "VAE" in miniature (chapter 11).

Latent diffusion (Rombach et al. 2022, "High-resolution image synthesis with latent diffusion
models", §3.1) first trains an autoencoder, then runs diffusion on its latents. The encoder maps a
64×64×3 scene to a 16×16×c grid (a downsampling factor f = 4), the decoder maps it back:

    x (B, 3, 64, 64) ─ pixel_unshuffle 2 ─ conv ─ ResBlock ─ down ─ ResBlock ─ conv ─ (μ, log σ²) (B, 2c, 16, 16)
    z = μ + σ·ε  (B, c, 16, 16) ─ conv ─ ResBlock ─ up ─ ResBlock ─ conv ─ pixel_shuffle 2 ─ x̂ (B, 3, 64, 64)

**Why "KL-regularised"?** The encoder outputs a Gaussian q(z|x) = N(μ, σ²) per latent number and
the loss adds β·KL(q(z|x) ‖ N(0, I)), as in a VAE (Kingma & Welling 2014) — but with a *tiny* β
(SD: 10⁻⁶ relative to the summed reconstruction loss). It is not there to make z a sampleable
prior (the diffusion model will be the prior); it only keeps the latents from drifting to huge or
ragged values and keeps the decoder robust to small perturbations of z. Because β is tiny the
latents are not unit-variance, so SD multiplies them by a **scale factor** (0.18215 for SD 1.x),
1/std of the latents over the training set; :func:`latent_scale_factor` computes ours.

**Which reconstruction loss?** SD uses L1 + a perceptual loss (LPIPS, on a pretrained VGG) + a
patch-GAN loss, so that textures stay sharp. Our scenes are flat colours and outlines, with no
texture to hallucinate; L1 (sharper edges than L2, which averages an uncertain edge into a blur)
is enough, and it needs no pretrained network — nothing downloads.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..settings import check_float, check_int


@dataclass(frozen=True)
class AutoencoderConfig:
    """Shape of an :class:`Autoencoder`: ``latent_channels`` c, widths at the two resolutions."""

    image_size: int = 64
    in_channels: int = 3
    latent_channels: int = 4
    width: int = 32  # at 32×32 (after the 2×2 unshuffle)
    latent_width: int = 64  # at 16×16
    kl_weight: float = 1e-6  # β relative to the per-image *summed* L1, as SD's kl_weight

    def __post_init__(self) -> None:
        check_int("image_size", self.image_size, min_value=8)
        check_int("latent_channels", self.latent_channels, min_value=1)
        check_int("width", self.width, min_value=8)
        check_int("latent_width", self.latent_width, min_value=8)
        check_float("kl_weight", self.kl_weight, min_value=0.0)
        if self.image_size % 4:
            raise ValueError(f"image_size={self.image_size} must be divisible by 4 (the downsampling factor)")

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        return (self.latent_channels, self.image_size // 4, self.image_size // 4)

    @property
    def compression(self) -> float:
        """Numbers in a picture / numbers in its latent (48·… /…: 12 for c = 4)."""
        c, h, w = self.latent_shape
        return self.in_channels * self.image_size**2 / (c * h * w)

    def to_dict(self) -> dict:
        return asdict(self)


class _Res(nn.Module):
    """GroupNorm → SiLU → conv3×3, twice, plus the input (no time embedding: this net has no t)."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.GroupNorm(8, ch), nn.SiLU(), nn.Conv2d(ch, ch, 3, padding=1),
                                   nn.GroupNorm(8, ch), nn.SiLU(), nn.Conv2d(ch, ch, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class Autoencoder(nn.Module):
    """``encode(x)`` → (μ, log σ²); ``decode(z)`` → x̂ in about [-1, 1]; ``forward(x)`` → (x̂, μ, log σ²)."""

    def __init__(self, config: AutoencoderConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config if config is not None else AutoencoderConfig()
        w, lw, c = cfg.width, cfg.latent_width, cfg.latent_channels
        self.encoder = nn.Sequential(
            nn.Conv2d(4 * cfg.in_channels, w, 3, padding=1), _Res(w),
            nn.Conv2d(w, lw, 3, stride=2, padding=1), _Res(lw),
            nn.GroupNorm(8, lw), nn.SiLU(), nn.Conv2d(lw, 2 * c, 3, padding=1),
        )
        self.decoder = nn.Sequential(
            nn.Conv2d(c, lw, 3, padding=1), _Res(lw),
            nn.Upsample(scale_factor=2.0, mode="nearest"), nn.Conv2d(lw, w, 3, padding=1), _Res(w),
            nn.GroupNorm(8, w), nn.SiLU(), nn.Conv2d(w, 4 * cfg.in_channels, 3, padding=1),
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.config
        if x.dim() != 4 or x.shape[1] != cfg.in_channels or x.shape[-1] % 4 or x.shape[-2] % 4:
            raise ValueError(f"x must be (B, {cfg.in_channels}, H, W) pictures in [-1, 1] with H, W divisible by 4 "
                             f"(e.g. {cfg.image_size}×{cfg.image_size}; training uses crops), got {tuple(x.shape)}")
        mean, logvar = self.encoder(F.pixel_unshuffle(x, 2)).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() != 4 or z.shape[1] != self.config.latent_channels:
            raise ValueError(f"z must be latents (B, {', '.join(map(str, self.config.latent_shape))}), got {tuple(z.shape)}")
        return F.pixel_shuffle(self.decoder(z), 2)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, ...]:
        mean, logvar = self.encode(x)
        eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return self.decode(mean + (0.5 * logvar).exp() * eps), mean, logvar


def kl_to_standard_normal(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(0, 1)) summed over each latent, (B,): ½ Σ (μ² + σ² − 1 − log σ²)."""
    return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).flatten(1).sum(1)


class AutoencoderObjective:
    """The training loss of the autoencoder, as an objective for the course's training loop.

    loss = mean |x − x̂| + β · KL / (numbers per picture): SD's L1-sum + β·KL-sum, divided by the
    picture size so that the learning rate does not depend on it. ``cond`` is ignored.
    """

    def __init__(self, kl_weight: float = 1e-6) -> None:
        self.kl_weight = check_float("kl_weight", kl_weight, min_value=0.0)

    def terms(self, model: Autoencoder, x0: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        recon, mean, logvar = model(x0, generator)
        l1 = (recon - x0).abs().mean()
        kl = kl_to_standard_normal(mean, logvar).mean() / x0[0].numel()
        return {"l1": l1, "kl": kl, "loss": l1 + self.kl_weight * kl}

    def loss(self, model: Autoencoder, x0: torch.Tensor, cond: torch.Tensor | None = None,
             generator: torch.Generator | None = None) -> torch.Tensor:
        return self.terms(model, x0, generator)["loss"]

    def identity(self) -> dict:
        return {"objective": "autoencoder_l1_kl", "kl_weight": self.kl_weight}


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per picture, (B,), for pictures in [-1, 1] (peak-to-peak 2)."""
    mse = (x.clamp(-1, 1) - y.clamp(-1, 1)).pow(2).flatten(1).mean(1)
    return 10.0 * torch.log10(4.0 / mse.clamp_min(1e-12))


@torch.no_grad()
def encode_latents(ae: Autoencoder, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """The posterior means μ of many pictures (unscaled), in batches."""
    return torch.cat([ae.encode(chunk)[0] for chunk in images.split(batch_size)])


@torch.no_grad()
def decode_latents(ae: Autoencoder, z: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    return torch.cat([ae.decode(chunk) for chunk in z.split(batch_size)]).clamp(-1, 1)


def latent_scale_factor(latents: torch.Tensor) -> float:
    """1 / std of the (unscaled) latents: multiplying by it makes them unit-variance (SD 1.x: 0.18215)."""
    return float(1.0 / latents.float().std())


__all__ = ["Autoencoder", "AutoencoderConfig", "AutoencoderObjective", "decode_latents", "encode_latents",
           "kl_to_standard_normal", "latent_scale_factor", "psnr"]
