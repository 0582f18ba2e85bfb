"""Masked diffusion versus a next-word transformer writing the scenes' captions (chapter 16).

Both writers are ``course_lib.caption_models`` records (same network size, data, steps and batch;
``registry.obtain``: shipped weights in the cpu profile). For each: ``--num`` captions (default
1,000) scored by ``course_lib.caption_text.caption_scores`` — validity (parses with
``scenes.parse_scene_prompt``), in the grammar's language, distinct share, coverage of the training
scene rows, held-out compositions produced — and the wall time per caption (batches of 500). The
diffusion writer uses ``--steps`` steps of random remasking (default 24: exactly one token per network
call, its default in the chapter); both writers draw each word from its ``--top-p`` nucleus (default
0.95, ``caption_models.TOP_P``), and are scored once more drawing straight from p_θ (top-p 1:
``validity_full``, ``ar_validity_full``); then the steps-versus-validity curve for ancestral, random and
confidence (LLaDA) remasking; then infilling: 30 % of the words of fresh captions covered and filled
in (validity = parses and keeps every visible word).

    python benchmarks/text_diffusion.py [--profile auto] [--num 1000] [--steps 24] [--top-p 0.95] [--chapter [--chapter-out DIR]] [--json]

``--chapter`` also runs chapter 16 in the same profile with papermill (before the measurements, on
a machine that is otherwise idle) and reports its wall time (``chapter_seconds``; null without it). The targets of issue 29 (cpu): validity ≥ 0.98,
infill_validity ≥ 0.95, held-out compositions produced, diffusion validity within 0.02 of the
next-word writer's, the chapter within 240 s.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from _cli import apply_common, benchmark_parser, emit, run_conditions, run_main

from course_lib.caption_models import (
    MASKED_CAPTIONS,
    NEXT_WORD_CAPTIONS,
    TOP_P,
    infill_scores,
    reference_captions,
    training_captions,
    writer_scores,
)
from course_lib.registry import obtain
from course_lib.settings import check_float, check_int
from course_lib.text_diffusion import REMASKING

CURVE_STEPS = (1, 2, 4, 8, 16, 24, 48)
NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "16_masked_diffusion_for_text.ipynb"


def main(argv: list[str] | None = None) -> dict:
    ap = benchmark_parser(__doc__)
    ap.add_argument("--num", type=int, default=1000, help="captions per score")
    ap.add_argument("--steps", type=int, default=24, help="the diffusion writer's unmasking steps")
    ap.add_argument("--top-p", type=float, default=TOP_P, help="each word from its nucleus of this mass (1: from p_θ)")
    ap.add_argument("--chapter", action="store_true", help="also run chapter 16 and time it")
    ap.add_argument("--chapter-out", type=Path, default=None, help="keep the executed chapter in this folder")
    args = ap.parse_args(argv)
    profile, device = apply_common(args, cpu_for_smoke=True)
    num = check_int("--num", args.num, min_value=1, max_value=100_000)
    steps = check_int("--steps", args.steps, min_value=1, max_value=10_000)
    top_p = check_float("--top-p", args.top_p, min_value=0.0, max_value=1.0)
    chapter_seconds = None
    if args.chapter:
        from course_lib.sweep import run_notebook

        with tempfile.TemporaryDirectory() as tmp:
            out = args.chapter_out or Path(tmp)
            t0 = time.perf_counter()
            run_notebook(NOTEBOOK, out / NOTEBOOK.name, profile=profile)
            chapter_seconds = time.perf_counter() - t0
    tic = time.perf_counter()
    diffusion, d_info = obtain(MASKED_CAPTIONS, profile, device=device, progress=not args.json)
    next_word, a_info = obtain(NEXT_WORD_CAPTIONS, profile, device=device, progress=not args.json)
    train = training_captions(profile)
    scores = writer_scores(diffusion, num, train, writer="diffusion", num_steps=steps, top_p=top_p)
    ar = writer_scores(next_word, num, train, writer="next_word", top_p=top_p)
    full = writer_scores(diffusion, num, train, writer="diffusion", num_steps=steps, top_p=1.0)
    ar_full = writer_scores(next_word, num, train, writer="next_word", top_p=1.0)
    curve = [{"remasking": rm, "steps": n, **writer_scores(diffusion, num, train, num_steps=n, remasking=rm, top_p=top_p)}
             for rm in REMASKING for n in CURVE_STEPS]
    filled = infill_scores(diffusion, reference_captions(num), share=0.3, num_steps=steps, top_p=top_p)
    result = {
        "benchmark": "text_diffusion", "profile": profile, **run_conditions(device), "num": num, "steps": steps,
        "top_p": top_p,
        "validity": scores["validity"], "in_language": scores["in_language"], "distinct_share": scores["distinct_share"],
        "row_coverage": scores["row_coverage"], "held_out_produced": int(scores["held_out_count"]),
        "infill_validity": filled["infill_validity"], "infill_original": filled["infill_original"],
        "validity_full": full["validity"], "distinct_share_full": full["distinct_share"],
        "ar_validity_full": ar_full["validity"], "ar_distinct_share_full": ar_full["distinct_share"],
        "ar_validity": ar["validity"], "ar_in_language": ar["in_language"], "ar_distinct_share": ar["distinct_share"],
        "ar_row_coverage": ar["row_coverage"], "ar_held_out_produced": int(ar["held_out_count"]),
        "seconds_per_caption": scores["seconds_per_caption"], "ar_seconds_per_caption": ar["seconds_per_caption"],
        "train_seconds": d_info["train_seconds"], "ar_train_seconds": a_info["train_seconds"],
        "curve": [{k: c[k] for k in ("remasking", "steps", "validity", "in_language", "distinct_share", "seconds_per_caption")}
                  for c in curve],
        "chapter_seconds": chapter_seconds, "wall_seconds": time.perf_counter() - tic,
    }
    return emit(result, args.json, print_table)


def print_table(r: dict) -> None:
    print(f"chapter 16 writers · {r['profile']} · device {r['device']} · threads {r['threads']} · load avg "
          f"{r['load_average']} · {r['num']} captions each")
    print(f"{'writer':<28}{'valid':>7}{'in lang':>9}{'distinct':>10}{'rows':>7}{'held-out':>10}{'s/caption':>11}{'train s':>9}")
    print(f"{'diffusion, ' + str(r['steps']) + ' steps':<28}{r['validity']:>7.3f}{r['in_language']:>9.3f}"
          f"{r['distinct_share']:>10.3f}{r['row_coverage']:>7.3f}{r['held_out_produced']:>10d}"
          f"{r['seconds_per_caption']:>11.5f}{r['train_seconds']:>9.0f}")
    print(f"{'next word':<28}{r['ar_validity']:>7.3f}{r['ar_in_language']:>9.3f}{r['ar_distinct_share']:>10.3f}"
          f"{r['ar_row_coverage']:>7.3f}{r['ar_held_out_produced']:>10d}{r['ar_seconds_per_caption']:>11.5f}"
          f"{r['ar_train_seconds']:>9.0f}")
    print(f"(each word from its {r['top_p']:.2f} nucleus; straight from p_θ: diffusion valid {r['validity_full']:.3f}, "
          f"distinct {r['distinct_share_full']:.3f} · next word valid {r['ar_validity_full']:.3f}, "
          f"distinct {r['ar_distinct_share_full']:.3f})")
    for c in r["curve"]:
        print(f"  {c['remasking']:<10} {c['steps']:>3} steps: valid {c['validity']:.3f} · in language {c['in_language']:.3f}"
              f" · distinct {c['distinct_share']:.3f} · {c['seconds_per_caption'] * 1000:.2f} ms/caption")
    print(f"infill (30 % of the words covered): valid and kept {r['infill_validity']:.3f} · original restored "
          f"{r['infill_original']:.3f}")
    chapter = "not run (--chapter)" if r["chapter_seconds"] is None else f"{r['chapter_seconds']:.0f} s"
    print(f"chapter 16 in this profile: {chapter} · wall {r['wall_seconds']:.0f} s")


if __name__ == "__main__":
    run_main(main)
