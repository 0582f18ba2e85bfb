"""Pictures: every figure of the course — image grids, schedules, sampling strips, quality plots.

All functions take images NCHW in [-1, 1] and draw with matplotlib; grids use torchvision.
Each returns the matplotlib Figure (an animation for :func:`sampling_film`) so a notebook can save
or tweak it. Nothing here samples, trains or measures: the numbers come in as arguments.
"""

from __future__ import annotations

from typing import Any, Iterable, Literal, Sequence, get_args

import matplotlib.pyplot as plt
import torch
from torchvision.utils import make_grid

from .data import from_unit_range
from .schedules import NoiseSchedule
from .settings import check_choice, check_float, check_int

SortBy = Literal["ratio", "distance"]
SORT_BYS: tuple[str, ...] = get_args(SortBy)


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


# ----------------------------------------------------------------------------- watching a sampler (chapter 05)
def sampling_strip(result: Any, image: int = 0, *, n_cols: int = 8, title: str = "") -> plt.Figure:
    """Two rows for one picture of a sampling run: x_t (top) and the guess x̂₀ (bottom) at evenly spread steps.

    ``result``: what :func:`course_lib.samplers.sample` returns with ``return_trajectory=True``
    (``trajectory``, ``x0_preds``, ``timesteps``); ``image`` picks the picture in the batch.
    """
    check_int("image", image, min_value=0, max_value=result.trajectory[0].shape[0] - 1)
    check_int("n_cols", n_cols, min_value=1)
    picks = torch.linspace(0, len(result.x0_preds) - 1, n_cols).round().long().tolist()
    fig, axes = plt.subplots(2, n_cols, figsize=(1.5 * n_cols, 3.6), squeeze=False)
    for col, i in enumerate(picks):
        show_images(result.trajectory[i][image : image + 1].cpu(), nrow=1, ax=axes[0, col])
        show_images(result.x0_preds[i][image : image + 1].clamp(-1, 1).cpu(), nrow=1, ax=axes[1, col])
        axes[0, col].set_title(f"t = {int(result.timesteps[i])}", fontsize=9)
    axes[0, 0].text(-4, 16, "x_t", ha="right", va="center")
    axes[1, 0].text(-4, 16, "guess x̂₀", ha="right", va="center")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def sampling_film(result: Any, *, n_frames: int = 40, ncol: int = 4) -> Any:
    """An animation of x_t (left) and x̂₀ (right) over the sampling steps of ``result`` (as for
    :func:`sampling_strip`), up to ``ncol`` pictures a row. Show it in a notebook with
    ``display(HTML(sampling_film(result).to_jshtml(default_mode="once")))``."""
    from matplotlib import animation

    check_int("n_frames", n_frames, min_value=1)
    ncol = min(check_int("ncol", ncol, min_value=1), result.trajectory[0].shape[0])
    picks = torch.linspace(0, len(result.x0_preds) - 1, n_frames).round().long().tolist()
    fig, (ax_x, ax_0) = plt.subplots(1, 2, figsize=(6, 3.2), dpi=60)
    im_x = ax_x.imshow(to_display(result.trajectory[0].cpu(), nrow=ncol), cmap="gray", vmin=0, vmax=1)
    im_0 = ax_0.imshow(to_display(result.x0_preds[0].clamp(-1, 1).cpu(), nrow=ncol), cmap="gray", vmin=0, vmax=1)
    for ax in (ax_x, ax_0):
        ax.set_axis_off()

    def frame(k: int):
        i = picks[k]
        im_x.set_data(to_display(result.trajectory[i].cpu(), nrow=ncol))
        im_0.set_data(to_display(result.x0_preds[i].clamp(-1, 1).cpu(), nrow=ncol))
        ax_x.set_title(f"x_t, t = {int(result.timesteps[i])}")
        ax_0.set_title("guess x̂₀")
        return im_x, im_0

    anim = animation.FuncAnimation(fig, frame, frames=len(picks), interval=120, blit=False)
    plt.close(fig)
    return anim


# ----------------------------------------------------------------------------- steps versus quality (chapter 06)
def _spread_ticks(values: Iterable[int], min_ratio: float = 1.2) -> list[int]:
    """Tick positions for a log axis: the values, dropping the smaller of two closer than ``min_ratio``
    (9 and 10 NFE would print on top of each other)."""
    ticks: list[int] = []
    for v in sorted(set(values), reverse=True):
        if not ticks or ticks[-1] / v >= min_ratio:
            ticks.append(v)
    return sorted(ticks)


