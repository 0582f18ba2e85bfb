"""Steps versus quality: how many network calls each sampler needs for good pictures (chapter 06).

The table of Song et al. 2021 ("DDIM"), Table 1, on the course's digits model: for each sampler and
step count, draw ``n_samples`` images, time it, and score them with FID against real digits
(:func:`course_lib.metrics.fid`); :func:`flow_steps_vs_quality` adds rows for velocity models (chapter 12)
in the same format. Chapter 06 and ``benchmarks/samplers.py`` both call
:func:`steps_vs_quality` on :func:`table_configs`' rows, so the notebook's table and the benchmark's are
the same computation, at different sizes: chapter 06 draws its ``fid_samples`` images per row (200 in
the ``cpu`` profile), the benchmark :func:`samples_per_row` (1,000); README "Performance" → "Steps
versus quality (chapter 06)" holds the benchmark's table and says how the two differ.
:func:`course_lib.viz.plot_steps_vs_quality` draws it. The batches go through
:func:`course_lib.evaluation.sample_in_batches`, the package's one batch-sampling loop.

Fair comparison: every row starts from the *same* starting noises (common random numbers: row-to-row
differences are the samplers', not the luck of the draw) and scores the same number of images (FID
is biased upwards at small n, by an amount that depends on n). The cost of a row is counted in
network function evaluations (NFE), the quantity every fast-sampler paper compares at.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from tqdm.auto import tqdm

from .evaluation import Batch, sample_in_batches
from .flow import FLOW_DPM_SAMPLERS, FLOW_SAMPLERS, FlowSampler, check_shift, flow_network_evaluations, sample_flow
from .metrics import fid
from .samplers import DISCRETE_SAMPLERS, SAMPLERS, Sampler, sample
from .schedules import SPACINGS, NoiseSchedule, Spacing
from .settings import Profile, check_bool, check_choice, check_float, check_int, resolve_profile
from .solvers import EDM_SIGMA_MAX, SIGMA_SPACINGS, SigmaSpacing, check_sigma_max, network_calls, steps_within

SAMPLER_NAMES: dict[str, str] = {
    "ddpm": "DDPM", "ddim": "DDIM", "euler": "Euler", "heun": "Heun", "dpmpp_2m": "DPM-Solver++(2M)",
    "dpmpp_2m_sde": "SDE-DPM-Solver++(2M)",
}


def network_evaluations(sampler: Sampler, num_steps: int) -> int:
    """Network calls of ``num_steps`` steps: N for ddpm, ddim, euler and dpmpp_2m; 2N − 1 for heun
    (its last step, to σ = 0, has no correction; Karras et al. 2022, Algorithm 1). The one account of
    every sampler's calls, flow samplers included, is :func:`course_lib.solvers.network_calls`."""
    return network_calls(check_choice("sampler", sampler, SAMPLERS), num_steps)


def steps_for_nfe(sampler: Sampler, nfe: int) -> int:
    """The most steps ``sampler`` can take within ``nfe`` network calls (heun: ⌊(nfe + 1)/2⌋)."""
    return steps_within(check_choice("sampler", sampler, SAMPLERS), nfe)


