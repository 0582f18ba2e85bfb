"""Guards for the figures a chapter's prose states: "the text says X, this run measured Y".

A sentence such as "the EMA copy scores about 0.04 KID lower" is only true if the run that the
reader just executed says so. Every run-dependent figure in a chapter's prose is therefore printed
by a cell of that chapter and checked by :func:`claim`, with the tolerance written next to it::

    from course_lib.claims import claim
    claim("the guided model draws the asked-for class", accuracy, at_least=0.95, profile=run.profile)
    claim("FID of 20 DDIM steps", fid_20, stated=6.2, tol=1.5, fmt="{:.1f}", profile=run.profile)

It prints one line (``✓ the text says …, this run measured …``) and, when the run does not
bear the sentence out, raises :class:`ClaimError` with a single readable line: what the text
claims, what this run measured, and that the rest of the run is fine. Papermill (and so
``make course`` and ``make course-check``) stops on it.

Tolerances come from the spread of the figure over seeds and machines (docs/architecture.md,
"Claims"): a claim that does not hold robustly is rewritten, not loosened. In the ``smoke``
profile the networks are barely trained, so run-dependent claims are printed but not enforced
unless ``profiles`` says otherwise (deterministic checks pass ``profiles=ALL_PROFILES``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Sequence

from .settings import gpu_dryrun

ProfileName = Literal["smoke", "cpu", "gpu"]
ALL_PROFILES: tuple[ProfileName, ...] = ("smoke", "cpu", "gpu")
TRAINED_PROFILES: tuple[ProfileName, ...] = ("cpu", "gpu")


class ClaimError(AssertionError):
    """A figure stated in a chapter's text does not hold in this run (one readable line)."""


@dataclass(frozen=True)
class Checked:
    """One claim as this kernel checked it (kept in :data:`checked`, in order)."""

    text: str
    measured: float
    expected: str
    enforced: bool
    holds: bool


checked: list[Checked] = []  # every claim of this kernel, in order: a chapter's guard count
CONFIRMED = "✓ "  # how a line that confirms a claim starts (``python -m course_lib.sweep`` counts them)


def is_confirmation(line: str) -> bool:
    """Whether a line of a chapter's output is :func:`claim`'s confirmation of a figure."""
    return line.startswith(CONFIRMED) and ": the text says " in line


def _expectation(stated: float | None, tol: float | None, rel_tol: float | None,
                 at_least: float | None, at_most: float | None, fmt: str) -> str:
    """The text's figure in words, e.g. ``6.2 ± 1.5`` or ``at least 0.95``."""
    if stated is not None:
        spread = tol if tol is not None else abs(stated) * (rel_tol or 0.0)
        shown = fmt.format(spread)
        if spread > 0 and not any(ch in "123456789" for ch in shown.split("e")[0]):
            shown = f"{spread:.2g}"  # a tolerance finer than the figure's format: never print "± 0.0"
        return f"{fmt.format(stated)} ± {shown}"
    parts = []
    if at_least is not None:
        parts.append(f"at least {fmt.format(at_least)}")
    if at_most is not None:
        parts.append(f"at most {fmt.format(at_most)}")
    return " and ".join(parts)


def _holds(measured: float, stated: float | None, tol: float | None, rel_tol: float | None,
           at_least: float | None, at_most: float | None) -> bool:
    if not math.isfinite(measured):
        return False
    if stated is not None:
        spread = tol if tol is not None else abs(stated) * (rel_tol or 0.0)
        if abs(measured - stated) > spread:
            return False
    if at_least is not None and measured < at_least:
        return False
    return at_most is None or measured <= at_most


def _validate(text: str, stated: float | None, tol: float | None, rel_tol: float | None,
              at_least: float | None, at_most: float | None, profiles: Sequence[str]) -> None:
    if not isinstance(text, str) or not text.strip():
        raise ValueError("claim(text=...) must be the sentence of the chapter that the figure supports")
    if stated is None and at_least is None and at_most is None:
        raise ValueError("claim() needs stated= (with tol= or rel_tol=), at_least= or at_most=")
    if stated is not None and (tol is None) == (rel_tol is None):
        raise ValueError("claim(stated=...) needs exactly one of tol= (absolute) or rel_tol= (relative)")
    for name, value in (("tol", tol), ("rel_tol", rel_tol)):
        if value is not None and not (isinstance(value, (int, float)) and value >= 0):
            raise ValueError(f"claim({name}=...) must be a number >= 0, got {value!r}")
    unknown = [p for p in profiles if p not in ALL_PROFILES]
    if unknown:
        raise ValueError(f"claim(profiles=...) takes names from {ALL_PROFILES}, got {unknown}")


def claim(text: str, measured: float, *, stated: float | None = None, tol: float | None = None,
          rel_tol: float | None = None, at_least: float | None = None, at_most: float | None = None,
          profile: str = "cpu", profiles: Sequence[ProfileName] = TRAINED_PROFILES,
          fmt: str = "{:.3g}") -> bool:
    """Print "the text says …, this run measured …" and raise :class:`ClaimError` if it does not hold.

    ``measured`` is this run's figure; the text's figure is ``stated ± tol`` (or ``± rel_tol·|stated|``)
    and/or the bounds ``at_least`` / ``at_most``. The claim is enforced when ``profile`` (the run's
    resolved profile, ``run.profile``) is one of ``profiles`` and this is not a gpu dry run
    (:func:`course_lib.settings.gpu_dryrun`, whose capped steps make every figure moot); otherwise it is only printed. Returns
    whether the figure holds.
    """
    _validate(text, stated, tol, rel_tol, at_least, at_most, profiles)
    measured = float(measured)
    expected = _expectation(stated, tol, rel_tol, at_least, at_most, fmt)
    holds = _holds(measured, stated, tol, rel_tol, at_least, at_most)
    enforced = profile in profiles and not gpu_dryrun()  # a gpu dry run trains and samples a few steps: figures are moot
    checked.append(Checked(text, measured, expected, enforced, holds))
    shown = fmt.format(measured)
    if holds:
        print(f"{CONFIRMED}{text}: the text says {expected}, this run measured {shown}")
    elif not enforced:
        print(f"· {text}: the text says {expected} (for a trained model); this {profile} run measured {shown}")
    else:
        raise ClaimError(
            f"The text claims {text}: {expected}; this run measured {shown}. Everything else in this run "
            f"is fine: the claim did not hold for this run's random draws or machine (please report it).")
    return holds
