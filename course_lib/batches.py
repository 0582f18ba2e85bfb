"""The one batch-sampling loop of the package (chapters 06, 07, 09, 10, 12): :func:`sample_in_batches`.

It takes a *sampling function* — anything that turns a :class:`Batch` into images, usually a ``lambda`` around
:func:`course_lib.samplers.sample` or :func:`course_lib.flow.sample_flow` — so it serves every model, sampler and
condition: evaluation (:mod:`course_lib.evaluation`), the steps table, chapter 09's race
(:func:`course_lib.families.draw_in_batches`) and the pairs of chapter 12's reflow.
"""

from __future__ import annotations

from typing import Callable, Literal, NamedTuple, get_args

import torch
from tqdm.auto import tqdm

from .settings import check_bool, check_choice, check_int

SeedMode = Literal["shared", "per_batch"]
SEED_MODES: tuple[str, ...] = get_args(SeedMode)


class Batch(NamedTuple):
    """What a sampling function gets for one batch of :func:`sample_in_batches`."""

    size: int  # images in this batch
    cond: torch.Tensor | None  # (size, …) this batch's rows of ``cond``, or None
    noise: torch.Tensor | None  # (size, C, H, W) this batch's starting noises, or None (the sampler draws them)
    generator: torch.Generator  # the random draws of this batch (starting noise and per-step noise)


SampleFn = Callable[[Batch], torch.Tensor]


def sample_in_batches(
    sample_fn: SampleFn,
    n: int,
    *,
    batch_size: int | None = None,
    seed: int = 0,
    seeds: SeedMode = "shared",
    cond: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    clamp: bool = True,
    progress: bool = False,
    desc: str = "sampling",
) -> torch.Tensor:
    """``n`` samples from ``sample_fn``, ``batch_size`` at a time (None: all in one batch), on the CPU.

    ``sample_fn(batch)`` gets a :class:`Batch` and returns ``batch.size`` images, for example
    ``lambda b: sample(model, s, (b.size, 1, 32, 32), cond=b.cond, noise=b.noise, generator=b.generator)``.
    ``cond`` (n, …) and ``noise`` (n, C, H, W) are cut into the batches' rows. The random draws:

    - ``seeds="shared"`` — one generator seeded ``seed`` feeds every batch in turn (the result depends
      on ``seed`` and ``batch_size``);
    - ``seeds="per_batch"`` — batch b gets its own generator seeded ``seed + b`` (with fixed starting
      ``noise``, the result no longer depends on how the work was cut into batches, up to the per-step
      noise of stochastic samplers).

    ``clamp`` clips the images to [−1, 1], as any image file would be. ``progress`` shows a bar over
    the batches (the sampling function may show its own over the steps).
    """
    n = check_int("n", n, min_value=1)
    if batch_size is not None:
        batch_size = check_int("batch_size", batch_size, min_value=1)
    seed = check_int("seed", seed, min_value=0)
    check_choice("seeds", seeds, SEED_MODES)
    check_bool("clamp", clamp)
    check_bool("progress", progress)
    for name, rows in (("cond", cond), ("noise", noise)):
        if rows is not None and (not isinstance(rows, torch.Tensor) or rows.dim() < 1 or rows.shape[0] != n):
            raise ValueError(f"{name} must be a tensor with n={n} rows, got {getattr(rows, 'shape', type(rows).__name__)}")
    size = n if batch_size is None else batch_size
    shared = torch.Generator().manual_seed(seed)
    out = []
    starts = range(0, n, size)
    for b, start in enumerate(tqdm(starts, disable=not progress, desc=desc, leave=False)):
        stop = min(start + size, n)
        generator = shared if seeds == "shared" else torch.Generator().manual_seed(seed + b)
        batch = Batch(stop - start, None if cond is None else cond[start:stop],
                      None if noise is None else noise[start:stop], generator)
        images = sample_fn(batch)
        out.append((images.clamp(-1, 1) if clamp else images).cpu())
    return torch.cat(out)  # (n, …)


__all__ = ["SEED_MODES", "Batch", "SampleFn", "SeedMode", "sample_in_batches"]
