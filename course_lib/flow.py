"""Flow matching and rectified flow: the magic eraser walks in a straight line (chapter 12).

**The path.** Pick a picture x₀ and a static ε ~ N(0, I) and join them by a straight line
(Lipman et al. 2023, "Flow Matching for Generative Modeling", §4.1 with σ_min = 0; Liu et al. 2023,
"Flow Straight and Fast", eq. 1; Esser et al. 2024, "Scaling Rectified Flow Transformers", eq. 3 —
the SD3 and diffusers convention, t = 1 is pure noise):

    x_t = (1 − t)·x₀ + t·ε,        dx_t/dt = ε − x₀   (the *conditional velocity*, constant along the line)

**The loss.** A network v_θ(x_t, t) regresses the velocity: L = E‖v_θ(x_t, t) − (ε − x₀)‖². Its
minimiser is the *marginal velocity* v*(x, t) = E[ε − x₀ | x_t = x], and the ODE dx/dt = v*(x, t)
carries the noise distribution at t = 1 to the data distribution at t = 0 (Lipman et al. 2023,
Theorem 1; Liu et al. 2023, Theorem 3.3): the continuity equation of each straight line, averaged
over the lines through x, is the continuity equation of the marginal path with velocity v*.
The times t are drawn uniformly or *logit-normally*, t = sigmoid(m + s·n), n ~ N(0, 1), which spends
more of the training on the middle of the path (Esser et al. 2024, §3.1, eq. 19; SD3 uses m = 0, s = 1).

**Sampling.** Integrate from t = 1 to 0 on a grid of times ("sigmas" in diffusers), with Euler,
Heun or the midpoint rule. The grid can be pushed towards the noisy end by the *timestep shift*
σ ↦ shift·σ / (1 + (shift − 1)·σ) (Esser et al. 2024, §5.3.2, eq. 23): at higher resolution, or
for a model whose paths bend most near the noise, more steps go where they matter.

**Reflow** (Liu et al. 2023, §2.2, Algorithm 1): draw pairs (ε, x̂₀ = ODE(ε)) with a trained flow,
then train again on straight lines between *those* pairs. The new coupling has paths that do not
cross, so the learned ODE is straighter and a few Euler steps (even one) land close to the end.

The network is called ``model(x_t, t·time_scale, cond)`` with ``time_scale = 1000`` by default, so
the course's U-Net and MLP, whose time embedding was made for t ∈ {0, …, 999}, work unchanged (and
diffusers' ``FlowMatchEulerDiscreteScheduler`` hands its transformer ``timestep = σ·1000`` too).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Callable, Literal, NamedTuple, Sequence, get_args

import numpy as np
import torch

from .guidance import cfg_model
from .forward import PREDICTION_TYPES, PredictionType, split_prediction_at
from .sampler_inputs import check_sampling_inputs
from .schedules import NoiseSchedule, broadcast_to, sigma_to_t
from .solvers import EDM_SIGMA_MAX, EDM_SIGMA_MIN, flow_denoiser, karras_sigmas, network_calls, solve_flow, steps_within
from .settings import capped, check_bool, check_choice, check_float, check_int, in_half_precision

FlowSampler = Literal["euler", "heun", "midpoint", "dpmpp_2m", "dpmpp_2m_sde"]
TimestepSampling = Literal["uniform", "logit_normal", "u_shaped"]
FlowLoss = Literal["mse", "pseudo_huber"]
FLOW_SAMPLERS: tuple[str, ...] = get_args(FlowSampler)
TIMESTEP_SAMPLINGS: tuple[str, ...] = get_args(TimestepSampling)
FLOW_LOSSES: tuple[str, ...] = get_args(FlowLoss)
#: what the network's time input is multiplied by: t ∈ [0, 1] → t·1000, the range of the course's embeddings
TIME_SCALE = 1000.0
#: the steepness a of the ``u_shaped`` time density ∝ exp(a·t) + exp(a·(1 − t)) (Lee et al. 2024 use 4)
U_SHAPE_A = 4.0
#: the samplers that read the flow as a denoiser and run chapter 06's DPM-Solver++(2M) on it (N calls each);
#: their noise levels σ = t/(1 − t) are EDM's karras grid (:data:`~course_lib.solvers.EDM_SIGMA_MAX`, ``EDM_SIGMA_MIN``)
FLOW_DPM_SAMPLERS: tuple[str, ...] = ("dpmpp_2m", "dpmpp_2m_sde")


# ============================================================================ the straight path
def _time_like(t: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    """t (a number, shape () or (B,)) as a tensor broadcastable against ``like`` (B, …)."""
    t = torch.as_tensor(t, dtype=like.dtype, device=like.device)
    if t.dim() == 0:
        return t
    if t.shape != like.shape[:1]:
        raise ValueError(f"t must be a number or have shape ({like.shape[0]},), one time per example, got {tuple(t.shape)}")
    return broadcast_to(t, like)


def flow_path(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor | float) -> tuple[torch.Tensor, torch.Tensor]:
    """The straight line from the picture x₀ (t = 0) to the static ε (t = 1) and its velocity.

    Returns ``(x_t, velocity)`` with x_t = (1 − t)·x₀ + t·ε and velocity = dx_t/dt = ε − x₀
    (the same at every t). ``t``: a number or a (B,) tensor in [0, 1].
    """
    if noise.shape != x0.shape:
        raise ValueError(f"noise has shape {tuple(noise.shape)} but x0 has shape {tuple(x0.shape)}; they must match")
    tt = _time_like(t, x0)
    if bool(((tt < 0) | (tt > 1)).any()):
        raise ValueError("t must lie in [0, 1] (0 = the picture, 1 = pure noise)")
    return (1 - tt) * x0 + tt * noise, noise - x0


def x0_from_velocity(x_t: torch.Tensor, velocity: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    """The picture the velocity points away from: x̂₀ = x_t − t·v (walk the line back to t = 0)."""
    return x_t - _time_like(t, x_t) * velocity


def noise_from_velocity(x_t: torch.Tensor, velocity: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    """The static the velocity points to: ε̂ = x_t + (1 − t)·v (walk the line on to t = 1)."""
    return x_t + (1 - _time_like(t, x_t)) * velocity


# ============================================================================ the grid of times
def check_shift(shift: Any) -> float:
    """The timestep shift as a float > 0; ValueError naming ``shift`` otherwise."""
    value = check_float("shift", shift)
    if value <= 0:
        raise ValueError(f"shift={shift!r} is out of range; allowed: shift > 0 (1 = no shift, > 1 = more steps near the noise)")
    return value


def shift_sigmas(sigmas: torch.Tensor | np.ndarray | float, shift: float) -> Any:
    """The timestep shift of SD3 (Esser et al. 2024, eq. 23): σ ↦ shift·σ / (1 + (shift − 1)·σ).

    Keeps 0 and 1 where they are; shift > 1 moves every time in between towards the noise.
    """
    shift = check_shift(shift)
    return shift * sigmas / (1 + (shift - 1) * sigmas)


def flow_sigmas(num_steps: int, *, shift: float = 1.0, num_train_timesteps: int = 1000) -> torch.Tensor:
    """The descending grid of ``num_steps + 1`` times from 1 to 0 (float32), equal to diffusers'
    ``FlowMatchEulerDiscreteScheduler(num_train_timesteps=…, shift=…).set_timesteps(num_steps).sigmas``.

    As there: the last non-zero time is the shifted 1/T, the grid is spaced evenly between 1 and it,
    then shifted — so that end is shifted twice, a quirk of diffusers that we copy to stay equal
    — and 0 is appended.
    """
    num_steps = check_int("num_steps", num_steps, min_value=1)
    T = check_int("num_train_timesteps", num_train_timesteps, min_value=1)
    shift = check_shift(shift)
    train = torch.from_numpy(np.linspace(1, T, T, dtype=np.float32)[::-1].copy()) / T  # float32, as diffusers
    train = shift_sigmas(train, shift)
    sigma_max, sigma_min = train[0].item(), train[-1].item()
    grid = np.linspace(sigma_max * T, sigma_min * T, num_steps) / T  # float64, as diffusers
    grid = shift_sigmas(grid, shift)
    return torch.cat([torch.from_numpy(grid).float(), torch.zeros(1)])


def flow_dpm_sigmas(num_steps: int, *, shift: float = 1.0, sigma_max: float = EDM_SIGMA_MAX,
                    sigma_min: float = EDM_SIGMA_MIN) -> torch.Tensor:
    """The grid of times (descending, ending at 0, float32) of the ``dpmpp_2m`` samplers of :func:`sample_flow`:
    EDM's karras noise levels σ from ``sigma_max`` to ``sigma_min`` (ρ = 7) read as flow times
    t = σ/(1 + σ) (x_t/(1 − t) = x₀ + σ·ε: the straight path is the diffusion path at noise level σ,
    chapter 12 §4), then shifted. t = 1 (σ = ∞) is never asked, as a diffusion model is never asked σ = ∞."""
    noise_levels = karras_sigmas(num_steps, sigma_min, sigma_max).double()[:-1]  # (N,), descending
    times = shift_sigmas(noise_levels / (1 + noise_levels), check_shift(shift))
    return torch.cat([times, times.new_zeros(1)]).float()


def flow_timesteps(sigmas: torch.Tensor, *, time_scale: float = TIME_SCALE) -> torch.Tensor:
    """What the network is told at each grid time: σ·time_scale (diffusers' ``scheduler.timesteps``)."""
    return sigmas[:-1] * time_scale


# ============================================================================ one step
def flow_euler_step(velocity: torch.Tensor, sigma: torch.Tensor | float, sigma_next: torch.Tensor | float,
                    x: torch.Tensor) -> torch.Tensor:
    """One Euler step of dx/dt = v from t = σ to t = σ_next: x + (σ_next − σ)·v.

    Equal to ``FlowMatchEulerDiscreteScheduler.step`` (which computes in float32 and returns the
    velocity's dtype).
    """
    # the difference in float64, rounded once: for float32 grids the same number as diffusers' float32 one
    dt = (torch.as_tensor(sigma_next, dtype=torch.float64) - torch.as_tensor(sigma, dtype=torch.float64))
    return (x.float() + dt.to(device=x.device, dtype=torch.float32) * velocity).to(velocity.dtype)


VelocityFn = Callable[[torch.Tensor, float], torch.Tensor]  # v(x, σ): the network at one grid time


def flow_heun_step(velocity_fn: VelocityFn, x: torch.Tensor, sigma: float, sigma_next: float,
                   velocity: torch.Tensor | None = None) -> torch.Tensor:
    """One step of Heun's method (the trapezoid rule; Karras et al. 2022, Algorithm 1): an Euler step to
    σ_next, a second velocity there, and the step again with the average of the two. Two network calls
    (one if ``velocity`` at (x, σ) is passed); to σ_next = 0 it stays a plain Euler step, as in EDM."""
    v1 = velocity_fn(x, sigma) if velocity is None else velocity
    x_euler = flow_euler_step(v1, sigma, sigma_next, x)
    if sigma_next == 0:
        return x_euler
    v2 = velocity_fn(x_euler, sigma_next)
    return flow_euler_step(0.5 * (v1 + v2), sigma, sigma_next, x)


def flow_midpoint_step(velocity_fn: VelocityFn, x: torch.Tensor, sigma: float, sigma_next: float,
                       velocity: torch.Tensor | None = None) -> torch.Tensor:
    """One step of the midpoint rule: half an Euler step, the velocity there, and the whole step with
    it. Two network calls (one if ``velocity`` at (x, σ) is passed)."""
    v1 = velocity_fn(x, sigma) if velocity is None else velocity
    mid = 0.5 * (sigma + sigma_next)
    v_mid = velocity_fn(flow_euler_step(v1, sigma, mid, x), mid)
    return flow_euler_step(v_mid, sigma, sigma_next, x)


def flow_network_evaluations(sampler: FlowSampler, num_steps: int) -> int:
    """Network calls of ``num_steps`` steps: N for euler and both dpmpp samplers, 2N − 1 for heun (no
    correction on the last step, to t = 0), 2N for midpoint (:func:`course_lib.solvers.network_calls`)."""
    return network_calls(check_choice("sampler", sampler, FLOW_SAMPLERS), num_steps)


def flow_steps_for_nfe(sampler: FlowSampler, nfe: int) -> int:
    """The most steps ``sampler`` can take within ``nfe`` network calls (at least 1;
    :func:`course_lib.solvers.steps_within`)."""
    return steps_within(check_choice("sampler", sampler, FLOW_SAMPLERS), nfe)


# ============================================================================ the sampling loop
class FlowSampleResult(NamedTuple):
    """``sample_flow(..., return_trajectory=True)``: the final samples, x after every step
    (trajectory[0] is the starting noise: N + 1 entries) and the grid of times (N + 1 values)."""

    images: torch.Tensor
    trajectory: list[torch.Tensor]
    sigmas: torch.Tensor


def sample_flow(
    model: Callable[..., torch.Tensor],
    shape: Sequence[int],
    *,
    sampler: FlowSampler = "euler",
    num_steps: int = 10,
    shift: float = 1.0,
    cond: torch.Tensor | None = None,
    guidance_scale: float = 1.0,
    generator: torch.Generator | None = None,
    noise: torch.Tensor | None = None,
    sigmas: torch.Tensor | None = None,
    time_scale: float = TIME_SCALE,
    num_train_timesteps: int = 1000,
    progress: bool = False,
    return_trajectory: bool = False,
    device: torch.device | str | None = None,
) -> torch.Tensor | FlowSampleResult:
    """Samples from a velocity model by integrating dx/dt = v_θ(x, t) from t = 1 (static) to t = 0 (chapter 12).

    ``model(x, t·time_scale, cond=None)`` returns the velocity, shaped like x. ``sampler``: ``euler`` |
    ``heun`` | ``midpoint`` (N, 2N − 1 and 2N network calls) on the times :func:`flow_sigmas`
    (``num_steps``, ``shift``, ``num_train_timesteps``); or ``dpmpp_2m`` | ``dpmpp_2m_sde`` (N calls):
    chapter 06's DPM-Solver++(2M) for the ODE or the SDE on the flow read as a denoiser
    (:func:`flow_denoiser`), on the times :func:`flow_dpm_sigmas` (``num_steps``, ``shift``); the SDE
    version draws its fresh noise from ``generator``. Or ``sigmas`` given directly (descending, ending
    at 0; then ``num_steps`` and ``shift`` are not used; a float64 grid is kept, and the model then gets
    float64 times). ``noise``: the starting static instead of
    a draw from ``generator``.

    Classifier-free guidance works as in :func:`course_lib.samplers.sample`: with ``cond`` (labels (B,),
    −1 = no condition) and ``guidance_scale`` s ≠ 1 each call is one batched call through
    :func:`course_lib.guidance.cfg_model`, ṽ = v_∅ + s·(v_c − v_∅) (the velocity is affine in ε at a
    fixed x and t, so the combination is the same as for ε). The arguments shared with ``sample`` are checked
    once per call by :func:`course_lib.sampler_inputs.check_sampling_inputs`.
    Returns the samples (B, …), or a :class:`FlowSampleResult` with ``return_trajectory=True``.
    """
    check_choice("sampler", sampler, FLOW_SAMPLERS)
    shift = check_shift(shift)
    time_scale = check_float("time_scale", time_scale, min_value=0.0)
    check_bool("progress", progress)
    check_bool("return_trajectory", return_trajectory)
    shape, dev, cond, guidance_scale = check_sampling_inputs(model, shape, noise=noise, generator=generator, cond=cond,
                                                             guidance_scale=guidance_scale, device=device, min_dims=1)
    num_steps = capped(check_int("num_steps", num_steps, min_value=1))  # a gpu dry run: a few steps
    if sigmas is None and sampler in FLOW_DPM_SAMPLERS:
        sigmas = flow_dpm_sigmas(num_steps, shift=shift)
    elif sigmas is None:
        sigmas = flow_sigmas(num_steps, shift=shift, num_train_timesteps=num_train_timesteps)
    else:
        sigmas = torch.as_tensor(sigmas).cpu()
        sigmas = sigmas if sigmas.dtype == torch.float64 else sigmas.float()  # float64 kept: times near 1 need it
        if sigmas.dim() != 1 or len(sigmas) < 2 or float(sigmas[-1]) != 0.0 or bool((sigmas.diff() >= 0).any()):
            raise ValueError("sigmas must be a descending 1-D grid of times ending at 0, e.g. flow_sigmas(10)")
    net = cfg_model(model, guidance_scale) if cond is not None and guidance_scale != 1.0 else model

    checked = False  # the first output is checked (as samplers.sample does), not every step's

    def velocity_fn(x: torch.Tensor, sigma: float) -> torch.Tensor:
        nonlocal checked
        t = torch.full((x.shape[0],), sigma * time_scale, device=x.device, dtype=sigmas.dtype)
        out = in_half_precision(net, x, t) if cond is None else in_half_precision(net, x, t, cond=cond)
        if not checked and (not isinstance(out, torch.Tensor) or out.shape != x.shape):
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"the model returned shape {got} for an input of shape {tuple(x.shape)}; "
                             "a velocity model must return a tensor shaped like its input")
        checked = True
        return out

    from tqdm.auto import tqdm

    grid = [float(s) for s in sigmas]
    with torch.no_grad():
        if noise is None:
            gdev = generator.device if generator is not None else dev
            x = torch.randn(shape, generator=generator, device=gdev).to(dev)
        else:
            x = noise.to(dev)
        path = [x.cpu()] if return_trajectory else []
        if sampler in FLOW_DPM_SAMPLERS:
            x = solve_flow(velocity_fn, x, grid, sampler, generator, path if return_trajectory else None)
            return FlowSampleResult(x, path, sigmas) if return_trajectory else x
        for i in tqdm(range(len(grid) - 1), disable=not progress, desc=f"flow {sampler}", leave=False):
            s, s_next = grid[i], grid[i + 1]
            if sampler == "euler":
                x = flow_euler_step(velocity_fn(x, s), sigmas[i], sigmas[i + 1], x)
            elif sampler == "heun":
                x = flow_heun_step(velocity_fn, x, s, s_next)
            else:
                x = flow_midpoint_step(velocity_fn, x, s, s_next)
            if return_trajectory:
                path.append(x.cpu())
    return FlowSampleResult(x, path, sigmas) if return_trajectory else x


