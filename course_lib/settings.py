"""Profiles, device choice, seeding and parameter validation (used by every chapter).

A *profile* says how much compute a run may spend (see docs/architecture.md, "Profiles"):

- ``smoke``: seconds per notebook; tiny models; only proves the code runs (CI).
- ``cpu``: a laptop or a 2-core machine, each notebook within about ten minutes.
- ``gpu``: full quality on one GPU.
- ``auto``: ``gpu`` when a CUDA or MPS device is present, else ``cpu``.

The environment variable ``COURSE_PROFILE``, when set, overrides the parameter. ``COURSE_GPU_DRYRUN=1``
(``make gpu-dryrun``) runs the ``gpu`` configurations on whatever device there is with every training run
and every sampler capped to :data:`DRYRUN_STEPS` steps (:func:`capped`), and every count a notebook picks by
profile (:meth:`Run.pick`: pictures drawn, FID/KID sample sizes, repeats, seconds of budget) capped to the
smoke profile's count, or :data:`DRYRUN_COUNT` if that is larger (:func:`capped_count`): the ``gpu`` code
paths — the recipes' sizes, batch sizes, widths, bf16 autocast — execute in seconds per chapter on a CPU, and
run-dependent claims are not enforced.

Every notebook's validation cell calls :func:`setup` (and, for its own parameters, the
``check_*`` helpers). Each helper raises :class:`ValueError` naming the parameter and what
is allowed, so a typo fails in the first cells and not deep inside torch.

Where things live on disk has one home here too: :data:`WEIGHTS_DIR` (the networks that ship with the
package) and :func:`runs_dir` (the models the chapters train and cache).
"""

from __future__ import annotations

import os
import random
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Literal, Sequence, TypeVar, get_args

import numpy as np
import torch

Profile = Literal["smoke", "cpu", "gpu", "auto"]
ResolvedProfile = Literal["smoke", "cpu", "gpu"]
DeviceName = Literal["auto", "cpu", "cuda", "mps"]

PROFILES: tuple[str, ...] = get_args(Profile)
DEVICES: tuple[str, ...] = get_args(DeviceName)
PROFILE_ENV = "COURSE_PROFILE"
RUNS_ENV = "COURSE_RUNS_DIR"
DRYRUN_ENV = "COURSE_GPU_DRYRUN"
DRYRUN_STEPS = 2  # the training and sampler steps a gpu dry run keeps of each run
DRYRUN_COUNT = 2  # a gpu dry run's Run.pick returns no count (pictures, sample sizes, repeats) above this or the smoke one
#: where the networks that ship trained with the package live (sha256-checked cards next to them)
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"

T = TypeVar("T")


# ----------------------------------------------------------------------------- validation
def check_choice(name: str, value: Any, allowed: Sequence[str]) -> str:
    """Return ``value`` if it is one of ``allowed``; else raise ValueError naming ``name``."""
    if not isinstance(value, str) or value not in allowed:
        options = ", ".join(repr(a) for a in allowed)
        hint = _closest(value, allowed)
        raise ValueError(
            f"{name}={value!r} is not allowed; choose one of: {options}" + (f" (did you mean {hint!r}?)" if hint else "")
        )
    return value


def check_int(name: str, value: Any, *, min_value: int | None = None, max_value: int | None = None) -> int:
    """Return ``value`` if it is an int (not a bool) within the bounds; else raise ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    _check_bounds(name, int(value), min_value, max_value)
    return int(value)


def check_float(name: str, value: Any, *, min_value: float | None = None, max_value: float | None = None) -> float:
    """Return ``value`` as float if it is a real number within the bounds; else raise ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    if not np.isfinite(float(value)):
        raise ValueError(f"{name} must be finite, got {value!r}")
    _check_bounds(name, float(value), min_value, max_value)
    return float(value)


