"""Prompts in, pictures out: generating from and scoring word prompts, "a cat wearing a hat" (chapter 08).

The whole pipeline of a text-to-image diffusion model, small enough for a laptop:

1. **data** — :func:`course_lib.hats.make_hats_dataset`: cartoon cats and dogs with captions;
2. **tokenizer** — :func:`course_lib.captions.tokenize`: words → ids, padded; "" is all padding;
3. **text encoder + denoiser** — :class:`course_lib.models.text.PromptDenoiser`: a tiny
   transformer turns the ids into one vector that the U-Net adds to its time embedding; both are
   trained together by :func:`course_lib.training.train` with condition dropout (10 % of the
   captions are replaced by "no prompt"), so the same network also learns the unconditional
   prediction; the network predicts v (:data:`PROMPT_PREDICTION_TYPE`) on the cosine schedule;
4. **sampling with classifier-free guidance** — :func:`generate_from_prompts`: ε̃ = ε_∅ + s·(ε_c − ε_∅)
   (Ho & Salimans 2022, eq. 6; s = ``guidance_scale``, s = 1 unguided, w = s − 1);
5. **checking** — :func:`prompt_benchmark` asks the shipped attribute classifier
   (:mod:`course_lib.models.attributes`) whether each picture shows everything its prompt asked for.

The prompt model itself (recipe, training once, cache) is :func:`course_lib.pretrained.prompt_model`.

By default the training set never shows a dog in a green hat (:data:`HELD_OUT`), so the same model
also answers "can it draw a combination it never saw?" (:data:`UNSEEN_PROMPTS`).
"""

from __future__ import annotations

import time
from typing import Any, Iterable, Sequence

import torch

from .captions import ANIMALS, HAT_COLOURS, excluded_mask, parse_prompt, resolve_combo, tokenize
from .evaluation import Batch, sample_in_batches
from .models.text import PromptDenoiser
from .pretrained import HELD_OUT, PROMPT_PREDICTION_TYPE, PROMPT_SCHEDULE, prompt_model, prompt_recipe
from .samplers import SAMPLERS, Sampler, sample
from .schedules import NoiseSchedule, make_schedule
from .settings import Profile, check_bool, check_choice, check_float, check_int

DEFAULT_GUIDANCE = 3.0
UNSEEN_PER_PROMPT_FACTOR = 4  # the benchmark draws 4× as many pictures of each held-out prompt (one prompt, a finer share)


def seen_prompts(exclude: Iterable[Any] = HELD_OUT) -> list[str]:
    """The animal × hat prompts of the benchmark, minus combinations held out of training.

    "a cat wearing a red hat", …, "a dog with no hat": 2 animals × (5 hat colours + no hat).
    """
    prompts = [f"a {a} wearing a {c} hat" for a in ANIMALS for c in HAT_COLOURS] + [f"a {a} with no hat" for a in ANIMALS]
    exclude = list(exclude)
    if not exclude:
        return prompts
    held = excluded_mask(torch.stack([parse_prompt(p) for p in prompts]), exclude)
    return [p for p, h in zip(prompts, held.tolist()) if not h]


def unseen_prompts(exclude: Iterable[Any] = HELD_OUT) -> list[str]:
    """One prompt per held-out combination (e.g. ``("dog", "green")`` → "a dog wearing a green hat")."""
    out = []
    for combo in exclude:
        c = resolve_combo(combo)
        animal = ANIMALS[c["animal"]] if "animal" in c else "cat"
        if "hat_colour" in c:
            out.append(f"a {animal} wearing a {HAT_COLOURS[c['hat_colour']]} hat")
        elif c.get("hat") == 0:
            out.append(f"a {animal} with no hat")
        else:
            out.append(f"a {animal} wearing a hat")
    return out


UNSEEN_PROMPTS: list[str] = unseen_prompts()


# ----------------------------------------------------------------------------- prompts → pictures
def _check_prompts(prompts: Any) -> list[str]:
    if isinstance(prompts, str) or not isinstance(prompts, Sequence) or not all(isinstance(p, str) for p in prompts):
        raise ValueError(f"prompts must be a list of strings, e.g. ['a cat wearing a red hat'], got {prompts!r:.80}")
    if len(prompts) == 0:
        raise ValueError("prompts is empty; give at least one prompt ('' asks for an unconditional picture)")
    return list(prompts)


