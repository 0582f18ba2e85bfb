"""Scenes of one or two cartoon animals, left and right, at 64×64 (chapter 11, Stable Diffusion in miniature).

The cats-with-hats world of chapter 08 (:mod:`course_lib.hats`) shows one animal in the middle of
a 32×32 picture, so a prompt never has to say *where* something is. Here a 64×64 scene holds an
animal on the left, on the right, or both, each with its own hat (or none), on one background:

    "a cat in a red hat on the left and a dog with no hat on the right on a blue background"

Now the words must be **bound to places**: "red" belongs to the cat and the cat to the left. One
pooled prompt vector (chapter 08) mixes the words into a single summary; cross-attention (Stable
Diffusion's way) lets every pixel read the words that concern it. Held-out slot combinations
(:data:`HELD_OUT`: a dog in a green hat on the left, a cat in a purple hat on the right) never
appear in a training set, to test composition.

A scene is an attribute row of :data:`SCENE_COLUMNS` (7 value indices):

============== ========================================== =========================================
column         values                                     note
============== ========================================== =========================================
left_animal    0 cat, 1 dog, 2 nobody (:data:`NOBODY`)    right_animal likewise
left_hat       0 no hat, 1 hat                            0 for an empty slot
left_colour    index into ``hats.HAT_COLOURS``            -1 without a hat
background     index into ``hats.BACKGROUNDS``
============== ========================================== =========================================

In a *prompt* row, -1 means "not asked" (as in :mod:`course_lib.hats`).

Drawing reuses chapter 08's painter: each animal is drawn as a 36×36 tile twice, on two different
backgrounds with the same random jitter. The difference of the two renders gives the tile's exact
coverage α (painting is linear in the background colour), so the animal can be composited onto
the scene's own background with no seam: I = α·F + (1 − α)·B.
"""

from __future__ import annotations

import copy
import re
from typing import Iterable, NamedTuple, Sequence

import numpy as np
import torch

from .captions import split_words, tokenize_with
from .hats import BACKGROUND_RGB, BACKGROUNDS, HAT_COLOURS, UNSPECIFIED, draw_animals
from .settings import check_int

SCENE_SIZE = 64
TILE = 36  # each animal is painted as a TILE×TILE tile standing on the bottom edge
SLOTS: tuple[str, ...] = ("left", "right")
SLOT_ANIMALS: tuple[str, ...] = ("cat", "dog", "nobody")
NOBODY = 2
SCENE_COLUMNS: tuple[str, ...] = (
    "left_animal", "left_hat", "left_colour", "right_animal", "right_hat", "right_colour", "background",
)
NUM_SCENE_COLUMNS = len(SCENE_COLUMNS)
HEAD_SIZES: dict[str, int] = {
    "left_animal": 3, "left_hat": 2, "left_colour": len(HAT_COLOURS),
    "right_animal": 3, "right_hat": 2, "right_colour": len(HAT_COLOURS), "background": len(BACKGROUNDS),
}
TWO_ANIMALS_PROBABILITY = 0.5
HAT_PROBABILITY = 0.5
#: (slot, animal, hat colour) never drawn in a training set: composition is tested on them
HELD_OUT: tuple[tuple[str, str, str], ...] = (("left", "dog", "green"), ("right", "cat", "purple"))

# ----------------------------------------------------------------------------- captions & vocabulary
HAT_PHRASES: tuple[str, ...] = ("a {animal} in a {colour} hat", "a {animal} wearing a {colour} hat")
NO_HAT_PHRASES: tuple[str, ...] = ("a {animal} with no hat", "a {animal} without a hat")
PAD = "<pad>"
PAD_ID = 0
MAX_SCENE_PROMPT_LENGTH = 24  # the longest caption has 21 words


def _build_vocab() -> tuple[str, ...]:
    words = {"cat", "dog", "on", "the", "left", "right", "and", "a", "background", *HAT_COLOURS, *BACKGROUNDS}
    for phrase in HAT_PHRASES + NO_HAT_PHRASES:
        words |= {w for w in phrase.split() if not w.startswith("{")}
    return (PAD, *sorted(words))