def check_bool(name: str, value: Any) -> bool:
    """Return ``value`` if it is a bool; else raise ValueError."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r} ({type(value).__name__})")
    return bool(value)


RANGE_TOLERANCE = 1e-3  # how far outside the value range a pixel may stray (float rounding) before we refuse


def check_images(
    name: str,
    images: Any,
    *,
    channels: int | Sequence[int] | None = None,
    size: int | Sequence[int] | None = None,
    min_size: int | None = None,
    value_range: tuple[float, float] | None = (-1.0, 1.0),
) -> torch.Tensor:
    """The one image validator: ``images`` must be a non-empty float tensor (N, C, H, W) of finite values.

    ``channels``: the allowed C (an int or several); ``size``: the allowed side(s) of square pictures
    (H = W); ``min_size``: square pictures of at least that side; ``value_range``: (lo, hi) the pixels
    must lie in, up to float rounding (book/notation.md: [−1, 1]); None skips the check (latents).
    Returns ``images`` unchanged; raises ValueError naming ``name`` and what is allowed.
    """
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of images (N, C, H, W), got {type(images).__name__}")
    shape = tuple(images.shape)
    if images.dim() != 4:
        raise ValueError(f"{name} must be NCHW (4 dims: N, C, H, W), got shape {shape}")
    allowed_c = _as_tuple(channels)
    if allowed_c and shape[1] not in allowed_c:
        want = " or ".join(str(c) for c in allowed_c)
        raise ValueError(f"{name} must have {want} channel(s), got {shape[1]} channels in shape {shape}")
    allowed_s = _as_tuple(size)
    if (allowed_s or min_size is not None) and shape[2] != shape[3]:
        raise ValueError(f"{name} must be square pictures (H = W), got {shape[2:]}")
    if allowed_s and shape[3] not in allowed_s:
        want = " or ".join(f"{s}×{s}" for s in allowed_s)
        raise ValueError(f"{name} must be {want} pictures, got {shape[2]}×{shape[3]}")
    if min_size is not None and shape[3] < min_size:
        raise ValueError(f"{name} must be square pictures of at least {min_size}×{min_size}, got {shape[2]}×{shape[3]}")
    if shape[0] == 0:
        raise ValueError(f"{name} is empty (N = 0)")
    if not images.is_floating_point():
        raise ValueError(f"{name} must be a float tensor, got dtype {images.dtype} (map uint8 pixels with x / 127.5 - 1)")
    if not bool(torch.isfinite(images).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    if value_range is not None:
        lo, hi = float(images.min()), float(images.max())
        if lo < value_range[0] - RANGE_TOLERANCE or hi > value_range[1] + RANGE_TOLERANCE:
            hint = ", map [0, 1] pixels with data.to_unit_range" if tuple(value_range) == (-1.0, 1.0) else ""
            raise ValueError(
                f"{name} must lie in [{value_range[0]:g}, {value_range[1]:g}] (book/notation.md), got values in "
                f"[{lo:.3g}, {hi:.3g}]; clamp samples with .clamp({value_range[0]:g}, {value_range[1]:g}){hint}"
            )
    return images


def _as_tuple(allowed: int | Sequence[int] | None) -> tuple[int, ...]:
    if allowed is None:
        return ()
    return (int(allowed),) if isinstance(allowed, (int, np.integer)) else tuple(int(a) for a in allowed)


def _check_bounds(name: str, value: float, lo: float | None, hi: float | None) -> None:
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        lo_s = "-inf" if lo is None else repr(lo)
        hi_s = "inf" if hi is None else repr(hi)
        raise ValueError(f"{name}={value!r} is out of range; allowed: {lo_s} <= {name} <= {hi_s}")


def _closest(value: Any, allowed: Sequence[str]) -> str | None:
    if not isinstance(value, str):
        return None
    import difflib

    match = difflib.get_close_matches(value, list(allowed), n=1, cutoff=0.6)
    return match[0] if match else None


# ----------------------------------------------------------------------------- profiles & devices
def accelerator_available() -> bool:
    """True when a CUDA GPU or an Apple MPS device can be used."""
    mps = getattr(torch.backends, "mps", None)
    return torch.cuda.is_available() or bool(mps is not None and mps.is_available())


def resolve_profile(profile: Profile = "auto") -> ResolvedProfile:
    """Validate ``profile`` and turn ``auto`` into ``gpu``/``cpu``; ``COURSE_PROFILE`` wins when set."""
    check_choice("profile", profile, PROFILES)
    env = os.environ.get(PROFILE_ENV, "").strip()
    if env:
        profile = check_choice(f"the environment variable {PROFILE_ENV}", env, PROFILES)
    if profile == "auto":
        return "gpu" if accelerator_available() else "cpu"
    return profile  # type: ignore[return-value]


def gpu_dryrun() -> bool:
    """True in a dry run of the ``gpu`` profile (``COURSE_GPU_DRYRUN`` set to anything but ``0``; ``make gpu-dryrun``)."""
    return os.environ.get(DRYRUN_ENV, "").strip() not in ("", "0")


def capped(steps: int) -> int:
    """``steps``, or at most :data:`DRYRUN_STEPS` in a gpu dry run: training runs and samplers pass their step
    counts through here, so a dry run executes every code path of the ``gpu`` recipes with a handful of steps."""
    return min(steps, DRYRUN_STEPS) if gpu_dryrun() else steps


def capped_count(value: T, smoke: T) -> T:
    """``value``, or in a gpu dry run a count no larger than the ``smoke`` profile's choice (what the code needs
    to run, e.g. a Monte Carlo's draws, in seconds) or :data:`DRYRUN_COUNT`, whichever is larger; a list of counts
    with one above that becomes the smoke profile's list (distinct sizes stay distinct). What :meth:`Run.pick`
    does to the counts it returns; other values are returned as they are. The gpu networks are large: a count of
    32 pictures made chapter 07's guidance sweep take minutes on a CPU."""
    def is_int(v: Any) -> bool:
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

    if not gpu_dryrun():
        return value
    cap = max([DRYRUN_COUNT, *(int(v) for v in (smoke if isinstance(smoke, (list, tuple)) else [smoke]) if is_int(v))])
    if is_int(value):
        return min(int(value), cap)  # type: ignore[return-value]
    if isinstance(value, (list, tuple)) and all(is_int(v) for v in value) and any(v > cap for v in value):
        return smoke
    return value


