"""Chapter 09's models: the VAE (shapes, ELBO terms, KL against Monte Carlo), the GAN (shapes, hinge
losses, a short training run, exact resume) and bad parameters."""

from __future__ import annotations

import math

import pytest
import torch

from course_lib.adversarial import GANTrainConfig, train_gan
from course_lib.checkpoints import CheckpointError, read_state
from course_lib.models.gan import Discriminator, GANConfig, Generator, hinge_d_loss, hinge_g_loss
from course_lib.models.vae import ELBO, VAE, VAEConfig, gaussian_kl, gaussian_nll, reparameterise

SMALL_VAE = VAEConfig(latent_dim=4, base=4)
SMALL_GAN = GANConfig(latent_dim=8, g_base=4, d_base=4)


def _images(n: int = 32, seed: int = 0) -> torch.Tensor:
    """Blobs in [-1, 1]: a bright square at a random place on a dark background."""
    g = torch.Generator().manual_seed(seed)
    x = -torch.ones(n, 1, 32, 32)
    for i, (r, c) in enumerate(torch.randint(0, 24, (n, 2), generator=g).tolist()):
        x[i, :, r : r + 8, c : c + 8] = 1.0
    return x


# ----------------------------------------------------------------------------- VAE
def test_vae_shapes_and_range():
    torch.manual_seed(0)
    m = VAE(SMALL_VAE)
    x = _images(5)
    out = m(x)
    assert out.recon.shape == x.shape and out.mu.shape == (5, 4) and out.logvar.shape == (5, 4) and out.z.shape == (5, 4)
    s = m.eval().sample(3, generator=torch.Generator().manual_seed(0))
    assert s.shape == (3, 1, 32, 32) and s.abs().max() <= 1.0
    with pytest.raises(ValueError, match="x must be"):
        m.encode(torch.zeros(2, 1, 28, 28))
    with pytest.raises(ValueError, match="z must be"):
        m.decode(torch.zeros(2, 5))


def test_reparameterisation_is_mu_plus_sigma_eps():
    mu, logvar, eps = torch.tensor([[1.0, -2.0]]), torch.tensor([[math.log(4.0), 0.0]]), torch.tensor([[0.5, 3.0]])
    assert torch.allclose(reparameterise(mu, logvar, eps), torch.tensor([[2.0, 1.0]]))


def test_kl_known_values():
    assert torch.allclose(gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 3)), torch.zeros(2))  # q = prior
    # one entry, μ = 1, σ² = e: ½(1 + e − 1 − 1) = (e − 1)/2
    assert gaussian_kl(torch.tensor([[1.0]]), torch.tensor([[1.0]])).item() == pytest.approx((math.e - 1) / 2, rel=1e-6)


def test_kl_matches_a_monte_carlo_estimate():
    """KL(q ‖ p) = E_q[log q(z) − log p(z)], estimated with 400,000 draws from q."""
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.tensor([[0.7, -1.2, 0.1]]), torch.tensor([[-0.5, 0.4, -2.0]])
    z = reparameterise(mu, logvar, torch.randn(400_000, 3, generator=g)).double()
    q = torch.distributions.Normal(mu.double(), (0.5 * logvar.double()).exp())
    p = torch.distributions.Normal(0.0, 1.0)
    mc = (q.log_prob(z) - p.log_prob(z)).sum(1).mean().item()
    assert gaussian_kl(mu, logvar).item() == pytest.approx(mc, abs=0.01)


def test_gaussian_nll_against_torch_distributions():
    x, mean = _images(2), torch.zeros(2, 1, 32, 32)
    want = -torch.distributions.Normal(mean, 0.3).log_prob(x).flatten(1).sum(1)
    assert torch.allclose(gaussian_nll(x, mean, 0.3), want, rtol=1e-5)


def test_elbo_loss_is_reconstruction_plus_beta_kl():
    torch.manual_seed(0)
    m, x = VAE(SMALL_VAE).eval(), _images(4)
    rec, kl = ELBO(beta=1.0, decoder_std=0.2).terms(m, x, torch.Generator().manual_seed(1))
    for beta in (0.0, 1.0, 3.0):
        loss = ELBO(beta=beta, decoder_std=0.2).loss(m, x, None, torch.Generator().manual_seed(1))
        assert loss.item() == pytest.approx((rec + beta * kl).mean().item(), rel=1e-5)
    assert ELBO(beta=2.0, decoder_std=0.2).identity() == {"objective": "elbo", "beta": 2.0, "decoder_std": 0.2}


