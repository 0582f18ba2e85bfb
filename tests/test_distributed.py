"""Data-parallel training on the CPU with gloo (2 processes under torchrun), through the command line.

- 2 processes and 1 process with the same global batch write the same weights (float tolerance);
- a 2-process run killed with SIGKILL mid-run resumes to the weights of an uninterrupted run, with
  2 processes and (from the same checkpoint) with 1: a checkpoint resumes at any world size.
Smoke sizes and a dozen steps keep it to about a minute.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from course_lib.checkpoints import load_checkpoint
from course_lib.distributed import DistInfo, local_slice, rank_seed
from course_lib.sweep import REPO_ROOT

STEPS = 12


def env():
    e = {k: v for k, v in os.environ.items() if not k.startswith(("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_"))}
    e.update(OMP_NUM_THREADS="1", PYTHONPATH=str(REPO_ROOT) + os.pathsep + e.get("PYTHONPATH", ""))
    return e


def train_cmd(run_dir: Path, procs: int, *extra: str) -> list[str]:
    cli = ["-m", "course_lib.train", "digits", "--profile", "smoke", "--run-dir", str(run_dir), "--quiet", *extra]
    if procs == 1:
        return [sys.executable, *cli]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}", *cli]


def run_train(run_dir: Path, procs: int, *extra: str) -> None:
    out = subprocess.run(train_cmd(run_dir, procs, *extra), capture_output=True, text=True, env=env(), timeout=300)
    assert out.returncode == 0, f"{out.stdout[-2000:]}\n{out.stderr[-4000:]}"


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (torchrun's workers may sit in sessions of their own)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def sigkill_tree(pid: int) -> list[int]:
    """SIGKILL a process and everything it started, at once (a machine losing power); return the pids."""
    pids = [pid, *descendants(pid)]
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return pids


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    tensors, state = load_checkpoint(run_dir)
    assert state["step"] == STEPS
    return {k: v for k, v in tensors.items() if k.startswith(("model.", "ema."))}


def assert_close(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-3, atol=1e-4, msg=lambda m: f"{k}: {m}")


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("ddp") / "one"
    run_train(run_dir, 1, "--steps", str(STEPS))
    return run_dir


@pytest.mark.timeout(600)
def test_two_processes_equal_one(one_process, tmp_path):
    run_train(tmp_path / "two", 2, "--steps", str(STEPS))
    assert_close(weights(one_process), weights(tmp_path / "two"))
    a, b = (json.loads((d / "checkpoint.json").read_text())["losses"] for d in (one_process, tmp_path / "two"))
    assert a == pytest.approx(b, rel=1e-4)  # the mean loss of the same global batches


@pytest.mark.timeout(600)
def test_sigkilled_two_process_run_resumes_exactly(one_process, tmp_path):
    run_dir = tmp_path / "killed"
    state = run_dir / "checkpoint.json"
    # the whole recipe (20 steps), a checkpoint every 2; SIGKILL to every process once one is written
    proc = subprocess.Popen(train_cmd(run_dir, 2, "--checkpoint-every", "2"), env=env(), start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 240
    while not state.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    pids = sigkill_tree(proc.pid)
    proc.wait(timeout=60)
    time.sleep(0.5)
    assert len(pids) >= 3 and not any(alive(p) for p in pids), "torchrun and both workers must be gone"
    assert proc.returncode != 0, "the run finished before it could be killed"
    killed_at = json.loads(state.read_text())["step"]
    assert 2 <= killed_at < STEPS, f"killed at step {killed_at}"
    shutil.copytree(run_dir, tmp_path / "killed-copy")

    run_train(run_dir, 2, "--steps", str(STEPS))  # resume with 2 processes …
    assert_close(weights(one_process), weights(run_dir))
    run_train(tmp_path / "killed-copy", 1, "--steps", str(STEPS))  # … and with 1, from the same checkpoint
    assert_close(weights(one_process), weights(tmp_path / "killed-copy"))


def test_local_slices_cover_the_global_batch():
    parts = [local_slice(12, DistInfo(r, 3)) for r in range(3)]
    assert [(p.start, p.stop) for p in parts] == [(0, 4), (4, 8), (8, 12)]
    with pytest.raises(ValueError, match="divisible by the world size"):
        local_slice(10, DistInfo(0, 4))
    assert rank_seed(0, 0) != rank_seed(0, 1) != rank_seed(1, 1)
    assert rank_seed(5, 1, step=3) == rank_seed(5, 1, step=3) < 2**63
