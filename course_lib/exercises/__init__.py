"""Automatic checks for the exercises at the end of each chapter, and their reference solutions.

Two kinds of exercise:

- *Questions* (:data:`QUESTIONS`): the learner predicts a number — before running anything, or by a short
  derivation — and ``check_x(answer, *inputs)`` compares it with what the library computes or measures
  (through :func:`check`, without revealing the value), then shows the measurement. The stub is
  ``answer = None`` ("not answered yet").
- *Function exercises*: :func:`attempt` runs a *function the learner wrote* — a piece of the chapter's
  own algorithm (forward noising, a schedule, the training loss, a DDPM step, a DDIM step, a guided
  sampler, the VAE's negative ELBO, FID, cross-attention weights, a flow Euler sampler) or a derivation
  written as code (the posterior variance of a jump, Tweedie's formula, DDIM at η = 1 in DDPM's form,
  classifier guidance) — on test inputs and compares it with the library's own implementation. The
  learner's function starts as a stub that returns ``None`` ("not tried yet"): the check then prints
  where to start and the notebook still runs top to bottom. A wrong answer raises AssertionError saying
  *what* is off (shape, scale, which case fails), never the code.

The reference solutions are the ``solution_*`` functions, out of the learner's way; the tests
(``tests/test_exercises.py``) run every one through its check, and a wrong answer through it too.
:data:`EXERCISES` lists them all, chapter by chapter.

Modules: :mod:`.core` (the framework), :mod:`.foundations` (chapters 00–03), :mod:`.sampling`
(04–08), :mod:`.beyond` (09–12), :mod:`.derivations` (derivations written as functions) and
:mod:`.questions` (predict-then-run questions). Everything is importable from here:
``exercises.check_ddim_step``.
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
from .core import NotTried, compare_to, attempt, check
from .derivations import (
    check_classifier_guidance,
    check_ddim_as_ddpm,
    check_posterior_variance,
    check_tweedie,
    solution_classifier_guidance,
    solution_ddim_as_ddpm,
    solution_posterior_variance,
    solution_tweedie,
)
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
from .questions import (
    check_cfg_as_critic_scale,
    check_last_step_weights,
    check_lazy_eraser,
    check_loss_floor,
    check_reflow_two_atoms,
    check_shrunk_crowd_fid,
    check_snr_one_step,
    check_static_share,
    check_x0_error,
    solution_cfg_as_critic_scale,
    solution_last_step_weights,
    solution_lazy_eraser,
    solution_loss_floor,
    solution_reflow_two_atoms,
    solution_shrunk_crowd_fid,
    solution_snr_one_step,
    solution_static_share,
    solution_x0_error,
)
from .clip import check_blind_clip_loss, check_clip_loss, solution_blind_clip_loss, solution_clip_loss
from .one_step import check_consistency_scalings, check_meanflow_jump, solution_consistency_scalings, solution_meanflow_jump
from .transformers import check_patchify_alone, check_untrained_dit, solution_patchify, solution_untrained_dit
from .text_diffusion import check_stickers_left, check_unmask_step, solution_stickers_left, solution_unmask_step
from .sampling import (
    TinyDenoiser,
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

#: every exercise: name → (check, reference solution); questions (see :data:`QUESTIONS`) and function exercises
EXERCISES: dict[str, tuple[Callable[..., bool], Callable[..., Any]]] = {
    "00_static_share": (check_static_share, solution_static_share),
    "00_cheat_eraser": (check_cheat_eraser, solution_cheat_eraser),
    "01_posterior_variance": (check_posterior_variance, solution_posterior_variance),
    "01_q_sample": (check_q_sample, solution_q_sample),
    "02_snr_one_step": (check_snr_one_step, solution_snr_one_step),
    "02_cosine_schedule": (check_cosine_schedule, solution_cosine_schedule),
    "03_x0_error": (check_x0_error, solution_x0_error),
    "03_to_x0": (check_to_x0, solution_to_x0),
    "04_lazy_eraser": (check_lazy_eraser, solution_lazy_eraser),
    "04_training_loss": (check_training_loss, solution_training_loss),
    "04_tweedie": (check_tweedie, solution_tweedie),
    "04_loss_floor": (check_loss_floor, solution_loss_floor),
    "05_last_step_weights": (check_last_step_weights, solution_last_step_weights),
    "05_ddpm_step": (check_ddpm_step, solution_ddpm_step),
    "06_ddim_as_ddpm": (check_ddim_as_ddpm, solution_ddim_as_ddpm),
    "06_ddim_step": (check_ddim_step, solution_ddim_step),
    "07_classifier_guidance": (check_classifier_guidance, solution_classifier_guidance),
    "07_cfg_as_critic_scale": (check_cfg_as_critic_scale, solution_cfg_as_critic_scale),
    "07_cfg_sampler": (check_cfg_sampler, solution_cfg_sampler),
    "08_prompt_guidance": (check_prompt_guidance, solution_prompt_guidance),
    "09_negative_elbo": (check_negative_elbo, solution_negative_elbo),
    "10_shrunk_crowd_fid": (check_shrunk_crowd_fid, solution_shrunk_crowd_fid),
    "10_fid": (check_fid, solution_fid),
    "11_cross_attention": (check_cross_attention, solution_cross_attention),
    "12_flow_euler": (check_flow_euler, solution_flow_euler),
    "12_reflow_two_atoms": (check_reflow_two_atoms, solution_reflow_two_atoms),
    "13_clip_loss": (check_clip_loss, solution_clip_loss),
    "13_blind_clip_loss": (check_blind_clip_loss, solution_blind_clip_loss),
    "14_patchify": (check_patchify_alone, solution_patchify),
    "14_untrained_dit": (check_untrained_dit, solution_untrained_dit),
    "15_consistency_scalings": (check_consistency_scalings, solution_consistency_scalings),
    "15_meanflow_jump": (check_meanflow_jump, solution_meanflow_jump),
    "16_unmask_step": (check_unmask_step, solution_unmask_step),
    "16_stickers_left": (check_stickers_left, solution_stickers_left),
}

#: the exercises answered by a value: ``check(answer, *inputs)`` with ``answer = solution(*inputs)``
QUESTIONS: frozenset[str] = frozenset({
    "00_static_share", "02_snr_one_step", "03_x0_error", "04_lazy_eraser", "04_loss_floor", "05_last_step_weights",
    "07_cfg_as_critic_scale", "10_shrunk_crowd_fid", "12_reflow_two_atoms",
    "13_blind_clip_loss", "14_untrained_dit", "15_meanflow_jump", "16_stickers_left",
})

__all__ = ["EXERCISES", "NotTried", "QUESTIONS", "TinyDenoiser", "attempt", "check", "compare_to", *sorted(n for pair in EXERCISES.values() for n in
                                                                 (pair[0].__name__, pair[1].__name__))]
