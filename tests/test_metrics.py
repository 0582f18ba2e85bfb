"""Sample-quality metrics (course_lib.metrics) and the shipped feature network (models.classifier)."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch
import torch.nn as nn
import torchvision.transforms.functional as TF
from scipy import linalg, stats

from course_lib import metrics as M
from course_lib import viz
from course_lib.checkpoints import sha256_file
from course_lib.data import load_mnist5000, make_toy
from course_lib.models.classifier import (
    CARD_FILE,
    WEIGHTS_FILE,
    DigitClassifier,
    load_digit_classifier,
    read_card,
)


@pytest.fixture(scope="module")
def train():
    return load_mnist5000("train", size=32, seed=0)


@pytest.fixture(scope="module")
def test_split():
    return load_mnist5000("test", size=32, seed=0)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- shipped weights
def test_shipped_weights_match_card_and_are_small():
    card = read_card()
    assert WEIGHTS_FILE.stat().st_size < 1_000_000
    assert card["info"]["size_bytes"] == WEIGHTS_FILE.stat().st_size
    assert sha256_file(WEIGHTS_FILE) == card["sha256"]
    assert card["scores"]["test_accuracy"] >= 0.97 and card["identity"]["num_features"] == DigitClassifier.num_features
    model = load_digit_classifier()
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    scale = card["info"]["feature_scale"]
    assert float(model.feature_scale) == pytest.approx(scale, rel=1e-5) and scale != 1
    assert sum(p.numel() for p in model.parameters()) == card["identity"]["num_parameters"]


def test_altered_weights_fail_clearly(tmp_path):
    bad = tmp_path / "digit_classifier.safetensors"
    shutil.copy(WEIGHTS_FILE, bad)
    data = bytearray(bad.read_bytes())
    data[len(data) // 2] ^= 0x01  # flip one bit inside the tensor data
    bad.write_bytes(bytes(data))
    expected, actual = read_card()["sha256"], sha256_file(bad)
    assert expected != actual
    with pytest.raises(ValueError) as err:
        load_digit_classifier(bad)
    msg = str(err.value)
    assert str(bad) in msg and expected in msg and actual in msg
    # an unaltered copy loads fine through the same path argument
    good = tmp_path / "copy.safetensors"
    shutil.copy(WEIGHTS_FILE, good)
    assert isinstance(load_digit_classifier(good), DigitClassifier)
    with pytest.raises(FileNotFoundError, match="path="):
        load_digit_classifier(tmp_path / "missing.safetensors")


def test_card_is_valid_json_in_the_one_card_format_with_recipe():
    card = json.loads(CARD_FILE.read_text())
    assert set(card) == {"sha256", "identity", "info", "scores"}  # course_lib.registry's one format
    assert "test_accuracy" in card["scores"] and "num_features" in card["identity"] and "command" in card["info"]
    assert card["info"]["training"]["epochs"] >= 1


# ----------------------------------------------------------------------------- FID
def test_fid_small_for_real_large_for_noise_and_monotone(train):
    real, other = train.images[:1000], train.images[1000:2000]
    g = _gen(0)
    noise = torch.rand(other.shape, generator=g) * 2 - 1
    fid_real = M.fid(real, other)
    fid_noise = M.fid(real, noise)
    assert fid_real < 2 and fid_noise > 50 and fid_real < 0.02 * fid_noise
    noised = [M.fid(real, (other + s * torch.randn(other.shape, generator=g)).clamp(-1, 1)) for s in (0.2, 0.4, 0.8)]
    blurred = [M.fid(real, TF.gaussian_blur(other, 9, s)) for s in (0.5, 1.0, 2.0)]
    for ladder in (noised, blurred):
        values = [fid_real, *ladder]
        assert all(a < b for a, b in zip(values, values[1:])), values
        assert values[-1] < fid_noise * 1.5


def test_features_have_unit_rms_on_training_digits(train):
    f = M.digit_features(train.images)
    assert f.shape == (len(train.images), 128)
    assert float(f.square().mean().sqrt()) == pytest.approx(1.0, rel=1e-4)


def test_fid_deterministic_and_accepts_28(train):
    a, b = train.images[:200], train.images[200:400]
    first = M.fid(a, b)
    assert M.fid(a, b) == first
    assert M.fid(a[:, :, 2:-2, 2:-2], b[:, :, 2:-2, 2:-2]) == pytest.approx(first, rel=1e-5)


def test_fid_loads_the_network_once_and_runs_it_in_batches(train, monkeypatch):
    """What keeps FID cheap (1k vs 1k in seconds, `benchmarks/quality.py` times it): the shipped network
    is read and sha256-checked once per process, and the images go through it batch by batch."""
    from course_lib.models import classifier

    a, b = train.images[:1000], train.images[1000:2000]
    M.fid(a[:10], b[:10])  # the network is loaded and cached here
    loads = []
    monkeypatch.setattr(classifier, "load_digit_classifier", lambda **kw: loads.append(kw))
    net = classifier.cached_digit_classifier("cpu")
    batches, features = [], net.features
    monkeypatch.setattr(net, "features", lambda x: batches.append(x.shape[0]) or features(x))
    M.fid(a, b, batch_size=250)
    assert loads == []  # cached: not read from disk again
    assert batches == [250] * 8  # 1,000 real + 1,000 fake, 250 at a time


def test_fid_equals_closed_form_for_gaussians():
    """FID through torchmetrics (identity feature module) = ‖μ1−μ2‖² + Tr(Σ1 + Σ2 − 2(Σ1^½ Σ2 Σ1^½)^½)."""
    g = _gen(1)
    mu1, mu2 = torch.tensor([0.0, 1.0, -0.5]), torch.tensor([1.0, 0.0, 0.5])
    a1, a2 = torch.randn(3, 3, generator=g), torch.randn(3, 3, generator=g)
    cov1, cov2 = a1 @ a1.T + 0.5 * torch.eye(3), a2 @ a2.T + 0.2 * torch.eye(3)
    n = 20000
    x = (mu1 + torch.randn(n, 3, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(cov1.double()).T)
    y = (mu2 + torch.randn(n, 3, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(cov2.double()).T)

    def frechet(m1, s1, m2, s2):
        r1 = linalg.sqrtm(s1)
        return float(((m1 - m2) ** 2).sum() + np.trace(s1 + s2 - 2 * np.real(linalg.sqrtm(r1 @ s2 @ r1))))

    got = M.fid(x.float(), y.float(), features=nn.Identity())
    xs, ys = x.float().double().numpy(), y.float().double().numpy()
    sample = frechet(xs.mean(0), np.cov(xs.T), ys.mean(0), np.cov(ys.T))
    population = frechet(mu1.double().numpy(), cov1.double().numpy(), mu2.double().numpy(), cov2.double().numpy())
    assert got == pytest.approx(sample, rel=1e-6)
    assert got == pytest.approx(population, rel=0.05)


def test_inception_needs_local_weights(train, monkeypatch, tmp_path):
    monkeypatch.delenv(M.INCEPTION_ENV, raising=False)
    x = train.images[:4]
    with pytest.raises(ValueError, match="inception_weights"):
        M.fid(x, x, features="inception")
    with pytest.raises(ValueError, match="inception_weights"):
        M.kid(x, x, features="inception", inception_weights=tmp_path / "nope.pth")


# ----------------------------------------------------------------------------- KID
def _reference_kid(fx: torch.Tensor, fy: torch.Tensor) -> float:
    """Slow unbiased MMD² with k(a, b) = (a·b / d + 1)³, written out with loops."""
    m, d = fx.shape
    k = lambda a, b: (float(a @ b) / d + 1.0) ** 3  # noqa: E731
    xx = sum(k(fx[i], fx[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(fy[i], fy[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(fx[i], fy[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def test_kid_matches_reference_formula(train, test_split):
    real, fake = train.images[:10], test_split.images[:10].flip(-1)  # mirrored digits: a real gap
    feats = M.DigitFeatures()
    ref = _reference_kid(feats(real), feats(fake))
    mean, std = M.kid(real, fake, subsets=1, subset_size=10)
    assert mean == pytest.approx(ref, rel=1e-6)
    assert std == 0.0
    assert ref > 0


def test_kid_seeded_and_ordered(train):
    real, other = train.images[:300], train.images[300:600]
    noise = torch.rand(other.shape, generator=_gen(2)) * 2 - 1
    same = M.kid(real, other, subsets=10, seed=3)
    assert M.kid(real, other, subsets=10, seed=3) == same
    assert same[1] > 0  # default subsets are half the set, so they differ
    far = M.kid(real, noise, subsets=10, seed=3)
    assert abs(same[0]) < 0.05 * far[0]


# ----------------------------------------------------------------------------- class accuracy
def test_class_accuracy_on_real_test_digits(test_split):
    x, y = test_split.images, test_split.labels
    acc, conf = M.class_accuracy(x, y, return_confidence=True)
    assert acc >= 0.97 and 0.9 < conf <= 1.0
    assert M.class_accuracy(x, y) == acc
    assert M.class_accuracy(x, (y + 1) % 10) < 0.05
    sevens = x[y == 7]
    assert M.class_accuracy(sevens, 7) >= 0.95
    assert M.class_accuracy(x[:, :, 2:-2, 2:-2], y) == pytest.approx(acc, abs=1e-3)


# ----------------------------------------------------------------------------- memorisation
def test_nearest_training_images_finds_copies(train, test_split):
    samples = torch.cat([train.images[[5, 17, 42]], test_split.images[:5]])
    for space in M.NEIGHBOUR_SPACES:
        nn_ = M.nearest_training_images(samples, train.images, space=space)
        assert nn_.index[:3].tolist() == [5, 17, 42]
        assert (nn_.ratio[:3] < 1e-3).all() and (nn_.ratio[3:] > 0.3).all()
        assert (nn_.distance <= nn_.second_distance).all()
    pixel = M.nearest_training_images(samples, train.images)
    assert (pixel.distance[:3] == 0).all()
    # the exact nearest, checked by brute force for the held-out samples
    brute = ((samples[3:, None] - train.images[None]) ** 2).flatten(2).sum(-1)  # (5, M)
    assert pixel.index[3:].tolist() == brute.argmin(1).tolist()
    fig = viz.plot_nearest(samples, train.images, pixel, k=4)
    assert len(fig.axes) == 8
    import matplotlib.pyplot as plt

    plt.close(fig)


# ----------------------------------------------------------------------------- 2-D toys
def test_sliced_wasserstein_properties():
    x = make_toy("two_moons", 2000, seed=0)
    same = M.sliced_wasserstein(x, make_toy("two_moons", 2000, seed=1))
    shift = torch.tensor([1.0, 0.5])
    moved = M.sliced_wasserstein(x, x + shift, num_projections=2000)
    assert same < 0.1
    assert moved == pytest.approx(float(shift.norm()) / math.sqrt(2), rel=0.05)  # E[(θ·v)²] = ‖v‖²/2 in 2-D
    assert M.sliced_wasserstein(x, x.repeat(3, 1)) == pytest.approx(0.0, abs=1e-9)  # same distribution, N ≠ M
    assert M.sliced_wasserstein(x, x + shift, seed=4) == M.sliced_wasserstein(x, x + shift, seed=4)
    a = torch.randn(37, 1, generator=_gen(5))
    b = torch.randn(53, 1, generator=_gen(6)) + 0.3
    exact = stats.wasserstein_distance(a[:, 0].numpy(), b[:, 0].numpy())
    assert M.sliced_wasserstein(a, b, num_projections=1, p=1.0) == pytest.approx(exact, rel=1e-6)


def test_mmd_properties():
    x = make_toy("swiss_roll", 1000, seed=0)
    same = M.mmd(x, make_toy("swiss_roll", 1000, seed=1))
    shifted = M.mmd(x, make_toy("swiss_roll", 1000, seed=1) + torch.tensor([0.5, 0.0]))
    other = M.mmd(x, make_toy("gaussians", 1000, seed=1))
    assert abs(same) < 0.01 and shifted > 10 * abs(same) and other > 10 * abs(same)
    assert M.mmd(x, x + 0.5, unbiased=False) > 0
    # against the definition on a tiny case
    a = torch.randn(6, 2, generator=_gen(7), dtype=torch.float64)
    b = torch.randn(5, 2, generator=_gen(8), dtype=torch.float64)
    k = lambda p, q: sum(math.exp(-float(((p - q) ** 2).sum()) / (2 * s * s)) for s in (0.5, 1.0))  # noqa: E731
    xx = sum(k(a[i], a[j]) for i in range(6) for j in range(6) if i != j) / 30
    yy = sum(k(b[i], b[j]) for i in range(5) for j in range(5) if i != j) / 20
    xy = sum(k(a[i], b[j]) for i in range(6) for j in range(5)) / 30
    assert M.mmd(a, b, bandwidths=(0.5, 1.0), batch_size=4) == pytest.approx(xx + yy - 2 * xy, rel=1e-9)


# ----------------------------------------------------------------------------- bad input
def test_bad_inputs_name_the_parameter(train, test_split):
    x = train.images[:8]
    with pytest.raises(ValueError, match="real"):
        M.fid(x[:, :, :, :30], x)
    with pytest.raises(ValueError, match=r"fake.*\[-1, 1\]"):
        M.fid(x, x * 3)
    with pytest.raises(ValueError, match="fake.*channel"):
        M.fid(x, x.expand(-1, 3, -1, -1))
    with pytest.raises(ValueError, match="real.*4 dims"):
        M.fid(x[:, 0], x)
    with pytest.raises(ValueError, match="features"):
        M.fid(x, x, features="incpetion")
    with pytest.raises(ValueError, match="subsets"):
        M.kid(x, x, subsets=0)
    with pytest.raises(ValueError, match="images"):
        M.class_accuracy((x * 255).byte(), train.labels[:8])
    with pytest.raises(ValueError, match="labels"):
        M.class_accuracy(x, train.labels[:5])
    with pytest.raises(ValueError, match="labels"):
        M.class_accuracy(x, 10)
    with pytest.raises(ValueError, match="space"):
        M.nearest_training_images(x, x, space="latent")
    with pytest.raises(ValueError, match="train"):
        M.nearest_training_images(x, test_split.images[:8, :, 2:-2, 2:-2])
    with pytest.raises(ValueError, match="x"):
        M.sliced_wasserstein(torch.zeros(10), torch.zeros(10, 2))
    with pytest.raises(ValueError, match="same dimension"):
        M.mmd(torch.zeros(10, 2), torch.zeros(10, 3))
    with pytest.raises(ValueError, match="bandwidths"):
        M.mmd(torch.zeros(10, 2), torch.zeros(10, 2), bandwidths=(-1.0,))
    with pytest.raises(ValueError, match="num_projections"):
        M.sliced_wasserstein(torch.zeros(10, 2), torch.zeros(10, 2), num_projections=0)
