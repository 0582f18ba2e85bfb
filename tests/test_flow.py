"""Flow matching (chapter 12): grids and steps against diffusers' FlowMatchEulerDiscreteScheduler
(the oracle; imported only here), the loss, the samplers and the errors."""

from __future__ import annotations

import math

import pytest
import torch

from course_lib.flow import (
    FLOW_SAMPLERS,
    FlowMatching,
    FlowSampleResult,
    flow_euler_step,
    flow_network_evaluations,
    flow_path,
    flow_sigmas,
    flow_steps_for_nfe,
    flow_timesteps,
    noise_from_velocity,
    reflow_pairs,
    sample_flow,
    sample_times,
    shift_sigmas,
    split_pairs,
    straightness,
    x0_from_velocity,
)

STEPS = [1, 2, 4, 10, 20, 28, 50]
SHIFTS = [1.0, 0.5, 3.0, 5.0]


def _scheduler(shift: float, T: int = 1000):
    diffusers = pytest.importorskip("diffusers")
    return diffusers.FlowMatchEulerDiscreteScheduler(num_train_timesteps=T, shift=shift)


@pytest.mark.parametrize("shift", SHIFTS)
@pytest.mark.parametrize("n", STEPS)
def test_sigmas_match_diffusers(n, shift):
    sch = _scheduler(shift)
    sch.set_timesteps(n)
    ours = flow_sigmas(n, shift=shift)
    assert ours.dtype == torch.float32 and ours.shape == (n + 1,)
    assert torch.allclose(ours, sch.sigmas, atol=1e-7, rtol=0)
    assert torch.allclose(flow_timesteps(ours), sch.timesteps, atol=1e-4, rtol=0)


@pytest.mark.parametrize("T", [100, 1000])
def test_sigmas_other_train_lengths(T):
    sch = _scheduler(3.0, T)
    sch.set_timesteps(7)
    assert torch.allclose(flow_sigmas(7, shift=3.0, num_train_timesteps=T), sch.sigmas, atol=1e-7, rtol=0)


@pytest.mark.parametrize("shift", [1.0, 3.0])
@pytest.mark.parametrize("n", [1, 4, 10])
def test_euler_steps_match_diffusers(n, shift):
    """A whole Euler run with a dummy velocity: every step equals scheduler.step."""
    sch = _scheduler(shift)
    sch.set_timesteps(n)
    sigmas = flow_sigmas(n, shift=shift)
    g = torch.Generator().manual_seed(0)
    x_ours = x_ref = torch.randn(2, 3, 8, 8, generator=g)
    for i, t in enumerate(sch.timesteps):
        v_ref = torch.sin(x_ref) + t / 1000
        x_ref = sch.step(v_ref, t, x_ref).prev_sample
        x_ours = flow_euler_step(torch.sin(x_ours) + sigmas[i] * 1000 / 1000, sigmas[i], sigmas[i + 1], x_ours)
        assert torch.allclose(x_ours, x_ref, atol=1e-6, rtol=0)


def test_sample_flow_euler_matches_diffusers_loop():
    sch = _scheduler(3.0)
    sch.set_timesteps(6)
    g = torch.Generator().manual_seed(1)
    z = torch.randn(3, 2, generator=g)

    def model(x, t, cond=None):
        return torch.tanh(x) * (t[:, None] / 1000) + 0.3

    x = z.clone()
    for t in sch.timesteps:
        x = sch.step(model(x, t.expand(3)), t, x).prev_sample
    ours = sample_flow(model, (3, 2), num_steps=6, shift=3.0, noise=z)
    assert torch.allclose(ours, x, atol=1e-6)


