"""Shared test set-up: headless matplotlib, the smoke profile, and one torch thread per test."""

import os

import matplotlib
import pytest
import torch

matplotlib.use("Agg")
os.environ.setdefault("COURSE_PROFILE", "smoke")


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run fastest on one thread (no hand-offs), and a busy machine makes two erratic."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
