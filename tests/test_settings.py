"""Profiles, the COURSE_PROFILE override, seeding and the validation helpers."""

import pytest
import torch

from course_lib import settings


def test_auto_profile_is_cpu_without_accelerator(monkeypatch):
    monkeypatch.delenv("COURSE_PROFILE", raising=False)
    monkeypatch.setattr(settings, "accelerator_available", lambda: False)
    assert settings.resolve_profile("auto") == "cpu"
    monkeypatch.setattr(settings, "accelerator_available", lambda: True)
    assert settings.resolve_profile("auto") == "gpu"
    assert settings.resolve_profile("smoke") == "smoke"


def test_environment_overrides_parameter(monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "smoke")
    assert settings.resolve_profile("gpu") == "smoke"
    monkeypatch.setenv("COURSE_PROFILE", "turbo")
    with pytest.raises(ValueError, match="COURSE_PROFILE"):
        settings.resolve_profile("cpu")


def test_bad_profile_names_parameter_and_choices():
    with pytest.raises(ValueError) as err:
        settings.resolve_profile("fast")
    msg = str(err.value)
    assert "profile='fast'" in msg and all(repr(p) in msg for p in settings.PROFILES)


@pytest.mark.parametrize("seed", ["0", 1.5, -1, True, None])
def test_bad_seed(seed):
    with pytest.raises(ValueError, match="seed"):
        settings.setup(profile="smoke", seed=seed, quiet=True)


def test_setup_seeds_and_picks(monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "smoke")
    run = settings.setup(profile="cpu", seed=3, quiet=True)
    a = torch.randn(3)
    settings.setup(profile="cpu", seed=3, quiet=True)
    assert torch.equal(a, torch.randn(3))
    assert run.profile == "smoke" and run.device.type == "cpu"
    assert run.pick(smoke=1, cpu=2, gpu=3) == 1
    assert torch.equal(torch.randn(2, generator=run.generator(5)), torch.randn(2, generator=run.generator(5)))


def test_check_helpers():
    assert settings.check_int("n", 3, min_value=1) == 3
    assert settings.check_float("lr", 1, min_value=0) == 1.0
    with pytest.raises(ValueError, match=r"n=0 is out of range; allowed: 1 <= n"):
        settings.check_int("n", 0, min_value=1)
    with pytest.raises(ValueError, match="lr must be finite"):
        settings.check_float("lr", float("nan"))
    with pytest.raises(ValueError, match="flag must be True or False"):
        settings.check_bool("flag", 1)
    with pytest.raises(ValueError, match="device='tpu'"):
        settings.get_device("tpu")


def test_check_images_is_the_one_image_validator():
    good = torch.zeros(2, 1, 32, 32)
    assert settings.check_images("x", good, channels=1, size=(28, 32)) is good
    assert settings.check_images("x", torch.full((1, 4, 8, 8), 7.0), value_range=None).shape == (1, 4, 8, 8)
    bad = [
        (torch.zeros(2, 32, 32), {}, "NCHW"),
        (torch.zeros(2, 3, 32, 32), dict(channels=1), "1 channel"),
        (torch.zeros(2, 1, 30, 30), dict(size=(28, 32)), "28×28 or 32×32"),
        (torch.zeros(2, 3, 8, 8), dict(min_size=16), "at least 16×16"),
        (torch.zeros(2, 3, 16, 8), dict(min_size=4), "square"),
        (torch.zeros(0, 1, 8, 8), {}, "empty"),
        (torch.zeros(2, 1, 8, 8, dtype=torch.uint8), {}, "float"),
        (torch.full((2, 1, 8, 8), float("nan")), {}, "NaN"),
        (torch.full((2, 1, 8, 8), 1.5), {}, r"must lie in \[-1, 1\]"),
        ([[0.0]], {}, "torch.Tensor"),
    ]
    for images, kwargs, match in bad:
        with pytest.raises(ValueError, match=match):
            settings.check_images("pictures", images, **kwargs)
