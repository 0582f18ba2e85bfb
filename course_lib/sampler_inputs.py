"""What every sampling loop checks once per call, before its first step (chapters 05–07 and 12).

:func:`course_lib.samplers.sample` and :func:`course_lib.flow.sample_flow` take the same arguments around
their solvers: the model, the shape of the batch, a starting static or a generator to draw it, a
condition with its guidance scale, and a device. :func:`check_sampling_inputs` checks them all, once
per call, so the steps themselves check nothing; :func:`sampling_device` is the one rule for where
sampling runs. Each check raises ValueError naming the argument (docs/architecture.md, "Public API").
"""

from __future__ import annotations

import itertools
from typing import Any, Callable, NamedTuple

import numpy as np
import torch

from .settings import check_float


class SamplingInputs(NamedTuple):
    """The checked arguments: the shape as a tuple of ints, the device, the condition (on that device,
    or None) and the guidance scale as a float."""

    shape: tuple[int, ...]
    device: torch.device
    cond: torch.Tensor | None
    guidance_scale: float


def sampling_device(model: Any, generator: torch.Generator | None, device: Any) -> torch.device:
    """Where sampling runs: ``device`` when given, else the model's parameters' (or buffers'), else the
    generator's, else the CPU."""
    if device is not None:
        return torch.device(device)
    if isinstance(model, torch.nn.Module):
        for p in itertools.chain(model.parameters(), model.buffers()):
            return p.device
    return generator.device if generator is not None else torch.device("cpu")


def check_shape(shape: Any, *, min_dims: int = 2) -> tuple[int, ...]:
    """``shape`` as a tuple of at least ``min_dims`` positive ints, e.g. (B, C, H, W); ValueError otherwise."""
    try:
        dims = tuple(shape)
    except TypeError:
        dims = ()
    if len(dims) < min_dims or any(isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1 for d in dims):
        raise ValueError(f"shape must be a sequence of at least {min_dims} positive ints like (B, C, H, W), got {shape!r}")
    return tuple(int(d) for d in dims)


def check_sampling_inputs(
    model: Callable[..., torch.Tensor],
    shape: Any,
    *,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    cond: torch.Tensor | None = None,
    guidance_scale: float = 1.0,
    device: torch.device | str | None = None,
    min_dims: int = 2,
) -> SamplingInputs:
    """Check the arguments that every sampler shares, once per call; returns them as :class:`SamplingInputs`.

    ``model`` must be callable; ``shape`` at least ``min_dims`` positive ints (:func:`check_shape`);
    ``noise`` (the starting static, used instead of a draw) None or a tensor of exactly that shape;
    ``generator`` None or a ``torch.Generator``; ``cond`` None or a tensor with one entry per sample
    (moved to the device); ``guidance_scale`` s ≥ 0, and s ≠ 1 needs ``cond`` (chapter 07). The device
    is :func:`sampling_device`.
    """
    if not callable(model):
        raise ValueError(f"model must be a callable model(x, t, cond=None), got {type(model).__name__}")
    guidance_scale = check_float("guidance_scale", guidance_scale, min_value=0.0)
    shape = check_shape(shape, min_dims=min_dims)
    if noise is not None and (not isinstance(noise, torch.Tensor) or tuple(noise.shape) != shape):
        got = tuple(noise.shape) if isinstance(noise, torch.Tensor) else type(noise).__name__
        raise ValueError(f"noise (the starting static) must be a tensor of shape {shape}, got {got}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    dev = sampling_device(model, generator, device)
    if cond is not None:
        if not isinstance(cond, torch.Tensor) or cond.shape[:1] != shape[:1]:
            got = tuple(cond.shape) if isinstance(cond, torch.Tensor) else type(cond).__name__
            raise ValueError(f"cond must be a tensor with one entry per sample, shape ({shape[0]}, ...), got {got}")
        cond = cond.to(dev)
    elif guidance_scale != 1.0:
        raise ValueError(f"guidance_scale={guidance_scale} needs cond (the labels to guide towards); got cond=None")
    return SamplingInputs(shape, dev, cond, guidance_scale)


__all__ = ["SamplingInputs", "check_sampling_inputs", "check_shape", "sampling_device"]