def _native_bf16() -> bool:
    """True on CUDA GPUs with bf16 in hardware (Ampere and newer); a T4 only emulates it, slowly."""
    try:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # older torch without the keyword
        return torch.cuda.is_bf16_supported()


def autocast_dtype(amp: bool, device: torch.device) -> torch.dtype | None:
    """The dtype of the forward passes' autocast, or None for float32 (``TrainConfig.amp`` on ``device``; the
    samplers' network calls use ``amp=True``).

    bfloat16 on CUDA GPUs with it in hardware (Ampere and newer: A100, H100, L4); float16 on older ones
    (Colab's T4, V100), where the training loop scales the loss (:func:`course_lib.optim.optimizer_step`)
    because float16's narrow range would flush small gradients to zero; bfloat16 on the CPU in a gpu dry run
    (``make gpu-dryrun``); float32 on the CPU otherwise (bitwise reproducible)."""
    if not amp:
        return None
    if device.type == "cuda":
        return torch.bfloat16 if _native_bf16() else torch.float16
    return torch.bfloat16 if gpu_dryrun() else None


@contextmanager
def half_precision(device: torch.device) -> Iterator[None]:
    """Autocast for a network's forward passes outside training (the samplers' calls, chapters 05–07): the dtype
    the training loop's autocast has on ``device`` (:func:`autocast_dtype`) — float16 on a T4, bfloat16 on newer
    GPUs and in a gpu dry run — and nothing (float32, bitwise reproducible) on a CPU. On a T4 float16 runs on its
    tensor cores at 65 TFLOPS against 8.1 in float32: chapter 06's FID table, predicted at 22 minutes there in
    float32, at 4 (``benchmarks/gpu_budget.py``; not yet measured on a GPU)."""
    dtype = autocast_dtype(True, device)
    if dtype is None:
        yield
        return
    with torch.autocast(device.type, dtype=dtype):
        yield