def test_path_and_inverse():
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(4, 1, 5, 5, generator=g), torch.randn(4, 1, 5, 5, generator=g)
    t = torch.tensor([0.0, 0.25, 0.5, 1.0])
    x_t, v = flow_path(x0, eps, t)
    assert torch.allclose(x_t[0], x0[0]) and torch.allclose(x_t[3], eps[3])
    assert torch.allclose(v, eps - x0)
    assert torch.allclose(x0_from_velocity(x_t, v, t), x0, atol=1e-6)
    assert torch.allclose(noise_from_velocity(x_t, v, t), eps, atol=1e-6)
    # the velocity is the time derivative of the path
    h = 1e-3
    xa, _ = flow_path(x0, eps, 0.5 + h)
    xb, _ = flow_path(x0, eps, 0.5 - h)
    assert torch.allclose((xa - xb) / (2 * h), v, atol=1e-2)


def test_shift_keeps_ends_and_pushes_towards_noise():
    s = torch.linspace(0, 1, 11)
    shifted = shift_sigmas(s, 3.0)
    assert shifted[0] == 0 and shifted[-1] == 1
    assert bool((shifted[1:-1] > s[1:-1]).all())


def test_exact_velocity_transports_gaussian_to_gaussian():
    """Data N(μ, s²): the marginal velocity is known in closed form; Heun with 20 steps lands on the data law."""
    mu, sd = 2.0, 0.5

    def v_star(x, t, cond=None):
        t = t[:, None] / 1000
        # x_t = (1-t)x0 + t ε is Gaussian; E[ε − x0 | x_t] by linear regression
        var = (1 - t) ** 2 * sd**2 + t**2
        cov_v_x = t - (1 - t) * sd**2  # Cov(ε − x0, x_t)
        mean_x = (1 - t) * mu
        return -mu + cov_v_x / var * (x - mean_x)

    out = sample_flow(v_star, (20000, 1), sampler="heun", num_steps=20, generator=torch.Generator().manual_seed(0))
    assert abs(out.mean().item() - mu) < 0.02 and abs(out.std().item() - sd) < 0.02
    one = sample_flow(v_star, (20000, 1), sampler="euler", num_steps=1, generator=torch.Generator().manual_seed(0))
    assert abs(one.mean().item() - mu) < 0.02  # one step: the mean is already right, the spread is not


def test_heun_and_midpoint_are_second_order():
    """On dx/dt = x (exact: x(0) = x(1)/e), the error of heun and midpoint falls ~4× when steps double."""

    def model(x, t, cond=None):
        return x

    x1 = torch.ones(1, 1)
    for sampler in ("heun", "midpoint"):
        errs = []
        for n in (8, 16):
            sig = torch.cat([torch.linspace(1, 0, n + 1)])
            out = sample_flow(model, (1, 1), sampler=sampler, sigmas=sig, noise=x1)
            errs.append(abs(out.item() - math.exp(-1)))
        assert 3.0 < errs[0] / errs[1] < 5.0, (sampler, errs)


def test_network_evaluations_counted():
    calls = {"n": 0}

    def model(x, t, cond=None):
        calls["n"] += 1
        return torch.zeros_like(x)

    for sampler in FLOW_SAMPLERS:
        for n in (1, 3):
            calls["n"] = 0
            sample_flow(model, (2, 2), sampler=sampler, num_steps=n)
            assert calls["n"] == flow_network_evaluations(sampler, n), sampler
        assert flow_network_evaluations(sampler, flow_steps_for_nfe(sampler, 10)) <= 10


def test_cfg_combines_velocities_in_one_call():
    seen = []

    def model(x, t, cond=None):
        seen.append(x.shape[0])
        return torch.where((cond >= 0)[:, None], torch.ones_like(x), torch.zeros_like(x))

    out = sample_flow(model, (3, 2), num_steps=1, cond=torch.tensor([1, 2, 3]), guidance_scale=3.0,
                      noise=torch.zeros(3, 2))
    assert seen == [6]  # one batched call on [x, x]
    assert torch.allclose(out, torch.full((3, 2), -3.0))  # ṽ = 0 + 3·(1 − 0); x = 0 − 1·ṽ


