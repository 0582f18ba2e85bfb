"""How DALL·E reads (chapter 13): a CLIP of our own, its zero-shot reading and retrieval, the CLIP score beside
the scene judge, negative prompts, Stable Diffusion's way on a frozen CLIP, and unCLIP.

Loads (or trains, for a profile that ships none) the chapter's CLIP (``course_lib.clip.clip_model``) and
chapter 11's latent pipeline, then measures (``course_lib.clip_measuring.clip_benchmark``):

- ``zero_shot_accuracy``: the share of 1,000 test scenes (never trained on) whose every attribute CLIP reads
  right, scoring all 672 captions of the world (prompt-ensembled); ``zero_shot_accuracy_held_out_compositions``:
  the same on 200 scenes that show a held-out composition (a dog in a green hat on the left, a cat in a purple
  hat on the right);
- ``retrieval_r1``: text → picture among the 1,000 test scenes, the share of captions whose best picture shows
  what the caption says (``retrieval_r1_exact``: the very picture captioned; several pictures share a caption);
- ``clip_judge_agreement``: on pictures chapter 11's pipeline draws for its held-out and seen prompts (s = 1 and
  3), each paired once with its prompt and once with a foil (one thing changed), the share of pairs where CLIP's
  reading and the scene judge agree on "shows what the prompt asks" (``judge_accepts`` / ``clip_accepts``: the
  share each accepts; ``clip_score_judge_yes`` / ``_no``: the mean CLIP score of the pairs the judge accepts / rejects);
- ``negative_prompt_success``: "a cat in a hat on the left" with the negative prompt "a cat in a red hat on the
  left": the share of samples with the cat and a hat that is not red (``plain_cfg_success``: without it);
- ``prompt_accuracy_frozen_clip`` / ``prompt_accuracy_unclip``: on chapter 11's held-out compositional prompts
  (32 pictures each, the scene judge), Stable Diffusion's way on the frozen CLIP and unCLIP (its decoder reading the
  prior's picture vector and the caption, as DALL·E 2's), beside ``prompt_accuracy_chapter11`` (chapter 11's own
  cross-attention painter, measured in the same run); ``prompt_accuracy_unclip_vector_only``: unCLIP with the
  caption dropped, the decoder reading the picture vector alone;
  ``prior_reads_as_asked``: unCLIP's prior's picture vectors read zero-shot hold what the prompt asks;
  ``shows_held_out_chapter11`` / ``_unclip``: the share of those pictures that show a held-out composition at all;
  ``clip_cosine_within_scene`` / ``_to_mirror``: CLIP picture vectors of a held-out scene (a dog in a green hat on
  the left, a dog in a yellow hat on the right), mean cosine between two sets of drawings and with its mirror scene;
  ``variations_keep_scene``: unCLIP variations of 20 held-out-composition scenes in which the judge reads the source scene;
- ``train_seconds``: the CLIP's training time (its card); ``chapter_seconds``: with ``--chapter``, the wall time
  of running chapter 13 in the profile (null without it).

    python benchmarks/clip.py [--profile cpu] [--threads 1] [--json] [--chapter]
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from _cli import apply_common, benchmark_parser, emit, run_conditions, run_main

from course_lib.clip_measuring import clip_benchmark

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "13_how_dalle_reads.ipynb"
KEYS = ("zero_shot_accuracy", "zero_shot_accuracy_single_phrasing", "zero_shot_accuracy_held_out_compositions",
        "retrieval_r1", "retrieval_r5", "retrieval_r1_exact", "clip_judge_agreement", "judge_accepts",
        "clip_accepts", "clip_score_judge_yes", "clip_score_judge_no", "negative_prompt_success",
        "negative_prompt_red_share", "plain_cfg_success", "plain_cfg_red_share", "short_negative_success",
        "weighted_success", "prompt_accuracy_chapter11", "prompt_accuracy_frozen_clip", "prompt_accuracy_unclip",
        "prompt_accuracy_unclip_vector_only", "shows_held_out_chapter11", "shows_held_out_unclip", "clip_cosine_within_scene", "clip_cosine_to_mirror",
        "prior_reads_as_asked", "variations_keep_scene", "temperature", "train_seconds", "frozen_clip_train_seconds",
        "unclip_train_seconds", "chapter_seconds")


def print_table(r: dict) -> None:
    for key in KEYS:
        value = r.get(key)
        print(f"{key:<42} {value:.4g}" if isinstance(value, float) else f"{key:<42} {value}")
    print(f"profile {r['profile']}, device {r['device']}, {r['threads']} threads, load {r['load_average']}, "
          f"{r['wall_seconds']:.0f} s")


def main(argv: list[str] | None = None) -> dict:
    ap = benchmark_parser(__doc__)
    ap.add_argument("--chapter", action="store_true", help="also run chapter 13 and time it")
    args = ap.parse_args(argv)
    profile, device = apply_common(args, cpu_for_smoke=True)
    chapter_seconds = None
    if args.chapter:
        from course_lib.sweep import run_notebook

        with tempfile.TemporaryDirectory() as out:
            t0 = time.perf_counter()
            run_notebook(NOTEBOOK, Path(out) / NOTEBOOK.name, profile=profile)
            chapter_seconds = time.perf_counter() - t0
    tic = time.perf_counter()
    result = clip_benchmark(profile)
    result = {"benchmark": "clip", "profile": profile, **result, "chapter_seconds": chapter_seconds,
              "wall_seconds": time.perf_counter() - tic}
    return emit({**result, **run_conditions(device)}, args.json, print_table)


if __name__ == "__main__":
    run_main(main)