def test_a_short_vae_training_lowers_the_loss():
    torch.manual_seed(0)
    m, x, obj = VAE(SMALL_VAE), _images(64), ELBO(beta=1.0, decoder_std=0.3)
    opt, g = torch.optim.Adam(m.parameters(), lr=3e-3), torch.Generator().manual_seed(0)
    first = obj.loss(m, x, None, g).item()
    for _ in range(40):
        loss = obj.loss(m, x, None, g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert obj.loss(m, x, None, g).item() < first - 100  # nats per image


@pytest.mark.parametrize("kwargs, name", [({"beta": -0.1}, "beta"), ({"decoder_std": 0.0}, "decoder_std")])
def test_bad_elbo_parameters_raise_naming_them(kwargs, name):
    with pytest.raises(ValueError, match=name):
        ELBO(**kwargs)


@pytest.mark.parametrize("kwargs, name", [({"latent_dim": 0}, "latent_dim"), ({"image_size": 30}, "image_size"),
                                          ({"base": 0}, "base")])
def test_bad_vae_config_raises_naming_it(kwargs, name):
    with pytest.raises(ValueError, match=name):
        VAEConfig(**kwargs)


# ----------------------------------------------------------------------------- GAN
def test_gan_shapes_and_range():
    torch.manual_seed(0)
    G, D = Generator(SMALL_GAN), Discriminator(SMALL_GAN)
    x = G.sample(6, generator=torch.Generator().manual_seed(0))
    assert x.shape == (6, 1, 32, 32) and x.abs().max() <= 1.0
    assert D(x).shape == (6,)
    with pytest.raises(ValueError, match="z must be"):
        G(torch.zeros(2, 3))


def test_hinge_losses_on_known_scores():
    real, fake = torch.tensor([2.0, 0.5, -1.0]), torch.tensor([-2.0, 0.0, 1.0])
    # real: max(0, 1 − s) = 0, 0.5, 2 → mean 5/6; fake: max(0, 1 + s) = 0, 1, 2 → mean 1
    assert hinge_d_loss(real, fake).item() == pytest.approx(5 / 6 + 1)
    assert hinge_g_loss(fake).item() == pytest.approx(1 / 3)
    assert hinge_d_loss(torch.full((4,), 1.5), torch.full((4,), -1.5)).item() == 0.0  # a confident detective


def test_discriminator_is_spectrally_normalised():
    torch.manual_seed(0)
    D = Discriminator(SMALL_GAN)
    D(torch.zeros(2, 1, 32, 32))  # a power iteration
    w = D.net[0].weight.flatten(1)  # the normalised weight
    assert torch.linalg.matrix_norm(w, ord=2).item() == pytest.approx(1.0, abs=0.15)


class _Killed(Exception):
    pass


def _gan_run(tmp_path=None, steps=30, kill_at=None, **kw):
    torch.manual_seed(0)
    cfg = GANTrainConfig(steps=steps, batch_size=16, checkpoint_every=10, **kw)

    def kill(info):
        if info.step == kill_at:
            raise _Killed

    return train_gan(Generator(SMALL_GAN), Discriminator(SMALL_GAN), _images(64), cfg, run_dir=tmp_path,
                     device="cpu", progress=False, callback=kill)


def test_a_short_gan_training_lowers_the_detectives_loss():
    r = _gan_run(steps=40, lr_d=2e-3)
    assert len(r.g_losses) == len(r.d_losses) == 40
    assert sum(r.d_losses[-10:]) / 10 < sum(r.d_losses[:5]) / 5  # the detective learns to tell the blobs apart


def test_gan_resume_is_exact(tmp_path):
    full = _gan_run(tmp_path / "a", steps=30)
    with pytest.raises(_Killed):
        _gan_run(tmp_path / "b", steps=30, kill_at=25)  # killed after step 25: the checkpoint of step 20 remains
    assert read_state(tmp_path / "b")["step"] == 20
    resumed = _gan_run(tmp_path / "b", steps=30)
    for a, b in zip(full.ema_generator.state_dict().values(), resumed.ema_generator.state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(full.discriminator.state_dict().values(), resumed.discriminator.state_dict().values()):
        assert torch.equal(a, b)
    assert resumed.g_losses == full.g_losses and resumed.d_losses == full.d_losses
    with pytest.raises(CheckpointError, match="lr_g"):  # another recipe must not resume it
        _gan_run(tmp_path / "b", steps=30, lr_g=1e-3)


@pytest.mark.parametrize("kwargs, name", [({"lr_g": -1.0}, "lr_g"), ({"steps": 0}, "steps"), ({"beta2": 2.0}, "beta2")])
def test_bad_gan_parameters_raise_naming_them(kwargs, name):
    with pytest.raises(ValueError, match=name):
        GANTrainConfig(**kwargs)


def test_families_validation_names_the_parameter():
    from course_lib.families import check_budget, check_families, check_family

    with pytest.raises(ValueError, match="family"):
        check_family("flow")
    assert check_families("gan") == ["gan"]
    assert check_families("vae, gan") == ["vae", "gan"]
    assert check_families(["diffusion", "vae", "diffusion"]) == ["diffusion", "vae"]
    for bad in ("bogus", "", [], ["vae", "flow"], 3, ["vae", 3]):
        with pytest.raises(ValueError, match="families="):
            check_families(bad)
    for bad in (0, -5.0):
        with pytest.raises(ValueError, match="budget_seconds"):
            check_budget(bad)
    with pytest.raises(ValueError, match="beta"):
        ELBO(beta=-1.0)


def test_class_coverage_of_real_digits_is_nearly_uniform():
    from course_lib.data import load_mnist5000
    from course_lib.families import MAX_ENTROPY_BITS, class_coverage

    cov = class_coverage(load_mnist5000("test").images[:500])
    assert cov.shares.shape == (10,) and cov.shares.sum().item() == pytest.approx(1.0)
    assert MAX_ENTROPY_BITS - 0.1 < cov.entropy_bits <= MAX_ENTROPY_BITS + 1e-6
    one = class_coverage(load_mnist5000("test").images[:1].repeat(20, 1, 1, 1))  # a collapsed "model": one picture
    assert one.entropy_bits == pytest.approx(0.0, abs=1e-6)


# ----------------------------------------------------------------------------- the cached recipes (smoke sizes)
def test_race_recipes_train_once_then_load_from_the_cache(tmp_path, monkeypatch):
    from course_lib import pretrained

    monkeypatch.setenv("COURSE_RUNS_DIR", str(tmp_path))
    vae, info = pretrained.vae_model("smoke", device="cpu", progress=False)
    assert not info["cached"] and info["steps"] == pretrained.RACE_STEPS["smoke"]["vae"]
    assert info["objective"] == "elbo" and info["decoder_std"] == pretrained.VAE_DECODER_STD
    assert sum(info["losses"][-5:]) < sum(info["losses"][:5])  # the course's loop, the ELBO objective: it learns
    again, info2 = pretrained.vae_model("smoke", device="cpu", progress=False)
    assert info2["cached"] and all(torch.equal(a, b) for a, b in zip(vae.state_dict().values(), again.state_dict().values()))
    gen, ginfo = pretrained.gan_model("smoke", device="cpu", progress=False)
    assert not ginfo["cached"] and len(ginfo["g_losses"]) == pretrained.RACE_STEPS["smoke"]["gan"]
    assert pretrained.gan_model("smoke", device="cpu", progress=False)[1]["cached"]
    # chapter 04's run keeps its checkpoint of the race step: the race model then loads without training
    pretrained.digits_model("smoke", device="cpu", progress=False)
    model, schedule, dinfo = pretrained.digits_race_model("smoke", device="cpu", progress=False)
    assert dinfo["cached"] and dinfo["steps"] == pretrained.RACE_STEPS["smoke"]["diffusion"]
    # … and it is exactly the recipe stopped there: a fresh replay gives the same EMA weights
    replay, _, rinfo = pretrained.digits_race_model("smoke", run_dir=tmp_path / "replay", device="cpu", progress=False)
    assert not rinfo["cached"]
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), replay.state_dict().values()))


def test_vae_beta_names_its_own_run(tmp_path, monkeypatch):
    from course_lib import pretrained

    monkeypatch.setenv("COURSE_RUNS_DIR", str(tmp_path))
    with pytest.raises(ValueError, match="beta"):
        pretrained.vae_model("smoke", beta=-1.0, progress=False)
