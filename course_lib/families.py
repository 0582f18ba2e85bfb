"""Three families side by side (chapter 09): VAE, GAN and diffusion on the same digits, the same budget.

- :func:`check_families` / :func:`check_budget` — the chapter's parameters, checked by name.
- :func:`class_coverage` — which digits an *unconditional* model draws: the share of each class the
  shipped classifier reads, and the entropy of those shares in bits (log₂ 10 ≈ 3.32 when all ten
  are equally common; a GAN that collapsed onto a few digits scores far less — mode collapse made visible).
- :func:`timed` — seconds a function takes (for the time to make 1,000 pictures).
- :func:`lerp_codes` — straight-line walks between two codes (VAE, GAN); diffusion walks between two
  starting noises with :func:`course_lib.samplers.slerp` instead (chapter 06).
- :func:`plot_trilemma` — quality, coverage and speed of each family on one figure (Xiao et al. 2022,
  "Tackling the generative learning trilemma with denoising diffusion GANs", Fig. 1).
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Literal, Mapping, NamedTuple, Sequence, get_args

import torch

from .batches import sample_in_batches
from .metrics import predicted_classes
from .models.classifier import NUM_CLASSES
from .settings import Profile, check_choice, check_float

Family = Literal["vae", "gan", "diffusion"]  # the recipe box, the artist and the detective, the patient eraser
FAMILIES: tuple[str, ...] = get_args(Family)
FAMILY_NAMES = {"vae": "VAE", "gan": "GAN", "diffusion": "diffusion", "diffusion_longer": "diffusion, trained longer"}


def check_family(family: Family) -> Family:
    """``family`` if it is one of :data:`FAMILIES`, else ValueError naming the parameter and the choices."""
    return check_choice("family", family, FAMILIES)


def check_families(families: str | Sequence[str]) -> list[str]:
    """The chapter's ``families`` parameter as a list of distinct names from :data:`FAMILIES`, in order.

    Accepts one name (``"gan"``), names separated by commas (``"vae,gan"``) or a list of names; any
    other value, an unknown name or an empty choice raises ValueError naming ``families``.
    """
    names = [n.strip() for n in families.split(",")] if isinstance(families, str) else families
    options = ", ".join(repr(f) for f in FAMILIES)
    if not isinstance(names, (list, tuple)) or not names or not all(isinstance(n, str) for n in names) \
            or any(n not in FAMILIES for n in names):
        raise ValueError(f"families={families!r} is not allowed: give one or more of {options} "
                         "(a list, or one string with commas)")
    return list(dict.fromkeys(names))


def check_budget(budget_seconds: float) -> float:
    """The race's training budget in seconds: a number > 0 (ValueError naming ``budget_seconds`` otherwise)."""
    value = check_float("budget_seconds", budget_seconds, min_value=0.0)
    if value <= 0:
        raise ValueError(f"budget_seconds must be > 0 (seconds of training for each family), got {budget_seconds}")
    return value


class Coverage(NamedTuple):
    shares: torch.Tensor  # (10,): fraction of the samples read as each digit
    entropy_bits: float  # −Σ p log₂ p; log₂ 10 ≈ 3.32 for a perfectly even spread


def class_coverage(images: torch.Tensor) -> Coverage:
    """Share of each digit the shipped classifier reads among ``images`` (N, 1, 32, 32) in [−1, 1], and its entropy."""
    counts = torch.bincount(predicted_classes(images), minlength=NUM_CLASSES).double()
    shares = counts / counts.sum()
    nz = shares[shares > 0]
    return Coverage(shares.float(), max(0.0, float(-(nz * nz.log2()).sum())))


MAX_ENTROPY_BITS = math.log2(NUM_CLASSES)


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """``(fn(), seconds)`` — wall-clock seconds of one call."""
    tic = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - tic


def lerp_codes(z0: torch.Tensor, z1: torch.Tensor, steps: int) -> torch.Tensor:
    """``steps`` codes on the straight line from ``z0`` (d,) to ``z1`` (d,): (steps, d)."""
    w = torch.linspace(0, 1, steps)[:, None]
    return (1 - w) * z0[None] + w * z1[None]


def plot_trilemma(table: Mapping[str, Mapping[str, float]], *, floor_fid: float | None = None):
    """Three panels, one bar per family: quality (FID, lower is better), coverage (class entropy, bits)
    and speed (seconds per 1,000 pictures, log scale). ``table[name]`` holds ``fid``, ``class_entropy``,
    ``sample_seconds_per_1000``. Returns the figure."""
    import matplotlib.pyplot as plt

    names = list(table)
    labels = [FAMILY_NAMES.get(n, n).replace(", ", ",\n") for n in names]
    colors = {"vae": "tab:blue", "gan": "tab:red", "diffusion": "tab:green", "diffusion_longer": "darkgreen"}
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    panels = [("fid", "quality: FID (lower is better)", False), ("class_entropy", "coverage: class entropy, bits", False),
              ("sample_seconds_per_1000", "speed: s per 1,000 pictures (log)", True)]
    for ax, (key, title, log) in zip(axes, panels):
        ax.bar(labels, [table[n][key] for n in names], color=[colors.get(n, "gray") for n in names])
        ax.set_title(title, fontsize=10)
        if log:
            ax.set_yscale("log")
        ax.tick_params(axis="x", labelsize=8)
    if floor_fid is not None:
        axes[0].axhline(floor_fid, color="k", ls="--", lw=1, label="real vs real")
        axes[0].legend(fontsize=8)
    axes[1].axhline(MAX_ENTROPY_BITS, color="k", ls="--", lw=1, label="all ten equally")
    axes[1].legend(fontsize=8, loc="lower right")
    fig.suptitle("the generative trilemma: good pictures, every kind of picture, fast — pick two?", fontsize=11)
    fig.tight_layout()
    return fig


