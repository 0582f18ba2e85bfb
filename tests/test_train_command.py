"""``python -m course_lib.train MODEL``: chapter 09's and chapter 12's shared models train from the command
line (smoke profile, in this process) into the run directories the chapters read, and load from there."""

from __future__ import annotations

import pytest

from course_lib import train as cli
from course_lib.checkpoints import has_checkpoint, read_state


@pytest.fixture
def runs(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_RUNS_DIR", str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("model, run_name", [("vae", "vae-smoke"), ("gan", "gan-smoke"), ("flow", "flow-digits-smoke"),
                                             ("reflow", "reflow-digits-smoke")])
def test_trains_where_the_chapter_looks_then_loads(model, run_name, runs, capsys):
    assert cli.main([model, "--profile", "smoke", "--quiet"]) == 0
    assert has_checkpoint(runs / run_name)
    first = capsys.readouterr().out
    assert f"{model} (smoke profile)" in first and "already trained" not in first
    assert cli.main([model, "--profile", "smoke", "--quiet"]) == 0  # the second call loads the verified checkpoint
    assert "already trained: loaded" in capsys.readouterr().out


def test_steps_stops_early_for_every_model_the_gan_included(runs):
    assert cli.main(["vae", "--profile", "smoke", "--steps", "3", "--quiet"]) == 0
    assert read_state(runs / "vae-smoke")["step"] == 3
    assert cli.main(["gan", "--profile", "smoke", "--steps", "3", "--quiet"]) == 0  # one loop: --steps applies to it too
    assert read_state(runs / "gan-smoke")["step"] == 3


def test_every_model_is_listed_in_the_help(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    for name in ("digits", "prompt", "vae", "gan", "flow", "reflow"):
        assert name in out
