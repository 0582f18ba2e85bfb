"""Shared by the sampler and solver tests: a stand-in network, diffusers' own loop, and tolerances.

Tolerance 1e-5 (absolute, on tensors of size O(1)) unless a test says why not.
"""

from __future__ import annotations

import torch

T = 1000
ATOL = 1e-5
PREDICTION_TYPES = ["epsilon", "sample", "v_prediction"]
CONFIG = dict(num_train_timesteps=T, beta_schedule="linear", beta_start=1e-4, beta_end=0.02)  # Heun's defaults differ
SHAPE = (2, 1, 4, 4)


def dummy(x: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
    """A deterministic stand-in for a network: depends non-trivially on x and on (possibly fractional) t."""
    t = torch.as_tensor(t, dtype=torch.float32).reshape(-1, *([1] * (x.dim() - 1)))  # (B,1,1,1) or (1,1,1,1)
    return x * t / (t + 1) + 0.1 * torch.sin(3 * x)


def pair(seed: int = 0, shape=(2, 3, 8, 8)) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g), torch.randn(shape, generator=g)


def close(a: torch.Tensor, b: torch.Tensor, atol: float = ATOL) -> None:
    assert a.shape == b.shape
    err = (a - b).abs().max().item()
    assert err <= atol, f"max abs difference {err:.3g} > {atol}"


def diffusers_loop(sched, x: torch.Tensor, generator=None, **step_kwargs) -> torch.Tensor:
    for t in sched.timesteps:
        x_in = sched.scale_model_input(x, t)
        if generator is not None:
            step_kwargs["generator"] = generator
        x = sched.step(dummy(x_in, t), t, x, **step_kwargs).prev_sample
    return x


def noise(seed: int = 0) -> torch.Tensor:
    return torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed))