def plot_steps_vs_quality(
    rows: Sequence[dict[str, Any]], *, tolerance: float = 1.1, title: str | None = None
) -> plt.Figure:
    """FID against network calls (left) and wall time against network calls (right), one line per
    sampler, with the most expensive row's FID as a dashed line and its ×``tolerance`` band.
    ``rows``: the output of :func:`course_lib.steps_table.steps_vs_quality` (Song et al. 2021, Table 1)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    from .steps_table import SAMPLER_NAMES, reference_fid  # the table's names (imports samplers: kept lazy)

    tolerance = check_float("tolerance", tolerance, min_value=1.0)
    ref = reference_fid(rows)
    fig, (ax_q, ax_t) = plt.subplots(1, 2, figsize=(11, 4))
    groups: dict[str, list[dict[str, Any]]] = {}  # one line per (sampler, spacing, η, σ_max)
    for r in rows:
        name = SAMPLER_NAMES[r["sampler"]] + ("" if r["sampler"] == "ddpm" else f" {r['spacing']}")
        name += f" η={r['eta']:g}" if r["eta"] else ""
        name += f" σmax={r['sigma_max']:g}" if r.get("sigma_max") is not None else ""
        if r.get("clip_sample", r["sampler"] == "ddpm") != (r["sampler"] == "ddpm"):
            name += " clip" if r["clip_sample"] else " no-clip"
        groups.setdefault(name, []).append(r)
    for name, group in groups.items():
        group = sorted(group, key=lambda r: r["nfe"])
        x = [r["nfe"] for r in group]
        ax_q.plot(x, [r["fid"] for r in group], "o-", label=name)
        ax_t.plot(x, [r["seconds"] for r in group], "o-", label=name)
    ax_q.axhline(ref, color="k", ls="--", lw=1, label=f"most calls: FID {ref:.2f}")
    ax_q.axhspan(ref, ref * tolerance, color="k", alpha=0.08, label=f"within ×{tolerance:g}")
    plain = FuncFormatter(lambda v, _: f"{v:g}")  # 20, not 2×10¹
    for ax, ylabel in ((ax_q, "FID (lower is better)"), (ax_t, "sampling wall time (s)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(_spread_ticks(r["nfe"] for r in rows))
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_formatter(plain)
            axis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("network evaluations per image (NFE)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3, which="both")
    ax_q.legend(fontsize=8)
    fig.suptitle(title or "steps versus quality")
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- memorisation (chapter 10)
def plot_nearest(
    samples: torch.Tensor,
    train: torch.Tensor,
    neighbours: Any,
    *,
    k: int = 8,
    sort_by: SortBy = "ratio",
    title: str | None = None,
) -> plt.Figure:
    """The ``k`` most copy-like samples (top row) above their nearest training images (bottom row).

    ``neighbours``: the :func:`course_lib.metrics.nearest_training_images` result for ``samples``
    against ``train`` (the ratio test of Carlini et al. 2023, §4). ``sort_by="ratio"`` (nearest /
    second-nearest, default) or ``"distance"``.
    """
    check_int("k", k, min_value=1)
    check_choice("sort_by", sort_by, SORT_BYS)
    key = neighbours.ratio if sort_by == "ratio" else neighbours.distance
    picks = key.argsort()[: min(k, len(key))].cpu()
    fig, axes = plt.subplots(2, len(picks), figsize=(1.6 * len(picks), 4.4), squeeze=False)
    for col, i in enumerate(picks.tolist()):
        j = int(neighbours.index[i])
        show_images(samples[i : i + 1].cpu(), nrow=1, ax=axes[0, col])
        axes[0, col].set_title(f"sample {i}", fontsize=8)
        show_images(train[j : j + 1].cpu(), nrow=1, ax=axes[1, col])
        axes[1, col].set_title(f"train {j}\nd={float(neighbours.distance[i]):.2f} r={float(neighbours.ratio[i]):.2f}", fontsize=8)
    fig.suptitle(title or f"closest sample/training pairs (sorted by {sort_by})", fontsize=10)
    fig.tight_layout()
    return fig
