"""The captions of the cats-with-hats world: attributes, vocabulary, tokenizer and prompt parsing (chapter 08).

A picture of :mod:`course_lib.hats` is described by four attributes, and a caption is built from them:

========== ================================================ ==========================
column     values                                           example
========== ================================================ ==========================
animal     :data:`ANIMALS` = cat, dog                       ``"cat"``
hat        0 (no hat) or 1 (a hat)                          ``1``
hat_colour :data:`HAT_COLOURS` = red, green, yellow, ...    ``"red"`` (``-1``: no hat)
background :data:`BACKGROUNDS` = blue, pink, white, grey    ``"blue"``
========== ================================================ ==========================

"a cat wearing a red hat on a blue background" · "a dog with no hat" · "a dog in a green hat".
Hat colours and background colours use *different* words, so every word names exactly one
attribute (a prompt can always be read back with :func:`parse_prompt`).

Conditions come in two kinds:

- **attributes** — a LongTensor (N, 4) of value indices (:func:`encode_attributes`,
  :func:`decode_attributes`; class-conditional models and the attribute classifier);
- **captions** — word prompts, turned into fixed-length token ids by :func:`tokenize`. The empty
  prompt ``""`` becomes all :data:`PAD_ID`: the "no condition" input of classifier-free guidance
  (Ho & Salimans 2022, "Classifier-free diffusion guidance", §3.2).

:func:`excluded_mask` and :func:`resolve_combo` read the ``exclude`` entries that hold attribute
combinations out of a training set (e.g. a dog is never shown in a green hat).
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Literal, Mapping, NamedTuple, Sequence, get_args

import numpy as np
import torch

from .settings import check_choice, check_int

Animal = Literal["cat", "dog"]
HatColour = Literal["red", "green", "yellow", "purple", "black"]
Background = Literal["blue", "pink", "white", "grey"]
AttributeName = Literal["animal", "hat", "hat_colour", "background"]

ANIMALS: tuple[str, ...] = get_args(Animal)
HAT_COLOURS: tuple[str, ...] = get_args(HatColour)
BACKGROUNDS: tuple[str, ...] = get_args(Background)
ATTRIBUTE_NAMES: tuple[str, ...] = get_args(AttributeName)
HAT_VALUES: tuple[str, ...] = ("no hat", "hat")  # column "hat": index 0 = no hat, 1 = a hat
ATTRIBUTE_VALUES: dict[str, tuple[str, ...]] = {
    "animal": ANIMALS, "hat": HAT_VALUES, "hat_colour": HAT_COLOURS, "background": BACKGROUNDS,
}
NUM_ATTRIBUTES = len(ATTRIBUTE_NAMES)
UNSPECIFIED = -1  # in an attribute row: "not said / nothing to check"; hat_colour is -1 when there is no hat

# ----------------------------------------------------------------------------- captions & vocabulary
HAT_TEMPLATES: tuple[str, ...] = (
    "a {animal} wearing a {hat_colour} hat on a {background} background",
    "a {animal} wearing a {hat_colour} hat",
    "a {animal} in a {hat_colour} hat on a {background} background",
    "a {animal} with a {hat_colour} hat",
)
NO_HAT_TEMPLATES: tuple[str, ...] = (
    "a {animal} with no hat on a {background} background",
    "a {animal} with no hat",
    "a {animal} on a {background} background",
    "a {animal} without a hat",
)
NUM_TEMPLATES = len(HAT_TEMPLATES)  # template 0 names every attribute

PAD = "<pad>"
PAD_ID = 0
MAX_PROMPT_LENGTH = 12  # words; the longest caption has 10, the rest leaves room for a learner's own prompts


def _build_vocab() -> tuple[str, ...]:
    words: set[str] = set(ANIMALS) | set(HAT_COLOURS) | set(BACKGROUNDS)
    for template in HAT_TEMPLATES + NO_HAT_TEMPLATES:
        words |= {w for w in template.split() if not w.startswith("{")}
    return (PAD, *sorted(words))


VOCAB: tuple[str, ...] = _build_vocab()  # id -> word; id 0 is the padding token
WORD_TO_ID: dict[str, int] = {w: i for i, w in enumerate(VOCAB)}
_PUNCTUATION = re.compile(r"[.,!?;:]")


class HatAttributes(NamedTuple):
    """The attributes of one picture in words: ``hat_colour`` is None exactly when ``hat`` is False."""

    animal: str
    hat: bool
    hat_colour: str | None
    background: str


def decode_attributes(row: Sequence[int] | torch.Tensor) -> HatAttributes:
    """Words for one attribute row ``(animal, hat, hat_colour, background)`` of value indices."""
    values = [int(v) for v in (row.tolist() if isinstance(row, torch.Tensor) else row)]
    if len(values) != NUM_ATTRIBUTES:
        raise ValueError(f"row must hold {NUM_ATTRIBUTES} indices {ATTRIBUTE_NAMES}, got {values}")
    for name, value in zip(ATTRIBUTE_NAMES, values):
        allowed = ATTRIBUTE_VALUES[name]
        if not (0 <= value < len(allowed)) and not (name == "hat_colour" and value == UNSPECIFIED):
            raise ValueError(f"row[{name!r}]={value} is out of range; allowed: 0..{len(allowed) - 1} ({', '.join(allowed)})")
    animal, hat, colour, background = values
    if bool(hat) != (colour != UNSPECIFIED):
        raise ValueError(f"row={values}: hat_colour must be -1 exactly when hat is 0")
    return HatAttributes(ANIMALS[animal], bool(hat), HAT_COLOURS[colour] if hat else None, BACKGROUNDS[background])


def encode_attributes(
    animal: Animal | None = None, *, hat: bool | None = None, hat_colour: HatColour | None = None,
    background: Background | None = None,
) -> torch.Tensor:
    """An attribute row (4,) of value indices; an attribute left as None becomes -1 ("not requested").

    Naming a ``hat_colour`` implies ``hat=True``. Useful to ask the attribute classifier about a
    prompt: ``encode_attributes("dog", hat_colour="green")`` checks the animal, the hat and its colour.
    """
    if hat_colour is not None:
        check_choice("hat_colour", hat_colour, HAT_COLOURS)
        if hat is False:
            raise ValueError(f"hat_colour={hat_colour!r} needs hat=True (or hat=None), got hat=False")
        hat = True
    row = [
        UNSPECIFIED if animal is None else ANIMALS.index(check_choice("animal", animal, ANIMALS)),
        UNSPECIFIED if hat is None else int(bool(hat)),
        UNSPECIFIED if hat_colour is None else HAT_COLOURS.index(hat_colour),
        UNSPECIFIED if background is None else BACKGROUNDS.index(check_choice("background", background, BACKGROUNDS)),
    ]
    return torch.tensor(row, dtype=torch.long)


def caption_for(attrs: HatAttributes | Sequence[int] | torch.Tensor, template: int = 0) -> str:
    """The caption of one picture: ``template`` picks one of :data:`NUM_TEMPLATES` phrasings.

    ``attrs`` is a :class:`HatAttributes` or an attribute row of indices. Template 0 names every
    attribute ("a cat wearing a red hat on a blue background"); the others leave some out
    ("a cat wearing a red hat", "a dog without a hat"), as real captions do.
    """
    template = check_int("template", template, min_value=0, max_value=NUM_TEMPLATES - 1)
    a = attrs if isinstance(attrs, HatAttributes) else decode_attributes(attrs)
    text = (HAT_TEMPLATES if a.hat else NO_HAT_TEMPLATES)[template]
    return text.format(animal=a.animal, hat_colour=a.hat_colour, background=a.background)


def split_words(prompt: str) -> list[str]:
    """The words of a prompt: lower-cased, the punctuation ``. , ! ? ; :`` dropped, split on white space."""
    return _PUNCTUATION.sub(" ", prompt.lower()).split()


def tokenize_with(prompt: str | Sequence[str], vocab: Sequence[str], word_to_id: dict[str, int], max_length: int,
                  length_name: str) -> torch.Tensor:
    """Word ids of ``prompt`` in ``vocab``, padded with :data:`PAD_ID` to ``max_length``: (L,) or (N, L).

    The one tokenizer behind :func:`tokenize` (chapter 08) and ``scenes.scene_tokenize`` (chapter 11);
    ``length_name`` names the length limit in the error message.
    """
    if isinstance(prompt, str):
        words = split_words(prompt)
        unknown = [w for w in words if w not in word_to_id or w == PAD]
        if unknown:
            raise ValueError(
                f"prompt={prompt!r} has words outside the vocabulary: {', '.join(unknown)}. "
                f"Allowed words: {', '.join(vocab[1:])}"
            )
        if len(words) > max_length:
            raise ValueError(f"prompt={prompt!r} has {len(words)} words; at most {length_name}={max_length} are allowed")
        ids = [word_to_id[w] for w in words] + [PAD_ID] * (max_length - len(words))
        return torch.tensor(ids, dtype=torch.long)
    if not isinstance(prompt, Sequence) or not all(isinstance(p, str) for p in prompt):
        raise ValueError(f"prompt must be a string or a list of strings, got {type(prompt).__name__}")
    if len(prompt) == 0:
        return torch.zeros(0, max_length, dtype=torch.long)
    return torch.stack([tokenize_with(p, vocab, word_to_id, max_length, length_name) for p in prompt])  # (N, L)


def tokenize(prompt: str | Sequence[str]) -> torch.Tensor:
    """Word ids of a prompt, padded to :data:`MAX_PROMPT_LENGTH`: (L,) for a string, (N, L) for a list.

    Policy: the prompt is lower-cased, the punctuation ``. , ! ? ; :`` is dropped, and it is split
    on white space. Every word must be in :data:`VOCAB`; an unknown word raises ValueError listing
    the vocabulary (a model trained on these captions knows no other word, so we refuse instead of
    silently mapping it to an "unknown" token). A prompt longer than :data:`MAX_PROMPT_LENGTH`
    words raises ValueError. Positions after the last word hold :data:`PAD_ID`; the empty prompt
    ``""`` is all padding — the unconditional input of classifier-free guidance.
    """
    return tokenize_with(prompt, VOCAB, WORD_TO_ID, MAX_PROMPT_LENGTH, "MAX_PROMPT_LENGTH")


def detokenize(ids: torch.Tensor) -> str | list[str]:
    """The words back from token ids (padding dropped): a string for (L,), a list for (N, L)."""
    if ids.dim() == 2:
        return [detokenize(row) for row in ids]  # type: ignore[misc]
    if ids.dim() != 1:
        raise ValueError(f"ids must be (L,) or (N, L), got shape {tuple(ids.shape)}")
    bad = [i for i in ids.tolist() if not 0 <= i < len(VOCAB)]
    if bad:
        raise ValueError(f"ids hold {bad}, outside 0..{len(VOCAB) - 1} (the vocabulary size)")
    return " ".join(VOCAB[i] for i in ids.tolist() if i != PAD_ID)


def parse_prompt(prompt: str) -> torch.Tensor:
    """The attribute row (4,) a prompt asks for; what it does not mention is -1 ("not requested").

    "a dog in a green hat" → (dog, 1, green, -1); "a cat with no hat" → (cat, 0, -1, -1);
    "" → all -1. Words are checked as in :func:`tokenize`.
    """
    tokenize(prompt)  # validates the words and the length
    words = split_words(prompt)
    animals = [w for w in words if w in ANIMALS]
    colours = [w for w in words if w in HAT_COLOURS]
    backgrounds = [w for w in words if w in BACKGROUNDS]
    for name, found in (("animal", animals), ("hat_colour", colours), ("background", backgrounds)):
        if len(set(found)) > 1:
            raise ValueError(f"prompt={prompt!r} names several values for {name}: {', '.join(found)}")
    no_hat = "no" in words or "without" in words
    if no_hat and colours:
        raise ValueError(f"prompt={prompt!r} asks for no hat and a {colours[0]} hat at once")
    hat = False if no_hat else (True if ("hat" in words or colours) else None)
    return encode_attributes(animals[0] if animals else None, hat=hat,
                             hat_colour=colours[0] if colours else None,
                             background=backgrounds[0] if backgrounds else None)


# ----------------------------------------------------------------------------- attribute combinations (exclude)
def resolve_combo(combo: Any) -> dict[str, int]:
    """One ``exclude`` entry as {attribute name: value index}; a plain word names its own attribute."""
    if isinstance(combo, Mapping):
        items = list(combo.items())
    elif isinstance(combo, (tuple, list, set, frozenset)):
        items = []
        for word in combo:
            if word in ("hat", "no hat"):
                items.append(("hat", word))
                continue
            names = [n for n in ("animal", "hat_colour", "background") if word in ATTRIBUTE_VALUES[n]]
            if not names:
                allowed = ", ".join([*ANIMALS, *HAT_COLOURS, *BACKGROUNDS, "hat", "no hat"])
                raise ValueError(f"exclude entry {combo!r}: {word!r} is not an attribute value; allowed: {allowed}")
            items.append((names[0], word))
    else:
        raise ValueError(f"exclude entries must be tuples of values or dicts {{attribute: value}}, got {combo!r}")
    out: dict[str, int] = {}
    for name, value in items:
        if name not in ATTRIBUTE_NAMES:
            raise ValueError(f"exclude entry {combo!r}: attribute {name!r} is unknown; allowed: {', '.join(ATTRIBUTE_NAMES)}")
        if name == "hat" and isinstance(value, (bool, np.bool_)):
            value = HAT_VALUES[int(value)]
        if value not in ATTRIBUTE_VALUES[name]:
            raise ValueError(f"exclude entry {combo!r}: {name}={value!r}; allowed: {', '.join(ATTRIBUTE_VALUES[name])}")
        if name in out:
            raise ValueError(f"exclude entry {combo!r} names {name} twice")
        out[name] = ATTRIBUTE_VALUES[name].index(value)
    if "hat_colour" in out and out.get("hat") == 0:
        raise ValueError(f"exclude entry {combo!r} asks for a hat colour without a hat: it would exclude nothing")
    return out


def excluded_mask(attributes: torch.Tensor, exclude: Iterable[Any]) -> torch.Tensor:
    """Bool (N,): which attribute rows match at least one combination of ``exclude``.

    An entry is a tuple of values, each naming its attribute (``("dog", "green")``: a dog in a
    green hat; ``("cat", "no hat", "pink")``), or a dict ``{"animal": "dog", "hat_colour": "green"}``.
    """
    mask = torch.zeros(attributes.shape[0], dtype=torch.bool)
    for combo in exclude:
        match = torch.ones_like(mask)
        for name, index in resolve_combo(combo).items():
            match &= attributes[:, ATTRIBUTE_NAMES.index(name)] == index
        mask |= match
    return mask
