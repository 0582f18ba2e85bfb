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


def flow_euler_solution(model: Any, noise: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """Chapter 12's exercise, solved: Euler steps x ← x + (t' − t)·v(x, t·1000) down the grid ``sigmas``."""
    x = noise
    for i in range(len(sigmas) - 1):
        t = torch.full((x.shape[0],), float(sigmas[i]) * 1000)  # the network's time: t·1000
        x = x + (sigmas[i + 1] - sigmas[i]) * model(x, t)
    return x
