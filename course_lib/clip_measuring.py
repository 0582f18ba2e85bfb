"""Chapter 13's measurements: every figure of ``benchmarks/clip.py`` and of the chapter's check cells.

- CLIP itself (:mod:`course_lib.clip`): zero-shot reading of test scenes and of scenes showing the held-out
  compositions, text → picture retrieval among 1,000 test scenes;
- the CLIP score beside chapter 11's scene judge, on pictures chapter 11's latent pipeline draws for its
  held-out compositional and seen prompts (:func:`agreement_pictures`, :func:`course_lib.clip.judge_agreement`);
- negative prompts and prompt weighting on the same pipeline (:mod:`course_lib.negative_prompts`);
- prompt accuracy of the three painters on chapter 11's held-out compositions: chapter 11's own, Stable Diffusion's
  way on the frozen CLIP (:mod:`course_lib.clip_conditioning`) and unCLIP (:mod:`course_lib.unclip`).
"""

from __future__ import annotations

from typing import Any

import torch

from .clip import (
    clip_model,
    held_out_scenes,
    judge_agreement,
    retrieval,
    zero_shot_accuracy,
)
from .hats import HAT_COLOURS
from .latent.pipeline import Pipeline, load_pipeline, text_to_image
from .models.scene_judge import judge_scenes
from .negative_prompts import (
    draw_with,
    negative_prompt_benchmark,
    shows_hat_colour,
    weighted_cfg_model,
)
from .scenes import (
    compositional_prompts,
    parse_scene_prompt,
    scene_caption,
    scene_tokenize,
    seen_scene_prompts,
)
from .settings import Profile, check_int, resolve_profile

#: the chapter's negative-prompt example: any hat asked, and the hat chapter 11's model draws most often refused
NEGATIVE_EXAMPLE = {"prompt": "a cat in a hat on the left", "negative": "a cat in a red hat on the left",
                    "short_negative": "red hat", "colour": HAT_COLOURS.index("red")}
AGREEMENT_SCALES = (1.0, 3.0)  # guidance scales of the agreement pictures: s = 1 errs more often than s = 3


def foil_prompt(prompt: str) -> str:
    """The prompt with one thing changed: the first animal's hat colour (the next of ``HAT_COLOURS``), or, without a
    hat, the animal (cat ↔ dog). A picture that shows ``prompt`` does not show its foil."""
    row = parse_scene_prompt(prompt)
    slot = 0 if int(row[0]) in (0, 1) else 1
    b = 3 * slot
    if int(row[b + 1]) == 1 and int(row[b + 2]) >= 0:
        row[b + 2] = (row[b + 2] + 1) % len(HAT_COLOURS)
    else:
        row[b] = 1 - row[b]
    return scene_caption([max(int(v), 0) if i in (1, 4) else int(v) for i, v in enumerate(row)],
                         with_background=bool(row[6] >= 0))


def agreement_pictures(pipe: Pipeline, per_prompt: int, *, seed: int = 0) -> tuple[torch.Tensor, list[str]]:
    """Pictures drawn by chapter 11's pipeline for its held-out compositional and seen prompts, ``per_prompt``
    each at every guidance scale of :data:`AGREEMENT_SCALES`, each shown twice: with its prompt, then (the second
    half) with the prompt's foil (:func:`foil_prompt`). Returns the pictures and the prompt of each."""
    per_prompt = check_int("per_prompt", per_prompt, min_value=1)
    prompts = compositional_prompts() + seen_scene_prompts()
    images, asked = [], []
    for k, s in enumerate(AGREEMENT_SCALES):
        images.append(text_to_image(pipe, prompts, seed=seed + k, per_prompt=per_prompt, guidance_scale=s))
        asked += [p for p in prompts for _ in range(per_prompt)]
    return torch.cat(images + images), asked + [foil_prompt(p) for p in asked]


def weighting_benchmark(pipe: Pipeline, weights: tuple[float, float], *, per_prompt: int = 32, seed: int = 0) -> dict[str, Any]:
    """Prompt weighting (composable guidance) of :data:`NEGATIVE_EXAMPLE`'s prompt and negative prompt with
    ``weights`` (w_c, w_n): the share with the asked scene, with a red hat, and the pictures."""
    ex = NEGATIVE_EXAMPLE
    cond = scene_tokenize([ex["prompt"], ex["negative"]])[None].expand(per_prompt, -1, -1)  # (B, 2, L)
    images = draw_with(pipe, weighted_cfg_model(pipe.denoiser, weights), cond, seed=seed)
    rows, asked = judge_scenes(images), parse_scene_prompt(ex["prompt"])
    ok, red = ((rows == asked) | (asked == -1)).all(1), shows_hat_colour(rows, ex["colour"])
    return {"asked": float(ok.float().mean()), "unwanted": float(red.float().mean()),
            "success": float((ok & ~red).float().mean()), "images": images}


