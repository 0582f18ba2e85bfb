"""Saving and loading weights and runs safely: safetensors, atomic writes, sha256, exact resume (chapter 04).

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

This module is the one home of: the sha256-verified tensor reader (:func:`load_tensors`, used by
run checkpoints, :func:`load_weights` and the registry's loader of shipped networks,
:func:`course_lib.registry.load_shipped`), the model-card reader (:func:`read_card`), the identity of a run (:func:`fingerprint`,
:func:`schedule_id`, :func:`check_identity`) and the resume bookkeeping of
:func:`course_lib.training.train` (:func:`save_run`, :func:`resume_run`: weights, EMA, optimizer
state and RNG states, so that a resumed run equals an uninterrupted one bit for bit on the CPU).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import is_dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

FORMAT_VERSION = 1
STATE_FILE = "checkpoint.json"


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupted, or was written for a different model or run."""


class WeightsNotFound(CheckpointError, FileNotFoundError):
    """A weights file does not exist (both a CheckpointError and a FileNotFoundError)."""


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


def atomic_copy(src: str | os.PathLike, dst: str | os.PathLike, *, sha256: str) -> None:
    """Copy the file ``src`` to ``dst`` atomically, after checking that its bytes have sha256 ``sha256``."""
    actual = sha256_file(src)
    if actual != sha256:
        raise CheckpointError(f"{str(src)!r} is corrupted or was changed: its sha256 is {actual}, expected {sha256}")
    data = Path(src).read_bytes()
    _atomic_replace(Path(dst), lambda tmp: Path(tmp).write_bytes(data))


def atomic_save_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor],
                        metadata: dict[str, str] | None = None) -> str:
    """Save ``tensors`` as safetensors atomically; return the file's sha256."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    _atomic_replace(Path(path), lambda tmp: save_file(tensors, tmp, metadata=metadata))
    return sha256_file(path)


def load_tensors(path: str | os.PathLike, *, sha256: str | None = None,
                 hint: str = "delete the run directory (or pass resume=False) to start again") -> dict[str, torch.Tensor]:
    """The ONE verified loader: a safetensors file's tensors (CPU), after checking its sha256 when one is given.

    A missing file raises :class:`WeightsNotFound` (``path=…: no such weights file``); a sha256 that
    differs raises CheckpointError naming the file, both hashes and ``hint`` (what to do about it).
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsNotFound(f"path={str(path)!r}: no such weights file (it does not exist); {hint}")
    if sha256 is not None:
        actual = sha256_file(path)
        if actual != sha256:
            raise CheckpointError(
                f"weights file {str(path)!r} is corrupted or was changed: its sha256 is {actual}, expected "
                f"{sha256}; {hint}"
            )
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"weights file {str(path)!r} is not a readable safetensors file ({err})") from err


def read_card(card: str | os.PathLike) -> dict[str, Any]:
    """The ONE model-card reader: a JSON card (recipe, scores, sha256) next to shipped or cached weights."""
    path = Path(card)
    if not path.is_file():
        raise WeightsNotFound(f"path={str(path)!r}: no such model card")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"model card {str(path)!r} is not valid JSON ({err})") from err


# ----------------------------------------------------------------------------- identity of a run
def fingerprint(t: torch.Tensor) -> dict[str, Any]:
    """Shape, dtype and sha256 of a tensor's bytes — to check that a resumed run sees the same data."""
    arr = t.detach().cpu().contiguous()
    digest = hashlib.sha256(arr.view(torch.uint8).numpy().tobytes() if arr.numel() else b"").hexdigest()
    return {"shape": list(arr.shape), "dtype": str(arr.dtype), "sha256": digest}


def schedule_id(schedule: Any) -> dict[str, Any]:
    """Name, length and a hash of the betas of a NoiseSchedule: enough to tell two schedules apart."""
    return {"name": schedule.name, "num_timesteps": schedule.num_timesteps, "betas": fingerprint(schedule.betas)["sha256"]}


