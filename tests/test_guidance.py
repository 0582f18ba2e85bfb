"""Guidance (chapter 07): classifier-free guidance, guidance rescale, classifier guidance, the noisy classifier."""

from __future__ import annotations

import pytest
import torch

from course_lib.checkpoints import CheckpointError
from course_lib.forward import convert
from course_lib.guidance import (
    NULL_LABEL,
    cfg_combine,
    cfg_model,
    classifier_guided_model,
    classifier_log_prob_grad,
    null_condition,
    rescale_guidance,
)
from course_lib.models import UNet, UNetConfig
from course_lib.models.noisy_classifier import NoisyClassifier, NoisyClassifierConfig
from course_lib.samplers import SAMPLERS, sample
from course_lib.schedules import make_schedule
from course_lib.pretrained import DIGITS_SCHEDULE, digits_noisy_classifier, noisy_classifier_accuracy
from course_lib.training import noisy_classifier_config, train_noisy_classifier

SHAPE = (4, 1, 16, 16)


@pytest.fixture(scope="module")
def sched():
    return make_schedule("linear", 1000)


def _cond_unet(seed: int = 0) -> UNet:
    """A tiny class-conditional U-Net whose label embedding is large enough to matter."""
    torch.manual_seed(seed)
    net = UNet(UNetConfig.preset("tiny", num_classes=3)).eval()
    with torch.no_grad():
        net.cond_embed.table.weight.mul_(5.0)
    return net


def _tiny_classifier(seed: int = 0, num_classes: int = 3) -> NoisyClassifier:
    torch.manual_seed(seed)
    return NoisyClassifier(NoisyClassifierConfig.preset("tiny", num_classes=num_classes)).eval()


