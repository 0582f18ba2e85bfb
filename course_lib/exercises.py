"""Automatic checks for the short exercises at the end of each chapter.

A learner's answer starts as ``None`` ("not tried yet"): the check then prints a hint and the
notebook still runs top to bottom. Once filled in, a wrong answer fails loudly with what was
expected, a right one says so.
"""

from __future__ import annotations

from typing import Any

import torch


def check(name: str, answer: Any, expected: Any, *, rtol: float = 1e-3, atol: float = 1e-4, hint: str = "") -> bool:
    """Compare ``answer`` with ``expected`` (numbers, tensors, or exact values).

    Returns False (after printing the hint) when ``answer`` is None, True when it matches, and
    raises AssertionError naming the exercise when it does not.
    """
    if answer is None:
        print(f"✎ {name}: not answered yet. {hint}".rstrip())
        return False
    if isinstance(expected, (int, float, torch.Tensor)) and not isinstance(expected, bool):
        got = torch.as_tensor(answer, dtype=torch.float64)
        want = torch.as_tensor(expected, dtype=torch.float64)
        ok = got.shape == want.shape and bool(torch.allclose(got, want, rtol=rtol, atol=atol))
    else:
        ok = answer == expected
    if not ok:
        raise AssertionError(f"✗ {name}: got {answer!r}, expected {expected!r}. {hint}".rstrip())
    print(f"✓ {name}: correct!")
    return True


def negative_elbo_solution(x, encode, decode, eps, decoder_std, beta):
    """Chapter 09's exercise, solved: reparameterise z = μ + σ ε, then reconstruction + β·KL per picture (nats)."""
    import math

    mu, logvar = encode(x)
    z = mu + torch.exp(0.5 * logvar) * eps  # σ = exp(½ log σ²)
    d = x[0].numel()
    recon = (x - decode(z)).pow(2).flatten(1).sum(1) / (2 * decoder_std**2) + d * math.log(decoder_std * math.sqrt(2 * math.pi))
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)
    return recon + beta * kl
