"""timesteps (course_lib.schedules, re-exported by course_lib.samplers) against diffusers' set_timesteps for every spacing."""

import pytest
import torch
from diffusers import DDIMScheduler

from course_lib import schedules
from course_lib.samplers import timesteps


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
@pytest.mark.parametrize("T, N", [(1000, 1), (1000, 7), (1000, 10), (1000, 50), (1000, 333), (1000, 1000), (100, 30), (4000, 64)])
def test_timesteps_match_diffusers(spacing, T, N):
    ref = DDIMScheduler(num_train_timesteps=T, timestep_spacing=spacing)
    ref.set_timesteps(N)
    ours = timesteps(T, N, spacing)
    assert ours.dtype == torch.long
    assert torch.equal(ours, ref.timesteps)


def test_steps_offset_matches_diffusers():
    ref = DDIMScheduler(num_train_timesteps=1000, steps_offset=1)
    ref.set_timesteps(50)
    assert torch.equal(timesteps(1000, 50, "leading", steps_offset=1), ref.timesteps)


def test_trailing_starts_from_pure_noise_and_leading_does_not():
    assert timesteps(1000, 20, "trailing")[0] == 999
    assert timesteps(1000, 20, "leading")[0] == 950


@pytest.mark.parametrize(
    "args, word",
    [((1000, 0), "num_inference_steps"), ((1000, 1001), "num_inference_steps"), ((1000, 10, "lead"), "spacing")],
)
def test_bad_input(args, word):
    with pytest.raises(ValueError, match=word):
        timesteps(*args)


def test_one_timesteps_function():
    # docs/architecture.md, "Public API": samplers.timesteps is the schedule's time axis
    assert timesteps is schedules.timesteps
