"""Sampling for evaluation (course_lib.evaluation): the batch loop, evaluate_model and its pieces, the guidance
sweep and the memorising denoiser, on dummy denoisers."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from course_lib import evaluation as E
from course_lib import metrics as M
from course_lib.data import load_mnist5000
from course_lib.samplers import sample
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
    model = E.MemorisingDenoiser(train.images[:500], schedule)
    for sampler in ("ddpm", "euler"):
        x = E.sample_images(model, schedule, 12, sampler=sampler, num_steps=8, seed=1, batch_size=5)
        assert x.shape == (12, 1, 32, 32) and float(x.min()) >= -1 and float(x.max()) <= 1
        found = M.nearest_training_images(x, train.images[:500])
        assert float(found.distance.max()) < 1e-3, sampler  # exact copies
        assert found.index.unique().numel() > 6  # many different training images, not one
    assert not model.training


def test_sample_images_seeded_and_restores_mode(train, schedule):
    model = Blank(schedule).train()
    a = E.sample_images(model, schedule, 7, num_steps=3, seed=3, batch_size=4)
    b = E.sample_images(model, schedule, 7, num_steps=3, seed=3, batch_size=4)
    assert torch.equal(a, b) and a.shape == (7, 1, 32, 32)
    assert model.training and not any(model.seen_training)  # sampled in eval mode, mode restored
    copy = E.MemorisingDenoiser(train.images[:300], schedule)
    c = E.sample_images(copy, schedule, 6, num_steps=4, seed=3)
    d = E.sample_images(copy, schedule, 6, num_steps=4, seed=4)
    assert not torch.equal(c, d)


def test_evaluate_model_copycat_scores_the_floor_blank_scores_badly(train, schedule):
    kw = dict(n=120, num_steps=5, seed=0, kid_subsets=10)
    good = E.evaluate_model(E.MemorisingDenoiser(train.images, schedule), schedule, train.images, **kw)
    bad = E.evaluate_model(Blank(schedule), schedule, train.images, **kw)
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
    model = E.MemorisingDenoiser(train.images, schedule, labels=train.labels)
    labels = torch.arange(40) % 10
    right = E.evaluate_model(model, schedule, train.images, n=40, num_steps=5, labels=labels, floor=False,
                             kid_subsets=5)
    assert right["class_accuracy"] > 0.9 and right["class_confidence"] > 0.8 and "fid_floor" not in right
    shifted = E.sample_images(model, schedule, 40, num_steps=5, labels=(labels + 1) % 10)
    assert M.class_accuracy(shifted, labels) < 0.1
    assert torch.equal(M.predicted_classes(shifted), M.predicted_classes(shifted))
    assert (M.predicted_classes(shifted) == (labels + 1) % 10).float().mean() > 0.9


def test_disjoint_subsets(train):
    ids = torch.arange(1000.0)[:, None]  # (N, 1): each "image" is its own index
    a, b, c = E.disjoint_subsets(ids, 100, count=3, seed=5)
    assert a.shape == (100, 1) and torch.cat([a, b, c]).unique().numel() == 300  # no image twice
    assert torch.equal(E.disjoint_subsets(ids, 100, count=3, seed=5)[2], c)
    assert not torch.equal(E.disjoint_subsets(ids, 100, seed=6)[0], a)
    assert E.disjoint_subsets(train.images, 10)[0].shape == (10, 1, 32, 32)


def test_bad_inputs_name_the_parameter(train, schedule):
    model = Blank(schedule)
    with pytest.raises(ValueError, match="n=3000"):
        E.evaluate_model(model, schedule, train.images, n=3000)
    with pytest.raises(ValueError, match="sampler"):
        E.evaluate_model(model, schedule, train.images, n=10, sampler="magic")
    with pytest.raises(ValueError, match="labels"):
        E.sample_images(model, schedule, 4, labels=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="image_shape"):
        E.sample_images(model, schedule, 4, image_shape=(1, 0, 32))
    with pytest.raises(ValueError, match="num_steps"):
        E.sample_images(model, schedule, 4, num_steps=0)
    with pytest.raises(ValueError, match="train"):
        E.MemorisingDenoiser(torch.zeros(0, 4), schedule)


# ----------------------------------------------------------------------------- the one batch loop
def test_sample_in_batches_shared_generator_is_the_plain_loop(schedule):
    """seeds="shared": one generator feeds every batch in turn — exactly the loop it replaced."""
    model = lambda x, t, cond=None: 0.5 * x  # noqa: E731  (any denoiser whose output follows the noise)
    labels = torch.arange(7) % 10
    draw = lambda b: sample(model, schedule, (b.size, 1, 8, 8), sampler="ddpm", num_steps=3, cond=b.cond,  # noqa: E731
                            generator=b.generator, progress=False)
    got = E.sample_in_batches(draw, 7, batch_size=3, seed=5, cond=labels)
    gen, want = torch.Generator().manual_seed(5), []
    for start in range(0, 7, 3):
        x = sample(model, schedule, (min(3, 7 - start), 1, 8, 8), sampler="ddpm", num_steps=3,
                   cond=labels[start : start + 3], generator=gen, progress=False)
        want.append(x.clamp(-1, 1).cpu())
    assert torch.equal(got, torch.cat(want)) and got.shape == (7, 1, 8, 8)
    one_batch = E.sample_in_batches(draw, 7, seed=5, cond=labels)  # batch_size=None: all at once
    assert one_batch.shape == (7, 1, 8, 8) and not torch.equal(one_batch, got)


def test_sample_in_batches_per_batch_seeds_and_slices(schedule):
    seen = []

    def record(b):
        seen.append((b.size, b.cond.tolist(), b.noise[:, 0, 0, 0].tolist(), torch.randn(1, generator=b.generator).item()))
        return b.noise * 5  # clamped on the way out

    noise = torch.arange(5.0)[:, None, None, None].expand(5, 1, 2, 2)  # (5, 1, 2, 2): row i holds i
    out = E.sample_in_batches(record, 5, batch_size=2, seed=10, seeds="per_batch", cond=torch.arange(5), noise=noise)
    assert [s[:3] for s in seen] == [(2, [0, 1], [0.0, 1.0]), (2, [2, 3], [2.0, 3.0]), (1, [4], [4.0])]
    assert [s[3] for s in seen] == [torch.randn(1, generator=torch.Generator().manual_seed(10 + b)).item() for b in range(3)]
    assert out.min() == 0 and out.max() == 1  # clamped to [-1, 1]
    raw = E.sample_in_batches(lambda b: b.noise * 5, 5, noise=noise, clamp=False)
    assert raw.max() == 20


def test_sample_in_batches_bad_inputs():
    with pytest.raises(ValueError, match="seeds"):
        E.sample_in_batches(lambda b: torch.zeros(b.size), 3, seeds="each")
    with pytest.raises(ValueError, match="cond"):
        E.sample_in_batches(lambda b: torch.zeros(b.size), 3, cond=torch.arange(2))
    with pytest.raises(ValueError, match="batch_size"):
        E.sample_in_batches(lambda b: torch.zeros(b.size), 3, batch_size=0)


def test_guidance_sweep_on_the_class_conditional_copier(train, schedule):
    """s = 0 ignores the label (about 1 in 10 right), s = 1 copies digits of the asked-for class."""
    copier = E.MemorisingDenoiser(train.images[:1000], schedule, labels=train.labels[:1000])
    points = E.guidance_sweep(copier, schedule, [0.0, 1.0], train.images[1000:1200], per_class=2, num_steps=5, seed=1)
    assert [p.guidance_scale for p in points] == [0.0, 1.0]
    assert points[1].class_accuracy > 0.9 > 0.5 > points[0].class_accuracy
    assert points[0].images.shape == (20, 1, 32, 32) and points[1].fid > 0
    assert E.balanced_labels(3, 2).tolist() == [0, 0, 1, 1, 2, 2]
    with pytest.raises(ValueError, match="method"):
        E.guidance_sweep(copier, schedule, [1.0], train.images[:50], method="none")
