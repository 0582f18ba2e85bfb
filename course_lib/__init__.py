"""course_lib — the companion package of the diffusion course.

One concept per module (see DESIGN.md); imports run upward only, in chapter order:
``settings`` → ``schedules`` (β, ᾱ(t), σ(t), timesteps) → ``forward`` (q_sample, posterior,
ε/x₀/v) → ``guidance`` (CFG and classifier-guidance math) → ``solvers`` (σ-space samplers) →
``samplers`` (DDPM/DDIM steps, ``sample``) → ``models`` → ``checkpoints`` → ``training`` (one
loop, objectives, callbacks) → ``pretrained`` (train once, cache, verify) → ``metrics`` (pure:
features → numbers) → ``evaluation`` and ``steps_table`` (sampling for evaluation) → ``prompts``,
``viz``, ``widgets``, ``exercises``, ``results`` (recorded figures, tables),
``sweep``, ``distributed`` (torchrun/DDP helpers) below ``training``, ``train`` (``python -m course_lib.train``). ``data``, ``captions`` (vocabulary, tokenizer)
and ``hats`` (the drawn world) sit low, next to ``settings``.
Import what a chapter needs from its module, e.g. ``from course_lib.schedules import make_schedule``.
"""

__version__ = "0.1.0"
