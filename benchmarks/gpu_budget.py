"""The gpu profile's budget per chapter: work, predicted time on a Colab T4 and on an H100, and peak memory.

For every network the ``gpu`` profile trains (each registry record with no shipped weights for it: the ``gpu``
profile loads the ``cpu`` profile's where they ship, ``registry.shipped_profile``, and then only that network's
sampling is counted, with its forward pass), one
training step is executed with the profile's own batch on fake tensors (``FakeTensorMode``: shapes and dtypes,
no arithmetic, so a 2-core CPU measures a batch of 128 in a second) and measured:

- **FLOPs** per step with ``torch.utils.flop_counter.FlopCounterMode`` (forward + backward; matmuls,
  convolutions and attention — the elementwise work is left to the bytes term);
- **kernels** per step and **bytes** every kernel reads and writes (a ``TorchDispatchMode`` summing the
  inputs and outputs of every non-view op — what an eager GPU run launches, with no fusion);
- **activation memory**: the bytes autograd saves for the backward (``saved_tensors_hooks``, counted once per
  tensor; weights and their views included, so an upper bound) — the peak of a training step sits at the
  start of the backward.

A forward pass alone (the same objective under ``no_grad``) gives each network's cost per sampling call.

**Predicted time** (a roofline with a launch floor, per step): ``max(FLOPs / (peak · u), bytes / (bandwidth · u_bw),
kernels · launch)``. Stated assumptions (:data:`GPUS`): a T4 trains in **float16** autocast with loss scaling
(``settings.autocast_dtype``: it lacks bfloat16 in hardware), and the samplers call the network in the same
autocast (``settings.in_half_precision``), so its 65 TFLOPS fp16 tensor cores are the peak (the ``T4_fp32``
column: float32 throughout, 8.1 TFLOPS, as before both); an H100 trains and samples in bfloat16 (990 TFLOPS
dense); bytes moved in autocast are half the float32 measurement. Utilisation u = 30 % of
peak compute and 60 % of bandwidth for these small networks. Host time per kernel (eager PyTorch, the course's
Python around it): 43 µs next to an H100 — calibrated on the one H100 measurement, train_throughput.py's 2384
img/s for the digits-cpu preset at batch 64, 27 ms a step for 627 kernels and 14 GFLOP (launch-bound) — and 50 µs
on Colab's slower host CPU (assumed). Sampling runs in batches of the training batch. **Peak memory** = weights + gradients + AdamW's two moments (4 × fp32) + the EMA
copy + the dataset on the device + the measured activations + 0.5 GiB of CUDA context.

The **sampling work** of a chapter is estimated from its notebook's ``gpu`` picks (pictures × network calls,
:data:`SAMPLING`, each with where it comes from): an estimate, not a measurement; ``benchmarks/gpu_session.sh``
measures every chapter's real time on a GPU to set beside it.

    python benchmarks/gpu_budget.py [--json] [--only digits flow_digits] [--threads 1]
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode

from _cli import benchmark_parser, emit, run_conditions, run_main
from course_lib import training
from course_lib.objectives import DiffusionObjective
from course_lib.optim import optimizer_step
from course_lib.registry import Recipe, load_all_records, shipped_profile
from course_lib.schedules import NoiseSchedule
from course_lib.settings import DRYRUN_ENV, RUNS_ENV, check_int

GiB = 2**30


@dataclass(frozen=True)
class Gpu:
    """A card as the prediction sees it (see the module docstring for the assumptions)."""

    name: str
    half_tflops: float  # dense peak in the half dtype the course's autocast picks there (float16 / bfloat16)
    fp32_tflops: float  # float32 peak
    bandwidth_gbs: float
    memory_gib: float
    launch_us: float  # host time per kernel, eager PyTorch
    half: bool = True  # training (amp recipes) and sampling run in autocast: settings.autocast_dtype
    util: float = 0.30  # fraction of peak compute these small networks reach
    util_bw: float = 0.60  # fraction of peak bandwidth
    half_bytes_factor: float = 0.5  # bytes moved in autocast relative to the float32 measurement


GPUS = {
    "T4": Gpu("T4", half_tflops=65, fp32_tflops=8.1, bandwidth_gbs=320, memory_gib=15.0, launch_us=50.0),
    # the same T4 in float32 throughout (before the loop's float16 path and the samplers' autocast)
    "T4_fp32": Gpu("T4", half_tflops=65, fp32_tflops=8.1, bandwidth_gbs=320, memory_gib=15.0, launch_us=50.0,
                   half=False),
    "H100": Gpu("H100", half_tflops=990, fp32_tflops=67, bandwidth_gbs=3350, memory_gib=80.0, launch_us=43.0),
}
#: network calls of sampling per chapter, estimated from each notebook's gpu picks: (recipe whose network is
#: called, calls = pictures × calls per picture, where the figure comes from)
SAMPLING: dict[str, list[tuple[str, int, str]]] = {
    "04": [("digits", 4 * 256 * 100 + 64 * 100, "4 weight sets × 256 KID pictures × 100 steps + 64 final")],
    "05": [("digits", 8 * 1000 * 3 + 12 * 1000 * 2, "8 pictures × 1000 DDPM steps × 3 runs + 12 gallery seeds × 1000 × 2")],
    "06": [("digits", 1000 * (1000 + 180 + 4 * 30) + 64 * 500, "steps-vs-quality table: 1000 FID pictures × 1300 "
            "calls (DDPM-1000, DDIM 10/20/50/100, 4 solvers at 10+20) + showcases")],
    "07": [("digits_cond", 6 * 1000 * 50 * 2 + 4 * 1000 * 50, "6 guidance scales × 100 per digit × 10 × 50 steps × 2 "
            "(CFG) + classifier guidance")],
    "08": [("prompts_without_dog_green", 3 * 40 * 32 * 30 * 2, "≈3 scales × ≈40 prompts × 32 × 30 steps × 2 (CFG)")],
    "09": [("digits", 2000 * 50, "2000 race pictures × 50 steps (VAE, GAN: one call)")],
    "10": [("digits", 2000 * 50 + 1000 * 50 * 4, "2000 pictures × 50 steps + the curve's 1000 × 50 × ≈4 checkpoints"),
           ("digits_cond", 500 * 20 * 2 * 2, "500 guided + 500 plain × 20 steps × 2 (CFG)")],
    "11": [("latent_crossattn", 2 * 20 * 32 * 50 + 200 * 50 * 2, "≈20 prompts × 32 × 50 steps × 2 (CFG) + 200 edits"),
           ("latent_pooled", 2 * 20 * 32 * 50, "≈20 prompts × 32 × 50 steps × 2 (CFG)")],
    "12": [("flow_digits", 1000 * 150 + 12000 * 20, "FID rows: 1000 pictures × ≈150 calls; reflow pairs 12000 × 20"),
           ("reflow_digits", 1000 * 20, "1000 pictures × (1+2+4+4+…)")],
    "13": [("latent_frozen_clip", 2 * 40 * 32 * 50, "≈40 prompts × 32 × 50 steps × 2 (CFG)"),
           ("unclip_decoder", 2 * 40 * 32 * 50, "≈40 prompts × 32 × 50 steps × 2 (CFG)")],
    "14": [("dit_digits", 1000 * 50 * 3, "FID: 1000 pictures × 50 steps, × 3 DiT sizes"),
           ("unet_digits", 1000 * 50 * 3, "× 3 U-Net sizes"), ("mmdit_scenes", 2 * 40 * 32 * 50, "prompts × 32 × 50 × 2")],
    "15": [("consistency_digits", 1000 * 10, "FID rows, 1000 pictures × ≈10 calls"),
           ("meanflow_digits", 1000 * 10, "likewise"), ("flow_digits", 1000 * 30 + 12000 * 10, "teacher rows + paths")],
    "16": [("masked_captions", 1000 * (1 + 2 + 4 + 8 + 16 + 24 + 48), "1000 captions × the steps curve"),
           ("next_word_captions", 1000 * 24, "1000 captions × 24 tokens")],
}


#: records no chapter trains (a benchmark script does; chapter 14 reads the size sweep's figures from dit_digits's card)
NOT_TRAINED_BY_CHAPTERS = {f"{family}_digits_{size}": "benchmarks/train_dit.py --only sweep"
                           for family in ("dit", "unet") for size in ("small", "large")}


FREE_OPS = ("detach", "lift_fresh", "alias", "device", "_local_scalar_dense")  # no kernel (or a host read)
OPTIMIZER_KERNELS = 30  # foreach AdamW + gradient clipping + foreach EMA: a few dozen kernels over all weights


class Traffic(TorchDispatchMode):
    """Counts the kernels an eager run launches and the bytes they read and write (views and aliases are free)."""

    def __init__(self) -> None:
        super().__init__()
        self.kernels, self.bytes = 0, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        out = func(*args, **(kwargs or {}))
        if not getattr(func, "is_view", False) and func.__name__.split(".")[0] not in FREE_OPS:
            tensors = [t for t in tree_flatten((args, kwargs, out))[0] if isinstance(t, torch.Tensor)]
            self.kernels += 1
            self.bytes += sum(t.numel() * t.element_size() for t in tensors)
        return out


@dataclass
class StepCost:
    flops: float
    bytes: float
    kernels: int


def _objective(stage_objective: Any, config: training.TrainConfig) -> Any:
    if isinstance(stage_objective, NoiseSchedule):  # as training._setup wraps it
        return DiffusionObjective(stage_objective, config.prediction_type, config.min_snr_gamma, config.cond_drop_prob)
    return stage_objective


def _run_step(model: torch.nn.Module, objective: Any, x0: torch.Tensor, cond: Any, config: Any, *, backward: bool,
              fake: bool = True) -> tuple[StepCost, int]:
    """One step (or one forward, ``backward=False``) on fake tensors (or real ones, ``fake=False``): its cost and
    the activation bytes saved. Kernels are counted as a GPU would launch them: the forward's as measured, a
    training step's as 3 × the forward's (the backward launches about two per forward op) + :data:`OPTIMIZER_KERNELS`
    (on a GPU AdamW, clipping and the EMA run ``foreach``; on these CPU tensors they loop over every weight)."""
    from contextlib import nullcontext

    from torch._subclasses.fake_tensor import FakeTensorMode

    opts = training._optimizers(objective, model, config)
    saved: list[int] = []
    seen: set[int] = set()

    def pack(t: torch.Tensor) -> torch.Tensor:
        if id(t) not in seen:
            seen.add(id(t))
            saved.append(t.numel() * t.element_size())
        return t

    gen = torch.Generator().manual_seed(0)
    traffic = Traffic()
    with FakeTensorMode(allow_non_fake_inputs=True) if fake else nullcontext(), FlopCounterMode(display=False) as flops, traffic, \
            torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.set_grad_enabled(backward):
        for name, loss in training._turns(objective, model, x0, cond, gen, config, None):
            if backward:
                optimizer_step(opts[name], loss, config.grad_clip)
    kernels = traffic.kernels
    if backward:  # the forward's kernels, counted again without the backward
        kernels = 3 * _run_step(model, objective, x0, cond, config, backward=False, fake=fake)[0].kernels + OPTIMIZER_KERNELS
    return StepCost(float(flops.get_total_flops()), float(traffic.bytes), kernels), sum(saved)


SMALL_BATCH = 8


def _scaled(model: torch.nn.Module, objective: Any, x0: torch.Tensor, cond: Any, config: Any
            ) -> tuple[StepCost, int, StepCost]:
    """A step and a forward on real tensors at batch :data:`SMALL_BATCH`, FLOPs, bytes and activations scaled
    linearly to the full batch (weights' bytes scale too: an overestimate), kernels as they are."""
    from dataclasses import replace

    b, k = x0.shape[0], min(x0.shape[0], SMALL_BATCH)
    small = replace(config, batch_size=k)
    x, c = x0[:k], (cond[:k] if cond is not None else None)
    step, act = _run_step(model, objective, x, c, small, backward=True, fake=False)
    fwd, _ = _run_step(model, objective, x, c, small, backward=False, fake=False)
    grow = b / k
    return (StepCost(step.flops * grow, step.bytes * grow, step.kernels), int(act * grow),
            StepCost(fwd.flops * grow, fwd.bytes * grow, fwd.kernels))


@contextmanager
def data_only_dry_run() -> Iterator[None]:
    """Some recipes' data are made by other networks (latents by the autoencoder): build those as the gpu dry run
    does (two steps, settings.capped; counts drawn by a network: the smoke profile's), in a throwaway runs
    directory — only the shape of one example matters here (the dataset's bytes in the peak are those of the
    capped data: a few MB at most in the full one)."""
    from course_lib.pretrained import onestep

    saved, paths = {k: os.environ.get(k) for k in (DRYRUN_ENV, RUNS_ENV)}, dict(onestep.PATHS)
    with tempfile.TemporaryDirectory() as runs:
        os.environ.update({DRYRUN_ENV: "1", RUNS_ENV: runs})
        for prof in ("cpu", "gpu"):  # chapter 15's teacher paths: the smoke count (the dry run does not cap it)
            onestep.PATHS[prof] = paths["smoke"]
        try:
            yield
        finally:
            onestep.PATHS.update(paths)
            for k, v in saved.items():
                os.environ.pop(k) if v is None else os.environ.update({k: v})


def measure_recipe(recipe: Recipe, profile: str = "gpu") -> dict[str, Any]:
    """The profile's training of ``recipe``: per stage its steps and batch, one step's cost, a forward's cost,
    and the training's peak memory (bytes)."""
    stage_list = recipe.stages_for(profile)  # read outside the dry run: the profile's real step counts
    with data_only_dry_run():
        data = recipe.data(profile)
    images, conds = (data[0], data[1]) if isinstance(data, (tuple, list)) else (data, None)
    data_bytes = sum(t.numel() * t.element_size() for t in (images, conds) if isinstance(t, torch.Tensor))
    stages = []
    for stage in stage_list:
        config = stage.config
        steps = min(config.steps, recipe.until(profile)) if recipe.until is not None else config.steps
        torch.manual_seed(config.seed)
        model = recipe.build(profile).train()
        objective = _objective(stage.objective, config)
        b = config.batch_size
        idx = torch.arange(b) % images.shape[0]
        x0, cond = images[idx], (conds[idx] if conds is not None else None)
        try:
            step, activations = _run_step(model, objective, x0, cond, config, backward=True)
            forward, _ = _run_step(model, objective, x0, cond, config, backward=False)
            scaled_from = None
        except Exception:  # a data-dependent op (a mask's nonzero, .item()): real tensors, a small batch, scaled
            step, activations, forward, scaled_from = *_scaled(model, objective, x0, cond, config), min(b, SMALL_BATCH)
        params = sum(p.numel() for p in model.parameters())
        peak = 5 * 4 * params + data_bytes + activations + GiB // 2  # weights, grads, m, v, EMA; data; activations; context
        stages.append({"steps": steps, "batch": b, "params": params, "step": step.__dict__, "forward": forward.__dict__,
                       "activation_bytes": activations, "peak_bytes": peak, "amp": bool(config.amp),
                       "scaled_from_batch": scaled_from})
    return {"recipe": recipe.name, "chapter": recipe.chapter.split()[-1].zfill(2) if recipe.chapter else "?",
            "stages": stages}


def step_seconds(cost: dict[str, float], gpu: Gpu, *, amp: bool = True) -> float:
    """Roofline + launch floor of one step or forward (see the module docstring); ``amp``: the recipe trains in
    autocast (sampling always does: ``settings.in_half_precision``)."""
    half = gpu.half and amp
    tflops = gpu.half_tflops if half else gpu.fp32_tflops
    moved = cost["bytes"] * (gpu.half_bytes_factor if half else 1.0)
    return max(cost["flops"] / (tflops * 1e12 * gpu.util), moved / (gpu.bandwidth_gbs * 1e9 * gpu.util_bw),
               cost["kernels"] * gpu.launch_us * 1e-6)  # the host launches while the GPU works: the slower one sets the pace


def chapter_table(measured: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per chapter: training and sampling FLOPs, predicted seconds on each card, peak memory."""
    by_name = {m["recipe"]: m for m in measured}
    chapters: dict[str, dict[str, Any]] = {}
    def row(ch: str) -> dict[str, Any]:
        return chapters.setdefault(ch, {"chapter": ch, "train_flops": 0.0, "sample_flops": 0.0, "peak_gib": 0.0,
                                        "networks": [], **{f"{g}_s": 0.0 for g in GPUS}})
    for m in measured:
        if not m.get("trains", True):
            continue  # loaded (its cpu weights ship): sampling only, below
        r = row(m["chapter"])
        r["networks"].append(m["recipe"])
        for st in m["stages"]:
            r["train_flops"] += st["step"]["flops"] * st["steps"]
            r["peak_gib"] = max(r["peak_gib"], st["peak_bytes"] / GiB)
            for g, gpu in GPUS.items():
                r[f"{g}_s"] += st["steps"] * step_seconds(st["step"], gpu, amp=st["amp"])
    for ch, jobs in SAMPLING.items():
        r = row(ch)
        for name, calls, _why in jobs:
            if name not in by_name:
                continue  # its gpu weights ship, or --only left it out
            st = by_name[name]["stages"][-1]
            batches = math.ceil(calls / st["batch"])
            r["sample_flops"] += st["forward"]["flops"] * batches
            for g, gpu in GPUS.items():
                r[f"{g}_s"] += batches * step_seconds(st["forward"], gpu)
    return [chapters[k] for k in sorted(chapters)]


def add_measured(chapters: list[dict[str, Any]], path: str) -> None:
    """Set each chapter's measured seconds and peak GiB (gpu_session.sh's chapters.tsv) beside its predictions."""
    import csv

    with open(path, newline="") as f:
        rows = {r["chapter"]: r for r in csv.DictReader(f, delimiter="\t")}
    for r in chapters:
        got = rows.get(r["chapter"])
        if got:
            r["measured_s"] = float(got["seconds"])
            r["measured_peak_gib"] = float(got["peak_mib"]) / 1024 if got.get("peak_mib") else None
            r["measured_status"] = got.get("status")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = benchmark_parser(__doc__)
    ap.add_argument("--only", nargs="*", default=(), help="recipe names (default: every one the gpu profile trains)")
    ap.add_argument("--measured", default=None, help="chapters.tsv of benchmarks/gpu_session.sh: the measured seconds "
                    "and peak memory per chapter, set beside the predictions")
    args = ap.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(check_int("--threads", args.threads, min_value=1))
    recipes = load_all_records()
    unknown = [n for n in args.only if n not in recipes]
    if unknown:
        raise ValueError(f"--only: unknown recipe(s) {unknown}; choose from {sorted(recipes)}")
    measured, skipped = [], []
    for name, recipe in sorted(recipes.items()):
        if (args.only and name not in args.only) or recipe.frozen or name in NOT_TRAINED_BY_CHAPTERS:
            continue
        ships = shipped_profile(recipe, "gpu")  # the gpu profile loads these weights: only their sampling costs
        tic = time.perf_counter()
        try:
            measured.append({**measure_recipe(recipe, ships or "gpu"), "trains": ships is None, "profile": ships or "gpu",
                             "seconds": round(time.perf_counter() - tic, 1)})
        except Exception as err:  # a network fake tensors cannot run: say which, measure the others
            skipped.append(f"{name}: {type(err).__name__}: {str(err)[:160]}")
        print(f"{name}: {time.perf_counter() - tic:.1f} s", file=sys.stderr, flush=True)
    chapters = chapter_table(measured)
    if args.measured:
        add_measured(chapters, args.measured)
    result = {"recipes": measured, "chapters": chapters, "skipped": skipped,
              "gpus": {k: v.__dict__ for k, v in GPUS.items()}, **run_conditions(torch.device("cpu"))}
    return emit(result, args.json, print_table)


def print_table(result: dict[str, Any]) -> None:
    print(f"{'recipe':<28}{'ch':>4}{'params':>10}{'batch':>7}{'steps':>8}{'GFLOP/step':>12}{'kernels':>9}"
          f"{'act. GiB':>10}{'peak GiB':>10}{'T4 ms/step':>12}{'H100 ms':>9}")
    for m in result["recipes"]:
        if not m.get("trains", True):
            print(f"{m['recipe']:<28}{m['chapter']:>4}  loads the {m['profile']} profile's shipped weights "
                  f"({m['stages'][-1]['params'] / 1e6:.2f}M; sampling only)")
            continue
        for st in m["stages"]:
            t4, h100 = (1e3 * step_seconds(st["step"], GPUS[g], amp=st["amp"]) for g in ("T4", "H100"))
            print(f"{m['recipe']:<28}{m['chapter']:>4}{st['params'] / 1e6:>9.2f}M{st['batch']:>7}{st['steps']:>8}"
                  f"{st['step']['flops'] / 1e9:>12.1f}{st['step']['kernels']:>9}{st['activation_bytes'] / GiB:>10.2f}"
                  f"{st['peak_bytes'] / GiB:>10.2f}{t4:>12.0f}{h100:>9.1f}")
    print(f"\n{'chapter':<8}{'train PFLOP':>12}{'sample PFLOP':>13}{'T4 min':>8}{'T4 fp32':>8}{'H100 min':>9}"
          f"{'peak GiB':>9}{'measured min':>13}{'measured GiB':>13}")
    for r in result["chapters"]:
        got = (f"{r['measured_s'] / 60:>13.1f}{(r.get('measured_peak_gib') or float('nan')):>13.2f}"
               if "measured_s" in r else "")
        print(f"{r['chapter']:<8}{r['train_flops'] / 1e15:>12.2f}{r['sample_flops'] / 1e15:>13.2f}{r['T4_s'] / 60:>8.1f}"
              f"{r['T4_fp32_s'] / 60:>8.1f}{r['H100_s'] / 60:>9.1f}{r['peak_gib']:>9.2f}{got}")
    for s in result["skipped"]:
        print("not measured:", s)


if __name__ == "__main__":
    run_main(main)
