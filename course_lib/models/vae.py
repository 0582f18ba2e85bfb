"""A small convolutional VAE for 1×32×32 digits — the "recipe box" of chapter 09.

Kingma & Welling 2014, "Auto-Encoding Variational Bayes". The encoder squishes an image x to the
parameters of a Gaussian over a short code, q(z|x) = N(μ(x), diag σ²(x)) (it outputs μ and log σ²);
a code is drawn with the **reparameterisation** z = μ + σ ⊙ ε, ε ~ N(0, I), so gradients flow
through μ and σ; the decoder unsquishes z to the mean x̂(z) of a Gaussian p(x|z) = N(x̂(z), s² I)
with a fixed pixel standard deviation s (``decoder_std``). Training maximises the ELBO

    log p(x) ≥ E_q[log p(x|z)] − KL(q(z|x) ‖ N(0, I))

i.e. minimises, per image (in nats, summed over the D pixels and the d code entries),

    loss = ‖x − x̂(z)‖² / (2 s²) + D·log(s·√(2π))  +  β · ½ Σ_j (μ_j² + σ_j² − 1 − log σ_j²)
           └──────────── reconstruction ─────────┘     └──────────────── KL ──────────────┘

β = 1 is the true (negative) ELBO; β ≠ 1 is β-VAE (Higgins et al. 2017). With a Gaussian decoder
the best x̂(z) is the *average* of every image that could have produced z — which is why VAE
samples look blurry. A sample is x̂(z) for z ~ N(0, I) (the decoder mean, no pixel noise): one
network pass.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import torch
from torch import nn

from ..settings import check_float, check_int
from .latent import LatentGenerator, check_latent_config, config_or_default, upsampler


@dataclass(frozen=True)
class VAEConfig:
    """``image_size``: 32 (three stride-2 convolutions: 32 → 4); ``channels``: image channels;
    ``latent_dim``: length d of the code z; ``base``: width of the first convolution (then 2×, 4×)."""

    image_size: int = 32
    channels: int = 1
    latent_dim: int = 16
    base: int = 32

    def __post_init__(self) -> None:
        check_latent_config(self.image_size, self.channels, self.latent_dim)
        check_int("base", self.base, min_value=1)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "VAEConfig":
        return cls(**d)


class VAEOutput(NamedTuple):
    recon: torch.Tensor  # x̂(z), shaped like x
    mu: torch.Tensor  # (B, d)
    logvar: torch.Tensor  # (B, d): log σ²
    z: torch.Tensor  # (B, d): the code that was decoded


def reparameterise(mu: torch.Tensor, logvar: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """z = μ + σ ⊙ ε with σ = exp(½ log σ²): a draw from N(μ, σ²) that gradients can flow through."""
    return mu + torch.exp(0.5 * logvar) * noise


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, diag σ²) ‖ N(0, I)) per example, (B,): ½ Σ_j (μ_j² + σ_j² − 1 − log σ_j²), in nats."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).flatten(1).sum(dim=1)


def gaussian_nll(x: torch.Tensor, mean: torch.Tensor, std: float) -> torch.Tensor:
    """−log N(x; mean, std² I) per example, (B,): ‖x − mean‖²/(2 std²) + D·log(std·√(2π)), in nats."""
    d = x[0].numel()
    return (x - mean).pow(2).flatten(1).sum(dim=1) / (2.0 * std * std) + d * math.log(std * math.sqrt(2 * math.pi))


class VAE(LatentGenerator):
    """Encoder (3 stride-2 convs → μ, log σ²) and decoder (3 transposed convs → x̂ in [−1, 1] by tanh).

    ``sample(n, generator=…)`` draws n codes and returns x̂(z) (:class:`~.latent.LatentGenerator`)."""

    def __init__(self, config: VAEConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config_or_default(config, VAEConfig)
        c1, c2, c3 = cfg.base, 2 * cfg.base, 4 * cfg.base
        self.side = cfg.image_size // 8
        flat = c3 * self.side * self.side
        act = nn.SiLU
        self.encoder = nn.Sequential(
            nn.Conv2d(cfg.channels, c1, 4, 2, 1), act(),  # 32 → 16
            nn.Conv2d(c1, c2, 4, 2, 1), nn.BatchNorm2d(c2), act(),  # 16 → 8
            nn.Conv2d(c2, c3, 4, 2, 1), nn.BatchNorm2d(c3), act(),  # 8 → 4
            nn.Flatten(),
        )
        self.to_stats = nn.Linear(flat, 2 * cfg.latent_dim)  # μ and log σ²
        self.from_code = nn.Linear(cfg.latent_dim, flat)
        self.decoder = upsampler((c3, c2, c1), cfg.channels, act)  # 4 → 8 → 16 → 32

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(μ, log σ²), each (B, d), of q(z|x); x is (B, C, H, W) in [−1, 1]."""
        cfg = self.config
        if x.dim() != 4 or tuple(x.shape[1:]) != (cfg.channels, cfg.image_size, cfg.image_size):
            raise ValueError(f"x must be (B, {cfg.channels}, {cfg.image_size}, {cfg.image_size}), got {tuple(x.shape)}")
        mu, logvar = self.to_stats(self.encoder(x)).chunk(2, dim=1)
        return mu, logvar.clamp(-30.0, 20.0)  # keeps exp() finite early in training

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """x̂(z): (B, d) codes → (B, C, H, W) decoder means in [−1, 1]."""
        self.check_codes(z)
        h = self.from_code(z).view(z.shape[0], -1, self.side, self.side)
        return self.decoder(h)

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> VAEOutput:
        """Encode, draw z = μ + σ ε (ε = ``noise``, or fresh N(0, I)), decode."""
        mu, logvar = self.encode(x)
        eps = torch.randn_like(mu) if noise is None else noise.to(mu)
        z = reparameterise(mu, logvar, eps)
        return VAEOutput(self.decode(z), mu, logvar, z)


class ELBO:
    """The VAE's training objective for the course's loop: β-weighted negative ELBO per image, in nats.

    ``loss(model, x0, cond, generator)`` → scalar mean over the batch of
    ``gaussian_nll(x0, x̂(z), decoder_std) + beta · gaussian_kl(μ, log σ²)`` with ε for the
    reparameterisation drawn from ``generator`` (CPU). ``terms`` gives the two parts separately.
    ``identity()`` is what must match for a run to resume.
    """

    def __init__(self, beta: float = 1.0, decoder_std: float = 0.1) -> None:
        self.beta = check_float("beta", beta, min_value=0.0)
        self.decoder_std = check_float("decoder_std", decoder_std, min_value=1e-6)
        if self.decoder_std <= 0:
            raise ValueError(f"decoder_std must be > 0, got {decoder_std}")

    def terms(self, model: VAE, x0: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(reconstruction, KL), each (B,): −log p(x|z) for one z ~ q(z|x), and KL(q(z|x) ‖ N(0, I))."""
        mu, logvar = model.encode(x0)
        eps = torch.randn(mu.shape, generator=generator).to(mu)
        recon = model.decode(reparameterise(mu, logvar, eps))
        return gaussian_nll(x0.float(), recon.float(), self.decoder_std), gaussian_kl(mu.float(), logvar.float())

    def loss(self, model: VAE, x0: torch.Tensor, cond: torch.Tensor | None = None,
             generator: torch.Generator | None = None) -> torch.Tensor:
        rec, kl = self.terms(model, x0, generator)
        return (rec + self.beta * kl).mean()

    def identity(self) -> dict[str, Any]:
        return {"objective": "elbo", "beta": self.beta, "decoder_std": self.decoder_std}
