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
- bf16 autocast on CUDA GPUs that support it (Ampere and newer); float32 elsewhere (bitwise reproducible on the CPU).
- Periodic atomic checkpoints (:func:`course_lib.checkpoints.save_run`) hold the weights, EMA,
  optimizer state, loss history and the RNG states, so a run killed at any moment resumes
  *exactly*: the final weights equal those of an uninterrupted run, bit for bit on the CPU.
- Data-parallel under ``torchrun`` (course_lib.distributed): every rank draws the *global* batch
  from the run's one stream and keeps its slice, DDP averages the gradients, rank 0 alone writes
  checkpoints. N processes give the weights of one process to float rounding (for the diffusion
  and noisy-classifier objectives, which draw for the global batch), and a checkpoint written at
  any world size resumes exactly at any other.
- No host synchronisation per step on a GPU: the losses stay on the device and are read every
  ``log_every`` steps (and before every checkpoint, so a NaN is caught before it is saved); the
  draws reach the GPU through pinned memory. On CUDA the model runs channels_last, in bf16 autocast
  where the GPU has bf16, and ``compile=True`` wraps it in ``torch.compile``.

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
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterator, NamedTuple, Sequence

import torch
from torch import nn

from . import distributed
from .checkpoints import fingerprint, has_checkpoint, model_signature, read_state, resume_run, save_run, schedule_id
from .forward import PREDICTION_TYPES, PredictionType
from .objectives import DiffusionObjective, NoisyClassifierObjective, Objective, to_device
from .schedules import NoiseSchedule
from .settings import check_bool, check_choice, check_float, check_int, resolve_device


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of :func:`train`. All but ``checkpoint_every`` must match to resume a run.

    - ``steps``: optimizer steps; ``batch_size``: examples per step (drawn with replacement).
    - ``lr``: peak learning rate, reached after ``warmup`` steps, then cosine decay to 0.
    - ``weight_decay``: AdamW's decoupled decay; ``grad_clip``: max gradient norm (None = off).
    - ``ema_decay``: the EMA's final decay (with warm-up, see the module docstring).
    - ``prediction_type``: "epsilon" | "sample" | "v_prediction"; ``min_snr_gamma``: γ or None.
    - ``cond_drop_prob``: chance of replacing a condition by "none" (classifier-free guidance).
      These three shape the diffusion loss only; another objective needs them at their defaults.
    - ``checkpoint_every``: steps between checkpoints (0 = only at the end; needs a run_dir).
    - ``seed``: seeds the model's dropout and every random draw of the loop.
    - ``amp``: bf16 autocast when training on a CUDA GPU that supports bf16 (float32 elsewhere).
    """

    steps: int = 1000
    batch_size: int = 128
    lr: float = 1e-3
    warmup: int = 100
    weight_decay: float = 0.0
    grad_clip: float | None = 1.0
    ema_decay: float = 0.999
    prediction_type: PredictionType = "epsilon"
    min_snr_gamma: float | None = None
    cond_drop_prob: float = 0.0
    checkpoint_every: int = 500
    seed: int = 0
    amp: bool = True

    def __post_init__(self) -> None:
        check_int("steps", self.steps, min_value=1)
        check_int("batch_size", self.batch_size, min_value=1)
        check_float("lr", self.lr, min_value=0.0, max_value=1.0)
        check_int("warmup", self.warmup, min_value=0)
        check_float("weight_decay", self.weight_decay, min_value=0.0)
        if self.grad_clip is not None:
            check_float("grad_clip", self.grad_clip, min_value=0.0)
        check_float("ema_decay", self.ema_decay, min_value=0.0, max_value=1.0)
        check_choice("prediction_type", self.prediction_type, PREDICTION_TYPES)
        if self.min_snr_gamma is not None:
            check_float("min_snr_gamma", self.min_snr_gamma, min_value=1e-6)
        check_float("cond_drop_prob", self.cond_drop_prob, min_value=0.0, max_value=1.0)
        check_int("checkpoint_every", self.checkpoint_every, min_value=0)
        check_int("seed", self.seed, min_value=0, max_value=2**63 - 1)
        check_bool("amp", self.amp)


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
def lr_at(step: int, config: TrainConfig) -> float:
    """Learning rate for step ``step`` (0-based): linear warm-up, then cosine decay to 0."""
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    progress = (step - config.warmup) / max(1, config.steps - config.warmup)
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def ema_decay_at(num_updates: int, decay: float) -> float:
    """EMA decay after ``num_updates`` updates: min(decay, (1 + n)/(10 + n)) — small at first, then ``decay``."""
    return min(decay, (1.0 + num_updates) / (10.0 + num_updates))


@torch.no_grad()
def ema_update(ema_model: nn.Module, model: nn.Module, decay: float) -> None:
    """θ_ema ← decay·θ_ema + (1 − decay)·θ for every parameter; buffers are copied."""
    ema_params = [p for p in ema_model.parameters()]
    params = [p.detach() for p in model.parameters()]
    torch._foreach_lerp_(ema_params, params, 1.0 - decay)
    for b_ema, b in zip(ema_model.buffers(), model.buffers()):
        b_ema.copy_(b)


def _split_data(data: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    if isinstance(data, torch.Tensor):
        return data, None
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(d, torch.Tensor) for d in data):
        images, labels = data
        if labels.shape[0] != images.shape[0]:
            raise ValueError(f"data: {images.shape[0]} images but {labels.shape[0]} labels")
        return images, labels
    raise ValueError("data must be a tensor (N, …) or a pair (images (N, …), conditions (N, …)) of tensors")



def _native_bf16() -> bool:
    """True on CUDA GPUs with bf16 in hardware (Ampere and newer); a T4 only emulates it, slowly."""
    try:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # older torch without the keyword
        return torch.cuda.is_bf16_supported()



# ----------------------------------------------------------------------------- one step, then the loop
def train_step(model: nn.Module, ema_model: nn.Module, opt: torch.optim.Optimizer, objective: Objective,
               x0: torch.Tensor, cond: torch.Tensor | None, generator: torch.Generator, *, step: int,
               config: TrainConfig, use_amp: bool = False, net: nn.Module | None = None,
               read_loss: bool = True, part: slice | None = None) -> tuple[Any, float]:
    """One optimizer step on the batch ``x0`` (+ ``cond``): loss, backward, clip, AdamW, EMA. Returns (loss, lr).

    ``step`` is 0-based; it sets the learning rate (:func:`lr_at`) and the EMA's warm-up
    (:func:`ema_decay_at`). The objective draws its own randomness (t, ε, …) from ``generator``.
    A NaN or infinite loss raises :class:`TrainingDiverged` before the weights are touched.
    :func:`train` passes ``net`` (the model wrapped for DDP or compiled, called for the loss),
    ``part`` (this rank's slice of the global batch ``config.batch_size``) and ``read_loss=False``:
    the loss is then returned as a device tensor, unchecked, so the step never waits for the GPU.
    """
    lr = lr_at(step, config)
    for group in opt.param_groups:
        group["lr"] = lr
    with torch.autocast(device_type=x0.device.type, dtype=torch.bfloat16, enabled=use_amp):
        if part is None:
            loss = objective.loss(net or model, x0, cond, generator)
        else:
            loss = objective.loss(net or model, x0, cond, generator, batch_size=config.batch_size, part=part)
    value: Any = loss.detach()
    if read_loss:
        value = float(value)
        if not math.isfinite(value):
            raise TrainingDiverged(f"the loss became {value} at step {step + 1}")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if config.grad_clip is not None:
        nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
    opt.step()
    ema_update(ema_model, model, ema_decay_at(step, config.ema_decay))
    return value, lr


Callback = Callable[[StepInfo], None]


def _check_objective(objective: Any, config: TrainConfig, model: nn.Module, conds: torch.Tensor | None) -> None:
    """The diffusion objective checks conditions against the model; others need the diffusion-only fields at default."""
    if not isinstance(objective, NoiseSchedule):
        if not (callable(getattr(objective, "loss", None)) and callable(getattr(objective, "identity", None))):
            raise ValueError("objective must be a NoiseSchedule (course_lib.schedules.make_schedule) or an object with "
                             f"loss(model, x0, cond, generator) and identity(), got {type(objective).__name__}")
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
    the runs' identities, stay the same: a chapter later resumes or loads the run."""
    if until is not None:
        check_int("until", until, min_value=1)
    if checkpoint_every is not None:
        check_int("checkpoint_every", checkpoint_every, min_value=0)
    token = _LIMITS.set(Limits(until, checkpoint_every, bool(compile)))
    try:
        yield _LIMITS.get()
    finally:
        _LIMITS.reset(token)


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
    """Train ``model`` on ``data`` with ``config``: :func:`train_step` ``config.steps`` times, with checkpoints.

    ``objective``: a NoiseSchedule trains a denoiser ``model(x_t, t, cond=None)`` with the diffusion
    loss (:class:`DiffusionObjective`); any :class:`Objective` trains with its loss instead.
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
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(config, TrainConfig):
        raise ValueError(f"config must be a TrainConfig, got {type(config).__name__}")
    check_bool("resume", resume)
    check_bool("progress", progress)
    check_int("log_every", log_every, min_value=1)
    lim = _LIMITS.get()
    compile = lim.compile if compile is None else check_bool("compile", compile)
    every = config.checkpoint_every if lim.checkpoint_every is None else lim.checkpoint_every
    stop = config.steps if lim.until is None else min(config.steps, lim.until)
    where = distributed.info()
    part = distributed.local_slice(config.batch_size, where)  # this rank's share of the global batch
    images, conds = _split_data(data)
    if images.shape[0] < 1 or not images.dtype.is_floating_point:
        raise ValueError(f"data must hold at least one floating-point example, got shape {tuple(images.shape)} {images.dtype}")
    _check_objective(objective, config, model, conds)
    callbacks = [] if callback is None else list(callback) if isinstance(callback, (list, tuple)) else [callback]
    dev = resolve_device(device)
    identity = {  # everything the run depends on, checked on resume
        "model": model_signature(model), "train_config": asdict(config),
        **({"schedule": schedule_id(objective)} if isinstance(objective, NoiseSchedule) else {"objective": objective.identity()}),
        "data": fingerprint(images), "conditions": fingerprint(conds) if conds is not None else None,
    }
    if isinstance(objective, NoiseSchedule):
        objective = DiffusionObjective(objective.to(dev), config.prediction_type, config.min_snr_gamma, config.cond_drop_prob)

    torch.manual_seed(config.seed)  # dropout draws
    gen = torch.Generator().manual_seed(config.seed)  # every draw of the loop: indices, then the objective's
    cl = (dev.type == "cuda") if channels_last is None else check_bool("channels_last", channels_last)
    cl = cl and images.dim() == 4
    model = model.to(dev).train()
    if cl:
        model = model.to(memory_format=torch.channels_last)
    ema_model = deepcopy(model).eval().requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    losses: list[float] = []
    start, seconds_before = 0, 0.0
    if run_dir is not None and resume and has_checkpoint(run_dir):
        state = resume_run(run_dir, identity, model, ema_model, opt, gen, dev)
        start, seconds_before, losses = int(state["step"]), float(state["seconds"]), list(state["losses"])

    net: nn.Module = model  # what the steps call for the loss: wrapped for DDP and/or compiled
    if where.active:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    if compile:
        net = torch.compile(net)
    # objectives that can draw for the global batch get this rank's part; others get a private stream per rank
    global_draws = not where.active or isinstance(objective, (DiffusionObjective, NoisyClassifierObjective))

    images_dev = images.to(dev)
    if cl:
        images_dev = images_dev.contiguous(memory_format=torch.channels_last)
    conds_dev = conds.to(dev) if conds is not None else None
    use_amp = config.amp and dev.type == "cuda" and _native_bf16()
    tic, done = time.perf_counter(), start
    pending: list[torch.Tensor] = []  # this rank's losses of the last steps, still on the device

    def seconds() -> float:  # training time over all sessions of this run
        return seconds_before + (time.perf_counter() - tic if start < stop else 0.0)

    def read_losses() -> None:
        """The pending losses to the host: one sync and one all-reduce for many steps; stop on a NaN."""
        if not pending:
            return
        values = distributed.all_mean(torch.stack(pending).float()).tolist()  # the global batch's mean loss
        first = len(losses) + 1
        pending.clear()
        for i, value in enumerate(values):
            if not math.isfinite(value):
                where_ckpt = (f"the last good checkpoint (step {read_state(run_dir)['step']}) in {str(run_dir)!r} is intact"
                              if run_dir is not None and has_checkpoint(run_dir) else "no checkpoint was written")
                raise TrainingDiverged(f"the loss became {value} at step {first + i}; training stopped and {where_ckpt}. "
                                       f"Try a lower lr (now {config.lr:g}), grad_clip, or check the data for NaNs.")
        losses.extend(values)

    def commit() -> float:
        read_losses()
        now = seconds()  # what the checkpoint says is what train() returns
        if where.is_main:  # one writer; the others wait until the checkpoint is in place
            save_run(run_dir, model, ema_model, opt, gen, dev, {**identity, "step": done, "seconds": now, "losses": losses})
        distributed.barrier()
        return now

    from tqdm.auto import tqdm

    read_every = 1 if callbacks else log_every
    bar = tqdm(total=stop, initial=min(start, stop), disable=not progress or start >= stop,
               desc="training", dynamic_ncols=True)
    total = None
    try:
        for step in range(start, stop):
            if where.active:  # a private stream per rank and step (dropout), derived from the seed
                torch.manual_seed(distributed.rank_seed(config.seed, where.rank, step))
            idx = to_device(torch.randint(images.shape[0], (config.batch_size,), generator=gen)[part], dev)
            x0, cond = images_dev[idx], conds_dev[idx] if conds_dev is not None else None
            if cl:
                x0 = x0.contiguous(memory_format=torch.channels_last)
            draws = gen if global_draws else torch.Generator().manual_seed(
                distributed.rank_seed(config.seed, where.rank, step))
            loss, lr = train_step(model, ema_model, opt, objective, x0, cond, draws, step=step, config=config,
                                  use_amp=use_amp, net=net, read_loss=False,
                                  part=part if where.active and global_draws else None)
            pending.append(loss)
            done = step + 1
            if done % read_every == 0 or done == stop:
                read_losses()
                if progress:
                    bar.set_postfix(loss=f"{sum(losses[-50:]) / len(losses[-50:]):.4f}", lr=f"{lr:.2e}", refresh=False)
            bar.update(1)
            try:
                for cb in callbacks:
                    cb(StepInfo(done, losses[-1], lr, model, ema_model))
            except StopTraining:
                total = commit() if run_dir is not None else None
                break
            if run_dir is not None and (done == stop or (every and done % every == 0)):
                total = commit()
        read_losses()
    finally:
        bar.close()
    model.eval()
    if isinstance(objective, DiffusionObjective):  # a trained denoiser says what it predicts (forward.prediction_type_of)
        for m in (model, ema_model):
            m.prediction_type = config.prediction_type
    if total is None or start >= stop:
        total = seconds()
    return TrainResult(model, ema_model, losses, max(start, done), total)


def noisy_classifier_config(**changes: Any) -> TrainConfig:
    """A :class:`TrainConfig` for the noisy classifier: AdamW with weight decay 0.01, lr 2e-3, no clipping, no AMP.

    Defaults (changed by keyword): 600 steps of 128, warm-up 50, one checkpoint at the end.
    """
    base = dict(steps=600, batch_size=128, lr=2e-3, warmup=50, weight_decay=0.01, grad_clip=None, amp=False,
                checkpoint_every=0)
    return TrainConfig(**{**base, **changes})


def train_noisy_classifier(classifier: nn.Module, schedule: NoiseSchedule, images: torch.Tensor, labels: torch.Tensor,
                           config: TrainConfig, *, device: str | torch.device | None = None,
                           progress: bool = True) -> list[float]:
    """Train ``classifier`` in place to predict y from x_t (:class:`NoisyClassifierObjective`); returns the loss history."""
    if labels.shape != images.shape[:1] or labels.is_floating_point():
        raise ValueError(f"labels must be integer class labels of shape ({images.shape[0]},), got {labels.dtype} {tuple(labels.shape)}")
    return train(classifier, NoisyClassifierObjective(schedule), (images, labels), config, device=device,
                 progress=progress).losses
