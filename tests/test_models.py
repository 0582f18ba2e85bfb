"""Denoisers: embeddings, the course U-Net (every preset), the MLP, and their error messages."""

from __future__ import annotations

import math

import pytest
import torch

from course_lib.models import (
    PRESET_NAMES,
    MLPConfig,
    MLPDenoiser,
    UNet,
    UNetConfig,
    count_parameters,
    digits_config,
    sinusoidal_embedding,
)
from course_lib.schedules import make_schedule
from course_lib.objectives import diffusion_loss


def _batch(cfg: UNetConfig, b: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, cfg.in_channels, cfg.image_size, cfg.image_size, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- embeddings
def test_sinusoidal_embedding_values_and_fractional_t():
    e = sinusoidal_embedding(torch.tensor([0, 7]), 8)
    assert e.shape == (2, 8)
    assert torch.allclose(e[0], torch.tensor([1.0] * 4 + [0.0] * 4))  # cos 0 = 1, sin 0 = 0
    assert math.isclose(float(e[1, 0]), math.cos(7.0), rel_tol=1e-6)  # lowest frequency is 1
    assert math.isclose(float(e[1, 5]), math.sin(7.0 * 10_000 ** (-1 / 4)), rel_tol=1e-5)
    # a fractional t lies between its integer neighbours
    mid, lo, hi = (sinusoidal_embedding(torch.tensor([v]), 64)[0] for v in (500.5, 500.0, 501.0))
    assert (mid - lo).norm() < (hi - lo).norm() and (mid - hi).norm() < (hi - lo).norm()
    assert torch.allclose(sinusoidal_embedding(3, 16), sinusoidal_embedding(torch.tensor([3.0]), 16))


def test_sinusoidal_embedding_rejects_odd_dim_and_2d_t():
    with pytest.raises(ValueError, match="dim must be even"):
        sinusoidal_embedding(torch.tensor([1]), 7)
    with pytest.raises(ValueError, match="t must be"):
        sinusoidal_embedding(torch.zeros(2, 2), 8)


# ----------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("name", PRESET_NAMES)
def test_every_preset_keeps_the_input_shape(name):
    cfg = UNetConfig.preset(name)
    model = UNet(cfg).eval()
    x = _batch(cfg)
    with torch.no_grad():
        out = model(x, torch.tensor([0, 999]))
    assert out.shape == x.shape and torch.isfinite(out).all()


@pytest.mark.parametrize("profile", ["smoke", "cpu", "gpu"])
def test_digits_config_matches_presets(profile, monkeypatch):
    monkeypatch.delenv("COURSE_PROFILE", raising=False)
    assert digits_config(profile) == UNetConfig.preset(f"digits-{profile}")
    assert digits_config(profile, num_classes=10).num_classes == 10


def test_fractional_and_scalar_t_work():
    cfg = UNetConfig.preset("tiny")
    model = UNet(cfg).eval()
    x = _batch(cfg)
    with torch.no_grad():
        a = model(x, 250.5)
        b = model(x, torch.tensor([250.5, 250.5]))
        c = model(x, torch.tensor([250, 251]))
    assert torch.allclose(a, b, atol=1e-6)
    assert not torch.allclose(a, c)  # t matters


def test_conditioning_by_label_and_by_vector():
    cfg = UNetConfig.preset("tiny", num_classes=3)
    model = UNet(cfg).eval()
    x = _batch(cfg, 3)
    with torch.no_grad():
        out_c = model(x, 10, torch.tensor([0, 1, 2]))
        out_none = model(x, 10, torch.tensor([-1, -1, -1]))
        out_default = model(x, 10)
    assert out_c.shape == x.shape
    assert torch.equal(out_none, out_default)  # cond=None means "no condition" (label −1)
    assert not torch.allclose(out_c, out_none)

    vcfg = UNetConfig.preset("tiny", cond_dim=5)
    vmodel = UNet(vcfg).eval()
    v = torch.randn(3, 5)
    v_empty = v.clone()
    v_empty[1] = float("nan")  # row 1: no condition
    with torch.no_grad():
        out = vmodel(x, 10, v_empty)
        none = vmodel(x, 10)
    assert torch.isfinite(out).all()
    assert torch.allclose(out[1], none[1], atol=1e-6) and not torch.allclose(out[0], none[0])


def test_mlp_denoiser_shapes_and_conditioning():
    m = MLPDenoiser(MLPConfig(dim=2, hidden=32, num_blocks=2)).eval()
    assert m(torch.randn(7, 2), torch.arange(7)).shape == (7, 2)
    mc = MLPDenoiser(MLPConfig(dim=3, hidden=16, num_blocks=1, num_classes=4))
    assert mc(torch.randn(4, 3), 5.5, torch.tensor([0, 1, -1, 3])).shape == (4, 3)


# ----------------------------------------------------------------------------- learning
def _all_params_get_gradients(model: torch.nn.Module, loss: torch.Tensor) -> list[str]:
    loss.backward()
    return [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]


@pytest.mark.parametrize("cond_kind", ["none", "label", "vector"])
def test_gradients_reach_every_parameter(cond_kind):
    torch.manual_seed(0)
    extra = {"none": {}, "label": {"num_classes": 3}, "vector": {"cond_dim": 4}}[cond_kind]
    cfg = UNetConfig.preset("tiny", **extra)
    model = UNet(cfg)
    x = _batch(cfg, 4)
    cond = None
    if cond_kind == "label":
        cond = torch.tensor([0, 1, 2, -1])
    elif cond_kind == "vector":
        cond = torch.randn(4, 4)
        cond[3] = float("nan")
    loss = model(x, torch.tensor([1, 100, 500, 999]), cond).pow(2).mean()
    assert _all_params_get_gradients(model, loss) == []


def test_mlp_gradients_reach_every_parameter():
    m = MLPDenoiser(MLPConfig(hidden=16, num_blocks=2, num_classes=2))
    loss = m(torch.randn(6, 2), torch.arange(6) * 100, torch.tensor([0, 1, -1, 0, 1, -1])).pow(2).mean()
    assert _all_params_get_gradients(m, loss) == []


@pytest.mark.parametrize("which", ["unet", "mlp"])
def test_loss_falls_when_overfitting_a_fixed_batch(which):
    torch.manual_seed(0)
    s = make_schedule("linear")
    if which == "unet":
        model: torch.nn.Module = UNet(UNetConfig.preset("tiny"))
        x0 = torch.rand(4, 1, 16, 16) * 2 - 1
    else:
        model = MLPDenoiser(MLPConfig(hidden=64, num_blocks=2))
        x0 = torch.randn(32, 2)
    t = torch.randint(0, 1000, (x0.shape[0],))
    noise = torch.randn_like(x0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = float(diffusion_loss(model, s, x0, t, noise).detach())
    for _ in range(60):
        loss = diffusion_loss(model, s, x0, t, noise)
        opt.zero_grad()
        loss.backward()
        opt.step()
    last = float(diffusion_loss(model, s, x0, t, noise).detach())
    assert last < 0.3 * first, (first, last)


def test_digits_cpu_preset_spends_its_parameters_at_low_resolution():
    cfg = UNetConfig.preset("digits-cpu")
    assert cfg.patch_size == 2 and max(cfg.attention_resolutions) <= 8
    assert cfg.widths[0] <= cfg.widths[-1]
    assert 0.5e6 < count_parameters(UNet(cfg)) < 4e6


# ----------------------------------------------------------------------------- bad input
def test_wrong_image_size_is_a_clear_error():
    model = UNet(UNetConfig.preset("tiny"))
    with pytest.raises(ValueError, match=r"x_t has shape \(2, 1, 32, 32\).*image_size=16"):
        model(torch.randn(2, 1, 32, 32), 3)
    with pytest.raises(ValueError, match="in_channels=1"):
        model(torch.randn(2, 3, 16, 16), 3)
    with pytest.raises(ValueError, match=r"t must be a scalar or have shape \(2,\)"):
        model(torch.randn(2, 1, 16, 16), torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="dim=2"):
        MLPDenoiser()(torch.randn(4, 3), 1)


def test_cond_given_to_an_unconditional_model_is_a_clear_error():
    with pytest.raises(ValueError, match="unconditional"):
        UNet(UNetConfig.preset("tiny"))(torch.randn(2, 1, 16, 16), 3, torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="unconditional"):
        MLPDenoiser()(torch.randn(2, 2), 3, torch.tensor([1, 2]))


def test_bad_conditions_are_clear_errors():
    model = UNet(UNetConfig.preset("tiny", num_classes=3))
    x = torch.randn(2, 1, 16, 16)
    with pytest.raises(ValueError, match=r"\[-1, 2\]"):
        model(x, 3, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="integer class labels"):
        model(x, 3, torch.tensor([0.0, 1.0]))
    vmodel = UNet(UNetConfig.preset("tiny", cond_dim=4))
    with pytest.raises(ValueError, match=r"shape \(2, 4\)"):
        vmodel(x, 3, torch.randn(2, 5))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"attention_resolutions": (32,)}, "only at resolutions <= 16"),
        ({"attention_resolutions": (4,)}, "attention_resolutions contains 4, but the levels run at"),
        ({"image_size": 31}, "divisible by patch_size"),
        ({"base_channels": 12, "norm_groups": 8}, "norm_groups=8"),
        ({"patch_size": 3}, "patch_size"),
        ({"num_classes": 10, "cond_dim": 8}, "not both"),
        ({"channel_mults": ()}, "at least one level"),
        ({"dropout": 1.5}, "dropout"),
    ],
)
def test_bad_unet_configs_name_the_problem(kwargs, match):
    with pytest.raises(ValueError, match=match):
        UNetConfig(**{"image_size": 32, "base_channels": 16, "channel_mults": (1, 2), "attention_resolutions": (16,), **kwargs})


def test_unknown_preset_lists_the_choices():
    with pytest.raises(ValueError, match="digits-cpu"):
        UNetConfig.preset("digits-cpuu")


def test_config_round_trips_through_a_dict():
    cfg = UNetConfig.preset("digits-cpu", num_classes=10)
    assert UNetConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown UNetConfig fields"):
        UNetConfig.from_dict({**cfg.to_dict(), "width": 3})