# ============================================================================ training objective
def sample_times(n: int, sampling: TimestepSampling = "logit_normal", *, generator: torch.Generator | None = None,
                 mean: float = 0.0, std: float = 1.0) -> torch.Tensor:
    """``n`` training times in (0, 1) (float32, on the generator's device, CPU by default).

    ``uniform``: t ~ U(0, 1). ``logit_normal``: t = sigmoid(mean + std·n), n ~ N(0, 1) (Esser et al.
    2024, eq. 19): its density is largest at t = sigmoid(mean) and thin at both ends, where the
    velocity is easy to guess (near t = 1 it is about ε − E[x₀]; near t = 0, about ε − x_t).
    ``u_shaped``: density ∝ exp(a·t) + exp(a·(1 − t)), a U with a = :data:`U_SHAPE_A` (Lee et al.
    2024, §4.1, for reflow: on nearly straight paths a few-step sampler asks the velocity mostly near
    the ends, t = 1 above all, where a one-step sampler asks it only): the truncated exponential
    exp(a·t) drawn by inverting its CDF, t = log(1 + r·(eᵃ − 1))/a, and mirrored to 1 − t half the time.
    """
    check_choice("sampling", sampling, TIMESTEP_SAMPLINGS)
    n = check_int("n", n, min_value=1)
    dev = generator.device if generator is not None else torch.device("cpu")
    if sampling == "uniform":
        return torch.rand(n, generator=generator, device=dev)
    if sampling == "u_shaped":
        r, side = torch.rand(2, n, generator=generator, device=dev)  # (2, n): the CDF value, then which end
        t = torch.log1p(r * math.expm1(U_SHAPE_A)) / U_SHAPE_A  # density ∝ exp(a·t): piled up at t = 1
        return torch.where(side < 0.5, t, 1 - t)
    return torch.sigmoid(mean + std * torch.randn(n, generator=generator, device=dev))


