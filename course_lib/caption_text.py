"""The scenes' captions as text to generate, and how to score generated captions (chapter 16).

Chapter 11 wrote one caption per scene (:func:`course_lib.scenes.scene_caption`): one or two
animals, each with its hat and its place, in two phrasings, either animal first, the background
named or not. Here the captions are the data themselves, with no pictures: token ids (N, L) over
:data:`course_lib.scenes.SCENE_VOCAB`, padded to ``L = MAX_SCENE_PROMPT_LENGTH`` = 24 with id 0.

Because the captions come from a small grammar, every generated one can be checked:

- **valid**: it reads back with :func:`course_lib.scenes.parse_scene_prompt` (each phrase placed,
  one animal and at most one colour per phrase, no side named twice) and its padding only at the end;
- **in the language**: it is word for word a caption that :func:`~course_lib.scenes.scene_caption`
  can write (:func:`caption_language`; stricter: "a cat red on the left" parses but is not in it);
- **held out**: it shows one of :data:`course_lib.scenes.HELD_OUT` (a dog in a green hat on the
  left, a cat in a purple hat on the right), which the training captions never show.

:func:`caption_scores` gives the shares of a list of generated captions: validity, language,
distinct captions, coverage of the scene rows (animals, hats, colours, background) and the held-out share.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterable, Sequence

import numpy as np
import torch

from .captions import PAD_ID
from .hats import BACKGROUNDS, HAT_COLOURS, UNSPECIFIED
from .scenes import (
    HAT_PROBABILITY,
    HELD_OUT,
    MAX_SCENE_PROMPT_LENGTH,
    NOBODY,
    SCENE_VOCAB,
    TWO_ANIMALS_PROBABILITY,
    held_out_mask,
    parse_scene_prompt,
    scene_caption,
    scene_tokenize,
)
from .settings import check_int

CAPTION_LENGTH = MAX_SCENE_PROMPT_LENGTH  # tokens per caption, padding included
MASK_ID = len(SCENE_VOCAB)  # one id past the words: the [MASK] sticker (diffusion) or the start token (next-word model)


def draw_scene_rows(n: int, rng: np.random.Generator, held_out: Iterable[tuple[str, str, str]] = HELD_OUT) -> np.ndarray:
    """``n`` scene rows (n, 7) drawn as chapter 11 draws them (one or two animals, hats, background); rows
    showing a ``held_out`` combination are redrawn."""
    held_out = tuple(held_out)
    rows = np.zeros((n, 7), np.int64)
    todo = np.ones(n, bool)
    for _ in range(100):
        m = int(todo.sum())
        if m == 0:
            break
        two = rng.random(m) < TWO_ANIMALS_PROBABILITY
        only = rng.integers(0, 2, m)  # the occupied slot of a one-animal scene
        new = np.zeros((m, 7), np.int64)
        for slot in range(2):
            present = two | (only == slot)
            hat = (rng.random(m) < HAT_PROBABILITY) & present
            new[:, 3 * slot] = np.where(present, rng.integers(0, 2, m), NOBODY)
            new[:, 3 * slot + 1] = hat
            new[:, 3 * slot + 2] = np.where(hat, rng.integers(0, len(HAT_COLOURS), m), UNSPECIFIED)
        new[:, 6] = rng.integers(0, len(BACKGROUNDS), m)
        rows[todo] = new
        todo = held_out_mask(torch.from_numpy(rows), held_out).numpy() if held_out else np.zeros(n, bool)
    return rows


def caption_corpus(n: int, *, seed: int = 0, held_out: Iterable[tuple[str, str, str]] = HELD_OUT) -> list[str]:
    """``n`` captions of random scenes, phrased as chapter 11 phrases them (template, order, background or not)."""
    n = check_int("n", n, min_value=1)
    rng = np.random.default_rng(check_int("seed", seed, min_value=0))
    rows = draw_scene_rows(n, rng, held_out)
    template, right_first, with_bg = rng.integers(0, 2, n), rng.random(n) < 0.5, rng.random(n) < 0.5
    return [scene_caption(r, template=int(a), right_first=bool(b), with_background=bool(c))
            for r, a, b, c in zip(rows.tolist(), template, right_first, with_bg)]


def encode_captions(captions: Sequence[str]) -> torch.Tensor:
    """Token ids (N, L) of captions, padded with id 0 (:func:`course_lib.scenes.scene_tokenize`)."""
    return scene_tokenize(list(captions))


def decode_captions(ids: torch.Tensor) -> list[str | None]:
    """The words of each row of ids (N, L); None where a word follows the padding or an id is not a word."""
    if not isinstance(ids, torch.Tensor) or ids.dim() != 2:
        raise ValueError(f"ids must be a tensor (N, L), got {getattr(ids, 'shape', type(ids).__name__)}")
    out: list[str | None] = []
    for row in ids.long().tolist():
        n = row.index(PAD_ID) if PAD_ID in row else len(row)
        bad = any(i != PAD_ID for i in row[n:]) or any(not 0 < i < len(SCENE_VOCAB) for i in row[:n])
        out.append(None if bad else " ".join(SCENE_VOCAB[i] for i in row[:n]))
    return out


MASK_WORD = "[MASK]"


def encode_template(text: str, length: int = CAPTION_LENGTH) -> torch.Tensor:
    """Ids (L,) of a caption with stickers: "a cat in a [MASK] hat on the [MASK]" → words, ``MASK_ID``, then padding."""
    words = text.split()
    if len(words) > length:
        raise ValueError(f"text={text!r} has {len(words)} tokens; at most {length}")
    ids = [MASK_ID if w == MASK_WORD else int(scene_tokenize(w)[0]) for w in words]
    return torch.tensor(ids + [PAD_ID] * (length - len(ids)), dtype=torch.long)


def render_ids(ids: torch.Tensor) -> list[str]:
    """Each row of ids (N, L) as words, ``[MASK]`` for a sticker and ``_`` for padding before a later token."""
    out = []
    for row in ids.long().tolist():
        while row and row[-1] == PAD_ID:
            row = row[:-1]
        out.append(" ".join(MASK_WORD if i == MASK_ID else "_" if i == PAD_ID else SCENE_VOCAB[i] for i in row))
    return out


def parse_or_none(caption: str | None) -> torch.Tensor | None:
    """The scene row (7,) of a caption (:func:`course_lib.scenes.parse_scene_prompt`), or None if it does not parse."""
    if not caption:
        return None
    try:
        return parse_scene_prompt(caption)
    except ValueError:
        return None


@functools.lru_cache(maxsize=1)
def caption_language() -> frozenset[str]:
    """Every caption :func:`course_lib.scenes.scene_caption` can write, held-out combinations included."""
    slots = [(NOBODY, 0, UNSPECIFIED)] + [(a, 0, UNSPECIFIED) for a in (0, 1)] + \
            [(a, 1, c) for a in (0, 1) for c in range(len(HAT_COLOURS))]
    out = set()
    for left, right in itertools.product(slots, slots):
        if left[0] == NOBODY and right[0] == NOBODY:
            continue
        for bg, template, first, named in itertools.product(range(len(BACKGROUNDS)), (0, 1), (False, True), (False, True)):
            out.add(scene_caption([*left, *right, bg], template=template, right_first=first, with_background=named))
    return frozenset(out)


def caption_scores(captions: Sequence[str | None], reference: Sequence[str] | None = None) -> dict[str, float]:
    """Shares over generated ``captions`` (None = not even words):

    ``validity`` (parse), ``in_language``, ``distinct_share`` (distinct valid captions / all),
    ``held_out_share`` (captions showing a held-out combination), ``row_coverage`` (distinct scene rows
    named, background included, / the rows of ``reference`` captions, when given) and ``novel_share``
    (valid captions that are not in ``reference``).
    """
    n = len(captions)
    if n == 0:
        raise ValueError("captions is empty")
    rows = [parse_or_none(c) for c in captions]
    valid = [c for c, r in zip(captions, rows) if r is not None]
    parsed = torch.stack([r for r in rows if r is not None]) if valid else torch.zeros(0, 7, dtype=torch.long)
    language = caption_language()
    scores = {
        "validity": len(valid) / n,
        "in_language": sum(c in language for c in captions if c is not None) / n,
        "distinct_share": len(set(valid)) / n,
        "held_out_share": float(held_out_mask(parsed).sum()) / n if valid else 0.0,
        "held_out_count": float(held_out_mask(parsed).sum()) if valid else 0.0,
    }
    if reference is not None:
        ref_rows = {tuple(parse_scene_prompt(c).tolist()) for c in reference}
        scores["row_coverage"] = len({tuple(r.tolist()) for r in parsed} & ref_rows) / max(1, len(ref_rows))
        seen = set(reference)
        scores["novel_share"] = sum(c not in seen for c in valid) / n
    return scores


__all__ = [
    "CAPTION_LENGTH",
    "MASK_ID",
    "MASK_WORD",
    "caption_corpus",
    "caption_language",
    "caption_scores",
    "decode_captions",
    "draw_scene_rows",
    "encode_captions",
    "encode_template",
    "parse_or_none",
    "render_ids",
]
