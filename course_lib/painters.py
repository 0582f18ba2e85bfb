"""Chapter 14's records and measurements: DiT against the U-Net on the digits, MMDiT on the scenes (chapter 14).

**The digits race** (DiT, Peebles & Xie 2023, against the course's U-Net): both class-conditional, trained with
the course's recipe for the class-conditional digits (chapter 07: cosine schedule, v-prediction, condition
dropout 0.1, AdamW 2e-3, batch 64, EMA; :func:`course_lib.pretrained.digits.digits_train_config`) for the same
*training wall time*, :data:`DIGITS_BUDGET_SECONDS` on one CPU thread: each network gets as many steps as fit,
from :data:`STEP_SECONDS` (one step of 64, measured on the course's 2-core machine with one thread). The DiT
changes three things of that recipe (issue 27: with the U-Net's recipe it had not learned digits, class
accuracy at chance): its class embedding starts at N(0, 1) (:data:`DIT_LABEL_INIT_STD`), the peak lr is
:data:`DIT_LR`, and it predicts the clean picture x₀ (:data:`DIT_PREDICTION`; a patch transformer denoises
better than it copies noise: Li & He 2025, "Back to Basics: Let Denoising Generative Models Denoise").
Sampled with the course's one recipe (``sample()``'s defaults, chapter 06), scored with :mod:`course_lib.metrics`.
Three sizes of each (:data:`SIZES`) make the sweep; the middle ones (``base``) ship, the sweep's scores are in
the ``dit_digits`` card (``scores["sweep"]``), written by ``benchmarks/train_dit.py``.

**SD3 in miniature**: :class:`~course_lib.models.mmdit.MMDiT` on chapter 11's scene latents (the shipped
autoencoder's, :func:`course_lib.latent.scene_latents`) and captions (:func:`course_lib.scenes.scene_tokenize`),
trained with flow matching (chapter 12, :class:`~course_lib.flow.FlowMatching`, logit-normal times as SD3)
and condition dropout for classifier-free guidance (:class:`ConditionDropout`). :func:`mmdit_prompt_accuracy`
measures it on the held-out compositions with chapter 11's scene judge, as chapter 11 measures its U-Net.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any, Literal, Sequence, get_args

import torch
from torch import nn

from .data import SCENES_TRAIN_SEED, load_mnist5000
from .flow import FlowMatching, sample_flow
from .metrics import class_accuracy, fid, kid
from .models.dit import DiT, DiTConfig
from .models.mmdit import MMDiT, MMDiTConfig
from .models.unet import UNet, digits_config
from .objectives import drop_condition, to_device
from .pretrained.digits import digits_train_config
from .registry import Recipe, obtain, register
from .samplers import sample
from .scenes import MAX_SCENE_PROMPT_LENGTH, SCENE_VOCAB, make_scenes, parse_scene_prompt, scene_tokenize
from .schedules import make_schedule
from .settings import Profile, check_choice, check_float, check_int, resolve_profile
from .training import TrainConfig

Size = Literal["small", "base", "large"]
Family = Literal["dit", "unet"]
SIZES: tuple[str, ...] = get_args(Size)
FAMILIES: tuple[str, ...] = get_args(Family)
DIGITS_BUDGET_SECONDS = 150.0  # cpu profile: the training wall time of every network of the race (one thread)
#: seconds per training step of 64 (one thread, the course's 2-core machine, through course_lib.training.train)
STEP_SECONDS: dict[tuple[str, str], float] = {
    ("dit", "small"): 0.079, ("dit", "base"): 0.105, ("dit", "large"): 0.28,  # issue 27; small: a bare loop
    ("unet", "small"): 0.08, ("unet", "base"): 0.12, ("unet", "large"): 0.33,
}
#: the DiT's changes to the U-Net's recipe (issue 27; measured in README "Performance", chapter 14)
DIT_LABEL_INIT_STD, DIT_LR, DIT_PREDICTION = 1.0, 5e-3, "sample"
DIGITS_GUIDANCE = 1.5  # classifier-free guidance of every digits sample of the chapter (both families)
DIGITS_SAMPLE_STEPS = 20  # steps of sample()'s default sampler, SDE-DPM-Solver++(2M) (chapter 06)
SCENE_GUIDANCE = 3.0  # chapter 11's guidance scale
SCENE_FLOW_STEPS = 20  # Euler steps of the MMDiT's flow (chapter 12)
MMDIT_LR = 3e-3  # the MMDiT's peak lr (issue 27: 1e-3 before, with faint clause positions; README "Performance")


# ----------------------------------------------------------------------------- the digits race
def dit_digits_config(profile: Profile = "auto", size: Size = "base") -> DiTConfig:
    """The DiT of the race: 32×32 digits in 4×4 patches (64 tokens), class-conditional, its class embedding at
    N(0, 1) (:data:`DIT_LABEL_INIT_STD`)."""
    check_choice("size", size, SIZES)
    if resolve_profile(profile) == "smoke":
        return DiTConfig(image_size=32, in_channels=1, patch_size=4, width=32, depth=1, heads=2, num_classes=10,
                         label_init_std=DIT_LABEL_INIT_STD)
    width, depth = {"small": (48, 4), "base": (64, 4), "large": (96, 6)}[size]
    return DiTConfig(image_size=32, in_channels=1, patch_size=4, width=width, depth=depth, heads=4, num_classes=10,
                     label_init_std=DIT_LABEL_INIT_STD)


def unet_digits_config(profile: Profile = "auto", size: Size = "base"):
    """The U-Net of the race: the class-conditional digits U-Net of chapter 07 (``base``), narrower or wider."""
    check_choice("size", size, SIZES)
    base = digits_config(resolve_profile(profile), num_classes=10)
    width = {"small": base.base_channels // 2, "base": base.base_channels, "large": base.base_channels * 3 // 2}[size]
    return replace(base, base_channels=width) if resolve_profile(profile) != "smoke" else base  # cpu 16/32/48, gpu 32/64/96


def budget_steps(family: Family, size: Size) -> int:
    """The steps one idle CPU thread takes in the race's budget: ``DIGITS_BUDGET_SECONDS`` ÷ the measured seconds per
    step (:data:`STEP_SECONDS`), to tens."""
    check_choice("family", family, ("dit", "unet"))
    check_choice("size", size, SIZES)
    return int(round(DIGITS_BUDGET_SECONDS / STEP_SECONDS[(family, size)] / 10)) * 10


def race_steps(profile: Profile, family: Family, size: Size) -> int:
    """Steps that fit the race's wall-time budget: :func:`budget_steps` (cpu); a few in smoke; 4× cpu on a GPU."""
    prof = resolve_profile(profile)
    if prof == "smoke":
        return 4
    return budget_steps(family, size) * (4 if prof == "gpu" else 1)


