"""Chapter 11's recipe, the autoencoder, the latent denoisers and the text-to-image pipeline (:mod:`course_lib.latent`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any, Literal, Sequence, get_args

import torch

from ..data import SCENES_TRAIN_SEED
from ..models.autoencoder import (
    Autoencoder, AutoencoderConfig, AutoencoderObjective, decode_latents, encode_latents, kl_to_standard_normal,
    latent_scale_factor, psnr,
)
from ..models.cross_attention import CrossAttentionConfig, CrossAttentionUNet
from ..models.embeddings import PositionEmbedding
from ..models.text import PromptDenoiser, TextEncoder, TextEncoderConfig
from ..models.unet import UNet, UNetConfig
from ..samplers import sample
from ..scenes import MAX_SCENE_PROMPT_LENGTH, SCENE_VOCAB, make_scenes, scene_tokenize
from ..schedules import NoiseSchedule, make_schedule
from ..optim import TrainConfig, config_identity
from ..registry import Recipe, Stage, obtain, register
from ..settings import Profile, capped_count, check_bool, check_choice, check_float, check_int, resolve_profile

LATENT_SCHEDULE = "cosine"
LATENT_PREDICTION_TYPE = "v_prediction"  # as chapter 08: v keeps x̂₀ accurate at the cosine schedule's noisy end
# The chapter's sampler: DDIM (deterministic, so that editing can run it backwards) on chapter 06's trailing
# grid; latents are not pictures in [-1, 1], so x̂₀ is never clamped.
LATENT_DDIM: dict = {"spacing": "trailing", "clip_sample": False}
DEFAULT_GUIDANCE = 3.0
DEFAULT_STRENGTH = 0.6
AutoencoderLoss = Literal["l1", "mse"]
Conditioning = Literal["crossattn", "pooled"]  # per-word cross-attention, or chapter 08's pooled vector
CONDITIONINGS: tuple[str, ...] = get_args(Conditioning)


@dataclass(frozen=True)
class LatentRecipe:
    """Everything a profile trains: the autoencoder, the two latent denoisers, and how they are measured."""

    autoencoder: AutoencoderConfig
    ae_phases: tuple[tuple[int, int, float, AutoencoderLoss], ...]  # (steps, batch, peak lr, loss); each restarts AdamW
    ae_crop: int  # the autoencoder trains on random crops (it is fully convolutional)
    num_images: int  # training scenes
    unet: UNetConfig  # the latent denoiser, without its conditioning
    text: TextEncoderConfig
    train: TrainConfig
    num_steps: int  # DDIM steps when sampling
    per_prompt: int  # benchmark samples per prompt
    num_edits: int  # benchmark img2img edits
    shipped: bool = False  # True: the weights ship in course_lib/weights (trained by benchmarks/train_latent.py)
    position_embedding: bool = True  # a learned position map after the stem (alone, it did not fix leakage)
    read_clauses: bool = True  # cross-attention's text encoder reads each "… and …" clause on its own


def latent_recipe(profile: Profile = "auto") -> LatentRecipe:
    """The chapter's recipe for ``smoke`` (seconds), ``cpu`` (shipped weights; about an hour to train again) or ``gpu``."""
    prof = resolve_profile(profile)
    text = TextEncoderConfig(vocab_size=len(SCENE_VOCAB), max_length=MAX_SCENE_PROMPT_LENGTH, width=64, num_layers=2,
                             num_heads=4, out_dim=64)
    if prof == "smoke":
        return LatentRecipe(
            AutoencoderConfig(width=8, latent_width=8), ae_phases=((3, 4, 2e-3, "l1"),), ae_crop=32, num_images=48,
            unet=UNetConfig(image_size=16, in_channels=4, base_channels=8, channel_mults=(1, 2), attention_resolutions=(),
                            norm_groups=4, head_channels=8),
            text=replace(text, width=16, num_heads=2, out_dim=16, num_layers=1),
            train=TrainConfig(steps=3, batch_size=8, lr=2e-3, warmup=1, checkpoint_every=0, ema_decay=0.9,
                              cond_drop_prob=0.1, prediction_type=LATENT_PREDICTION_TYPE),
            num_steps=3, per_prompt=1, num_edits=4)
    if prof == "cpu":  # shipped: trained once by benchmarks/train_latent.py (the card holds the measured scores)
        return LatentRecipe(
            AutoencoderConfig(), ae_phases=((3000, 32, 2e-3, "l1"), (6000, 32, 1e-3, "l1"), (2000, 32, 3e-4, "mse")),
            ae_crop=32, num_images=6000,
            unet=UNetConfig(image_size=16, in_channels=4, base_channels=32, channel_mults=(1, 2), attention_resolutions=(8,),
                            norm_groups=8, head_channels=32),
            text=text,
            train=TrainConfig(steps=8000, batch_size=64, lr=2e-3, warmup=200, checkpoint_every=500, ema_decay=0.999,
                              cond_drop_prob=0.1, prediction_type=LATENT_PREDICTION_TYPE),
            num_steps=25, per_prompt=32, num_edits=100, shipped=True)
    return LatentRecipe(
        AutoencoderConfig(width=64, latent_width=128), ae_phases=((6000, 64, 1e-3, "l1"),), ae_crop=64,
        num_images=capped_count(20000, 48),  # a gpu dry run (make gpu-dryrun): a few scenes, not 20000 to encode
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
def autoencoder_identity(recipe: LatentRecipe) -> dict[str, Any]:
    """What makes one autoencoder run: its config, phases, crops and training data (checked on every load)."""
    return {"config": recipe.autoencoder.to_dict(), "phases": [list(p) for p in recipe.ae_phases], "crop": recipe.ae_crop,
            "num_images": recipe.num_images, "data_seed": SCENES_TRAIN_SEED}


@dataclass(frozen=True)
class AutoencoderPhase:
    """One phase of the autoencoder's training as an objective: a random ``crop``×``crop`` crop of each picture,
    then ``"l1"`` (SD's: sharp edges; :class:`AutoencoderObjective`) or ``"mse"`` (the squared error PSNR
    measures) of the reconstruction from a sampled z, each + β·KL."""

    kl_weight: float
    kind: AutoencoderLoss
    crop: int

    def loss(self, model: Autoencoder, x0: torch.Tensor, cond: torch.Tensor | None, generator: torch.Generator) -> torch.Tensor:
        x = _random_crops(x0, self.crop, generator)
        if self.kind == "l1":
            return AutoencoderObjective(self.kl_weight).loss(model, x, None, generator)
        recon, mean, logvar = model(x, generator)
        kl = kl_to_standard_normal(mean, logvar).mean() / x[0].numel()
        return (recon - x).pow(2).mean() + self.kl_weight * kl

    def identity(self) -> dict[str, Any]:
        return {"objective": "autoencoder", "loss": self.kind, "kl_weight": self.kl_weight, "crop": self.crop}


def autoencoder_stages(profile: str) -> list[Stage]:
    """The recipe's phases as the registry's stages: each a fresh AdamW (weight decay 0.01) at its peak lr, the
    warm-up ramp over 50 steps times one cosine over the phase, its own seed (the phase's index)."""
    recipe = latent_recipe(profile)
    return [Stage(AutoencoderPhase(recipe.autoencoder.kl_weight, kind, recipe.ae_crop),
                  TrainConfig(steps=steps, batch_size=batch, lr=peak, warmup=50, weight_decay=0.01, grad_clip=None,
                              checkpoint_every=1000, seed=phase, amp=False, lr_schedule="warmup-times-cosine"))
            for phase, (steps, batch, peak, kind) in enumerate(recipe.ae_phases)]


def _training_scenes(profile: str) -> torch.Tensor:
    return make_scenes(latent_recipe(profile).num_images, seed=SCENES_TRAIN_SEED).images


def _scale_factor(model: Autoencoder, profile: str) -> dict[str, float]:
    """1/std of the latents of 2,000 training scenes (Rombach et al. 2022, §4.3.2)."""
    return {"scale_factor": latent_scale_factor(encode_latents(model, _training_scenes(profile)[:2000]))}


#: chapter 11's autoencoder (ships for the cpu profile)
AUTOENCODER = register(Recipe(
    name="latent_ae", chapter="11", build=lambda p: Autoencoder(latent_recipe(p).autoencoder), stages=autoencoder_stages,
    data=_training_scenes, identity=lambda p: autoencoder_identity(latent_recipe(p)), shipped=("cpu",),
    run_name=lambda p: f"latent-ae-{p}", extras=_scale_factor, ema=False,
    card_info=("scale_factor", "train_seconds", "steps", "losses", "config", "profile"), loss_every=10,
    script="python benchmarks/train_latent.py"))


def autoencoder_model(profile: Profile = "auto", *, run_dir: str | os.PathLike | None = None, retrain: bool = False,
                      progress: bool = True) -> tuple[Autoencoder, dict[str, Any]]:
    """The chapter's autoencoder (:data:`AUTOENCODER`): shipped (``cpu``), or trained once on
    ``make_scenes(num_images, seed=SCENES_TRAIN_SEED)`` and cached (:func:`course_lib.registry.obtain`).

    ``cpu`` profile: the weights in ``course_lib/weights/latent_ae.*`` (trained by
    ``benchmarks/train_latent.py`` with this very recipe), verified by sha256 and recipe. Otherwise,
    or with ``retrain=True`` or a ``run_dir``: the recipe's phases (:func:`autoencoder_stages`), each on
    random crops with :class:`AutoencoderPhase`, in ``run_dir`` (default ``runs/latent-ae-<profile>``).
    Returns ``(model, info)``; info: ``scale_factor`` (1/std of the training latents), ``train_seconds``,
    ``steps``, ``losses``, ``cached``, ``shipped``, ``config``, ``run_dir``.
    """
    return obtain(AUTOENCODER, profile, run_dir=run_dir, retrain=retrain, progress=progress)


def reconstruction_psnr(ae: Autoencoder, images: torch.Tensor) -> float:
    """Mean PSNR (dB) of decode(encode(x)) against x, with the posterior mean as the latent."""
    recon = decode_latents(ae, encode_latents(ae, images))
    return float(psnr(recon, images).mean())


# ----------------------------------------------------------------------------- the latent denoisers
def scene_latents(ae: Autoencoder, images: torch.Tensor, scale_factor: float) -> torch.Tensor:
    """Scaled latents z = scale · μ(x) (B, c, 16, 16): what the latent diffusion model is trained on."""
    return encode_latents(ae, images) * scale_factor


def build_latent_denoiser(recipe: LatentRecipe, conditioning: Conditioning = "crossattn", *, pixel: bool = False) -> torch.nn.Module:
    """A fresh denoiser of the recipe's size, seeded by its training seed.

    ``conditioning="crossattn"``: :class:`CrossAttentionUNet` (per-word vectors, cross-attention at
    every level); ``"pooled"``: chapter 08's :class:`PromptDenoiser` (one pooled prompt vector added
    to the time embedding), same U-Net and text encoder. ``pixel=True`` builds the same network for
    64×64×3 pixels (a 2×2 patchify stem, so that its levels run at 32×32 and 16×16). With
    ``recipe.position_embedding`` both get a learned :class:`PositionEmbedding` after their stem; with
    ``recipe.read_clauses`` the cross-attention model's text encoder reads each clause of a prompt on
    its own (:meth:`CrossAttentionUNet.clauses`; the pooled model reads the whole prompt, as in chapter 08).
    """
    check_choice("conditioning", conditioning, CONDITIONINGS)
    unet = recipe.unet
    if pixel:
        unet = replace(unet, image_size=recipe.autoencoder.image_size, in_channels=3, patch_size=2,
                       attention_resolutions=(unet.attention_resolutions and (16,)) or ())
    torch.manual_seed(recipe.train.seed)
    if conditioning == "pooled":
        model: torch.nn.Module = PromptDenoiser(UNet(replace(unet, cond_dim=recipe.text.out_dim)), TextEncoder(recipe.text))
    else:
        separator = SCENE_VOCAB.index("and") if recipe.read_clauses else None
        model = CrossAttentionUNet(CrossAttentionConfig(unet, recipe.text, tuple(r for r in unet.resolutions if r <= 16),
                                                        clause_separator=separator))
    if recipe.position_embedding:
        owner = model.unet if isinstance(model, PromptDenoiser) else model  # the module whose forward calls .stem
        owner.stem = torch.nn.Sequential(owner.stem, PositionEmbedding(unet.widths[0], unet.resolutions[0]))
    return model


def latent_identity(recipe: LatentRecipe, conditioning: Conditioning) -> dict[str, Any]:
    """What makes one shipped latent denoiser: its networks, training recipe, data and the autoencoder's recipe."""
    clauses = {"read_clauses": recipe.read_clauses} if conditioning == "crossattn" else {}  # pooled reads whole prompts
    return {**clauses, "conditioning": conditioning, "unet": recipe.unet.to_dict(), "text": recipe.text.to_dict(),
            "train": config_identity(recipe.train), "schedule": LATENT_SCHEDULE, "num_images": recipe.num_images,
            "position_embedding": recipe.position_embedding, "data_seed": SCENES_TRAIN_SEED,
            "autoencoder": autoencoder_identity(recipe)}


def latent_record(conditioning: Conditioning, data: Any = None) -> Recipe:
    """A latent denoiser as a record (``runs/latent-<conditioning>-<profile>``; ships for the cpu profile). Its data:
    the scaled latents of the training scenes under the profile's autoencoder and their tokenized captions."""
    check_choice("conditioning", conditioning, CONDITIONINGS)
    return Recipe(
        name=f"latent_{conditioning}", chapter="11", build=lambda p: build_latent_denoiser(latent_recipe(p), conditioning),
        objective=lambda p: make_schedule(LATENT_SCHEDULE), train_config=lambda p: latent_recipe(p).train,
        data=data or _scene_latents_and_tokens, identity=lambda p: latent_identity(latent_recipe(p), conditioning),
        shipped=("cpu",), run_name=lambda p: f"latent-{conditioning}-{p}", loss_every=10,
        card_info=("conditioning", "losses", "num_parameters", "scale_factor", "steps", "train_seconds"),
        script="python benchmarks/train_latent.py")


def _scene_latents_and_tokens(profile: str, ae: Autoencoder | None = None,
                              scale_factor: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    if ae is None or scale_factor is None:
        ae, ae_info = autoencoder_model(profile, progress=False)
        scale_factor = ae_info["scale_factor"]
    data = make_scenes(latent_recipe(profile).num_images, seed=SCENES_TRAIN_SEED)
    return scene_latents(ae, data.images, scale_factor), scene_tokenize(data.captions)


LATENT_DENOISERS = {c: register(latent_record(c)) for c in CONDITIONINGS}


def latent_model(profile: Profile = "auto", conditioning: Conditioning = "crossattn", *, ae: Autoencoder | None = None,
                 scale_factor: float | None = None, run_dir: str | os.PathLike | None = None, retrain: bool = False,
                 progress: bool = True, device: str | torch.device | None = None,
                 ) -> tuple[torch.nn.Module, NoiseSchedule, dict[str, Any]]:
    """A latent denoiser (:data:`LATENT_DENOISERS`) trained on the scaled latents of the training scenes and their
    captions: shipped or cached (:func:`course_lib.registry.obtain`).

    ``cpu`` profile: the EMA weights in ``course_lib/weights/latent_<conditioning>.*`` (trained by
    ``benchmarks/train_latent.py`` with this recipe on the shipped autoencoder's latents), verified
    by sha256 and recipe. Otherwise, or with ``retrain=True`` or a ``run_dir``:
    :func:`course_lib.training.train` on ``(scene_latents, scene_tokenize(captions))`` with
    condition dropout 0.1 (classifier-free guidance), v-prediction on the cosine schedule; run
    directory ``runs/latent-<conditioning>-<profile>``, verified on load (sha256, configs, data).
    ``retrain=True`` trains the autoencoder again too, unless ``ae`` and ``scale_factor`` are given.
    Returns ``(ema_model, schedule, info)``.
    """
    check_choice("conditioning", conditioning, CONDITIONINGS)
    check_bool("retrain", retrain)
    prof = resolve_profile(profile)
    if ae is None or scale_factor is None:
        ae, ae_info = autoencoder_model(prof, progress=progress, retrain=retrain)
        scale_factor = ae_info["scale_factor"]
    recipe = latent_record(conditioning, data=lambda p: _scene_latents_and_tokens(p, ae, scale_factor))
    model, info = obtain(recipe, prof, run_dir=run_dir, retrain=retrain, progress=progress, device=device)
    return model, make_schedule(LATENT_SCHEDULE), {"conditioning": conditioning, "scale_factor": scale_factor,
                                                   "num_parameters": sum(p.numel() for p in model.parameters()), **info}


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


def load_pipeline(profile: Profile = "auto", conditioning: Conditioning = "crossattn", *, progress: bool = True) -> Pipeline:
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
    3. DDIM (:data:`LATENT_DDIM`: trailing steps, chapter 06) from pure latent noise z_T ~ N(0, I)
       (B, 4, 16, 16), each step one batched call on
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
               prediction_type=LATENT_PREDICTION_TYPE, **LATENT_DDIM)
    images = decode_latents(pipe.autoencoder, z / pipe.scale_factor)
    return (images, z) if return_latents else images


