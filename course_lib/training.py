"""The one training loop every chapter uses (chapter 04): ``train_step``, then ``train``, with EMA and AMP.

One step (Ho et al. 2020, Algorithm 1, generalised to three targets):

    x₀ ~ data,  t ~ Uniform{0, …, T−1},  ε ~ N(0, I),  x_t = √ᾱ_t x₀ + √(1−ᾱ_t) ε
    loss = w(t) · ‖ model(x_t, t, c) − target ‖²,   target = ε, x₀ or v  (course_lib.forward.target)

- ``min_snr_gamma`` sets w(t) by Min-SNR-γ weighting (Hang et al. 2023, "Efficient Diffusion
  Training via Min-SNR Weighting Strategy", eq. 8 and §3.4): min(SNR, γ)/SNR for ε, min(SNR, γ)
  for x₀ and min(SNR, γ)/(SNR + 1) for v. It stops the easy low-noise steps from dominating.
- AdamW (Loshchilov & Hutter 2019) with linear warm-up then cosine decay of the learning rate,
  gradient-norm clipping.
- EMA of the weights (the model you sample from) with warm-up: effective decay
  min(decay, (1 + n)/(10 + n)) after n updates. A plain 0.999 would keep 0.999^300 ≈ 74 % of the
  *random initial* weights after 300 steps; the warm-up follows the model closely at first.
- ``cond_drop_prob`` replaces a label by −1 ("no condition") with that probability, so the same
  network learns ε(x_t, ∅) too: classifier-free guidance (Ho & Salimans 2022, chapter 07).
- autocast on CUDA GPUs: bf16 where the GPU has it (Ampere and newer), float16 with loss scaling on older ones
  (Colab's T4); float32 on the CPU (bitwise reproducible).
- Periodic atomic checkpoints (:func:`course_lib.checkpoints.save_run`) hold the weights, EMA,
  optimizer state, loss history, the RNG states and (float16 runs) the loss scalers, so a run killed at any moment resumes
  *exactly*: the final weights equal those of an uninterrupted run, bit for bit on the CPU.
- Data-parallel under ``torchrun`` (course_lib.distributed): every rank draws the *global* batch
  from the run's one stream and keeps its slice, DDP averages the gradients, rank 0 alone writes
  checkpoints. N processes give the weights of one process to float rounding (for the diffusion
  and noisy-classifier objectives, which draw for the global batch), and a checkpoint written at
  any world size resumes exactly at any other.
- No host synchronisation per step on a GPU: the losses stay on the device and are read every
  ``log_every`` steps (and before every checkpoint, so a NaN is caught before it is saved); the
  draws reach the GPU through pinned memory. On CUDA the model runs channels_last, in autocast
  (:func:`autocast_dtype`), and ``compile=True`` wraps it in ``torch.compile``.

The loss is an *objective* (:mod:`course_lib.objectives`): a NoiseSchedule means the diffusion
loss above (:class:`~course_lib.objectives.DiffusionObjective`); any object with
``loss(model, x0, cond, generator)`` and ``identity()`` trains through the same loop — the
noise-aware classifier of chapter 07 (:class:`~course_lib.objectives.NoisyClassifierObjective`) is
one. Callbacks receive a :class:`StepInfo` after every step; :mod:`course_lib.callbacks` holds the
chapters' (StopAfter, Recorder, Snapshots, KeepCheckpoint).
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import os
import time
from copy import deepcopy
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, NamedTuple, Sequence

import torch
from torch import nn

from . import distributed
from .checkpoints import fingerprint, has_checkpoint, model_signature, read_state, resume_run, save_run, schedule_id
from .objectives import DiffusionObjective, NoisyClassifierObjective, Objective, to_device
from .schedules import NoiseSchedule
from .optim import (
    LATER_FIELDS, LR_SCHEDULES, LRSchedule, TrainConfig, config_identity, ema_decay_at, ema_update, lr_at,
    noisy_classifier_config, optimizer_step,
)
from .settings import autocast_dtype, capped, check_bool, check_int, resolve_device

class TrainResult(NamedTuple):
    """What :func:`train` returns: the trained model, its EMA copy (sample from this one), the
    per-step loss history, the number of steps done and the total training seconds (all sessions)."""

    model: nn.Module
    ema_model: nn.Module
    losses: list[float]
    steps: int
    seconds: float


class StepInfo(NamedTuple):
    """Handed to ``callback`` after every step."""

    step: int  # steps done so far (1 … config.steps)
    loss: float
    lr: float
    model: nn.Module
    ema_model: nn.Module


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or infinite; the last good checkpoint is left untouched."""


