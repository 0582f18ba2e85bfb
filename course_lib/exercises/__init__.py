"""Automatic checks for the exercises at the end of each chapter, and their reference solutions.

Two kinds of exercise:

- :func:`check` compares a value the learner computed with the expected one (the short questions).
- :func:`attempt` runs a *function the learner wrote* — a piece of the chapter's own algorithm
  (forward noising, a schedule, the training loss, a DDPM step, a DDIM step, a guided sampler, the
  VAE's negative ELBO, FID, cross-attention weights, a flow Euler sampler)
  — on test inputs and compares it with the library's own implementation. The learner's function
  starts as a stub that returns ``None`` ("not tried yet"): the check then prints where to start and
  the notebook still runs top to bottom. A wrong answer raises AssertionError saying *what* is off
  (shape, scale, which case fails), never the code.

The reference solutions are the ``solution_*`` functions, out of the learner's way; the tests
(``tests/test_exercises.py``) run every one through its check, and a wrong answer through it too.
:data:`EXERCISES` lists them all, chapter by chapter.

Modules: :mod:`.core` (the framework), :mod:`.foundations` (chapters 00–03), :mod:`.sampling`
(04–08), :mod:`.beyond` (09–12). Everything is importable from here: ``exercises.check_ddim_step``.
"""

from __future__ import annotations

from typing import Any, Callable

from .beyond import (
    check_cross_attention,
    check_fid,
    check_flow_euler,
    check_negative_elbo,
    solution_cross_attention,
    solution_fid,
    solution_flow_euler,
    solution_negative_elbo,
)
from .core import NotTried, _compare, attempt, check
from .foundations import (
    check_cheat_eraser,
    check_cosine_schedule,
    check_q_sample,
    check_to_x0,
    solution_cheat_eraser,
    solution_cosine_schedule,
    solution_q_sample,
    solution_to_x0,
)
from .sampling import (
    _TinyDenoiser,
    check_cfg_sampler,
    check_ddim_step,
    check_ddpm_step,
    check_prompt_guidance,
    check_training_loss,
    solution_cfg_sampler,
    solution_ddim_step,
    solution_ddpm_step,
    solution_prompt_guidance,
    solution_training_loss,
)

#: every function exercise: chapter → (check, reference solution)
EXERCISES: dict[str, tuple[Callable[..., bool], Callable[..., Any]]] = {
    "00_cheat_eraser": (check_cheat_eraser, solution_cheat_eraser),
    "01_q_sample": (check_q_sample, solution_q_sample),
    "02_cosine_schedule": (check_cosine_schedule, solution_cosine_schedule),
    "03_to_x0": (check_to_x0, solution_to_x0),
    "04_training_loss": (check_training_loss, solution_training_loss),
    "05_ddpm_step": (check_ddpm_step, solution_ddpm_step),
    "06_ddim_step": (check_ddim_step, solution_ddim_step),
    "07_cfg_sampler": (check_cfg_sampler, solution_cfg_sampler),
    "08_prompt_guidance": (check_prompt_guidance, solution_prompt_guidance),
    "09_negative_elbo": (check_negative_elbo, solution_negative_elbo),
    "10_fid": (check_fid, solution_fid),
    "11_cross_attention": (check_cross_attention, solution_cross_attention),
    "12_flow_euler": (check_flow_euler, solution_flow_euler),
}

__all__ = ["EXERCISES", "NotTried", "attempt", "check", *sorted(n for pair in EXERCISES.values() for n in
                                                                 (pair[0].__name__, pair[1].__name__))]
