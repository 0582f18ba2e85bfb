"""CLIP on the scenes: the contrastive loss, the recipe, zero-shot reading, retrieval and the CLIP score (chapter 13).

Radford et al. 2021 (CLIP, §2.3 and Figure 3's pseudocode) train a picture encoder and a caption encoder
(:mod:`course_lib.models.clip`) on a batch of N (picture, caption) pairs by a matching game: the N×N
similarities s_ij = cos(picture i, caption j) / τ should pick caption i for picture i out of the N, and picture
j for caption j. Each row is an N-way classification whose right answer is on the diagonal:

    L = ½ · [ (1/N) Σ_i −log softmax_j(s_ij)[i]  +  (1/N) Σ_j −log softmax_i(s_ij)[j] ]      (:func:`clip_loss`)

the symmetric InfoNCE loss (van den Oord et al. 2018, eq. 4). The temperature τ is learned with the encoders.
:class:`ContrastiveObjective` plays that game through the course's one training loop; every step draws a fresh
phrasing of each scene's caption (two wordings of a hat, either animal first, the background named or not),
so the caption encoder must learn what the words mean, not one template. The training scenes are chapter 11's
(``make_scenes(n, seed=SCENES_TRAIN_SEED)``): the held-out compositions (``scenes.HELD_OUT``) never appear.

What a trained CLIP gives (measured by :func:`course_lib.clip_measuring.clip_benchmark`, ``benchmarks/clip.py``):

- **zero-shot reading** (:func:`zero_shot_read`): score a picture against the captions of all
  :func:`all_scene_rows` (672 scenes the world can show) and read the best one's attributes (CLIP §3.1.2);
  with **prompt ensembling** (§3.1.4) each candidate is the mean of its phrasings' vectors;
- **retrieval** (:func:`retrieval`): a caption in, the best-scoring picture out;
- the **CLIP score** (:func:`clip_score`; Hessel et al. 2021, "CLIPScore", eq. 1 with w = 100, as
  torchmetrics' ``CLIPScore``): 100 · max(cos(picture, caption), 0), a prompt-faithfulness metric needing no
  labels, put beside chapter 11's scene judge by :func:`judge_agreement`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from .data import SCENES_TEST_SEED, SCENES_TRAIN_SEED
from .models.clip import CLIP, CLIPConfig
from .optim import TrainConfig, config_identity
from .registry import Recipe, obtain, register
from .scenes import (
    NOBODY,
    held_out_mask,
    make_scenes,
    parse_scene_prompt,
    scene_caption,
    scene_tokenize,
)
from .settings import Profile, check_bool, check_int, resolve_profile

NUM_PHRASINGS = 8  # two wordings × two orders × background named or not


# ----------------------------------------------------------------------------- the loss
def clip_loss(logits: torch.Tensor) -> torch.Tensor:
    """The symmetric InfoNCE loss of a similarity matrix (N, N) whose matching pairs are on the diagonal:
    the mean of the cross-entropy of the rows (picture → caption) and of the columns (caption → picture)."""
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[0] != logits.shape[1]:
        got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"logits must be a square similarity matrix (N, N), got {got}")
    labels = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


def random_captions(rows: torch.Tensor, generator: torch.Generator) -> list[str]:
    """One caption per scene row (N, 7), its phrasing drawn from ``generator``: the wording of the hats,
    which animal comes first, whether the background is named (one of :data:`NUM_PHRASINGS`)."""
    picks = torch.randint(0, 2, (len(rows), 3), generator=generator).tolist()
    return [scene_caption(r, template=a, right_first=bool(b), with_background=bool(c))
            for r, (a, b, c) in zip(rows.tolist(), picks)]


@dataclass(frozen=True)
class ContrastiveObjective:
    """CLIP's objective for :func:`course_lib.training.train`: data = (scenes, attribute rows); each step
    captions the rows afresh (:func:`random_captions`) and returns :func:`clip_loss` of the batch."""

    def loss(self, model: CLIP, x0: torch.Tensor, cond: torch.Tensor | None, generator: torch.Generator) -> torch.Tensor:
        if cond is None:
            raise ValueError("CLIP learns from pairs: data must be (scenes, attribute rows)")
        ids = scene_tokenize(random_captions(cond.cpu(), generator)).to(x0.device)
        return clip_loss(model(x0, ids))

    def identity(self) -> dict[str, Any]:
        return {"objective": "clip_symmetric_infonce", "captions": "random phrasing per step", "version": 1}


# ----------------------------------------------------------------------------- the recipe
@dataclass(frozen=True)
class CLIPRecipe:
    """What a profile trains: the network, the number of training scenes and the training config."""

    config: CLIPConfig
    num_images: int
    train: TrainConfig


def clip_recipe(profile: Profile = "auto") -> CLIPRecipe:
    """``smoke`` (seconds), ``cpu`` (shipped: ``benchmarks/train_clip.py``) or ``gpu``."""
    prof = resolve_profile(profile)
    if prof == "smoke":
        return CLIPRecipe(CLIPConfig(embed_dim=16, widths=(4, 8, 8), hidden=32, text_width=16, text_layers=1,
                                     text_heads=2), 64,
                          TrainConfig(steps=4, batch_size=16, lr=2e-3, warmup=1, checkpoint_every=0, ema_decay=0.9))
    if prof == "cpu":
        return CLIPRecipe(CLIPConfig(), 8000, TrainConfig(steps=800, batch_size=128, lr=2e-3, warmup=100,
                                                           weight_decay=0.01, ema_decay=0.995, checkpoint_every=200))
    return CLIPRecipe(CLIPConfig(embed_dim=128, widths=(32, 64, 128), hidden=512, text_width=128),
                      20000, TrainConfig(steps=6000, batch_size=256, lr=1e-3, warmup=300, weight_decay=0.01,
                                         ema_decay=0.999, checkpoint_every=1000))


def _training_pairs(profile: str) -> tuple[torch.Tensor, torch.Tensor]:
    data = make_scenes(clip_recipe(profile).num_images, seed=SCENES_TRAIN_SEED)  # held-out compositions redrawn
    return data.images, data.attributes


def clip_identity(profile: str) -> dict[str, Any]:
    """What a shipped CLIP card must hold: the network, the data, the objective and the training config."""
    recipe = clip_recipe(profile)
    return {"config": recipe.config.to_dict(), "num_images": recipe.num_images, "data_seed": SCENES_TRAIN_SEED,
            "objective": ContrastiveObjective().identity(), "train": config_identity(recipe.train)}


#: chapter 13's CLIP (ships for the cpu profile)
CLIP_SCENES = register(Recipe(
    name="clip_scenes", chapter="13", build=lambda p: CLIP(clip_recipe(p).config),
    objective=lambda p: ContrastiveObjective(), train_config=lambda p: clip_recipe(p).train, data=_training_pairs,
    identity=clip_identity, shipped=("cpu",), run_name=lambda p: f"clip-{p}", loss_every=10,
    card_info=("train_seconds", "steps", "losses", "config", "profile", "temperature"),
    extras=lambda model, p: {"temperature": model.temperature}, script="python benchmarks/train_clip.py"))


def clip_model(profile: Profile = "auto", *, run_dir: str | os.PathLike | None = None, device: str | None = None,
               progress: bool = True, retrain: bool = False) -> tuple[CLIP, dict[str, Any]]:
    """The chapter's CLIP (:data:`CLIP_SCENES`) in eval mode and its info (``temperature``, ``train_seconds``,
    ``losses``, …): shipped for ``cpu`` (sha256 and recipe checked), else trained once and cached
    (:func:`course_lib.registry.obtain`); ``retrain=True`` trains it here."""
    model, info = obtain(CLIP_SCENES, profile, run_dir=run_dir, device=device, progress=progress, retrain=retrain)
    return model, {**info, "temperature": model.temperature}


# ----------------------------------------------------------------------------- using it
def clip_score(model: CLIP, images: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
    """CLIPScore (Hessel et al. 2021, eq. 1, w = 100 as torchmetrics): 100·max(cos(picture_i, prompt_i), 0), (N,)."""
    if isinstance(prompts, str) or len(prompts) != len(images):
        raise ValueError(f"prompts must be a list of one prompt per picture ({len(images)}), got {prompts!r:.80}")
    with torch.no_grad():
        cos = (model.encode_image(images) * model.encode_text(list(prompts))).sum(-1)
    return 100 * cos.clamp(min=0).cpu()


def all_scene_rows() -> torch.Tensor:
    """Every scene the world can show (672, 7): each side empty or an animal with no hat or one of 5 hats, not
    both empty, on each of 4 backgrounds."""
    from .hats import BACKGROUNDS, HAT_COLOURS

    slots = [(NOBODY, 0, -1)] + [(a, 0, -1) for a in (0, 1)] + [(a, 1, c) for a in (0, 1) for c in range(len(HAT_COLOURS))]
    rows = [[*left, *right, bg] for left in slots for right in slots for bg in range(len(BACKGROUNDS))
            if not (left[0] == NOBODY and right[0] == NOBODY)]
    return torch.tensor(rows, dtype=torch.long)


@torch.no_grad()
def caption_vectors(model: CLIP, rows: torch.Tensor, *, ensemble: bool = True, batch_size: int = 1024) -> torch.Tensor:
    """Unit vectors (N, D) of scene rows' captions: the full caption (first wording, left first, background
    named), or with ``ensemble`` the renormalised mean over the wordings and orders (CLIP §3.1.4)."""
    phrasings = [(t, f) for t in (0, 1) for f in (False, True)] if ensemble else [(0, False)]
    total = 0
    for template, right_first in phrasings:
        caps = [scene_caption(r, template=template, right_first=right_first) for r in rows.tolist()]
        total = total + torch.cat([model.encode_text(caps[i:i + batch_size]) for i in range(0, len(caps), batch_size)])
    return F.normalize(total, dim=-1).cpu()


@torch.no_grad()
def image_vectors(model: CLIP, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Unit vectors (N, D) of pictures, in batches."""
    return torch.cat([model.encode_image(images[i:i + batch_size]) for i in range(0, len(images), batch_size)]).cpu()


