"""course_lib — the companion package of the diffusion course.

One concept per module (see DESIGN.md): ``settings``, ``schedules``, ``forward``, ``models``,
``training``, ``checkpoints``, ``samplers``, ``guidance``, ``data``, ``metrics``, ``viz``,
``widgets``, ``distributed`` (torchrun/DDP helpers), ``results`` (recorded figures, tables),
``sweep``, ``train`` (``python -m course_lib.train``). Import what a chapter needs from its module, e.g.
``from course_lib.schedules import make_schedule``.
"""

__version__ = "0.1.0"
