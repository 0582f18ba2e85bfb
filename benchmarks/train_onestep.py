"""Train chapter 15's ``cpu`` one-step digits models and write them, with their cards, to course_lib/weights.

Rerunnable by anyone, CPU only (the seconds of each are in its card; 1 thread on the shared 2-core machine):

    python benchmarks/train_onestep.py                          # consistency, without boundary, with a critic, meanflow
    python benchmarks/train_onestep.py --only critic            # one of them

Each model trains with the ``cpu`` recipe of ``course_lib.pretrained.onestep`` through the same functions the
chapter calls with ``retrain=True`` (checkpointed under ``--run-root``, so an interrupted run resumes), then is
measured and written by ``course_lib.registry.write_shipped``: the card keeps the recipe (checked on every load),
the training seconds and the FID (1,000 samples against the 1,000 test digits, seed 0, as
``benchmarks/samplers.py``) at 1 and 2 network calls. The consistency models share the teacher's paths
(drawn once, their seconds counted in each card). ``critic`` fine-tunes the shipped (or just trained)
consistency model with a critic (``pretrained.onestep.CONSISTENCY_CRITIC``); its card's ``extra_seconds``
is the distillation's plus its own training.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import torch

from course_lib.data import load_mnist5000
from course_lib.one_step_table import one_step_configs, one_step_vs_quality
from course_lib.pretrained.onestep import (
    CONSISTENCY, CONSISTENCY_CRITIC, CONSISTENCY_FREE, MEANFLOW, consistency_critic_model, consistency_model, meanflow_model,
)
from course_lib.registry import write_shipped
from course_lib.settings import WEIGHTS_DIR, check_choice, check_int

PROFILE = "cpu"
MODELS = ("consistency", "consistency_free", "critic", "meanflow")


def scores(name: str, kind: str, model: torch.nn.Module) -> dict[str, float]:
    rows = one_step_vs_quality({name: model.eval()}, load_mnist5000("test", size=32).images,
                               one_step_configs({name: kind}, calls=(1, 2)), 1000, progress=False)
    return {f"fid {r['label']}": round(r["fid"], 3) for r in rows}


def share_paths(source: Path, target: Path) -> None:
    """Copy the teacher's cached paths from ``source`` to ``target``: drawn once, their seconds kept in their file."""
    target.mkdir(parents=True, exist_ok=True)
    for paths in source.glob("paths-*.safetensors"):
        if not (target / paths.name).exists():
            shutil.copy(paths, target / paths.name)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="all", help=f"one of {MODELS} or all (in that order)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--run-root", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "onestep-train")
    parser.add_argument("--out-dir", type=Path, default=WEIGHTS_DIR)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    only = check_choice("only", args.only, MODELS + ("all",))
    torch.set_num_threads(check_int("threads", args.threads, min_value=1))
    tic, result = time.perf_counter(), {}
    todo = MODELS if only == "all" else (only,)
    cm_dir, free_dir = args.run_root / "consistency_digits-cpu", args.run_root / "consistency_digits_free-cpu"
    if "consistency" in todo:
        model, info = consistency_model(PROFILE, run_dir=cm_dir, progress=not args.json)
        result["consistency"] = {**scores("consistency", "consistency", model), "extra_seconds": round(info["extra_seconds"], 1)}
        write_shipped(CONSISTENCY, model, info, result["consistency"], profile=PROFILE, weights_dir=args.out_dir)
    if "consistency_free" in todo:
        share_paths(cm_dir, free_dir)
        model, info = consistency_model(PROFILE, boundary=False, run_dir=free_dir, progress=not args.json)
        result["consistency_free"] = scores("consistency-no-boundary", "consistency", model)
        write_shipped(CONSISTENCY_FREE, model, info, result["consistency_free"], profile=PROFILE, weights_dir=args.out_dir)
    if "critic" in todo:
        critic_dir = args.run_root / "consistency_critic_digits-cpu"
        share_paths(cm_dir, critic_dir)
        model, info = consistency_critic_model(PROFILE, run_dir=critic_dir, progress=not args.json)
        result["critic"] = {**scores("consistency+critic", "consistency", model), "extra_seconds": round(info["extra_seconds"], 1)}
        write_shipped(CONSISTENCY_CRITIC, model, info, result["critic"], profile=PROFILE, weights_dir=args.out_dir)
    if "meanflow" in todo:
        model, info = meanflow_model(PROFILE, run_dir=args.run_root / "meanflow_digits-cpu", progress=not args.json)
        result["meanflow"] = scores("meanflow", "meanflow", model)
        write_shipped(MEANFLOW, model, info, result["meanflow"], profile=PROFILE, weights_dir=args.out_dir)
    result["wall_seconds"] = round(time.perf_counter() - tic, 1)
    print(json.dumps(result, indent=1) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))
    return result


if __name__ == "__main__":
    main()