class StopTraining(Exception):
    """Raised by a callback (e.g. :class:`course_lib.callbacks.StopAfter`) to end :func:`train` early; the run is checkpointed and returned."""


# ----------------------------------------------------------------------------- small pure pieces
def _split_data(data: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    if isinstance(data, torch.Tensor):
        return data, None
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(d, torch.Tensor) for d in data):
        images, labels = data
        if labels.shape[0] != images.shape[0]:
            raise ValueError(f"data: {images.shape[0]} images but {labels.shape[0]} labels")
        return images, labels
    raise ValueError("data must be a tensor (N, …) or a pair (images (N, …), conditions (N, …)) of tensors")



# ----------------------------------------------------------------------------- one step
def _turns(objective: Any, net: nn.Module, x0: torch.Tensor, cond: torch.Tensor | None, generator: torch.Generator,
           config: TrainConfig, part: slice | None) -> Iterator[tuple[str, torch.Tensor]]:
    """The losses of one step, each with the optimizer that minimises it: one turn (``"model"``) for an objective
    with ``loss``; the players' turns, in order, for one with ``turns`` (chapter 09's GAN)."""
    if hasattr(objective, "turns"):
        yield from objective.turns(net, x0, cond, generator)
    elif part is None:
        yield "model", objective.loss(net, x0, cond, generator)
    else:
        yield "model", objective.loss(net, x0, cond, generator, batch_size=config.batch_size, part=part)


def train_step(model: nn.Module, ema_model: nn.Module, opt: torch.optim.Optimizer | dict[str, torch.optim.Optimizer],
               objective: Any, x0: torch.Tensor, cond: torch.Tensor | None, generator: torch.Generator, *, step: int,
               config: TrainConfig, use_amp: bool = False) -> tuple[Any, float]:
    """One optimizer step on the batch ``x0`` (+ ``cond``), the step :func:`train` repeats (chapter 04 takes one by
    hand): the loss (each player's, for an objective with turns), :func:`optimizer_step`, then the EMA.

    ``opt``: ``model``'s optimizer (or ``{player: optimizer}``); ``objective``: a
    :class:`~course_lib.objectives.DiffusionObjective` or any objective; ``step`` is 0-based and sets the
    learning rate (:func:`lr_at`) and the EMA's warm-up. Returns ``(loss, lr)``; a NaN or infinite loss raises
    :class:`TrainingDiverged` before the weights are touched.
    """
    opts = dict(opt) if isinstance(opt, dict) else {"model": opt}
    peaks = ({"model": [config.lr] * len(opts["model"].param_groups)} if not isinstance(opt, dict)  # config.lr, as train's
             else {name: [g["lr"] for g in o.param_groups] for name, o in opts.items()})  # the players' own rates
    run = _Run(model, ema_model, model, objective, opts, peaks, config, generator, x0.device, False, use_amp)
    return _step(run, x0, cond, generator, step=step)


