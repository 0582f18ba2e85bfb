"""MeanFlow: learn the *average* velocity over a stretch of the path, from scratch (chapter 15).

Geng et al. 2025, "Mean Flows for One-step Generative Modeling". On chapter 12's straight path
x_t = (1 − t)·x₀ + t·ε (t = 1 is pure static) the flow model learns the *instantaneous* velocity
v(x_t, t). MeanFlow learns the average velocity between two times r < t,

    u(x_t, r, t) = 1/(t − r) · ∫_r^t v(x_τ, τ) dτ,        so that   x_r = x_t − (t − r)·u(x_t, r, t)   exactly,

and one call with r = 0, t = 1 jumps from static to a picture: x₀ = ε − u(ε, 0, 1). Differentiating
(t − r)·u = ∫_r^t v dτ in t gives the *MeanFlow identity* (their eq. 6), a target that needs no
integral and no teacher:

    u(x_t, r, t) = v(x_t, t) − (t − r)·d/dt u(x_t, r, t),     d/dt u = v·∂ₓu + ∂ₜu   (along the path)

Training (their Algorithm 1): v is the conditional velocity ε − x₀ (as in flow matching), the target
v − (t − r)·d/dt u_θ has its gradient stopped, and at r = t it is plain flow matching. The total
derivative is a Jacobian-vector product in the direction (v, 0, 1); here it is a forward finite
difference (one extra forward pass without gradient, :func:`path_derivative`) — the exact
``torch.func.jvp`` costs about four forward passes of the course U-Net on the CPU, and
``tests/test_consistency.py`` checks the two agree. Times are drawn logit-normally (mean −0.4, std 1),
a quarter of the pairs with r < t and the rest r = t; the loss is adaptively weighted,
‖Δ‖² / sg(‖Δ‖² + c)^p with p = 1 (their §4.3 and Table 1), which behaves like a robust distance.

The network: the course U-Net with a vector condition carrying sinusoidal features of t − r
(:class:`MeanFlowNet`; Geng et al. condition on (t, t − r) the same way).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable

import torch
from torch import nn

from .flow import TIME_SCALE, flow_path
from .models.embeddings import sinusoidal_embedding
from .models.unet import UNet, UNetConfig
from .settings import check_float, check_int, in_half_precision

GAP_DIM = 64  # sinusoidal features of the gap t − r fed to the U-Net's vector condition
FD_STEP = 1e-5  # the finite difference's step along the path, in flow time (0.01 of a network timestep): 0.5 % from the exact JVP


@dataclass(frozen=True)
class MeanFlowConfig:
    """A MeanFlow network: the U-Net's config (its ``cond_dim`` carries the gap's :data:`GAP_DIM` features)."""

    unet: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"unet": self.unet, "gap_dim": GAP_DIM}


class MeanFlowNet(nn.Module):
    """u_θ(x_t, r, t): the course U-Net called at t·1000 with the gap t − r as its vector condition.

    ``model(x, t, r)`` with flow times t, r of shape (B,) (or floats), r ≤ t."""

    def __init__(self, unet_config: UNetConfig) -> None:
        super().__init__()
        cfg = UNetConfig(**{**unet_config.to_dict(), "cond_dim": GAP_DIM, "num_classes": None})
        self.net = UNet(cfg)
        self.config = MeanFlowConfig(cfg.to_dict())

    def forward(self, x: torch.Tensor, t: torch.Tensor | float, r: torch.Tensor | float) -> torch.Tensor:
        b = x.shape[0]
        t = torch.as_tensor(t, device=x.device, dtype=torch.float32).expand(b)
        r = torch.as_tensor(r, device=x.device, dtype=torch.float32).expand(b)
        gap = sinusoidal_embedding((t - r) * TIME_SCALE, GAP_DIM)  # (B, GAP_DIM)
        return self.net(x, t * TIME_SCALE, cond=gap)


def path_derivative(model: Callable[..., torch.Tensor], x: torch.Tensor, t: torch.Tensor, r: torch.Tensor,
                    velocity: torch.Tensor, u: torch.Tensor, *, step: float = FD_STEP) -> torch.Tensor:
    """d/dt u(x_t, r, t) along the path, v·∂ₓu + ∂ₜu, by a forward difference: (u(x + h·v, r, t + h) − u)/h,
    with ``u`` = u(x, r, t) already computed (no gradient flows through the result)."""
    with torch.no_grad():
        ahead = model(x + step * velocity, t + step, r)
        return (ahead.float() - u.detach().float()) / step


def sample_times(n: int, generator: torch.Generator | None, *, mean: float = -0.4, std: float = 1.0,
                 gap_fraction: float = 0.25) -> tuple[torch.Tensor, torch.Tensor]:
    """(t, r), each (n,): two logit-normal times sorted so r ≤ t, and r = t for all but ``gap_fraction`` of them
    (Geng et al. 2025, Table 1a: 25 % with r ≠ t)."""
    pair = torch.sigmoid(mean + std * torch.randn(2, n, generator=generator))
    t, r = pair.max(0).values, pair.min(0).values
    keep_gap = torch.rand(n, generator=generator) < gap_fraction
    return t, torch.where(keep_gap, r, t)


@dataclass(frozen=True)
class MeanFlowObjective:
    """The MeanFlow loss (Geng et al. 2025, Algorithm 1) for :func:`course_lib.training.train`.

        (t, r) ~ :func:`sample_times`,  ε ~ N(0, I),  x_t = (1 − t)·x₀ + t·ε,  v = ε − x₀
        target = sg( v − (t − r)·d/dt u_θ(x_t, r, t) ),   Δ = u_θ(x_t, r, t) − target
        loss = mean over the batch of ‖Δ‖² / sg(‖Δ‖² + c)^p      (‖·‖² the mean over pixels)
    """

    gap_fraction: float = 0.25
    logit_mean: float = -0.4
    logit_std: float = 1.0
    power: float = 1.0
    c: float = 1e-3

    def __post_init__(self) -> None:
        check_float("gap_fraction", self.gap_fraction, min_value=0.0, max_value=1.0)
        check_float("logit_std", self.logit_std, min_value=1e-6)
        check_float("power", self.power, min_value=0.0)
        check_float("c", self.c, min_value=1e-12)

    def identity(self) -> dict[str, Any]:
        return {"objective": "meanflow", "jvp": "forward_difference", "fd_step": FD_STEP, **asdict(self)}

    def loss(self, model: nn.Module, x0: torch.Tensor, cond: torch.Tensor | None = None,
             generator: torch.Generator | None = None) -> torch.Tensor:
        b, dev = x0.shape[0], x0.device
        t, r = sample_times(b, generator, mean=self.logit_mean, std=self.logit_std, gap_fraction=self.gap_fraction)
        noise = torch.randn(x0.shape, generator=generator).to(dev)
        t, r = t.to(dev), r.to(dev)
        x_t, v = flow_path(x0, noise, t)
        u = model(x_t, t, r)
        dudt = path_derivative(model, x_t, t, r, v, u)
        target = v.float() - (t - r).view(-1, 1, 1, 1) * dudt
        sq = (u.float() - target).pow(2).flatten(1).mean(1)  # (B,)
        return (sq / (sq.detach() + self.c) ** self.power).mean()


@torch.no_grad()
def sample_meanflow(model: Callable[..., torch.Tensor], noise: torch.Tensor, num_steps: int = 1) -> torch.Tensor:
    """Pictures from static in ``num_steps`` equal jumps x_r = x_t − (t − r)·u(x_t, r, t), t = 1 → 0 (one call each)."""
    num_steps = check_int("num_steps", num_steps, min_value=1)
    x = noise
    times = torch.linspace(1, 0, num_steps + 1).tolist()
    for t, r in zip(times[:-1], times[1:]):
        x = x - (t - r) * in_half_precision(model, x, t, r)  # float16/bfloat16 on a GPU, as in training
    return x


__all__ = ["FD_STEP", "GAP_DIM", "MeanFlowConfig", "MeanFlowNet", "MeanFlowObjective", "path_derivative", "sample_meanflow",
           "sample_times"]
