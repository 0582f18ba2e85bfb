"""The exercise framework: :func:`check` for value answers, :func:`attempt` and :func:`compare_to` for
function answers (see :mod:`course_lib.exercises`)."""

from __future__ import annotations

from typing import Any, Callable

import torch


# ============================================================================ value answers
def check(name: str, answer: Any, expected: Any, *, rtol: float = 1e-3, atol: float = 1e-4, hint: str = "",
          reveal: bool = True) -> bool:
    """Compare ``answer`` with ``expected`` (numbers, tensors, or exact values).

    Returns False (after printing the hint) when ``answer`` is None, True when it matches, and
    raises AssertionError naming the exercise when it does not — with the expected value, unless
    ``reveal=False`` (predict-then-run questions: the message then says only which way the answer is off).
    """
    if answer is None:
        print(f"✎ {name}: not answered yet. {hint}".rstrip())
        return False
    direction = ""
    if isinstance(expected, (int, float, torch.Tensor)) and not isinstance(expected, bool):
        want = torch.as_tensor(expected, dtype=torch.float64)
        try:
            got = torch.as_tensor(answer, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError):
            raise AssertionError(f"✗ {name}: expected a number (or numbers), got {answer!r}. {hint}".rstrip()) from None
        ok = got.shape == want.shape and bool(torch.allclose(got, want, rtol=rtol, atol=atol))
        if not ok and got.shape == want.shape and want.numel() == 1:
            direction = " (too large)" if float(got) > float(want) else " (too small)"
    else:
        ok = answer == expected
    if not ok:
        wanted = f"expected {expected!r}" if reveal else f"not what the library measures{direction}"
        raise AssertionError(f"✗ {name}: got {answer!r}, {wanted}. {hint}".rstrip())
    print(f"✓ {name}: correct!")
    return True


# ============================================================================ function answers
class NotTried(Exception):
    """The learner's function returned None: the exercise has not been attempted yet."""


def compare_to(name: str, case: str, got: Any, want: torch.Tensor, *, atol: float = 1e-4, rtol: float = 1e-4) -> None:
    """Raise a helpful AssertionError unless ``got`` is a tensor (or, for a 0-d ``want``, a number) close to ``want``."""
    if got is None:
        raise NotTried
    if want.dim() == 0 and isinstance(got, (int, float)) and not isinstance(got, bool):
        got = torch.tensor(float(got))
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


def as_numbers(name: str, got: Any, count: int) -> torch.Tensor:
    """A learner's tuple of ``count`` numbers (floats or 0-d tensors) as one float64 tensor; None: not tried."""
    if got is None:
        raise NotTried
    if not isinstance(got, (tuple, list)) or len(got) != count:
        raise AssertionError(f"✗ {name}: return {count} numbers as a tuple, got {type(got).__name__}"
                             + (f" of length {len(got)}" if isinstance(got, (tuple, list)) else ""))
    try:
        return torch.stack([torch.as_tensor(v, dtype=torch.float64).detach().cpu().reshape(()) for v in got])
    except (TypeError, ValueError, RuntimeError) as err:
        raise AssertionError(f"✗ {name}: each of the {count} entries must be one number ({err})") from None


def frozen_model(build: Callable[[], torch.nn.Module], seed: int) -> torch.nn.Module:
    """A small stand-in network built under its own seed, leaving the caller's random stream as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build().eval()


def attempt(name: str, run_check: Callable[[], None], first_hint: str = "") -> bool:
    """Run one function check: True if it passes, False (with a nudge) if the stub is still empty."""
    try:
        run_check()
    except NotTried:
        print(f"✎ {name}: not tried yet — your function returned None. {first_hint}".rstrip())
        return False
    print(f"✓ {name}: correct!")
    return True
