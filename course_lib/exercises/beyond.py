"""Function exercises of chapters 09–12: the VAE's negative ELBO, FID from features, cross-attention weights,
the flow Euler sampler."""

from __future__ import annotations

import math
from typing import Any, Callable

import torch

from .core import NotTried, compare_to, frozen_model, attempt


# ---------------------------------------------------------------------------- ch09: the VAE's loss
def _stand_in_vae() -> torch.nn.Module:
    from ..models.vae import VAE, VAEConfig

    def build() -> torch.nn.Module:
        vae = VAE(VAEConfig(latent_dim=4, base=4))
        with torch.no_grad():
            vae.to_stats.bias += 1.5  # codes far from the box's centre: a KL of tens of nats, like a trained VAE's
        return vae

    return frozen_model(build, 9)


def check_negative_elbo(fn: Callable[..., Any], vae: torch.nn.Module | None = None) -> bool:
    """``fn(x, encode, decode, eps, decoder_std, beta)`` → the negative ELBO of each picture (B,), in nats:
    reconstruction ‖x − decode(z)‖²/(2s²) + D·log(s√(2π)) plus β·KL(N(μ, σ²) ‖ N(0, I)), with the
    reparameterised code z = μ + σ·eps. Checked against :class:`course_lib.models.vae.ELBO`'s pieces on a
    fixed batch, for two pixel spreads s and two β, with ``vae`` (default: a small stand-in VAE)."""
    from ..models.vae import gaussian_kl, gaussian_nll, reparameterise

    def run() -> None:
        net = _stand_in_vae() if vae is None else vae
        dev = next(net.parameters()).device
        g = torch.Generator().manual_seed(9)
        x = (torch.rand(8, 1, 32, 32, generator=g) * 2 - 1).to(dev)
        eps = torch.randn(8, net.config.latent_dim, generator=g).to(dev)
        was_training = net.training
        net.eval()
        try:
            for decoder_std, beta in ((0.7, 1.0), (0.2, 0.5)):
                with torch.no_grad():
                    mu, logvar = net.encode(x)
                    want = (gaussian_nll(x, net.decode(reparameterise(mu, logvar, eps)), decoder_std)
                            + beta * gaussian_kl(mu, logvar))
                    got = fn(x, net.encode, net.decode, eps, decoder_std, beta)
                compare_to("negative ELBO", f"s = {decoder_std}, β = {beta}", got, want, atol=1e-3, rtol=1e-5)
        finally:
            net.train(was_training)

    return attempt("the negative ELBO", run, "Draw the code z from μ, log σ² and eps first.")


def solution_negative_elbo(x, encode, decode, eps, decoder_std, beta):
    mu, logvar = encode(x)
    z = mu + torch.exp(0.5 * logvar) * eps  # σ = exp(½ log σ²)
    d = x[0].numel()
    recon = (x - decode(z)).pow(2).flatten(1).sum(1) / (2 * decoder_std**2) + d * math.log(decoder_std * math.sqrt(2 * math.pi))
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)
    return recon + beta * kl


# ---------------------------------------------------------------------------- ch10: FID from features
def check_fid(fn: Callable[..., Any], real: torch.Tensor | None = None, fake: torch.Tensor | None = None) -> bool:
    """``fn(f_real, f_fake)`` → the Fréchet distance between Gaussians fitted to two (N, d) feature sets,
    checked against :func:`course_lib.metrics.fid` on the same pictures (default: 200 real test digits
    against 200 of them with static added)."""
    from ..data import load_mnist5000
    from ..metrics import digit_features, fid

    def run() -> None:
        nonlocal real, fake
        if real is None or fake is None:
            test = load_mnist5000("test").images
            g = torch.Generator().manual_seed(7)
            real, fake = test[:200], (test[200:400] + 0.3 * torch.randn(200, 1, 32, 32, generator=g)).clamp(-1, 1)
        got = fn(digit_features(real).double(), digit_features(fake).double())
        if got is None:
            raise NotTried
        want = fid(real, fake)
        if not isinstance(got, (int, float, torch.Tensor)) or torch.as_tensor(got).numel() != 1:
            raise AssertionError(f"✗ FID: return one number, got {type(got).__name__}")
        got = float(got)
        if abs(got - want) > 1e-3 * max(1.0, abs(want)):
            mean_only = float((digit_features(real).double().mean(0) - digit_features(fake).double().mean(0)).square().sum())
            clue = (" That is the mean term alone: add the covariance term." if abs(got - mean_only) < 1e-3 * max(1, mean_only)
                    else " Check the covariances (divide by N − 1) and the matrix square root of Σ_r Σ_f.")
            raise AssertionError(f"✗ FID: got {got:.4f}, expected {want:.4f}.{clue}")

    return attempt("FID from features", run, "Two means, two covariances, then the formula of section 4.")