def _step(run: "_Run", x0: torch.Tensor, cond: torch.Tensor | None, generator: torch.Generator, *, step: int,
          read_loss: bool = True, part: slice | None = None) -> tuple[Any, float]:
    """One step on the batch ``x0`` (+ ``cond``): each turn's loss, then its :func:`optimizer_step`; then the EMA.

    ``step`` is 0-based; it sets the learning rates (:func:`lr_at`, each optimizer group at its own peak) and
    the EMA's warm-up (:func:`ema_decay_at`). The objective draws its own randomness from ``generator``.
    ``part``: this rank's slice of the global batch. Returns ``(loss, lr)``: the loss a device tensor (one
    value per turn when there are several) unless ``read_loss``, which reads it and raises
    :class:`TrainingDiverged` on a NaN before the weights are touched (one turn).
    """
    config = run.config
    lr = lr_at(step, config)
    for name, opt in run.opts.items():
        for group, peak in zip(opt.param_groups, run.peaks[name]):
            group["lr"] = lr_at(step, config, peak)
    values, turns = [], _turns(run.objective, run.net, x0, cond, generator, config, part)
    while True:
        with torch.autocast(device_type=x0.device.type, dtype=run.amp_dtype, enabled=run.use_amp):  # the forward only
            turn = next(turns, None)
        if turn is None:
            break
        name, loss = turn
        if read_loss and not math.isfinite(float(loss.detach())):
            raise TrainingDiverged(f"the {name} loss became {float(loss.detach())} at step {step + 1}")
        values.append(loss.detach())
        optimizer_step(run.opts[name], loss, config.grad_clip, run.scalers.get(name))
    ema_update(run.ema_model, run.model, ema_decay_at(step, config.ema_decay))
    value: Any = values[0] if len(values) == 1 else torch.stack(values)
    return (value.tolist() if value.dim() else float(value)) if read_loss else value, lr


Callback = Callable[[StepInfo], None]


def _check_objective(objective: Any, config: TrainConfig, model: nn.Module, conds: torch.Tensor | None) -> None:
    """The diffusion objective checks conditions against the model; others need the diffusion-only fields at default."""
    if not isinstance(objective, NoiseSchedule):
        trains = callable(getattr(objective, "loss", None)) or callable(getattr(objective, "turns", None))
        if not (trains and callable(getattr(objective, "identity", None))):
            raise ValueError("objective must be a NoiseSchedule (course_lib.schedules.make_schedule) or an object with "
                             "loss(model, x0, cond, generator) (or turns(...) and optimizers(...)) and identity(), "
                             f"got {type(objective).__name__}")
        if (config.prediction_type, config.min_snr_gamma, config.cond_drop_prob) != ("epsilon", None, 0.0):
            raise ValueError("prediction_type, min_snr_gamma and cond_drop_prob shape the diffusion loss only; "
                             f"leave them at their defaults with a {type(objective).__name__}")
        return
    model_cfg = getattr(model, "config", None)
    conditional = bool(getattr(model_cfg, "conditional", False))
    if conds is not None and model_cfg is not None and not conditional:
        raise ValueError("data holds conditions (labels or vectors), but the model is unconditional; pass the "
                         "images alone, or build the model with num_classes / cond_dim")
    if conds is None and conditional:
        raise ValueError("the model is conditional (num_classes / cond_dim set) but data has no conditions; "
                         "pass data=(images, labels)")
    if config.cond_drop_prob > 0 and conds is None:
        raise ValueError("cond_drop_prob > 0 needs conditions in data: data=(images, labels)")


# ----------------------------------------------------------------------------- run-wide limits
@dataclass(frozen=True)
class Limits:
    """What ``python -m course_lib.train`` changes about every :func:`train` call inside :func:`limits`."""

    until: int | None = None  # stop after this many steps of the recipe (a checkpoint is left there)
    checkpoint_every: int | None = None  # overrides config.checkpoint_every (not part of a run's identity)
    compile: bool = False  # torch.compile the model


_LIMITS: contextvars.ContextVar[Limits] = contextvars.ContextVar("course_lib_training_limits", default=Limits())


