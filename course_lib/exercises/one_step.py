"""Chapter 15's exercises: the consistency parameterisation (write c_skip and c_out) and the one-call
jump of MeanFlow (predict, then run)."""

from __future__ import annotations

from typing import Any, Callable

import torch

from .core import as_numbers, attempt, check, compare_to


def check_consistency_scalings(fn: Callable[[torch.Tensor], Any]) -> bool:
    """``fn(sigma)`` → ``(c_skip, c_out)`` for noise levels ``sigma`` (a tensor): the consistency model's
    scalings with σ_min = 0.002 and σ_data = 0.5, checked against :func:`course_lib.consistency.boundary_scalings`
    at the boundary, in the middle and far up the noise levels."""
    from ..consistency import boundary_scalings

    def run() -> None:
        for case, sigma in (("σ = σ_min: the boundary", torch.tensor([0.002])),
                            ("middle noise levels", torch.tensor([0.05, 0.5, 1.0, 3.0])),
                            ("large noise levels", torch.tensor([20.0, 80.0]))):
            got = fn(sigma.clone())
            if got is None:
                as_numbers("consistency scalings", None, 2)
            if not isinstance(got, (tuple, list)) or len(got) != 2:
                raise AssertionError(f"✗ consistency scalings: return the pair (c_skip, c_out), got {type(got).__name__}")
            want_skip, want_out = boundary_scalings(sigma)
            compare_to("c_skip", case, torch.as_tensor(got[0]).expand_as(sigma), want_skip, atol=1e-5)
            compare_to("c_out", case, torch.as_tensor(got[1]).expand_as(sigma), want_out, atol=1e-5)

    return attempt("the consistency scalings", run, "At σ = σ_min the model must return its input unchanged.")


def solution_consistency_scalings(sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    sigma_min, sigma_data = 0.002, 0.5
    c_skip = sigma_data**2 / ((sigma - sigma_min) ** 2 + sigma_data**2)
    c_out = (sigma - sigma_min) * sigma_data / (sigma**2 + sigma_data**2) ** 0.5
    return c_skip, c_out


ATOMS, WEIGHTS = (-1.0, 1.0), (0.3, 0.7)  # chapter 12's one-dimensional world: −1 30 % of the time, +1 70 %


def two_atom_velocity(x: torch.Tensor, t: torch.Tensor, cond: Any = None) -> torch.Tensor:
    """The exact marginal velocity E[ε − x₀ | x_t = x] of :data:`ATOMS` (chapter 12, section 1); x (B, 1), t (B,)·1000."""
    atoms, weights = torch.tensor(ATOMS, dtype=x.dtype), torch.tensor(WEIGHTS, dtype=x.dtype)
    t = (t / 1000).clamp(min=1e-4)[:, None]  # (B, 1)
    post = (weights.log() - ((x - (1 - t) * atoms) ** 2) / (2 * t**2)).softmax(dim=1)  # P(x₀ = a | x_t = x)
    return (post * (x - atoms) / t).sum(dim=1, keepdim=True)


def check_meanflow_jump(answer: Any) -> bool:
    """Predict-then-run: from the static z = 0.5 of the two-atom world, where does (1) one Euler step of the flow
    and (2) one exact MeanFlow jump x₀ = z − u(z, 0, 1) land? The answer ``(euler, meanflow)`` is compared,
    without revealing it, with the flow's Euler step and with the end of the exact path (Heun, 400 steps)."""
    from ..flow import sample_flow

    z = torch.tensor([[0.5]], dtype=torch.float64)
    with torch.no_grad():
        euler = sample_flow(two_atom_velocity, z.shape, sampler="euler", num_steps=1, noise=z, progress=False)
        path_end = sample_flow(two_atom_velocity, z.shape, sampler="heun", num_steps=400, noise=z, progress=False)
    if answer is None:
        return check("one step from z = 0.5", None, 0.0, hint="Give a pair: (where one Euler step lands, "
                     "where one exact MeanFlow jump lands).")
    got = as_numbers("one step from z = 0.5", answer, 2)
    check("one Euler step of the flow from z = 0.5", float(got[0]), float(euler), atol=0.02, rtol=0.0, reveal=False,
          hint="At t = 1 the static says nothing about its picture: what is the velocity there, on average?")
    return check("one exact MeanFlow jump from z = 0.5", float(got[1]), float(path_end), atol=0.02, rtol=0.0,
                 reveal=False, hint="The average velocity over the whole path takes you to where the path ends.")


def solution_meanflow_jump() -> tuple[float, float]:
    # Euler: the velocity at t = 1 is z − E[x₀], so one step lands on E[x₀] = 0.7 − 0.3 = 0.4 for every static.
    # MeanFlow: the walks keep their order; static above the 30 % quantile (≈ −0.52) ends at +1.
    return 0.4, 1.0


__all__ = ["ATOMS", "WEIGHTS", "check_consistency_scalings", "check_meanflow_jump", "solution_consistency_scalings",
           "solution_meanflow_jump", "two_atom_velocity"]
