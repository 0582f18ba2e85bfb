"""Flow rows for the steps-versus-quality table of chapters 06 and 12 (``benchmarks/samplers.py``).

:func:`flow_steps_vs_quality` is :func:`course_lib.steps_table.steps_vs_quality` for velocity models:
the same starting noises (same seed), the same FID against real digits, rows in the same format, so
one table compares DDPM-1000, DDIM, DPM-Solver++ and the flow models at 1, 2, 4, 10 and 20 network calls.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from tqdm.auto import tqdm

from .evaluation import Batch, sample_in_batches
from .flow import FLOW_SAMPLERS, FlowSampler, check_shift, flow_network_evaluations, sample_flow
from .metrics import fid
from .settings import check_choice, check_int
from .steps_table import best_within, reference_fid

#: the flow rows of the table: (model name, sampler, network calls); midpoint takes calls/2 steps
FLOW_TABLE_NFE: tuple[int, ...] = (1, 2, 4, 10, 20)


@dataclass(frozen=True)
class FlowRowConfig:
    """One flow row: which velocity model (``model``: a name, e.g. ``flow`` or ``reflow``), its sampler
    (:data:`course_lib.flow.FLOW_SAMPLERS`), steps and timestep shift (:func:`course_lib.flow.sample_flow`)."""

    model: str
    sampler: FlowSampler
    num_steps: int
    shift: float = 1.0

    def __post_init__(self) -> None:
        check_choice("sampler", self.sampler, FLOW_SAMPLERS)
        check_int("num_steps", self.num_steps, min_value=1)
        check_shift(self.shift)

    @property
    def nfe(self) -> int:
        return flow_network_evaluations(self.sampler, self.num_steps)

    @property
    def label(self) -> str:
        """E.g. ``flow Euler-10`` or ``reflow midpoint-2 shift 3``."""
        name = f"{self.model} {self.sampler.capitalize()}-{self.num_steps}"
        return name + (f" shift {self.shift:g}" if self.shift != 1.0 else "")


def flow_table_configs(models: Sequence[str] = ("flow", "reflow"), *, nfe: Sequence[int] = FLOW_TABLE_NFE,
                       shift: float = 1.0) -> list[FlowRowConfig]:
    """Euler at every budget in ``nfe`` and midpoint at every even one, for each named model."""
    rows = []
    for name in models:
        rows += [FlowRowConfig(name, "euler", n, shift) for n in nfe]
        rows += [FlowRowConfig(name, "midpoint", n // 2, shift) for n in nfe if n >= 2 and n % 2 == 0]
    return rows


def flow_steps_vs_quality(
    models: dict[str, Callable[..., torch.Tensor]], real: torch.Tensor, configs: Sequence[FlowRowConfig],
    n_samples: int, seed: int = 0, *, batch_size: int = 250, progress: bool = True,
    fid_fn: Callable[[torch.Tensor, torch.Tensor], float] | None = None,
) -> list[dict[str, Any]]:
    """:func:`steps_vs_quality` for velocity models (chapter 12): the same starting noises (same ``seed``),
    the same FID, rows in the same format (``spacing`` holds ``shift …``; ``eta`` 0, no clamp)."""
    n_samples = check_int("n_samples", n_samples, min_value=2)
    seed = check_int("seed", seed, min_value=0)
    configs = list(configs)
    missing = sorted({c.model for c in configs} - set(models))
    if missing:
        raise ValueError(f"configs name models {missing} that are not in models (have: {sorted(models)})")
    fid_fn = fid if fid_fn is None else fid_fn
    noise = torch.randn((n_samples, *real.shape[1:]), generator=torch.Generator().manual_seed(seed))  # (N, C, H, W)
    rows = []
    for config in tqdm(configs, disable=not progress, desc="flow samplers", leave=False):
        def draw(b: Batch, c: FlowRowConfig = config) -> torch.Tensor:
            return sample_flow(models[c.model], tuple(b.noise.shape), sampler=c.sampler, num_steps=c.num_steps,
                               shift=c.shift, noise=b.noise)

        tic = time.perf_counter()
        fake = sample_in_batches(draw, n_samples, batch_size=batch_size, seed=seed + 1, seeds="per_batch",
                                 noise=noise, progress=progress, desc=config.label)
        seconds = time.perf_counter() - tic
        rows.append({"label": config.label, "sampler": f"{config.model}_{config.sampler}", "steps": config.num_steps,
                     "nfe": config.nfe, "spacing": f"shift {config.shift:g}", "eta": 0.0, "clip_sample": False,
                     "sigma_max": None, "fid": float(fid_fn(real, fake.clamp(-1, 1).to(real.device))), "seconds": seconds})
    return rows


def best_ratio_within(rows: Sequence[dict[str, Any]], nfe: int) -> float:
    """The lowest FID among rows with at most ``nfe`` network calls, divided by the reference row's (DDPM-1000)."""
    return best_within(rows, nfe)["fid"] / reference_fid(rows)


__all__ = ["FLOW_TABLE_NFE", "FlowRowConfig", "best_ratio_within", "flow_steps_vs_quality", "flow_table_configs"]
