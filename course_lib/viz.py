"""Pictures: image grids, schedule plots and forward-process strips (every chapter).

All functions take images NCHW in [-1, 1] and draw with matplotlib; grids use torchvision.
Each returns the matplotlib Figure so a notebook can save or tweak it.
"""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import torch
from torchvision.utils import make_grid

from .data import from_unit_range
from .schedules import NoiseSchedule


def to_display(images: torch.Tensor, nrow: int = 8, padding: int = 2) -> torch.Tensor:
    """A (H, W, C) [0, 1] array of ``images`` laid out as a grid, ready for ``imshow``."""
    grid = make_grid(from_unit_range(images.detach().float().cpu()), nrow=nrow, padding=padding, pad_value=1.0)
    return grid.permute(1, 2, 0)  # (C, H, W) -> (H, W, C)


def show_images(
    images: torch.Tensor, nrow: int = 8, title: str | None = None, ax: plt.Axes | None = None, scale: float = 0.6
) -> plt.Figure:
    """Show a batch of images as one grid (grey for 1 channel, colour for 3)."""
    if images.dim() != 4:
        raise ValueError(f"images must be NCHW (4 dims), got shape {tuple(images.shape)}")
    grid = to_display(images, nrow=nrow)
    if ax is None:
        rows = -(-images.shape[0] // nrow)
        cols = min(nrow, images.shape[0])
        _, ax = plt.subplots(figsize=(max(2.0, cols * scale * images.shape[-1] / 16), max(2.0, rows * scale * images.shape[-2] / 16)))
    ax.imshow(grid.squeeze(-1) if grid.shape[-1] == 1 else grid, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax.figure


def image_row(
    images: Sequence[torch.Tensor], labels: Sequence[str], title: str | None = None, size: float = 1.8
) -> plt.Figure:
    """A row of single images (each (C, H, W) or (1, C, H, W)) with a caption under each."""
    fig, axes = plt.subplots(1, len(images), figsize=(size * len(images), size + 0.4), squeeze=False)
    for ax, img, label in zip(axes[0], images, labels):
        img = img[0] if img.dim() == 4 else img
        show_images(img[None], nrow=1, ax=ax)
        ax.set_title(label, fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def captioned_grid(
    images: torch.Tensor, captions: Sequence[str], *, ncols: int = 6, size: float = 1.6, wrap: int = 24,
    title: str | None = None,
) -> plt.Figure:
    """Images (N, C, H, W) in a grid of ``ncols`` columns, each with its (wrapped) caption above it (chapter 08)."""
    import textwrap

    if images.dim() != 4 or len(captions) != images.shape[0]:
        raise ValueError(f"images must be NCHW with one caption each; got shape {tuple(images.shape)} and "
                         f"{len(captions)} captions")
    n = images.shape[0]
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    wrapped = ["\n".join(textwrap.wrap(c, wrap)) for c in captions]
    lines = max((w.count("\n") + 1 for w in wrapped), default=1)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, (size + 0.2 + 0.25 * lines) * nrows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i < n:
            show_images(images[i : i + 1], nrow=1, ax=ax)
            ax.set_title(wrapped[i], fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def forward_strip(
    x0: torch.Tensor, schedule: NoiseSchedule, ts: Sequence[int], *, seed: int = 0, title: str | None = None
) -> plt.Figure:
    """The same picture at several timesteps, all with one shared noise draw: x_t for t in ``ts``."""
    x0 = x0[:1]  # (1, C, H, W)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))
    frames = [schedule.add_noise(x0, noise, torch.tensor([t])) for t in ts]
    return image_row(frames, [f"t = {t}" for t in ts], title=title)


def plot_schedules(schedules: Sequence[NoiseSchedule], labels: Sequence[str] | None = None) -> plt.Figure:
    """β_t, ᾱ_t and log SNR(t) of several schedules side by side, against t / T."""
    labels = list(labels) if labels is not None else [s.name for s in schedules]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    for s, label in zip(schedules, labels):
        frac = torch.arange(s.num_timesteps) / (s.num_timesteps - 1)
        axes[0].plot(frac, s.betas, label=label)
        axes[1].plot(frac, s.alphas_cumprod, label=label)
        axes[2].plot(frac, s.log_snr(torch.arange(s.num_timesteps)), label=label)
    for ax, name in zip(axes, ["β_t", "ᾱ_t (signal kept)", "log SNR(t)"]):
        ax.set_title(name)
        ax.set_xlabel("t / (T−1)")
        ax.grid(alpha=0.3)
    axes[0].set_yscale("log")
    axes[1].legend()
    fig.tight_layout()
    return fig


def scatter_2d(
    clouds: Sequence[torch.Tensor], titles: Sequence[str], *, lim: float = 3.0, size: float = 3.0
) -> plt.Figure:
    """Scatter plots of 2-D point clouds (each (N, 2)) side by side with equal axes."""
    fig, axes = plt.subplots(1, len(clouds), figsize=(size * len(clouds), size), squeeze=False)
    for ax, pts, title in zip(axes[0], clouds, titles):
        pts = pts.detach().cpu()
        ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.5)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def plot_curve(values: Sequence[float], *, title: str = "", xlabel: str = "step", ylabel: str = "",
               smooth: int = 1, logy: bool = False) -> plt.Figure:
    """A line plot (e.g. a loss history), optionally with a moving average of width ``smooth``."""
    fig, ax = plt.subplots(figsize=(6, 3.2))
    v = torch.as_tensor(list(values), dtype=torch.float32)
    ax.plot(v, alpha=0.35 if smooth > 1 else 1.0, label="raw" if smooth > 1 else None)
    if smooth > 1 and len(v) >= smooth:
        kernel = torch.ones(smooth) / smooth
        avg = torch.nn.functional.conv1d(v[None, None], kernel[None, None])[0, 0]
        ax.plot(torch.arange(smooth - 1, len(v)), avg, label=f"moving average ({smooth})")
        ax.legend()
    if logy:
        ax.set_yscale("log")
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def family_diagram() -> plt.Figure:
    """VAE, GAN and diffusion in one picture: three pipelines of boxes and arrows (chapter 00)."""
    rows = [
        ("VAE: squish & unsquish", ["picture", "encoder", "small code\n(fuzzy recipe)", "decoder", "picture"]),
        ("GAN: artist vs detective", ["random\nnumbers", "artist\n(generator)", "picture", "detective\n(discriminator)", "real or\nfake?"]),
        ("Diffusion: patient eraser", ["static", "erase a\nlittle", "less static", "erase a\nlittle …", "picture"]),
    ]
    colours = ["#d7e8f7", "#f9dcc4", "#d8f0d2"]
    fig, ax = plt.subplots(figsize=(11, 4.2))
    for r, ((title, boxes), colour) in enumerate(zip(rows, colours)):
        y = 2 - r
        ax.text(-0.1, y + 0.38, title, fontsize=11, weight="bold", ha="left")
        for i, label in enumerate(boxes):
            x = i * 2.2
            ax.add_patch(plt.Rectangle((x, y - 0.25), 1.6, 0.5, facecolor=colour, edgecolor="0.3"))
            ax.text(x + 0.8, y, label, ha="center", va="center", fontsize=9)
            if i < len(boxes) - 1:
                ax.annotate("", xy=(x + 2.2, y), xytext=(x + 1.6, y), arrowprops=dict(arrowstyle="->", lw=1.5))
    ax.set_xlim(-0.2, 10.8)
    ax.set_ylim(-0.5, 2.8)
    ax.set_axis_off()
    fig.tight_layout()
    return fig
