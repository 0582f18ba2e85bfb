"""Offline loaders: shapes, ranges, determinism, and a clear error for missing downloads."""

import pytest
import torch

from course_lib import data


def test_cat():
    cat = data.load_cat(32)
    assert cat.shape == (1, 3, 32, 32) and cat.min() >= -1 and cat.max() <= 1
    assert cat.std() > 0.1


def test_digits8():
    x, y = data.load_digits8()
    assert x.shape == (1797, 1, 8, 8) and x.min() == -1 and x.max() == 1
    assert set(y.tolist()) == set(range(10))


def test_mnist5000_split_is_shuffled_disjoint_and_deterministic():
    train, test = data.load_mnist5000("train"), data.load_mnist5000("test")
    assert train.images.shape == (4000, 1, 32, 32) and test.images.shape == (1000, 1, 32, 32)
    assert train.images.min() == -1 and train.images.max() == 1
    assert (train.images[:, :, :2] == -1).all()  # the 2-pixel pad is background
    assert len(set(test.labels[:100].tolist())) == 10  # shuffled, not sorted by class
    assert torch.equal(data.load_mnist5000("test").images, test.images)
    other = data.load_mnist5000("test", seed=1)
    assert not torch.equal(other.labels, test.labels)
    flat_train = {tuple(r) for r in train.images.flatten(1)[:, ::7].tolist()}
    assert not any(tuple(r) in flat_train for r in test.images.flatten(1)[:, ::7].tolist()[:200])
    assert data.load_mnist5000("all", size=28).images.shape == (5000, 1, 28, 28)


@pytest.mark.parametrize("name", data.TOY_NAMES)
def test_toys(name):
    pts = data.make_toy(name, 1000, seed=0)
    assert pts.shape == (1000, 2)
    torch.testing.assert_close(pts.mean(0), torch.zeros(2), atol=1e-5, rtol=0)
    assert torch.equal(pts, data.make_toy(name, 1000, seed=0))


def test_bad_input():
    with pytest.raises(ValueError, match="split"):
        data.load_mnist5000("validation")
    with pytest.raises(ValueError, match="name='swissroll'"):
        data.make_toy("swissroll")


def test_torchvision_without_download_names_offline_alternatives(tmp_path):
    with pytest.raises(RuntimeError, match="load_mnist5000"):
        data.load_torchvision("mnist", root=str(tmp_path), download=False)
