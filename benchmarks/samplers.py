"""Steps versus quality of the course's samplers on the chapter-04 digits model (chapter 06's table).

In the spirit of the DDIM paper's Table 1 (Song et al. 2021): for DDPM with all 1,000 steps, DDIM at
10/20/50/100 steps and Euler, Heun, DPM-Solver++(2M) and SDE-DPM-Solver++(2M) at 10 and 20 network
evaluations (NFE; Heun makes 2·steps − 1 of them), draw the same number of images from the same starting noises, time the
sampling, and score the images with FID against the 1,000 real digits of the MNIST-5000 test split
(``course_lib.metrics.fid``, the shipped digits feature network: real-vs-real ≈ 0.6, noise ≈ 97).
The computation is ``course_lib.steps_table.steps_vs_quality``, the same function chapter 06 calls.

    python benchmarks/samplers.py [--profile auto] [--n-samples N] [--spacings] [--json]

The flow rows (chapter 12) follow: the flow-matching digits model (``pretrained.flow_digits_model``,
the same U-Net at the same training budget as the diffusion model) and its reflowed copy
(``pretrained.reflow_digits_model``), with Euler and midpoint steps at 1, 2, 4, 10 and 20 network
calls, from the same starting noises. ``--json`` adds ``best_ratio_at_10`` and ``best_ratio_at_4``
(the lowest FID ÷ DDPM-1000 FID among all rows with at most that many calls), ``flow_train_seconds``
and ``reflow_extra_seconds`` (drawing the pairs + the second training). ``--no-flow`` leaves them out.

The one-step rows (chapter 15, ``course_lib.one_step_table``) follow: the consistency model distilled from the
flow model, the same model after its round with a critic (``pretrained.onestep.consistency_critic_model``) and
MeanFlow, at 1, 2 and 4 calls. ``--json`` adds ``best_ratio_at_1`` and ``best_ratio_at_2`` (issue 28's goals:
≤ 2.0 and ≤ 1.3) and ``onestep_train_seconds`` (the critic-tuned model's cost on top of the flow model: the
teacher's paths, the distillation and the critic's round). ``--no-onestep`` leaves them out.

``--spacings`` adds every spacing (leading / trailing / linspace, and karras from σ(T−1) and from
σ_max = 80 for the σ-samplers) at 20 NFE, with the guess x̂₀ clamped to [−1, 1] and without. The target
line reports the best sampler within 20 NFE against DDPM-1000 (goal: ≤ 1.1×).
The model is ``pretrained.digits_model(profile)``: loaded from runs/ when cached, trained otherwise.
"""

from __future__ import annotations

import time

from _cli import apply_common, benchmark_parser, emit, run_conditions, run_main
from course_lib.data import load_mnist5000
from course_lib.one_step_table import one_step_configs, one_step_vs_quality
from course_lib.pretrained import consistency_model, digits_model, flow_digits_model, meanflow_model, reflow_digits_model
from course_lib.pretrained.onestep import consistency_critic_model
from course_lib.schedules import SPACINGS
from course_lib.solvers import EDM_SIGMA_MAX, SIGMA_SAMPLERS, SIGMA_SPACINGS
from course_lib.steps_table import (
    SamplerConfig,
    best_ratio_within,
    best_within,
    flow_steps_vs_quality,
    flow_table_configs,
    format_table,
    reference_fid,
    samples_per_row,
    steps_for_nfe,
    steps_vs_quality,
    table_configs,
)

TARGET_NFE = 20
TARGET_RATIO = 1.1