def zero_shot_read(model: CLIP, images: torch.Tensor, *, ensemble: bool = True) -> torch.Tensor:
    """The scene row (N, 7) whose caption scores best for each picture, among all 672 (:func:`all_scene_rows`)."""
    rows = all_scene_rows()
    scores = image_vectors(model, images) @ caption_vectors(model, rows, ensemble=ensemble).T  # (N, 672)
    return rows[scores.argmax(1)]


def retrieval(model: CLIP, images: torch.Tensor, rows: torch.Tensor) -> dict[str, float]:
    """Text → picture among ``images``: each picture's full caption ranks all pictures. ``r1``: the top picture
    shows what the caption says (its row equals the caption's: several pictures of a large set share a row);
    ``r1_exact``: the top picture is the captioned one itself; ``r5``: one of the top five shows it."""
    text = caption_vectors(model, rows, ensemble=False)  # (N, D)
    scores = text @ image_vectors(model, images).T  # (N captions, N pictures)
    top = scores.topk(min(5, len(images)), dim=1).indices  # (N, 5)
    same = (rows[top] == rows[:, None]).all(-1)  # (N, 5): the picture shows the caption's scene
    return {"r1": float(same[:, 0].float().mean()), "r5": float(same.any(1).float().mean()),
            "r1_exact": float((top[:, 0] == torch.arange(len(images))).float().mean())}


