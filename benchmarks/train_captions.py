"""Train chapter 16's two caption writers and write their shipped weights and cards.

Both records of ``course_lib.caption_models`` (``masked_captions``: masked diffusion;
``next_word_captions``: the next-word baseline of the same size, data, steps and batch) are obtained
with ``registry.obtain`` for ``--profile`` (resuming their cached runs under ``runs/``), scored on
``--num`` captions each (the diffusion writer with 24 steps of random remasking, its default; both
drawing each word from its ``caption_models.TOP_P`` nucleus, recorded in the scores as ``top_p``) and
written with ``registry.write_shipped`` (float16, the card holding the training seconds, the thread
count and the scores) into ``--out-dir``.

    nice -n 10 env OMP_NUM_THREADS=1 python benchmarks/train_captions.py --profile cpu --out-dir course_lib/weights
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from course_lib.caption_models import MASKED_CAPTIONS, NEXT_WORD_CAPTIONS, TOP_P, training_captions, writer_scores
from course_lib.registry import obtain, write_shipped
from course_lib.settings import PROFILES, check_choice, check_int, resolve_profile


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="cpu", help=f"one of {PROFILES}")
    ap.add_argument("--num", type=int, default=1000, help="captions per score")
    ap.add_argument("--out-dir", type=Path, default=Path("build/weights"))
    args = ap.parse_args(argv)
    profile = resolve_profile(check_choice("--profile", args.profile, PROFILES))
    num = check_int("--num", args.num, min_value=1)
    captions = training_captions(profile)
    for recipe, writer in ((MASKED_CAPTIONS, "diffusion"), (NEXT_WORD_CAPTIONS, "next_word")):
        model, info = obtain(recipe, profile, run_dir=recipe.run_dir(profile))
        scores = {**writer_scores(model, num, captions, writer=writer, top_p=TOP_P, generator=torch.Generator().manual_seed(0)),
                  "top_p": TOP_P}
        digest = write_shipped(recipe, model, info, scores, profile=profile, weights_dir=args.out_dir)
        print(f"{recipe.name}: {info['steps']} steps in {info['train_seconds']:.0f} s ({torch.get_num_threads()} threads) · "
              f"validity {scores['validity']:.3f} · sha256 {digest[:12]}…")


if __name__ == "__main__":
    main()
