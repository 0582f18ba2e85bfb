"""metrics.margin_mask / background_noise: the clean-background measure of chapter 10 (issue 11)."""

import pytest
import torch

from course_lib.metrics import (background_noise, background_noise_per_image, background_ratio_interval,
                                held_out_background_noise, margin_mask)


def test_margin_is_where_every_image_is_black():
    imgs = -torch.ones(3, 1, 4, 4)
    imgs[0, 0, 1, 1] = 0.5
    imgs[2, 0, 2, 3] = -0.9
    mask = margin_mask(imgs)
    assert mask.shape == (4, 4) and int(mask.sum()) == 14 and not mask[1, 1] and not mask[2, 3]


def test_background_noise_is_the_rms_distance_from_black_after_clamping():
    mask = torch.ones(2, 2, dtype=torch.bool)
    assert background_noise(-torch.ones(5, 1, 2, 2), mask) == 0.0
    x = torch.full((1, 1, 2, 2), -1.5)  # below black: clamped to -1, so spotless
    assert background_noise(x, mask) == 0.0
    x = torch.tensor([[[[-0.9, -1.0], [-1.0, -1.0]]]])
    assert background_noise(x, mask) == pytest.approx((0.01 / 4) ** 0.5)


def test_pooled_background_noise_is_the_rms_of_the_per_image_values():
    mask = torch.ones(2, 2, dtype=torch.bool)
    x = -torch.ones(4, 1, 2, 2)
    x[1, 0, 0, 0] = 1.0  # one stroke pixel in the margin of one image of four
    per = background_noise_per_image(x, mask)
    assert per.shape == (4,) and per.tolist() == [0.0, 1.0, 0.0, 0.0]  # sqrt(2² / 4 pixels)
    assert background_noise(x, mask) == pytest.approx(0.5)  # that one digit alone: sqrt(1² / 4 images)
    with pytest.raises(ValueError, match="mask"):
        background_noise_per_image(x, torch.ones(3, 3, dtype=torch.bool))


def test_real_digits_margin():
    from course_lib.data import load_mnist5000

    mask = margin_mask(load_mnist5000("train").images)
    assert int(mask.sum()) == 364
    assert background_noise(load_mnist5000("train").images, mask) == 0.0
    assert 0 < background_noise(load_mnist5000("test").images, mask) < 0.01


def test_held_out_reference_measures_each_image_on_the_margin_of_the_others():
    """One image lights a pixel no other image touches: on the others' margin (all 16 pixels) it alone is
    off black, by 2 on one pixel — sqrt(4/16) = 0.5 — in every split; the rest stay spotless."""
    imgs = -torch.ones(10, 1, 4, 4)
    imgs[3, 0, 0, 0] = 1.0
    per = held_out_background_noise(imgs, folds=5, repeats=3)
    assert per.shape == (10,) and per[3] == pytest.approx(0.5) and per[torch.arange(10) != 3].abs().max() == 0
    imgs[7, 0, 0, 0] = 1.0  # a second image shares the pixel: in a split that keeps them apart neither counts
    assert float(held_out_background_noise(imgs, folds=10, repeats=2).abs().max()) == 0.0  # leave-one-out
    with pytest.raises(ValueError, match="folds"):
        held_out_background_noise(imgs, folds=1)
    with pytest.raises(ValueError, match="repeats"):
        held_out_background_noise(imgs, repeats=0)
    with pytest.raises(ValueError, match="real"):
        held_out_background_noise(torch.zeros(3, 4, 4))
    with pytest.raises(ValueError, match="at least 2"):
        held_out_background_noise(imgs[:1])


def test_held_out_value_is_the_root_mean_square_over_the_random_splits():
    """Two of four images share a pixel no other touches: each counts (0.5) only when the other sits in the
    same part, which two halves of four do with probability 1/3 — so its value² is 0.25/3, not (0.5/3)²."""
    imgs = -torch.ones(4, 1, 4, 4)
    imgs[:2, 0, 0, 0] = 1.0
    per = held_out_background_noise(imgs, folds=2, repeats=600)
    assert per[:2].square() == pytest.approx(torch.full((2,), 0.25 / 3), abs=0.02)
    assert per[2:].abs().max() == 0


