"""Train chapter 14's networks and write the shipped ones (with their cards) to course_lib/weights.

Rerunnable by anyone, CPU only, one thread (the race's budgets are one-thread wall times):

    OMP_NUM_THREADS=1 python benchmarks/train_dit.py [--only race|mmdit|sweep] [--out-dir DIR]

- ``race``: the DiT and the U-Net of ``course_lib.painters.RACE`` at size ``base`` (equal training wall time,
  ``DIGITS_BUDGET_SECONDS``), each measured by ``painters.digits_scores`` (1,000 samples) and shipped
  (``dit_digits``, ``unet_digits``);
- ``sweep``: the ``small`` and ``large`` sizes of both, measured the same way; their scores (and the base ones)
  go into the ``dit_digits`` card as ``scores["sweep"]``;
- ``mmdit``: ``painters.MMDIT_SCENES`` (flow matching on chapter 11's scene latents), its prompt accuracy on the
  held-out compositions measured with the scene judge, and shipped.

Everything trains through ``course_lib.registry.obtain`` (checkpointed under ``runs/``: an interrupted run
resumes) and is written by ``course_lib.registry.write_shipped``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from course_lib.painters import (
    MMDIT_SCENES, RACE, SIZES, digits_scores, mmdit_prompt_accuracy, num_parameters, race_model, race_train_config,
)
from course_lib.registry import card, obtain, shipped_paths, write_shipped
from course_lib.scenes import compositional_prompts
from course_lib.settings import WEIGHTS_DIR
from course_lib.training import config_identity

PROFILE = "cpu"


def recipe_of(family: str, size: str) -> dict:
    """The recipe a sweep entry was trained with (its config identity), so that a later recipe can tell it stale."""
    return config_identity(race_train_config(PROFILE, family, size))


def still_valid(key: str, entry: dict) -> bool:
    """Whether a sweep entry of an earlier run still describes the recipe the race trains now. Entries record
    their recipe (``train_config``) since issue 27; the U-Net's of before it were trained with the recipe and
    steps it still has (issue 27 changed only the DiT's), so those with today's number of steps stay."""
    family, size = key.split("-")
    if "train_config" in entry:
        return entry["train_config"] == recipe_of(family, size)
    return family == "unet" and entry.get("steps") == race_train_config(PROFILE, family, size).steps


def race_entry(family: str, size: str) -> tuple[torch.nn.Module, dict, dict]:
    recipe = RACE[(family, size)]
    model, info = race_model(family, size, PROFILE, run_dir=recipe.run_dir(PROFILE), progress=False)
    scores = {k: v for k, v in digits_scores(model, n=1000).items() if k != "images"}
    scores.update(params=num_parameters(model), steps=info["steps"], train_seconds=info["train_seconds"],
                  train_config=recipe_of(family, size))
    print(f"{family}-{size}: {json.dumps(scores)}", flush=True)
    return model, info, scores


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=("race", "sweep", "mmdit"), action="append")
    ap.add_argument("--out-dir", type=Path, default=WEIGHTS_DIR)
    args = ap.parse_args()
    parts = args.only or ["race", "mmdit", "sweep"]
    if "race" in parts:
        fresh = {}
        for family in ("unet", "dit"):
            model, info, fresh[f"{family}-base"] = race_entry(family, "base")
            sweep = {}
            if family == "dit" and shipped_paths("dit_digits", args.out_dir)[1].is_file():
                held = card("dit_digits", weights_dir=args.out_dir)["scores"].get("sweep", {})
                sweep = {**{k: v for k, v in held.items() if still_valid(k, v)}, **fresh}
            scores = {**fresh[f"{family}-base"], **({"sweep": sweep} if sweep else {})}
            write_shipped(RACE[(family, "base")], model, info, scores, weights_dir=args.out_dir)
    if "mmdit" in parts:
        model, info = obtain(MMDIT_SCENES, PROFILE, run_dir=MMDIT_SCENES.run_dir(PROFILE), progress=False)
        acc = mmdit_prompt_accuracy(model, compositional_prompts(), per_prompt=32, profile=PROFILE)
        scores = {"prompt_accuracy_held_out": acc["accuracy"], "per_prompt": acc["per_prompt"],
                  "params": num_parameters(model)}
        print(f"mmdit: {info['train_seconds']:.0f} s, {json.dumps(scores)}", flush=True)
        write_shipped(MMDIT_SCENES, model, info, scores, weights_dir=args.out_dir)
    if "sweep" in parts:
        sweep = {}
        for family in ("dit", "unet"):
            for size in SIZES:
                if size == "base":
                    sweep[f"{family}-{size}"] = {k: v for k, v in card(RACE[(family, size)], weights_dir=args.out_dir)
                                                 ["scores"].items() if k != "sweep"}
                else:
                    sweep[f"{family}-{size}"] = race_entry(family, size)[2]
        dit, info = race_model("dit", "base", PROFILE)  # the shipped one: rewrite its card with the sweep
        held = card("dit_digits", weights_dir=args.out_dir)
        write_shipped(RACE[("dit", "base")], dit, held["info"], {**held["scores"], "sweep": sweep}, weights_dir=args.out_dir)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