@dataclass(frozen=True)
class SamplerConfig:
    """One row of the table: a sampler, its step count, where the steps go, DDIM's η, and clipping.

    ``spacing``: ``leading`` | ``trailing`` | ``linspace`` for every sampler, ``karras`` too for
    the σ-samplers (euler / heun / dpmpp_2m / dpmpp_2m_sde), with ``sigma_max`` its starting noise
    level (None: σ(T−1)). ``clip_sample``: clamp every guess x̂₀ to [−1, 1]; None = on for ddpm, off for
    the others (this table's own default, which every row passes to :func:`course_lib.samplers.sample`
    explicitly: ``sample``'s own default also clamps ddim).
    """

    sampler: Sampler
    num_steps: int
    spacing: SigmaSpacing = "leading"
    eta: float = 0.0
    clip_sample: bool | None = None
    sigma_max: float | None = None

    def __post_init__(self) -> None:
        check_choice("sampler", self.sampler, SAMPLERS)
        check_int("num_steps", self.num_steps, min_value=1)
        check_choice("spacing", self.spacing, SPACINGS if self.sampler in DISCRETE_SAMPLERS else SIGMA_SPACINGS)
        check_float("eta", self.eta, min_value=0.0, max_value=1.0)
        if self.eta != 0.0 and self.sampler != "ddim":
            raise ValueError(f"eta={self.eta} is only used by sampler='ddim'; leave eta=0 for {self.sampler!r}")
        if self.clip_sample is not None:
            check_bool("clip_sample", self.clip_sample)
        check_sigma_max(self.spacing, self.sigma_max)  # the one "sigma_max only with karras" rule

    @property
    def clips(self) -> bool:
        """Whether x̂₀ is clamped (``clip_sample``, or the sampler's default)."""
        return self.sampler == "ddpm" if self.clip_sample is None else self.clip_sample

    @property
    def nfe(self) -> int:
        """Network calls per image."""
        return network_evaluations(self.sampler, self.num_steps)

    @property
    def label(self) -> str:
        """A short name, e.g. ``DDIM-20 trailing`` or ``Heun-10 karras clip`` (clip: only when not the default)."""
        name = f"{SAMPLER_NAMES[self.sampler]}-{self.num_steps}"
        if self.eta:
            name += f" η={self.eta:g}"
        if not (self.sampler == "ddpm" and self.num_steps >= 1000):
            name += f" {self.spacing}"
        if self.sigma_max is not None:
            name += f" σmax={self.sigma_max:g}"
        if self.clips != (self.sampler == "ddpm"):
            name += " clip" if self.clips else " no-clip"
        return name


def table_configs(
    *, ddim_steps: Sequence[int] = (10, 20, 50, 100), fast_nfe: Sequence[int] = (10, 20),
    ddim_spacing: Spacing = "trailing", ode_spacing: SigmaSpacing = "karras", clip_sample: bool = True,
    num_train_timesteps: int = 1000, ddpm_steps: int | None = None, sigma_max: float | None = EDM_SIGMA_MAX,
) -> list[SamplerConfig]:
    """The rows of the chapter-06 table: DDPM with every step (or ``ddpm_steps``, respaced: a quick
    stand-in for the smoke profile), DDIM at ``ddim_steps``, and Euler, Heun, DPM-Solver++(2M) and its
    SDE version at ``fast_nfe`` network calls (Heun: the most steps within that budget).

    DDIM starts at t = T−1 (trailing spacing) and the σ-samplers at ``sigma_max`` (karras spacing;
    EDM's 80 by default, where the cosine schedule's σ(T−1) ≈ 20,000 would waste most steps on pure
    noise). With ``clip_sample=True`` every row clamps the guess x̂₀ to [−1, 1] as DDPM does. Both
    matter for an ε-prediction model on the cosine schedule: at t = T−1 its guess divides by
    √ᾱ ≈ 5·10⁻⁵, and one unclamped wild guess ruins a 20-step run, while starting later (leading
    spacing) begins from static at the wrong noise level. Clamping x̂₀ is the static thresholding that
    DPM-Solver++ allows because it works with x̂₀ (Lu et al. 2022, §4). Chapter 06 and
    ``benchmarks/samplers.py --spacings`` show the measurements behind these defaults.
    """
    T = check_int("num_train_timesteps", num_train_timesteps, min_value=1)
    check_bool("clip_sample", clip_sample)
    ddpm_steps = T if ddpm_steps is None else check_int("ddpm_steps", ddpm_steps, min_value=1, max_value=T)
    rows = [SamplerConfig("ddpm", ddpm_steps, "trailing" if ddpm_steps < T else "leading")]
    rows += [SamplerConfig("ddim", check_int("ddim_steps", n, min_value=1, max_value=T), ddim_spacing,
                           clip_sample=clip_sample) for n in ddim_steps]
    cap = sigma_max if ode_spacing == "karras" else None
    for sampler in ("euler", "heun", "dpmpp_2m", "dpmpp_2m_sde"):
        rows += [SamplerConfig(sampler, steps_for_nfe(sampler, n), ode_spacing, clip_sample=clip_sample, sigma_max=cap)
                 for n in fast_nfe]
    return rows


