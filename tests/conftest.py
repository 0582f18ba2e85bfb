"""Shared test set-up: headless matplotlib, the smoke profile, one torch thread per test, and benchmark scripts as modules."""

import importlib.util
import os
from pathlib import Path

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


@pytest.fixture
def load_benchmark(monkeypatch):
    """``load_benchmark("latent")`` → benchmarks/latent.py as a module (its ``main(argv)`` runs the script)."""
    def load(name: str):
        path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
        monkeypatch.syspath_prepend(str(path.parent))  # the scripts import benchmarks/_cli.py as `_cli`
        spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    return load