def solution_fid(f_real, f_fake):
    mu_r, mu_f = f_real.mean(0), f_fake.mean(0)
    cov_r, cov_f = torch.cov(f_real.T), torch.cov(f_fake.T)
    eig = torch.linalg.eigvals(cov_r @ cov_f)  # Tr (Σ_r Σ_f)^{1/2} = Σ √λ_i of the product
    return float((mu_r - mu_f).square().sum() + cov_r.trace() + cov_f.trace() - 2 * eig.sqrt().real.sum())


# ---------------------------------------------------------------------------- ch11: cross-attention weights
def check_cross_attention(fn: Callable[..., Any]) -> bool:
    """``fn(q, k, mask)`` → softmax(q kᵀ/√d) over the words, padding words at weight 0 (B, heads, P, L)."""
    from ..models.cross_attention import cross_attention_weights

    def run() -> None:
        g = torch.Generator().manual_seed(11)
        for d, words, case in ((8, 3, "three words, then padding"), (32, 5, "wider heads (√d matters more)")):
            q, k = torch.randn(2, 2, 6, d, generator=g), torch.randn(2, 2, 7, d, generator=g)
            mask = torch.arange(7)[None, :] < torch.tensor([[words], [1]])  # the second prompt has one word
            compare_to("cross-attention weights", case, fn(q, k, mask), cross_attention_weights(q, k, mask), atol=1e-5)

    return attempt("cross-attention weights", run, "Scores q·kᵀ/√d, padding to −∞, softmax over the words.")


def solution_cross_attention(q, k, mask):
    scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5  # (B, heads, P, L)
    return scores.masked_fill(~mask[:, None, None, :], float("-inf")).softmax(dim=-1)


# ---------------------------------------------------------------------------- ch12: the flow Euler sampler
def _stand_in_velocity() -> torch.nn.Module:
    from ..models import MLPConfig, MLPDenoiser

    return frozen_model(lambda: MLPDenoiser(MLPConfig(dim=2, hidden=16, num_blocks=1)), 12)


def check_flow_euler(fn: Callable[..., Any], model: torch.nn.Module | None = None) -> bool:
    """``fn(model, noise, sigmas)`` → the pictures (or points) that Euler steps x ← x + (t' − t)·v(x, t·1000)
    reach down the time grid ``sigmas`` (from 1, pure static, to 0), checked against
    :func:`course_lib.flow.sample_flow` with ``model`` (default: a small stand-in 2-D velocity network)."""
    from ..flow import flow_sigmas, sample_flow

    def run() -> None:
        net = _stand_in_velocity() if model is None else model
        dev = next(net.parameters()).device
        g = torch.Generator().manual_seed(12)
        for num_steps, shift in ((8, 2.0), (3, 1.0)):
            noise = torch.randn(50, 2, generator=g).to(dev)
            sigmas = flow_sigmas(num_steps, shift=shift)
            with torch.no_grad():
                want = sample_flow(net, noise.shape, sigmas=sigmas, noise=noise, device=dev, progress=False)
                got = fn(net, noise, sigmas)
            compare_to("flow Euler sampler", f"{num_steps} steps, shift {shift}", got, want, atol=1e-4)

    return attempt("the flow Euler sampler", run, "Walk the pairs of neighbouring times in sigmas, from 1 down to 0.")


def solution_flow_euler(model, noise, sigmas):
    x = noise
    for i in range(len(sigmas) - 1):
        t = torch.full((x.shape[0],), float(sigmas[i]) * 1000, device=x.device)  # the network's time: t·1000
        x = x + (sigmas[i + 1] - sigmas[i]) * model(x, t)
    return x
