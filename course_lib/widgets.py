"""Interactive sliders for the notebooks (chapter 01 onward).

A slider needs a live Jupyter front end. Where none can render it — ipywidgets missing, the
book's static HTML, a papermill run with ``COURSE_STATIC=1`` (``make course`` sets it) — the same
call draws a static strip instead, so every reader sees a picture.
"""

from __future__ import annotations

import os
from typing import Sequence

import matplotlib.pyplot as plt
import torch

from .schedules import NoiseSchedule
from .viz import captioned_grid, forward_strip, show_images


def widgets_available() -> bool:
    """True when an interactive ipywidgets slider can be shown."""
    if os.environ.get("COURSE_STATIC", "") not in ("", "0"):
        return False
    try:
        import ipywidgets  # noqa: F401
        from IPython import get_ipython
    except ImportError:
        return False
    return get_ipython() is not None


def timestep_slider(
    image: torch.Tensor, schedule: NoiseSchedule, *, seed: int = 0, static_ts: Sequence[int] | None = None
):
    """Drag t from 0 to T−1 and watch ``image`` fill with static: x_t = √ᾱ_t x₀ + √(1−ᾱ_t) ε.

    One noise draw ε is shared by every t, so only the mix changes. Returns the ipywidgets
    object, or draws a static strip at ``static_ts`` (default: six evenly spaced t) and returns
    that figure when widgets can't render.
    """
    T = schedule.num_timesteps
    x0 = image[:1]  # (1, C, H, W)
    if not widgets_available():
        ts = list(static_ts) if static_ts is not None else [round(i * (T - 1) / 5) for i in range(6)]
        return forward_strip(x0, schedule, ts, seed=seed, title="x_t as t grows (static view of the slider)")

    import ipywidgets as w

    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))

    def draw(t: int) -> None:
        x_t = schedule.add_noise(x0, noise, torch.tensor([t]))
        a_bar = float(schedule.alphas_cumprod[t])
        fig, ax = plt.subplots(figsize=(3, 3.3))
        show_images(x_t, nrow=1, ax=ax, title=f"t = {t}: √ᾱ = {a_bar ** 0.5:.3f}, √(1−ᾱ) = {(1 - a_bar) ** 0.5:.3f}")
        ax.title.set_fontsize(8)
        plt.show()

    return w.interact(draw, t=w.IntSlider(value=0, min=0, max=T - 1, step=max(1, T // 100), description="t"))


def prompt_guidance_slider(
    model: torch.nn.Module, prompts: Sequence[str], scales: Sequence[float] = (0.0, 1.0, 2.0, 3.0, 5.0), *,
    num_steps: int = 30, seed: int = 0, schedule: NoiseSchedule | None = None,
):
    """Drag the guidance scale s and watch the same noise become pictures that follow ``prompts`` more and more (chapter 08).

    Every s ∈ ``scales`` starts from the same noise (``seed``), through
    :func:`course_lib.prompts.generate_from_prompts` (ε̃ = ε_∅ + s·(ε_c − ε_∅)); the pictures are
    made once, up front, so dragging is instant. Returns the ipywidgets object, or — where widgets can't
    render — draws the static grid (one row per s, one column per prompt) and returns that figure.
    """
    from .prompts import generate_from_prompts

    scales = [float(s) for s in scales]
    if not scales:
        raise ValueError("scales must list at least one guidance scale, e.g. (0, 1, 3)")
    rows = {s: generate_from_prompts(model, list(prompts), guidance_scale=s, num_steps=num_steps, seed=seed,
                                     schedule=schedule) for s in scales}
    labels = [p or "(empty prompt)" for p in prompts]
    if not widgets_available():
        images = torch.cat([rows[s] for s in scales])  # (len(scales)·P, C, H, W): one row per scale
        captions = [f"s = {s:g}: {p}" for s in scales for p in labels]
        return captioned_grid(images, captions, ncols=len(labels), wrap=22,
                              title="guidance scale s (rows) × prompt (columns) — static view of the slider")

    import ipywidgets as w

    def draw(s: float) -> None:
        captioned_grid(rows[s], labels, ncols=len(labels), wrap=22, title=f"guidance scale s = {s:g}")
        plt.show()

    return w.interact(draw, s=w.SelectionSlider(options=scales, value=scales[min(len(scales) - 1, 3)],
                                                description="s"))