@contextlib.contextmanager
def limits(*, until: int | None = None, checkpoint_every: int | None = None, compile: bool = False) -> Iterator[Limits]:
    """Within the block, every :func:`train` stops after ``until`` steps of its recipe, checkpoints every
    ``checkpoint_every`` steps and (``compile=True``) compiles its model. The recipes themselves, and so
    the runs' identities, stay the same: a chapter later resumes or loads the run. Nested blocks keep the
    smaller ``until``."""
    if until is not None:
        check_int("until", until, min_value=1)
    if checkpoint_every is not None:
        check_int("checkpoint_every", checkpoint_every, min_value=0)
    outer = _LIMITS.get()
    until = outer.until if until is None else until if outer.until is None else min(until, outer.until)
    every = outer.checkpoint_every if checkpoint_every is None else checkpoint_every
    token = _LIMITS.set(Limits(until, every, bool(compile) or outer.compile))
    try:
        yield _LIMITS.get()
    finally:
        _LIMITS.reset(token)


# ----------------------------------------------------------------------------- setting a run up
def run_identity(model: nn.Module, objective: Any, images: torch.Tensor, conds: torch.Tensor | None,
                 config: TrainConfig) -> dict[str, Any]:
    """Everything a run depends on, checked on resume: the model's signature, the recipe, the schedule or the
    objective's identity, and the data's fingerprints."""
    return {"model": model_signature(model), "train_config": config_identity(config),
            **({"schedule": schedule_id(objective)} if isinstance(objective, NoiseSchedule) else {"objective": objective.identity()}),
            "data": fingerprint(images), "conditions": fingerprint(conds) if conds is not None else None}


def _optimizers(objective: Any, model: nn.Module, config: TrainConfig) -> dict[str, torch.optim.Optimizer]:
    """``{"model": AdamW}`` (config's lr and weight decay), or the players' optimizers of an objective with turns."""
    if hasattr(objective, "optimizers"):
        return dict(objective.optimizers(model, config))
    return {"model": torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)}


@dataclass
class _Run:
    """The pieces of one training run that every step touches."""

    model: nn.Module
    ema_model: nn.Module
    net: nn.Module  # what the steps call for the loss: the model, wrapped for DDP and/or compiled
    objective: Any
    opts: dict[str, torch.optim.Optimizer]
    peaks: dict[str, list[float]]  # each optimizer group's peak learning rate
    config: TrainConfig
    gen: torch.Generator
    dev: torch.device
    channels_last: bool
    use_amp: bool  # autocast of the forward passes
    amp_dtype: torch.dtype = torch.bfloat16  # … in this dtype (autocast_dtype)
    scalers: dict[str, torch.amp.GradScaler] = field(default_factory=dict)  # float16: each optimizer's loss scaler

    def saved_opts(self) -> Any:
        """What a checkpoint stores: the one optimizer (the format of every run so far), else the players'."""
        return self.opts["model"] if list(self.opts) == ["model"] else self.opts


def _setup(model: nn.Module, objective: Any, images: torch.Tensor, config: TrainConfig, dev: torch.device,
           where: Any, compile: bool, channels_last: bool | None) -> _Run:
    """Seed, move the model, copy the EMA, build the optimizers and wrap the network for DDP / compile."""
    if isinstance(objective, NoiseSchedule):
        objective = DiffusionObjective(objective.to(dev), config.prediction_type, config.min_snr_gamma, config.cond_drop_prob)
    elif where.active and hasattr(objective, "turns"):
        raise ValueError(f"{type(objective).__name__} takes turns with several optimizers; it trains on one process only")
    torch.manual_seed(config.seed)  # dropout draws
    gen = torch.Generator().manual_seed(config.seed)  # every draw of the loop: indices, then the objective's
    cl = (dev.type == "cuda") if channels_last is None else check_bool("channels_last", channels_last)
    cl = cl and images.dim() == 4
    model = model.to(dev).train()
    if cl:
        model = model.to(memory_format=torch.channels_last)
    ema_model = deepcopy(model).eval().requires_grad_(False)
    opts = _optimizers(objective, model, config)
    net: nn.Module = model
    if where.active:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    if compile:
        net = torch.compile(net)
    peaks = {name: [g["lr"] for g in opt.param_groups] for name, opt in opts.items()}
    dtype = autocast_dtype(config.amp, dev)  # a dry run: bf16 on the CPU too
    scalers = {name: torch.amp.GradScaler(dev.type) for name in opts} if dtype == torch.float16 else {}
    return _Run(model, ema_model, net, objective, opts, peaks, config, gen, dev, cl, dtype is not None,
                dtype or torch.bfloat16, scalers)


