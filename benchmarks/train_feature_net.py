"""Train the digit classifier whose features define FID/KID on digits (course_lib.models.classifier).

Rerunnable by anyone, CPU only, about a minute or two on 2 cores:

    python benchmarks/train_feature_net.py                 # writes course_lib/weights/digit_classifier.*
    python benchmarks/train_feature_net.py --out-dir /tmp/w --json

Data: ``load_mnist5000(split="train", size=32, seed=0)`` (4,000 digits) for training, the
held-out ``split="test"`` (1,000 digits) only for the accuracy printed and recorded in the card.
Augmentation: random shifts of up to ±2 pixels. Everything is seeded; the same machine and torch
version give the same bytes, other machines the same accuracy to within a few tenths of a percent
(so a retrained file gets a new sha256, which the card records and the loader then checks).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from course_lib.data import load_mnist5000
from course_lib.models.classifier import CARD_FILE, DIGIT_CLASSIFIER, WEIGHTS_FILE, DigitClassifier, read_card
from course_lib.optim import optimizer_step
from course_lib.registry import write_shipped
from course_lib.settings import check_int, seed_everything


def random_shift(images: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Shift each image by its own random (dy, dx) in [-max_shift, max_shift], filling with -1."""
    n, _, h, w = images.shape
    padded = F.pad(images, (max_shift,) * 4, value=-1.0)  # (N, 1, H + 2s, W + 2s)
    dy = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator)
    rows = dy[:, None] + torch.arange(h)  # (N, H)
    cols = dx[:, None] + torch.arange(w)  # (N, W)
    batch = torch.arange(n)[:, None, None]
    return padded[batch, 0, rows[:, :, None], cols[:, None, :]][:, None]  # (N, 1, H, W)


@torch.no_grad()
def accuracy(model: DigitClassifier, images: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()
    pred = torch.cat([model(chunk).argmax(1) for chunk in images.split(500)])
    return float((pred == labels).float().mean())


def train(epochs: int, seed: int, batch_size: int = 64, lr: float = 2e-3, max_shift: int = 2) -> tuple[DigitClassifier, dict]:
    """Adam + cosine learning-rate decay on the training split; returns the model and its history."""
    generator = seed_everything(seed)
    train_set = load_mnist5000("train", size=32, seed=0)
    test_set = load_mnist5000("test", size=32, seed=0)
    model = DigitClassifier()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps_per_epoch = -(-len(train_set.labels) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch)
    history = []
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(train_set.labels), generator=generator)
        total = 0.0
        for idx in order.split(batch_size):
            x = random_shift(train_set.images[idx], max_shift, generator)
            loss = F.cross_entropy(model(x), train_set.labels[idx])
            optimizer_step(opt, loss)
            sched.step()
            total += float(loss.detach()) * len(idx)
        test_acc = accuracy(model, test_set.images, test_set.labels)
        history.append({"epoch": epoch + 1, "train_loss": total / len(order), "test_accuracy": test_acc})
        print(f"epoch {epoch + 1:3d}  train loss {total / len(order):.4f}  test accuracy {test_acc:.4f}", file=sys.stderr)
    with torch.no_grad():  # fix the feature scale: RMS 1 over the training digits (see DigitClassifier)
        hidden = torch.cat([model.hidden(chunk) for chunk in train_set.images.split(500)])  # (N, 128)
        model.feature_scale.fill_(float(hidden.double().square().mean().sqrt()))
    info = {
        "train_accuracy": accuracy(model, train_set.images, train_set.labels),
        "test_accuracy": history[-1]["test_accuracy"],
        "history": history,
        "recipe": {
            "data": "course_lib.data.load_mnist5000(split='train', size=32, seed=0): 4,000 digits",
            "test_data": "course_lib.data.load_mnist5000(split='test', size=32, seed=0): 1,000 held-out digits",
            "augmentation": f"random shifts of up to ±{max_shift} pixels (background -1)",
            "optimizer": "AdamW(weight_decay=1e-4)",
            "lr_schedule": f"OneCycleLR(max_lr={lr})",
            "epochs": epochs,
            "batch_size": batch_size,
            "seed": seed,
            "selection": "none: the model after the last epoch (the test split never picks a checkpoint)",
        },
    }
    return model.eval(), info


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", type=Path, default=WEIGHTS_FILE.parent)
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    args = parser.parse_args(argv)
    epochs = check_int("epochs", args.epochs, min_value=1)
    torch.set_num_threads(min(torch.get_num_threads(), 4))

    start = time.perf_counter()
    model, info = train(epochs, args.seed)
    wall = time.perf_counter() - start

    shipped_info = {
        "feature_scale": round(float(model.feature_scale), 6), "training": info["recipe"],
        "trained_with": f"torch {torch.__version__}", "train_seconds": round(wall, 1),
        "command": " ".join(["python benchmarks/train_feature_net.py", *(argv if argv is not None else sys.argv[1:])]),
        "use": "penultimate-layer features / feature_scale (RMS 1 on the training split) for course_lib.metrics.fid/kid; "
               "logits for class_accuracy",
    }
    scores = {"train_accuracy": round(info["train_accuracy"], 4), "test_accuracy": round(info["test_accuracy"], 4)}
    write_shipped(DIGIT_CLASSIFIER, model, shipped_info, scores, weights_dir=args.out_dir)
    weights = args.out_dir / WEIGHTS_FILE.name
    card = read_card(args.out_dir / CARD_FILE.name)

    result = {"benchmark": "train_feature_net", "profile": "cpu", "device": "cpu", "wall_seconds": round(wall, 1),
              **card["scores"], "size_bytes": card["info"]["size_bytes"], "sha256": card["sha256"], "weights": str(weights)}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{'quantity':<16} value")
        for key in ("test_accuracy", "train_accuracy", "size_bytes", "sha256", "wall_seconds", "weights"):
            print(f"{key:<16} {result[key]}")
    return result


if __name__ == "__main__":
    main()
