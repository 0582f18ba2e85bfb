"""Chapter 06's steps-vs-quality table (course_lib.steps_table): budgets, configurations, the shared starting noise."""

from __future__ import annotations

import math

import pytest
import torch

from course_lib.schedules import make_schedule
from course_lib.steps_table import (
    SamplerConfig,
    best_within,
    format_table,
    network_evaluations,
    reference_fid,
    steps_for_nfe,
    steps_vs_quality,
    table_configs,
)


@pytest.fixture(scope="module")
def s():
    return make_schedule("linear", 1000)


# ----------------------------------------------------------------------------- steps-vs-quality table
def test_network_evaluations_and_budget():
    assert network_evaluations("heun", 10) == 19 and network_evaluations("dpmpp_2m", 10) == 10
    for sampler in ("ddim", "euler", "heun", "dpmpp_2m"):
        for budget in (1, 9, 10, 20):
            n = steps_for_nfe(sampler, budget)
            assert network_evaluations(sampler, n) <= budget < network_evaluations(sampler, n + 1)


def test_sampler_config_validation_and_table():
    with pytest.raises(ValueError, match="eta"):
        SamplerConfig("euler", 10, eta=0.5)
    with pytest.raises(ValueError, match="spacing"):
        SamplerConfig("ddim", 10, "karras")
    rows = table_configs()
    assert (rows[0].sampler, rows[0].num_steps) == ("ddpm", 1000)
    assert [c.num_steps for c in rows if c.sampler == "ddim"] == [10, 20, 50, 100]
    for sampler in ("euler", "heun", "dpmpp_2m", "dpmpp_2m_sde"):
        assert [c.nfe for c in rows if c.sampler == sampler] in ([10, 20], [9, 19])
        assert all(c.spacing == "karras" and c.sigma_max == 80.0 for c in rows if c.sampler == sampler)
    assert all(c.clips for c in rows) and rows[1].label == "DDIM-10 trailing clip"
    assert rows[-1].label == "SDE-DPM-Solver++(2M)-20 karras σmax=80 clip"
    assert all(c.sigma_max is None for c in table_configs(sigma_max=None))
    with pytest.raises(ValueError, match="sigma_max"):
        SamplerConfig("euler", 10, "trailing", sigma_max=80.0)
    assert SamplerConfig("ddim", 10).clips is False and SamplerConfig("ddpm", 1000).clips is True
    assert SamplerConfig("ddpm", 1000, clip_sample=False).label == "DDPM-1000 no-clip"
    with pytest.raises(ValueError, match="clip_sample"):
        SamplerConfig("ddim", 10, clip_sample="yes")


def test_steps_vs_quality_shares_starting_noise_and_counts_calls(s):
    calls = []

    def model(x, t, cond=None):
        calls.append(x.shape[0])
        return 0.1 * x

    configs = [SamplerConfig("ddim", 7, "leading"), SamplerConfig("euler", 7, "leading"), SamplerConfig("heun", 3, "karras")]
    real = torch.zeros(5, 1, 4, 4)
    fid_fn = lambda r, f: float(f.mean() * 1000 + f.std())  # noqa: E731 - a deterministic stand-in for FID
    rows = steps_vs_quality(model, s, real, configs, n_samples=6, seed=2, batch_size=4, progress=False, fid_fn=fid_fn)
    assert [r["nfe"] for r in rows] == [7, 7, 5]
    assert sum(calls) == 6 * (7 + 7 + 5)  # every image, every network call, batches of 4 + 2
    assert set(rows[0]) >= {"sampler", "steps", "nfe", "fid", "seconds", "spacing", "label"}
    assert rows[0]["fid"] == pytest.approx(rows[1]["fid"], abs=1e-3)  # Euler on DDIM's grid is DDIM, same noise
    assert all(r["seconds"] >= 0 for r in rows)
    again = steps_vs_quality(model, s, real, configs[:1], n_samples=6, seed=2, progress=False, fid_fn=fid_fn)
    assert again[0]["fid"] == rows[0]["fid"]  # the seed fixes everything
    other = steps_vs_quality(model, s, real, configs[:1], n_samples=6, seed=3, progress=False, fid_fn=fid_fn)
    assert other[0]["fid"] != rows[0]["fid"]
    assert best_within(rows, 6)["sampler"] == "heun" and reference_fid(rows) == rows[0]["fid"]
    assert "DDIM-7 leading" in format_table(rows)
    with pytest.raises(ValueError, match="configs"):
        steps_vs_quality(model, s, real, [], n_samples=6)


def test_steps_vs_quality_with_real_fid(s):
    from course_lib.data import load_mnist5000

    real = load_mnist5000("test").images[:64]
    rows = steps_vs_quality(lambda x, t, cond=None: torch.zeros_like(x), s, real, [SamplerConfig("ddim", 2)],
                            n_samples=16, progress=False)
    assert math.isfinite(rows[0]["fid"]) and rows[0]["fid"] > 1.0  # static-like images are far from digits
