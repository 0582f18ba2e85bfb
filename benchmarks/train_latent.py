"""Train chapter 11's ``cpu`` networks and write them, with their cards, to course_lib/weights/latent_*.

Rerunnable by anyone, CPU only. The autoencoder comes first (the denoisers learn its latents), then
the two latent denoisers, which can run side by side on one thread each:

    python benchmarks/train_latent.py --only ae                      # ~8 min on 2 threads
    python benchmarks/train_latent.py --only crossattn --threads 1 &
    python benchmarks/train_latent.py --only pooled --threads 1      # ~45 min each, together

Each network trains with the ``cpu`` recipe of ``course_lib.latent.latent_recipe`` through the same
functions the chapter calls with ``retrain=True`` (checkpointed under ``--run-root``, so an
interrupted run resumes), then is measured and written by ``course_lib.registry.write_shipped`` (records ``AUTOENCODER``, ``LATENT_DENOISERS``):
the card keeps the recipe (checked on every load), the training seconds and the scores below.

Scores: the autoencoder's ``recon_psnr`` (500 held-out scenes) and ``judge_on_recon`` (the scene
judge's accuracy on their reconstructions); each denoiser's ``prompt_accuracy`` on the held-out
compositional prompts and on seen prompts (32 samples each, DDIM 25 steps, s = 3); the cross-attention
model's ``edit_success`` (100 img2img edits at the chapter's strength).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from course_lib.latent import (
    DEFAULT_STRENGTH, Pipeline, autoencoder_model, edit_benchmark, latent_model, latent_recipe,
    prompt_accuracy, reconstruction_psnr,
)
from course_lib.data import SCENES_TEST_SEED
from course_lib.latent.pipeline import AUTOENCODER, LATENT_DENOISERS
from course_lib.registry import write_shipped
from course_lib.models.autoencoder import decode_latents, encode_latents
from course_lib.models.scene_judge import scene_accuracy
from course_lib.scenes import compositional_prompts, make_scenes, seen_scene_prompts
from course_lib.settings import WEIGHTS_DIR, check_choice, check_int

PROFILE = "cpu"


def train_autoencoder(run_root: Path, out_dir: Path) -> dict:
    ae, info = autoencoder_model(PROFILE, run_dir=run_root / "latent-ae-cpu")
    test = make_scenes(500, seed=SCENES_TEST_SEED)
    scores = {"recon_psnr": reconstruction_psnr(ae, test.images),
              "judge_on_recon": scene_accuracy(decode_latents(ae, encode_latents(ae, test.images)), test.attributes)}
    write_shipped(AUTOENCODER, ae, info, scores, profile=PROFILE, weights_dir=out_dir)
    return scores


def train_denoiser(conditioning: str, run_root: Path, out_dir: Path) -> dict:
    recipe = latent_recipe(PROFILE)
    ae, ae_info = autoencoder_model(PROFILE)  # the shipped one: the latents the chapter decodes
    model, schedule, info = latent_model(PROFILE, conditioning, ae=ae, scale_factor=ae_info["scale_factor"],
                                         run_dir=run_root / f"latent-{conditioning}-cpu")
    pipe = Pipeline(ae, model, schedule, ae_info["scale_factor"], num_steps=recipe.num_steps)
    scores = {f"prompt_accuracy_{name}": prompt_accuracy(pipe, prompts, per_prompt=recipe.per_prompt)["accuracy"]
              for name, prompts in (("held_out", compositional_prompts()), ("seen", seen_scene_prompts()))}
    if conditioning == "crossattn":
        scores["edit_success"] = edit_benchmark(pipe, recipe.num_edits)["results"][DEFAULT_STRENGTH]["success"]
    write_shipped(LATENT_DENOISERS[conditioning], model, info, scores, profile=PROFILE, weights_dir=out_dir)
    return scores


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="all", help="ae, crossattn, pooled or all (in that order)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--run-root", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "latent-train")
    parser.add_argument("--out-dir", type=Path, default=WEIGHTS_DIR)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    only = check_choice("only", args.only, ("ae", "crossattn", "pooled", "all"))
    torch.set_num_threads(check_int("threads", args.threads, min_value=1))
    tic = time.perf_counter()
    result: dict = {}
    if only in ("ae", "all"):
        result["ae"] = train_autoencoder(args.run_root, args.out_dir)
    for cond in ("crossattn", "pooled"):
        if only in (cond, "all"):
            result[cond] = train_denoiser(cond, args.run_root, args.out_dir)
    result["wall_seconds"] = round(time.perf_counter() - tic, 1)
    print(json.dumps(result, indent=1) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))
    return result


if __name__ == "__main__":
    main()
