"""Stable Diffusion in miniature: autoencoder, latent diffusion, cross-attention, editing (chapter 11).

Every box of Stable Diffusion's diagram (Rombach et al. 2022), small enough for a laptop CPU:

=========================== ===================================== ======================================
piece                       here                                  Stable Diffusion 1.5
=========================== ===================================== ======================================
tokenizer                   :func:`~course_lib.scenes.scene_tokenize` (words, 24 ids)  CLIP BPE, 77 ids
text encoder                2-layer transformer, per-word 64-d    CLIP ViT-L/14 text, 12 layers, 768-d
autoencoder ("VAE")         :class:`Autoencoder`, f = 4, 16×16×4  AutoencoderKL, f = 8, 64×64×4
latent denoiser             :class:`CrossAttentionUNet`           UNet2DConditionModel, 860 M
scheduler / sampler         cosine schedule, v-prediction, DDIM   scaled-linear, ε, PNDM/DDIM/…
guidance                    CFG, s = :data:`DEFAULT_GUIDANCE`     CFG, s = 7.5
=========================== ===================================== ======================================

Functions, in the order the chapter uses them: :func:`autoencoder_model` (train once, cache,
verify), :func:`scene_latents`, :func:`latent_model` (the cross-attention or the pooled denoiser
on latents), :func:`text_to_image` (the pipeline), :func:`img2img`, :func:`inpaint`,
:func:`inversion_edit`, :func:`attention_maps`, and :func:`latent_benchmark` (every figure of
``benchmarks/latent.py``).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from .checkpoints import has_checkpoint, load_checkpoint, read_state, save_checkpoint, state_dict_into
from .models.autoencoder import (
    Autoencoder, AutoencoderConfig, AutoencoderObjective, decode_latents, encode_latents, latent_scale_factor, psnr,
)
from .models.cross_attention import CrossAttention, CrossAttentionConfig, CrossAttentionUNet
from .models.text import PromptDenoiser, TextEncoder, TextEncoderConfig
from .models.unet import UNet, UNetConfig
from .guidance import cfg_model
from .samplers import ddim_invert, ddim_step, sample
from .scenes import (
    MAX_SCENE_PROMPT_LENGTH, SCENE_VOCAB, compositional_prompts, make_scenes, parse_scene_prompt, scene_caption,
    scene_tokenize,
)
from .schedules import NoiseSchedule, make_schedule, timesteps
from .settings import check_bool, check_choice, check_float, check_int, resolve_profile, runs_dir
from .training import TrainConfig, train

LATENT_SCHEDULE = "cosine"
LATENT_PREDICTION_TYPE = "v_prediction"  # as chapter 08: v keeps x̂₀ accurate at the cosine schedule's noisy end
DEFAULT_GUIDANCE = 3.0
DEFAULT_STRENGTH = 0.6
DATA_SEED, TEST_SEED = 11, 12
CONDITIONINGS = ("crossattn", "pooled")


@dataclass(frozen=True)
class LatentRecipe:
    """Everything a profile trains: the autoencoder, the two latent denoisers, and how they are measured."""

    autoencoder: AutoencoderConfig
    ae_phases: tuple[tuple[int, int, float], ...]  # (steps, batch, peak lr) per phase; each restarts AdamW + cosine
    ae_crop: int  # the autoencoder trains on random crops (it is fully convolutional)
    num_images: int  # training scenes
    unet: UNetConfig  # the latent denoiser, without its conditioning
    text: TextEncoderConfig
    train: TrainConfig
    num_steps: int  # DDIM steps when sampling
    per_prompt: int  # benchmark samples per prompt
    num_edits: int  # benchmark img2img edits


def latent_recipe(profile: str = "auto") -> LatentRecipe:
    """The chapter's recipe for ``smoke`` (seconds), ``cpu`` (minutes) or ``gpu``."""
    prof = resolve_profile(profile)
    text = TextEncoderConfig(vocab_size=len(SCENE_VOCAB), max_length=MAX_SCENE_PROMPT_LENGTH, width=64, num_layers=2,
                             num_heads=4, out_dim=64)
    if prof == "smoke":
        return LatentRecipe(
            AutoencoderConfig(width=8, latent_width=8), ae_phases=((3, 4, 2e-3),), ae_crop=32, num_images=48,
            unet=UNetConfig(image_size=16, in_channels=4, base_channels=8, channel_mults=(1, 2), attention_resolutions=(),
                            norm_groups=4, head_channels=8),
            text=replace(text, width=16, num_heads=2, out_dim=16, num_layers=1),
            train=TrainConfig(steps=3, batch_size=8, lr=2e-3, warmup=1, checkpoint_every=0, ema_decay=0.9,
                              cond_drop_prob=0.1, prediction_type=LATENT_PREDICTION_TYPE),
            num_steps=3, per_prompt=1, num_edits=4)
    if prof == "cpu":
        return LatentRecipe(
            AutoencoderConfig(), ae_phases=((1500, 32, 2e-3), (3000, 16, 1e-3)), ae_crop=32, num_images=6000,
            unet=UNetConfig(image_size=16, in_channels=4, base_channels=32, channel_mults=(1, 2), attention_resolutions=(8,),
                            norm_groups=8, head_channels=32),
            text=text,
            train=TrainConfig(steps=1500, batch_size=32, lr=2e-3, warmup=50, checkpoint_every=100, ema_decay=0.995,
                              cond_drop_prob=0.1, prediction_type=LATENT_PREDICTION_TYPE),
            num_steps=25, per_prompt=8, num_edits=40)
    return LatentRecipe(
        AutoencoderConfig(width=64, latent_width=128), ae_phases=((6000, 64, 1e-3),), ae_crop=64,
        num_images=20000,
        unet=UNetConfig(image_size=16, in_channels=4, base_channels=64, channel_mults=(1, 2), attention_resolutions=(8,),
                        num_res_blocks=2, norm_groups=16, head_channels=32),
        text=replace(text, width=128, out_dim=128),
        train=TrainConfig(steps=10000, batch_size=128, lr=1e-3, warmup=300, checkpoint_every=1000, ema_decay=0.9995,
                          cond_drop_prob=0.1, prediction_type=LATENT_PREDICTION_TYPE),
        num_steps=50, per_prompt=32, num_edits=200)


