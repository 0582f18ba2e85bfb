"""Training and sampling speed of the course U-Net against diffusers' UNet2DModel at equal size.

Both networks get the same 32×32 single-channel batch (the chapter-04 digits). The course U-Net is
the profile's digits preset (``UNetConfig.preset("digits-<profile>")``); diffusers' UNet2DModel is
given its standard layout — block widths (c, 2c, 2c), one ResNet per block, attention in the
lowest block, the first block at full 32×32 resolution, GroupNorm with 4 groups — with the width c chosen so that its parameter count is as close as
possible to the course model's. The difference in speed therefore comes from *where* each network
spends its parameters (see course_lib/models/unet.py): the course preset folds 2×2 pixel patches
into channels (``patch_size=2``), so its widest blocks run at 8×8 and 4×4, where a parameter is cheap.

Measurements are interleaved (course, diffusers, course, …) and medians are reported, so a noisy,
shared machine affects both alike. Train = forward + backward + AdamW step; sample = one
denoiser evaluation per image (a 50-step sampler makes 50 of them per picture).

    python benchmarks/train_throughput.py [--profile cpu] [--device auto] [--batch-size 64]
                                          [--rounds 5] [--compile] [--threads N] [--json]

Measured (2026-11, digits-cpu preset 0.83 M vs UNet2DModel c=28 0.85 M, batch 64):
- this 2-core CPU, --threads 1, shared with other jobs: train 175 vs 31 img/s (5.6×), one sampling
  evaluation 511 vs 94 img/s (5.5×);
- one H100, bf16 + channels_last, no compile: train 2384 vs 1740 img/s (1.3×), sample 10403 vs
  6964 img/s (1.7×) — small models are kernel-launch bound there, so the FLOP savings matter less;
  digits-gpu preset (7.6 M vs c=84 7.6 M, batch 256): train 1.2×, sample 1.3×.

On CUDA both models run with bf16 autocast and channels_last; ``--compile`` wraps both in torch.compile.

The last row times the course's real training loop, ``course_lib.training.train`` (random draws,
Min-SNR loss, clipping, AdamW, EMA; losses read from the device every 25 steps, so no host sync per
step), as the difference of two runs of different length so that start-up and compilation cancel.
``--device cuda`` gives the GPU row (bf16 where the GPU has it, channels_last, ``--compile``).
The GPU figures above predate that row; it has not been measured on a GPU yet.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from typing import Callable

import torch
from torch import nn

from _cli import apply_common, benchmark_parser, emit, run_conditions
from course_lib.models import UNet, count_parameters, digits_config
from course_lib.optim import optimizer_step


def diffusers_unet(width: int, image_size: int = 32, channels: int = 1) -> nn.Module:
    """diffusers' UNet2DModel in its usual small layout: widths (c, 2c, 2c), one ResNet per block, attention lowest."""
    from diffusers import UNet2DModel  # benchmarks only: course_lib never imports diffusers

    return UNet2DModel(
        sample_size=image_size, in_channels=channels, out_channels=channels,
        block_out_channels=(width, 2 * width, 2 * width), layers_per_block=1, norm_num_groups=4,
        down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
    )


def matched_diffusers(params: int) -> tuple[nn.Module, int]:
    """The diffusers model (width a multiple of 4) whose parameter count is closest to ``params``."""
    best: tuple[int, int] | None = None
    for width in range(8, 257, 4):
        n = count_parameters(diffusers_unet(width))
        if best is None or abs(n - params) < abs(best[1] - params):
            best = (width, n)
        if n > params:
            break
    assert best is not None
    return diffusers_unet(best[0]), best[0]


class _Plain(nn.Module):
    """Calls diffusers' model as ``model(x_t, t)`` and returns a tensor, like the course U-Net."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.inner(x, t).sample


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_steps(model: nn.Module, x: torch.Tensor, t: torch.Tensor, device: torch.device
               ) -> tuple[Callable[[], None], Callable[[], None]]:
    """(one training step, one inference pass) closures on fixed inputs."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    amp = device.type == "cuda"

    def train_step() -> None:
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
            loss = (model(x, t).float() - x.float()).pow(2).mean()
        optimizer_step(opt, loss)

    def sample_step() -> None:
        with torch.inference_mode(), torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
            model(x, t)

    return train_step, sample_step


def timed(fn: Callable[[], None], iters: int, device: torch.device) -> float:
    """Seconds per call of ``fn`` over ``iters`` calls."""
    _sync(device)
    tic = time.perf_counter()
    for _ in range(iters):
        fn()
    _sync(device)
    return (time.perf_counter() - tic) / iters


def loop_img_per_s(cfg, device: torch.device, batch: int, steps: int, compile: bool) -> float:
    """Images per second of ``training.train`` itself, steady state: (long run − short run) / extra steps."""
    from course_lib.schedules import make_schedule
    from course_lib.training import TrainConfig, train

    data = torch.randn(max(4 * batch, 256), cfg.in_channels, cfg.image_size, cfg.image_size,
                       generator=torch.Generator().manual_seed(0)).clamp(-1, 1)
    seconds = []
    for n in (steps, 2 * steps):
        torch.manual_seed(0)
        tc = TrainConfig(steps=n, batch_size=batch, lr=1e-3, warmup=1, checkpoint_every=0, min_snr_gamma=5.0)
        seconds.append(train(UNet(cfg), make_schedule("cosine"), data, tc, device=device, progress=False,
                             compile=compile).seconds)
    return batch * steps / max(seconds[1] - seconds[0], 1e-9)


