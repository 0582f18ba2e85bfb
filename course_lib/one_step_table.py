"""One, two and four network calls: the rows of chapter 15's one-step models in the steps-vs-quality table.

The same computation as :mod:`course_lib.steps_table` (chapter 06, and the flow rows of chapter 12), for
the models that jump instead of walking: a consistency model (:mod:`course_lib.consistency`, sampled by
:func:`~course_lib.consistency.sample_consistency`) and a MeanFlow model (:mod:`course_lib.meanflow`,
:func:`~course_lib.meanflow.sample_meanflow`). Every row starts from the same starting noises as the other
rows of the table (the same ``seed``: ``torch.randn`` of ``(n, C, H, W)``), scores the same number of
images with the same FID, and returns rows in the same format, so ``steps_table.best_ratio_within`` and
``format_table`` take them as they are. Chapter 15 and ``benchmarks/one_step.py`` both call
:func:`one_step_vs_quality`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal, Sequence, get_args

import torch

from .batches import Batch
from .consistency import SIGMA_LOW, consistency_sigmas, sample_consistency
from .meanflow import sample_meanflow
from .settings import check_choice, check_int
from .solvers import EDM_SIGMA_MAX
from .steps_table import score_rows

OneStepKind = Literal["consistency", "meanflow"]
ONE_STEP_KINDS: tuple[str, ...] = get_args(OneStepKind)
CONSISTENCY_SIGMA_LOW = SIGMA_LOW  # where a multistep consistency sampler stops adding static (course_lib.consistency)
ONE_STEP_CALLS: tuple[int, ...] = (1, 2, 4)


@dataclass(frozen=True)
class OneStepRowConfig:
    """One row: which model (``model``: a name in the dict of models), of which ``kind``, with how many calls."""

    model: str
    kind: OneStepKind
    calls: int

    def __post_init__(self) -> None:
        check_choice("kind", self.kind, ONE_STEP_KINDS)
        check_int("calls", self.calls, min_value=1)

    @property
    def label(self) -> str:
        """E.g. ``consistency 1-call`` or ``meanflow 2-call``."""
        return f"{self.model} {self.calls}-call"


def one_step_configs(models: dict[str, OneStepKind], calls: Sequence[int] = ONE_STEP_CALLS) -> list[OneStepRowConfig]:
    """A row for every model (name → kind) at every number of calls."""
    return [OneStepRowConfig(name, kind, n) for name, kind in models.items() for n in calls]


def draw_one_step(model: Callable[..., torch.Tensor], kind: OneStepKind, noise: torch.Tensor, calls: int,
                  generator: torch.Generator | None = None, *, sigma_low: float = CONSISTENCY_SIGMA_LOW) -> torch.Tensor:
    """Pictures from the starting noises ``noise`` (N, C, H, W) in ``calls`` network calls: a consistency model
    jumps from σ_max·noise (fresh static between calls from ``generator``), a MeanFlow model from noise at t = 1."""
    check_choice("kind", kind, ONE_STEP_KINDS)
    if kind == "meanflow":
        return sample_meanflow(model, noise, calls)
    return sample_consistency(model, noise * EDM_SIGMA_MAX, consistency_sigmas(calls, sigma_low=sigma_low),
                              generator=generator)


def one_step_vs_quality(
    models: dict[str, Callable[..., torch.Tensor]], real: torch.Tensor, configs: Sequence[OneStepRowConfig],
    n_samples: int, seed: int = 0, *, batch_size: int = 250, progress: bool = True,
    fid_fn: Callable[[torch.Tensor, torch.Tensor], float] | None = None,
) -> list[dict[str, Any]]:
    """FID and wall time of each row (the format of :func:`course_lib.steps_table.steps_vs_quality`, through
    :func:`course_lib.steps_table.score_rows`)."""
    def draw(b: Batch, c: OneStepRowConfig) -> torch.Tensor:
        dev = next(models[c.model].parameters()).device if isinstance(models[c.model], torch.nn.Module) else b.noise.device
        return draw_one_step(models[c.model], c.kind, b.noise.to(dev), c.calls, b.generator).cpu()

    def describe(c: OneStepRowConfig) -> dict[str, Any]:
        return {"label": c.label, "sampler": f"{c.model}_{c.kind}", "steps": c.calls, "nfe": c.calls, "spacing": "",
                "eta": 0.0, "clip_sample": c.kind == "consistency",
                "sigma_max": EDM_SIGMA_MAX if c.kind == "consistency" else None}

    return score_rows(models, real, configs, n_samples, seed, draw, describe, batch_size=batch_size, progress=progress,
                      fid_fn=fid_fn, desc="one-step models")


__all__ = ["CONSISTENCY_SIGMA_LOW", "ONE_STEP_CALLS", "ONE_STEP_KINDS", "OneStepKind", "OneStepRowConfig", "draw_one_step",
           "one_step_configs", "one_step_vs_quality"]
