"""Evaluating a model end to end (course_lib.metrics.evaluate_model and its pieces), on dummy denoisers."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from course_lib import metrics as M
from course_lib.data import load_mnist5000
from course_lib.schedules import make_schedule


@pytest.fixture(scope="module")
def train():
    return load_mnist5000("train", size=32, seed=0)


@pytest.fixture(scope="module")
def schedule():
    return make_schedule("linear")


class Blank(nn.Module):
    """Predicts x̂₀ = −1 (an empty page) at every step: ε̂ = (x_t + √ᾱ)/√(1 − ᾱ)."""

    def __init__(self, schedule):
        super().__init__()
        self.register_buffer("abar", schedule.alphas_cumprod)
        self.seen_training = []

    def forward(self, x, t, cond=None):
        self.seen_training.append(self.training)
        a = self.abar[t.long()].view(-1, 1, 1, 1)
        return (x + a.sqrt()) / (1 - a).sqrt()


def test_memorising_denoiser_samples_are_training_copies(train, schedule):
    model = M.MemorisingDenoiser(train.images[:500], schedule)
    for sampler in ("ddpm", "euler"):
        x = M.sample_images(model, schedule, 12, sampler=sampler, num_steps=8, seed=1, batch_size=5)
        assert x.shape == (12, 1, 32, 32) and float(x.min()) >= -1 and float(x.max()) <= 1
        found = M.nearest_training_images(x, train.images[:500])
        assert float(found.distance.max()) < 1e-3, sampler  # exact copies
        assert found.index.unique().numel() > 6  # many different training images, not one
    assert not model.training


def test_sample_images_seeded_and_restores_mode(train, schedule):
    model = Blank(schedule).train()
    a = M.sample_images(model, schedule, 7, num_steps=3, seed=3, batch_size=4)
    b = M.sample_images(model, schedule, 7, num_steps=3, seed=3, batch_size=4)
    assert torch.equal(a, b) and a.shape == (7, 1, 32, 32)
    assert model.training and not any(model.seen_training)  # sampled in eval mode, mode restored
    copy = M.MemorisingDenoiser(train.images[:300], schedule)
    c = M.sample_images(copy, schedule, 6, num_steps=4, seed=3)
    d = M.sample_images(copy, schedule, 6, num_steps=4, seed=4)
    assert not torch.equal(c, d)


def test_evaluate_model_copycat_scores_the_floor_blank_scores_badly(train, schedule):
    kw = dict(n=120, num_steps=5, seed=0, kid_subsets=10)
    good = M.evaluate_model(M.MemorisingDenoiser(train.images, schedule), schedule, train.images, **kw)
    bad = M.evaluate_model(Blank(schedule), schedule, train.images, **kw)
    json.dumps(good)  # a plain, JSON-ready dict
    for key in ("fid", "kid_mean", "kid_std", "fid_floor", "kid_floor_mean", "n_samples", "sampler", "num_steps",
                "sample_seconds", "metric_seconds"):
        assert key in good and key in bad
    assert good["n_samples"] == 120 and good["sampler"] == "ddim" and good["num_steps"] == 5
    assert good["fid_floor"] == bad["fid_floor"] > 0  # same reference sets for the same seed
    # copies of training digits look exactly like real digits to FID: within the real-vs-real spread
    assert good["fid"] < 2.5 * good["fid_floor"] and abs(good["kid_mean"]) < 0.3  # KID std ≈ 0.1 at this n
    assert bad["fid"] > 10 * good["fid_floor"] and bad["kid_mean"] > 1.0
    assert good["sample_seconds"] > 0 and "class_accuracy" not in good


def test_evaluate_model_class_accuracy_follows_labels(train, schedule):
    model = M.MemorisingDenoiser(train.images, schedule, labels=train.labels)
    labels = torch.arange(40) % 10
    right = M.evaluate_model(model, schedule, train.images, n=40, num_steps=5, labels=labels, floor=False,
                             kid_subsets=5)
    assert right["class_accuracy"] > 0.9 and right["class_confidence"] > 0.8 and "fid_floor" not in right
    shifted = M.sample_images(model, schedule, 40, num_steps=5, labels=(labels + 1) % 10)
    assert M.class_accuracy(shifted, labels) < 0.1
    assert torch.equal(M.predicted_classes(shifted), M.predicted_classes(shifted))
    assert (M.predicted_classes(shifted) == (labels + 1) % 10).float().mean() > 0.9


def test_disjoint_subsets(train):
    ids = torch.arange(1000.0)[:, None]  # (N, 1): each "image" is its own index
    a, b, c = M.disjoint_subsets(ids, 100, count=3, seed=5)
    assert a.shape == (100, 1) and torch.cat([a, b, c]).unique().numel() == 300  # no image twice
    assert torch.equal(M.disjoint_subsets(ids, 100, count=3, seed=5)[2], c)
    assert not torch.equal(M.disjoint_subsets(ids, 100, seed=6)[0], a)
    assert M.disjoint_subsets(train.images, 10)[0].shape == (10, 1, 32, 32)


def test_bad_inputs_name_the_parameter(train, schedule):
    model = Blank(schedule)
    with pytest.raises(ValueError, match="n=3000"):
        M.evaluate_model(model, schedule, train.images, n=3000)
    with pytest.raises(ValueError, match="sampler"):
        M.evaluate_model(model, schedule, train.images, n=10, sampler="magic")
    with pytest.raises(ValueError, match="labels"):
        M.sample_images(model, schedule, 4, labels=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="image_shape"):
        M.sample_images(model, schedule, 4, image_shape=(1, 0, 32))
    with pytest.raises(ValueError, match="num_steps"):
        M.sample_images(model, schedule, 4, num_steps=0)
    with pytest.raises(ValueError, match="train"):
        M.MemorisingDenoiser(torch.zeros(0, 4), schedule)