def main(argv: list[str] | None = None) -> dict:
    ap = benchmark_parser(__doc__)
    ap.add_argument("--batch-size", type=int, default=None, help="default: 16 (smoke), 64 (cpu), 256 (gpu)")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved timing rounds (median reported)")
    ap.add_argument("--iters", type=int, default=None, help="steps per round")
    ap.add_argument("--compile", action="store_true", help="torch.compile both models (and the training loop's)")
    ap.add_argument("--loop-steps", type=int, default=None, help="steps of the train() loop row (0: skip it)")
    args = ap.parse_args(argv)
    profile, device = apply_common(args)
    batch = args.batch_size or {"smoke": 16, "cpu": 64, "gpu": 256}[profile]
    rounds = args.rounds or {"smoke": 2, "cpu": 5, "gpu": 5}[profile]
    iters = args.iters or {"smoke": 1, "cpu": 3, "gpu": 20}[profile]
    loop_steps = {"smoke": 3, "cpu": 10, "gpu": 200}[profile] if args.loop_steps is None else args.loop_steps
    wall = time.perf_counter()
    torch.manual_seed(0)

    cfg = digits_config(profile)
    course = UNet(cfg)
    course_params = count_parameters(course)
    diff_raw, width = matched_diffusers(course_params)
    diff_params = count_parameters(diff_raw)
    models = {"course": course, "diffusers": _Plain(diff_raw)}

    x = torch.randn(batch, cfg.in_channels, cfg.image_size, cfg.image_size, device=device)
    t = torch.randint(0, 1000, (batch,), device=device)
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    steps = {}
    for name, m in models.items():
        m = m.to(device)
        if device.type == "cuda":
            m = m.to(memory_format=torch.channels_last)
        if args.compile:
            m = torch.compile(m)
        steps[name] = make_steps(m, x, t, device)
        for fn in steps[name]:  # warm-up (and compilation)
            fn()
            fn()

    per_round: dict[str, dict[str, list[float]]] = {n: {"train": [], "sample": []} for n in models}
    for _ in range(rounds):
        for kind, k in (("train", 0), ("sample", 1)):
            for name in models:
                per_round[name][kind].append(batch / timed(steps[name][k], iters, device))

    def med(name: str, kind: str) -> float:
        return statistics.median(per_round[name][kind])

    def ratio(kind: str) -> float:  # median of per-round ratios: robust when the machine's load drifts
        return statistics.median(a / b for a, b in zip(per_round["course"][kind], per_round["diffusers"][kind]))

    result = {
        "benchmark": "train_throughput",
        "profile": profile,
        **run_conditions(device),
        "batch_size": batch,
        "rounds": rounds,
        "compile": bool(args.compile),
        "amp_bf16_channels_last": device.type == "cuda",
        "course_config": cfg.to_dict(),
        "diffusers_width": width,
        "course_params": course_params,
        "diffusers_params": diff_params,
        "course_train_img_per_s": round(med("course", "train"), 2),
        "diffusers_train_img_per_s": round(med("diffusers", "train"), 2),
        "train_speedup": round(ratio("train"), 3),
        "course_sample_img_per_s": round(med("course", "sample"), 2),
        "diffusers_sample_img_per_s": round(med("diffusers", "sample"), 2),
        "sample_speedup": round(ratio("sample"), 3),
        "loop_steps": loop_steps,
        "course_loop_img_per_s": round(loop_img_per_s(cfg, device, batch, loop_steps, args.compile), 2) if loop_steps else None,
        "wall_seconds": round(time.perf_counter() - wall, 2),
    }
    return emit(result, args.json, print_table)


def print_table(r: dict) -> None:
    print(f"device {r['device']} · profile {r['profile']} · batch {r['batch_size']} · torch {r['torch']} · "
          f"threads {r['threads']} · compile {r['compile']} · load avg {r['load_average']}")
    rows = [
        ("model", "params", "train img/s", "sample img/s (1 eval)"),
        ("course UNet (digits-" + r["profile"] + ")", f"{r['course_params'] / 1e6:.2f} M",
         f"{r['course_train_img_per_s']:.1f}", f"{r['course_sample_img_per_s']:.1f}"),
        (f"diffusers UNet2DModel (c={r['diffusers_width']})", f"{r['diffusers_params'] / 1e6:.2f} M",
         f"{r['diffusers_train_img_per_s']:.1f}", f"{r['diffusers_sample_img_per_s']:.1f}"),
        ("course / diffusers", "", f"{r['train_speedup']:.2f}×", f"{r['sample_speedup']:.2f}×"),
    ]
    if r.get("course_loop_img_per_s") is not None:
        rows.append(("course train() loop, all of it", f"{r['course_params'] / 1e6:.2f} M",
                     f"{r['course_loop_img_per_s']:.1f}", ""))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))))
    print(f"({r['wall_seconds']:.0f} s)")
    busy = r["load_average"] is not None and r["load_average"] > (os.cpu_count() or 1)
    if r["device"] == "cpu" and r["threads"] > 1 and busy:
        print(f"note: the machine is busy (load average {r['load_average']} > {os.cpu_count()} cores); with several "
              "threads each parallel op waits for descheduled threads, so absolute numbers are low and noisy. "
              "--threads 1 gives steadier figures on a shared machine.")


if __name__ == "__main__":
    main(sys.argv[1:])