def zero_shot_accuracy(model: CLIP, images: torch.Tensor, rows: torch.Tensor, *, ensemble: bool = True) -> dict[str, Any]:
    """``all``: the share of pictures whose every attribute CLIP reads right; ``per_column``: the share per column."""
    read = zero_shot_read(model, images, ensemble=ensemble)
    right = read == rows
    return {"all": float(right.all(1).float().mean()), "per_column": right.float().mean(0).tolist(), "read": read}


def asked_matches(read: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
    """Bool (N,): the read rows (N, 7) hold every column each prompt asked (-1: not asked)."""
    asked = torch.stack([parse_scene_prompt(p) for p in prompts])
    return ((read == asked) | (asked == -1)).all(1)


def judge_agreement(model: CLIP, images: torch.Tensor, prompts: Sequence[str]) -> dict[str, Any]:
    """CLIP beside chapter 11's scene judge on the same pictures and prompts: does each picture show what its prompt
    asked? The judge reads the picture with its heads; CLIP by zero-shot reading. ``agreement``: the share of pictures
    where both say the same; ``judge`` / ``clip``: each one's prompt accuracy; ``score_when_judge_yes`` / ``_no``:
    the mean CLIP score of the pictures the judge accepts / rejects."""
    from .models.scene_judge import scene_matches

    asked = torch.stack([parse_scene_prompt(p) for p in prompts])
    by_judge = scene_matches(images, asked)
    by_clip = asked_matches(zero_shot_read(model, images), prompts)
    score = clip_score(model, images, prompts)
    mean = lambda m: float(score[m].mean()) if bool(m.any()) else float("nan")
    return {"agreement": float((by_judge == by_clip).float().mean()), "judge": float(by_judge.float().mean()),
            "clip": float(by_clip.float().mean()), "score_when_judge_yes": mean(by_judge),
            "score_when_judge_no": mean(~by_judge), "by_judge": by_judge, "by_clip": by_clip, "score": score}


def held_out_scenes(n: int, *, seed: int = SCENES_TEST_SEED, only_held_out: bool = False):
    """Test scenes never trained on (``make_scenes(n, seed=SCENES_TEST_SEED, held_out=())``); with
    ``only_held_out`` only those showing a held-out composition (drawn from 16× as many)."""
    n = check_int("n", n, min_value=1)
    check_bool("only_held_out", only_held_out)
    if not only_held_out:
        return make_scenes(n, seed=seed, held_out=())
    data = make_scenes(16 * n, seed=seed + 1, held_out=())
    keep = held_out_mask(data.attributes).nonzero().squeeze(1)[:n]
    return type(data)(data.images[keep], data.attributes[keep], [data.captions[i] for i in keep.tolist()])


__all__ = [
    "CLIP_SCENES", "CLIPRecipe", "ContrastiveObjective", "NUM_PHRASINGS", "all_scene_rows", "asked_matches",
    "caption_vectors", "clip_identity", "clip_loss", "clip_model", "clip_recipe", "clip_score", "held_out_scenes",
    "image_vectors", "judge_agreement", "random_captions", "retrieval", "zero_shot_accuracy", "zero_shot_read",
]
