"""Train the cats-with-hats attribute classifier (course_lib.models.attributes) and write its weights and card.

Rerunnable by anyone, CPU only, a few minutes on 2 cores:

    python benchmarks/train_attribute_net.py                 # writes course_lib/weights/attributes.*
    python benchmarks/train_attribute_net.py --out-dir /tmp/w --json

Data: ``make_hats_dataset(20000, seed=1000)`` for training, ``make_hats_dataset(5000, seed=2000)``
(never trained on, never used to pick a checkpoint) for the accuracies printed and recorded in
the card. Augmentation, so that the classifier also reads slightly imperfect diffusion samples:
random shifts of up to ±2 pixels (edge pixels repeated), a 3×3 blur on a quarter of the pictures,
and Gaussian pixel noise with a standard deviation drawn from [0, 0.1] per picture.
Everything is seeded; the same machine and torch version give the same bytes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from course_lib.captions import ATTRIBUTE_NAMES, UNSPECIFIED
from course_lib.hats import make_hats_dataset
from course_lib.models.attributes import (
    ATTRIBUTES, CARD_FILE, WEIGHTS_FILE, AttributeClassifier, attribute_accuracies, prompt_accuracy, read_card,
)
from course_lib.optim import optimizer_step
from course_lib.registry import write_shipped
from course_lib.settings import check_int, seed_everything

TRAIN_SEED, TEST_SEED = 1000, 2000


def augment(images: torch.Tensor, generator: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    """Random shift (edge padding), blur on a quarter of the pictures, then pixel noise; stays in [-1, 1]."""
    n, _, h, w = images.shape
    padded = F.pad(images, (max_shift,) * 4, mode="replicate")  # (N, 3, H + 2s, W + 2s)
    dy = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h))[:, None, :, None]  # (N, 1, H, 1)
    cols = (dx[:, None] + torch.arange(w))[:, None, None, :]  # (N, 1, 1, W)
    batch = torch.arange(n)[:, None, None, None]
    chans = torch.arange(3)[None, :, None, None]
    x = padded[batch, chans, rows, cols]  # (N, 3, H, W)
    blurred = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    blur = torch.rand(n, generator=generator) < 0.25
    x = torch.where(blur[:, None, None, None], blurred, x)
    sigma = torch.rand(n, 1, 1, 1, generator=generator) * 0.1
    return (x + sigma * torch.randn(x.shape, generator=generator)).clamp(-1, 1)


def multi_head_loss(logits: dict[str, torch.Tensor], attrs: torch.Tensor) -> torch.Tensor:
    """Sum of the four cross-entropies; hat_colour is ignored on pictures without a hat (-1)."""
    return sum(F.cross_entropy(logits[name], attrs[:, col], ignore_index=UNSPECIFIED)
               for col, name in enumerate(ATTRIBUTE_NAMES))


@torch.no_grad()
def head_accuracies(model: AttributeClassifier, images: torch.Tensor, attrs: torch.Tensor) -> dict[str, float]:
    """Accuracy of each head on its own (hat_colour: on the pictures with a hat)."""
    model.eval()
    logits = [model(chunk) for chunk in images.split(1000)]
    out = {}
    for col, name in enumerate(ATTRIBUTE_NAMES):
        pred = torch.cat([lg[name].argmax(1) for lg in logits])
        keep = attrs[:, col] != UNSPECIFIED
        out[name] = float((pred[keep] == attrs[keep, col]).float().mean())
    return out


def train(epochs: int, seed: int, n_train: int, n_test: int, batch_size: int = 128, lr: float = 3e-3):
    """AdamW + one-cycle learning rate on freshly drawn pictures; returns the model, test set and history."""
    generator = seed_everything(seed)
    train_set = make_hats_dataset(n_train, seed=TRAIN_SEED)
    test_set = make_hats_dataset(n_test, seed=TEST_SEED)
    model = AttributeClassifier()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps_per_epoch = -(-n_train // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch)
    history = []
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(n_train, generator=generator)
        total = 0.0
        for idx in order.split(batch_size):
            x = augment(train_set.images[idx], generator)
            loss = multi_head_loss(model(x), train_set.attributes[idx])
            optimizer_step(opt, loss)
            sched.step()
            total += float(loss.detach()) * len(idx)
        acc = head_accuracies(model, test_set.images, test_set.attributes)
        history.append({"epoch": epoch + 1, "train_loss": round(total / n_train, 5), **{k: round(v, 4) for k, v in acc.items()}})
        print(f"epoch {epoch + 1:3d}  train loss {total / n_train:.4f}  held-out "
              + "  ".join(f"{k} {v:.4f}" for k, v in acc.items()), file=sys.stderr)
    return model.eval(), test_set, history


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-train", type=int, default=20000)
    parser.add_argument("--n-test", type=int, default=5000)
    parser.add_argument("--out-dir", type=Path, default=WEIGHTS_FILE.parent)
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    args = parser.parse_args(argv)
    epochs = check_int("epochs", args.epochs, min_value=1)
    n_train = check_int("n_train", args.n_train, min_value=100)
    n_test = check_int("n_test", args.n_test, min_value=100)
    torch.set_num_threads(min(torch.get_num_threads(), 4))

    start = time.perf_counter()
    model, test_set, history = train(epochs, args.seed, n_train, n_test)
    wall = time.perf_counter() - start
    heads = head_accuracies(model, test_set.images, test_set.attributes)
    recognised = attribute_accuracies(test_set.images, test_set.attributes, model)
    full = prompt_accuracy(test_set.images, test_set.attributes, model)
    noisy = augment(test_set.images, torch.Generator().manual_seed(TEST_SEED))  # shifted, some blurred, noisy
    heads_noisy = head_accuracies(model, noisy, test_set.attributes)

    info = {
        "training": {
            "data": f"course_lib.hats.make_hats_dataset({n_train}, seed={TRAIN_SEED})",
            "held_out": f"course_lib.hats.make_hats_dataset({n_test}, seed={TEST_SEED}) (only for the figures here)",
            "augmentation": "shift up to ±2 px (replicate padding), 3x3 blur with p=0.25, Gaussian noise sigma~U(0, 0.1)",
            "loss": "sum of cross-entropies of the four heads (hat_colour ignored without a hat)",
            "optimizer": "AdamW(weight_decay=1e-4)", "lr_schedule": "OneCycleLR(max_lr=3e-3)", "epochs": epochs,
            "batch_size": 128, "seed": args.seed, "selection": "none: the model after the last epoch", "history": history,
        },
        "trained_with": f"torch {torch.__version__}", "train_seconds": round(wall, 1),
        "command": "python benchmarks/train_attribute_net.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "use": "course_lib.models.attributes.prompt_accuracy / attribute_accuracies: does a sample show what was asked?",
    }
    scores = {"held_out_head_accuracy": {k: round(v, 4) for k, v in heads.items()},
              "held_out_prompt_accuracy": round(full, 4),
              "held_out_augmented_head_accuracy": {k: round(v, 4) for k, v in heads_noisy.items()}}
    write_shipped(ATTRIBUTES, model, info, scores, weights_dir=args.out_dir)
    weights = args.out_dir / WEIGHTS_FILE.name
    card = read_card(args.out_dir / CARD_FILE.name)

    result = {"benchmark": "train_attribute_net", "profile": "cpu", "device": "cpu", "wall_seconds": round(wall, 1),
              "head_accuracy": card["scores"]["held_out_head_accuracy"],
              "augmented_head_accuracy": card["scores"]["held_out_augmented_head_accuracy"],
              "recognised": {k: round(v, 4) for k, v in recognised.items()},
              "prompt_accuracy": card["scores"]["held_out_prompt_accuracy"],
              "size_bytes": card["info"]["size_bytes"], "sha256": card["sha256"], "weights": str(weights)}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{'held-out (seed ' + str(TEST_SEED) + ')':<22} {'head accuracy':>14} {'recognised':>11} {'augmented':>10}")
        for name in ATTRIBUTE_NAMES:
            print(f"{name:<22} {heads[name]:>14.4f} {recognised[name]:>11.4f} {heads_noisy[name]:>10.4f}")
        print(f"{'all four (prompt acc.)':<22} {full:>14.4f}")
        for key in ("size_bytes", "sha256", "wall_seconds", "weights"):
            print(f"{key:<22} {result[key]}")
    return result


if __name__ == "__main__":
    main()