def generate_from_prompts(
    model: PromptDenoiser,
    prompts: Sequence[str],
    *,
    guidance_scale: float = DEFAULT_GUIDANCE,
    num_steps: int = 30,
    sampler: Sampler = "dpmpp_2m_sde",
    seed: int = 0,
    per_prompt: int = 1,
    schedule: NoiseSchedule | None = None,
    clip_sample: bool = True,
    progress: bool = False,
) -> torch.Tensor:
    """Pictures for ``prompts``: (len(prompts)·per_prompt, 3, H, W) in [-1, 1], prompt by prompt.

    Each prompt is tokenized (:func:`course_lib.captions.tokenize`: an unknown word raises ValueError
    listing the vocabulary; ``""`` is the empty prompt) and sampled from pure noise with
    ``sampler`` (default: chapter 06's recommendation, SDE-DPM-Solver++(2M) on Karras steps) in
    ``num_steps`` steps and classifier-free guidance ε̃ = ε_∅ + s·(ε_c − ε_∅),
    s = ``guidance_scale`` (0: ignore the prompt, 1: plain conditional, > 1: guided; chapter 07).
    The same ``seed`` gives the same pictures. ``schedule``: the one the model was trained with
    (default: the prompt model's, :data:`PROMPT_SCHEDULE`); the network's output is read as
    :data:`PROMPT_PREDICTION_TYPE`. ``clip_sample`` clamps each step's clean-picture guess x̂₀ to
    [-1, 1] (as DDPM does for pixel images), which keeps strongly guided samples in range.
    """
    prompts = _check_prompts(prompts)
    tokens = tokenize(prompts)  # validates every word first: (P, L)
    if not isinstance(model, PromptDenoiser):
        raise ValueError(f"model must be a PromptDenoiser (course_lib.pretrained.prompt_model), got {type(model).__name__}")
    guidance_scale = check_float("guidance_scale", guidance_scale, min_value=0.0)
    num_steps = check_int("num_steps", num_steps, min_value=1, max_value=1000)
    check_choice("sampler", sampler, SAMPLERS)
    seed = check_int("seed", seed, min_value=0, max_value=2**63 - 1)
    per_prompt = check_int("per_prompt", per_prompt, min_value=1)
    check_bool("clip_sample", clip_sample)
    check_bool("progress", progress)
    schedule = schedule if schedule is not None else make_schedule(PROMPT_SCHEDULE)
    if not isinstance(schedule, NoiseSchedule):
        raise ValueError(f"schedule must be a NoiseSchedule, got {type(schedule).__name__}")
    cond = tokens.repeat_interleave(per_prompt, dim=0)  # (P·per_prompt, L), prompt by prompt
    cfg = model.config.unet

    def draw(batch: Batch) -> torch.Tensor:
        shape = (batch.size, cfg.in_channels, cfg.image_size, cfg.image_size)
        return sample(model, schedule, shape, sampler=sampler, num_steps=num_steps, cond=batch.cond,
                      guidance_scale=guidance_scale, generator=batch.generator, progress=progress,
                      prediction_type=PROMPT_PREDICTION_TYPE, clip_sample=clip_sample)

    return sample_in_batches(draw, cond.shape[0], seed=seed, cond=cond)


# ----------------------------------------------------------------------------- does the picture match the prompt?
def score_prompts(images: torch.Tensor, prompts: Sequence[str], per_prompt: int) -> dict[str, Any]:
    """Prompt accuracy of pictures made by :func:`generate_from_prompts` (prompt by prompt, ``per_prompt`` each).

    Returns ``prompt_accuracy`` (share with *every* requested attribute recognised by the shipped
    attribute classifier), ``per_attribute`` ({attribute: share}) and ``per_prompt`` ({prompt: share}).
    """
    from .models.attributes import attribute_accuracies, predict_attributes

    attrs = torch.stack([parse_prompt(p) for p in prompts]).repeat_interleave(per_prompt, dim=0)  # (N, 4)
    pred = predict_attributes(images)
    asked = attrs != -1
    ok = ((pred == attrs) | ~asked).all(1).float()  # (N,)
    per_attr = attribute_accuracies(images, attrs)
    return {
        "prompt_accuracy": float(ok.mean()),
        "per_attribute": {k: v for k, v in per_attr.items() if v == v},  # drop NaN: nobody asked
        "per_prompt": {p: float(o.mean()) for p, o in zip(prompts, ok.view(len(prompts), per_prompt))},
    }


CORNER = 6  # the top corners' CORNER × CORNER patches show only background in (almost) every hats picture


