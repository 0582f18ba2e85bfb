"""Chapter 15: the consistency parameterisation, the multistep sampler against diffusers'
CMStochasticIterativeScheduler, consistency distillation's pieces and MeanFlow's."""

from __future__ import annotations

import math

import pytest
import torch

from course_lib.consistency import (
    ConsistencyDistillation,
    ConsistencyModel,
    boundary_scalings,
    consistency_function,
    consistency_sigmas,
    distillation_grid,
    edm_scalings,
    sample_consistency,
    teacher_step,
)
from course_lib.models.unet import UNet, UNetConfig
from course_lib.solvers import EDM_SIGMA_MAX, EDM_SIGMA_MIN

diffusers = pytest.importorskip("diffusers")


def _raw_net() -> torch.nn.Module:
    """A small random network F(c_in·x, c_noise) standing in for a consistency model's backbone."""
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.SiLU(), torch.nn.Conv2d(8, 1, 3, padding=1))


def _diffusers_run(net, noise, timesteps, generator):
    """diffusers' ConsistencyModelPipeline loop, written out: scale the input, call the net, step."""
    from diffusers import CMStochasticIterativeScheduler

    sched = CMStochasticIterativeScheduler()
    sched.set_timesteps(timesteps=timesteps)
    sample = noise * sched.init_noise_sigma
    for t in sched.timesteps:
        scaled = sched.scale_model_input(sample, t)
        out = net(scaled) + 0.01 * t.float()  # the model sees the scaled timestep too
        sample = sched.step(out, t, sample, generator=generator).prev_sample
    return sample, sched.sigmas