def _resumed(run: _Run, run_dir: Any, resume: bool, identity: dict[str, Any]) -> tuple[int, float, list]:
    """``(step, seconds, losses)`` of the verified checkpoint in ``run_dir`` loaded into ``run``, or a fresh start."""
    if run_dir is None or not resume or not has_checkpoint(run_dir):
        return 0, 0.0, []
    state = resume_run(run_dir, identity, run.model, run.ema_model, run.saved_opts(), run.gen, run.dev)
    for name, held in state.get("loss_scalers", {}).items():  # float16 runs: each scaler's factor and growth count
        if name in run.scalers:
            run.scalers[name].load_state_dict(held)
    return int(state["step"]), float(state["seconds"]), list(state["losses"])


def _check_losses(values: list, first: int, run_dir: Any, config: TrainConfig) -> None:
    """Raise :class:`TrainingDiverged` at the first NaN/inf among the steps ``first``, ``first + 1``, …"""
    for i, value in enumerate(values):
        if not all(math.isfinite(v) for v in (value if isinstance(value, list) else [value])):
            where_ckpt = (f"the last good checkpoint (step {read_state(run_dir)['step']}) in {str(run_dir)!r} is intact"
                          if run_dir is not None and has_checkpoint(run_dir) else "no checkpoint was written")
            raise TrainingDiverged(f"the loss became {value} at step {first + i}; training stopped and {where_ckpt}. "
                                   f"Try a lower lr (now {config.lr:g}), grad_clip, or check the data for NaNs.")


def _postfix(losses: list, lr: float) -> dict[str, str]:
    """The progress bar's mean loss over the last 50 steps (one per turn when players take turns)."""
    recent = losses[-50:]
    if recent and isinstance(recent[0], list):
        means = [sum(v[i] for v in recent) / len(recent) for i in range(len(recent[0]))]
        return {"losses": "/".join(f"{m:.3f}" for m in means), "lr": f"{lr:.2e}"}
    return {"loss": f"{sum(recent) / len(recent):.4f}", "lr": f"{lr:.2e}"}


