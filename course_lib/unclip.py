"""DALL·E 2's way (unCLIP): a prior from caption vectors to picture vectors, a decoder from picture vectors and
captions to pictures (chapter 13).

Ramesh et al. 2022 ("Hierarchical text-conditional image generation with CLIP latents", §2 and Figure 2) draw
a picture for a caption y in two steps, both diffusion models:

    caption y ─ CLIP text ─ z_y ─ **prior** P(z_i | y) ─ picture vector z_i ─ **decoder** P(x | z_i, y) ─ picture x

The **prior** (§2.2; a diffusion model on vectors that predicts z_i itself, as theirs does) turns the caption's
CLIP vector into a CLIP *picture* vector: a caption leaves things open (the background, when not named), and the
prior draws one of the pictures it could mean. The **decoder** paints a picture from the picture vector **and the
caption**, as theirs does (§2.1: GLIDE, Nichol et al. 2022, its own text encoder reading the caption, with the CLIP
picture vector projected to four extra context tokens after the caption's words and added to the time embedding;
the vector dropped 10 % and the caption 50 % of the time in training, :class:`DecoderDropout`, for
classifier-free guidance). What only this design gives: **variations** — encode a picture, decode its vector (no
caption) with new noise — and **walks** between two pictures' vectors (§3.1–3.2), by slerp on the sphere.

Here the decoder is chapter 11's latent cross-attention U-Net (:class:`course_lib.models.clip.CLIPVectorUNet`)
started from chapter 11's trained cross-attention denoiser, its text encoder included: with no picture vector it
is chapter 11's painter, and it learns in :func:`decoder_config`'s steps to read CLIP picture vectors beside the
words. Guidance (:func:`decode`): ε(∅, ∅) + s·(ε(vector, caption) − ε(∅, ∅)), or with the caption dropped
ε(∅, ∅) + s·(ε(vector, ∅) − ε(∅, ∅)). The card of ``unclip_decoder`` holds both prompt accuracies on chapter 11's
held-out compositions: with the caption the decoder paints them about as often as chapter 11's painter; from the
vector alone it falls back on seen compositions far more often — CLIP's picture space tells a held-out scene from
its mirror (:func:`side_separation`), but a decoder trained on the vectors of 6,000 pictures paints a held-out
composition less often (:func:`shows_held_out`).
CLIP vectors are unit vectors; both models see them times √D, so that each number is of size about 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, NamedTuple, Sequence

import torch
from torch import nn

from .clip import clip_identity, clip_model, clip_recipe, image_vectors, random_captions
from .data import SCENES_TRAIN_SEED
from .forward import PredictionType
from .guidance import cfg_model
from .latent.pipeline import (
    LATENT_DDIM,
    LATENT_PREDICTION_TYPE,
    LATENT_SCHEDULE,
    autoencoder_identity,
    autoencoder_model,
    latent_identity,
    latent_model,
    latent_recipe,
    scene_latents,
)
from .models.autoencoder import Autoencoder, decode_latents
from .checkpoints import schedule_id
from .models.clip import CLIP, CLIPVectorUNet, PriorConfig, VectorPrior, decoder_condition
from .models.cross_attention import CrossAttentionConfig
from .models.embeddings import PositionEmbedding
from .optim import TrainConfig, config_identity
from .registry import Recipe, obtain, register
from .samplers import sample, slerp
from .objectives import DiffusionObjective
from .scenes import SCENE_VOCAB, make_scenes, scene_tokenize
from .schedules import NoiseSchedule, make_schedule
from .settings import Profile, check_bool, check_float, check_int, resolve_profile

PRIOR_SCHEDULE = "cosine"
PRIOR_PREDICTION_TYPE = "sample"  # the prior predicts the picture vector itself (Ramesh et al. 2022, §2.2)
PRIOR_PHRASINGS = 4  # captions drawn per training scene for the prior's pairs
DEFAULT_PRIOR_GUIDANCE = 2.0
DEFAULT_DECODER_GUIDANCE = 3.0


def vector_scale(model: CLIP) -> float:
    """√D: CLIP's unit vectors times this have numbers of size about 1."""
    return math.sqrt(model.config.embed_dim)