def clip_benchmark(profile: Profile = "auto", *, seed: int = 0, progress: bool = False) -> dict[str, Any]:
    """Every figure of ``benchmarks/clip.py``: CLIP's own, the agreement with the judge, negative prompts."""
    prof = resolve_profile(profile)
    small = prof == "smoke"
    model, info = clip_model(prof, progress=progress)
    test = held_out_scenes(32 if small else 1000)
    composed = held_out_scenes(8 if small else 200, only_held_out=True)
    out: dict[str, Any] = {"temperature": info["temperature"], "train_seconds": info["train_seconds"]}
    out["zero_shot_accuracy"] = zero_shot_accuracy(model, test.images, test.attributes)["all"]
    out["zero_shot_accuracy_single_phrasing"] = zero_shot_accuracy(model, test.images, test.attributes, ensemble=False)["all"]
    out["zero_shot_accuracy_held_out_compositions"] = zero_shot_accuracy(model, composed.images, composed.attributes)["all"]
    r = retrieval(model, test.images, test.attributes)
    out.update(retrieval_r1=r["r1"], retrieval_r5=r["r5"], retrieval_r1_exact=r["r1_exact"], retrieval_pool=len(test.images))
    pipe = load_pipeline(prof, progress=progress)
    images, prompts = agreement_pictures(pipe, 2 if small else 8, seed=seed)
    agree = judge_agreement(model, images, prompts)
    out.update(clip_judge_agreement=agree["agreement"], judge_accepts=agree["judge"], clip_accepts=agree["clip"],
               clip_score_judge_yes=agree["score_when_judge_yes"], clip_score_judge_no=agree["score_when_judge_no"],
               agreement_pairs=len(images))
    ex, n = NEGATIVE_EXAMPLE, 4 if small else 32
    neg = negative_prompt_benchmark(pipe, ex["prompt"], ex["negative"], ex["colour"], per_prompt=n, seed=seed)
    short = negative_prompt_benchmark(pipe, ex["prompt"], ex["short_negative"], ex["colour"], per_prompt=n, seed=seed)
    weighted = weighting_benchmark(pipe, (pipe.guidance_scale, -1.0), per_prompt=n, seed=seed)
    out.update(negative_prompt_success=neg["negative"]["success"], negative_prompt_red_share=neg["negative"]["unwanted"],
               plain_cfg_success=neg["plain"]["success"], plain_cfg_red_share=neg["plain"]["unwanted"],
               short_negative_success=short["negative"]["success"], short_negative_red_share=short["negative"]["unwanted"],
               weighted_success=weighted["success"], weighted_red_share=weighted["unwanted"], negative_samples=n)
    out.update(painter_figures(prof, pipe, per_prompt=2 if small else 32, seed=seed, progress=progress))
    return out


def painter_figures(profile: str, pipe: Pipeline, *, per_prompt: int, seed: int = 0, progress: bool = False) -> dict[str, Any]:
    """Prompt accuracy on chapter 11's held-out compositions, the same prompts, seeds and judge for three painters:
    chapter 11's own (``pipe``), Stable Diffusion's way on the frozen CLIP, and unCLIP; and unCLIP's variations."""
    from .clip_conditioning import frozen_clip_pipeline
    from .latent import prompt_accuracy
    from .unclip import load_unclip, prior_reading, shows_held_out, side_separation, unclip_prompt_accuracy, variations

    prompts = compositional_prompts()
    frozen_pipe, frozen_info = frozen_clip_pipeline(profile, progress=progress)
    u, infos = load_unclip(profile, progress=progress)
    composed = held_out_scenes(4 if profile == "smoke" else 20, only_held_out=True)
    kept = [float((judge_scenes(variations(u, img, 8, seed=seed)) == row).all(1).float().mean())
            for img, row in zip(composed.images, composed.attributes)]
    own = prompt_accuracy(pipe, prompts, per_prompt=per_prompt, seed=seed)
    drawn = unclip_prompt_accuracy(u, prompts, per_prompt=per_prompt, seed=seed)
    mirror = side_separation(u.clip, [1, 1, 1, 1, 1, 2, 0], seed=seed)  # a held-out scene and its mirror
    return {"prompt_accuracy_chapter11": own["accuracy"],
            "prompt_accuracy_frozen_clip": prompt_accuracy(frozen_pipe, prompts, per_prompt=per_prompt, seed=seed)["accuracy"],
            "prompt_accuracy_unclip": drawn["accuracy"],
            "prompt_accuracy_unclip_vector_only": unclip_prompt_accuracy(u, prompts, per_prompt=per_prompt, seed=seed,
                                                                         caption=False)["accuracy"],
            "shows_held_out_chapter11": shows_held_out(own["images"]), "shows_held_out_unclip": shows_held_out(drawn["images"]),
            "clip_cosine_within_scene": mirror["within"], "clip_cosine_to_mirror": mirror["to_swapped"],
            "prior_reads_as_asked": prior_reading(u, [p for p in prompts for _ in range(per_prompt)], seed=seed)["reads_as_asked"],
            "variations_keep_scene": sum(kept) / len(kept), "frozen_clip_train_seconds": frozen_info["train_seconds"],
            "unclip_train_seconds": infos["prior"]["train_seconds"] + infos["decoder"]["train_seconds"]}


__all__ = ["AGREEMENT_SCALES", "NEGATIVE_EXAMPLE", "agreement_pictures", "clip_benchmark", "foil_prompt", "painter_figures",
           "weighting_benchmark"]