def model_signature(model: nn.Module) -> dict[str, Any]:
    """What identifies a model's shape: its class name and its config (if it has a dataclass ``config``)."""
    cfg = getattr(model, "config", None)
    if is_dataclass(cfg) and hasattr(cfg, "to_dict"):
        config: Any = cfg.to_dict()
    else:  # any other nn.Module: the parameter names and shapes
        config = {k: list(v.shape) for k, v in model.state_dict().items()}
    return {"class": type(model).__name__, "config": config}


def differences(saved: dict[str, Any], current: dict[str, Any], *, ignore: tuple[str, ...] = ()) -> list[str]:
    """``"key: checkpoint A vs now B"`` for each key where ``saved`` and ``current`` differ."""
    keys = sorted((set(saved) | set(current)) - set(ignore))
    return [f"{k}: checkpoint {saved.get(k, '<missing>')!r} vs now {current.get(k, '<missing>')!r}"
            for k in keys if saved.get(k) != current.get(k)]


def check_same(kind: str, saved: dict[str, Any], current: dict[str, Any], *, ignore: tuple[str, ...] = ()) -> None:
    """Raise CheckpointError listing each key where ``saved`` and ``current`` differ."""
    diffs = differences(saved, current, ignore=ignore)
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


# ----------------------------------------------------------------------------- resume bookkeeping of train()
def check_identity(state: dict[str, Any], identity: dict[str, Any], model: nn.Module) -> None:
    """Raise CheckpointError unless a checkpoint's ``state`` was written by the run ``identity`` describes.

    Checked in order: the model's signature, the training config (``checkpoint_every`` may differ),
    the noise schedule (diffusion) or the objective's identity (any other loss), then the data.
    """
    missing = [k for k in ("model", "train_config", "data", "conditions") if k not in state]
    if missing:
        raise CheckpointError(f"the checkpoint was written by an older version of the course (it has no {missing}); "
                              "use another run_dir, or resume=False (retrain=True) to train afresh")
    check_signature(state["model"], model)
    kinds = [("training config", state["train_config"], identity["train_config"], ("checkpoint_every",))]
    kinds += [(kind, state.get(key) or {}, identity.get(key) or {}, ()) for key, kind in
              (("schedule", "noise schedule"), ("objective", "training objective")) if key in state or key in identity]
    found = [(kind, d) for kind, saved, now, ignore in kinds if (d := differences(saved, now, ignore=ignore))]
    if found:  # every difference of the recipe at once: the training config and the objective's own settings
        raise CheckpointError(
            f"the checkpoint was written for a different {' and '.join(k for k, _ in found)}; differences: "
            + "; ".join("; ".join(d) for _, d in found) + ". Use another run_dir, or resume=False to overwrite it.")
    check_same("data set", {"data": state["data"], "conditions": state["conditions"]},
               {"data": identity["data"], "conditions": identity["conditions"]})


def optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    """An optimizer's moments as flat tensors (``optim.<param>.<name>``) and its param groups (JSON-able).

    The resume bookkeeping of every training loop (:func:`save_run`; the GAN's two optimizers, chapter 09)."""
    sd = opt.state_dict()
    tensors = {f"optim.{i}.{k}": v for i, st in sd["state"].items() for k, v in st.items()}
    return tensors, sd["param_groups"]


def restore_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], groups: list[dict[str, Any]]) -> None:
    """Load what :func:`optimizer_tensors` wrote back into ``opt`` (Adam's betas back to a tuple)."""
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, v in tensors.items():
        if name.startswith("optim."):
            _, i, k = name.split(".", 2)
            state.setdefault(int(i), {})[k] = v
    groups = [{**g, "betas": tuple(g["betas"])} if "betas" in g else g for g in groups]
    opt.load_state_dict({"state": state, "param_groups": groups})


def rng_tensors(gen: torch.Generator, device: torch.device) -> dict[str, torch.Tensor]:
    """The run's RNG states as tensors: its data generator, torch's global one and, on CUDA, the device's."""
    out = {"rng.data": gen.get_state(), "rng.torch": torch.get_rng_state()}
    if device.type == "cuda":
        out["rng.cuda"] = torch.cuda.get_rng_state(device)
    return out


