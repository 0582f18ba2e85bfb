"""Callbacks for :func:`course_lib.training.train`: each is called with a :class:`~course_lib.training.StepInfo`
after every step, and may end the run by raising :class:`~course_lib.training.StopTraining`.

- :class:`StopAfter` — stop after so many steps or seconds (the run is checkpointed there).
- :class:`Recorder` — the step, loss, learning rate and wall seconds of every step.
- :class:`Snapshots` — keep something (by default a CPU copy of the EMA weights: :func:`ema_weights`;
  :func:`model_weights` for the raw ones) at chosen steps (chapters 04 and 10).
- :class:`KeepCheckpoint` — copy the run's checkpoint of one step elsewhere (chapter 09's race).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

from .checkpoints import atomic_copy, atomic_write_text, has_checkpoint, read_state
from .settings import check_float, check_int
from .training import StepInfo, StopTraining


class StopAfter:
    """Callback: end :func:`~course_lib.training.train` (via :class:`StopTraining`) once ``steps`` steps are done or ``seconds`` have passed."""

    def __init__(self, *, steps: int | None = None, seconds: float | None = None) -> None:
        if steps is None and seconds is None:
            raise ValueError("StopAfter needs steps= or seconds= (or both)")
        self.steps = None if steps is None else check_int("steps", steps, min_value=1)
        self.seconds = None if seconds is None else check_float("seconds", seconds, min_value=0.0)
        self.started = time.perf_counter()

    def __call__(self, info: StepInfo) -> None:
        if (self.steps is not None and info.step >= self.steps) or (
                self.seconds is not None and time.perf_counter() - self.started >= self.seconds):
            raise StopTraining(f"stopped after {info.step} steps")


class Recorder:
    """Callback: keep the step, loss, learning rate and wall seconds (since creation) of every step."""

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.losses: list[float] = []
        self.lrs: list[float] = []
        self.seconds: list[float] = []
        self.started = time.perf_counter()

    def __call__(self, info: StepInfo) -> None:
        self.steps.append(info.step)
        self.losses.append(info.loss)
        self.lrs.append(info.lr)
        self.seconds.append(time.perf_counter() - self.started)


def ema_weights(info: StepInfo) -> dict[str, torch.Tensor]:
    """A CPU copy of the EMA model's weights at this step."""
    return {k: v.detach().cpu().clone() for k, v in info.ema_model.state_dict().items()}


def model_weights(info: StepInfo) -> dict[str, torch.Tensor]:
    """A CPU copy of the raw (non-EMA) model's weights at this step."""
    return {k: v.detach().cpu().clone() for k, v in info.model.state_dict().items()}


class Snapshots:
    """Callback: at each of ``steps`` keep ``take(info)`` in ``taken[step]`` (default: a CPU copy of the EMA weights)."""

    def __init__(self, steps: Iterable[int], take: Callable[[StepInfo], Any] = ema_weights) -> None:
        self.steps = sorted({check_int("step", s, min_value=1) for s in steps})
        self.take = take
        self.taken: dict[int, Any] = {}

    def __call__(self, info: StepInfo) -> None:
        if info.step in self.steps:
            self.taken[info.step] = self.take(info)

    @property
    def complete(self) -> bool:
        """True once a snapshot exists for every requested step."""
        return all(s in self.taken for s in self.steps)


class KeepCheckpoint:
    """Callback for :func:`~course_lib.training.train`: once the run has committed its checkpoint of step ``step`` in ``run_dir``,
    copy it to ``keep_dir`` (weights first, then the JSON: the copy is committed atomically like the original).

    Chapter 04's digits run commits a checkpoint at the race's step (``checkpoint_every`` divides it), so
    chapter 09 finds the diffusion model "as it was after the race budget" without training anything twice.
    """

    def __init__(self, run_dir: Path, keep_dir: Path, step: int) -> None:
        self.run_dir, self.keep_dir, self.step = Path(run_dir), Path(keep_dir), check_int("step", step, min_value=1)

    def __call__(self, info: StepInfo) -> None:
        if info.step <= self.step or has_checkpoint(self.keep_dir) or not has_checkpoint(self.run_dir):
            return
        state = read_state(self.run_dir)
        if int(state["step"]) != self.step:
            return
        atomic_copy(self.run_dir / state["weights"], self.keep_dir / state["weights"], sha256=state["sha256"])
        atomic_write_text(self.keep_dir / "checkpoint.json", json.dumps(state))
