"""Every model the chapters share, trained once, cached under ``settings.runs_dir()`` and verified on load.

Each model is one record of the registry (:mod:`course_lib.registry`), and one function obtains them all
(:func:`course_lib.registry.obtain`): shipped weights where a profile ships them (sha256 and recipe checked),
else a finished checkpoint whose sha256, model config, training config, schedule (or objective) and data all
match, loaded in seconds; a partial one is resumed exactly; otherwise the model is trained from scratch. The
functions here obtain a record and add what their chapter needs. Each model has its own module:

- :mod:`.digits` — :func:`digits_model`, the chapter-04 MNIST U-Net, unconditional or class-conditional (chapters 04–07, 10);
  in the ``cpu`` profile the class-conditional one ships in ``course_lib/weights``;
- :mod:`.classifier` — :func:`digits_noisy_classifier`, the noise-aware digit classifier of classifier guidance (chapter 07);
- :mod:`.prompt` — :func:`prompt_model`, the chapter-08 prompt-conditioned U-Net on captioned cats and dogs;
  in the ``cpu`` profile it ships in ``course_lib/weights``;
- :mod:`.race` — :func:`vae_model`, :func:`gan_model` and :func:`digits_race_model`, chapter 09's race of the three families;
- :mod:`.flows` — :func:`flow_digits_model`, the chapter-04 U-Net trained by flow matching at the chapter-04 budget, and
  :func:`reflow_digits_model`, its 2-rectified copy (chapter 12); in the ``cpu`` profile both ship in
  ``course_lib/weights``.

Everything is importable from here: ``from course_lib.pretrained import digits_model``.
"""

from ..callbacks import KeepCheckpoint
from ..registry import CARD_FILE, card_scores
from .classifier import (
    NOISY_CLASSIFIER, classifier_train_config, digits_noisy_classifier, noisy_classifier_accuracy, noisy_classifier_recipe,
)
from .digits import (
    COND_CARD_INFO, COND_CPU_STEPS, COND_PREDICTION_TYPE, COND_SHIPPED, DIGITS, DIGITS_COND, DIGITS_NUM_CLASSES, DIGITS_RACE,
    DIGITS_SCHEDULE, RACE_STEPS, cond_identity, digits_model, digits_run_name, digits_train_config,
)
from .flows import (
    FLOW, FLOW_REFLOW_PAIR_STEPS, FLOW_REFLOW_PAIRS, FLOW_REFLOW_SAMPLER, REFLOW, flow_digits_model, flow_identity,
    flow_train_config, reflow_digits_model, reflow_identity, reflow_pairs_for, reflow_train_config,
)
from .onestep import CONSISTENCY, CONSISTENCY_FREE, MEANFLOW, consistency_model, meanflow_model
from .prompt import (
    HELD_OUT, PROMPT_CARD_INFO, PROMPT_CPU_STEPS, PROMPT_PREDICTION_TYPE, PROMPT_SCHEDULE, PROMPT_SHIPPED_PROFILES, PROMPTS,
    PromptRecipe, build_prompt_model, exclude_slug, prompt_model,
    prompt_recipe, prompt_record,
)
from .race import (
    GAN, VAE_DECODER_STD, VAE_RECIPE, digits_race_model, gan_model, gan_train_config, vae_model, vae_recipe, vae_train_config,
)

#: the records this package registers (course_lib.registry.RECIPES holds them all)
RECORDS = (DIGITS, DIGITS_RACE, DIGITS_COND, NOISY_CLASSIFIER, PROMPTS, VAE_RECIPE, GAN, FLOW, REFLOW, CONSISTENCY,
           CONSISTENCY_FREE, MEANFLOW)

__all__ = [
    "CONSISTENCY", "CONSISTENCY_FREE", "MEANFLOW", "consistency_model", "meanflow_model",
    "CARD_FILE", "COND_CARD_INFO", "COND_CPU_STEPS", "COND_PREDICTION_TYPE", "COND_SHIPPED", "DIGITS", "DIGITS_COND",
    "DIGITS_NUM_CLASSES", "DIGITS_RACE", "DIGITS_SCHEDULE", "FLOW", "FLOW_REFLOW_PAIR_STEPS", "FLOW_REFLOW_PAIRS",
    "FLOW_REFLOW_SAMPLER", "GAN", "HELD_OUT", "KeepCheckpoint", "NOISY_CLASSIFIER", "PROMPTS", "PROMPT_CARD_INFO",
    "PROMPT_CPU_STEPS", "PROMPT_PREDICTION_TYPE", "PROMPT_SCHEDULE", "PROMPT_SHIPPED_PROFILES", "PromptRecipe", "RACE_STEPS", "RECORDS", "REFLOW", "VAE_DECODER_STD", "VAE_RECIPE",
    "build_prompt_model", "card_scores", "classifier_train_config", "cond_identity", "digits_model",
    "digits_noisy_classifier", "digits_race_model", "digits_run_name", "digits_train_config", "exclude_slug",
    "flow_digits_model", "flow_identity", "flow_train_config", "gan_model", "gan_train_config", "noisy_classifier_accuracy",
    "noisy_classifier_recipe", "prompt_model", "prompt_recipe", "prompt_record", "reflow_digits_model", "reflow_identity",
    "reflow_pairs_for", "reflow_train_config", "vae_model", "vae_recipe", "vae_train_config",
]