def restore_rng(gen: torch.Generator, tensors: dict[str, torch.Tensor], device: torch.device) -> None:
    """Set the RNG states that :func:`rng_tensors` saved, so a resumed run draws what an uninterrupted one would."""
    gen.set_state(tensors["rng.data"])
    torch.set_rng_state(tensors["rng.torch"])
    if device.type == "cuda" and "rng.cuda" in tensors:
        torch.cuda.set_rng_state(tensors["rng.cuda"], device)


Optimizers = "torch.optim.Optimizer | dict[str, torch.optim.Optimizer]"


def _optimizers_out(opts: Any) -> tuple[dict[str, torch.Tensor], Any]:
    """One optimizer: ``optim.*`` tensors and its groups; several (a two-player game, chapter 09): ``<player>.optim.*``
    tensors and ``{player: groups}``."""
    if isinstance(opts, torch.optim.Optimizer):
        return optimizer_tensors(opts)
    tensors: dict[str, torch.Tensor] = {}
    groups: dict[str, Any] = {}
    for name, opt in opts.items():
        t, groups[name] = optimizer_tensors(opt)
        tensors.update({f"{name}.{k}": v for k, v in t.items()})
    return tensors, groups


def _optimizers_in(opts: Any, tensors: dict[str, torch.Tensor], groups: Any) -> None:
    """Restore what :func:`_optimizers_out` wrote (CheckpointError when the run had other optimizers)."""
    if isinstance(opts, torch.optim.Optimizer):
        if not isinstance(groups, list):
            raise CheckpointError(f"the checkpoint holds the optimizers {sorted(groups)}, but this run has one")
        return restore_optimizer(opts, tensors, groups)
    if not isinstance(groups, dict) or sorted(groups) != sorted(opts):
        raise CheckpointError(f"the checkpoint's optimizers do not match this run's {sorted(opts)}")
    for name, opt in opts.items():
        mine = {k[len(name) + 1:]: v for k, v in tensors.items() if k.startswith(f"{name}.optim.")}
        restore_optimizer(opt, mine, groups[name])


def save_run(run_dir: str | os.PathLike, model: nn.Module, ema_model: nn.Module, opt: Optimizers,
             gen: torch.Generator, device: torch.device, state: dict[str, Any]) -> Path:
    """Commit everything a run needs to resume exactly: weights, EMA, optimizer moments, RNG states and ``state``.

    ``opt``: the run's optimizer, or ``{player: optimizer}`` when players take turns (chapter 09's GAN)."""
    opt_tensors, groups = _optimizers_out(opt)
    tensors = {**{f"model.{k}": v for k, v in model.state_dict().items()},
               **{f"ema.{k}": v for k, v in ema_model.state_dict().items()},
               **opt_tensors, **rng_tensors(gen, device)}
    return save_checkpoint(run_dir, tensors, {**state, "optimizer_param_groups": groups})


def resume_run(run_dir: str | os.PathLike, identity: dict[str, Any], model: nn.Module, ema_model: nn.Module,
               opt: Optimizers, gen: torch.Generator, device: torch.device) -> dict[str, Any]:
    """Verify the checkpoint in ``run_dir`` against ``identity``, load it into the run's pieces, return its state."""
    tensors, state = load_checkpoint(run_dir)
    check_identity(state, identity, model)
    state_dict_into(model, tensors, "model.")
    state_dict_into(ema_model, tensors, "ema.")
    _optimizers_in(opt, tensors, state["optimizer_param_groups"])
    restore_rng(gen, tensors, device)
    return state


def cached_tensors(path: str | os.PathLike, compute: Callable[[], dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Tensors kept next to a run (e.g. chapter 04's training snapshots): read ``path``, else ``compute()`` and save them atomically."""
    path = Path(path)
    if path.is_file():
        return load_tensors(path)
    tensors = compute()
    atomic_save_tensors(path, tensors)
    return tensors


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

    tensors = load_tensors(path, sha256=sha256, hint="save the weights again")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if "signature" in meta:
        check_signature(json.loads(meta["signature"]), model)
    state_dict_into(model, tensors, "")
    return model
