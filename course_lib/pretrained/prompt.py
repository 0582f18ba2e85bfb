"""The chapter-08 prompt-conditioned U-Net on captioned cats and dogs: its recipe per profile, trained once and cached."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import torch

from ..captions import ATTRIBUTE_VALUES, resolve_combo, tokenize
from ..data import HATS_TRAIN_SEED
from ..hats import make_hats_dataset
from ..models.text import PromptDenoiser, TextEncoder, TextEncoderConfig
from ..models.unet import UNet, UNetConfig
from ..optim import TrainConfig
from ..registry import Recipe, obtain, register
from ..schedules import NoiseSchedule, make_schedule
from ..settings import Profile, ResolvedProfile, check_bool, resolve_profile

PROMPT_SCHEDULE = "cosine"  # small pictures: the cosine schedule keeps more signal for longer (chapter 02)
# v-prediction (Salimans & Ho 2022, §4): with the cosine schedule's nearly pure noise at large t, an
# ε-predicting net's x̂₀ = (x_t − √(1−ᾱ_t) ε̂)/√ᾱ_t blows its small errors up by 1/√ᾱ_t. The cpu recipe's
# prompt accuracy with ε and with v: README "Performance" → "Prompt model (chapter 08)".
PROMPT_PREDICTION_TYPE = "v_prediction"
HELD_OUT: tuple[tuple[str, ...], ...] = (("dog", "green"),)  # never in the default training set
PROMPT_CPU_STEPS = 10_000  # the shipped cpu prompt model (about 20 min on one thread; the card's info.train_seconds)
PROMPT_SHIPPED_PROFILES = ("cpu",)  # the default record (HELD_OUT) ships for these profiles
#: the keys of the prompt model's info that its shipped card keeps
PROMPT_CARD_INFO = ("train_seconds", "steps", "config", "train_config", "profile", "losses")


@dataclass(frozen=True)
class PromptRecipe:
    """Everything that fixes the prompt model of one profile: the nets, the training and the data size."""

    unet: UNetConfig
    text: TextEncoderConfig
    train: TrainConfig
    num_images: int  # training pictures drawn by make_hats_dataset
    num_steps: int  # sampling steps used by the benchmark and the notebook
    per_prompt: int  # benchmark pictures per prompt


def _prompt_train_config(steps: int, batch_size: int, lr: float, warmup: int, checkpoint_every: int,
                         ema_decay: float) -> TrainConfig:
    return TrainConfig(steps=steps, batch_size=batch_size, lr=lr, warmup=warmup, checkpoint_every=checkpoint_every,
                       ema_decay=ema_decay, cond_drop_prob=0.1, prediction_type=PROMPT_PREDICTION_TYPE)


def prompt_recipe(profile: Profile = "auto") -> PromptRecipe:
    """The prompt model's recipe for ``smoke`` (seconds), ``cpu`` (shipped) or ``gpu``.

    The ``cpu`` recipe is chapter 04's digits U-Net in colour (attention at 8×8 and 4×4) with a one-layer
    text encoder, v-prediction on the cosine schedule (:data:`PROMPT_PREDICTION_TYPE`), trained like
    chapter 07's clean class-conditional digits: batch 64, peak lr 2e-3, EMA 0.999, condition dropout 0.1,
    and long enough: :data:`PROMPT_CPU_STEPS` steps on 20,000 captioned pictures. The 2,000-step recipe it
    replaces drew blurry, speckled animals whose top corners were about 5× as rough as the data's
    (README "Performance" → "Prompt model (chapter 08)"; issue 26). Too long for a chapter, so it ships
    (:func:`prompt_model`; ``benchmarks/train_prompts.py`` trains and writes it, its card keeps the
    training seconds and the scores).
    """
    prof: ResolvedProfile = resolve_profile(profile)
    if prof == "smoke":
        unet = UNetConfig(image_size=32, in_channels=3, base_channels=8, channel_mults=(1, 2), num_res_blocks=1,
                          attention_resolutions=(), patch_size=2, norm_groups=4, head_channels=8, cond_dim=16)
        text = TextEncoderConfig(width=16, num_layers=1, num_heads=2, out_dim=16)
        return PromptRecipe(unet, text, _prompt_train_config(8, 8, 2e-3, 2, 0, 0.9), num_images=64, num_steps=4,
                            per_prompt=1)
    if prof == "cpu":  # ships (PROMPT_SHIPPED): see prompt_recipe's docstring for why these numbers
        unet = UNetConfig(image_size=32, in_channels=3, base_channels=32, channel_mults=(1, 2, 2), num_res_blocks=1,
                          attention_resolutions=(8, 4), patch_size=2, norm_groups=8, head_channels=32, cond_dim=64)
        text = TextEncoderConfig(width=64, num_layers=1, num_heads=4, out_dim=64)
        return PromptRecipe(unet, text, _prompt_train_config(PROMPT_CPU_STEPS, 64, 2e-3, 100, 1000, 0.999),
                            num_images=20_000, num_steps=30, per_prompt=8)
    unet = UNetConfig(image_size=32, in_channels=3, base_channels=64, channel_mults=(1, 2, 2), num_res_blocks=2,
                      attention_resolutions=(8, 4), patch_size=2, norm_groups=16, head_channels=32, cond_dim=128)
    text = TextEncoderConfig(width=128, num_layers=2, num_heads=4, out_dim=128)
    return PromptRecipe(unet, text, _prompt_train_config(8000, 256, 1e-3, 300, 1000, 0.9995), num_images=20_000,
                        num_steps=50, per_prompt=32)


def build_prompt_model(recipe: PromptRecipe) -> PromptDenoiser:
    """A fresh (untrained) :class:`PromptDenoiser` of ``recipe``'s shape, seeded by its training seed."""
    torch.manual_seed(recipe.train.seed)  # the initial weights are part of the recipe
    return PromptDenoiser(UNet(recipe.unet), TextEncoder(recipe.text))


