"""Every model the chapters share, trained once, cached under ``settings.runs_dir()`` and verified on load.

One recipe, :func:`~.core.train_once` (:mod:`.core`), serves them all: a finished checkpoint whose sha256,
model config, training config, schedule (or objective) and data all match is loaded in seconds; a partial
one is resumed exactly; otherwise the model is trained from scratch. Each model has its own module:

- :mod:`.digits` — :func:`digits_model`, the chapter-04 MNIST U-Net, unconditional or class-conditional (chapters 04–07, 10);
  in the ``cpu`` profile the class-conditional one ships in ``course_lib/weights`` (:mod:`course_lib.shipped`);
- :mod:`.classifier` — :func:`digits_noisy_classifier`, the noise-aware digit classifier of classifier guidance (chapter 07);
- :mod:`.prompt` — :func:`prompt_model`, the chapter-08 prompt-conditioned U-Net on captioned cats and dogs;
- :mod:`.race` — :func:`vae_model`, :func:`gan_model` and :func:`digits_race_model`, chapter 09's race of the three families;
- :mod:`.flows` — :func:`flow_digits_model`, the chapter-04 U-Net trained by flow matching at the chapter-04 budget, and
  :func:`reflow_digits_model`, its 2-rectified copy (chapter 12); in the ``cpu`` profile both ship in
  ``course_lib/weights`` (:mod:`course_lib.shipped`).

Everything is importable from here: ``from course_lib.pretrained import digits_model``.
"""

from ..callbacks import KeepCheckpoint
from .classifier import classifier_train_config, digits_noisy_classifier, noisy_classifier_accuracy
from .core import CARD_FILE, card_scores, run_info, train_once
from .digits import (
    COND_CARD_INFO,
    COND_CPU_STEPS,
    COND_PREDICTION_TYPE,
    COND_SHIPPED,
    DIGITS_NUM_CLASSES,
    DIGITS_SCHEDULE,
    RACE_STEPS,
    cond_identity,
    digits_model,
    digits_run_name,
    digits_train_config,
)
from .flows import (
    FLOW_REFLOW_PAIR_STEPS,
    FLOW_REFLOW_PAIRS,
    FLOW_REFLOW_SAMPLER,
    flow_digits_model,
    flow_identity,
    flow_train_config,
    reflow_digits_model,
    reflow_identity,
    reflow_pairs_for,
    reflow_train_config,
)
from .prompt import (
    HELD_OUT,
    PROMPT_PREDICTION_TYPE,
    PROMPT_SCHEDULE,
    PromptRecipe,
    build_prompt_model,
    prompt_model,
    prompt_recipe,
)
from .race import VAE_DECODER_STD, digits_race_model, gan_model, gan_train_config, vae_model, vae_train_config

__all__ = [
    "CARD_FILE", "COND_CARD_INFO", "COND_CPU_STEPS", "COND_PREDICTION_TYPE", "COND_SHIPPED", "DIGITS_NUM_CLASSES", "DIGITS_SCHEDULE",
    "FLOW_REFLOW_PAIR_STEPS", "FLOW_REFLOW_PAIRS", "FLOW_REFLOW_SAMPLER", "HELD_OUT", "KeepCheckpoint", "PROMPT_PREDICTION_TYPE",
    "PROMPT_SCHEDULE", "PromptRecipe", "RACE_STEPS", "VAE_DECODER_STD", "build_prompt_model", "card_scores",
    "classifier_train_config", "cond_identity", "digits_model", "digits_noisy_classifier", "digits_race_model", "digits_run_name",
    "digits_train_config", "flow_digits_model", "flow_identity", "flow_train_config", "gan_model", "gan_train_config",
    "noisy_classifier_accuracy", "prompt_model", "prompt_recipe", "reflow_digits_model", "reflow_identity", "reflow_pairs_for",
    "reflow_train_config", "run_info", "train_once", "vae_model", "vae_train_config",
]
