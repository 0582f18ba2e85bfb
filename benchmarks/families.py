"""Three families on the same digits and the same training budget: a VAE, a GAN and diffusion (chapter 09).

Loads (or trains once and caches) chapter 09's VAE and GAN and chapter 04's digits model at the race's
step (``course_lib.pretrained.RACE_STEPS``: each family gets about the same training time), draws
``--n`` pictures from each, times that, and scores them against ``--n`` real training digits in the
shipped digit classifier's feature space (chapter 10): FID, KID, the classifier's class shares and
their entropy (log₂ 10 ≈ 3.32 bits = all ten digits equally often). The table also shows chapter 04's
final model ("diffusion, trained longer"), the real-vs-real floor and pure static.

    python benchmarks/families.py [--profile cpu] [--n 1000] [--num-steps 25] [--seed 0]
                                  [--save-samples DIR] [--no-longer] [--threads N] [--json]

``--json`` prints one object with keys ``vae``, ``gan``, ``diffusion`` (and ``diffusion_longer``),
each holding ``fid``, ``kid``, ``class_entropy``, ``train_seconds``, ``sample_seconds_per_1000``.
``--save-samples DIR`` writes ``vae.pt``, ``gan.pt``, ``diffusion.pt`` (and ``diffusion_longer.pt``),
each ``{"samples": (n, 1, 32, 32) in [-1, 1]}``. Training seconds are the wall seconds the checkpoint
recorded when the model was trained (see ``load_average`` of that run in your notes).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch

from _cli import apply_common, benchmark_parser, emit, run_conditions, run_main
from course_lib.data import load_mnist5000
from course_lib.evaluation import disjoint_subsets
from course_lib.families import DEFAULT_STEPS, FAMILIES, FAMILY_NAMES, RACE_SAMPLER, draw_in_batches, load_family, score_family
from course_lib.metrics import fid, kid
from course_lib.settings import check_int

DEFAULT_N = {"smoke": 50, "cpu": 1000, "gpu": 1000}


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = benchmark_parser(__doc__)
    ap.add_argument("--n", type=int, default=None, help=f"pictures per family (and real digits); default {DEFAULT_N}")
    ap.add_argument("--num-steps", type=int, default=None, help=f"sampler steps for diffusion; default {DEFAULT_STEPS}")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-longer", action="store_true", help="leave out chapter 04's final model (diffusion, trained longer)")
    ap.add_argument("--save-samples", default=None, metavar="DIR", help="write <family>.pt = {'samples': (n, 1, 32, 32)}")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    profile, device = apply_common(args, cpu_for_smoke=True)
    n = check_int("--n", args.n if args.n is not None else DEFAULT_N[profile], min_value=20, max_value=2000)
    seed = check_int("--seed", args.seed, min_value=0)
    if args.num_steps is not None:
        DEFAULT_STEPS[profile] = check_int("--num-steps", args.num_steps, min_value=1, max_value=1000)
    tic = time.perf_counter()
    real, real_b = disjoint_subsets(load_mnist5000("train").images, n, count=2, seed=seed)
    result: dict[str, Any] = {"profile": profile, "n": n, "num_steps": DEFAULT_STEPS[profile], "seed": seed}
    samples = {}
    for name in (*FAMILIES, *(() if args.no_longer else ("diffusion_longer",))):
        draw, info = load_family(name, profile, device=device, progress=not args.json)
        samples[name], seconds = draw_in_batches(draw, n, seed=seed)
        result[name] = {**score_family(real, samples[name], seed=seed), "train_seconds": info["train_seconds"],
                        "train_steps": info["steps"], "sample_seconds_per_1000": seconds * 1000 / n,
                        "network_passes_per_picture": info["num_steps"], "cached": info["cached"]}
    result["real_floor"] = {"fid": fid(real, real_b), "kid": kid(real, real_b, seed=seed)[0]}
    static = torch.randn(n, 1, 32, 32, generator=torch.Generator().manual_seed(seed)).clamp(-1, 1)
    result["static"] = {"fid": fid(real, static)}
    if args.save_samples is not None:
        out = Path(args.save_samples)
        out.mkdir(parents=True, exist_ok=True)
        for name, images in samples.items():
            torch.save({"samples": images.contiguous()}, out / f"{name}.pt")
    result.update(**run_conditions(device), wall_seconds=time.perf_counter() - tic)
    return emit(result, args.json, print_table)


def print_table(r: dict[str, Any]) -> None:
    print(f"\nthree families · profile {r['profile']} · {r['device']} · {r['threads']} threads · load {r['load_average']}")
    print(f"{r['n']} pictures per family vs {r['n']} real training digits · diffusion: {RACE_SAMPLER}, {r['num_steps']} steps")
    print(f"\n{'':>26} {'FID':>7} {'KID':>8} {'class entropy':>14} {'train steps':>12} {'train s':>8} {'s / 1000 pict.':>15}")
    for name in (n for n in (*FAMILIES, "diffusion_longer") if n in r):
        s = r[name]
        print(f"{FAMILY_NAMES[name]:>26} {s['fid']:7.1f} {s['kid']:8.4f} {s['class_entropy']:9.2f} bits {s['train_steps']:12d} "
              f"{s['train_seconds']:8.0f} {s['sample_seconds_per_1000']:15.2f}")
    print(f"{'real vs real (floor)':>26} {r['real_floor']['fid']:7.1f} {r['real_floor']['kid']:8.4f}")
    print(f"{'static (noise)':>26} {r['static']['fid']:7.1f}")
    print(f"\nwall time {r['wall_seconds']:.0f} s")


if __name__ == "__main__":
    run_main(main)