def exclude_slug(exclude: Sequence[Any]) -> str:
    """A run-directory suffix naming the held-out combinations, e.g. ``-without-dog-green``."""
    parts = ["-".join(ATTRIBUTE_VALUES[name][i].replace(" ", "") for name, i in resolve_combo(combo).items())
             for combo in exclude]
    return "-without-" + "+".join(parts) if parts else ""


def prompt_model(
    profile: Profile = "auto", *, run_dir: str | os.PathLike | None = None, exclude: Iterable[Any] = HELD_OUT,
    device: str | torch.device | None = None, progress: bool = True, retrain: bool = False,
) -> tuple[PromptDenoiser, NoiseSchedule, dict[str, Any]]:
    """The chapter-08 prompt-conditioned U-Net, trained on captioned cats and dogs, once, then cached.

    Data: ``make_hats_dataset(recipe.num_images, seed=HATS_TRAIN_SEED, exclude=exclude)`` and the
    tokenized captions; ``exclude`` (default :data:`HELD_OUT`: no dog ever wears a green hat)
    holds combinations out (see :func:`course_lib.captions.excluded_mask` for the entry format).
    Training: :func:`course_lib.training.train` with condition dropout 0.1 (the empty prompt), so
    the model supports classifier-free guidance. With the default ``exclude`` in a profile of
    :data:`PROMPT_SHIPPED_PROFILES` (``cpu``) the model ships: ``course_lib/weights/prompts_without_dog_green.*``
    (:data:`PROMPTS`; sha256 and recipe checked; ``benchmarks/train_prompts.py`` writes it, its card keeps the
    training seconds and scores); ``retrain=True`` or a ``run_dir`` trains it here instead. Otherwise
    ``run_dir`` defaults to ``runs/prompts-<profile>[-without-…]`` (:func:`prompt_record`,
    :func:`course_lib.registry.obtain`).

    Returns ``(ema_model, schedule, info)``; info keys: ``train_seconds``, ``steps``, ``config``,
    ``train_config``, ``schedule``, ``profile``, ``run_dir``, ``losses``, ``cached``,
    ``num_images``, ``exclude`` and ``recipe_num_steps``; a shipped model's info also has ``shipped``,
    ``sha256`` and ``threads`` (``run_dir`` None). The model carries ``prediction_type``.
    """
    check_bool("progress", progress)
    prof = resolve_profile(profile)
    exclude = [tuple(c) if isinstance(c, (list, tuple, set, frozenset)) else c for c in exclude]
    for combo in exclude:
        resolve_combo(combo)  # a typo fails here, naming the allowed values
    record = PROMPTS if _same_combos(exclude, HELD_OUT) else prompt_record(exclude)  # only the default ships
    model, info = obtain(record, prof, run_dir=run_dir, device=device, progress=progress, retrain=retrain)
    model.prediction_type = PROMPT_PREDICTION_TYPE  # what train() sets on a trained denoiser (and a shipped one needs)
    return model, make_schedule(PROMPT_SCHEDULE), {
        **info, "schedule": PROMPT_SCHEDULE, "num_images": prompt_recipe(prof).num_images,
        "exclude": [list(c) if isinstance(c, tuple) else c for c in exclude], "recipe_num_steps": prompt_recipe(prof).num_steps}


def _captioned_hats(profile: str, exclude: Sequence[Any]) -> tuple[torch.Tensor, torch.Tensor]:
    recipe = prompt_recipe(profile)
    data = make_hats_dataset(recipe.num_images, size=recipe.unet.image_size, seed=HATS_TRAIN_SEED, exclude=exclude)
    return data.images, tokenize(data.captions)  # (N, 3, H, W), (N, MAX_PROMPT_LENGTH)


def _same_combos(a: Iterable[Any], b: Iterable[Any]) -> bool:
    """Do two ``exclude`` lists hold out the same combinations (in any order and spelling)?"""
    return sorted(map(lambda c: sorted(resolve_combo(c).items()), a)) == sorted(map(lambda c: sorted(resolve_combo(c).items()), b))


def prompt_record(exclude: Sequence[Any] = HELD_OUT, *, shipped: tuple[str, ...] = ()) -> Recipe:
    """Chapter 08's prompt model with the combinations ``exclude`` held out, as a record (``runs/prompts-<profile>…``).

    ``shipped``: the profiles whose weights ship (only :data:`PROMPTS`, the default held-out set, has any)."""
    exclude = list(exclude)
    return Recipe(name="prompts" + exclude_slug(exclude).replace("-", "_"), chapter="08",
                  build=lambda p: build_prompt_model(prompt_recipe(p)), objective=lambda p: make_schedule(PROMPT_SCHEDULE),
                  train_config=lambda p: prompt_recipe(p).train, data=lambda p: _captioned_hats(p, exclude),
                  run_name=lambda p: f"prompts-{p}{exclude_slug(exclude)}", shipped=shipped,
                  card_info=PROMPT_CARD_INFO, loss_every=40, script="python benchmarks/train_prompts.py")


#: the default prompt model (no dog in a green hat); ships for the cpu profile as course_lib/weights/prompts_without_dog_green.*
PROMPTS = register(prompt_record(HELD_OUT, shipped=PROMPT_SHIPPED_PROFILES))
