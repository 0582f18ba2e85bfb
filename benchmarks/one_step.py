"""One, two and four network calls against DDPM-1000 (chapter 15): the one-step models in the steps-vs-quality table.

Rows: the consistency model distilled from chapter 12's flow (``pretrained.onestep.consistency_model``), the
same recipe without the boundary condition, the distilled model fine-tuned with a critic
(``pretrained.onestep.consistency_critic_model``), MeanFlow trained from scratch (``pretrained.onestep.meanflow_model``)
at 1, 2 and 4 network calls, and chapter 12's reflow at the same budgets (Euler and midpoint), all from the
same 1,000 starting noises as ``benchmarks/samplers.py`` (seed 0) and scored with the same FID (the shipped
digits features, against the 1,000 test digits); the reference row is DDPM with all 1,000 steps on the
chapter-04 diffusion model (``pretrained.digits_model``), as in ``benchmarks/samplers.py``.

    python benchmarks/one_step.py [--profile auto] [--n-samples N] [--json]

``--json`` prints ``best_ratio_at_1``, ``best_ratio_at_2`` and ``best_ratio_at_4`` (the lowest FID ÷ DDPM-1000's
FID among the rows with at most that many calls, any method), ``onestep_train_seconds`` (the critic-tuned
model's cost on top of its teacher: drawing the teacher's paths + distillation + the critic stage),
``distill_train_seconds`` (the first two alone), ``meanflow_train_seconds`` and
the teacher's ``flow_train_seconds``, with the rows. Goals (issue 28): ``best_ratio_at_1`` ≤ 2.0,
``best_ratio_at_2`` ≤ 1.3, ``onestep_train_seconds`` ≤ the base model's training time.
"""

from __future__ import annotations

import time

from _cli import apply_common, benchmark_parser, emit, run_conditions, run_main
from course_lib.data import load_mnist5000
from course_lib.one_step_table import one_step_configs, one_step_vs_quality
from course_lib.pretrained import digits_model, reflow_digits_model
from course_lib.pretrained.flows import flow_train_config
from course_lib.pretrained.onestep import consistency_critic_model, consistency_model, meanflow_model
from course_lib.steps_table import (
    FlowRowConfig, best_ratio_within, best_within, flow_steps_vs_quality, format_table, reference_fid,
    samples_per_row, steps_vs_quality, table_configs,
)

GOALS = {"best_ratio_at_1": 2.0, "best_ratio_at_2": 1.3}


def step_costs(profile: str, device, repeats: int = 3, steps: int = 10) -> dict[str, float]:
    """Seconds per training step of the base flow, the distillation, the critic stage and MeanFlow, and per teacher path, measured
    side by side in this process (interleaved, the fastest of ``repeats`` rounds): the cost of each recipe under
    the *same* machine load, whatever the load was when the shipped models were trained."""
    import torch

    from course_lib.consistency import (
        AdversarialConsistency, ConsistencyModel, PathConsistency, StudentCritic, path_sigmas, teacher_paths,
    )
    from course_lib.models.gan import Discriminator
    from course_lib.flow import FlowMatching
    from course_lib.meanflow import MeanFlowNet, MeanFlowObjective
    from course_lib.models.unet import UNet, digits_config
    from course_lib.optim import TrainConfig
    from course_lib.pretrained.onestep import CRITIC_CONFIG, PATH_STEPS
    from course_lib.training import train

    cfg, digits = digits_config(profile), load_mnist5000("train", size=32).images
    sig = tuple(path_sigmas(PATH_STEPS[profile]).tolist())
    paths = torch.randn(256, len(sig), 32, 32)
    runs = {"flow": (lambda: UNet(cfg), FlowMatching(), digits), "distillation": (lambda: ConsistencyModel(UNet(cfg)),
            PathConsistency(sig), paths), "meanflow": (lambda: MeanFlowNet(cfg), MeanFlowObjective(), digits),
            "critic": (lambda: StudentCritic(ConsistencyModel(UNet(cfg)), Discriminator(CRITIC_CONFIG)),
                       AdversarialConsistency(PathConsistency(sig), digits, "timing"), paths)}
    best: dict[str, float] = {}
    teacher = UNet(cfg).to(device).eval()
    for _ in range(repeats):
        for name, (build, objective, data) in runs.items():
            tcfg = TrainConfig(steps=steps, batch_size=64, lr=1e-4, warmup=1, checkpoint_every=0)
            tic = time.perf_counter()
            train(build(), objective, data, tcfg, device=device, progress=False)
            best[name] = min(best.get(name, float("inf")), (time.perf_counter() - tic) / steps)
        tic = time.perf_counter()
        teacher_paths(teacher, torch.randn(250, 1, 32, 32, device=device), PATH_STEPS[profile])
        best["path"] = min(best.get("path", float("inf")), (time.perf_counter() - tic) / 250)
    return best


