"""Stable Diffusion in miniature (chapter 11): autoencoder quality, latent vs pixel speed, prompt accuracy, edits.

Trains (or loads, verified) the chapter's autoencoder and its two latent denoisers — cross-attention
on per-word vectors, and chapter 08's pooled prompt vector — then measures

- ``recon_psnr``: mean PSNR (dB) of decode(encode(x)) on 500 held-out scenes; ``compression``:
  numbers per picture / numbers per latent;
- ``pixel_train_img_s`` / ``latent_train_img_s``: training throughput of the same cross-attention
  U-Net on 64×64×3 pixels and on 16×16×4 latents (batch 16); ``pixel_sample_s`` /
  ``latent_sample_s``: seconds per sample, DDIM with the chapter's steps and CFG (latent: with the decoder);
- ``prompt_accuracy_crossattn`` / ``prompt_accuracy_pooled``: on the held-out compositional prompts
  (``scenes.compositional_prompts``), the share of samples in which the shipped scene judge sees
  every asked animal, hat and place;
- ``edit_success``: img2img at the chapter's strength on held-out scenes, one hat changed per edit:
  the share where the asked hat changed and everything else stayed.

    python benchmarks/latent.py [--profile cpu] [--threads 1] [--json]
"""

from __future__ import annotations

import time

from _cli import apply_common, benchmark_parser, emit, run_conditions, run_main
from course_lib.latent import latent_benchmark

KEYS = ("recon_psnr", "compression", "pixel_train_img_s", "latent_train_img_s", "pixel_sample_s", "latent_sample_s",
        "prompt_accuracy_crossattn", "prompt_accuracy_pooled", "edit_success")


def print_table(r: dict) -> None:
    for key in KEYS + ("sample_speedup", "scale_factor", "crossattn_train_seconds", "pooled_train_seconds"):
        value = r[key]
        print(f"{key:<28} {value:.4g}" if isinstance(value, float) else f"{key:<28} {value}")
    for cond in ("crossattn", "pooled"):
        for prompt, acc in r[f"per_prompt_{cond}"].items():
            print(f"  {cond:<10} {acc:5.2f}  {prompt}")
    print(f"{'edit detail':<28} {r['edit_detail']}")
    print(f"profile {r['profile']}, device {r['device']}, {r['threads']} threads, load {r['load_average']}, "
          f"{r['wall_seconds']:.0f} s")


def main(argv: list[str] | None = None) -> dict:
    ap = benchmark_parser(__doc__)
    args = ap.parse_args(argv)
    profile, device = apply_common(args, cpu_for_smoke=True)
    tic = time.perf_counter()
    result = latent_benchmark(profile)
    result = {"benchmark": "latent", "profile": profile, **result, "wall_seconds": time.perf_counter() - tic}
    return emit({**result, **run_conditions(device)}, args.json, print_table)


if __name__ == "__main__":
    run_main(main)