# ----------------------------------------------------------------------------- the prior
def prior_config(profile: Profile = "auto") -> tuple[PriorConfig, int, TrainConfig]:
    """The prior's network, training scenes and training config for a profile."""
    prof = resolve_profile(profile)
    d = clip_recipe(prof).config.embed_dim
    if prof == "smoke":
        return PriorConfig(d, d, hidden=32, num_blocks=1), 64, TrainConfig(
            steps=4, batch_size=16, lr=1e-3, warmup=1, checkpoint_every=0, ema_decay=0.9, cond_drop_prob=0.1,
            prediction_type=PRIOR_PREDICTION_TYPE)
    return PriorConfig(d, d, hidden=256 if prof == "cpu" else 512, num_blocks=4), clip_recipe(prof).num_images, TrainConfig(
        steps=3000 if prof == "cpu" else 10000, batch_size=256, lr=1e-3, warmup=100, checkpoint_every=1000,
        ema_decay=0.999, cond_drop_prob=0.1, prediction_type=PRIOR_PREDICTION_TYPE)


def _prior_pairs(profile: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(picture vectors, caption vectors) × √D: CLIP's own training scenes, each with :data:`PRIOR_PHRASINGS` captions."""
    clip, _ = clip_model(profile, progress=False)  # (outside no_grad: it may have to train)
    data = make_scenes(prior_config(profile)[1], seed=SCENES_TRAIN_SEED)
    captions = random_captions(data.attributes.repeat(PRIOR_PHRASINGS, 1), torch.Generator().manual_seed(0))
    with torch.no_grad():
        pictures = image_vectors(clip, data.images).repeat(PRIOR_PHRASINGS, 1)
        text = torch.cat([clip.encode_text(captions[i:i + 2048]) for i in range(0, len(captions), 2048)]).cpu()
    return pictures * vector_scale(clip), text * vector_scale(clip)


#: unCLIP's prior (ships for the cpu profile)
PRIOR = register(Recipe(
    name="unclip_prior", chapter="13", build=lambda p: VectorPrior(prior_config(p)[0]),
    objective=lambda p: make_schedule(PRIOR_SCHEDULE), train_config=lambda p: prior_config(p)[2], data=_prior_pairs,
    identity=lambda p: {"config": prior_config(p)[0].to_dict(), "num_images": prior_config(p)[1],
                        "phrasings": PRIOR_PHRASINGS, "train": config_identity(prior_config(p)[2]),
                        "schedule": PRIOR_SCHEDULE, "clip": clip_identity(p), "data_seed": SCENES_TRAIN_SEED},
    shipped=("cpu",), run_name=lambda p: f"unclip-prior-{p}", loss_every=20,
    card_info=("losses", "steps", "train_seconds", "profile"), script="python benchmarks/train_clip.py"))


# ----------------------------------------------------------------------------- the decoder
DECODER_TOKENS = 4  # extra context tokens projected from the picture vector (Ramesh et al. 2022, §2.1)
VECTOR_DROP = 0.1  # training drops the picture vector 10 % of the time … (§2.1)
CAPTION_DROP = 0.5  # … and the caption 50 % of the time, each on its own (§2.1)


@dataclass(frozen=True)
class DecoderDropout:
    """unCLIP's decoder loss (Ramesh et al. 2022, §2.1): chapter 11's diffusion loss (v-prediction) after dropping,
    each on its own draw, the picture vector with probability ``vector_drop`` and the caption with probability
    ``caption_drop`` (both drawn from the training generator, before t and ε), so that the decoder learns to paint
    from both, from either, and from nothing: what classifier-free guidance needs."""

    schedule: NoiseSchedule
    embed_dim: int
    vector_drop: float = VECTOR_DROP
    caption_drop: float = CAPTION_DROP
    prediction_type: PredictionType = LATENT_PREDICTION_TYPE

    def loss(self, model: nn.Module, x0: torch.Tensor, cond: torch.Tensor | None, generator: torch.Generator,
             *, batch_size: int | None = None, part: slice | None = None) -> torch.Tensor:
        if cond is None:
            raise ValueError("the decoder needs conditions: data=(latents, decoder_condition(vectors, ids))")
        B = batch_size or x0.shape[0]
        part = part or slice(0, B)
        drop_vector = (torch.rand(B, generator=generator) < self.vector_drop)[part].to(cond.device)
        drop_caption = (torch.rand(B, generator=generator) < self.caption_drop)[part].to(cond.device)
        d = self.embed_dim
        cond = torch.cat([torch.where(drop_vector[:, None], float("nan"), cond[:, :d]),
                          torch.where(drop_caption[:, None], float("nan"), cond[:, d:])], 1)
        diffusion = DiffusionObjective(self.schedule.to(x0.device), self.prediction_type)
        return diffusion.loss(model, x0, cond, generator, batch_size=batch_size, part=part)

    def identity(self) -> dict[str, Any]:
        return {**schedule_id(self.schedule), "prediction_type": self.prediction_type,
                "vector_drop": self.vector_drop, "caption_drop": self.caption_drop}


def decoder_config(profile: Profile = "auto") -> TrainConfig:
    """Chapter 11's latent recipe (batch 64), fewer steps from its cross-attention U-Net, a lower peak learning rate
    and a faster EMA for the short run. The loss's v-prediction and the two condition dropouts live in the objective
    (:class:`DecoderDropout`), so the config keeps the defaults there."""
    prof = resolve_profile(profile)
    base = replace(latent_recipe(prof).train, prediction_type="epsilon", cond_drop_prob=0.0)
    return base if prof == "smoke" else replace(base, steps=3000 if prof == "cpu" else 8000, lr=1e-3, warmup=50,
                                                ema_decay=0.995, checkpoint_every=500)


def build_decoder(profile: Profile = "auto") -> CLIPVectorUNet:
    """A :class:`CLIPVectorUNet` of chapter 11's cross-attention size and layout (its position map after the stem),
    reading the caption through chapter 11's text encoder and CLIP picture vectors through :data:`DECODER_TOKENS`
    tokens and its time embedding; it predicts v, as chapter 11's."""
    recipe = latent_recipe(profile)
    config = CrossAttentionConfig(recipe.unet, recipe.text, tuple(r for r in recipe.unet.resolutions if r <= 16),
                                  clause_separator=SCENE_VOCAB.index("and"))
    model = CLIPVectorUNet(config, clip_recipe(profile).config.embed_dim, DECODER_TOKENS)
    model.stem = nn.Sequential(model.stem, PositionEmbedding(recipe.unet.widths[0], recipe.unet.resolutions[0]))
    model.prediction_type = LATENT_PREDICTION_TYPE
    return model


def _decoder_start(profile: str) -> dict[str, torch.Tensor]:
    """Chapter 11's cross-attention denoiser, its text encoder included (GLIDE's caption encoder, here chapter 11's);
    the new parts (the token projection and the vector's time-embedding MLP) from the seeded build, the MLP's last
    layer zero: with no picture vector it is chapter 11's painter, and at the start the vector reaches the U-Net
    through the tokens only."""
    ae, ae_info = autoencoder_model(profile, progress=False)
    base, _, _ = latent_model(profile, "crossattn", ae=ae, scale_factor=ae_info["scale_factor"], progress=False)
    torch.manual_seed(decoder_config(profile).seed)
    state = build_decoder(profile).state_dict()
    state.update(base.state_dict())
    for k in ("vector_embed.proj.2.weight", "vector_embed.proj.2.bias"):  # VectorEmbedding's last Linear
        state[k] = torch.zeros_like(state[k])
    return state


def _decoder_pairs(profile: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Chapter 11's training latents, and their conditions: the CLIP picture vectors (× √D) of the same scenes and
    their captions' token ids (:func:`course_lib.models.clip.decoder_condition`)."""
    ae, ae_info = autoencoder_model(profile, progress=False)  # (outside no_grad: they may have to train)
    clip, _ = clip_model(profile, progress=False)
    data = make_scenes(latent_recipe(profile).num_images, seed=SCENES_TRAIN_SEED)
    with torch.no_grad():
        vectors = image_vectors(clip, data.images) * vector_scale(clip)
        return (scene_latents(ae, data.images, ae_info["scale_factor"]),
                decoder_condition(vectors, scene_tokenize(data.captions)))


#: unCLIP's decoder (ships for the cpu profile)
DECODER = register(Recipe(
    name="unclip_decoder", chapter="13", build=build_decoder,
    objective=lambda p: DecoderDropout(make_schedule(LATENT_SCHEDULE), clip_recipe(p).config.embed_dim),
    train_config=decoder_config, data=_decoder_pairs, init=_decoder_start,
    identity=lambda p: {"conditioning": "clip_image_vector+caption", "tokens": DECODER_TOKENS, "time_embedding": True,
                        "vector_drop": VECTOR_DROP, "caption_drop": CAPTION_DROP,
                        "prediction_type": LATENT_PREDICTION_TYPE,
                        "unet": latent_recipe(p).unet.to_dict(), "clip": clip_identity(p),
                        "init": latent_identity(latent_recipe(p), "crossattn"),
                        "train": config_identity(decoder_config(p)), "schedule": LATENT_SCHEDULE,
                        "num_images": latent_recipe(p).num_images, "data_seed": SCENES_TRAIN_SEED,
                        "autoencoder": autoencoder_identity(latent_recipe(p))},
    shipped=("cpu",), run_name=lambda p: f"unclip-decoder-{p}", loss_every=10,
    card_info=("losses", "steps", "train_seconds", "profile"), script="python benchmarks/train_clip.py"))


# ----------------------------------------------------------------------------- the pipeline
class UnCLIP(NamedTuple):
    """The pieces of unCLIP: the CLIP, the prior, the decoder, the autoencoder and its latent scale."""

    clip: CLIP
    prior: VectorPrior
    decoder: CLIPVectorUNet
    autoencoder: Autoencoder
    scale_factor: float
    num_steps: int


def load_unclip(profile: Profile = "auto", *, progress: bool = True) -> tuple[UnCLIP, dict[str, Any]]:
    """Every piece (shipped for ``cpu``, sha256 and recipe checked; else trained once and cached) and their infos."""
    prof = resolve_profile(profile)
    clip, clip_info = clip_model(prof, progress=progress)
    prior, prior_info = obtain(PRIOR, prof, progress=progress)
    decoder, decoder_info = obtain(DECODER, prof, progress=progress)
    ae, ae_info = autoencoder_model(prof, progress=progress)
    return (UnCLIP(clip, prior, decoder, ae, ae_info["scale_factor"], latent_recipe(prof).num_steps),
            {"clip": clip_info, "prior": prior_info, "decoder": decoder_info})


@torch.no_grad()
def prior_sample(u: UnCLIP, text: torch.Tensor, *, seed: int = 0, guidance_scale: float = DEFAULT_PRIOR_GUIDANCE,
                 num_steps: int = 25) -> torch.Tensor:
    """Picture vectors (N, D), unit length, drawn by the prior for caption vectors ``text`` (N, D) (unit length):
    DDIM on trailing steps, classifier-free guidance ``guidance_scale`` towards the caption."""
    s, k = vector_scale(u.clip), check_int("num_steps", num_steps, min_value=1)
    z = sample(cfg_model(u.prior, check_float("guidance_scale", guidance_scale, min_value=0.0)), make_schedule(PRIOR_SCHEDULE),
               tuple(text.shape), sampler="ddim", num_steps=k, cond=text * s, generator=torch.Generator().manual_seed(seed),
               progress=False, prediction_type=PRIOR_PREDICTION_TYPE, spacing="trailing", clip_sample=False)
    return torch.nn.functional.normalize(z, dim=-1)


@torch.no_grad()
def decode(u: UnCLIP, vectors: torch.Tensor, captions: Sequence[str] | None = None, *, seed: int = 0,
           guidance_scale: float = DEFAULT_DECODER_GUIDANCE, noise: torch.Tensor | None = None) -> torch.Tensor:
    """Pictures (N, 3, 64, 64) painted from CLIP picture vectors (N, D) (unit length) and, when given, their
    ``captions`` (N strings; ``None``: the caption dropped, the vector alone): chapter 11's DDIM with classifier-free
    guidance ε(∅, ∅) + s·(ε(vector, caption) − ε(∅, ∅)), the unconditional branch with neither, then the
    autoencoder's decoder. ``noise``: the starting latents (N, 4, 16, 16)."""
    if isinstance(captions, str) or (captions is not None and len(captions) != len(vectors)):
        raise ValueError(f"captions must be None or a list of {len(vectors)} strings, one per vector")
    shape = (len(vectors), *u.autoencoder.config.latent_shape)
    cond = decoder_condition(vectors * vector_scale(u.clip), None if captions is None else scene_tokenize(list(captions)))
    z = sample(cfg_model(u.decoder, check_float("guidance_scale", guidance_scale, min_value=0.0)),
               make_schedule(LATENT_SCHEDULE), shape, sampler="ddim", num_steps=u.num_steps,
               cond=cond, generator=torch.Generator().manual_seed(seed), noise=noise,
               progress=False, prediction_type=LATENT_PREDICTION_TYPE, **LATENT_DDIM)
    return decode_latents(u.autoencoder, z / u.scale_factor)


def unclip_text_to_image(u: UnCLIP, prompts: Sequence[str], *, per_prompt: int = 1, seed: int = 0,
                         prior_guidance: float = DEFAULT_PRIOR_GUIDANCE,
                         decoder_guidance: float = DEFAULT_DECODER_GUIDANCE, caption: bool = True) -> torch.Tensor:
    """caption → CLIP text vector → prior → picture vector → decoder (reading the vector and, as DALL·E 2's does, the
    caption) → picture, ``per_prompt`` each (N·per, 3, 64, 64). ``caption=False``: the decoder reads the vector alone."""
    if isinstance(prompts, str):
        raise ValueError(f"prompts must be a list of strings, e.g. [{prompts!r}]")
    per = check_int("per_prompt", per_prompt, min_value=1)
    text = u.clip.encode_text(list(prompts)).cpu().repeat_interleave(per, 0)
    vectors = prior_sample(u, text, seed=seed, guidance_scale=prior_guidance)
    captions = [p for p in prompts for _ in range(per)] if check_bool("caption", caption) else None
    return decode(u, vectors, captions, seed=seed + 1, guidance_scale=decoder_guidance)


def variations(u: UnCLIP, picture: torch.Tensor, n: int, *, seed: int = 0) -> torch.Tensor:
    """``n`` new pictures (n, 3, 64, 64) from one picture's CLIP vector, each from its own noise, no caption (§3.1)."""
    vector = image_vectors(u.clip, picture[None] if picture.dim() == 3 else picture[:1])  # (1, D)
    return decode(u, vector.expand(check_int("n", n, min_value=1), -1), seed=seed)


def walk(u: UnCLIP, a: torch.Tensor, b: torch.Tensor, steps: int, *, seed: int = 0) -> torch.Tensor:
    """Pictures (steps, 3, 64, 64) along the slerp between two pictures' CLIP vectors, all from one noise (§3.2)."""
    steps = check_int("steps", steps, min_value=2)
    va, vb = image_vectors(u.clip, torch.stack([a, b])).split(1)
    path = torch.cat([slerp(va, vb, float(w)) for w in torch.linspace(0, 1, steps)])  # (steps, D)
    noise = torch.randn((1, *u.autoencoder.config.latent_shape), generator=torch.Generator().manual_seed(seed))
    return decode(u, torch.nn.functional.normalize(path, dim=-1), noise=noise.expand(steps, -1, -1, -1).contiguous())


def prior_reading(u: UnCLIP, captions: Sequence[str], *, seed: int = 0) -> dict[str, float]:
    """How well the prior's picture vectors say what their captions ask: ``reads_as_asked`` is the share of drawn
    vectors whose zero-shot reading (the best of the 672 scene captions, :func:`course_lib.clip.zero_shot_read`'s
    rule) holds every attribute its caption names; ``cosine`` their mean cosine with the caption's own vector."""
    from .clip import all_scene_rows, caption_vectors
    from .scenes import parse_scene_prompt

    text = u.clip.encode_text(list(captions)).cpu() if len(captions) else torch.zeros(0, u.clip.config.embed_dim)
    drawn = prior_sample(u, text.detach(), seed=seed)
    rows = all_scene_rows()
    read = rows[(drawn @ caption_vectors(u.clip, rows).T).argmax(1)]
    asked = torch.stack([parse_scene_prompt(c) for c in captions])
    return {"reads_as_asked": float(((read == asked) | (asked == -1)).all(1).float().mean()),
            "cosine": float((drawn * text).sum(-1).mean().detach())}


def unclip_prompt_accuracy(u: UnCLIP, prompts: Sequence[str], *, per_prompt: int = 8, seed: int = 0,
                           caption: bool = True, **guidance: float) -> dict[str, Any]:
    """Share of unCLIP's pictures in which chapter 11's scene judge sees everything each prompt asked
    (``caption=False``: the decoder reads the prior's picture vector alone)."""
    from .models.scene_judge import scene_matches
    from .scenes import parse_scene_prompt

    images = unclip_text_to_image(u, prompts, per_prompt=per_prompt, seed=seed, caption=caption, **guidance)
    asked = torch.stack([parse_scene_prompt(p) for p in prompts]).repeat_interleave(per_prompt, 0)
    ok = scene_matches(images, asked).float().view(len(prompts), per_prompt)
    return {"accuracy": float(ok.mean()), "per_prompt": {p: float(o.mean()) for p, o in zip(prompts, ok)}, "images": images}


def swap_sides(rows: torch.Tensor) -> torch.Tensor:
    """Scene rows (N, 7) with the left and right animals exchanged (the background kept)."""
    return torch.cat([rows[:, 3:6], rows[:, 0:3], rows[:, 6:]], 1)


def shows_held_out(images: torch.Tensor) -> float:
    """The share of pictures in which the scene judge sees a held-out composition at all (a dog in a green hat on
    the left, a cat in a purple hat on the right: :func:`course_lib.scenes.held_out_mask`), whatever else they show."""
    from .models.scene_judge import judge_scenes
    from .scenes import held_out_mask

    return float(held_out_mask(judge_scenes(images)).float().mean())


@torch.no_grad()
def side_separation(model: CLIP, row: Sequence[int], *, n: int = 32, seed: int = 0) -> dict[str, float]:
    """Does CLIP's picture space tell a scene from its mirror? The mean cosine between the picture vectors of ``n``
    drawings of scene ``row`` and of ``n`` more (``within``), and between them and ``n`` drawings of the scene
    with its sides swapped (``to_swapped``)."""
    import numpy as np

    from .scenes import draw_scenes

    def vectors(r: torch.Tensor, k: int) -> torch.Tensor:
        pictures = draw_scenes(r[None].expand(n, -1).numpy(), np.random.default_rng(seed + k))
        return image_vectors(model, torch.from_numpy(pictures).float() * 2 - 1)

    row_t = torch.as_tensor(list(row), dtype=torch.long)
    a, b, m = vectors(row_t, 0), vectors(row_t, 1), vectors(swap_sides(row_t[None])[0], 2)
    return {"within": float((a @ b.T).mean()), "to_swapped": float((a @ m.T).mean())}


__all__ = [
    "CAPTION_DROP", "DECODER", "DECODER_TOKENS", "DEFAULT_DECODER_GUIDANCE", "DecoderDropout", "VECTOR_DROP", "DEFAULT_PRIOR_GUIDANCE", "PRIOR", "UnCLIP", "build_decoder", "decode",
    "decoder_config", "load_unclip", "prior_config", "prior_reading", "prior_sample", "shows_held_out", "side_separation", "swap_sides", "unclip_prompt_accuracy", "unclip_text_to_image",
    "variations", "vector_scale", "walk",
]