def test_trajectory_and_straightness():
    res = sample_flow(lambda x, t: torch.ones_like(x), (4, 2), num_steps=5, return_trajectory=True,
                      generator=torch.Generator().manual_seed(0))
    assert isinstance(res, FlowSampleResult) and len(res.trajectory) == 6 and len(res.sigmas) == 6
    assert abs(straightness(res.trajectory)) < 1e-6
    bent = [torch.zeros(1, 2), torch.tensor([[1.0, 1.0]]), torch.tensor([[2.0, 0.0]])]
    assert abs(straightness(bent) - 0.5) < 1e-6  # 1 away from a chord of length 2


@pytest.mark.parametrize("sampling", ["uniform", "logit_normal", "u_shaped"])
def test_sample_times(sampling):
    t = sample_times(20000, sampling, generator=torch.Generator().manual_seed(0))
    assert t.shape == (20000,) and bool(((t >= 0) & (t <= 1)).all())
    assert abs(t.mean().item() - 0.5) < 0.01
    if sampling == "logit_normal":  # more mass in the middle than uniform
        assert ((t - 0.5).abs() < 0.25).float().mean() > 0.6
    if sampling == "u_shaped":  # more mass at the ends: P(t > 0.9) = (e^4 − e^3.6)/(2(e^4 − 1)) ≈ 0.167 per end
        assert abs((t > 0.9).float().mean().item() - 0.167) < 0.01 and abs((t < 0.1).float().mean().item() - 0.167) < 0.01


def test_loss_is_the_velocity_error():
    obj = FlowMatching(timestep_sampling="uniform")
    x0 = torch.randn(8, 1, 4, 4, generator=torch.Generator().manual_seed(3))

    # a model that knows ε: given the draw order (t, then ε) we can reproduce the batch
    g = torch.Generator().manual_seed(5)
    t = sample_times(8, "uniform", generator=g)
    eps = torch.randn(x0.shape, generator=g)
    x_t, v = flow_path(x0, eps, t)

    def perfect(x, tt, cond=None):
        assert torch.allclose(tt, t * 1000)
        return v

    assert obj.loss(perfect, x0, None, torch.Generator().manual_seed(5)).item() < 1e-12
    zero = obj.loss(lambda x, tt: torch.zeros_like(x), x0, None, torch.Generator().manual_seed(5))
    assert torch.allclose(zero, v.pow(2).mean())
    assert obj.identity()["timestep_sampling"] == "uniform" and obj.identity()["objective"] == "flow_matching"


