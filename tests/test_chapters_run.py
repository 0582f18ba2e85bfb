"""Every chapter runs top to bottom from a fresh kernel in the smoke profile (papermill).

The executed notebooks land in ``build/notebooks``, the folder ``make book`` builds the Jupyter Book
from, so ``make test`` executes each chapter exactly once: this test is the notebook check, and its
output is the book's input. A failing cell fails the test with papermill's error (the cell and its
traceback).

The chapters run in course order in one pytest-xdist worker (``xdist_group``), because later
chapters reuse the models that earlier ones train; the unit tests fill the other core. Each kernel
gets one torch thread (two workers on two cores) and its own model cache under ``build/``, so a
unit test or a learner's ``runs/`` never races it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from course_lib.settings import RUNS_ENV
from course_lib.sweep import REPO_ROOT, notebook_paths, run_notebook

EXECUTED = REPO_ROOT / "build" / "notebooks"
TEST_RUNS = REPO_ROOT / "build" / "test-runs"


@pytest.mark.xdist_group("chapters")
@pytest.mark.parametrize("notebook", notebook_paths(), ids=lambda p: p.stem)
def test_chapter_runs_in_smoke_profile(notebook: Path, monkeypatch):
    monkeypatch.setenv(RUNS_ENV, str(TEST_RUNS))
    monkeypatch.setenv("COURSE_STATIC", "1")  # widgets render as static pictures, as in the book
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("PYTHONUNBUFFERED", "1")
    dest = run_notebook(notebook, EXECUTED / notebook.name, profile="smoke")
    assert dest.exists()
