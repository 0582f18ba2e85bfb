"""Chapter 16's two caption writers as registry records, and the measurements that put them side by side.

- :data:`MASKED_CAPTIONS` — a bidirectional :class:`~course_lib.models.caption_transformer.CaptionTransformer`
  trained with the masked-diffusion ELBO (:class:`course_lib.text_diffusion.MaskedDiffusionObjective`);
- :data:`NEXT_WORD_CAPTIONS` — the same network made causal, trained on the next word
  (:class:`course_lib.autoregressive.NextTokenObjective`): same size, same data, same steps and batch.

Both learn the captions of :func:`course_lib.caption_text.caption_corpus` (chapter 11's scenes, the
held-out combinations never shown). ``obtain(MASKED_CAPTIONS, profile)`` loads or trains them
(:func:`course_lib.registry.obtain`). In the ``cpu`` profile both ship (``course_lib/weights``,
written by ``benchmarks/train_captions.py``); their cards (``registry.card(MASKED_CAPTIONS)``) hold
the training seconds, thread count and the scores measured on 1,000 captions, so figures are read
there rather than copied here. :func:`write_captions` draws captions from either,
:func:`writer_scores` scores and times them (seconds per caption), :func:`infill_scores` measures
the diffusion writer's infilling.
"""

from __future__ import annotations

import time
from typing import Any, Literal

import torch
from torch import nn

from .autoregressive import NextTokenObjective, sample_autoregressive
from .caption_text import (
    caption_corpus,
    caption_language,
    caption_scores,
    decode_captions,
    encode_captions,
    parse_or_none,
)
from .models.caption_transformer import CaptionTransformer, CaptionTransformerConfig
from .registry import Recipe, register
from .settings import check_choice, check_int
from .text_diffusion import MaskedDiffusionObjective, Remasking, infill, kept_visible, mask_words, sample_masked
from .training import TrainConfig

Writer = Literal["diffusion", "next_word"]
WRITERS: tuple[str, ...] = ("diffusion", "next_word")
CAPTIONS_SEED = 16  # the training captions' draw (chapter 16)
REFERENCE_SEED = 1016  # a second draw from the same distribution: what "as good as the data" scores
TOP_P = 0.95  # both writers draw each word from its 95 % nucleus (course_lib.nucleus): the chapter's and benchmark's default


def caption_network_config(profile: str, *, causal: bool) -> CaptionTransformerConfig:
    """The network of both writers per profile (only ``causal`` differs)."""
    width, layers = {"smoke": (16, 1), "cpu": (64, 4), "gpu": (128, 6)}[profile]
    return CaptionTransformerConfig(width=width, num_layers=layers, num_heads=4 if width >= 64 else 2, causal=causal)


def caption_data(profile: str) -> torch.Tensor:
    """The training captions as token ids (N, 24), stored as floats (the training loop's data are floating point)."""
    n = {"smoke": 512, "cpu": 20_000, "gpu": 50_000}[profile]
    return encode_captions(caption_corpus(n, seed=CAPTIONS_SEED)).float()