def test_loss_trains_a_small_model():
    """A few hundred Adam steps on a 1-D Gaussian: the loss falls towards its floor."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 32), torch.nn.SiLU(), torch.nn.Linear(32, 1))

    def model(x, t, cond=None):
        return net(torch.cat([x, t[:, None] / 1000], dim=1))

    obj = FlowMatching()
    data = 2 + 0.5 * torch.randn(512, 1, generator=torch.Generator().manual_seed(0))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    first = None
    for _ in range(300):
        loss = obj.loss(model, data[torch.randint(512, (128,), generator=g)], None, g)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first
    out = sample_flow(model, (2000, 1), num_steps=20, generator=torch.Generator().manual_seed(1))
    assert abs(out.mean().item() - 2.0) < 0.15


def test_reflow_pairs_fix_the_noise():
    x0 = torch.randn(4, 2, generator=torch.Generator().manual_seed(0))
    z = torch.randn(4, 2, generator=torch.Generator().manual_seed(1))
    pairs = reflow_pairs(x0, z)
    a, b = split_pairs(pairs)
    assert torch.equal(a, x0) and torch.equal(b, z)
    obj = FlowMatching(reflow=True)
    # the exact straight velocity between the pair gives zero loss, whatever t is drawn
    loss = obj.loss(lambda x, t: (z - x0), pairs, None, torch.Generator().manual_seed(0))
    assert loss.item() < 1e-12


@pytest.mark.parametrize(
    "kwargs, name",
    [({"sampler": "rk4"}, "sampler"), ({"shift": 0.0}, "shift"), ({"shift": -1.0}, "shift"),
     ({"num_steps": 0}, "num_steps"), ({"guidance_scale": 2.0}, "guidance_scale"), ({"shift": "big"}, "shift")],
)
def test_bad_parameters_name_themselves(kwargs, name):
    with pytest.raises(ValueError, match=name):
        sample_flow(lambda x, t: x, (2, 2), **kwargs)


def test_bad_objective_and_grid_parameters():
    with pytest.raises(ValueError, match="timestep_sampling"):
        FlowMatching(timestep_sampling="cosine")
    with pytest.raises(ValueError, match="shift"):
        flow_sigmas(4, shift=0)
    with pytest.raises(ValueError, match="sampler"):
        flow_network_evaluations("rk45", 3)
    with pytest.raises(ValueError, match="t must lie"):
        flow_path(torch.zeros(2), torch.zeros(2), 1.5)
    with pytest.raises(ValueError, match="sigmas"):
        sample_flow(lambda x, t: x, (2, 2), sigmas=torch.tensor([1.0, 0.5]))
    with pytest.raises(ValueError, match="shape"):
        sample_flow(lambda x, t: x[:1], (2, 2))


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("n", [1, 5, 20])
def test_ddim_is_euler_on_the_diffusion_model_read_as_a_velocity(prediction_type, n):
    """Chapter 12, section 3: DDIM (η = 0, trailing) equals Euler steps of velocity_from_diffusion on the
    flow times t = σ/(1 + σ) of the same timesteps, from the same static rescaled to flow coordinates."""
    from course_lib.flow import diffusion_sigmas_as_flow, velocity_from_diffusion
    from course_lib.samplers import sample
    from course_lib.schedules import make_schedule, schedule_sigmas, timesteps

    s = make_schedule("cosine", 1000)

    def dummy(x, t, cond=None):
        t = torch.as_tensor(t, dtype=torch.float32).reshape(-1, *([1] * (x.dim() - 1)))
        return x * t / (t + 1000) + 0.1 * torch.sin(3 * x)

    z = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    ddim = sample(dummy, s, z.shape, sampler="ddim", num_steps=n, spacing="trailing", clip_sample=False, noise=z, progress=False,
                  prediction_type=prediction_type)
    grid = torch.cat([diffusion_sigmas_as_flow(schedule_sigmas(s)[timesteps(1000, n, "trailing")]),
                      torch.zeros(1, dtype=torch.float64)])
    start = z * float(((1 - grid[0]) ** 2 + grid[0] ** 2).sqrt())
    euler = sample_flow(velocity_from_diffusion(dummy, s, prediction_type=prediction_type), z.shape, sigmas=grid,
                        noise=start)
    assert ((ddim - euler).abs().max() / ddim.abs().max()).item() < 1e-4


def test_flow_alpha_bar_is_the_rescaled_path():
    from course_lib.flow import flow_alpha_bar

    t = torch.tensor([0.1, 0.5, 0.9])
    x0, eps = torch.randn(3, 2), torch.randn(3, 2)
    x_t, _ = flow_path(x0, eps, t)
    a = flow_alpha_bar(t).float()[:, None]
    n = ((1 - t) ** 2 + t**2).sqrt()[:, None]
    assert torch.allclose(x_t / n, a.sqrt() * x0 + (1 - a).sqrt() * eps, atol=1e-6)


def test_flow_rows_of_the_steps_table():
    """benchmarks/samplers.py's flow rows: labels, network calls, the same starting noises, best ratios."""
    from course_lib.steps_table import FlowRowConfig, best_ratio_within, flow_steps_vs_quality, flow_table_configs

    configs = flow_table_configs(("flow",))
    assert [c.nfe for c in configs] == [1, 2, 4, 10, 20, 2, 4, 10, 20] + [2, 4, 10, 20] * 2
    assert configs[3].label == "flow Euler-10" and FlowRowConfig("reflow", "midpoint", 2, 3.0).label == "reflow Midpoint-2 shift 3"
    assert configs[-1].label == "flow SDE-DPM-Solver++(2M)-20"
    seen = []

    def model(x, t, cond=None):
        seen.append(x[:1].clone())
        return torch.zeros_like(x)

    real = torch.zeros(4, 1, 4, 4)
    rows = flow_steps_vs_quality({"flow": model}, real, configs[:2], 3, fid_fn=lambda r, f: float(f.abs().mean()),
                                 progress=False)
    assert [r["nfe"] for r in rows] == [1, 2] and torch.equal(seen[0], seen[1])  # the same starting noise
    rows.append({"nfe": 1000, "fid": 2.0 * rows[0]["fid"]})
    assert best_ratio_within(rows, 4) == 0.5
    with pytest.raises(ValueError, match="reflow"):
        flow_steps_vs_quality({"flow": model}, real, [FlowRowConfig("reflow", "euler", 1)], 3)
    with pytest.raises(ValueError, match="shift"):
        FlowRowConfig("flow", "euler", 1, shift=0.0)


