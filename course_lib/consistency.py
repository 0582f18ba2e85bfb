"""Consistency models: learn where the path ends instead of walking it (chapter 15).

**The consistency function.** The probability-flow ODE of chapter 06 carries every noisy picture
x_σ = x₀ + σ·ε along one path down to a clean picture. A *consistency function* f(x_σ, σ) jumps
straight to the end of the path through x_σ (Song et al. 2023, "Consistency Models", §3):

    f(x_σ, σ) = f(x_σ', σ')  for any two points of the same path          (self-consistency)
    f(x, σ_min) = x                                                      (the boundary condition)

The two together pin f down: walk the path back from σ to σ_min in small steps; each step keeps f
the same and the last one is the identity, so f(x_σ, σ) is the end of the path.

**The parameterisation** (Song et al. 2023, Appendix C; Karras et al. 2022, Table 1 without the
shift): with a free network output F,

    f(x, σ) = c_skip(σ)·x + c_out(σ)·F(x, σ),
    c_skip(σ) = σ_d² / ((σ − σ_min)² + σ_d²),    c_out(σ) = σ_d·(σ − σ_min) / √(σ² + σ_d²)

so c_skip(σ_min) = 1 and c_out(σ_min) = 0: the boundary condition holds for *every* F, by construction
(:func:`boundary_scalings`, equal to diffusers' ``CMStochasticIterativeScheduler.get_scalings_for_boundary_condition``).
EDM's own denoiser D = c_skip^EDM·x + c_out^EDM·F (:func:`edm_scalings`) is the same with σ_min = 0; the
course's velocity U-Net read as a denoiser (:func:`course_lib.solvers.flow_denoiser`, chapter 12) gives its
F = (D − c_skip^EDM·x)/c_out^EDM (:class:`ConsistencyModel`), so a student copied from the flow teacher
starts as the teacher's one-jump guess x̂₀ everywhere except right at σ_min.

**Consistency distillation** (Song et al. 2023, Algorithm 2, with the stop-gradient target and
pseudo-Huber distance of Song & Dhariwal 2024, "Improved techniques for training consistency models",
§3.2 and §3.3): on a Karras grid σ_min = σ_0 < … < σ_N = σ_max, draw n, x₀ and ε, put
x_{n+1} = x₀ + σ_{n+1}·ε, let the *teacher* take one ODE step to σ_n (Euler, or Heun's two calls), and pull
f_θ(x_{n+1}, σ_{n+1}) towards f_θ⁻(x̂_n, σ_n), θ⁻ = the same weights with the gradient stopped
(:class:`ConsistencyDistillation`).

**Sampling** (Song et al. 2023, Algorithm 1): one call f(σ_max·z, σ_max) is a picture; with more calls,
add fresh static back to a lower level and jump again (:func:`sample_consistency`, k-diffusion style;
it takes the same steps as diffusers' ``CMStochasticIterativeScheduler``, ``tests/test_consistency.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Literal, Sequence, get_args

import torch
from torch import nn

from .settings import check_bool, check_choice, check_float, check_int, in_half_precision
from .solvers import EDM_SIGMA_MAX, EDM_SIGMA_MIN, flow_denoiser

TeacherSolver = Literal["euler", "heun"]
TEACHER_SOLVERS: tuple[str, ...] = get_args(TeacherSolver)
Distance = Literal["mse", "pseudo_huber"]
DISTANCES: tuple[str, ...] = get_args(Distance)
SIGMA_DATA = 0.5  # the spread of the data that the scalings assume (EDM and CM use 0.5)
#: the lowest level a multistep sampler adds static back to (:func:`consistency_sigmas`): 1.6 of 0.4, 0.8 and 1.6, by the FID
#: at two calls of chapter 15's model against the *training* digits (the test digits stay unseen; README "Performance")
SIGMA_LOW = 1.6
#: f(x, σ) in σ-space: x = x₀ + σ·ε in, the end of its path out
ConsistencyFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# ============================================================================ the parameterisation
def boundary_scalings(sigma: torch.Tensor | float, *, sigma_min: float = EDM_SIGMA_MIN,
                      sigma_data: float = SIGMA_DATA) -> tuple[torch.Tensor, torch.Tensor]:
    """(c_skip, c_out) of a consistency model (Song et al. 2023, Appendix C): (1, 0) at σ = σ_min, so
    f = c_skip·x + c_out·F meets the boundary condition f(x, σ_min) = x whatever F is."""
    s = torch.as_tensor(sigma)
    c_skip = sigma_data**2 / ((s - sigma_min) ** 2 + sigma_data**2)
    c_out = (s - sigma_min) * sigma_data / (s**2 + sigma_data**2) ** 0.5
    return c_skip, c_out


def edm_scalings(sigma: torch.Tensor | float, *, sigma_data: float = SIGMA_DATA) -> tuple[torch.Tensor, torch.Tensor]:
    """(c_skip, c_out) of EDM's denoiser D = c_skip·x + c_out·F (Karras et al. 2022, Table 1): the
    consistency scalings with σ_min = 0, so D(x, σ_min) ≠ x — no boundary condition."""
    return boundary_scalings(sigma, sigma_min=0.0, sigma_data=sigma_data)


def consistency_function(raw: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], *, sigma_min: float = EDM_SIGMA_MIN,
                         sigma_data: float = SIGMA_DATA, boundary: bool = True) -> ConsistencyFn:
    """f(x, σ) = c_skip(σ)·x + c_out(σ)·raw(x, σ) with :func:`boundary_scalings` (``boundary=False``:
    :func:`edm_scalings`, the denoiser itself). ``raw(x, σ)``: the network's F, σ of shape (B,)."""
    check_bool("boundary", boundary)

    def f(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        s = _per_sample(sigma, x)
        c_skip, c_out = (boundary_scalings(s, sigma_min=sigma_min, sigma_data=sigma_data) if boundary
                         else edm_scalings(s, sigma_data=sigma_data))
        shape = (-1,) + (1,) * (x.dim() - 1)
        return c_skip.view(shape).to(x.dtype) * x + c_out.view(shape).to(x.dtype) * raw(x, s)

    return f


def _per_sample(sigma: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    s = torch.as_tensor(sigma, device=x.device, dtype=torch.float32)
    return s.expand(x.shape[0]) if s.dim() == 0 else s


@dataclass(frozen=True)
class ConsistencyConfig:
    """A consistency model over a velocity U-Net: the U-Net's config (a dict), whether the boundary
    condition is built in, and the scalings' σ_min and σ_data."""

    unet: dict[str, Any]
    boundary: bool = True
    sigma_min: float = EDM_SIGMA_MIN
    sigma_data: float = SIGMA_DATA

    def to_dict(self) -> dict[str, Any]:
        return {"unet": self.unet, "boundary": self.boundary, "sigma_min": self.sigma_min, "sigma_data": self.sigma_data}


class ConsistencyModel(nn.Module):
    """f_θ(x, σ) on top of a flow-matching velocity network ``net(x_t, t·1000)`` (chapter 12).

    D_θ(x, σ) = x_t − t·v (:func:`course_lib.solvers.flow_denoiser`, t = σ/(1 + σ)) is written as EDM's
    c_skip^EDM·x + c_out^EDM·F, which defines F; f = c_skip·x + c_out·F with the consistency scalings
    (``boundary=True``), or f = D_θ (``boundary=False``, the ablation of chapter 15). Called
    ``model(x, sigma, cond=None)`` with x in σ-space (x₀ + σ·ε) and σ a float or (B,).
    """

    def __init__(self, net: nn.Module, *, boundary: bool = True, sigma_min: float = EDM_SIGMA_MIN,
                 sigma_data: float = SIGMA_DATA) -> None:
        super().__init__()
        self.net = net
        self.config = ConsistencyConfig(net.config.to_dict(), check_bool("boundary", boundary),
                                        check_float("sigma_min", sigma_min, min_value=1e-6), sigma_data)

    def raw(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """F(x, σ): the network's output as EDM's preconditioning reads it."""
        shape = (-1,) + (1,) * (x.dim() - 1)
        denoised = flow_denoiser(lambda xt, t: self.net(xt, t.reshape(-1) * 1000.0))(x, sigma.view(shape))
        c_skip, c_out = edm_scalings(sigma.view(shape), sigma_data=self.config.sigma_data)
        return (denoised - c_skip * x) / c_out

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float, cond: torch.Tensor | None = None) -> torch.Tensor:
        if cond is not None:
            raise ValueError("the consistency model of chapter 15 is unconditional; pass cond=None")
        f = consistency_function(self.raw, sigma_min=self.config.sigma_min, sigma_data=self.config.sigma_data,
                                 boundary=self.config.boundary)
        return f(x, _per_sample(sigma, x))


class UnconstrainedModel(nn.Module):
    """f(x, σ) = net(c_in·x, c_noise(σ)): the network's output *is* the answer, with no skip connection and so no
    boundary condition (chapter 15's ablation on the two-atom toy). c_in = 1/√(σ² + σ_d²) and c_noise =
    250·log σ as Song et al. 2023 (diffusers' ``scale_model_input`` and ``sigma_to_t``); ``net(x, t)`` is any
    network of the course's denoiser signature (an ``MLPDenoiser`` on the toy)."""

    def __init__(self, net: nn.Module, *, sigma_data: float = SIGMA_DATA) -> None:
        super().__init__()
        self.net = net
        self.sigma_data = sigma_data
        self.config = getattr(net, "config", None)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float, cond: torch.Tensor | None = None) -> torch.Tensor:
        s = _per_sample(sigma, x)
        c_in = (s**2 + self.sigma_data**2).rsqrt().view((-1,) + (1,) * (x.dim() - 1))
        return self.net(x * c_in, 250.0 * torch.log(s))


# ============================================================================ sampling
def consistency_sigmas(num_calls: int, *, sigma_max: float = EDM_SIGMA_MAX, sigma_min: float = EDM_SIGMA_MIN,
                       sigma_low: float = SIGMA_LOW, rho: float = 7.0) -> torch.Tensor:
    """The noise levels a ``num_calls``-call consistency sampler jumps from, then σ_min (``num_calls + 1`` values,
    descending): σ_max alone for one call; for more, a Karras grid (ρ = 7) from σ_max down to ``sigma_low``,
    the lowest level static is added back to (Song et al. 2023 pick theirs by a search, Appendix C)."""
    num_calls = check_int("num_calls", num_calls, min_value=1)
    check_float("sigma_low", sigma_low, min_value=sigma_min, max_value=sigma_max)
    if num_calls == 1:
        return torch.tensor([sigma_max, sigma_min])
    ramp = torch.linspace(0, 1, num_calls, dtype=torch.float64)
    grid = (sigma_max ** (1 / rho) + ramp * (sigma_low ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    return torch.cat([grid, torch.tensor([sigma_min], dtype=torch.float64)]).float()


@torch.no_grad()
def sample_consistency(model: ConsistencyFn, x: torch.Tensor, sigmas: Sequence[float] | torch.Tensor, *,
                       generator: torch.Generator | None = None, sigma_min: float = EDM_SIGMA_MIN,
                       clip_denoised: bool = True, callback: Callable[[int, torch.Tensor], None] | None = None,
                       ) -> torch.Tensor:
    """Multistep consistency sampling (Song et al. 2023, Algorithm 1), k-diffusion style.

    ``x``: the starting static already at ``sigmas[0]`` (σ_max·z). For each level σ_i but the last:
    x̂₀ = f(x, σ_i) (clamped to [−1, 1] with ``clip_denoised``), then x = x̂₀ + √(σ_{i+1}² − σ_min²)·z with a
    fresh z from ``generator``; the last level is σ_min, where nothing is added. ``len(sigmas) − 1`` network
    calls; returns the last x̂₀. The same steps as diffusers' ``CMStochasticIterativeScheduler`` given the same
    levels and generator (``tests/test_consistency.py``).
    """
    grid = [float(s) for s in sigmas]
    if len(grid) < 2 or any(b > a for a, b in zip(grid, grid[1:])):
        raise ValueError(f"sigmas must be at least two non-increasing noise levels ending at sigma_min, got {grid}")
    check_bool("clip_denoised", clip_denoised)
    denoised = x
    for i in range(len(grid) - 1):
        denoised = in_half_precision(model, x, torch.full((x.shape[0],), grid[i], device=x.device))  # GPU: autocast
        if clip_denoised:
            denoised = denoised.clamp(-1, 1)
        if callback is not None:
            callback(i, denoised)
        if i + 1 < len(grid) - 1:  # static back to the next level (none after the last call)
            z = torch.randn(x.shape, generator=generator, device=generator.device if generator else x.device)
            x = denoised + z.to(x.device, x.dtype) * math.sqrt(max(grid[i + 1] ** 2 - sigma_min**2, 0.0))
    return denoised


# ============================================================================ distillation
def pseudo_huber(diff: torch.Tensor) -> torch.Tensor:
    """Per example √(‖Δ‖² + c²) − c, divided by √d, with c = 0.00054·√d over its d pixels (Song & Dhariwal 2024, §3.3)."""
    d = diff[0].numel()
    c = 0.00054 * d**0.5
    return ((diff.float().pow(2).flatten(1).sum(1) + c * c).sqrt() - c) / d**0.5


def distillation_grid(num_scales: int, *, sigma_min: float = EDM_SIGMA_MIN, sigma_max: float = EDM_SIGMA_MAX,
                      rho: float = 7.0) -> torch.Tensor:
    """σ_0 = σ_min < … < σ_N = σ_max, Karras-spaced (eq. 5 of Karras et al. 2022, ascending): the ladder of distillation."""
    num_scales = check_int("num_scales", num_scales, min_value=1)
    ramp = torch.linspace(0, 1, num_scales + 1, dtype=torch.float64)
    return (sigma_min ** (1 / rho) + ramp * (sigma_max ** (1 / rho) - sigma_min ** (1 / rho))) ** rho


def teacher_step(teacher: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor, sigma: torch.Tensor,
                 sigma_next: torch.Tensor, solver: TeacherSolver = "heun") -> torch.Tensor:
    """One step of the probability-flow ODE dx/dσ = (x − D(x, σ))/σ from σ to σ_next (each (B,)) with the
    teacher's denoiser D: Euler, or Heun (Karras et al. 2022, Algorithm 1; two calls)."""
    shape = (-1,) + (1,) * (x.dim() - 1)
    s, s_next = sigma.view(shape), sigma_next.view(shape)
    d = (x - teacher(x, s)) / s
    x_next = x + (s_next - s) * d
    if solver == "euler":
        return x_next
    d_next = (x_next - teacher(x_next, s_next)) / s_next
    return x + (s_next - s) * (d + d_next) / 2


@dataclass(frozen=True, eq=False)
class ConsistencyDistillation:
    """Consistency distillation from a flow-matching teacher, an objective for :func:`course_lib.training.train`.

        n ~ U{0, …, N−1},  ε ~ N(0, I),  x = x₀ + σ_{n+1}·ε,  x̂ = teacher ODE step from σ_{n+1} to σ_n
        loss = d( f_θ(x, σ_{n+1}),  stopgrad f_θ(x̂, σ_n) )      d: pseudo-Huber or mean squared error

    ``teacher``: the velocity network ``v(x_t, t·1000)`` (chapter 12's flow), read as a denoiser;
    ``teacher_sha256`` names its weights in the run's identity. ``num_scales`` N and ``solver`` set the
    teacher's steps (:func:`distillation_grid`, :func:`teacher_step`). The model trained is a
    :class:`ConsistencyModel`; the target is the same model without gradient (Song & Dhariwal 2024 drop
    the target EMA, μ = 0), and the training loop's EMA copy is the one to sample from.
    """

    teacher: nn.Module = field(repr=False)
    teacher_sha256: str
    num_scales: int = 18
    solver: TeacherSolver = "heun"
    distance: Distance = "pseudo_huber"

    def __post_init__(self) -> None:
        check_int("num_scales", self.num_scales, min_value=1)
        check_choice("solver", self.solver, TEACHER_SOLVERS)
        check_choice("distance", self.distance, DISTANCES)
        self.teacher.eval().requires_grad_(False)

    def identity(self) -> dict[str, Any]:
        return {"objective": "consistency_distillation", "teacher": self.teacher_sha256, "num_scales": self.num_scales,
                "solver": self.solver, "distance": self.distance}

    def loss(self, model: nn.Module, x0: torch.Tensor, cond: torch.Tensor | None = None,
             generator: torch.Generator | None = None) -> torch.Tensor:
        b, dev = x0.shape[0], x0.device
        grid = distillation_grid(self.num_scales).float()
        n = torch.randint(self.num_scales, (b,), generator=generator)
        noise = torch.randn(x0.shape, generator=generator).to(dev)
        s_hi, s_lo = grid[n + 1].to(dev), grid[n].to(dev)  # (B,) each
        x_hi = x0 + s_hi.view(-1, 1, 1, 1) * noise
        teacher = self.teacher.to(dev)
        with torch.no_grad():
            denoise = flow_denoiser(lambda xt, t: teacher(xt, t.reshape(-1) * 1000.0))
            x_lo = teacher_step(denoise, x_hi, s_hi, s_lo, self.solver)
            target = model(x_lo, s_lo)
        pred = model(x_hi, s_hi)
        if self.distance == "mse":
            return (pred.float() - target.float()).pow(2).mean()
        return pseudo_huber(pred - target).mean()


# ============================================================================ distillation on the teacher's paths
def teacher_paths(teacher: nn.Module, noise: torch.Tensor, num_steps: int = 10, *,
                  batch_size: int = 250) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's ODE paths from the statics ``noise`` (N, C, H, W): DPM-Solver++(2M) (chapter 06) on the
    velocity network read as a denoiser, over ``num_steps`` Karras levels from σ_max = 80 to σ_min, then 0 (``num_steps`` calls).

    Returns ``(paths, sigmas)``: paths (N, L·C, H, W), the L = num_steps points of each path stacked
    along the channels (point 0 = 80·z, point L−1 = the teacher's picture, which stands for the point at
    σ_min: a consistency model is the identity there), and sigmas (L,), their levels."""
    from .solvers import karras_sigmas, sample_dpmpp_2m

    levels = karras_sigmas(check_int("num_steps", num_steps, min_value=2), EDM_SIGMA_MIN, EDM_SIGMA_MAX)  # (L + 1,), ends at 0
    denoise = flow_denoiser(lambda xt, t: teacher(xt, torch.full((xt.shape[0],), t * 1000.0, device=xt.device)))
    out = []
    with torch.no_grad():
        for z in noise.split(batch_size):
            points = [z * EDM_SIGMA_MAX]
            sample_dpmpp_2m(denoise, points[0], levels, callback=lambda i, x, d: points.append(x))
            del points[-2]  # the point at σ_min: the picture (σ = 0) stands for it
            out.append(torch.cat(points, dim=1).cpu())
    return torch.cat(out), path_sigmas(num_steps)


def path_sigmas(num_steps: int) -> torch.Tensor:
    """The levels of the points of :func:`teacher_paths`: ``num_steps`` Karras levels (ρ = 7) from σ_max = 80 to σ_min."""
    from .solvers import karras_sigmas

    return karras_sigmas(check_int("num_steps", num_steps, min_value=2), EDM_SIGMA_MIN, EDM_SIGMA_MAX)[:-1].float()


@dataclass(frozen=True)
class PathConsistency:
    """Consistency distillation on stored teacher paths (:func:`teacher_paths`), an objective for
    :func:`course_lib.training.train` whose data are the paths (N, L·C, H, W).

        i ~ U{0, …, L−2},  j ~ U{i+1, …, L−1} (``skip="any"``) or j = i + 1 (``skip="adjacent"``)
        loss = d( f_θ(x_i, σ_i),  stopgrad f_θ(x_j, σ_j) )        x_i, x_j: two points of one teacher path

    Self-consistency holds between *any* two points of a path (Song et al. 2023, Definition 1). Adjacent
    points are Song et al.'s distillation with the teacher's step done ahead of time; ``skip="any"``
    compares a point with any later one — the picture itself (j = L−1, where f is the identity) among
    them — so the boundary's information reaches every level at once instead of one rung per round
    (the any-pair targets of consistency trajectory models, Kim et al. 2024, §4).
    """

    sigmas: tuple[float, ...]
    channels: int = 1
    skip: Literal["any", "adjacent"] = "any"
    distance: Distance = "pseudo_huber"

    def __post_init__(self) -> None:
        if len(self.sigmas) < 2 or any(b >= a for a, b in zip(self.sigmas, self.sigmas[1:])):
            raise ValueError(f"sigmas must be at least two descending levels, got {self.sigmas}")
        check_choice("skip", self.skip, ("any", "adjacent"))
        check_choice("distance", self.distance, DISTANCES)

    def identity(self) -> dict[str, Any]:
        return {"objective": "path_consistency", "sigmas": [round(s, 6) for s in self.sigmas], "channels": self.channels,
                "skip": self.skip, "distance": self.distance}

    def loss(self, model: nn.Module, paths: torch.Tensor, cond: torch.Tensor | None = None,
             generator: torch.Generator | None = None) -> torch.Tensor:
        return self.distance_of(*self.answers(model, paths, generator))

    def distance_of(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """d(pred, target) averaged over the batch: pseudo-Huber or mean squared error."""
        if self.distance == "mse":
            return (pred.float() - target.float()).pow(2).mean()
        return pseudo_huber(pred - target).mean()

    def answers(self, model: nn.Module, paths: torch.Tensor, generator: torch.Generator | None = None, *,
                top: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """``(f_θ(x_i, σ_i), stopgrad f_θ(x_j, σ_j))`` for a batch of paths, i and j drawn as the class docstring
        says; the first ``top`` examples take i = 0 (the static at σ_max: the one-call jump)."""
        b, c, dev, L = paths.shape[0], self.channels, paths.device, len(self.sigmas)
        i = torch.randint(L - 1, (b,), generator=generator)
        i[:top] = 0
        if self.skip == "adjacent":
            j = i + 1
        else:
            j = i + 1 + (torch.rand(b, generator=generator) * (L - 1 - i)).long()  # U{i+1, …, L−1}
        points = paths.view(b, L, c, *paths.shape[2:])
        rows = torch.arange(b)
        sig = torch.tensor(self.sigmas)
        rows, i_d, j_d = rows.to(dev), i.to(dev), j.to(dev)
        x_i, x_j = points[rows, i_d], points[rows, j_d]
        with torch.no_grad():
            target = model(x_j, sig[j].to(dev))
        return model(x_i, sig[i].to(dev)), target


# ============================================================================ a critic on the student's answers
class StudentCritic(nn.Module):
    """A consistency student f_θ(x, σ) and a critic D(picture) → score as one model for the training loop (its
    checkpoints, EMA and shipped file hold both). Called like the student: ``model(x, sigma)`` is f_θ(x, σ), so
    :func:`sample_consistency` samples it as it is; ``config`` is the student's (the critic's in ``critic_config``)."""

    def __init__(self, student: nn.Module, critic: nn.Module) -> None:
        super().__init__()
        self.student, self.critic = student, critic
        self.config = student.config
        self.critic_config = critic.config.to_dict()

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float, cond: torch.Tensor | None = None) -> torch.Tensor:
        return self.student(x, sigma, cond)


@dataclass(frozen=True, eq=False)
class AdversarialConsistency:
    """Consistency distillation on teacher paths plus a critic, an objective with turns for :func:`course_lib.training.train`
    (the model: a :class:`StudentCritic`; the data: the paths of :func:`teacher_paths`).

        critic:   L_D = mean max(0, 1 − D(x_real)) + mean max(0, 1 + D(clamp sg f_θ(x_i, σ_i)))   (chapter 09's hinge loss)
        student:  L = d(f_θ(x_i, σ_i), sg f_θ(x_j, σ_j)) − λ·mean D(f_θ(x_i, σ_i))

    The consistency term (:class:`PathConsistency`) keeps the student's answers on the teacher's paths; the
    critic, trained at the same time to tell the student's answers from real training digits, pushes them
    towards pictures the data could hold where a regression target alone leaves them blurred between the
    possible ends (the GAN term of consistency trajectory models, Kim et al. 2024, §4.2; adversarial diffusion
    distillation, Sauer et al. 2023, §3). The critic sees the answers clamped to [−1, 1], as the sampler returns
    them; ``top_fraction`` of each batch jumps from σ_max (the one-call answer; the rest as :class:`PathConsistency`
    draws); ``weight`` is λ; ``real``: the real pictures (N, C, H, W), named in the run's identity by ``real_sha256``.
    """

    consistency: PathConsistency
    real: torch.Tensor = field(repr=False)
    real_sha256: str
    weight: float = 0.05
    top_fraction: float = 0.0
    lr_student: float = 1e-4
    lr_critic: float = 2e-4
    betas: tuple[float, float] = (0.0, 0.99)

    def __post_init__(self) -> None:
        check_float("weight", self.weight, min_value=0.0)
        check_float("top_fraction", self.top_fraction, min_value=0.0, max_value=1.0)
        check_float("lr_student", self.lr_student, min_value=0.0, max_value=1.0)
        check_float("lr_critic", self.lr_critic, min_value=0.0, max_value=1.0)

    def identity(self) -> dict[str, Any]:
        return {"objective": "adversarial_consistency", "consistency": self.consistency.identity(), "real": self.real_sha256,
                "weight": self.weight, "top_fraction": self.top_fraction, "lr_student": self.lr_student,
                "lr_critic": self.lr_critic, "betas": list(self.betas)}

    def optimizers(self, model: StudentCritic, config: Any) -> dict[str, torch.optim.Optimizer]:
        return {"critic": torch.optim.Adam(model.critic.parameters(), lr=self.lr_critic, betas=self.betas),
                "student": torch.optim.Adam(model.student.parameters(), lr=self.lr_student, betas=self.betas)}

    def turns(self, model: StudentCritic, paths: torch.Tensor, cond: torch.Tensor | None,
              generator: torch.Generator) -> Iterator[tuple[str, torch.Tensor]]:
        top = round(self.top_fraction * paths.shape[0])
        pred, target = self.consistency.answers(model.student, paths, generator, top=top)
        real = self.real[torch.randint(self.real.shape[0], (paths.shape[0],), generator=generator)].to(paths.device)
        fake = pred.detach().clamp(-1, 1)  # as the sampler returns them
        # chapter 09's hinge losses (course_lib.models.gan.hinge_d_loss / hinge_g_loss, written out: this layer sits below the networks)
        yield "critic", torch.relu(1.0 - model.critic(real)).mean() + torch.relu(1.0 + model.critic(fake)).mean()
        yield "student", self.consistency.distance_of(pred, target) - self.weight * model.critic(pred).mean()


__all__ = [
    "AdversarialConsistency", "DISTANCES", "PathConsistency", "StudentCritic", "SIGMA_DATA", "SIGMA_LOW", "TEACHER_SOLVERS", "ConsistencyConfig", "ConsistencyDistillation", "ConsistencyModel",
    "boundary_scalings", "consistency_function", "consistency_sigmas", "distillation_grid", "edm_scalings",
    "path_sigmas", "pseudo_huber", "sample_consistency", "teacher_paths", "teacher_step", "UnconstrainedModel",
]