def _random_crops(images: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """One random ``size``×``size`` crop per picture, at a multiple of 4 pixels (the latent grid)."""
    n, _, h, w = images.shape
    if size >= h:
        return images
    ys = torch.randint(0, (h - size) // 4 + 1, (n,), generator=generator) * 4
    xs = torch.randint(0, (w - size) // 4 + 1, (n,), generator=generator) * 4
    return torch.stack([img[:, y:y + size, x:x + size] for img, y, x in zip(images, ys.tolist(), xs.tolist())])


# ----------------------------------------------------------------------------- the autoencoder
def autoencoder_model(profile: str = "auto", *, run_dir: str | os.PathLike | None = None, retrain: bool = False,
                      progress: bool = True) -> tuple[Autoencoder, dict[str, Any]]:
    """The chapter's autoencoder, trained once on ``make_scenes(num_images, seed=DATA_SEED)`` and cached.

    Training: :class:`AutoencoderObjective` (L1 + β·KL, β = 10⁻⁶ of the summed L1) with AdamW and a
    cosine learning rate, on random crops. A finished checkpoint in ``run_dir`` (default
    ``runs/latent-ae-<profile>``) is loaded after its sha256 and its recipe are checked
    (CheckpointError on a mismatch; ``retrain=True`` trains afresh). Returns ``(model, info)``;
    info: ``scale_factor`` (1/std of the training latents), ``train_seconds``, ``steps``,
    ``losses``, ``cached``, ``config``, ``run_dir``.
    """
    check_bool("retrain", retrain)
    prof = resolve_profile(profile)
    recipe = latent_recipe(prof)
    cfg = recipe.autoencoder
    run_dir = Path(run_dir) if run_dir is not None else runs_dir() / f"latent-ae-{prof}"
    identity = {"config": cfg.to_dict(), "phases": [list(p) for p in recipe.ae_phases], "crop": recipe.ae_crop,
                "num_images": recipe.num_images, "data_seed": DATA_SEED}
    torch.manual_seed(0)
    model = Autoencoder(cfg)
    if has_checkpoint(run_dir) and not retrain:
        tensors, state = load_checkpoint(run_dir)  # verifies the sha256
        if state.get("identity") != identity:
            from .checkpoints import CheckpointError
            raise CheckpointError(f"{run_dir} holds an autoencoder of another recipe ({state.get('identity')}); "
                                  "pass retrain=True or another run_dir")
        state_dict_into(model, tensors, "model.")
        return model.eval(), {**state["info"], "cached": True, "run_dir": str(run_dir)}
    data = make_scenes(recipe.num_images, seed=DATA_SEED).images
    objective = AutoencoderObjective(cfg.kl_weight)
    losses: list[float] = []
    tic = time.perf_counter()
    from tqdm.auto import tqdm

    for phase, (steps, batch, peak) in enumerate(recipe.ae_phases):
        gen = torch.Generator().manual_seed(phase)
        opt = torch.optim.AdamW(model.parameters(), lr=peak)
        warmup = 50 if phase == 0 else 0
        for step in tqdm(range(steps), disable=not progress, desc=f"autoencoder, phase {phase + 1}"):
            lr = peak * min(1.0, (step + 1) / max(warmup, 1)) * 0.5 * (1 + math.cos(math.pi * step / steps))
            for group in opt.param_groups:
                group["lr"] = lr
            idx = torch.randint(0, len(data), (batch,), generator=gen)
            loss = objective.loss(model, _random_crops(data[idx], recipe.ae_crop, gen), None, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(round(float(loss.detach()), 5))
    seconds = time.perf_counter() - tic
    info = _save_autoencoder(run_dir, model.eval(), data, identity, seconds, losses, prof)
    return model, {**info, "cached": False, "run_dir": str(run_dir)}


def _save_autoencoder(run_dir: Path, model: Autoencoder, data: torch.Tensor, identity: dict, seconds: float,
                      losses: list[float], prof: str) -> dict[str, Any]:
    """Compute the scale factor on 2,000 training scenes and commit the checkpoint; returns the info dict."""
    scale = latent_scale_factor(encode_latents(model, data[:2000]))
    info = {"scale_factor": scale, "train_seconds": seconds, "steps": sum(p[0] for p in identity["phases"]),
            "losses": losses[::10], "config": model.config.to_dict(), "profile": prof}
    tensors = {f"model.{k}": v.detach().contiguous() for k, v in model.state_dict().items()}
    save_checkpoint(run_dir, tensors, {"step": info["steps"], "identity": identity, "info": info})
    return info


def reconstruction_psnr(ae: Autoencoder, images: torch.Tensor) -> float:
    """Mean PSNR (dB) of decode(encode(x)) against x, with the posterior mean as the latent."""
    recon = decode_latents(ae, encode_latents(ae, images))
    return float(psnr(recon, images).mean())


# ----------------------------------------------------------------------------- the latent denoisers
def scene_latents(ae: Autoencoder, images: torch.Tensor, scale_factor: float) -> torch.Tensor:
    """Scaled latents z = scale · μ(x) (B, c, 16, 16): what the latent diffusion model is trained on."""
    return encode_latents(ae, images) * scale_factor


def build_latent_denoiser(recipe: LatentRecipe, conditioning: str = "crossattn", *, pixel: bool = False) -> torch.nn.Module:
    """A fresh denoiser of the recipe's size, seeded by its training seed.

    ``conditioning="crossattn"``: :class:`CrossAttentionUNet` (per-word vectors, cross-attention at
    every level); ``"pooled"``: chapter 08's :class:`PromptDenoiser` (one pooled prompt vector added
    to the time embedding), same U-Net and text encoder. ``pixel=True`` builds the same network for
    64×64×3 pixels (a 2×2 patchify stem, so that its levels run at 32×32 and 16×16).
    """
    check_choice("conditioning", conditioning, CONDITIONINGS)
    unet = recipe.unet
    if pixel:
        unet = replace(unet, image_size=recipe.autoencoder.image_size, in_channels=3, patch_size=2,
                       attention_resolutions=(unet.attention_resolutions and (16,)) or ())
    torch.manual_seed(recipe.train.seed)
    if conditioning == "pooled":
        return PromptDenoiser(UNet(replace(unet, cond_dim=recipe.text.out_dim)), TextEncoder(recipe.text))
    cross = tuple(r for r in unet.resolutions if r <= 16)
    return CrossAttentionUNet(CrossAttentionConfig(unet, recipe.text, cross))


def latent_model(profile: str = "auto", conditioning: str = "crossattn", *, ae: Autoencoder | None = None,
                 scale_factor: float | None = None, run_dir: str | os.PathLike | None = None, retrain: bool = False,
                 progress: bool = True, device: str | torch.device | None = None,
                 ) -> tuple[torch.nn.Module, NoiseSchedule, dict[str, Any]]:
    """A latent denoiser trained on the scaled latents of the training scenes and their captions, cached.

    :func:`course_lib.training.train` on ``(scene_latents, scene_tokenize(captions))`` with condition
    dropout 0.1 (classifier-free guidance), v-prediction on the cosine schedule; run directory
    ``runs/latent-<conditioning>-<profile>``, verified on load (sha256, configs, data). Returns
    ``(ema_model, schedule, info)``.
    """
    check_choice("conditioning", conditioning, CONDITIONINGS)
    prof = resolve_profile(profile)
    recipe = latent_recipe(prof)
    if ae is None or scale_factor is None:
        ae, ae_info = autoencoder_model(prof, progress=progress)
        scale_factor = ae_info["scale_factor"]
    data = make_scenes(recipe.num_images, seed=DATA_SEED)
    z = scene_latents(ae, data.images, scale_factor)
    tokens = scene_tokenize(data.captions)
    run_dir = Path(run_dir) if run_dir is not None else runs_dir() / f"latent-{conditioning}-{prof}"
    cached = not retrain and has_checkpoint(run_dir) and int(read_state(run_dir).get("step", -1)) >= recipe.train.steps
    schedule = make_schedule(LATENT_SCHEDULE)
    result = train(build_latent_denoiser(recipe, conditioning), schedule, (z, tokens), recipe.train, run_dir=run_dir,
                   resume=not retrain, device=device, progress=progress)
    info = {"train_seconds": result.seconds, "steps": result.steps, "losses": result.losses, "cached": cached,
            "profile": prof, "run_dir": str(run_dir), "conditioning": conditioning, "scale_factor": scale_factor,
            "num_parameters": sum(p.numel() for p in result.ema_model.parameters())}
    return result.ema_model.eval(), schedule, info


# ----------------------------------------------------------------------------- the pipeline
@dataclass
class Pipeline:
    """The pieces of text-to-image, as Stable Diffusion's ``StableDiffusionPipeline`` holds them."""

    autoencoder: Autoencoder
    denoiser: torch.nn.Module  # CrossAttentionUNet (its text encoder inside) or PromptDenoiser
    schedule: NoiseSchedule
    scale_factor: float
    num_steps: int = 25
    guidance_scale: float = DEFAULT_GUIDANCE

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        return self.autoencoder.config.latent_shape


def load_pipeline(profile: str = "auto", conditioning: str = "crossattn", *, progress: bool = True) -> Pipeline:
    """The chapter's autoencoder and a latent denoiser (both trained once and cached) as one :class:`Pipeline`."""
    prof = resolve_profile(profile)
    ae, ae_info = autoencoder_model(prof, progress=progress)
    model, schedule, _ = latent_model(prof, conditioning, ae=ae, scale_factor=ae_info["scale_factor"], progress=progress)
    return Pipeline(ae, model, schedule, ae_info["scale_factor"], num_steps=latent_recipe(prof).num_steps)


def text_to_image(pipe: Pipeline, prompts: Sequence[str], *, seed: int = 0, per_prompt: int = 1,
                  guidance_scale: float | None = None, num_steps: int | None = None,
                  return_latents: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """prompt → tokenizer → text encoder → latent denoiser + CFG + sampler → decoder: scenes (N, 3, 64, 64).

    1. ``scene_tokenize``: words → ids (an unknown word raises ValueError listing the vocabulary);
    2. the text encoder runs inside the denoiser (per-word vectors for cross-attention);
    3. DDIM from pure latent noise z_T ~ N(0, I) (B, 4, 16, 16), each step one batched call on
       [prompt, empty prompt] combined as ε̃ = ε_∅ + s·(ε_c − ε_∅);
    4. the decoder turns z₀ / scale_factor into pixels.
    """
    if isinstance(prompts, str):
        raise ValueError("prompts must be a list of strings, e.g. ['a cat in a red hat on the left']")
    ids = scene_tokenize(list(prompts)).repeat_interleave(check_int("per_prompt", per_prompt, min_value=1), 0)
    s = pipe.guidance_scale if guidance_scale is None else check_float("guidance_scale", guidance_scale, min_value=0.0)
    steps = pipe.num_steps if num_steps is None else num_steps
    z = sample(pipe.denoiser, pipe.schedule, (len(ids), *pipe.latent_shape), sampler="ddim", num_steps=steps, cond=ids,
               guidance_scale=s, generator=torch.Generator().manual_seed(seed), progress=False,
               prediction_type=LATENT_PREDICTION_TYPE)
    images = decode_latents(pipe.autoencoder, z / pipe.scale_factor)
    return (images, z) if return_latents else images


# ----------------------------------------------------------------------------- editing
def _check_images(images: torch.Tensor) -> torch.Tensor:
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3:
        got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be scenes (B, 3, 64, 64) in [-1, 1], got {got}")
    return images


def _prompt_ids(prompts: Sequence[str] | str, n: int) -> torch.Tensor:
    prompts = [prompts] * n if isinstance(prompts, str) else list(prompts)
    if len(prompts) != n:
        raise ValueError(f"give one prompt for all {n} pictures or one per picture, got {len(prompts)}")
    return scene_tokenize(prompts)


def denoise_from(pipe: Pipeline, z0: torch.Tensor, ids: torch.Tensor, strength: float, *, seed: int = 0,
                 guidance_scale: float | None = None, known_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Noise clean latents z0 to the level ``strength`` and run DDIM back down under the prompt ids.

    The sampler's first ``(1 − strength)·num_steps`` steps are skipped (as diffusers'
    img2img pipeline): strength 1 starts from pure noise, 0 returns z0. With ``known_mask``
    (B, 1, h, w), 1 = keep, the kept region is reset after every step to z0 noised to the current
    level, so only the rest is repainted (inpainting).
    """
    strength = check_float("strength", strength, min_value=0.0, max_value=1.0)
    s = pipe.guidance_scale if guidance_scale is None else guidance_scale
    T = pipe.schedule.num_timesteps
    ts = timesteps(T, pipe.num_steps).tolist()  # descending
    skip = pipe.num_steps - int(round(pipe.num_steps * strength))
    ts = ts[skip:]
    if not ts:
        return z0
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(z0.shape, generator=gen)
    guided = cfg_model(pipe.denoiser, s)

    def model_fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return guided(x, t, cond=ids)

    sched = pipe.schedule
    x = sched.add_noise(z0, noise, torch.full((len(z0),), ts[0], dtype=torch.long))
    with torch.no_grad():
        for i, t in enumerate(ts):
            t_prev = ts[i + 1] if i + 1 < len(ts) else -1
            out = model_fn(x, torch.full((len(x),), t, dtype=torch.long))
            x = ddim_step(sched, out, t, t_prev, x, prediction_type=LATENT_PREDICTION_TYPE).prev_sample
            if known_mask is not None:
                known = z0 if t_prev < 0 else sched.add_noise(z0, noise, torch.full((len(z0),), t_prev, dtype=torch.long))
                x = known_mask * known + (1 - known_mask) * x
    return x


def img2img(pipe: Pipeline, images: torch.Tensor, prompts: Sequence[str] | str, *, strength: float = DEFAULT_STRENGTH,
            seed: int = 0, guidance_scale: float | None = None) -> torch.Tensor:
    """SDEdit (Meng et al. 2022): encode, noise to ``strength``, denoise under the new prompt, decode.

    Low strength keeps the picture and may ignore the prompt; high strength follows the prompt and
    forgets the picture (at 1 it is text-to-image).
    """
    images = _check_images(images)
    z0 = scene_latents(pipe.autoencoder, images, pipe.scale_factor)
    z = denoise_from(pipe, z0, _prompt_ids(prompts, len(images)), strength, seed=seed, guidance_scale=guidance_scale)
    return decode_latents(pipe.autoencoder, z / pipe.scale_factor)


def inpaint(pipe: Pipeline, images: torch.Tensor, mask: torch.Tensor, prompts: Sequence[str] | str, *,
            strength: float = 1.0, seed: int = 0, guidance_scale: float | None = None) -> torch.Tensor:
    """Repaint where ``mask`` (B or 1, 1, 64, 64) is 1 and keep the rest: latent replacement at every step,
    then the original pixels pasted back outside the mask."""
    images = _check_images(images)
    mask = mask.float().expand(len(images), 1, *images.shape[-2:])
    f = images.shape[-1] // pipe.latent_shape[-1]
    keep = 1.0 - F.max_pool2d(mask, f)  # a latent cell is repainted if any of its pixels is
    z0 = scene_latents(pipe.autoencoder, images, pipe.scale_factor)
    z = denoise_from(pipe, z0, _prompt_ids(prompts, len(images)), strength, seed=seed, guidance_scale=guidance_scale,
                     known_mask=keep)
    out = decode_latents(pipe.autoencoder, z / pipe.scale_factor)
    return mask * out + (1 - mask) * images


def inversion_edit(pipe: Pipeline, images: torch.Tensor, source_prompts: Sequence[str] | str,
                   target_prompts: Sequence[str] | str, *, guidance_scale: float | None = None) -> torch.Tensor:
    """Edit by DDIM inversion (chapter 06's ``ddim_invert``): run DDIM backwards under the source
    prompt (no guidance) to the noise that regenerates the picture, then sample from that noise
    under the target prompt. What the two prompts share tends to stay where it was."""
    images = _check_images(images)
    z0 = scene_latents(pipe.autoencoder, images, pipe.scale_factor)
    src = _prompt_ids(source_prompts, len(images))
    zT = ddim_invert(lambda x, t: pipe.denoiser(x, t, cond=src), pipe.schedule, z0, num_steps=pipe.num_steps,
                     prediction_type=LATENT_PREDICTION_TYPE)
    s = pipe.guidance_scale if guidance_scale is None else guidance_scale
    z = sample(pipe.denoiser, pipe.schedule, tuple(z0.shape), sampler="ddim", num_steps=pipe.num_steps,
               cond=_prompt_ids(target_prompts, len(images)), guidance_scale=s, noise=zT, progress=False,
               prediction_type=LATENT_PREDICTION_TYPE)
    return decode_latents(pipe.autoencoder, z / pipe.scale_factor)


# ----------------------------------------------------------------------------- cross-attention maps
def attention_maps(pipe: Pipeline, prompt: str, words: Sequence[str], *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Which pixels listened to which word: (the sampled scene (3, 64, 64), maps (len(words), 64, 64)).

    Sampling one picture with CFG, every cross-attention layer records its weights; for each word
    the weights of the conditional half are averaged over heads, layers and steps and upsampled to
    64×64. A word that appears twice gets the sum of its positions.
    """
    model = pipe.denoiser
    if not isinstance(model, CrossAttentionUNet):
        raise ValueError("attention maps need the cross-attention denoiser (conditioning='crossattn')")
    tokens = prompt.lower().split()
    missing = [w for w in words if w not in tokens]
    if missing:
        raise ValueError(f"words {missing} are not in the prompt {prompt!r}")
    layers = [m for _, m in model.cross_attention_layers()]
    total = torch.zeros(1 + MAX_SCENE_PROMPT_LENGTH, 64, 64)

    def recording(x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        out = model(x, t, cond=cond)
        for layer in layers:
            a = layer.maps[:1].mean(1)[0]  # the conditional row, heads averaged: (HW, 1 + L)
            side = int(math.isqrt(a.shape[0]))
            a = a.T.reshape(-1, 1, side, side)
            total.add_(F.interpolate(a, size=(64, 64), mode="bilinear", align_corners=False)[:, 0])
        return out

    for layer in layers:
        layer.keep_maps = True
    try:
        z = sample(recording, pipe.schedule, (1, *pipe.latent_shape), sampler="ddim", num_steps=pipe.num_steps,
                   cond=scene_tokenize([prompt]), guidance_scale=pipe.guidance_scale,
                   generator=torch.Generator().manual_seed(seed), progress=False, prediction_type=LATENT_PREDICTION_TYPE)
    finally:
        for layer in layers:
            layer.keep_maps, layer.maps = False, None
    image = decode_latents(pipe.autoencoder, z / pipe.scale_factor)[0]
    maps = torch.stack([sum(total[1 + i] for i, w in enumerate(tokens) if w == word) for word in words])
    return image, maps / maps.flatten(1).amax(1)[:, None, None].clamp_min(1e-12)


# ----------------------------------------------------------------------------- measuring
def prompt_accuracy(pipe: Pipeline, prompts: Sequence[str], *, per_prompt: int = 8, seed: int = 0) -> dict[str, Any]:
    """Share of samples in which the scene judge sees everything each prompt asked (side by side).

    Returns ``accuracy`` and ``per_prompt`` ({prompt: share}).
    """
    from .models.scene_judge import scene_matches

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
    other animal, the places and the background stayed), ``changed`` (the asked hat only) and
    ``kept`` (every other column). Returns {strength: {...}} and the pictures of the first strength.
    """
    from .models.scene_judge import judge_scenes

    test = make_scenes(num_edits, seed=TEST_SEED)
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
            loss = model(x, t, cond=ids).pow(2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        step()  # warm-up
        out[f"{name}_train_img_s"] = batch_size * train_steps / sum(_seconds(step) for _ in range(train_steps))
        model.eval()

        def draw() -> None:  # a batch of pictures, as one would draw them; seconds per picture below
            z = sample(model, schedule, shape, sampler="ddim", num_steps=steps, cond=ids,
                       guidance_scale=DEFAULT_GUIDANCE, generator=torch.Generator().manual_seed(0), progress=False,
                       prediction_type=LATENT_PREDICTION_TYPE)
            if not pixel:
                decode_latents(ae, z)

        out[f"{name}_sample_s"] = _seconds(draw, repeats=2) / batch_size
    out["sample_speedup"] = out["pixel_sample_s"] / out["latent_sample_s"]
    out["train_speedup"] = out["latent_train_img_s"] / out["pixel_train_img_s"]
    return out


def latent_benchmark(profile: str = "auto", *, progress: bool = False, seed: int = 0) -> dict[str, Any]:
    """Every figure of ``benchmarks/latent.py`` (and of the chapter's check cells)."""
    prof = resolve_profile(profile)
    recipe = latent_recipe(prof)
    ae, ae_info = autoencoder_model(prof, progress=progress)
    test = make_scenes(500 if prof != "smoke" else 16, seed=TEST_SEED)
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


__all__ = [
    "CONDITIONINGS", "DEFAULT_GUIDANCE", "DEFAULT_STRENGTH", "LatentRecipe", "Pipeline", "attention_maps",
    "autoencoder_model", "build_latent_denoiser", "denoise_from", "edit_benchmark", "edit_requests", "img2img", "inpaint",
    "inversion_edit", "latent_benchmark", "latent_model", "latent_recipe", "load_pipeline", "prompt_accuracy",
    "reconstruction_psnr", "scene_latents", "speed_comparison", "text_to_image",
]