SCENE_VOCAB: tuple[str, ...] = _build_vocab()
SCENE_WORD_TO_ID: dict[str, int] = {w: i for i, w in enumerate(SCENE_VOCAB)}


class ScenesData(NamedTuple):
    """Scenes (N, 3, 64, 64) in [-1, 1], attribute rows (N, 7) and one caption per scene."""

    images: torch.Tensor
    attributes: torch.Tensor
    captions: list[str]


def scene_tokenize(prompt: str | Sequence[str]) -> torch.Tensor:
    """Word ids of a scene prompt, padded to :data:`MAX_SCENE_PROMPT_LENGTH`: (L,) for a string, (N, L) for a list.

    The same tokenizer as :func:`course_lib.captions.tokenize` (``captions.tokenize_with``): lower-case, drop ``. , ! ? ; :``, split on
    spaces; an unknown word raises ValueError listing the vocabulary; "" is all padding (the
    "no prompt" of classifier-free guidance).
    """
    return tokenize_with(prompt, SCENE_VOCAB, SCENE_WORD_TO_ID, MAX_SCENE_PROMPT_LENGTH, "MAX_SCENE_PROMPT_LENGTH")


def slot_phrase(animal: int, hat: int, colour: int, template: int = 0) -> str:
    """"a cat in a red hat" / "a dog with no hat" for one slot's indices."""
    name = SLOT_ANIMALS[animal]
    if animal == NOBODY:
        raise ValueError("an empty slot has no phrase")
    if hat:
        return HAT_PHRASES[template % 2].format(animal=name, colour=HAT_COLOURS[colour])
    return NO_HAT_PHRASES[template % 2].format(animal=name)


def scene_caption(row: Sequence[int] | torch.Tensor, *, template: int = 0, right_first: bool = False,
                  with_background: bool = True) -> str:
    """The caption of a scene row: every animal with its hat and place, then (optionally) the background."""
    r = [int(v) for v in (row.tolist() if isinstance(row, torch.Tensor) else row)]
    parts = []
    for slot, (a, h, c) in zip(SLOTS, (r[0:3], r[3:6])):
        if a != NOBODY:
            parts.append(f"{slot_phrase(a, h, c, template)} on the {slot}")
    if not parts:
        raise ValueError(f"row={r} has no animal")
    if right_first:
        parts = parts[::-1]
    text = " and ".join(parts)
    return f"{text} on a {BACKGROUNDS[r[6]]} background" if with_background else text


def parse_scene_prompt(prompt: str) -> torch.Tensor:
    """The scene row (7,) a prompt asks for; -1 = not asked. A slot no phrase names must be empty.

    "a cat in a red hat on the left" → (cat, 1, red, nobody, -1, -1, -1). Each phrase joined by
    "and" must end in "on the left" or "on the right".
    """
    scene_tokenize(prompt)  # validates the words
    text = " ".join(split_words(prompt))
    row = [UNSPECIFIED] * NUM_SCENE_COLUMNS
    background = re.search(r" on a (\w+) background$", text)
    if background:
        row[6] = BACKGROUNDS.index(background.group(1))
        text = text[: background.start()]
    named = set()
    for phrase in text.split(" and "):
        m = re.fullmatch(r"(.*) on the (left|right)", phrase.strip())
        if not m:
            raise ValueError(f"prompt={prompt!r}: each animal must be placed, as in 'a cat in a red hat on the left'; "
                             f"got {phrase!r}")
        body, slot = m.group(1).split(), SLOTS.index(m.group(2))
        if slot in named:
            raise ValueError(f"prompt={prompt!r} names the {SLOTS[slot]} twice")
        named.add(slot)
        animals = [w for w in body if w in ("cat", "dog")]
        colours = [w for w in body if w in HAT_COLOURS]
        if len(animals) != 1 or len(colours) > 1:
            raise ValueError(f"prompt={prompt!r}: {phrase!r} must name one animal and at most one hat colour")
        no_hat = "no" in body or "without" in body
        base = 3 * slot
        row[base] = SLOT_ANIMALS.index(animals[0])
        if colours:
            row[base + 1], row[base + 2] = 1, HAT_COLOURS.index(colours[0])
        elif no_hat:
            row[base + 1] = 0
        elif "hat" in body:
            row[base + 1] = 1
    for slot in range(2):
        if slot not in named:
            row[3 * slot] = NOBODY
    return torch.tensor(row, dtype=torch.long)


