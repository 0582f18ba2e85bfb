"""Clean backgrounds of the class-conditional digits model: the margin of generated digits, × real, per seed and pooled.

Issue 11's measure (chapter 10): the RMS distance from black of the margin, the pixels that are black
in every training digit (``metrics.margin_mask``), as a multiple of real digits' value. Real is every
one of the 5,000 real digits measured on the margin of 4,000 others (``metrics.held_out_background_noise``):
the 1,000 test digits alone leave it to three digits (they give 0.6× of it; ``vs test split`` is the
pooled ratio against them, the measure before). The
sampling is the course's default, ``sample(model, schedule, shape, cond=labels, guidance_scale=s,
num_steps=20)``, with ``--per-class`` digits of each class per seed and the same seeds (so the same
starting noise) at every guidance scale of ``--scales``. Besides each seed's value it prints:

- ``pooled``: over all seeds' digits together (the RMS of every digit's own value), with a 95 %
  bootstrap interval over generated and real digits (``metrics.background_ratio_interval``);
- ``median digit``: the typical digit's own margin, × real;
- ``worst 1 % share``: the share of the pooled squared margin held by the worst 1 % of digits —
  near 1 when a few strokes that reach the edge, not a haze over every digit, make the number;
- ``accuracy``: the share the shipped classifier reads as the digit asked for.

    python benchmarks/backgrounds.py [--profile cpu] [--scales 1,3] [--seeds 6] [--per-class 50]
                                     [--threads N] [--json]
"""

from __future__ import annotations

import torch

from _cli import apply_common, benchmark_parser, emit, parse_scales, run_conditions, run_main
from course_lib.data import load_mnist5000
from course_lib.metrics import (background_noise, background_noise_per_image, background_ratio_interval, class_accuracy,
                                held_out_background_noise, margin_mask)
from course_lib.pretrained import digits_model
from course_lib.samplers import sample
from course_lib.settings import check_int


def scale_row(model, schedule, scale: float, seeds: int, per_class: int, mask: torch.Tensor, real_per: torch.Tensor,
              test_split: float) -> dict:
    """One guidance scale: margin × real for each seed, pooled (with its interval and against the test split
    alone), the median digit, the worst 1 %'s share, accuracy."""
    real = float(real_per.square().mean().sqrt())
    labels = torch.arange(10).repeat_interleave(per_class)  # (10·per_class,)
    per_seed, digits, correct = [], [], 0.0
    for seed in range(seeds):
        x = sample(model, schedule, (len(labels), 1, 32, 32), cond=labels, guidance_scale=scale, num_steps=20,
                   generator=torch.Generator().manual_seed(seed), progress=False)
        per_seed.append(round(background_noise(x, mask) / real, 2))
        digits.append(background_noise_per_image(x, mask))
        correct += class_accuracy(x.clamp(-1, 1), labels) / seeds
    per = torch.cat(digits)  # (seeds·10·per_class,)
    squares = per.square().sort(descending=True).values
    worst = max(1, len(per) // 100)
    pooled = float(per.square().mean().sqrt())
    low, high = background_ratio_interval(per, real_per)
    return {"scale": scale, "per_seed": per_seed, "pooled": round(pooled / real, 2),
            "pooled_interval": [round(low, 2), round(high, 2)], "pooled_vs_test_split": round(pooled / test_split, 2),
            "median_digit": round(float(per.median()) / real, 2),
            "worst_1pct_share": round(float(squares[:worst].sum() / squares.sum().clamp(min=1e-12)), 3),
            "accuracy": round(correct, 4)}


def print_table(result: dict) -> None:
    print(f"margin × real (5,000 real digits, each on the margin of 4,000 others: {result['real_margin_rms']:.5f}; "
          f"the 1,000 test digits alone: {result['test_split_margin_rms']:.5f}); "
          f"{result['seeds']} seeds × {result['per_class'] * 10} digits per scale, 20 steps")
    print(f"{'s':>4}  {'per seed':<40} {'pooled':>7} {'95 % interval':>14} {'vs test':>8} {'median':>7} "
          f"{'worst 1%':>9} {'accuracy':>9}")
    for row in result["rows"]:
        seeds = " ".join(f"{v:.2f}" for v in row["per_seed"])
        low, high = row["pooled_interval"]
        print(f"{row['scale']:>4g}  {seeds:<40} {row['pooled']:>7.2f} {f'{low:.2f}–{high:.2f}':>14} "
              f"{row['pooled_vs_test_split']:>8.2f} {row['median_digit']:>7.2f} {row['worst_1pct_share']:>9.1%} "
              f"{row['accuracy']:>9.1%}")
    print({k: result[k] for k in ("profile", "device", "threads", "torch", "load_average")})


def main(argv: list[str] | None = None) -> dict:
    ap = benchmark_parser(__doc__)
    ap.add_argument("--scales", default="1,3", help="guidance scales, comma-separated (default 1,3)")
    ap.add_argument("--seeds", type=int, default=6, help="seeds 0 … N−1 per scale (default 6)")
    ap.add_argument("--per-class", type=int, default=50, help="digits of each class per seed (default 50)")
    args = ap.parse_args(argv)
    scales = parse_scales(args.scales)
    seeds = check_int("--seeds", args.seeds, min_value=1, max_value=100)
    per_class = check_int("--per-class", args.per_class, min_value=1, max_value=1000)
    profile, device = apply_common(args, cpu_for_smoke=True)
    model, schedule, _ = digits_model(profile, cond=True, device=device, progress=not args.json)
    train, test = load_mnist5000("train").images, load_mnist5000("test").images
    mask = margin_mask(train)  # (32, 32) bool
    real_per = held_out_background_noise(torch.cat([train, test]))  # (5000,)
    test_split = background_noise(test, mask)
    rows = [scale_row(model.eval(), schedule, s, seeds, per_class, mask, real_per, test_split) for s in scales]
    result = {"profile": profile, "seeds": seeds, "per_class": per_class,
              "real_margin_rms": round(float(real_per.square().mean().sqrt()), 5),
              "test_split_margin_rms": round(test_split, 5), "rows": rows}
    return emit({**result, **run_conditions(device)}, args.json, print_table)


if __name__ == "__main__":
    run_main(main)