def caption_train_config(profile: str) -> TrainConfig:
    """The same optimizer, steps and batch for both writers."""
    steps, batch = {"smoke": 20, "cpu": 3000, "gpu": 20_000}[profile], {"smoke": 32, "cpu": 128, "gpu": 256}[profile]
    return TrainConfig(steps=steps, batch_size=batch, lr=2e-3, warmup=min(100, steps // 10), weight_decay=0.01,
                       ema_decay=0.995, checkpoint_every=500 if profile != "smoke" else 0, seed=0)


MASKED_CAPTIONS = register(Recipe(
    name="masked_captions", chapter="16",
    build=lambda p: CaptionTransformer(caption_network_config(p, causal=False)),
    objective=lambda p: MaskedDiffusionObjective("linear"),
    data=caption_data, train_config=caption_train_config, shipped=("cpu",), script="python benchmarks/train_captions.py",
))
NEXT_WORD_CAPTIONS = register(Recipe(
    name="next_word_captions", chapter="16",
    build=lambda p: CaptionTransformer(caption_network_config(p, causal=True)),
    objective=lambda p: NextTokenObjective(),
    data=caption_data, train_config=caption_train_config, shipped=("cpu",), script="python benchmarks/train_captions.py",
))


def write_captions(model: nn.Module, num: int, *, writer: Writer = "diffusion", num_steps: int = 24,
                   remasking: Remasking = "random", temperature: float = 1.0, top_p: float = TOP_P,
                   generator: torch.Generator | None = None, batch_size: int = 500) -> list[str | None]:
    """``num`` captions from a writer (None where the words are not a caption), drawn in batches, each word
    from its top-``top_p`` nucleus at ``temperature`` (:mod:`course_lib.nucleus`; ``top_p=1``: straight from p_θ)."""
    check_choice("writer", writer, WRITERS)
    check_int("num", num, min_value=1)
    g = generator or torch.Generator().manual_seed(0)
    out: list[str | None] = []
    for start in range(0, num, batch_size):
        b = min(batch_size, num - start)
        ids = (sample_masked(model, b, num_steps=num_steps, remasking=remasking, temperature=temperature, top_p=top_p,
                             generator=g)
               if writer == "diffusion" else sample_autoregressive(model, b, temperature=temperature, top_p=top_p, generator=g))
        out += decode_captions(ids.cpu())
    return out


def reference_captions(num: int) -> list[str]:
    """``num`` fresh captions from the data's own distribution (a second draw): the scores a perfect writer gets."""
    return caption_corpus(num, seed=REFERENCE_SEED)


def writer_scores(model: nn.Module, num: int, training: list[str], **kwargs: Any) -> dict[str, float]:
    """:func:`course_lib.caption_text.caption_scores` of ``num`` captions written with ``kwargs``, plus
    ``seconds_per_caption`` (wall time of the whole draw / num)."""
    tic = time.perf_counter()
    captions = write_captions(model, num, **kwargs)
    seconds = time.perf_counter() - tic
    return {**caption_scores(captions, training), "seconds_per_caption": seconds / num}


def infill_scores(model: nn.Module, captions: list[str], *, share: float = 0.3, num_steps: int = 24,
                  remasking: Remasking = "random", top_p: float = TOP_P, generator: torch.Generator | None = None,
                  batch_size: int = 500) -> dict[str, Any]:
    """Cover each word of ``captions`` with a sticker with chance ``share``, let the diffusion writer fill them in.

    ``infill_validity``: the share of completions that parse *and* keep every visible word;
    ``infill_in_language``: that are word for word a caption of the grammar; ``infill_original``: that
    restored the original caption (several completions are often right). Also the masked and filled
    ids of the first batch (``masked``, ``filled``) to show.
    """
    g = generator or torch.Generator().manual_seed(0)
    ids = encode_captions(captions)
    valid = in_language = original = 0
    shown: dict[str, torch.Tensor] = {}
    language = caption_language()
    for start in range(0, len(captions), batch_size):
        batch = ids[start:start + batch_size]
        masked = mask_words(batch, share, g)
        filled = infill(model, masked, num_steps=num_steps, remasking=remasking, top_p=top_p, generator=g).cpu()
        kept = kept_visible(masked, filled)
        texts = decode_captions(filled)
        valid += sum(bool(k) and parse_or_none(c) is not None for k, c in zip(kept.tolist(), texts))
        in_language += sum(bool(k) and c in language for k, c in zip(kept.tolist(), texts))
        original += int((filled == batch).all(1).sum())
        shown = shown or {"masked": masked, "filled": filled}
    n = len(captions)
    return {"infill_validity": valid / n, "infill_in_language": in_language / n, "infill_original": original / n, **shown}


def seconds_per_step(profile: str, *, steps: int = 10, rounds: int = 3, device: torch.device | str | None = None) -> dict[str, float]:
    """Seconds per training step of both recipes, measured side by side: ``rounds`` times ``steps`` steps of
    each (fresh networks, the recipes' batch and objective, through :func:`course_lib.training.train`),
    alternating so that both see the same machine load; the median per writer."""
    from .training import train

    check_int("steps", steps, min_value=1)
    data, times = caption_data(profile)[:4096], {"diffusion": [], "next_word": []}
    for _ in range(check_int("rounds", rounds, min_value=1)):
        for writer, recipe in (("diffusion", MASKED_CAPTIONS), ("next_word", NEXT_WORD_CAPTIONS)):
            config = recipe.train_config(profile)
            quick = TrainConfig(steps=steps, batch_size=config.batch_size, lr=config.lr, warmup=1, checkpoint_every=0)
            times[writer].append(train(recipe.build(profile), recipe.objective(profile), data, quick, device=device,
                                       progress=False).seconds / steps)
    return {writer: sorted(t)[len(t) // 2] for writer, t in times.items()}


def training_captions(profile: str) -> list[str]:
    """The training captions as text (for novelty and coverage)."""
    n = {"smoke": 512, "cpu": 20_000, "gpu": 50_000}[profile]
    return caption_corpus(n, seed=CAPTIONS_SEED)


__all__ = ["CAPTIONS_SEED", "MASKED_CAPTIONS", "NEXT_WORD_CAPTIONS", "TOP_P", "WRITERS", "Writer", "caption_data",
           "caption_network_config", "caption_train_config", "infill_scores", "reference_captions", "seconds_per_step", "training_captions",
           "write_captions", "writer_scores"]