@pytest.mark.parametrize("timesteps", [[0], [22, 0], [35, 22, 10, 0], [39, 5]])
def test_sampler_takes_the_same_steps_as_diffusers(timesteps):
    net = _raw_net()
    noise = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want, sigmas = _diffusers_run(net, noise, timesteps, torch.Generator().manual_seed(7))

    def raw(x, sigma):  # F(x, σ) with the c_in and c_noise of Song et al. (diffusers' scale_model_input, sigma_to_t)
        s = sigma.double().view(-1, 1, 1, 1)
        t = 1000 * 0.25 * torch.log(sigma.double() + 1e-44)
        return net((x / (s**2 + 0.25) ** 0.5).float()) + 0.01 * t.float().view(-1, 1, 1, 1)

    f = consistency_function(raw)
    got = sample_consistency(f, noise * EDM_SIGMA_MAX, sigmas, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_sampler_differs_with_other_noise():
    net = _raw_net()
    noise = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    f = consistency_function(lambda x, s: net(x))
    sig = consistency_sigmas(3)
    a = sample_consistency(f, noise * 80, sig, generator=torch.Generator().manual_seed(1))
    b = sample_consistency(f, noise * 80, sig, generator=torch.Generator().manual_seed(2))
    assert not torch.allclose(a, b)


def test_scalings_match_diffusers_and_meet_the_boundary():
    from diffusers import CMStochasticIterativeScheduler

    sched = CMStochasticIterativeScheduler()
    sigma = torch.tensor([0.002, 0.01, 0.5, 3.0, 80.0], dtype=torch.float64)
    for ours, theirs in ((boundary_scalings(sigma), sched.get_scalings_for_boundary_condition(sigma)),
                         (edm_scalings(sigma), sched.get_scalings(sigma))):
        torch.testing.assert_close(ours[0], theirs[0])
        torch.testing.assert_close(ours[1], theirs[1])
    c_skip, c_out = boundary_scalings(EDM_SIGMA_MIN)
    assert float(c_skip) == 1.0 and float(c_out) == 0.0


def _tiny_unet() -> UNet:
    torch.manual_seed(0)
    return UNet(UNetConfig.preset("tiny"))


def test_consistency_model_boundary_condition_holds_for_any_weights():
    model = ConsistencyModel(_tiny_unet())
    x = torch.randn(2, 1, 16, 16)
    torch.testing.assert_close(model(x, EDM_SIGMA_MIN), x)
    loose = ConsistencyModel(_tiny_unet(), boundary=False)
    assert (loose(x, EDM_SIGMA_MIN) - x).abs().max() > 1e-3  # the denoiser alone does not meet it


def test_consistency_model_is_the_teachers_denoiser_away_from_the_boundary():
    from course_lib.solvers import flow_denoiser

    net = _tiny_unet()
    model = ConsistencyModel(net)
    x = torch.randn(2, 1, 16, 16) * 5
    d = flow_denoiser(lambda xt, t: net(xt, torch.full((2,), t * 1000.0)))(x, 5.0)
    torch.testing.assert_close(model(x, 5.0), d, rtol=2e-3, atol=2e-3)  # (1 − σ_min/σ) ≈ 1


def test_consistency_sigmas():
    assert consistency_sigmas(1).tolist() == pytest.approx([EDM_SIGMA_MAX, EDM_SIGMA_MIN])
    s = consistency_sigmas(4, sigma_low=0.5)
    assert len(s) == 5 and s[0] == pytest.approx(80) and s[3] == pytest.approx(0.5) and s[4] == pytest.approx(0.002)
    with pytest.raises(ValueError, match="num_calls"):
        consistency_sigmas(0)


def test_teacher_step_is_exact_on_a_point_mass():
    """If all data is one picture c, D(x, σ) = c and the ODE path is x = c + σ·ε: both solvers are exact."""
    c = torch.randn(1, 1, 4, 4)
    x = c + 3.0 * torch.randn(1, 1, 4, 4)
    for solver in ("euler", "heun"):
        out = teacher_step(lambda xx, s: c.expand_as(xx), x, torch.tensor([3.0]), torch.tensor([1.0]), solver)
        torch.testing.assert_close(out, c + (x - c) / 3.0)


def test_distillation_grid_and_loss():
    g = distillation_grid(10)
    assert g[0] == pytest.approx(EDM_SIGMA_MIN) and g[-1] == pytest.approx(EDM_SIGMA_MAX) and bool((g.diff() > 0).all())
    teacher = _tiny_unet()
    obj = ConsistencyDistillation(teacher, "abc", num_scales=4, solver="euler")
    student = ConsistencyModel(_tiny_unet())
    x0 = torch.rand(4, 1, 16, 16) * 2 - 1
    loss = obj.loss(student, x0, None, torch.Generator().manual_seed(0))
    assert loss.dim() == 0 and math.isfinite(loss.item()) and loss.item() > 0
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert obj.identity()["teacher"] == "abc"
    with pytest.raises(ValueError, match="solver"):
        ConsistencyDistillation(teacher, "abc", solver="rk4")


# ----------------------------------------------------------------------------- MeanFlow
def _tiny_meanflow():
    from course_lib.meanflow import MeanFlowNet

    torch.manual_seed(0)
    return MeanFlowNet(UNetConfig.preset("tiny"))


def test_path_derivative_matches_the_exact_jvp():
    from course_lib.meanflow import path_derivative

    model = _tiny_meanflow().eval()
    x, v = torch.randn(2, 1, 16, 16), torch.randn(2, 1, 16, 16)
    t, r = torch.tensor([0.7, 0.4]), torch.tensor([0.2, 0.1])
    with torch.no_grad():
        u, exact = torch.func.jvp(lambda xx, tt: model(xx, tt, r), (x, t), (v, torch.ones_like(t)))
    approx = path_derivative(model, x, t, r, v, u)
    err = (approx - exact).norm() / exact.norm()
    assert err < 0.02, err


def test_meanflow_loss_is_flow_matching_at_r_equal_t():
    from course_lib.meanflow import MeanFlowObjective, sample_times

    t, r = sample_times(1000, torch.Generator().manual_seed(0))
    assert bool((r <= t).all()) and 0.15 < float((r < t).float().mean()) < 0.35
    model = _tiny_meanflow()
    x0 = torch.rand(3, 1, 16, 16) * 2 - 1
    obj = MeanFlowObjective(gap_fraction=0.0, power=0.0)
    g = torch.Generator().manual_seed(3)
    loss = obj.loss(model, x0, None, g)
    g = torch.Generator().manual_seed(3)
    tt, rr = sample_times(3, g, gap_fraction=0.0)
    noise = torch.randn(x0.shape, generator=g)
    x_t = (1 - tt.view(-1, 1, 1, 1)) * x0 + tt.view(-1, 1, 1, 1) * noise
    want = (model(x_t, tt, tt) - (noise - x0)).pow(2).mean()
    torch.testing.assert_close(loss, want, rtol=1e-5, atol=1e-6)


def test_sample_meanflow_uses_the_average_velocity():
    from course_lib.meanflow import sample_meanflow

    c = torch.randn(1, 1, 4, 4)
    z = torch.randn(2, 1, 4, 4)

    def u(x, t, r):  # all data at c: the path is x_t = (1 − t)c + tε, its velocity ε − c = (x − c)/t
        return (x - c) / t

    torch.testing.assert_close(sample_meanflow(u, z, 1), c.expand_as(z))
    torch.testing.assert_close(sample_meanflow(u, z, 3), c.expand_as(z), rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- paths, any-pair targets, the table
def test_teacher_paths_end_with_the_teachers_sampler():
    from course_lib.consistency import path_sigmas, teacher_paths

    net = _tiny_unet()
    z = torch.randn(3, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    paths, sig = teacher_paths(net, z, 5)
    assert paths.shape == (3, 5, 16, 16) and torch.equal(sig, path_sigmas(5))
    assert sig[0] == pytest.approx(EDM_SIGMA_MAX) and sig[-1] == pytest.approx(EDM_SIGMA_MIN)
    torch.testing.assert_close(paths[:, :1], z * EDM_SIGMA_MAX)
    with torch.no_grad():  # the last point is what DPM-Solver++(2M) on the same levels draws
        from course_lib.solvers import flow_denoiser, karras_sigmas, sample_dpmpp_2m
        d = flow_denoiser(lambda x, t: net(x, torch.full((x.shape[0],), t * 1000.0)))
        want = sample_dpmpp_2m(d, z * EDM_SIGMA_MAX, karras_sigmas(5, EDM_SIGMA_MIN, EDM_SIGMA_MAX))
    torch.testing.assert_close(paths[:, -1:], want)


def test_path_consistency_targets():
    from course_lib.consistency import PathConsistency

    sig = (80.0, 5.0, 0.5, 0.002)
    student = ConsistencyModel(_tiny_unet())
    paths = torch.randn(6, 4, 16, 16)
    for skip in ("any", "adjacent"):
        loss = PathConsistency(sig, skip=skip).loss(student, paths, None, torch.Generator().manual_seed(1))
        assert loss.dim() == 0 and loss.item() > 0
    assert PathConsistency(sig).identity() != PathConsistency(sig, skip="adjacent").identity()
    # a student that is the identity on the last point and constant along each path has zero loss
    ends = paths[:, -1:]

    class Perfect(torch.nn.Module):
        def forward(self, x, sigma, cond=None):
            return ends

    perfect = PathConsistency(sig, distance="mse").loss(Perfect(), paths, None, torch.Generator().manual_seed(1))
    assert perfect.item() == 0.0
    with pytest.raises(ValueError, match="descending"):
        PathConsistency((0.002, 80.0))


def test_one_step_rows_have_the_table_format():
    from course_lib.meanflow import MeanFlowNet
    from course_lib.one_step_table import one_step_configs, one_step_vs_quality

    torch.manual_seed(0)
    models = {"cm": ConsistencyModel(_tiny_unet()).eval(), "mf": MeanFlowNet(UNetConfig.preset("tiny")).eval()}
    real = torch.rand(10, 1, 16, 16) * 2 - 1
    rows = one_step_vs_quality(models, real, one_step_configs({"cm": "consistency", "mf": "meanflow"}, calls=(1, 2)), 4,
                               progress=False, fid_fn=lambda a, b: float((a.mean() - b.mean()).abs()))
    assert [r["label"] for r in rows] == ["cm 1-call", "cm 2-call", "mf 1-call", "mf 2-call"]
    assert all(r["nfe"] == r["steps"] for r in rows)
    with pytest.raises(ValueError, match="not in models"):
        one_step_vs_quality(models, real, one_step_configs({"other": "meanflow"}), 4, progress=False)


def test_adversarial_consistency_turns_and_training():
    from course_lib.consistency import AdversarialConsistency, PathConsistency, StudentCritic
    from course_lib.models.gan import Discriminator, GANConfig
    from course_lib.optim import TrainConfig
    from course_lib.training import train

    torch.manual_seed(0)
    sig = (80.0, 5.0, 0.5, 0.002)
    pair = StudentCritic(ConsistencyModel(_tiny_unet()), Discriminator(GANConfig(image_size=16, d_base=8)))
    x = torch.randn(2, 1, 16, 16)
    assert torch.equal(pair(x, 3.0), pair.student(x, 3.0))  # the pair samples as its student
    real = torch.rand(20, 1, 16, 16) * 2 - 1
    objective = AdversarialConsistency(PathConsistency(sig), real, "r", weight=0.5, top_fraction=0.5)
    paths = torch.randn(6, 4, 16, 16)
    pair.critic.eval()  # no power iteration of the spectral norm: the critic scores the same twice
    turns = list(objective.turns(pair, paths, None, torch.Generator().manual_seed(1)))
    assert [name for name, _ in turns] == ["critic", "student"]
    assert all(loss.dim() == 0 and torch.isfinite(loss) for _, loss in turns)
    # the student's loss is the consistency distance minus λ·mean critic score on the same answers
    pred, target = PathConsistency(sig).answers(pair.student, paths, torch.Generator().manual_seed(1), top=3)
    want = PathConsistency(sig).distance_of(pred, target) - 0.5 * pair.critic(pred).mean()
    assert torch.allclose(turns[1][1], want, atol=1e-6)
    assert objective.identity() != AdversarialConsistency(PathConsistency(sig), real, "r", weight=0.2).identity()
    pair.critic.train()
    before = {k: v.clone() for k, v in pair.state_dict().items()}
    result = train(pair, objective, paths, TrainConfig(steps=2, batch_size=4, lr=1e-4, warmup=1, checkpoint_every=0),
                   progress=False)
    after = result.model.state_dict()
    for part in ("student.", "critic."):  # both players moved
        assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith(part))
    with pytest.raises(ValueError, match="weight"):
        AdversarialConsistency(PathConsistency(sig), real, "r", weight=-1.0)