def spacing_configs(nfe: int = TARGET_NFE) -> list[SamplerConfig]:
    """Every sampler except DDPM at ``nfe`` calls with every spacing it accepts (karras both from σ(T−1)
    and from EDM's σ_max = 80), x̂₀ clamped or not; and DDIM with η = 1 (stochastic, like DDPM)."""
    out = []
    for clip in (True, False):
        out += [SamplerConfig("ddim", nfe, sp, clip_sample=clip) for sp in SPACINGS]
        for sampler in SIGMA_SAMPLERS:
            steps = steps_for_nfe(sampler, nfe)
            out += [SamplerConfig(sampler, steps, sp, clip_sample=clip) for sp in SIGMA_SPACINGS]
            out.append(SamplerConfig(sampler, steps, "karras", clip_sample=clip, sigma_max=EDM_SIGMA_MAX))
    out.append(SamplerConfig("ddim", nfe, "trailing", eta=1.0, clip_sample=True))
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = benchmark_parser(__doc__)
    ap.add_argument("--n-samples", type=int, default=None, help="images per row (default by profile: smoke 8, cpu 1000, gpu 2000)")
    ap.add_argument("--batch-size", type=int, default=250, help="images per sampler call")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--spacings", action="store_true", help="add every spacing at 20 NFE")
    ap.add_argument("--no-flow", action="store_true", help="leave out the flow and reflow rows (chapter 12)")
    ap.add_argument("--no-onestep", action="store_true", help="leave out the one-step rows (chapter 15)")
    args = ap.parse_args(argv)
    profile, device = apply_common(args)
    n = args.n_samples or samples_per_row(profile)

    tic = time.perf_counter()
    model, schedule, info = digits_model(profile, device=device, progress=not args.json)
    model.eval()
    real = load_mnist5000("test", size=32).images.to(device)  # (1000, 1, 32, 32)
    configs = table_configs()
    if args.spacings:
        configs += [c for c in spacing_configs() if c not in configs]
    rows = steps_vs_quality(model, schedule, real, configs, n, args.seed, batch_size=args.batch_size,
                            progress=not args.json)
    flow_info = reflow_info = None
    if not args.no_flow:
        flow, flow_info = flow_digits_model(profile, device=device, progress=not args.json)
        reflow, reflow_info = reflow_digits_model(profile, device=device, progress=not args.json)
        rows += flow_steps_vs_quality({"flow": flow.eval(), "reflow": reflow.eval()}, real, flow_table_configs(), n,
                                      args.seed, batch_size=args.batch_size, progress=not args.json)
    onestep_info = None
    if not args.no_onestep:
        cm, _ = consistency_model(profile, device=device, progress=not args.json)
        critic, onestep_info = consistency_critic_model(profile, device=device, progress=not args.json)
        mf, _ = meanflow_model(profile, device=device, progress=not args.json)
        kinds = {"consistency": "consistency", "consistency+critic": "consistency", "meanflow": "meanflow"}
        rows += one_step_vs_quality({"consistency": cm.eval(), "consistency+critic": critic.eval(), "meanflow": mf.eval()},
                                    real, one_step_configs(kinds), n, args.seed, batch_size=args.batch_size,
                                    progress=not args.json)
    best = best_within(rows, TARGET_NFE)
    ratio = best["fid"] / reference_fid(rows)
    result = {
        "benchmark": "samplers", "profile": profile, **run_conditions(device),
        "n_samples": n, "n_real": real.shape[0], "seed": args.seed, "model_cached": info["cached"],
        "wall_seconds": time.perf_counter() - tic,
        "rows": [{k: r[k] for k in ("sampler", "steps", "nfe", "fid", "seconds", "spacing", "eta", "clip_sample", "sigma_max", "label")}
                 for r in rows],
        "target": {"nfe": TARGET_NFE, "best": best["label"], "best_fid": best["fid"], "reference_fid": reference_fid(rows),
                   "ratio": ratio, "goal": TARGET_RATIO, "met": ratio <= TARGET_RATIO},
        "best_ratio_at_10": best_ratio_within(rows, 10), "best_ratio_at_4": best_ratio_within(rows, 4),
        **{f"best_ratio_at_{k}": best_ratio_within(rows, k) if any(r["nfe"] <= k for r in rows) else None for k in (1, 2)},
        "onestep_train_seconds": onestep_info["extra_seconds"] if onestep_info else None,
        "diffusion_train_seconds": info["train_seconds"],
        "flow_train_seconds": flow_info["train_seconds"] if flow_info else None,
        "reflow_extra_seconds": reflow_info["extra_seconds"] if reflow_info else None,
    }
    return emit(result, args.json, print_table)


def print_table(r: dict) -> None:
    t = r["target"]
    print(f"samplers on the {r['profile']} digits model · device {r['device']} · threads {r['threads']} · "
          f"load avg {r['load_average']} · {r['n_samples']} images per row vs {r['n_real']} real test digits · "
          f"seed {r['seed']}")
    print(format_table(r["rows"]))
    print(f"best within {t['nfe']} NFE: {t['best']} · FID {t['best_fid']:.3f} = {t['ratio']:.2f}× DDPM-1000 "
          f"(goal ≤ {t['goal']}×: {'met' if t['met'] else 'NOT met'}) · wall {r['wall_seconds']:.0f} s")
    print(f"best within 10 NFE: {r['best_ratio_at_10']:.2f}× DDPM-1000 · within 4 NFE: {r['best_ratio_at_4']:.2f}×")
    for k in (1, 2):
        if r[f"best_ratio_at_{k}"] is not None:
            print(f"best within {k} NFE: {r[f'best_ratio_at_{k}']:.2f}× DDPM-1000")
    if r["onestep_train_seconds"] is not None:
        print(f"one-step (consistency distillation + critic) training: +{r['onestep_train_seconds']:.0f} s")
    if r["flow_train_seconds"] is not None:
        print(f"training: diffusion {r['diffusion_train_seconds']:.0f} s · flow {r['flow_train_seconds']:.0f} s · "
              f"reflow +{r['reflow_extra_seconds']:.0f} s (pairs + second training)")

if __name__ == "__main__":
    run_main(main)