def plot_gan_losses(g_losses: Sequence[float], d_losses: Sequence[float], *, window: int = 25):
    """The artist's and the detective's losses over training (raw, faint; running mean, bold)."""
    import matplotlib.pyplot as plt

    def smooth(v: Sequence[float]) -> torch.Tensor:
        t = torch.tensor(list(v), dtype=torch.float64)
        k = max(1, min(window, len(t)))
        return torch.nn.functional.avg_pool1d(t[None, None], k, stride=1)[0, 0]

    fig, ax = plt.subplots(figsize=(7, 3))
    for v, name, color in ((g_losses, "artist (G): −D(G(z))", "tab:red"), (d_losses, "detective (D): hinge", "tab:blue")):
        ax.plot(v, color=color, alpha=0.25, lw=0.8)
        s = smooth(v)
        ax.plot(range(len(v) - len(s), len(v)), s, color=color, lw=2, label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend(fontsize=8)
    ax.set_title("two losses that never settle: a game, not a descent", fontsize=10)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- the race
RACE_SAMPLER, RACE_BATCH = "dpmpp_2m_sde", 250  # chapter 06's best sampler, the library's default (chapter 10 too)
DEFAULT_STEPS = {"smoke": 5, "cpu": 25, "gpu": 50}  # network passes per picture: chapter 10's step counts


def load_family(name: Family, profile: Profile = "auto", *, device: str | torch.device | None = None,
                progress: bool = True) -> tuple[Callable[[int, torch.Generator], torch.Tensor], dict[str, Any]]:
    """``(draw, info)`` for one contestant: ``draw(n, generator)`` makes n pictures (N, 1, 32, 32) on the CPU.

    ``name``: "vae", "gan", "diffusion" (chapter 04's run at the race's step) or "diffusion_longer"
    (chapter 04's final model). ``info`` holds at least ``train_seconds``, ``steps`` and ``num_steps``
    (network passes per picture). Each model is trained once and cached (course_lib.pretrained).
    """
    from . import pretrained
    from .samplers import sample

    check_choice("name", name, (*FAMILIES, "diffusion_longer"))
    if name == "vae":
        model, info = pretrained.vae_model(profile, device=device, progress=progress)
        return (lambda n, g: model.sample(n, generator=g).cpu()), {**info, "num_steps": 1, "model": model}
    if name == "gan":
        model, info = pretrained.gan_model(profile, device=device, progress=progress)
        return (lambda n, g: model.sample(n, generator=g).cpu()), {**info, "num_steps": 1, "model": model}
    if name == "diffusion":
        model, schedule, info = pretrained.digits_race_model(profile, device=device, progress=progress)
    else:
        model, schedule, info = pretrained.digits_model(profile, device=device, progress=progress)
    steps = DEFAULT_STEPS[info["profile"]]

    def draw(n: int, g: torch.Generator) -> torch.Tensor:
        with torch.no_grad():
            return sample(model, schedule, (n, 1, 32, 32), sampler=RACE_SAMPLER, num_steps=steps, generator=g,
                          progress=False).cpu()

    return draw, {**info, "num_steps": steps, "model": model, "schedule": schedule}


def draw_in_batches(draw: Callable[[int, torch.Generator], torch.Tensor], n: int, *, seed: int = 0,
                    batch_size: int = RACE_BATCH) -> tuple[torch.Tensor, float]:
    """``(n pictures clamped to [−1, 1], seconds)``: ``draw`` called ``batch_size`` at a time from one seeded generator."""
    tic = time.perf_counter()
    images = sample_in_batches(lambda b: draw(b.size, b.generator), n, batch_size=batch_size, seed=seed)  # one generator
    return images, time.perf_counter() - tic


def score_family(real: torch.Tensor, fake: torch.Tensor, *, seed: int = 0) -> dict[str, Any]:
    """FID, KID, class shares and class entropy of ``fake`` against ``real`` (digit features; chapter 10)."""
    from .metrics import fid, kid

    cov = class_coverage(fake)
    k_mean, k_std = kid(real, fake, subsets=100, seed=seed)
    return {"fid": fid(real, fake), "kid": k_mean, "kid_std": k_std, "class_entropy": cov.entropy_bits,
            "class_shares": [round(float(s), 4) for s in cov.shares]}