def test_held_out_reference_of_the_real_digits_is_larger_than_the_lucky_test_split():
    """Chapter 10's reference: a few dozen of the 5,000 digits make it, and the 1,000 test digits alone give less."""
    from course_lib.data import load_mnist5000

    train, test = load_mnist5000("train").images, load_mnist5000("test").images
    per = held_out_background_noise(torch.cat([train, test]), repeats=10)
    pooled = float(per.square().mean().sqrt())
    assert 20 <= int((per > 0).sum()) <= 200
    assert 1.3 * background_noise(test, margin_mask(train)) < pooled < 0.01


def test_ratio_interval_brackets_the_ratio_and_checks_its_inputs():
    assert background_ratio_interval(torch.full((50,), 2.0), torch.ones(40)) == pytest.approx((2.0, 2.0))
    g = torch.Generator().manual_seed(0)
    real = torch.rand(500, generator=g)
    low, high = background_ratio_interval(3 * torch.rand(500, generator=g), real)
    assert low < 3 < high and high - low < 1
    # RMS, not mean: half zeros and half 2s have mean 1 but RMS √2 against a constant 1
    low, high = background_ratio_interval(torch.tensor([0.0, 2.0]).repeat(500), torch.ones(100))
    assert low < 2 ** 0.5 < high and high < 1.2 * 2 ** 0.5
    with pytest.raises(ValueError, match="no positive"):
        background_ratio_interval(real, torch.zeros(10))
    with pytest.raises(ValueError, match="draws"):
        background_ratio_interval(real, real, draws=1)
    with pytest.raises(ValueError, match="generated"):
        background_ratio_interval(torch.ones(1), real)
    with pytest.raises(ValueError, match="level"):
        background_ratio_interval(real, real, level=1.5)


@pytest.mark.parametrize("bad", [torch.zeros(2, 2), torch.zeros(2, 3, 4, 4), "x"])
def test_bad_inputs_raise(bad):
    with pytest.raises(ValueError):
        margin_mask(bad)
    with pytest.raises(ValueError):
        background_noise(bad, torch.ones(4, 4, dtype=torch.bool))


def test_no_margin_raises():
    with pytest.raises(ValueError, match="no pixel"):
        margin_mask(torch.zeros(2, 1, 4, 4))


def test_backgrounds_benchmark_reports_each_seed_and_the_pooled_margin(capsys, load_benchmark, monkeypatch, tmp_path):
    """benchmarks/backgrounds.py in the smoke profile: one JSON row per scale whose pooled value is the RMS of its seeds'."""
    import json

    monkeypatch.delenv("COURSE_PROFILE", raising=False)
    monkeypatch.setenv("COURSE_RUNS_DIR", str(tmp_path))
    bench = load_benchmark("backgrounds")
    bench.main(["--profile", "smoke", "--scales", "1,3", "--seeds", "2", "--per-class", "2", "--threads", "1", "--json"])
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["profile"] == "smoke" and [row["scale"] for row in out["rows"]] == [1.0, 3.0]
    for row in out["rows"]:
        assert len(row["per_seed"]) == 2 and 0 <= row["accuracy"] <= 1 and 0 < row["worst_1pct_share"] <= 1
        rms = (sum(v * v for v in row["per_seed"]) / 2) ** 0.5  # equal seeds: pooled = RMS of the seeds
        assert row["pooled"] == pytest.approx(rms, abs=0.02)
        low, high = row["pooled_interval"]
        assert low <= row["pooled"] <= high
        # the held-out reference of all 5,000 digits is larger than the test split's, so the old ratio is larger
        assert row["pooled_vs_test_split"] >= row["pooled"]
        assert row["pooled_vs_test_split"] == pytest.approx(row["pooled"] * out["real_margin_rms"] / out["test_split_margin_rms"], rel=0.05, abs=0.02)
    with pytest.raises(ValueError, match="--seeds"):
        bench.main(["--profile", "smoke", "--seeds", "0"])
    with pytest.raises(ValueError, match="--scales"):
        bench.main(["--profile", "smoke", "--scales", "three"])