def samples_per_row(profile: Profile = "auto") -> int:
    """Images per table row for a profile, as ``benchmarks/samplers.py`` draws them: smoke 8 (only proves
    it runs), cpu 1,000 (the size of the MNIST-5000 test split we compare against), gpu 2,000. Chapter 06
    draws fewer to fit its time (its ``fid_samples`` parameter: smoke 8, cpu 200, gpu 1,000)."""
    return {"smoke": 8, "cpu": 1000, "gpu": 2000}[resolve_profile(profile)]


def sample_with_config(
    model: Callable[..., torch.Tensor], schedule: NoiseSchedule, config: SamplerConfig, noise: torch.Tensor, *,
    seed: int = 0, batch_size: int = 250, progress: bool = False,
) -> torch.Tensor:
    """Images from the starting noises ``noise`` (N, C, H, W) with one sampler configuration, batch by batch.

    The per-step noise of DDPM / DDIM with η > 0 / the SDE solver comes from a generator seeded
    ``seed + 1 + batch`` (:func:`course_lib.evaluation.sample_in_batches` with ``seeds="per_batch"``).
    Returns the images on the CPU, clamped to [−1, 1] (as any image file would be).
    """
    if not isinstance(config, SamplerConfig):
        raise ValueError(f"config must be a SamplerConfig, got {type(config).__name__}")
    if not isinstance(noise, torch.Tensor) or noise.dim() != 4:
        raise ValueError(f"noise must be starting noises (N, C, H, W), got {getattr(noise, 'shape', type(noise).__name__)}")
    seed = check_int("seed", seed, min_value=0)

    def draw(b: Batch) -> torch.Tensor:
        return sample(model, schedule, tuple(b.noise.shape), sampler=config.sampler, num_steps=config.num_steps,
                      eta=config.eta, spacing=config.spacing, sigma_max=config.sigma_max, clip_sample=config.clips,
                      noise=b.noise, progress=False, generator=b.generator)

    return sample_in_batches(draw, noise.shape[0], batch_size=batch_size, seed=seed + 1, seeds="per_batch",
                             noise=noise, progress=progress, desc=config.label)


def steps_vs_quality(
    model: Callable[..., torch.Tensor],
    schedule: NoiseSchedule,
    real: torch.Tensor,
    configs: Sequence[SamplerConfig],
    n_samples: int,
    seed: int = 0,
    *,
    batch_size: int = 250,
    progress: bool = True,
    fid_fn: Callable[[torch.Tensor, torch.Tensor], float] | None = None,
) -> list[dict[str, Any]]:
    """FID and wall time of each sampler configuration (chapter 06; Song et al. 2021, Table 1).

    Draws ``n_samples`` starting noises once (from ``seed``), runs every configuration from those same
    noises and scores the images with ``fid_fn(real, fake)`` (default :func:`course_lib.metrics.fid`
    with the digits features; ``real`` NCHW in [−1, 1]). Returns one dict per configuration, in order:
    ``label, sampler, steps, nfe, spacing, eta, clip_sample, sigma_max, fid, seconds`` — ``seconds`` is the sampling wall time
    of all ``n_samples`` images (FID excluded), on the model's device.
    """
    n_samples = check_int("n_samples", n_samples, min_value=2)
    seed = check_int("seed", seed, min_value=0)
    configs = list(configs)
    if not configs or not all(isinstance(c, SamplerConfig) for c in configs):
        raise ValueError("configs must be a non-empty list of SamplerConfig (see table_configs())")
    if not isinstance(real, torch.Tensor) or real.dim() != 4:
        raise ValueError(f"real must be images (N, C, H, W) in [-1, 1], got {getattr(real, 'shape', type(real).__name__)}")
    fid_fn = fid if fid_fn is None else fid_fn
    noise = torch.randn((n_samples, *real.shape[1:]), generator=torch.Generator().manual_seed(seed))  # (N, C, H, W)
    rows = []
    for config in tqdm(configs, disable=not progress, desc="samplers", leave=False):
        tic = time.perf_counter()
        fake = sample_with_config(model, schedule, config, noise, seed=seed, batch_size=batch_size, progress=progress)
        seconds = time.perf_counter() - tic
        rows.append({"label": config.label, "sampler": config.sampler, "steps": config.num_steps, "nfe": config.nfe,
                     "spacing": config.spacing, "eta": config.eta, "clip_sample": config.clips, "sigma_max": config.sigma_max,
                     "fid": float(fid_fn(real, fake.to(real.device))),
                     "seconds": seconds})
    return rows


