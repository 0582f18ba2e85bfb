"""Train the scene judge (course_lib.models.scene_judge) and write its weights and card.

Rerunnable by anyone, CPU only, a few minutes on one thread:

    python benchmarks/train_scene_judge.py                 # writes course_lib/weights/scene_judge.*
    python benchmarks/train_scene_judge.py --out-dir /tmp/w --json

Data: ``make_scenes(12000, seed=1000, held_out=())`` for training (every combination: the judge
must read the held-out ones too), ``make_scenes(3000, seed=2000, held_out=())`` for the held-out
accuracies in the card. Augmentation as for the attribute classifier (shift ±2 px, blur on a quarter,
pixel noise σ ~ U(0, 0.1)), so that it also reads slightly imperfect samples.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from course_lib.captions import UNSPECIFIED
from course_lib.models.scene_judge import JUDGE_WEIGHTS, SCENE_JUDGE, SceneJudge, scene_accuracy
from course_lib.optim import optimizer_step
from course_lib.registry import write_shipped
from course_lib.scenes import SCENE_COLUMNS, make_scenes
from course_lib.settings import check_int, seed_everything

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_attribute_net import augment  # noqa: E402  (the same augmentation)

TRAIN_SEED, TEST_SEED = 1000, 2000


@torch.no_grad()
def head_accuracies(model: SceneJudge, images: torch.Tensor, rows: torch.Tensor) -> dict[str, float]:
    model.eval()
    logits = [model(chunk) for chunk in images.split(500)]
    out = {}
    for col, name in enumerate(SCENE_COLUMNS):
        pred = torch.cat([lg[name].argmax(1) for lg in logits])
        keep = rows[:, col] != UNSPECIFIED
        out[name] = round(float((pred[keep] == rows[keep, col]).float().mean()), 4)
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-train", type=int, default=12000)
    parser.add_argument("--n-test", type=int, default=3000)
    parser.add_argument("--out-dir", type=Path, default=JUDGE_WEIGHTS.parent)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    epochs = check_int("epochs", args.epochs, min_value=1)
    n_train = check_int("n_train", args.n_train, min_value=100)
    torch.set_num_threads(1)
    start = time.perf_counter()
    generator = seed_everything(args.seed)
    train_set = make_scenes(n_train, seed=TRAIN_SEED, held_out=())
    test_set = make_scenes(args.n_test, seed=TEST_SEED, held_out=())
    model = SceneJudge()
    lr, batch = 3e-3, 128
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * -(-n_train // batch))
    history = []
    for epoch in range(epochs):
        model.train()
        total = 0.0
        for idx in torch.randperm(n_train, generator=generator).split(batch):
            logits = model(augment(train_set.images[idx], generator))
            rows = train_set.attributes[idx]
            loss = sum(F.cross_entropy(logits[c], rows[:, i], ignore_index=UNSPECIFIED) for i, c in enumerate(SCENE_COLUMNS))
            optimizer_step(opt, loss)
            sched.step()
            total += float(loss) * len(idx)
        acc = head_accuracies(model, test_set.images, test_set.attributes)
        history.append({"epoch": epoch + 1, "train_loss": round(total / n_train, 5), **acc})
        print(history[-1], file=sys.stderr)
    wall = time.perf_counter() - start
    model.eval()
    heads = head_accuracies(model, test_set.images, test_set.attributes)
    whole = scene_accuracy(test_set.images, test_set.attributes, model)
    noisy = augment(test_set.images, torch.Generator().manual_seed(TEST_SEED))
    whole_noisy = scene_accuracy(noisy.clamp(-1, 1), test_set.attributes, model)
    info = {
        "training": {"data": f"course_lib.scenes.make_scenes({n_train}, seed={TRAIN_SEED}, held_out=())",
                     "held_out": f"make_scenes({args.n_test}, seed={TEST_SEED}, held_out=())",
                     "augmentation": "shift ±2 px, 3x3 blur p=0.25, Gaussian noise sigma~U(0, 0.1)",
                     "optimizer": "AdamW(1e-4) OneCycleLR(3e-3)", "epochs": epochs, "batch_size": batch,
                     "seed": args.seed, "history": history, "threads": 1},
        "trained_with": f"torch {torch.__version__}", "train_seconds": round(wall, 1),
        "command": "python benchmarks/train_scene_judge.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    scores = {"held_out_head_accuracy": heads, "held_out_scene_accuracy": round(whole, 4),
              "held_out_augmented_scene_accuracy": round(whole_noisy, 4)}
    digest = write_shipped(SCENE_JUDGE, model, info, scores, weights_dir=args.out_dir)
    result = {"benchmark": "train_scene_judge", "wall_seconds": round(wall, 1), "head_accuracy": heads,
              "scene_accuracy": scores["held_out_scene_accuracy"],
              "augmented_scene_accuracy": scores["held_out_augmented_scene_accuracy"], "sha256": digest}
    print(json.dumps(result) if args.json else "\n".join(f"{k:<26} {v}" for k, v in result.items()))
    return result


if __name__ == "__main__":
    main()
