"""Data-parallel training on PyTorch's own engine (torch.distributed + DistributedDataParallel).

``torchrun`` starts one process per GPU (or several CPU processes) and sets ``RANK``,
``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``/``MASTER_PORT``; :func:`init` joins the process
group from those (``nccl`` on GPUs, ``gloo`` on the CPU) and a plain ``python`` run is simply
world size 1. :func:`course_lib.training.train` then

- draws the *global* batch from one random stream seeded by the run's seed, the same on every
  rank, and each rank trains on its own slice (:func:`local_slice`): so N processes see exactly the
  examples, timesteps and noise that one process with the same global batch sees, and the stream's
  state in a checkpoint resumes the run exactly at any world size;
- seeds what is private to a rank (dropout, an objective's own draws) with :func:`rank_seed`:
  a separate stream per rank, derived from the seed;
- averages gradients with DDP (the mean of equal-sized slices' mean losses is the global mean),
  so the weights of an N-process run equal a 1-process run's to float rounding;
- lets only rank 0 write checkpoints (atomically, course_lib.checkpoints), the others waiting.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .settings import check_int


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size`` (``local_rank`` on its machine)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    """True when the environment of ``torchrun`` (WORLD_SIZE and RANK) is present."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def default_backend() -> str:
    """``nccl`` when CUDA GPUs are visible, else ``gloo`` (the CPU backend)."""
    return "nccl" if torch.cuda.is_available() and dist.is_nccl_available() else "gloo"


def init(backend: str | None = None) -> DistInfo:
    """Join the process group that torchrun describes (once); world size 1 without torchrun.

    On GPUs each process uses ``cuda:LOCAL_RANK``.
    """
    if dist.is_available() and dist.is_initialized():
        return info()
    if not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) <= 1:
        return DistInfo()
    backend = backend or default_backend()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=backend)
    return info()


def info() -> DistInfo:
    """This process's rank and world size (0 of 1 when no process group is running)."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistInfo()
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())))


def shutdown() -> None:
    """Leave the process group (if any)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if info().active:
        dist.barrier()


def local_slice(global_batch: int, where: DistInfo) -> slice:
    """The part of a global batch this rank trains on: equal, contiguous slices in rank order."""
    check_int("batch_size", global_batch, min_value=1)
    if global_batch % where.world_size:
        raise ValueError(f"batch_size={global_batch} (the global batch) must be divisible by the world size "
                         f"{where.world_size}, so that every rank trains on the same number of examples")
    per_rank = global_batch // where.world_size
    return slice(where.rank * per_rank, (where.rank + 1) * per_rank)


def rank_seed(seed: int, rank: int, step: int = 0) -> int:
    """A seed for rank ``rank``'s private stream at ``step``, derived from the run's seed (63 bits)."""
    digest = hashlib.sha256(f"course_lib/rank-stream/{seed}/{rank}/{step}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def all_mean(values: torch.Tensor) -> torch.Tensor:
    """The element-wise mean of ``values`` over all ranks (``values`` itself at world size 1)."""
    where = info()
    if not where.active:
        return values
    out = values.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / where.world_size


def broadcast_object(obj, src: int = 0):
    """``obj`` as rank ``src`` has it, on every rank."""
    if not info().active:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]
