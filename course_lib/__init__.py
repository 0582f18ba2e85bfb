"""course_lib — the companion package of the diffusion course.

One concept per module; imports run one way, from the ground up (docs/architecture.md, "The layers,
bottom up", which also says what each module owns):

1. ground: ``settings`` (profiles, device, checks, paths), ``checkpoints``, ``results``, ``claims``,
   ``data``, ``captions`` → ``hats`` → ``scenes``;
2. diffusion math: ``schedules`` → ``forward`` → ``guidance``;
3. sampling: ``sampler_inputs``, ``solvers`` → ``samplers``, ``flow``;
4. networks: ``models``;
5. training: ``objectives``, ``distributed`` → ``training`` → ``callbacks``, ``adversarial``;
6. shared models: ``shipped``, ``pretrained`` → ``train`` (``python -m course_lib.train``);
7. measuring: ``margins`` → ``metrics`` → ``evaluation`` → ``steps_table``;
8. chapter tools: ``prompts``, ``families``, ``latent``, ``viz``, ``widgets``, ``exercises``, ``sweep``.

Import what a chapter needs from its module, e.g. ``from course_lib.schedules import make_schedule``.
"""

__version__ = "0.1.0"
