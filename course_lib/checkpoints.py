"""Saving and loading runs safely: safetensors weights, a JSON state, atomic writes, sha256 (chapter 04).

A run directory holds exactly one *committed* checkpoint:

    run_dir/checkpoint.json              the state: step, configs, loss history, optimizer
                                         hyper-parameters, the weights file's name and sha256
    run_dir/weights-<step>.safetensors   every tensor: model, EMA model, optimizer moments, RNG states

Writes are atomic: each file goes to a temporary name in the same directory, is flushed to disk,
then ``os.replace``-d into place (a rename is all-or-nothing on POSIX and Windows). The weights
file is written first and the JSON last, so the JSON is the commit point: a crash at any moment —
even ``kill -9`` — leaves the previous checkpoint readable. Loading verifies the sha256 before
reading a byte, and reads tensors with ``safetensors`` (plain data: loading never unpickles code,
unlike ``torch.load`` on an untrusted file).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import is_dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

FORMAT_VERSION = 1
STATE_FILE = "checkpoint.json"


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupted, or was written for a different model or run."""


# ----------------------------------------------------------------------------- files
def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes (read in 1 MiB chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _atomic_replace(path: Path, write: Any) -> None:
    """Call ``write(tmp_path)``, fsync the result, then rename it onto ``path`` in one step."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes files private; checkpoints are ordinary files
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (temporary file + ``os.replace``)."""
    _atomic_replace(Path(path), lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def atomic_save_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor],
                        metadata: dict[str, str] | None = None) -> str:
    """Save ``tensors`` as safetensors atomically; return the file's sha256."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    _atomic_replace(Path(path), lambda tmp: save_file(tensors, tmp, metadata=metadata))
    return sha256_file(path)


def load_tensors(path: str | os.PathLike, *, sha256: str | None = None) -> dict[str, torch.Tensor]:
    """Load a safetensors file (CPU), after checking its sha256 when one is given."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file {str(path)!r} does not exist")
    if sha256 is not None:
        actual = sha256_file(path)
        if actual != sha256:
            raise CheckpointError(
                f"weights file {str(path)!r} is corrupted: its sha256 is {actual[:16]}…, the checkpoint "
                f"recorded {sha256[:16]}…; delete the run directory (or pass resume=False) to start again"
            )
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"weights file {str(path)!r} is not a readable safetensors file ({err})") from err


# ----------------------------------------------------------------------------- model identity
def model_signature(model: nn.Module) -> dict[str, Any]:
    """What identifies a model's shape: its class name and its config (if it has a dataclass ``config``)."""
    cfg = getattr(model, "config", None)
    if is_dataclass(cfg) and hasattr(cfg, "to_dict"):
        config: Any = cfg.to_dict()
    else:  # any other nn.Module: the parameter names and shapes
        config = {k: list(v.shape) for k, v in model.state_dict().items()}
    return {"class": type(model).__name__, "config": config}


def check_same(kind: str, saved: dict[str, Any], current: dict[str, Any], *, ignore: tuple[str, ...] = ()) -> None:
    """Raise CheckpointError listing each key where ``saved`` and ``current`` differ."""
    keys = sorted((set(saved) | set(current)) - set(ignore))
    diffs = [f"{k}: checkpoint {saved.get(k, '<missing>')!r} vs now {current.get(k, '<missing>')!r}"
             for k in keys if saved.get(k) != current.get(k)]
    if diffs:
        raise CheckpointError(
            f"the checkpoint was written for a different {kind}; differences: " + "; ".join(diffs)
            + ". Use another run_dir, or resume=False to overwrite it."
        )


def check_signature(saved: dict[str, Any], model: nn.Module) -> None:
    """Raise CheckpointError if ``saved`` (a :func:`model_signature`) does not describe ``model``."""
    now = model_signature(model)
    if saved.get("class") != now["class"]:
        raise CheckpointError(f"the checkpoint holds a {saved.get('class')!r}, but the model is a {now['class']!r}")
    check_same("model config", saved.get("config", {}), now["config"])


def state_dict_into(model: nn.Module, tensors: dict[str, torch.Tensor], prefix: str) -> None:
    """Copy the tensors named ``prefix + name`` into ``model`` (strict: all present, shapes equal)."""
    sub = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    try:
        model.load_state_dict(sub, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"the checkpoint's {prefix.rstrip('.')!r} weights do not fit the model: {err}") from err


# ----------------------------------------------------------------------------- whole checkpoints
def has_checkpoint(run_dir: str | os.PathLike) -> bool:
    """True when ``run_dir`` holds a committed checkpoint (its JSON state file exists)."""
    return (Path(run_dir) / STATE_FILE).is_file()


def save_checkpoint(run_dir: str | os.PathLike, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> Path:
    """Atomically commit a checkpoint: ``weights-<step>.safetensors`` first, then ``checkpoint.json``.

    ``state`` must be JSON-ready and hold ``step``; the weights' file name and sha256 are added to it.
    Older weights files are removed only after the new JSON is in place. Returns the JSON path.
    """
    run_dir = Path(run_dir)
    step = int(state["step"])
    weights = run_dir / f"weights-{step:08d}.safetensors"
    digest = atomic_save_tensors(weights, tensors, metadata={"format_version": str(FORMAT_VERSION)})
    full = {"format_version": FORMAT_VERSION, **state, "weights": weights.name, "sha256": digest}
    atomic_write_text(run_dir / STATE_FILE, json.dumps(full))
    for old in run_dir.glob("weights-*.safetensors"):
        if old.name != weights.name:
            old.unlink(missing_ok=True)
    for stale in run_dir.glob(".*.tmp"):  # left by a write that was killed half-way
        stale.unlink(missing_ok=True)
    return run_dir / STATE_FILE


def read_state(run_dir: str | os.PathLike) -> dict[str, Any]:
    """Read and sanity-check ``checkpoint.json`` (no tensors)."""
    path = Path(run_dir) / STATE_FILE
    if not path.is_file():
        raise CheckpointError(f"no checkpoint in {str(run_dir)!r} ({STATE_FILE} is missing)")
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{str(path)!r} is corrupted (not valid JSON: {err})") from err
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION or "sha256" not in state:
        raise CheckpointError(f"{str(path)!r} is not a course checkpoint of format version {FORMAT_VERSION}")
    return state


def load_checkpoint(run_dir: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a committed checkpoint: (tensors, state), after verifying the weights' sha256."""
    state = read_state(run_dir)
    tensors = load_tensors(Path(run_dir) / state["weights"], sha256=state["sha256"])
    return tensors, state


# ----------------------------------------------------------------------------- single models
def save_weights(model: nn.Module, path: str | os.PathLike) -> str:
    """Save one model's weights (safetensors, its signature in the metadata) atomically; return the sha256.

    The same weights always give the same bytes, hence the same sha256: the metadata is a single
    key, because safetensors writes a metadata map with several keys in a random order.
    """
    meta = {"signature": json.dumps({**model_signature(model), "format_version": FORMAT_VERSION})}
    return atomic_save_tensors(path, dict(model.state_dict()), metadata=meta)


def load_weights(model: nn.Module, path: str | os.PathLike, *, sha256: str | None = None) -> nn.Module:
    """Load weights saved by :func:`save_weights` into ``model`` after checking sha256 and config."""
    from safetensors import safe_open

    tensors = load_tensors(path, sha256=sha256)
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if "signature" in meta:
        check_signature(json.loads(meta["signature"]), model)
    state_dict_into(model, tensors, "")
    return model
