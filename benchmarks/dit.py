"""Chapter 14's figures: DiT against the U-Net on the digits at equal training wall time, MMDiT against chapter 11's
cross-attention U-Net on the held-out compositions, and the chapter's own run time.

    python benchmarks/dit.py --profile cpu --json [--samples 1000] [--per-prompt 32] [--skip-chapter]

The ``cpu`` networks are the shipped ones (``course_lib/weights/{dit_digits,unet_digits,mmdit_scenes}``, written by
``benchmarks/train_dit.py``); the training seconds and the sweep come from their cards, FID/KID/class accuracy
and prompt accuracies are measured again here. ``chapter_seconds`` is the wall time of running
``notebooks/14_transformers_that_paint.ipynb`` through ``python -m course_lib.sweep all --only 14`` in the same
profile (null with ``--skip-chapter``).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time

from _cli import apply_common, benchmark_parser, emit, run_conditions, run_main

from course_lib.painters import (
    MMDIT_SCENES, digits_scores, mmdit_prompt_accuracy, num_parameters, race_model,
)
from course_lib.registry import card, obtain
from course_lib.scenes import compositional_prompts
from course_lib.settings import check_int


def crossattn_accuracy(profile: str, per_prompt: int) -> float:
    from course_lib.latent import load_pipeline, prompt_accuracy

    return prompt_accuracy(load_pipeline(profile, progress=False), compositional_prompts(), per_prompt=per_prompt)["accuracy"]


def chapter_seconds(profile: str) -> float:
    with tempfile.TemporaryDirectory() as out:
        tic = time.perf_counter()
        subprocess.run([sys.executable, "-m", "course_lib.sweep", "all", "--profile", profile, "--only", "14", "--out", out],
                       check=True, stdout=subprocess.DEVNULL)
        return time.perf_counter() - tic


def main() -> None:
    ap = benchmark_parser(__doc__)
    ap.add_argument("--samples", type=int, default=1000, help="digits sampled per network for FID/KID (default 1000)")
    ap.add_argument("--per-prompt", type=int, default=32, help="scenes per held-out prompt (default 32)")
    ap.add_argument("--skip-chapter", action="store_true", help="do not time the chapter")
    args = ap.parse_args()
    profile, device = apply_common(args, cpu_for_smoke=True)
    n = check_int("--samples", args.samples, min_value=10)
    per_prompt = check_int("--per-prompt", args.per_prompt, min_value=1)
    tic = time.perf_counter()
    result: dict = {"profile": profile}
    for family in ("dit", "unet"):
        model, info = race_model(family, "base", profile, device=device, progress=False)
        scores = digits_scores(model, n=n)
        result.update({f"{family}_fid": scores["fid"], f"{family}_kid": scores["kid"],
                       f"{family}_class_accuracy": scores["class_accuracy"], f"{family}_params": num_parameters(model),
                       f"{family}_train_seconds": info["train_seconds"], f"{family}_train_steps": info["steps"],
                       f"{family}_sample_seconds": scores["sample_seconds"]})
        if family == "dit":
            result["sweep"] = card("dit_digits")["scores"].get("sweep") if info.get("shipped") else None
    mmdit, _ = obtain(MMDIT_SCENES, profile, device=device, progress=False)
    result["mmdit_prompt_accuracy"] = mmdit_prompt_accuracy(mmdit, compositional_prompts(), per_prompt=per_prompt,
                                                            profile=profile)["accuracy"]
    result["crossattn_prompt_accuracy"] = crossattn_accuracy(profile, per_prompt)
    result["fid_ratio"] = result["dit_fid"] / result["unet_fid"]
    result["measure_seconds"] = time.perf_counter() - tic
    result["chapter_seconds"] = None if args.skip_chapter else chapter_seconds(profile)

    def table(r: dict) -> None:
        print(f"{'':10}{'FID':>8}{'KID':>8}{'class acc':>10}{'params':>10}{'train s':>9}{'steps':>7}{'s/sample':>10}")
        for f in ("dit", "unet"):
            print(f"{f:10}{r[f + '_fid']:8.2f}{r[f + '_kid']:8.4f}{r[f + '_class_accuracy']:10.3f}{r[f + '_params']:10d}"
                  f"{r[f + '_train_seconds']:9.0f}{r[f + '_train_steps']:7d}{r[f + '_sample_seconds']:10.4f}")
        print(f"prompt accuracy (held out): MMDiT {r['mmdit_prompt_accuracy']:.3f}, "
              f"cross-attention U-Net {r['crossattn_prompt_accuracy']:.3f}; chapter {r['chapter_seconds']} s")

    emit({**result, **run_conditions(device)}, args.json, table)


if __name__ == "__main__":
    run_main(main)