# ----------------------------------------------------------------------------- sampling and held-out combinations
def held_out_mask(rows: torch.Tensor, held_out: Iterable[tuple[str, str, str]] = HELD_OUT) -> torch.Tensor:
    """Bool (N,): rows that show one of the held-out (slot, animal, hat colour) combinations."""
    mask = torch.zeros(rows.shape[0], dtype=torch.bool)
    for slot, animal, colour in held_out:
        b = 3 * SLOTS.index(slot)
        mask |= (rows[:, b] == SLOT_ANIMALS.index(animal)) & (rows[:, b + 1] == 1) & (rows[:, b + 2] == HAT_COLOURS.index(colour))
    return mask


def _sample_rows(n: int, rng: np.random.Generator) -> np.ndarray:
    rows = np.zeros((n, NUM_SCENE_COLUMNS), np.int64)
    two = rng.random(n) < TWO_ANIMALS_PROBABILITY
    only = rng.integers(0, 2, n)  # the occupied slot of a one-animal scene
    for slot in range(2):
        present = two | (only == slot)
        animal = rng.integers(0, 2, n)
        hat = (rng.random(n) < HAT_PROBABILITY) & present
        colour = rng.integers(0, len(HAT_COLOURS), n)
        rows[:, 3 * slot] = np.where(present, animal, NOBODY)
        rows[:, 3 * slot + 1] = hat
        rows[:, 3 * slot + 2] = np.where(hat, colour, UNSPECIFIED)
    rows[:, 6] = rng.integers(0, len(BACKGROUNDS), n)
    return rows