def race_train_config(profile: Profile, family: Family, size: Size) -> TrainConfig:
    """The course's class-conditional digits recipe (chapter 07) with the race's number of steps; the DiT's
    with its peak lr :data:`DIT_LR` and x₀-prediction (:data:`DIT_PREDICTION`)."""
    prof = resolve_profile(profile)
    steps = race_steps(prof, family, size)
    config = replace(digits_train_config(prof, cond=True), steps=steps, warmup=min(100, max(1, steps // 10)),
                     checkpoint_every=0 if prof == "smoke" else 500)
    return replace(config, lr=DIT_LR, prediction_type=DIT_PREDICTION) if family == "dit" else config


@lru_cache(maxsize=1)
def _digits_train() -> tuple[torch.Tensor, torch.Tensor]:
    split = load_mnist5000("train", size=32)
    return split.images, split.labels


def _race_recipe(family: Family, size: Size) -> Recipe:
    build = (lambda p: DiT(dit_digits_config(p, size))) if family == "dit" else (lambda p: UNet(unet_digits_config(p, size)))
    name = f"{family}_digits" + ("" if size == "base" else f"_{size}")
    return register(Recipe(
        name=name, chapter="14", build=build, objective=lambda p: make_schedule("cosine"),
        train_config=lambda p: race_train_config(p, family, size), data=lambda p: _digits_train(),
        shipped=("cpu",) if size == "base" else (), script="python benchmarks/train_dit.py"))


RACE: dict[tuple[str, str], Recipe] = {(f, s): _race_recipe(f, s) for f in FAMILIES for s in SIZES}
DIT_DIGITS, UNET_DIGITS = RACE[("dit", "base")], RACE[("unet", "base")]


def race_model(family: Family, size: Size = "base", profile: Profile = "auto", **kwargs: Any) -> tuple[nn.Module, dict]:
    """One network of the race, through :func:`course_lib.registry.obtain` (shipped ``base`` ones in cpu)."""
    model, info = obtain(RACE[(check_choice("family", family, FAMILIES), check_choice("size", size, SIZES))],
                         profile, **kwargs)
    model.prediction_type = race_train_config(profile, family, size).prediction_type  # what train() sets on it
    return model, info


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def digits_scores(model: nn.Module, *, n: int = 1000, seed: int = 0, batch_size: int = 250,
                  guidance_scale: float = DIGITS_GUIDANCE, num_steps: int = DIGITS_SAMPLE_STEPS) -> dict[str, Any]:
    """FID and KID against the 1,000 test digits, class accuracy, and seconds per sample, of ``n`` samples
    (labels 0–9 in turn) drawn with ``sample()``'s sampler (chapter 06) and classifier-free guidance."""
    n = check_int("n", n, min_value=2)
    labels = torch.arange(n) % 10
    gen, dev = torch.Generator().manual_seed(seed), next(model.parameters()).device
    schedule, chunks = make_schedule("cosine"), []
    tic = time.perf_counter()
    for y in labels.split(batch_size):
        chunks.append(sample(model, schedule, (len(y), 1, 32, 32), cond=y.to(dev), guidance_scale=guidance_scale,
                             num_steps=num_steps, generator=gen, progress=False, device=dev).cpu().clamp(-1, 1))
    seconds = (time.perf_counter() - tic) / n
    fake, real = torch.cat(chunks), load_mnist5000("test").images
    return {"fid": fid(real, fake), "kid": kid(real, fake)[0], "class_accuracy": class_accuracy(fake, labels),
            "sample_seconds": seconds, "images": fake}


# ----------------------------------------------------------------------------- SD3 in miniature
@dataclass(frozen=True)
class ConditionDropout:
    """An objective with condition dropout: each prompt becomes "none" (a row of −1) with probability ``prob``
    (drawn from the generator first), then ``objective``'s loss; the model learns v(x, t, ∅) too (chapter 07)."""

    objective: Any
    prob: float = 0.1

    def loss(self, model: nn.Module, x0: torch.Tensor, cond: torch.Tensor | None,
             generator: torch.Generator) -> torch.Tensor:
        if cond is not None and self.prob > 0:
            drop = torch.rand(x0.shape[0], generator=generator) < self.prob
            cond = drop_condition(cond, to_device(drop, cond.device))
        return self.objective.loss(model, x0, cond, generator)

    def identity(self) -> dict[str, Any]:
        return {**self.objective.identity(), "cond_drop_prob": self.prob}


def mmdit_config(profile: Profile = "auto") -> MMDiTConfig:
    """The MMDiT on chapter 11's 16×16×4 latents in 2×2 patches (64 tokens) + 1 + 24 word tokens."""
    small = resolve_profile(profile) == "smoke"
    return MMDiTConfig(latent_size=16, in_channels=4, patch_size=2, width=32 if small else 64, depth=1 if small else 4,
                       heads=2 if small else 4, vocab_size=len(SCENE_VOCAB), max_length=MAX_SCENE_PROMPT_LENGTH,
                       clause_separator=SCENE_VOCAB.index("and"))


def mmdit_train_config(profile: Profile = "auto") -> TrainConfig:
    """Flow matching at peak lr :data:`MMDIT_LR`, batch 64, EMA 0.999; ``cpu``: 2,400 steps, a few minutes of one
    thread (at 1,200 the two-animal prompts with the same animal twice still failed in one run of two:
    README "Performance", chapter 14)."""
    prof = resolve_profile(profile)
    steps = {"smoke": 3, "cpu": 2400, "gpu": 8000}[prof]
    return TrainConfig(steps=steps, batch_size=8 if prof == "smoke" else 64, lr=MMDIT_LR, warmup=min(100, steps),
                       ema_decay=0.999 if prof != "smoke" else 0.9, checkpoint_every=0 if prof == "smoke" else 500)


@lru_cache(maxsize=3)
def scene_data(profile: Profile = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """(latents (N, 4, 16, 16), token ids (N, 24)) of chapter 11's training scenes, through its autoencoder."""
    from .latent import autoencoder_model, latent_recipe, scene_latents

    prof = resolve_profile(profile)
    ae, info = autoencoder_model(prof, progress=False)
    scenes = make_scenes(latent_recipe(prof).num_images, seed=SCENES_TRAIN_SEED)
    with torch.no_grad():
        z = torch.cat([scene_latents(ae, x, info["scale_factor"]) for x in scenes.images.split(500)])
    return z, scene_tokenize(scenes.captions)


MMDIT_SCENES = register(Recipe(
    name="mmdit_scenes", chapter="14", build=lambda p: MMDiT(mmdit_config(p)),
    objective=lambda p: ConditionDropout(FlowMatching(), 0.1), train_config=mmdit_train_config, data=scene_data,
    shipped=("cpu",), script="python benchmarks/train_dit.py --only mmdit"))


@torch.no_grad()
def mmdit_images(model: nn.Module, prompts: Sequence[str], *, per_prompt: int = 1, seed: int = 0,
                 guidance_scale: float = SCENE_GUIDANCE, num_steps: int = SCENE_FLOW_STEPS,
                 return_latents: bool = False, profile: Profile = "auto") -> Any:
    """Prompts → scenes (N, 3, 64, 64): Euler on the flow (chapter 12) with CFG, then chapter 11's decoder."""
    from .latent import autoencoder_model
    from .models.autoencoder import decode_latents

    if isinstance(prompts, str):
        raise ValueError("prompts must be a list of strings, e.g. ['a cat in a red hat on the left']")
    ids = scene_tokenize(list(prompts)).repeat_interleave(check_int("per_prompt", per_prompt, min_value=1), 0)
    ae, info = autoencoder_model(resolve_profile(profile), progress=False)  # chapter 11's (shipped in cpu)
    z = sample_flow(model, (len(ids), 4, 16, 16), num_steps=num_steps, cond=ids,
                    guidance_scale=check_float("guidance_scale", guidance_scale, min_value=0.0),
                    generator=torch.Generator().manual_seed(seed))
    images = decode_latents(ae, z / info["scale_factor"]).clamp(-1, 1)
    return (images, z) if return_latents else images


def mmdit_prompt_accuracy(model: nn.Module, prompts: Sequence[str], *, per_prompt: int = 8, seed: int = 0,
                          **kwargs: Any) -> dict[str, Any]:
    """Share of samples in which chapter 11's scene judge sees everything each prompt asked (as chapter 11's)."""
    from .models.scene_judge import scene_matches

    images = mmdit_images(model, prompts, per_prompt=per_prompt, seed=seed, **kwargs)
    asked = torch.stack([parse_scene_prompt(p) for p in prompts]).repeat_interleave(per_prompt, 0)
    ok = scene_matches(images, asked).float().view(len(prompts), per_prompt)
    return {"accuracy": float(ok.mean()), "per_prompt": {p: float(o.mean()) for p, o in zip(prompts, ok)},
            "images": images}


@torch.no_grad()
def joint_attention_maps(model: MMDiT, prompt: str, *, t: float = 0.5, seed: int = 0,
                         latents: torch.Tensor | None = None, profile: Profile = "auto") -> tuple[list[str], torch.Tensor]:
    """Which patches read which word: the joint attention of the patches (queries) to the words (keys),
    averaged over the heads and the blocks, at flow time ``t`` on the path of ``latents`` (default: a
    sample for the prompt). Returns (words, maps (words, h, w)), the start token excluded."""
    ids = scene_tokenize([prompt])
    if latents is None:
        _, latents = mmdit_images(model, [prompt], seed=seed, return_latents=True, profile=profile)
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(seed + 1))
    x_t = (1 - t) * latents + t * noise
    for block in model.blocks:
        block.keep_maps = True
    try:
        model(x_t, torch.tensor([t * 1000.0]), cond=ids)
        maps = torch.stack([b.maps for b in model.blocks]).mean(dim=(0, 2))[0]  # (N patches, 1 + L)
    finally:
        for block in model.blocks:
            block.keep_maps, block.maps = False, None
    words = prompt.split()
    side = model.config.latent_size // model.config.patch_size
    return words, maps[:, 1:1 + len(words)].T.reshape(len(words), side, side)


__all__ = ["ConditionDropout", "DIGITS_BUDGET_SECONDS", "DIT_DIGITS", "DIT_LABEL_INIT_STD", "DIT_LR", "DIT_PREDICTION",
           "MMDIT_LR", "MMDIT_SCENES", "RACE", "SIZES", "STEP_SECONDS",
           "UNET_DIGITS", "budget_steps", "digits_scores", "dit_digits_config", "joint_attention_maps", "mmdit_config", "mmdit_images",
           "mmdit_prompt_accuracy", "num_parameters", "race_model", "race_steps", "race_train_config", "scene_data",
           "unet_digits_config"]