def reference_fid(rows: Sequence[dict[str, Any]]) -> float:
    """The FID of the row with the most network calls (DDPM with every step, in the default table)."""
    if not rows:
        raise ValueError("rows is empty; pass the output of steps_vs_quality()")
    return float(max(rows, key=lambda r: r["nfe"])["fid"])


def best_within(rows: Sequence[dict[str, Any]], nfe: int) -> dict[str, Any]:
    """The row with the lowest FID among those that use at most ``nfe`` network calls."""
    nfe = check_int("nfe", nfe, min_value=1)
    fitting = [r for r in rows if r["nfe"] <= nfe]
    if not fitting:
        raise ValueError(f"no row uses at most nfe={nfe} network calls; the cheapest uses {min(r['nfe'] for r in rows)}")
    return min(fitting, key=lambda r: r["fid"])


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as a fixed-width text table, with each FID relative to the most expensive row."""
    ref = reference_fid(rows)
    w = max([len("sampler")] + [len(r["label"]) for r in rows])
    lines = [f"{'sampler':<{w}} {'steps':>5} {'NFE':>5} {'FID':>8} {'× ref':>6} {'seconds':>8}", "-" * (w + 37)]
    for r in rows:
        rel = r["fid"] / ref if ref > 0 else math.nan
        lines.append(f"{r['label']:<{w}} {r['steps']:>5} {r['nfe']:>5} {r['fid']:>8.3f} {rel:>6.2f} {r['seconds']:>8.1f}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- flow rows (chapter 12)
#: the flow rows of the table: (model name, sampler, network calls); midpoint takes calls/2 steps
FLOW_TABLE_NFE: tuple[int, ...] = (1, 2, 4, 10, 20)


#: how the table names the flow samplers that are not a plain capitalised word
FLOW_SAMPLER_NAMES: dict[str, str] = {"dpmpp_2m": "DPM-Solver++(2M)", "dpmpp_2m_sde": "SDE-DPM-Solver++(2M)"}


@dataclass(frozen=True)
class FlowRowConfig:
    """One flow row: which velocity model (``model``: a name, e.g. ``flow`` or ``reflow``), its sampler
    (:data:`course_lib.flow.FLOW_SAMPLERS`), steps and timestep shift (:func:`course_lib.flow.sample_flow`)."""

    model: str
    sampler: FlowSampler
    num_steps: int
    shift: float = 1.0

    def __post_init__(self) -> None:
        check_choice("sampler", self.sampler, FLOW_SAMPLERS)
        check_int("num_steps", self.num_steps, min_value=1)
        check_shift(self.shift)

    @property
    def nfe(self) -> int:
        return flow_network_evaluations(self.sampler, self.num_steps)

    @property
    def label(self) -> str:
        """E.g. ``flow Euler-10``, ``reflow Midpoint-2 shift 3`` or ``flow SDE-DPM-Solver++(2M)-10``."""
        sampler = FLOW_SAMPLER_NAMES.get(self.sampler, self.sampler.capitalize())
        name = f"{self.model} {sampler}-{self.num_steps}"
        return name + (f" shift {self.shift:g}" if self.shift != 1.0 else "")


def flow_table_configs(models: Sequence[str] = ("flow", "reflow"), *, nfe: Sequence[int] = FLOW_TABLE_NFE,
                       shift: float = 1.0) -> list[FlowRowConfig]:
    """Euler at every budget in ``nfe`` and midpoint at every even one, for each named model; then, at
    every budget of at least 2 calls, chapter 06's DPM-Solver++(2M) and its SDE version on the flow
    read as a denoiser (:func:`course_lib.flow.flow_denoiser`)."""
    rows = []
    for name in models:
        rows += [FlowRowConfig(name, "euler", n, shift) for n in nfe]
        rows += [FlowRowConfig(name, "midpoint", n // 2, shift) for n in nfe if n >= 2 and n % 2 == 0]
        rows += [FlowRowConfig(name, dpm, n, shift) for dpm in FLOW_DPM_SAMPLERS for n in nfe if n >= 2]
    return rows


def score_rows(
    models: dict[str, Any], real: torch.Tensor, configs: Sequence[Any], n_samples: int, seed: int,
    draw: Callable[[Batch, Any], torch.Tensor], describe: Callable[[Any], dict[str, Any]], *, batch_size: int = 250,
    progress: bool = True, fid_fn: Callable[[torch.Tensor, torch.Tensor], float] | None = None, desc: str = "samplers",
) -> list[dict[str, Any]]:
    """The rows of a steps-vs-quality table for any family of models: each config's pictures, drawn by
    ``draw(batch, config)`` from the same starting noises (seed ``seed``; the per-step draws seeded ``seed + 1 +
    batch``), their FID against ``real`` and the wall time, with ``describe(config)`` (label, sampler, steps, nfe,
    spacing, eta, clip_sample, sigma_max). The flow rows of chapter 12 and the one-step rows of chapter 15 use it."""
    n_samples = check_int("n_samples", n_samples, min_value=2)
    seed = check_int("seed", seed, min_value=0)
    configs = list(configs)
    missing = sorted({c.model for c in configs} - set(models))
    if missing:
        raise ValueError(f"configs name models {missing} that are not in models (have: {sorted(models)})")
    fid_fn = fid if fid_fn is None else fid_fn
    noise = torch.randn((n_samples, *real.shape[1:]), generator=torch.Generator().manual_seed(seed))  # (N, C, H, W)
    rows = []
    for config in tqdm(configs, disable=not progress, desc=desc, leave=False):
        row = describe(config)
        tic = time.perf_counter()
        fake = sample_in_batches(lambda b, c=config: draw(b, c), n_samples, batch_size=batch_size, seed=seed + 1,
                                 seeds="per_batch", noise=noise, progress=progress, desc=row["label"])
        seconds = time.perf_counter() - tic
        rows.append({**row, "fid": float(fid_fn(real, fake.to(real.device))), "seconds": seconds})
    return rows


def flow_steps_vs_quality(
    models: dict[str, Callable[..., torch.Tensor]], real: torch.Tensor, configs: Sequence[FlowRowConfig],
    n_samples: int, seed: int = 0, *, batch_size: int = 250, progress: bool = True,
    fid_fn: Callable[[torch.Tensor, torch.Tensor], float] | None = None,
) -> list[dict[str, Any]]:
    """:func:`steps_vs_quality` for velocity models (chapter 12): the same starting noises (same ``seed``),
    the same FID, rows in the same format (``spacing`` holds ``shift …``; ``eta`` 0, no clamp)."""
    def draw(b: Batch, c: FlowRowConfig) -> torch.Tensor:
        return sample_flow(models[c.model], tuple(b.noise.shape), sampler=c.sampler, num_steps=c.num_steps,
                           shift=c.shift, noise=b.noise, generator=b.generator)

    def describe(c: FlowRowConfig) -> dict[str, Any]:
        return {"label": c.label, "sampler": f"{c.model}_{c.sampler}", "steps": c.num_steps, "nfe": c.nfe,
                "spacing": f"shift {c.shift:g}", "eta": 0.0, "clip_sample": False, "sigma_max": None}

    return score_rows(models, real, configs, n_samples, seed, draw, describe, batch_size=batch_size, progress=progress,
                      fid_fn=fid_fn, desc="flow samplers")


def best_ratio_within(rows: Sequence[dict[str, Any]], nfe: int) -> float:
    """The lowest FID among rows with at most ``nfe`` network calls, divided by the reference row's (DDPM-1000)."""
    return best_within(rows, nfe)["fid"] / reference_fid(rows)