def _x(seed: int = 0, shape=SHAPE, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


LABELS = torch.tensor([0, 1, 2, 1])
T_STEP = torch.tensor([10, 300, 600, 900])


# ----------------------------------------------------------------------------- classifier-free guidance
def test_cfg_scale_one_is_conditional_and_zero_is_unconditional():
    net, x = _cond_unet(), _x()
    with torch.no_grad():
        eps_c = net(x, T_STEP, cond=LABELS)
        eps_u = net(x, T_STEP, cond=torch.full_like(LABELS, -1))
        assert (eps_c - eps_u).abs().max() > 1e-3  # the labels really change the prediction
        torch.testing.assert_close(cfg_model(net, 1.0)(x, T_STEP, cond=LABELS), eps_c, rtol=0, atol=0)
        torch.testing.assert_close(cfg_model(net, 0.0)(x, T_STEP, cond=LABELS), eps_u, rtol=1e-5, atol=1e-5)
        # s = 1 through the batched path too (a zero-strength rescale forces it): still ε_c
        torch.testing.assert_close(cfg_model(net, 1.0, rescale=1e-12)(x, T_STEP, cond=LABELS), eps_c,
                                   rtol=1e-5, atol=1e-5)
        # no labels: nothing to guide, the unconditional prediction
        torch.testing.assert_close(cfg_model(net, 4.0)(x, T_STEP), eps_u, rtol=1e-5, atol=1e-5)


def test_batched_cfg_equals_two_separate_passes():
    net, x = _cond_unet(1), _x(1)
    calls = []

    def counting(x_in, t, cond=None):
        calls.append((x_in.shape[0], None if cond is None else cond.tolist()))
        return net(x_in, t, cond=cond)

    with torch.no_grad():
        guided = cfg_model(counting, 3.5)(x, T_STEP, cond=LABELS)
        eps_c = net(x, T_STEP, cond=LABELS)
        eps_u = net(x, T_STEP, cond=torch.full_like(LABELS, -1))
    assert calls == [(8, LABELS.tolist() + [-1] * 4)]  # ONE call on [x, x] with [c, ∅]
    torch.testing.assert_close(guided, eps_u + 3.5 * (eps_c - eps_u), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(guided, cfg_combine(eps_u, eps_c, 3.5), rtol=1e-4, atol=1e-5)


def test_cfg_with_vector_conditions_uses_nan_rows_as_empty():
    torch.manual_seed(0)
    net = UNet(UNetConfig.preset("tiny", cond_dim=5)).eval()
    x, c = _x(2), torch.randn(4, 5)
    with torch.no_grad():
        guided = cfg_model(net, 2.0)(x, T_STEP, cond=c)
        eps_c, eps_u = net(x, T_STEP, cond=c), net(x, T_STEP, cond=None)
    assert torch.isnan(null_condition(c)).all() and null_condition(LABELS).eq(-1).all()
    torch.testing.assert_close(guided, 2 * eps_c - eps_u, rtol=1e-4, atol=1e-5)


def test_guidance_rescale():
    net, x = _cond_unet(2), _x(3)
    with torch.no_grad():
        eps_c = net(x, T_STEP, cond=LABELS)
        plain = cfg_model(net, 5.0)(x, T_STEP, cond=LABELS)
        same = cfg_model(net, 5.0, rescale=0.0)(x, T_STEP, cond=LABELS)
        full = cfg_model(net, 5.0, rescale=1.0)(x, T_STEP, cond=LABELS)
        half = cfg_model(net, 5.0, rescale=0.5)(x, T_STEP, cond=LABELS)
    torch.testing.assert_close(same, plain, rtol=0, atol=0)
    std = lambda a: a.flatten(1).std(dim=1)  # noqa: E731  per-image std over (C, H, W)
    assert not torch.allclose(std(plain), std(eps_c), rtol=1e-2)  # guidance did change the spread
    torch.testing.assert_close(std(full), std(eps_c), rtol=1e-5, atol=1e-6)
    # φ = 1 keeps the guided direction: the same picture, rescaled per image
    torch.testing.assert_close(full, plain * (std(eps_c) / std(plain))[:, None, None, None], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(half, 0.5 * full + 0.5 * plain, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(rescale_guidance(plain, eps_c, 1.0), full, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- classifier guidance
def test_classifier_gradient_matches_finite_differences(sched):
    clf = _tiny_classifier().double()
    x = _x(4, dtype=torch.float64)
    labels = torch.tensor([2, 0, -1, 1])

    def log_p(xx: torch.Tensor) -> torch.Tensor:  # (B,) log p(y_i | x_i); 0 for "no label"
        with torch.no_grad():
            lp = torch.log_softmax(clf(xx, T_STEP), -1).gather(1, labels.clamp(min=0)[:, None])[:, 0]
        return lp * (labels >= 0)

    grad = classifier_log_prob_grad(clf, x, T_STEP, labels)
    assert grad.shape == x.shape and grad[2].abs().max() == 0  # label −1: no pull
    v = _x(5, dtype=torch.float64)
    h = 1e-5
    fd = (log_p(x + h * v) - log_p(x - h * v)) / (2 * h)  # directional derivative per image
    torch.testing.assert_close((grad * v).flatten(1).sum(1), fd, rtol=1e-6, atol=1e-8)
    for i, j in [(0, 5), (1, 100), (3, 255)]:  # single pixels
        e = torch.zeros_like(x).view(4, -1)
        e[i, j] = 1.0
        e = e.view_as(x)
        d = (log_p(x + h * e) - log_p(x - h * e))[i] / (2 * h)
        assert float(grad.view(4, -1)[i, j]) == pytest.approx(float(d), rel=1e-5, abs=1e-9)

    # the guided ε̂ of a denoiser that predicts zero noise is −s √(1−ᾱ_t) ∇ log p
    zero = lambda xx, t, cond=None: torch.zeros_like(xx)  # noqa: E731
    out = classifier_guided_model(zero, clf, sched, 2.0)(x, T_STEP, cond=labels)
    expected = -2.0 * (1 - sched.alphas_cumprod[T_STEP].double()).sqrt()[:, None, None, None] * grad
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-9)


def test_classifier_guidance_is_the_same_for_every_prediction_type(sched):
    clf, x = _tiny_classifier(1), _x(6)
    torch.manual_seed(3)
    eps_net = UNet(UNetConfig.preset("tiny")).eval()
    guided_eps = classifier_guided_model(eps_net, clf, sched, 3.0)(x, T_STEP, cond=LABELS)
    for ptype in ("sample", "v_prediction"):
        as_type = lambda xx, t, cond=None, p=ptype: convert(sched, eps_net(xx, t), xx, t, "epsilon", p)  # noqa: E731
        out = classifier_guided_model(as_type, clf, sched, 3.0, prediction_type=ptype)(x, T_STEP, cond=LABELS)
        torch.testing.assert_close(convert(sched, out, x, T_STEP, ptype, "epsilon"), guided_eps, rtol=1e-3, atol=1e-4)


# ----------------------------------------------------------------------------- every sampler
@pytest.mark.parametrize("sampler", SAMPLERS)
def test_guided_denoisers_work_with_every_sampler(sched, sampler):
    net, clf = _cond_unet(), _tiny_classifier()
    kw = dict(sampler=sampler, num_steps=3, progress=False)
    via_sample = sample(net, sched, SHAPE, cond=LABELS, guidance_scale=2.0,
                        generator=torch.Generator().manual_seed(0), **kw)
    via_cfg = sample(cfg_model(net, 2.0), sched, SHAPE, cond=LABELS, generator=torch.Generator().manual_seed(0), **kw)
    torch.testing.assert_close(via_cfg, via_sample, rtol=0, atol=0)  # sample() uses cfg_model itself
    unguided = sample(net, sched, SHAPE, cond=LABELS, generator=torch.Generator().manual_seed(0), **kw)
    assert not torch.allclose(via_cfg, unguided)
    rescaled = sample(cfg_model(net, 2.0, rescale=0.7), sched, SHAPE, cond=LABELS,
                      generator=torch.Generator().manual_seed(0), **kw)
    assert rescaled.shape == SHAPE and torch.isfinite(rescaled).all()
    cg = sample(classifier_guided_model(net, clf, sched, 5.0), sched, SHAPE, cond=LABELS,
                generator=torch.Generator().manual_seed(0), **kw)
    uncond = sample(net, sched, SHAPE, generator=torch.Generator().manual_seed(0), **kw)
    assert cg.shape == SHAPE and torch.isfinite(cg).all() and not torch.allclose(cg, uncond)
    cg0 = sample(classifier_guided_model(net, clf, sched, 0.0), sched, SHAPE, cond=LABELS,
                 generator=torch.Generator().manual_seed(0), **kw)
    torch.testing.assert_close(cg0, uncond, rtol=1e-5, atol=1e-5)  # scale 0: the base model alone


def test_classifier_guidance_raises_the_classifiers_confidence(sched):
    """On a 2-class toy the guided samples end up where the classifier sees the asked-for class."""
    torch.manual_seed(0)
    clf = _tiny_classifier(num_classes=2)
    images = torch.full((64, 1, 16, 16), -1.0)
    images[:32, :, :8] = 1.0  # class 0: bright top half
    images[32:, :, 8:] = 1.0  # class 1: bright bottom half
    labels = torch.tensor([0] * 32 + [1] * 32)
    cfg = noisy_classifier_config(steps=60, batch_size=32, lr=5e-3, warmup=5)
    losses = train_noisy_classifier(clf, sched, images, labels, cfg, device="cpu", progress=False)
    assert sum(losses[-10:]) / 10 < sum(losses[:10]) / 10
    assert noisy_classifier_accuracy(clf, sched, images, labels, 0) > 0.9
    zero = lambda xx, t, cond=None: torch.zeros_like(xx)  # noqa: E731  "no idea": only the classifier steers
    want = torch.tensor([0, 1, 0, 1])
    out = sample(classifier_guided_model(zero, clf, sched, 20.0), sched, SHAPE, cond=want, num_steps=10,
                 generator=torch.Generator().manual_seed(1), progress=False)
    top, bottom = out[:, 0, :8].mean((1, 2)), out[:, 0, 8:].mean((1, 2))
    assert ((top > bottom) == (want == 0)).all()


# ----------------------------------------------------------------------------- cached noisy digit classifier
def test_digits_noisy_classifier_is_cached_and_verified(tmp_path, monkeypatch, sched):
    monkeypatch.delenv("COURSE_PROFILE", raising=False)
    clf, info = digits_noisy_classifier("smoke", run_dir=tmp_path, device="cpu", progress=False)
    assert info["cached"] is False and info["steps"] == 10 and set(info["test_accuracy"]) == {"0", "250", "500", "750"}
    clf2, info2 = digits_noisy_classifier("smoke", run_dir=tmp_path, device="cpu", progress=False)
    assert info2["cached"] is True and info2["train_seconds"] == pytest.approx(info["train_seconds"])
    assert all(torch.equal(a, b) for a, b in zip(clf.state_dict().values(), clf2.state_dict().values()))
    assert clf2(torch.zeros(2, 1, 32, 32), 10.5).shape == (2, 10)
    other = "sigmoid" if DIGITS_SCHEDULE != "sigmoid" else "linear"  # a schedule the checkpoint was not trained on
    with pytest.raises(CheckpointError, match="schedule"):
        digits_noisy_classifier("smoke", schedule=make_schedule(other), run_dir=tmp_path, device="cpu", progress=False)


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("bad", [-0.5, float("nan"), float("inf"), "3", None])
def test_bad_guidance_scale(sched, bad):
    net = _cond_unet()
    with pytest.raises(ValueError, match="guidance_scale"):
        cfg_model(net, bad)
    with pytest.raises(ValueError, match="scale"):
        classifier_guided_model(net, _tiny_classifier(), sched, bad)
    if not isinstance(bad, (str, type(None))):
        with pytest.raises(ValueError, match="guidance_scale"):
            sample(net, sched, SHAPE, cond=LABELS, guidance_scale=bad, progress=False)


def test_bad_options(sched):
    net, clf = _cond_unet(), _tiny_classifier()
    with pytest.raises(ValueError, match="rescale"):
        cfg_model(net, 2.0, rescale=1.5)
    with pytest.raises(ValueError, match="prediction_type.*'epsilon'"):
        classifier_guided_model(net, clf, sched, 1.0, prediction_type="eps")
    with pytest.raises(ValueError, match="preset"):
        NoisyClassifierConfig.preset("huge")
    with pytest.raises(ValueError, match="model"):
        cfg_model("not a model", 2.0)
    with pytest.raises(ValueError, match="classifier"):
        classifier_guided_model(net, lambda x, t: x, sched, 1.0)
    with pytest.raises(ValueError, match="cond"):
        classifier_guided_model(net, clf, sched, 1.0)(_x(), T_STEP)  # no labels to steer towards
    with pytest.raises(ValueError, match="cond"):
        cfg_model(net, 2.0)(_x(), T_STEP, cond=torch.tensor([1, 2]))
    with pytest.raises(ValueError, match=r"\(8, 1, 2, 16\).*\(8, 1, 16, 16\)"):
        cfg_model(lambda x, t, cond=None: x[:, :, :2], 2.0)(_x(), T_STEP, cond=LABELS)
    assert NULL_LABEL == -1 and null_condition(LABELS).tolist() == [NULL_LABEL] * len(LABELS)