def draw_scenes(rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Pictures (n, 3, 64, 64) in [0, 1] for scene rows (n, 7)."""
    n, S = len(rows), SCENE_SIZE
    y = ((np.arange(S, dtype=np.float32) + 0.5) / S)[None, None, :, None]
    bg = BACKGROUND_RGB[rows[:, 6]] * rng.uniform(0.97, 1.03, (n, 1)).astype(np.float32)
    scene = np.broadcast_to(bg[:, :, None, None] * (1.0 - 0.06 * y), (n, 3, S, S)).copy()
    offsets = {0: rng.integers(0, 4, n), 1: S - TILE - rng.integers(0, 4, n)}  # left edge of each tile
    ty = ((np.arange(TILE, dtype=np.float32) + 0.5) / TILE)[None, :, None]  # (1, TILE, 1)
    for slot in range(2):
        idx = np.nonzero(rows[:, 3 * slot] != NOBODY)[0]
        if len(idx) == 0:
            continue
        attrs = np.stack([rows[idx, 3 * slot], rows[idx, 3 * slot + 1], rows[idx, 3 * slot + 2],
                          np.zeros(len(idx), np.int64)], 1)
        twin = copy.deepcopy(rng)
        on_blue = draw_animals(attrs, TILE, rng)  # background index 0: blue
        attrs[:, 3] = 2
        on_white = draw_animals(attrs, TILE, twin)  # the same jitter on white
        # background of the blue render: colour · jitter · vertical shade; the jitter from the corner pixel
        jitter = on_blue[:, 0, 0, 0] / (BACKGROUND_RGB[0, 0] * (1.0 - 0.06 * ty[0, 0, 0]))
        shade = jitter[:, None, None] * (1.0 - 0.06 * ty)  # (m, TILE, 1)
        b_blue = BACKGROUND_RGB[0][None, :, None, None] * shade[:, None]
        b_white = BACKGROUND_RGB[2][None, :, None, None] * shade[:, None]
        alpha = 1.0 - (on_blue[:, 0] - on_white[:, 0]) / (b_blue[:, 0] - b_white[:, 0])  # (m, TILE, TILE)
        alpha = np.clip(alpha, 0.0, 1.0)[:, None]
        premultiplied = on_blue - (1.0 - alpha) * b_blue
        for j, i in enumerate(idx):
            x0 = int(offsets[slot][i])
            window = scene[i, :, S - TILE:, x0:x0 + TILE]
            window *= 1.0 - alpha[j]
            window += premultiplied[j]
    return np.clip(scene, 0.0, 1.0)


def make_scenes(n: int, *, seed: int = 0, held_out: Iterable[tuple[str, str, str]] = HELD_OUT) -> ScenesData:
    """``n`` captioned scenes drawn from ``seed``; rows matching ``held_out`` are redrawn (pass () to keep all).

    Captions vary the phrasing, the order of the two animals (so that "left" and "right" must be
    read, not the order) and whether the background is named.
    """
    n = check_int("n", n, min_value=0)
    seed = check_int("seed", seed, min_value=0, max_value=2**32 - 1)
    held_out = tuple(held_out)
    for slot, animal, colour in held_out:
        if slot not in SLOTS or animal not in ("cat", "dog") or colour not in HAT_COLOURS:
            raise ValueError(f"held_out entry {(slot, animal, colour)!r}: expected (slot in {SLOTS}, animal cat|dog, "
                             f"colour in {HAT_COLOURS})")
    rng = np.random.default_rng(seed)
    rows = _sample_rows(n, rng)
    for _ in range(100):
        bad = held_out_mask(torch.from_numpy(rows), held_out).numpy()
        if not bad.any():
            break
        rows[bad] = _sample_rows(int(bad.sum()), rng)
    template = rng.integers(0, 2, n)
    right_first = rng.random(n) < 0.5
    with_bg = rng.random(n) < 0.5
    captions = [scene_caption(r, template=int(t), right_first=bool(f), with_background=bool(b))
                for r, t, f, b in zip(rows.tolist(), template, right_first, with_bg)]
    draw_rng = np.random.default_rng([seed, 1])
    pictures = [draw_scenes(rows[i:i + 512], draw_rng) for i in range(0, n, 512)]
    images = np.concatenate(pictures) if pictures else np.zeros((0, 3, SCENE_SIZE, SCENE_SIZE), np.float32)
    return ScenesData(torch.from_numpy(images * 2 - 1).float(), torch.from_numpy(rows).long(), captions)


def compositional_prompts(held_out: Iterable[tuple[str, str, str]] = HELD_OUT) -> list[str]:
    """Prompts for the held-out combinations: each alone, and beside an animal on the other side."""
    out = []
    for slot, animal, colour in held_out:
        other = SLOTS[1 - SLOTS.index(slot)]
        mine = f"a {animal} in a {colour} hat on the {slot}"
        out.append(mine)
        partners = ["a cat with no hat", "a dog in a yellow hat"] if animal == "dog" else ["a dog with no hat", "a cat in a red hat"]
        for p in partners:
            pair = [mine, f"{p} on the {other}"]
            out.append(" and ".join(pair if slot == "left" else pair[::-1]))
    return out


def seen_scene_prompts() -> list[str]:
    """A few prompts whose every slot combination is in the training set."""
    return [
        "a cat in a red hat on the left and a dog with no hat on the right",
        "a dog in a green hat on the right",
        "a cat with no hat on the left and a cat in a yellow hat on the right",
        "a dog in a purple hat on the left",
    ]


__all__ = [
    "HEAD_SIZES", "HELD_OUT", "MAX_SCENE_PROMPT_LENGTH", "NOBODY", "SCENE_COLUMNS", "SCENE_SIZE", "SCENE_VOCAB", "SLOTS",
    "SLOT_ANIMALS", "ScenesData", "compositional_prompts", "draw_scenes", "held_out_mask", "make_scenes",
    "parse_scene_prompt", "scene_caption", "scene_tokenize", "seen_scene_prompts",
]