def in_half_precision(net: Any, x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
    """``net(x, *args, **kwargs)`` in :func:`half_precision` on ``x``'s device, its output back in float32: how the
    samplers call a network (the solver's own arithmetic stays float32; on a CPU nothing changes)."""
    with half_precision(x.device):
        out = net(x, *args, **kwargs)
    if isinstance(out, torch.Tensor) and out.dtype in (torch.float16, torch.bfloat16):
        out = out.float()
    return out


def get_device(device: DeviceName = "auto") -> torch.device:
    """Pick the compute device: ``auto`` prefers CUDA, then MPS, then CPU."""
    check_choice("device", device, DEVICES)
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was asked for but no CUDA GPU is visible; use device='auto' or 'cpu'")
    if device == "mps" and not accelerator_available():
        raise ValueError("device='mps' was asked for but MPS is not available; use device='auto' or 'cpu'")
    return torch.device(device)


def resolve_device(device: str | torch.device | None) -> torch.device:
    """A ``torch.device`` as it is, else :func:`get_device` of the name (None: ``auto``) — what every
    function that trains or loads a model does with its ``device`` argument."""
    return device if isinstance(device, torch.device) else get_device(device or "auto")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (all devices); return a CPU generator seeded the same way."""
    seed = check_int("seed", seed, min_value=0, max_value=2**32 - 1)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds CUDA and MPS
    return torch.Generator().manual_seed(seed)


@dataclass(frozen=True)
class Run:
    """What a notebook or script runs with: the resolved profile, the device and the seed."""

    profile: ResolvedProfile
    device: torch.device
    seed: int

    def pick(self, *, smoke: T, cpu: T, gpu: T) -> T:
        """Choose a size by profile, e.g. ``run.pick(smoke=20, cpu=3000, gpu=20000)``; in a gpu dry run the
        counts it returns are capped (:func:`capped_count`: the recipes, not these picks, set widths and batches)."""
        return capped_count({"smoke": smoke, "cpu": cpu, "gpu": gpu}[self.profile], smoke)

    def generator(self, offset: int = 0) -> torch.Generator:
        """A fresh CPU generator seeded with ``seed + offset`` (reproducible per call site)."""
        return torch.Generator().manual_seed(self.seed + offset)

    def __str__(self) -> str:
        return f"profile={self.profile} · device={self.device} · seed={self.seed} · torch {torch.__version__}"


def runs_dir() -> Path:
    """Where trained models are cached, shared by notebooks, benchmarks and tests.

    ``$COURSE_RUNS_DIR`` when set; else ``runs/`` at the top of a source checkout (so a notebook
    run from ``notebooks/`` and a benchmark run from the top find the same checkpoints); else
    ``~/.cache/course_lib/runs`` for an installed package.
    """
    env = os.environ.get(RUNS_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "pyproject.toml").exists():
        return checkout / "runs"
    return Path.home() / ".cache" / "course_lib" / "runs"


def stale_imports(names: Sequence[str] = ("numpy", "torch")) -> list[str]:
    """Modules whose already-imported version differs from the one now installed.

    On Colab the setup cell's ``%pip install`` runs before anything imports numpy or torch, and the
    course's bounds admit Colab's own versions, so pip changes neither and no restart is needed. If pip
    did replace one that was already imported, the old copy stays loaded until the runtime restarts:
    this lists it (as ``"numpy: loaded 2.1.0, installed 2.3.1"``).
    """
    import sys
    from importlib.metadata import PackageNotFoundError, version

    stale = []
    for name in names:
        module = sys.modules.get(name)
        loaded = getattr(module, "__version__", None)
        try:
            installed = version(name)
        except PackageNotFoundError:
            continue
        if loaded is not None and str(loaded).split("+")[0] != installed.split("+")[0]:  # ignore +cu126 labels
            stale.append(f"{name}: loaded {loaded}, installed {installed}")
    return stale


def describe_environment() -> str:
    """One line about the machine: compute device, torch version, CPU threads, COURSE_PROFILE.

    Raises RuntimeError when an installation replaced numpy or torch after they were imported
    (see :func:`stale_imports`): the runtime must restart before the chapter can run.
    """
    stale = stale_imports()
    if stale:
        raise RuntimeError("the package installation replaced modules this runtime had already imported ("
                           + "; ".join(stale) + "). Restart the runtime (Colab: Runtime → Restart session) "
                           "and run the notebook again; the second time pip changes nothing.")
    dev = get_device("auto")
    name = torch.cuda.get_device_name(0) if dev.type == "cuda" else dev.type
    env = os.environ.get(PROFILE_ENV)
    return (f"device: {name} · torch {torch.__version__} · {torch.get_num_threads()} CPU threads"
            + (f" · {PROFILE_ENV}={env}" if env else ""))


def setup(profile: Profile = "auto", seed: int = 0, device: DeviceName = "auto", *, quiet: bool = False) -> Run:
    """Validate the common notebook parameters, seed everything, and report in one line.

    Raises ValueError naming ``profile``, ``seed`` or ``device`` when one is not allowed.
    A ``smoke`` run stays on the CPU unless a device is named, so CI results do not depend
    on the hardware.
    """
    resolved = resolve_profile(profile)
    seed = check_int("seed", seed, min_value=0, max_value=2**32 - 1)
    check_choice("device", device, DEVICES)
    dev = torch.device("cpu") if (resolved == "smoke" and device == "auto") else get_device(device)
    seed_everything(seed)
    run = Run(profile=resolved, device=dev, seed=seed)
    if not quiet:
        print(run)
    return run