def background_speckle(images: torch.Tensor) -> float:
    """How speckled the plain backgrounds of hats pictures (N, 3, H, W) in [-1, 1] are, in 8-bit levels (0–255).

    The top-left and top-right :data:`CORNER` × :data:`CORNER` pixels of a hats picture are background
    (:func:`course_lib.hats.draw_animals` keeps the animal and its hat away from them; something else
    reaches a corner in under 1 % of pictures, 14 of 2,000 measured): one colour per row, the soft vertical
    shade changing only from row to row. The score is the root-mean-square deviation of each corner row from
    its own mean, over every picture, channel, row and corner — 0 for a flat background. 1,000 real pictures
    give 0.3–0.7 (those few); chapter 08's shipped model about 1.7, its 300-step run about 28 (README,
    "Performance", "Prompt model (chapter 08)"; issue 26).
    """
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3 or images.shape[-1] < 2 * CORNER:
        got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be hats pictures (N, 3, H, W) in [-1, 1] with H, W >= {2 * CORNER}, got {got}")
    x = (images.detach().float().clamp(-1, 1) + 1) / 2  # [0, 1]
    corners = torch.stack([x[:, :, :CORNER, :CORNER], x[:, :, :CORNER, -CORNER:]])  # (2, N, 3, CORNER, CORNER)
    deviation = corners - corners.mean(-1, keepdim=True)  # from each corner row's own colour
    return float(deviation.pow(2).mean().sqrt() * 255)


def prompt_benchmark(
    profile: Profile = "auto",
    device: str | torch.device | None = None,
    *,
    guidance_scale: float = DEFAULT_GUIDANCE,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """Load (or train) the profile's prompt model and measure how well it follows prompts.

    Pictures: ``recipe.per_prompt`` per prompt of :func:`seen_prompts` (combinations present in
    training) and :data:`UNSEEN_PER_PROMPT_FACTOR` × as many per prompt of :data:`UNSEEN_PROMPTS`
    (held out), drawn by :func:`generate_from_prompts` (chapter 06's sampler) with ``recipe.num_steps``
    steps and guidance s = ``guidance_scale``. Returns ``prompt_accuracy`` (seen prompts, all requested
    attributes right), ``per_attribute``, ``per_prompt``, ``unseen_prompt_accuracy``,
    ``unseen_per_prompt``, ``background_speckle`` (:func:`background_speckle` of all the pictures, 8-bit
    levels), ``guidance_scale``, ``prompt_train_seconds`` (training time, also when the model came from
    its cache or ships), ``prompt_sample_seconds``, ``num_samples``, ``cached``, ``shipped``, ``profile``.
    """
    guidance_scale = check_float("guidance_scale", guidance_scale, min_value=0.0)
    model, schedule, info = prompt_model(profile, device=device, progress=progress)
    recipe = prompt_recipe(info["profile"])
    seen, unseen = seen_prompts(HELD_OUT), list(UNSEEN_PROMPTS)
    n_unseen = UNSEEN_PER_PROMPT_FACTOR * recipe.per_prompt
    tic = time.perf_counter()
    kw = dict(guidance_scale=guidance_scale, num_steps=recipe.num_steps, seed=seed, schedule=schedule)
    seen_images = generate_from_prompts(model, seen, per_prompt=recipe.per_prompt, **kw)
    unseen_images = generate_from_prompts(model, unseen, per_prompt=n_unseen, **kw)
    sample_seconds = time.perf_counter() - tic
    seen_score = score_prompts(seen_images, seen, recipe.per_prompt)
    unseen_score = score_prompts(unseen_images, unseen, n_unseen)
    return {
        "prompt_accuracy": seen_score["prompt_accuracy"],
        "per_attribute": seen_score["per_attribute"],
        "per_prompt": seen_score["per_prompt"],
        "unseen_prompt_accuracy": unseen_score["prompt_accuracy"],
        "unseen_per_prompt": unseen_score["per_prompt"],
        "background_speckle": background_speckle(torch.cat([seen_images, unseen_images])),
        "guidance_scale": guidance_scale,
        "prompt_train_seconds": info["train_seconds"],
        "prompt_sample_seconds": sample_seconds,
        "num_samples": len(seen_images) + len(unseen_images),
        "cached": info["cached"],
        "shipped": bool(info.get("shipped")),
        "profile": info["profile"],
    }


__all__ = [
    "CORNER", "DEFAULT_GUIDANCE", "UNSEEN_PER_PROMPT_FACTOR", "UNSEEN_PROMPTS", "background_speckle", "generate_from_prompts", "prompt_benchmark", "score_prompts", "seen_prompts",
    "unseen_prompts",
]
