"""The exercise framework: :func:`check` for value answers, :func:`attempt` and :func:`_compare` for
function answers (see :mod:`course_lib.exercises`)."""

from __future__ import annotations

from typing import Any, Callable

import torch


# ============================================================================ value answers
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


# ============================================================================ function answers
class NotTried(Exception):
    """The learner's function returned None: the exercise has not been attempted yet."""


def _compare(name: str, case: str, got: Any, want: torch.Tensor, *, atol: float = 1e-4, rtol: float = 1e-4) -> None:
    """Raise a helpful AssertionError unless ``got`` is a tensor close to ``want``."""
    if got is None:
        raise NotTried
    if not isinstance(got, torch.Tensor):
        raise AssertionError(f"✗ {name} ({case}): your function returned a {type(got).__name__}, expected a tensor "
                             f"of shape {tuple(want.shape)}")
    got = got.detach().to("cpu", torch.float64)
    want = want.detach().to("cpu", torch.float64)
    if got.shape != want.shape:
        raise AssertionError(f"✗ {name} ({case}): shape {tuple(got.shape)}, expected {tuple(want.shape)}")
    if not torch.allclose(got, want, atol=atol, rtol=rtol):
        err = (got - want).abs()
        ratio = float((got * want).sum() / want.square().sum().clamp_min(1e-30))
        raise AssertionError(
            f"✗ {name} ({case}): largest difference {float(err.max()):.3g} (typical size of the right answer "
            f"{float(want.abs().mean()):.3g}); your answer ≈ {ratio:.3f} × the right one along its direction. "
            "Read the next hint.")


def attempt(name: str, run_check: Callable[[], None], first_hint: str = "") -> bool:
    """Run one function check: True if it passes, False (with a nudge) if the stub is still empty."""
    try:
        run_check()
    except NotTried:
        print(f"✎ {name}: not tried yet — your function returned None. {first_hint}".rstrip())
        return False
    print(f"✓ {name}: correct!")
    return True