def main(argv: list[str] | None = None) -> dict:
    ap = benchmark_parser(__doc__)
    ap.add_argument("--n-samples", type=int, default=None, help="images per row (default by profile: smoke 8, cpu 1000, gpu 2000)")
    ap.add_argument("--batch-size", type=int, default=250, help="images per sampler call")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-cost", action="store_true", help="skip timing one training step of each recipe side by side")
    args = ap.parse_args(argv)
    profile, device = apply_common(args)
    n = args.n_samples or samples_per_row(profile)
    quiet = args.json

    tic = time.perf_counter()
    real = load_mnist5000("test", size=32).images.to(device)  # (1000, 1, 32, 32)
    diffusion, schedule, dinfo = digits_model(profile, device=device, progress=not quiet)
    ddpm = table_configs(num_train_timesteps=schedule.num_timesteps)[:1]  # DDPM with every step: benchmarks/samplers.py's first row
    rows = steps_vs_quality(diffusion.eval(), schedule, real, ddpm, n, args.seed, batch_size=args.batch_size, progress=not quiet)
    cm, cm_info = consistency_model(profile, device=device, progress=not quiet)
    free, _ = consistency_model(profile, boundary=False, device=device, progress=not quiet)
    critic, critic_info = consistency_critic_model(profile, device=device, progress=not quiet)
    mf, mf_info = meanflow_model(profile, device=device, progress=not quiet)
    models = {"consistency": cm, "consistency-no-boundary": free, "consistency+critic": critic, "meanflow": mf}
    kinds = {"consistency": "consistency", "consistency-no-boundary": "consistency", "consistency+critic": "consistency",
             "meanflow": "meanflow"}
    rows += one_step_vs_quality(models, real, one_step_configs(kinds), n, args.seed, batch_size=args.batch_size,
                                progress=not quiet)
    reflow, _ = reflow_digits_model(profile, device=device, progress=not quiet)
    reflow_rows = [FlowRowConfig("reflow", "euler", k) for k in (1, 2, 4)] + [FlowRowConfig("reflow", "midpoint", k) for k in (1, 2)]
    rows += flow_steps_vs_quality({"reflow": reflow.eval()}, real, reflow_rows, n, args.seed, batch_size=args.batch_size,
                                  progress=not quiet)
    result = {
        "benchmark": "one_step", "profile": profile, **run_conditions(device), "n_samples": n, "n_real": real.shape[0],
        "seed": args.seed, "wall_seconds": time.perf_counter() - tic, "reference_fid": reference_fid(rows),
        "rows": [{k: r[k] for k in ("label", "sampler", "steps", "nfe", "fid", "seconds")} for r in rows],
        **{f"best_ratio_at_{k}": best_ratio_within(rows, k) for k in (1, 2, 4)},
        **{f"best_at_{k}": best_within(rows, k)["label"] for k in (1, 2, 4)},
        "onestep_train_seconds": critic_info["extra_seconds"], "distill_train_seconds": cm_info["extra_seconds"],
        "onestep_path_seconds": cm_info["path_seconds"],
        "flow_train_seconds": cm_info["base_train_seconds"], "diffusion_train_seconds": dinfo["train_seconds"],
        "meanflow_train_seconds": mf_info["train_seconds"], "goals": GOALS,
    }
    if not args.no_cost:
        cost = step_costs(profile, device)
        flow_steps, cm_steps = flow_train_config(profile).steps, cm_info["steps"]
        result["step_seconds"] = cost
        distill = cm_info["num_paths"] * cost["path"] + cm_steps * cost["distillation"]
        result["distill_cost_ratio_same_load"] = distill / (flow_steps * cost["flow"])
        result["onestep_cost_ratio_same_load"] = (distill + critic_info["steps"] * cost["critic"]) / (flow_steps * cost["flow"])
    return emit(result, args.json, print_table)


def print_table(r: dict) -> None:
    print(f"one-step models on the {r['profile']} digits · device {r['device']} · threads {r['threads']} · load avg "
          f"{r['load_average']} · {r['n_samples']} images per row vs {r['n_real']} real test digits · seed {r['seed']}")
    print(format_table([{**row, "steps": row["steps"]} for row in r["rows"]]))
    for k in (1, 2, 4):
        goal = GOALS.get(f"best_ratio_at_{k}")
        note = f" (goal ≤ {goal}: {'met' if r[f'best_ratio_at_{k}'] <= goal else 'NOT met'})" if goal else ""
        print(f"best within {k} call(s): {r[f'best_at_{k}']} · {r[f'best_ratio_at_{k}']:.2f}× DDPM-1000{note}")
    print(f"training: teacher flow {r['flow_train_seconds']:.0f} s · consistency +{r['distill_train_seconds']:.0f} s "
          f"(paths {r['onestep_path_seconds']:.0f} s + training), with the critic +{r['onestep_train_seconds']:.0f} s · MeanFlow from scratch {r['meanflow_train_seconds']:.0f} s · "
          f"diffusion {r['diffusion_train_seconds']:.0f} s · wall {r['wall_seconds']:.0f} s")
    if "step_seconds" in r:
        c = r["step_seconds"]
        print(f"under one load, side by side: a flow step {c['flow']:.3f} s, a distillation step {c['distillation']:.3f} s, "
              f"a critic step {c['critic']:.3f} s, a MeanFlow step {c['meanflow']:.3f} s, a teacher path {c['path']:.4f} s: "
              f"distillation costs {r['distill_cost_ratio_same_load']:.2f}× the teacher's training, with the critic stage "
              f"{r['onestep_cost_ratio_same_load']:.2f}×")


if __name__ == "__main__":
    run_main(main)