@dataclass(frozen=True)
class FlowMatching:
    """The flow-matching objective (conditional flow matching, Lipman et al. 2023, eq. 23 with σ_min = 0;
    rectified flow, Liu et al. 2023, eq. 1), as a training objective for :func:`course_lib.training.train`.

        t ~ timestep_sampling,  ε ~ N(0, I),  x_t = (1 − t)·x₀ + t·ε
        loss = ‖ model(x_t, t·time_scale, c) − (ε − x₀) ‖²   (mean over the batch and the pixels)

    ``timestep_sampling``: ``uniform`` | ``logit_normal`` (with ``logit_mean``, ``logit_std``; SD3:
    0 and 1) | ``u_shaped``. ``reflow=True``: each example holds a *pair*, the picture and its static
    concatenated along dim 1 (see :func:`reflow_pairs`), and the line joins exactly those two (Liu et
    al. 2023, Algorithm 1) instead of a fresh ε. ``distance="pseudo_huber"``: per example
    (√(‖Δ‖² + c²) − c)/√d with c = 0.00054·√d over its d pixels (Song & Dhariwal 2023's c; Lee et al.
    2024 use it for reflow): about the error's length instead of its square, so the few examples
    with large errors (near t = 1) do not drown the rest.
    """

    timestep_sampling: TimestepSampling = "logit_normal"
    logit_mean: float = 0.0
    logit_std: float = 1.0
    time_scale: float = TIME_SCALE
    reflow: bool = False
    distance: FlowLoss = "mse"

    def __post_init__(self) -> None:
        check_choice("timestep_sampling", self.timestep_sampling, TIMESTEP_SAMPLINGS)
        check_choice("distance", self.distance, FLOW_LOSSES)
        check_float("logit_mean", self.logit_mean)
        check_float("logit_std", self.logit_std, min_value=1e-6)
        check_float("time_scale", self.time_scale, min_value=0.0)
        check_bool("reflow", self.reflow)

    def identity(self) -> dict[str, Any]:
        """Everything that must match to resume a run trained with this objective (``distance`` only
        when it is not ``mse``: runs from before the option keep their identity)."""
        fields = {k: v for k, v in asdict(self).items() if not (k == "distance" and v == "mse")}
        return {"objective": "flow_matching", **fields}

    def loss(self, model: Callable[..., torch.Tensor], x0: torch.Tensor, cond: torch.Tensor | None = None,
             generator: torch.Generator | None = None) -> torch.Tensor:
        """The velocity error of one batch (a scalar; mean squared, or pseudo-Huber, see the class). The random draws (t, then ε) come
        from ``generator`` (on the CPU by default) and move to x0's device."""
        if self.reflow:
            x0, noise = split_pairs(x0)
        else:
            gdev = generator.device if generator is not None else torch.device("cpu")
            noise = None
        b = x0.shape[0]
        t = sample_times(b, self.timestep_sampling, generator=generator, mean=self.logit_mean,
                         std=self.logit_std).to(x0.device)
        if noise is None:
            noise = torch.randn(x0.shape, generator=generator, device=gdev).to(x0.device)
        x_t, velocity = flow_path(x0, noise, t)
        tt = t * self.time_scale
        out = model(x_t, tt, cond) if cond is not None else model(x_t, tt)
        if self.distance == "mse":
            return (out.float() - velocity.float()).pow(2).mean()
        d = x0[0].numel()
        sq = (out.float() - velocity.float()).pow(2).flatten(1).sum(1)  # (B,): squared error of each example
        c = 0.00054 * d**0.5
        return ((sq + c * c).sqrt() - c).mean() / d**0.5


