"""Train a model the chapters share and cache it where they look for it — on one process or many.

    python -m course_lib.train digits --profile cpu
    python -m course_lib.train digits-cond --profile gpu --run-dir /data/runs/digits-gpu-cond
    python -m course_lib.train digits --profile smoke --steps 12          # the first 12 steps only
    python -m course_lib.train vae --profile cpu                           # chapter 09's VAE (also: gan, flow, reflow)
    torchrun --standalone --nproc_per_node=4 -m course_lib.train digits --profile gpu   # 4 GPUs (DDP)
    torchrun --nnodes=2 --nproc_per_node=8 --rdzv-backend=c10d --rdzv-endpoint=HOST:29500 \\
        -m course_lib.train prompt --profile gpu                           # 2 machines × 8 GPUs

``MODEL`` is one of :data:`MODELS` (``python -m course_lib.train --help`` lists them). Each is the
record of :mod:`course_lib.pretrained`, unchanged (obtained through :func:`course_lib.registry.obtain`): the
command trains exactly what a chapter would train, into the run directory the chapter reads
(``settings.runs_dir()``, or ``--run-dir``), so the chapter afterwards loads the verified checkpoint in a
second. (``digits-cond`` and chapter 12's ``flow`` and ``reflow`` ship trained for the ``cpu`` profile: there
the command loads them, and ``--retrain`` or ``--run-dir`` trains them into the run directory instead.) ``--steps N`` stops after the
first N steps of the recipe and leaves a checkpoint there; the next call (or the chapter) resumes
it. Under ``torchrun`` the global batch is split across the processes (DDP, ``gloo`` on CPUs,
``nccl`` on GPUs), only rank 0 writes checkpoints, and a run resumes exactly from a checkpoint
written at any world size (see :mod:`course_lib.distributed`). The GAN and the VAE of chapter 09
train on one process only (:data:`SINGLE_PROCESS`).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from functools import partial
from typing import Any, Callable

import torch

from . import distributed
from .pretrained import (
    digits_model,
    digits_noisy_classifier,
    flow_digits_model,
    gan_model,
    prompt_model,
    reflow_digits_model,
    vae_model,
)
from .settings import PROFILES, check_int
from .training import limits

#: name → a course_lib.pretrained function ``fn(profile, *, run_dir=None, device=None, progress=True,
#: retrain=False)`` that trains (or loads) the model and returns its info dict last. Chapters that add
#: a shared model to course_lib.pretrained add it here too.
MODELS: dict[str, Callable[..., Any]] = {
    "digits": digits_model,  # chapters 04–06, 10
    "digits-cond": partial(digits_model, cond=True),  # chapter 07
    "noisy-classifier": digits_noisy_classifier,  # chapter 07 (classifier guidance)
    "prompt": prompt_model,  # chapter 08
    "vae": vae_model,  # chapter 09 (the race)
    "gan": gan_model,  # chapter 09 (the race)
    "flow": flow_digits_model,  # chapter 12
    "reflow": reflow_digits_model,  # chapter 12 (trains "flow" first if needed)
}

#: models that cannot train data-parallel, with the reason: refused under torchrun with several processes.
#: The GAN's players take turns with two optimizers (course_lib.adversarial.HingeGAN); the VAE's loss calls
#: encode/decode, which the DDP wrapper does not forward.
SINGLE_PROCESS: dict[str, str] = {
    "gan": "the GAN's two players take turns with their own optimizers, which the loop runs on one process",
    "vae": "the VAE's loss calls its encoder and decoder directly, past the DDP wrapper",
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m course_lib.train", description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="models: " + ", ".join(MODELS))
    ap.add_argument("model", choices=list(MODELS), metavar="MODEL", help="which shared model: " + ", ".join(MODELS))
    ap.add_argument("--profile", default="auto", choices=list(PROFILES), help="the recipe's size (default auto)")
    ap.add_argument("--run-dir", default=None, help="where the checkpoint goes (default: where the chapters look)")
    ap.add_argument("--steps", type=int, default=None, help="stop after this many steps of the recipe (resumable)")
    ap.add_argument("--checkpoint-every", type=int, default=None, help="steps between checkpoints (default: the recipe's)")
    ap.add_argument("--retrain", action="store_true", help="start again over an existing checkpoint")
    ap.add_argument("--device", default=None, help="auto | cpu | cuda | mps (under torchrun: cuda:LOCAL_RANK or cpu)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model (GPU: faster after a warm-up)")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    if args.steps is not None:
        check_int("steps", args.steps, min_value=1)
    if args.checkpoint_every is not None:
        check_int("checkpoint_every", args.checkpoint_every, min_value=0)

    if args.model in SINGLE_PROCESS and distributed.launched_by_torchrun() and int(os.environ["WORLD_SIZE"]) > 1:
        ap.error(f"{args.model} cannot train data-parallel ({SINGLE_PROCESS[args.model]}); run it without torchrun")

    where = distributed.init()
    device = args.device
    if where.active and device is None:  # one GPU per process, or all on the CPU
        device = torch.device(f"cuda:{where.local_rank}" if distributed.default_backend() == "nccl" else "cpu")
    tic = time.perf_counter()
    try:
        with limits(until=args.steps, checkpoint_every=args.checkpoint_every, compile=args.compile):
            *_, info = MODELS[args.model](args.profile, run_dir=args.run_dir, device=device,
                                          progress=where.is_main and not args.quiet, retrain=args.retrain)
    finally:
        distributed.shutdown()
    if where.is_main:
        print(f"{args.model} ({info.get('profile', args.profile)} profile): step {info.get('steps')} "
              f"in {info.get('run_dir')} · {where.world_size} process(es) · {time.perf_counter() - tic:.1f} s"
              + (" (shipped with the course: loaded; --retrain trains it here)" if info.get("shipped")
                 else " (already trained: loaded)" if info.get("cached") else ""), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
