"""Chapter 11's measurements: prompt accuracy, the edit benchmark, the speed comparison and ``benchmarks/latent.py``."""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import torch

from ..data import SCENES_TEST_SEED
from ..models.autoencoder import Autoencoder, decode_latents, psnr
from ..optim import optimizer_step
from ..samplers import sample
from ..scenes import compositional_prompts, make_scenes, parse_scene_prompt, scene_caption, scene_tokenize
from ..schedules import make_schedule
from ..settings import Profile, resolve_profile
from .editing import img2img
from .pipeline import (
    CONDITIONINGS, DEFAULT_GUIDANCE, DEFAULT_STRENGTH, LATENT_DDIM, LATENT_PREDICTION_TYPE, LATENT_SCHEDULE, LatentRecipe,
    Pipeline, autoencoder_model, build_latent_denoiser, latent_model, latent_recipe, reconstruction_psnr, text_to_image,
)

# ----------------------------------------------------------------------------- measuring
def prompt_accuracy(pipe: Pipeline, prompts: Sequence[str], *, per_prompt: int = 8, seed: int = 0) -> dict[str, Any]:
    """Share of samples in which the scene judge sees everything each prompt asked (side by side).

    Returns ``accuracy`` and ``per_prompt`` ({prompt: share}).
    """
    from ..models.scene_judge import scene_matches

    images = text_to_image(pipe, prompts, seed=seed, per_prompt=per_prompt)
    asked = torch.stack([parse_scene_prompt(p) for p in prompts]).repeat_interleave(per_prompt, 0)
    ok = scene_matches(images, asked).float().view(len(prompts), per_prompt)
    return {"accuracy": float(ok.mean()), "per_prompt": {p: float(o.mean()) for p, o in zip(prompts, ok)},
            "images": images}


def edit_requests(rows: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """For each scene row, the row after one edit to one animal's hat: a new colour, or a hat where there was none.

    The animal edited is drawn at random among those present; the new colour differs from the old.
    """
    gen = torch.Generator().manual_seed(seed)
    out = rows.clone()
    for i, r in enumerate(rows.tolist()):
        slots = [s for s in (0, 1) if r[3 * s] != 2]
        slot = slots[int(torch.randint(len(slots), (1,), generator=gen))]
        old = r[3 * slot + 2] if r[3 * slot + 1] else -1
        colours = [c for c in range(5) if c != old]
        out[i, 3 * slot + 1] = 1
        out[i, 3 * slot + 2] = colours[int(torch.randint(len(colours), (1,), generator=gen))]
    return out


def edit_benchmark(pipe: Pipeline, num_edits: int, *, strengths: Sequence[float] = (DEFAULT_STRENGTH,),
                   seed: int = 0) -> dict[str, Any]:
    """img2img edits of held-out scenes: "give this animal a green hat" as the full caption of the edited scene.

    For each strength: ``success`` (the judge sees the whole edited scene: the asked hat changed, the
    other animal, the places and the background stayed), ``changed`` (the asked hat only),
    ``kept`` (every other column) and ``psnr`` (dB, edited vs original picture: the judge reads
    attributes only, not whether the pose, shape and shading survived). Returns {strength: {...}}
    and the pictures of the first strength.
    """
    from ..models.scene_judge import judge_scenes

    test = make_scenes(num_edits, seed=SCENES_TEST_SEED)
    targets = edit_requests(test.attributes, seed)
    prompts = [scene_caption(r) for r in targets.tolist()]
    edited_col = (targets != test.attributes)
    out: dict[str, Any] = {"results": {}}
    for k, strength in enumerate(strengths):
        images = img2img(pipe, test.images, prompts, strength=strength, seed=seed)
        pred = judge_scenes(images)
        right = pred == targets
        out["results"][float(strength)] = {
            "success": float(right.all(1).float().mean()),
            "changed": float((right | ~edited_col).all(1).float().mean()),
            "kept": float((right | edited_col).all(1).float().mean()),
            "psnr": float(psnr(images, test.images).mean()),  # how close the picture stayed, pixel by pixel
        }
        if k == 0:
            out.update(originals=test.images, edited=images, prompts=prompts)
    return out


def _seconds(fn: Callable[[], Any], repeats: int = 1) -> float:
    best = float("inf")
    for _ in range(repeats):
        tic = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - tic)
    return best