def test_dpm_samplers_read_the_flow_as_a_denoiser():
    """dpmpp_2m / dpmpp_2m_sde (chapter 06's solvers on flow_denoiser): on the exact velocity of a Gaussian
    data law both land on it; the grid is EDM's karras σ read as t = σ/(1 + σ); a grid from t = 1 is refused."""
    from course_lib.flow import flow_denoiser, flow_dpm_sigmas
    from course_lib.solvers import karras_sigmas

    mu, sd = 2.0, 0.5

    def v_star(x, t, cond=None):
        t = t[:, None] / 1000
        var = (1 - t) ** 2 * sd**2 + t**2
        return -mu + (t - (1 - t) * sd**2) / var * (x - (1 - t) * mu)

    for sampler, steps in (("dpmpp_2m", 20), ("dpmpp_2m_sde", 100)):  # the SDE's fresh noise needs more steps to settle
        out = sample_flow(v_star, (20000, 1), sampler=sampler, num_steps=steps, generator=torch.Generator().manual_seed(0))
        assert abs(out.mean().item() - mu) < 0.03 and abs(out.std().item() - sd) < 0.03, sampler
    grid = flow_dpm_sigmas(10)
    levels = karras_sigmas(10, 0.002, 80.0)[:-1].double()
    assert grid[-1] == 0 and len(grid) == 11 and torch.allclose(grid[:-1].double(), levels / (1 + levels), atol=1e-7)
    assert bool((flow_dpm_sigmas(10, shift=3.0)[1:-1] > grid[1:-1]).all())  # shifted towards the noise
    # the denoiser's guess x̂₀ from the diffusion-scale point x = x₀ + σ·ε, for a model that knows x₀ = 1
    x0, eps, sigma = torch.ones(3, 2), torch.randn(3, 2), 4.0
    exact = flow_denoiser(lambda x, tt: (x - x0) / tt)  # v = ε − x₀ = (x_t − x₀)/t on the straight line
    assert torch.allclose(exact(x0 + sigma * eps, sigma), x0, atol=1e-5)
    with pytest.raises(ValueError, match="sigmas"):
        sample_flow(v_star, (2, 1), sampler="dpmpp_2m", sigmas=torch.tensor([1.0, 0.5, 0.0]))


