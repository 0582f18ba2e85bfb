"""Guidance on the class-conditional digits model: class accuracy, FID and time across a scale sweep.

Trains (or loads) ``pretrained.digits_model(profile, cond=True)``, then samples a class-balanced set
(``--per-class`` digits of each class, the same starting noise at every scale) with classifier-free
guidance at each scale of ``--scales`` and measures

- class accuracy: the share the shipped digit classifier reads as the requested digit
  (``metrics.class_accuracy``);
- FID against ``--real`` real test digits in that classifier's feature space (``metrics.fid``);
- the sampling seconds.

The prompt part (chapter 08: text-conditioned hats, the shipped ``cpu`` prompt model) comes from
``course_lib.prompts.prompt_benchmark`` at s = 3: the seen and the unseen prompts' accuracy (every requested
attribute read right by the shipped attribute classifier) and the background speckle (``PROMPT_KEYS``);
``--no-prompts`` leaves them null.

    python benchmarks/guidance.py [--profile cpu] [--device auto] [--scales 0,1,2,3,5,8]
                                  [--per-class 50] [--real 1000] [--sampler dpmpp_2m_sde] [--steps N]
                                  [--threads N] [--no-prompts] [--json]
"""

from __future__ import annotations

import sys
import time

import torch

from _cli import apply_common, benchmark_parser, emit, parse_scales, run_conditions, run_main
from course_lib.data import load_mnist5000
from course_lib.evaluation import guidance_sweep
from course_lib.pretrained import digits_model
from course_lib.samplers import SAMPLERS
from course_lib.settings import check_choice, check_int


#: what the prompt part reports: seen and unseen ("a dog wearing a green hat") prompt accuracy at s = 3, the
#: samples' background speckle (8-bit levels, ``prompts.background_speckle``), training seconds, shipped or not
PROMPT_KEYS = ("prompt_accuracy", "unseen_prompt_accuracy", "background_speckle", "prompt_train_seconds", "shipped")


def prompt_part(profile: str, device: torch.device) -> dict:
    """``course_lib.prompts.prompt_benchmark`` if it exists (imported lazily), else nulls and a note."""
    try:
        from course_lib.prompts import prompt_benchmark  # type: ignore[attr-defined]
    except ImportError:
        print("note: course_lib.prompts.prompt_benchmark is not available yet; prompt_accuracy and "
              "prompt_train_seconds are null", file=sys.stderr)
        return dict.fromkeys(PROMPT_KEYS)
    result = prompt_benchmark(profile, device=device)
    return {key: result.get(key) for key in PROMPT_KEYS}


def main(argv: list[str] | None = None) -> dict:
    ap = benchmark_parser(__doc__)
    ap.add_argument("--scales", default="0,1,2,3,5,8", help="guidance scales s (s = 1: unguided conditional)")
    ap.add_argument("--per-class", type=int, default=None, help="samples per digit (default 2 smoke, 50 cpu, 200 gpu)")
    ap.add_argument("--real", type=int, default=1000, help="real test digits for FID (at most 1000)")
    ap.add_argument("--sampler", default="dpmpp_2m_sde", help=f"one of {SAMPLERS} (default: chapter 06's recommendation, as chapter 07)")
    ap.add_argument("--steps", type=int, default=None, help="sampler steps (default 4 smoke, 20 cpu, 50 gpu)")
    ap.add_argument("--no-prompts", action="store_true", help="skip the prompt (chapter 08) part")
    args = ap.parse_args(argv)
    profile, device = apply_common(args)
    scales = parse_scales(args.scales)
    sampler = check_choice("--sampler", args.sampler, SAMPLERS)
    per_class = check_int("--per-class", args.per_class or {"smoke": 2, "cpu": 50, "gpu": 200}[profile], min_value=1)
    steps = check_int("--steps", args.steps or {"smoke": 4, "cpu": 20, "gpu": 50}[profile], min_value=1, max_value=1000)
    n_real = check_int("--real", args.real, min_value=2, max_value=1000)
    wall = time.perf_counter()

    model, schedule, info = digits_model(profile, cond=True, device=device, progress=not args.json)
    real = load_mnist5000("test", size=32).images[:n_real].to(device)
    sweep = guidance_sweep(model, schedule, scales, real, per_class=per_class, sampler=sampler, num_steps=steps,
                           seed=0, progress=False)
    prompts = dict.fromkeys(PROMPT_KEYS) if args.no_prompts else prompt_part(profile, device)
    result = {
        "benchmark": "guidance",
        "profile": profile,
        **run_conditions(device),
        "train_seconds": round(info["train_seconds"], 2),
        "train_steps": info["steps"],
        "train_cached": info["cached"],
        "sampler": sampler,
        "num_steps": steps,
        "per_class": per_class,
        "real": n_real,
        "sweep": [{"guidance_scale": p.guidance_scale, "class_accuracy": round(p.class_accuracy, 4),
                   "confidence": round(p.confidence, 4), "fid": round(p.fid, 3), "seconds": round(p.seconds, 2)}
                  for p in sweep],
        "best_class_accuracy": round(max(p.class_accuracy for p in sweep), 4),
        **prompts,
        "wall_seconds": round(time.perf_counter() - wall, 2),
    }
    return emit(result, args.json, print_table)


def print_table(r: dict) -> None:
    print(f"device {r['device']} · profile {r['profile']} · torch {r['torch']} · threads {r['threads']} · "
          f"load avg {r['load_average']}")
    print(f"class-conditional digits U-Net: {r['train_steps']} steps, {r['train_seconds']:.1f} s of training"
          + (" (cached)" if r["train_cached"] else ""))
    print(f"sampler {r['sampler']} · {r['num_steps']} steps · {r['per_class']} samples per digit · FID vs {r['real']} test digits")
    print(f"{'guidance scale':>15} {'class accuracy':>15} {'confidence':>11} {'FID':>9} {'seconds':>8}")
    for p in r["sweep"]:
        print(f"{p['guidance_scale']:15g} {p['class_accuracy']:15.1%} {p['confidence']:11.3f} {p['fid']:9.3f} {p['seconds']:8.1f}")
    print(f"best class accuracy {r['best_class_accuracy']:.1%}")
    if r["prompt_accuracy"] is not None:
        print(f"prompts (chapter 08, s = 3): accuracy {r['prompt_accuracy']:.1%} seen, {r['unseen_prompt_accuracy']:.1%} unseen "
              f"(a dog wearing a green hat), background speckle {r['background_speckle']:.2f} of 255, "
              f"{r['prompt_train_seconds']:.1f} s of training" + (" (shipped)" if r["shipped"] else ""))
    else:
        print("prompts (chapter 08): not measured")
    print(f"wall {r['wall_seconds']:.1f} s")


if __name__ == "__main__":
    run_main(main)
