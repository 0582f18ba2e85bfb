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

import time
from dataclasses import dataclass
from typing import Any, Callable, Literal, Sequence, get_args

import torch
from tqdm.auto import tqdm

from .batches import Batch, sample_in_batches
from .consistency import SIGMA_LOW, consistency_sigmas, sample_consistency
from .meanflow import sample_meanflow
from .metrics import fid
from .settings import check_choice, check_int
from .solvers import EDM_SIGMA_MAX

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
    """FID and wall time of each row (the format of :func:`course_lib.steps_table.steps_vs_quality`)."""
    n_samples = check_int("n_samples", n_samples, min_value=2)
    seed = check_int("seed", seed, min_value=0)
    configs = list(configs)
    missing = sorted({c.model for c in configs} - set(models))
    if missing:
        raise ValueError(f"configs name models {missing} that are not in models (have: {sorted(models)})")
    fid_fn = fid if fid_fn is None else fid_fn
    noise = torch.randn((n_samples, *real.shape[1:]), generator=torch.Generator().manual_seed(seed))  # (N, C, H, W)
    rows = []
    for config in tqdm(configs, disable=not progress, desc="one-step models", leave=False):
        def draw(b: Batch, c: OneStepRowConfig = config) -> torch.Tensor:
            dev = next(models[c.model].parameters()).device if isinstance(models[c.model], torch.nn.Module) else b.noise.device
            return draw_one_step(models[c.model], c.kind, b.noise.to(dev), c.calls, b.generator).cpu()

        tic = time.perf_counter()
        fake = sample_in_batches(draw, n_samples, batch_size=batch_size, seed=seed + 1, seeds="per_batch", noise=noise,
                                 progress=progress, desc=config.label)
        rows.append({"label": config.label, "sampler": f"{config.model}_{config.kind}", "steps": config.calls,
                     "nfe": config.calls, "spacing": "", "eta": 0.0, "clip_sample": config.kind == "consistency",
                     "sigma_max": EDM_SIGMA_MAX if config.kind == "consistency" else None,
                     "fid": float(fid_fn(real, fake.to(real.device))), "seconds": time.perf_counter() - tic})
    return rows


__all__ = ["CONSISTENCY_SIGMA_LOW", "ONE_STEP_CALLS", "ONE_STEP_KINDS", "OneStepKind", "OneStepRowConfig", "draw_one_step",
           "one_step_configs", "one_step_vs_quality"]
