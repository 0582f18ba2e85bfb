"""Train the ``cpu`` class-conditional digits model (chapters 07 and 10) and write it, with its card, to course_lib/weights.

Rerunnable by anyone, CPU only (about an hour on the 2-core reference machine, 2 threads):

    python benchmarks/train_digits_cond.py

The model trains with the ``cpu`` recipe of ``course_lib.pretrained.digits_train_config(cond=True)``
through the same function the chapters call with ``retrain=True`` (checkpointed under ``--run-root``,
so an interrupted run resumes), then is measured and written by ``course_lib.registry.write_shipped`` (record ``DIGITS_COND``):
the card keeps the recipe (``cond_identity``, checked on every load), the training seconds and the
scores of the course's default sampling, ``sample(model, schedule, shape, cond=labels,
guidance_scale=3, num_steps=20)``: the margin's distance from black as a multiple of real test
digits' (chapter 10, issue 11's clean-background target: ≤ 2×) and the share the shipped classifier
reads as the digit asked for, for two seeds.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from course_lib.data import load_mnist5000
from course_lib.metrics import background_noise, class_accuracy, margin_mask
from course_lib.pretrained import DIGITS_COND, digits_model
from course_lib.registry import write_shipped
from course_lib.samplers import sample
from course_lib.settings import check_int
from course_lib.settings import WEIGHTS_DIR

PROFILE = "cpu"


def default_sampling_scores(model: torch.nn.Module, schedule, *, per_class: int = 50, seeds: tuple[int, ...] = (0, 1)) -> dict:
    """Margin noise (× the 1,000 real test digits' value, the card's ``real margin rms``) and class accuracy of
    the default sampling, s = 3, 20 steps, per seed. Chapter 10 and ``benchmarks/backgrounds.py`` divide by
    all 5,000 real digits' value instead (``metrics.held_out_background_noise``, 1.7× larger); the card keeps
    the unit it was written in."""
    train, test = load_mnist5000("train", size=32), load_mnist5000("test", size=32)
    margin = margin_mask(train.images)  # (32, 32) bool: black in every training digit
    real = background_noise(test.images, margin)
    labels = torch.arange(10).repeat_interleave(per_class)
    scores = {"real margin rms": round(real, 5)}
    for seed in seeds:
        x = sample(model, schedule, (len(labels), 1, 32, 32), cond=labels, guidance_scale=3, num_steps=20,
                   generator=torch.Generator().manual_seed(seed), progress=False)
        scores[f"margin x real, seed {seed}"] = round(background_noise(x, margin) / real, 3)
        scores[f"class accuracy, seed {seed}"] = round(class_accuracy(x.clamp(-1, 1), labels), 4)
    return scores


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--run-root", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "digits-cond-train")
    parser.add_argument("--out-dir", type=Path, default=WEIGHTS_DIR)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(check_int("threads", args.threads, min_value=1))
    tic = time.perf_counter()
    model, schedule, info = digits_model(PROFILE, cond=True, run_dir=args.run_root / "digits-cpu-cond-v",
                                         progress=not args.json)
    result = {"scores": default_sampling_scores(model.eval(), schedule), "train_seconds": round(info["train_seconds"], 1)}
    result["sha256"] = write_shipped(DIGITS_COND, model, info, result["scores"], profile=PROFILE, weights_dir=args.out_dir)
    result["wall_seconds"] = round(time.perf_counter() - tic, 1)
    print(json.dumps(result, indent=1) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))
    return result


if __name__ == "__main__":
    main()
