"""Train chapter 13's ``cpu`` networks and write them, with their cards, to course_lib/weights/.

Rerunnable by anyone, CPU only, one network at a time (CLIP first: the others read it):

    python benchmarks/train_clip.py --only clip --threads 1           # clip_scenes, about 4 min
    python benchmarks/train_clip.py --only frozen_clip --threads 1    # latent_frozen_clip, about 20 min
    python benchmarks/train_clip.py --only unclip_prior --threads 1   # unclip_prior, about 4 min
    python benchmarks/train_clip.py --only unclip_decoder --threads 1 # unclip_decoder (reads the prior), about 8 min

The network trains with the ``cpu`` recipe of ``course_lib.clip.clip_recipe`` through the record
``course_lib.clip.CLIP_SCENES`` (the same call the chapter makes with ``retrain=True``; checkpointed under
``--run-root``, so an interrupted run resumes bit for bit), is measured, and is written by
``course_lib.registry.write_shipped``: the card keeps the recipe (checked on every load), the training
seconds, the learned temperature and the scores below, measured on scenes never trained on.

Scores: ``zero_shot_accuracy`` (every attribute of 1,000 test scenes read right among the 672 captions,
prompt-ensembled), ``zero_shot_accuracy_held_out_compositions`` (200 test scenes that show a held-out
composition), ``retrieval_r1`` (text → picture among the 1,000: the top picture shows the caption).
The frozen-CLIP denoiser (``course_lib.clip_conditioning``): ``prompt_accuracy_held_out`` and
``prompt_accuracy_seen`` as chapter 11's card measures them (32 samples per prompt, DDIM 25 steps, s = 3).
unCLIP's prior (``course_lib.unclip``): the mean cosine of its drawn picture vectors with the true pictures' on
500 test scenes, beside the caption vectors' own cosine with them, and ``prior_reads_as_asked`` (the drawn vectors
read zero-shot hold what their captions ask, ``unclip.prior_reading``); its decoder: the whole unCLIP's prompt
accuracies (the decoder reading the prior's picture vector and the caption), measured as the frozen-CLIP
denoiser's, ``prompt_accuracy_held_out_vector_only`` (the same with the caption dropped: what the vector alone
carries) and ``variations_keep_scene`` (8 variations of each of 20 held-out-composition scenes, the vector alone:
the judge reads the source scene).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from course_lib.clip import (
    CLIP_SCENES,
    clip_model,
    held_out_scenes,
    retrieval,
    zero_shot_accuracy,
)
from course_lib.registry import write_shipped
from course_lib.scenes import compositional_prompts, seen_scene_prompts
from course_lib.settings import WEIGHTS_DIR, check_choice, check_int

PROFILE = "cpu"


def train_clip(run_root: Path, out_dir: Path) -> dict:
    model, info = clip_model(PROFILE, run_dir=run_root / "clip-cpu")
    test, composed = held_out_scenes(1000), held_out_scenes(200, only_held_out=True)
    scores = {"zero_shot_accuracy": zero_shot_accuracy(model, test.images, test.attributes)["all"],
              "zero_shot_accuracy_held_out_compositions": zero_shot_accuracy(model, composed.images, composed.attributes)["all"],
              "retrieval_r1": retrieval(model, test.images, test.attributes)["r1"],
              "temperature": model.temperature}
    digest = write_shipped(CLIP_SCENES, model, info, scores, profile=PROFILE, weights_dir=out_dir)
    return {**scores, "train_seconds": info["train_seconds"], "sha256": digest}


def train_frozen_clip(run_root: Path, out_dir: Path) -> dict:
    from course_lib.clip_conditioning import FROZEN_CLIP_DENOISER, frozen_clip_pipeline
    from course_lib.latent import prompt_accuracy

    pipe, info = frozen_clip_pipeline(PROFILE, run_dir=run_root / "latent-frozen-clip-cpu")
    scores = {f"prompt_accuracy_{name}": prompt_accuracy(pipe, prompts, per_prompt=32)["accuracy"]
              for name, prompts in (("held_out", compositional_prompts()), ("seen", seen_scene_prompts()))}
    digest = write_shipped(FROZEN_CLIP_DENOISER, pipe.denoiser, info, scores, profile=PROFILE, weights_dir=out_dir)
    return {**scores, "train_seconds": info["train_seconds"], "sha256": digest}


def train_unclip_prior(run_root: Path, out_dir: Path) -> dict:
    from course_lib.clip import image_vectors
    from course_lib.registry import obtain
    from course_lib.unclip import PRIOR, UnCLIP, prior_reading, prior_sample

    prior, info = obtain(PRIOR, PROFILE, run_dir=run_root / "unclip-prior-cpu")
    clip, _ = clip_model(PROFILE, progress=False)
    test = held_out_scenes(500)
    u = UnCLIP(clip, prior, None, None, 1.0, 25)  # the prior needs only the CLIP
    with torch.no_grad():
        pictures, text = image_vectors(clip, test.images), clip.encode_text(test.captions).cpu()
    drawn = prior_sample(u, text)
    scores = {"cosine_prior_to_picture": float((drawn * pictures).sum(-1).mean()),
              "cosine_caption_to_picture": float((text * pictures).sum(-1).mean()),
              "prior_reads_as_asked": prior_reading(u, test.captions)["reads_as_asked"]}
    digest = write_shipped(PRIOR, prior, info, scores, profile=PROFILE, weights_dir=out_dir)
    return {**scores, "train_seconds": info["train_seconds"], "sha256": digest}


def train_unclip_decoder(run_root: Path, out_dir: Path) -> dict:
    from course_lib.latent import autoencoder_model, latent_recipe
    from course_lib.models.scene_judge import judge_scenes
    from course_lib.registry import obtain
    from course_lib.unclip import DECODER, PRIOR, UnCLIP, unclip_prompt_accuracy, variations

    decoder, info = obtain(DECODER, PROFILE, run_dir=run_root / "unclip-decoder-cpu")
    ae, ae_info = autoencoder_model(PROFILE, progress=False)
    u = UnCLIP(clip_model(PROFILE, progress=False)[0], obtain(PRIOR, PROFILE, progress=False)[0], decoder, ae,
               ae_info["scale_factor"], latent_recipe(PROFILE).num_steps)  # the shipped CLIP, prior and autoencoder
    scores = {f"prompt_accuracy_{name}": unclip_prompt_accuracy(u, prompts, per_prompt=32)["accuracy"]
              for name, prompts in (("held_out", compositional_prompts()), ("seen", seen_scene_prompts()))}
    scores["prompt_accuracy_held_out_vector_only"] = unclip_prompt_accuracy(
        u, compositional_prompts(), per_prompt=32, caption=False)["accuracy"]  # the caption dropped
    composed = held_out_scenes(20, only_held_out=True)  # variations: the vector alone, new noise (clip_measuring's)
    kept = [float((judge_scenes(variations(u, img, 8)) == row).all(1).float().mean())
            for img, row in zip(composed.images, composed.attributes)]
    scores["variations_keep_scene"] = sum(kept) / len(kept)
    digest = write_shipped(DECODER, decoder, info, scores, profile=PROFILE, weights_dir=out_dir)
    return {**scores, "train_seconds": info["train_seconds"], "sha256": digest}


STEPS = {"clip": train_clip, "frozen_clip": train_frozen_clip, "unclip_prior": train_unclip_prior,
         "unclip_decoder": train_unclip_decoder}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="clip", help=f"one of {tuple(STEPS)}")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--run-root", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "clip-train")
    parser.add_argument("--out-dir", type=Path, default=WEIGHTS_DIR)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(check_int("threads", args.threads, min_value=1))
    tic = time.perf_counter()
    only = check_choice("--only", args.only, tuple(STEPS))
    result = {"network": only, **STEPS[only](args.run_root, args.out_dir), "threads": torch.get_num_threads(),
              "wall_seconds": time.perf_counter() - tic}
    print(json.dumps(result) if args.json else "\n".join(f"{k:<42} {v}" for k, v in result.items()))
    return result


if __name__ == "__main__":
    main()
