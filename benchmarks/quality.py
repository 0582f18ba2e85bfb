"""Sample quality of the chapter-04 digits model: FID and KID (and class accuracy with ``--cond``).

Loads the profile's digits model through ``course_lib.pretrained.digits_model`` (trained once and
cached in ``runs/digits-<profile>``; trained now if missing), draws ``--n`` digits with the chosen
sampler and measures them with ``course_lib.evaluation.evaluate_model`` against ``--n`` random digits
of the MNIST-5000 training split, in the feature space of the shipped digit classifier (chapter 10).
Next to every score it prints the **floor**: the same metric between that reference set and a
second, disjoint set of ``--n`` real digits — FID is biased upwards for small n, so a model score
means something only next to the real-vs-real score at the same n.

``--cond`` also evaluates the class-conditional model ``digits_model(profile, cond=True)`` (chapter
07): ``--n`` digits asked for in equal shares of the ten classes, with classifier-free guidance
scale ``--guidance-scale``, scored by FID/KID and by class accuracy (does the classifier see the
digit that was asked for?).

    python benchmarks/quality.py [--profile cpu] [--device auto] [--n 1000] [--sampler ddim]
                                 [--num-steps 50] [--seed 0] [--cond] [--guidance-scale 3]
                                 [--threads N] [--json]

Wall time includes training when the model was not cached yet (see ``train_seconds``).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch

from _cli import apply_common, benchmark_parser, emit, run_conditions, run_main
from course_lib.data import load_mnist5000
from course_lib.evaluation import evaluate_model
from course_lib.pretrained import digits_model
from course_lib.samplers import SAMPLERS
from course_lib.settings import check_choice, check_float, check_int

DEFAULT_N = {"smoke": 50, "cpu": 1000, "gpu": 2000}
DEFAULT_STEPS = {"smoke": 5, "cpu": 50, "gpu": 50}


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = benchmark_parser(__doc__)
    ap.add_argument("--n", type=int, default=None, help="samples (and real digits) per set; default by profile "
                    f"{DEFAULT_N}; at most 2,000 (the floor needs 2n of the 4,000 training digits)")
    ap.add_argument("--sampler", default="ddim", help=f"one of {SAMPLERS}")
    ap.add_argument("--num-steps", type=int, default=None, help=f"sampler steps; default by profile {DEFAULT_STEPS}")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cond", action="store_true", help="also evaluate the class-conditional model (chapter 07)")
    ap.add_argument("--guidance-scale", type=float, default=3.0, help="CFG scale s for --cond (1 = unguided)")
    ap.add_argument("--load-only", action="store_true", help="never train: load the EMA weights of whatever "
                    "checkpoint runs/digits-<profile> holds (possibly unfinished), read-only, and report its step")
    return ap.parse_args(argv)


def load_read_only(profile: str, cond: bool, device: torch.device) -> tuple[torch.nn.Module, Any, dict[str, Any]]:
    """The EMA model of the checkpoint in runs/digits-<profile>[-cond-v] as it is (finished or not): the registry's
    :func:`~course_lib.registry.obtain` with the run stopped at the checkpoint's own step, so nothing is trained
    or written."""
    from course_lib.checkpoints import read_state
    from course_lib.pretrained import DIGITS, DIGITS_COND, DIGITS_SCHEDULE
    from course_lib.registry import obtain
    from course_lib.schedules import make_schedule
    from course_lib.training import limits

    recipe = DIGITS_COND if cond else DIGITS
    run_dir = recipe.run_dir(profile)
    state = read_state(run_dir)
    with limits(until=int(state["step"])):
        model, info = obtain(recipe, profile, run_dir=run_dir, device=device, progress=False)
    model.prediction_type = state["train_config"]["prediction_type"]  # samplers read the output by it
    return model, make_schedule(DIGITS_SCHEDULE), {**info, "planned_steps": int(state["train_config"]["steps"])}


def measure(profile: str, *, cond: bool, device: torch.device, real: torch.Tensor, n: int, sampler: str,
            num_steps: int, seed: int, guidance_scale: float, progress: bool, load_only: bool = False) -> dict[str, Any]:
    """Load (or train) one digits model and score it; training facts are merged into the result."""
    if load_only:
        model, schedule, info = load_read_only(profile, cond, device)
    else:
        model, schedule, info = digits_model(profile, cond=cond, device=device, progress=progress)
    labels = torch.arange(n) % 10 if cond else None  # 0, 1, …, 9, 0, 1, …: equal shares of the classes
    scores = evaluate_model(model, schedule, real, n=n, sampler=sampler, num_steps=num_steps, seed=seed,
                            labels=labels, guidance_scale=guidance_scale if cond else 1.0, floor=not cond,
                            progress=progress)
    return {**scores, "train_seconds": info["train_seconds"], "train_steps": info["steps"], "cached": info["cached"],
            "planned_steps": info.get("planned_steps", info["steps"]), "run_dir": info["run_dir"]}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    profile, device = apply_common(args, cpu_for_smoke=True)
    check_choice("--sampler", args.sampler, SAMPLERS)
    n = check_int("--n", args.n if args.n is not None else DEFAULT_N[profile], min_value=10, max_value=2000)
    num_steps = check_int("--num-steps", args.num_steps if args.num_steps is not None else DEFAULT_STEPS[profile],
                          min_value=1, max_value=1000)
    check_int("--seed", args.seed, min_value=0)
    check_float("--guidance-scale", args.guidance_scale, min_value=0.0)
    tic = time.perf_counter()
    real = load_mnist5000("train").images  # (4000, 1, 32, 32) in [-1, 1]
    kw = dict(device=device, real=real, n=n, sampler=args.sampler, num_steps=num_steps, seed=args.seed,
              guidance_scale=args.guidance_scale, progress=not args.json, load_only=args.load_only)
    result: dict[str, Any] = {"profile": profile, **measure(profile, cond=False, **kw)}
    if args.cond:
        result["cond"] = measure(profile, cond=True, **kw)
    result.update(**run_conditions(device), wall_seconds=time.perf_counter() - tic)
    return emit(result, args.json, print_table)


def print_table(r: dict[str, Any]) -> None:
    print(f"\nchapter-04 digits model · profile {r['profile']} · {r['device']} · {r['threads']} threads · torch {r['torch']}")
    print(f"{r['n_samples']} samples vs {r['n_samples']} real training digits · {r['sampler']}, {r['num_steps']} steps · "
          f"features: shipped digit classifier")
    rows = [("model", r)] + ([(f"class-conditional, s = {r['cond']['guidance_scale']:g}", r["cond"])] if "cond" in r else [])
    for label, s in rows:
        if s["train_steps"] < s["planned_steps"]:
            print(f"NOTE: {label}: an UNFINISHED checkpoint, {s['train_steps']} of {s['planned_steps']} training steps")
    print(f"\n{'':>28} {'FID':>8} {'KID':>18} {'class acc':>10} {'train s':>9} {'sample s':>9}")
    for label, s in rows:
        acc = f"{s['class_accuracy']:.1%}" if "class_accuracy" in s else "—"
        kid = f"{s['kid_mean']:.4f} ± {s['kid_std']:.4f}"
        print(f"{label:>28} {s['fid']:8.2f} {kid:>18} {acc:>10} {s['train_seconds']:9.0f} {s['sample_seconds']:9.1f}")
    print(f"{'real vs real (floor)':>28} {r['fid_floor']:8.2f} {r['kid_floor_mean']:>18.4f} {'':>10} {'':>9} {'':>9}")
    cached = r["cached"] and r.get("cond", {}).get("cached", True)
    print(f"\nwall time {r['wall_seconds']:.0f} s (training {'cached' if cached else 'included'})")


if __name__ == "__main__":
    run_main(main)