def _check_train_args(model: Any, config: Any, resume: Any, progress: Any, log_every: Any, data: Any,
                      ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Every argument of :func:`train` checked once, before anything runs; returns ``(examples, conditions)``."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(config, TrainConfig):
        raise ValueError(f"config must be a TrainConfig, got {type(config).__name__}")
    check_bool("resume", resume)
    check_bool("progress", progress)
    check_int("log_every", log_every, min_value=1)
    images, conds = _split_data(data)
    if images.shape[0] < 1 or not images.dtype.is_floating_point:
        raise ValueError(f"data must hold at least one floating-point example, got shape {tuple(images.shape)} {images.dtype}")
    return images, conds


# ----------------------------------------------------------------------------- the loop
def train(
    model: nn.Module,
    objective: NoiseSchedule | Objective,
    data: Any,
    config: TrainConfig,
    *,
    run_dir: str | os.PathLike | None = None,
    resume: bool = True,
    device: str | torch.device | None = None,
    progress: bool = True,
    callback: Callback | Sequence[Callback] | None = None,
    log_every: int = 25,
    compile: bool | None = None,
    channels_last: bool | None = None,
) -> TrainResult:
    """Train ``model`` on ``data`` with ``config``: the step of :func:`train_step` ``config.steps`` times, with checkpoints.

    ``objective``: a NoiseSchedule trains a denoiser ``model(x_t, t, cond=None)`` with the diffusion
    loss (:class:`DiffusionObjective`); any :class:`Objective` trains with its loss instead, and one
    with ``turns``/``optimizers`` lets players take turns (chapter 09's GAN, :mod:`course_lib.adversarial`).
    ``data``: a tensor (N, …) of examples in the model's range, or a pair (examples, conditions)
    with conditions as class labels (N,) or vectors (N, D). With a ``run_dir`` a checkpoint is
    committed every ``config.checkpoint_every`` steps and at the end; with ``resume=True`` an
    existing checkpoint there is verified (sha256, model config, train config, schedule or
    objective, data) and training continues from it — if it is already finished, nothing is
    trained. ``resume=False`` starts again and overwrites. ``callback``: one callable or several,
    called in order with a :class:`StepInfo` after every step; raising :class:`StopTraining` ends
    the run there (checkpointed). Raises :class:`TrainingDiverged` on a NaN/inf loss (the last
    checkpoint stays intact) and ValueError/CheckpointError naming any bad input.

    Speed: the losses are read from the device every ``log_every`` steps (every step when there is
    a callback, which gets them as floats); ``compile=True`` wraps the model in ``torch.compile``;
    ``channels_last`` (default: on CUDA) stores images as NHWC, what tensor cores prefer. Under
    ``torchrun`` (course_lib.distributed) the run is data-parallel: ``config.batch_size`` is the
    global batch, split evenly across the processes; only rank 0 writes checkpoints.
    """
    images, conds = _check_train_args(model, config, resume, progress, log_every, data)
    lim = _LIMITS.get()
    compile = lim.compile if compile is None else check_bool("compile", compile)
    every = config.checkpoint_every if lim.checkpoint_every is None else lim.checkpoint_every
    stop = capped(config.steps if lim.until is None else min(config.steps, lim.until))  # a gpu dry run: a few steps
    _check_objective(objective, config, model, conds)
    callbacks = [] if callback is None else list(callback) if isinstance(callback, (list, tuple)) else [callback]
    dev, where = resolve_device(device), distributed.info()
    part = distributed.local_slice(config.batch_size, where)  # this rank's share of the global batch
    identity = run_identity(model, objective, images, conds, config)
    run = _setup(model, objective, images, config, dev, where, compile, channels_last)
    start, seconds_before, losses = _resumed(run, run_dir, resume, identity)
    # objectives that can draw for the global batch get this rank's part; others get a private stream per rank
    global_draws = not where.active or isinstance(run.objective, (DiffusionObjective, NoisyClassifierObjective))
    images_dev = images.to(dev).contiguous(memory_format=torch.channels_last) if run.channels_last else images.to(dev)
    conds_dev = conds.to(dev) if conds is not None else None
    tic, done, pending = time.perf_counter(), start, []  # pending: this rank's losses of the last steps, on the device

    def seconds() -> float:  # training time over all sessions of this run
        return seconds_before + (time.perf_counter() - tic if start < stop else 0.0)

    def read_losses() -> None:  # the pending losses to the host: one sync and one all-reduce for many steps
        if pending:
            values = distributed.all_mean(torch.stack(pending).float()).tolist()  # the global batch's mean loss
            _check_losses(values, len(losses) + 1, run_dir, config)
            losses.extend(values)
            pending.clear()

    def commit() -> float:
        read_losses()
        now = seconds()  # what the checkpoint says is what train() returns
        if where.is_main:  # one writer; the others wait until the checkpoint is in place
            scalers = {name: scaler.state_dict() for name, scaler in run.scalers.items()}  # float16: resumed exactly
            save_run(run_dir, run.model, run.ema_model, run.saved_opts(), run.gen, dev,
                     {**identity, "step": done, "seconds": now, "losses": losses,
                      **({"loss_scalers": scalers} if scalers else {})})
        distributed.barrier()
        return now

    from tqdm.auto import tqdm

    read_every, total = (1 if callbacks else log_every), None
    bar = tqdm(total=stop, initial=min(start, stop), disable=not progress or start >= stop, desc="training", dynamic_ncols=True)
    try:
        for step in range(start, stop):
            x0, cond, draws = _draw_batch(run, images_dev, conds_dev, step, part, where, global_draws)
            loss, lr = _step(run, x0, cond, draws, step=step, read_loss=False,
                                  part=part if where.active and global_draws else None)
            pending.append(loss)
            done = step + 1
            if done % read_every == 0 or done == stop:
                read_losses()
                if progress:
                    bar.set_postfix(_postfix(losses, lr), refresh=False)
            bar.update(1)
            try:
                for cb in callbacks:
                    cb(StepInfo(done, losses[-1], lr, run.model, run.ema_model))
            except StopTraining:
                total = commit() if run_dir is not None else None
                break
            if run_dir is not None and (done == stop or (every and done % every == 0)):
                total = commit()
        read_losses()
    finally:
        bar.close()
    return _finish(run, losses, max(start, done), seconds() if total is None or start >= stop else total)


def _draw_batch(run: _Run, images_dev: torch.Tensor, conds_dev: torch.Tensor | None, step: int, part: slice,
                where: Any, global_draws: bool) -> tuple[torch.Tensor, torch.Tensor | None, torch.Generator]:
    """Step ``step``'s batch (this rank's part of the global one) and the generator the objective draws from."""
    config = run.config
    if where.active:  # a private stream per rank and step (dropout), derived from the seed
        torch.manual_seed(distributed.rank_seed(config.seed, where.rank, step))
    idx = to_device(torch.randint(images_dev.shape[0], (config.batch_size,), generator=run.gen)[part], run.dev)
    x0, cond = images_dev[idx], conds_dev[idx] if conds_dev is not None else None
    if run.channels_last:
        x0 = x0.contiguous(memory_format=torch.channels_last)
    draws = run.gen if global_draws else torch.Generator().manual_seed(distributed.rank_seed(config.seed, where.rank, step))
    return x0, cond, draws


def _finish(run: _Run, losses: list, steps: int, seconds: float) -> TrainResult:
    """The trained model in eval mode; a trained denoiser says what it predicts (forward.prediction_type_of)."""
    run.model.eval()
    if isinstance(run.objective, DiffusionObjective):
        for m in (run.model, run.ema_model):
            m.prediction_type = run.config.prediction_type
    return TrainResult(run.model, run.ema_model, losses, steps, seconds)


def train_noisy_classifier(classifier: nn.Module, schedule: NoiseSchedule, images: torch.Tensor, labels: torch.Tensor,
                           config: TrainConfig, *, device: str | torch.device | None = None,
                           progress: bool = True) -> list[float]:
    """Train ``classifier`` in place to predict y from x_t (:class:`NoisyClassifierObjective`); returns the loss history."""
    if labels.shape != images.shape[:1] or labels.is_floating_point():
        raise ValueError(f"labels must be integer class labels of shape ({images.shape[0]},), got {labels.dtype} {tuple(labels.shape)}")
    return train(classifier, NoisyClassifierObjective(schedule), (images, labels), config, device=device,
                 progress=progress).losses


__all__ = [
    "LATER_FIELDS", "LR_SCHEDULES", "LRSchedule", "Limits", "StepInfo", "StopTraining", "TrainConfig", "TrainResult",
    "TrainingDiverged", "config_identity", "ema_decay_at", "ema_update", "limits", "lr_at", "noisy_classifier_config",
    "autocast_dtype", "optimizer_step", "run_identity", "train", "train_noisy_classifier", "train_step",
]