def reflow_pairs(images: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """A data set of (picture, static) couplings for ``FlowMatching(reflow=True)``: cat along dim 1."""
    if images.shape != noise.shape:
        raise ValueError(f"images {tuple(images.shape)} and noise {tuple(noise.shape)} must have the same shape")
    return torch.cat([images, noise], dim=1)


def split_pairs(pairs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The inverse of :func:`reflow_pairs`: (pictures, statics)."""
    if pairs.dim() < 2 or pairs.shape[1] % 2:
        raise ValueError(f"pairs must hold a picture and its static concatenated along dim 1, got shape {tuple(pairs.shape)}")
    return pairs.chunk(2, dim=1)


# ============================================================================ the link to diffusion
def flow_alpha_bar(t: torch.Tensor | float) -> torch.Tensor:
    """The ᾱ of the variance-preserving diffusion that the straight path is, rescaled: x_t/√((1−t)² + t²)
    = √ᾱ·x₀ + √(1−ᾱ)·ε with ᾱ = (1−t)² / ((1−t)² + t²), i.e. SNR = ((1 − t)/t)² (chapter 12)."""
    t = torch.as_tensor(t, dtype=torch.float64)
    return (1 - t) ** 2 / ((1 - t) ** 2 + t**2)


def diffusion_sigmas_as_flow(sigmas: torch.Tensor) -> torch.Tensor:
    """Diffusion noise levels σ = √((1−ᾱ)/ᾱ) (chapter 06's σ-space) as flow times t = σ/(1 + σ)."""
    sigmas = torch.as_tensor(sigmas, dtype=torch.float64)
    return torch.where(torch.isinf(sigmas), torch.ones_like(sigmas), sigmas / (1 + sigmas))


def velocity_from_diffusion(model: Callable[..., torch.Tensor], schedule: NoiseSchedule, *,
                            prediction_type: PredictionType = "epsilon",
                            time_scale: float = TIME_SCALE) -> Callable[..., torch.Tensor]:
    """A diffusion denoiser (chapters 03–06) read as a velocity model for :func:`sample_flow` — no training.

    At flow time t the straight-path point x is the diffusion point x·√ᾱ/(1 − t) at σ = t/(1 − t)
    (:func:`flow_alpha_bar`), which the network sees at the fractional timestep
    :func:`~course_lib.schedules.sigma_to_t`; its guess ε̂ gives x̂₀ = (x − t·ε̂)/(1 − t) and the
    velocity v̂ = ε̂ − x̂₀ = (ε̂ − x)/(1 − t). An Euler step of this velocity from t to t' lands on
    (1 − t')·x̂₀ + t'·ε̂ — exactly DDIM's step (Song et al. 2021, eq. 12 with σ_t = 0): DDIM *is* Euler's
    method on the probability-flow ODE written in these coordinates. t must stay below 1 (σ < ∞).
    """
    check_choice("prediction_type", prediction_type, PREDICTION_TYPES)
    time_scale = check_float("time_scale", time_scale, min_value=1e-12)

    def velocity(x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        tf = torch.as_tensor(t, device=x.device).double() / time_scale  # flow time in [0, 1)
        tf = tf.expand(x.shape[0]) if tf.dim() == 0 else tf
        if bool((tf >= 1).any()):
            raise ValueError("a diffusion model cannot be read at t = 1 (σ = ∞); start the grid below 1, "
                             "e.g. sigmas=diffusion_sigmas_as_flow(...)")
        a_bar = flow_alpha_bar(tf)  # (B,)
        t_diff = sigma_to_t(schedule, (tf / (1 - tf)).cpu()).to(device=x.device, dtype=torch.float32)
        # in float64: near t = 1, ε̂ − x is a small difference of two O(1) numbers, divided by a small 1 − t
        x_vp = x.double() * broadcast_to(a_bar.sqrt() / (1 - tf), x)  # x/√((1−t)² + t²)
        x_in = x_vp.to(x.dtype)
        out = model(x_in, t_diff) if cond is None else model(x_in, t_diff, cond=cond)
        eps = split_prediction_at(broadcast_to(a_bar, x), out.double(), x_vp, prediction_type).eps
        return ((eps - x.double()) / broadcast_to(1 - tf, x)).to(x.dtype)

    return velocity


# ============================================================================ measuring straightness
def straightness(trajectory: Sequence[torch.Tensor]) -> float:
    """How far sampled paths bend away from straight lines: for each path, the largest distance of its
    points from the straight line through its two ends; the mean of that over the paths, divided by
    the mean distance between the ends. 0 when every path is a straight line (Liu et al. 2023 measure
    straightness with the velocity instead; this one needs only the points, and a wobble of the last
    tiny steps near the data adds little to it)."""
    if len(trajectory) < 2:
        raise ValueError("a trajectory needs at least two points")
    pts = torch.stack([p.flatten(1).double() for p in trajectory])  # (N+1, B, D)
    start, end = pts[0], pts[-1]  # (B, D) each
    chord = end - start
    length = chord.norm(dim=-1, keepdim=True)  # (B, 1)
    direction = chord / length.clamp(min=1e-12)
    rel = pts - start  # (N+1, B, D): every point relative to the start
    off_line = rel - (rel * direction).sum(-1, keepdim=True) * direction  # the part perpendicular to the chord
    return float(off_line.norm(dim=-1).amax(0).mean() / length.mean().clamp(min=1e-12))


__all__ = [
    "FLOW_DPM_SAMPLERS", "FLOW_LOSSES", "FlowLoss", "FLOW_SAMPLERS", "FlowMatching", "FlowSampleResult", "FlowSampler",
    "TIMESTEP_SAMPLINGS", "TIME_SCALE",
    "TimestepSampling", "U_SHAPE_A", "check_shift", "diffusion_sigmas_as_flow", "flow_alpha_bar", "flow_denoiser", "flow_dpm_sigmas", "flow_euler_step",
    "flow_heun_step", "flow_midpoint_step", "flow_network_evaluations", "flow_path", "flow_sigmas", "flow_steps_for_nfe", "flow_timesteps",
    "noise_from_velocity", "reflow_pairs", "sample_flow", "sample_times", "shift_sigmas", "split_pairs",
    "straightness", "velocity_from_diffusion", "x0_from_velocity",
]