# ----------------------------------------------------------------------------- chapter 12's shipped weights
def test_cpu_profile_loads_the_shipped_flows_of_its_own_recipe(monkeypatch, tmp_path):
    """The cpu flow and reflow ship (benchmarks/train_flows.py) and load verified, training nothing; the
    reflow card's base recipe is the flow's, and a card for another recipe is refused."""
    from course_lib.checkpoints import CheckpointError
    from course_lib.pretrained import FLOW, flow_digits_model, flow_identity, reflow_digits_model, reflow_identity
    from course_lib.registry import load_shipped
    from course_lib.models.unet import UNet, digits_config

    monkeypatch.setenv("COURSE_RUNS_DIR", str(tmp_path))
    monkeypatch.delenv("COURSE_PROFILE", raising=False)  # the tests' smoke default would win over "cpu"
    flow, info = flow_digits_model("cpu", device="cpu", progress=False)
    reflow, reflow_info = reflow_digits_model("cpu", device="cpu", progress=False)
    assert info["shipped"] and reflow_info["shipped"] and not any(tmp_path.iterdir())  # nothing trained or written
    assert reflow_identity("cpu")["base"] == flow_identity("cpu")
    assert reflow_info["extra_seconds"] <= info["train_seconds"]  # issue 14: reflow costs at most the base training
    x = sample_flow(reflow, (2, 1, 32, 32), num_steps=1, generator=torch.Generator().manual_seed(0))
    assert x.shape == (2, 1, 32, 32) and x.isfinite().all()
    with pytest.raises(CheckpointError, match="another recipe"):
        load_shipped(FLOW, UNet(digits_config("cpu")), "smoke")  # the smoke recipe's identity


def test_reflow_pairs_are_cached_per_base_and_per_recipe(tmp_path):
    """The pairs file is keyed on the base flow's sha256 and on how the pairs are drawn: another count
    (or another base) draws new pairs instead of reusing stale ones."""
    from course_lib.pretrained import reflow_pairs_for

    class Still(torch.nn.Module):  # velocity 0: each picture is its own static
        def forward(self, x, t):
            return torch.zeros_like(x)

    first, _ = reflow_pairs_for(Still(), "a" * 64, "smoke", tmp_path, num_pairs=3, device=torch.device("cpu"))
    again, _ = reflow_pairs_for(Still(), "a" * 64, "smoke", tmp_path, num_pairs=3, device=torch.device("cpu"))
    more, _ = reflow_pairs_for(Still(), "a" * 64, "smoke", tmp_path, num_pairs=5, device=torch.device("cpu"))
    other, _ = reflow_pairs_for(Still(), "b" * 64, "smoke", tmp_path, num_pairs=3, device=torch.device("cpu"))
    assert torch.equal(first, again) and len(first) == 3 and len(more) == 5 and torch.equal(first, other)
    assert len(list(tmp_path.glob("pairs-*.safetensors"))) == 3


def test_pseudo_huber_distance_is_the_error_length_and_joins_the_identity_only_when_chosen():
    """FlowMatching(distance="pseudo_huber"): per example (√(‖Δ‖² + c²) − c)/√d, c = 0.00054·√d."""
    x0, z = torch.randn(2, 3, 1, 4, 4, generator=torch.Generator().manual_seed(5))  # (2, B, 1, 4, 4)
    pairs = reflow_pairs(x0, z)

    def zero(x, t):  # predicts velocity 0: the error is the whole velocity ε − x₀
        return torch.zeros_like(x)

    obj = FlowMatching(timestep_sampling="uniform", reflow=True, distance="pseudo_huber")
    c, sq = 0.00054 * 4.0, (z - x0).pow(2).flatten(1).sum(1)
    assert obj.loss(zero, pairs, generator=torch.Generator().manual_seed(0)).item() == pytest.approx(
        (((sq + c * c).sqrt() - c).mean() / 4.0).item(), rel=1e-5)
    assert obj.identity()["distance"] == "pseudo_huber" and "distance" not in FlowMatching().identity()
    with pytest.raises(ValueError, match="distance"):
        FlowMatching(distance="l1")