def speed_comparison(recipe: LatentRecipe, *, batch_size: int = 16, train_steps: int = 3, num_steps: int | None = None,
                     ae: Autoencoder | None = None) -> dict[str, float]:
    """Training img/s and seconds per sample, latent vs pixel space, the same network, sampler and steps.

    Seconds per sample: a batch of ``batch_size`` pictures drawn together, divided by ``batch_size``
    (one picture at a time, these small networks are dominated by per-call overheads).

    The pixel model is the same cross-attention U-Net on 64×64×3 (2×2 patchify stem); it is timed
    untrained (the compute per step does not depend on the weights). The latent seconds per sample
    include the decoder. Best of a few repeats; threads as the caller set them.
    """
    steps = recipe.num_steps if num_steps is None else num_steps
    ae = Autoencoder(recipe.autoencoder).eval() if ae is None else ae
    ids = scene_tokenize(["a cat in a red hat on the left and a dog with no hat on the right"] * batch_size)
    schedule = make_schedule(LATENT_SCHEDULE)
    out: dict[str, float] = {}
    for name, pixel in (("latent", False), ("pixel", True)):
        model = build_latent_denoiser(recipe, "crossattn", pixel=pixel)
        shape = (batch_size, 3, 64, 64) if pixel else (batch_size, *recipe.autoencoder.latent_shape)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        x = torch.randn(shape)
        t = torch.randint(0, 1000, (batch_size,))

        def step() -> None:
            optimizer_step(opt, model(x, t, cond=ids).pow(2).mean())

        step()  # warm-up
        out[f"{name}_train_img_s"] = batch_size * train_steps / sum(_seconds(step) for _ in range(train_steps))
        model.eval()

        def draw() -> None:  # a batch of pictures, as one would draw them; seconds per picture below
            z = sample(model, schedule, shape, sampler="ddim", num_steps=steps, cond=ids,
                       guidance_scale=DEFAULT_GUIDANCE, generator=torch.Generator().manual_seed(0), progress=False,
                       prediction_type=LATENT_PREDICTION_TYPE, **LATENT_DDIM)
            if not pixel:
                decode_latents(ae, z)

        out[f"{name}_sample_s"] = _seconds(draw, repeats=2) / batch_size
    out["sample_speedup"] = out["pixel_sample_s"] / out["latent_sample_s"]
    out["train_speedup"] = out["latent_train_img_s"] / out["pixel_train_img_s"]
    return out


def latent_benchmark(profile: Profile = "auto", *, progress: bool = False, seed: int = 0) -> dict[str, Any]:
    """Every figure of ``benchmarks/latent.py`` (and of the chapter's check cells)."""
    prof = resolve_profile(profile)
    recipe = latent_recipe(prof)
    ae, ae_info = autoencoder_model(prof, progress=progress)
    test = make_scenes(500 if prof != "smoke" else 16, seed=SCENES_TEST_SEED)
    result: dict[str, Any] = {
        "recon_psnr": reconstruction_psnr(ae, test.images),
        "compression": recipe.autoencoder.compression,
        "scale_factor": ae_info["scale_factor"],
    }
    result.update(speed_comparison(recipe, ae=ae, batch_size=16 if prof != "smoke" else 2,
                                   train_steps=3 if prof != "smoke" else 1))
    prompts = compositional_prompts()
    for cond in CONDITIONINGS:
        model, schedule, info = latent_model(prof, cond, ae=ae, scale_factor=ae_info["scale_factor"], progress=progress)
        pipe = Pipeline(ae, model, schedule, ae_info["scale_factor"], num_steps=recipe.num_steps)
        acc = prompt_accuracy(pipe, prompts, per_prompt=recipe.per_prompt, seed=seed)
        result[f"prompt_accuracy_{cond}"] = acc["accuracy"]
        result[f"per_prompt_{cond}"] = acc["per_prompt"]
        result[f"{cond}_train_seconds"] = info["train_seconds"]
        result[f"{cond}_parameters"] = info["num_parameters"]
        if cond == "crossattn":
            edits = edit_benchmark(pipe, recipe.num_edits, seed=seed)
            result["edit_success"] = edits["results"][DEFAULT_STRENGTH]["success"]
            result["edit_detail"] = edits["results"][DEFAULT_STRENGTH]
    result["strength"] = DEFAULT_STRENGTH
    result["guidance_scale"] = DEFAULT_GUIDANCE
    result["num_steps"] = recipe.num_steps
    return result
