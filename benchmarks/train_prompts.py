"""Train the ``cpu`` prompt model of chapter 08 ("a cat wearing a hat") and write it, with its card, to course_lib/weights.

Rerunnable by anyone, CPU only (about 20 minutes on one thread of the 2-core reference machine):

    python benchmarks/train_prompts.py [--threads 1]

The model trains with the ``cpu`` recipe of ``course_lib.pretrained.prompt_recipe`` (no dog ever in a green hat:
``HELD_OUT``) through the same function the chapter calls with ``retrain=True`` (``registry.obtain``, checkpointed
under ``--run-root``, so an interrupted run resumes), then is measured and written by
``course_lib.registry.write_shipped`` (record ``PROMPTS``): the card keeps the recipe (checked on every load),
the training seconds and the scores of the course's default sampling, ``generate_from_prompts`` (chapter 06's
SDE-DPM-Solver++(2M), the recipe's 30 steps) at s = 1 and s = 3, for two seeds: the prompt accuracy read by the
shipped attribute classifier on the 11 seen prompts (8 pictures each) and on the unseen "a dog wearing a green
hat" (32 pictures), and the background speckle (``prompts.background_speckle``, 8-bit levels; real pictures'
value beside it).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from course_lib.hats import make_hats_dataset
from course_lib.pretrained import HELD_OUT, PROMPTS, prompt_model, prompt_recipe
from course_lib.prompts import UNSEEN_PROMPTS, background_speckle, generate_from_prompts, score_prompts, seen_prompts
from course_lib.registry import write_shipped
from course_lib.settings import WEIGHTS_DIR, check_int

PROFILE = "cpu"
UNSEEN_PER_PROMPT = 32


def default_sampling_scores(model: torch.nn.Module, schedule, *, scales: tuple[float, ...] = (1.0, 3.0),
                            seeds: tuple[int, ...] = (0, 1)) -> dict:
    """Seen and unseen prompt accuracy and background speckle of the default sampling, per scale and seed."""
    recipe = prompt_recipe(PROFILE)
    seen, unseen = seen_prompts(HELD_OUT), list(UNSEEN_PROMPTS)
    scores = {"real background speckle": round(background_speckle(make_hats_dataset(1000, seed=2000).images), 3)}
    for s in scales:
        for seed in seeds:
            kw = dict(guidance_scale=s, num_steps=recipe.num_steps, seed=seed, schedule=schedule)
            a = generate_from_prompts(model, seen, per_prompt=recipe.per_prompt, **kw)
            b = generate_from_prompts(model, unseen, per_prompt=UNSEEN_PER_PROMPT, **kw)
            scores[f"seen prompt accuracy, s {s:g}, seed {seed}"] = round(score_prompts(a, seen, recipe.per_prompt)["prompt_accuracy"], 4)
            scores[f"unseen prompt accuracy, s {s:g}, seed {seed}"] = round(score_prompts(b, unseen, UNSEEN_PER_PROMPT)["prompt_accuracy"], 4)
            scores[f"background speckle, s {s:g}, seed {seed}"] = round(background_speckle(torch.cat([a, b])), 3)
    return scores


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--run-root", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "prompts-train")
    parser.add_argument("--out-dir", type=Path, default=WEIGHTS_DIR)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(check_int("threads", args.threads, min_value=1))
    tic = time.perf_counter()
    model, schedule, info = prompt_model(PROFILE, run_dir=args.run_root / PROMPTS.run_dir(PROFILE).name,
                                         progress=not args.json)
    result = {"scores": default_sampling_scores(model.eval(), schedule), "train_seconds": round(info["train_seconds"], 1)}
    result["sha256"] = write_shipped(PROMPTS, model, info, result["scores"], profile=PROFILE, weights_dir=args.out_dir)
    result["wall_seconds"] = round(time.perf_counter() - tic, 1)
    print(json.dumps(result, indent=1) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))
    return result


if __name__ == "__main__":
    main()
