"""Samplers: turning static back into pictures (chapters 05 and 06).

Public API (DESIGN.md): ``timesteps``, ``ddpm_step``, ``ddim_step``, ``sample``, ``StepOutput``.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np
import torch

from .settings import check_choice, check_int

Spacing = Literal["leading", "trailing", "linspace"]
SPACINGS: tuple[str, ...] = get_args(Spacing)


def timesteps(
    num_train_timesteps: int, num_inference_steps: int, spacing: str = "leading", steps_offset: int = 0
) -> torch.Tensor:
    """The N timesteps a sampler visits, in descending order (equal to diffusers' ``set_timesteps``).

    - ``leading``: 0, k, 2k, … with k = T // N (DDIM paper; never reaches T−1 unless offset).
    - ``trailing``: T−1, T−1−k, … with k = T / N (Lin et al. 2023, Table 2: start from pure noise).
    - ``linspace``: N points evenly spread over [0, T−1], rounded.
    """
    T = check_int("num_train_timesteps", num_train_timesteps, min_value=1)
    N = check_int("num_inference_steps", num_inference_steps, min_value=1, max_value=T)
    check_choice("spacing", spacing, SPACINGS)
    steps_offset = check_int("steps_offset", steps_offset, min_value=0, max_value=T - 1)
    if spacing == "linspace":
        ts = np.linspace(0, T - 1, N).round()[::-1].astype(np.int64)
    elif spacing == "leading":
        ts = (np.arange(0, N) * (T // N)).round()[::-1].astype(np.int64) + steps_offset
    else:
        ts = np.round(np.arange(T, 0, -T / N)).astype(np.int64) - 1
    return torch.from_numpy(ts.copy())
