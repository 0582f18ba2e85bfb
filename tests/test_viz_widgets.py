"""Pictures and sliders: each drawing helper returns a figure; the slider degrades to a strip."""

import matplotlib.pyplot as plt
import pytest
import torch

from course_lib import viz, widgets
from course_lib.exercises import check
from course_lib.schedules import make_schedule


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_grid_shapes():
    grid = viz.to_display(torch.zeros(10, 3, 8, 8), nrow=5)
    assert grid.shape == (2 * 8 + 3 * 2, 5 * 8 + 6 * 2, 3)
    assert grid.min() >= 0 and grid.max() <= 1


def test_show_images_rejects_non_nchw():
    with pytest.raises(ValueError, match="NCHW"):
        viz.show_images(torch.zeros(3, 8, 8))


def test_drawing_helpers_return_figures():
    s = make_schedule("cosine", 100)
    img = torch.rand(1, 3, 16, 16) * 2 - 1
    figs = [
        viz.show_images(torch.rand(4, 1, 8, 8), nrow=2, title="x"),
        viz.forward_strip(img, s, [0, 50, 99]),
        viz.plot_schedules([s, make_schedule("linear", 100)]),
        viz.scatter_2d([torch.randn(50, 2)], ["cloud"]),
        viz.plot_curve([3.0, 2.0, 1.5, 1.2, 1.0], smooth=2, logy=True),
        viz.family_diagram(),
    ]
    assert all(isinstance(f, plt.Figure) for f in figs)


def test_sampling_strip_and_film_read_a_trajectory():
    """Chapter 05's figures take what sample(..., return_trajectory=True) returns."""
    from course_lib.samplers import sample

    result = sample(lambda x, t, cond=None: 0.5 * x, make_schedule("linear", 100), (3, 1, 32, 32), sampler="ddpm",
                    num_steps=6, generator=torch.Generator().manual_seed(0), return_trajectory=True, progress=False)
    fig = viz.sampling_strip(result, 2, n_cols=4, title="strip")
    assert isinstance(fig, plt.Figure) and len(fig.axes) == 8
    with pytest.raises(ValueError, match="image"):
        viz.sampling_strip(result, 3)
    film = viz.sampling_film(result, n_frames=3)
    assert "<script" in film.to_jshtml()


def test_plot_steps_vs_quality_one_line_per_sampler():
    rows = [{"sampler": sampler, "steps": n, "nfe": n, "fid": 10.0 / n + 1, "seconds": 0.1 * n, "spacing": "karras",
             "eta": 0.0, "clip_sample": True, "sigma_max": 80.0} for sampler in ("euler", "dpmpp_2m") for n in (5, 10)]
    rows.append({"sampler": "ddpm", "steps": 100, "nfe": 100, "fid": 1.0, "seconds": 5.0, "spacing": "leading",
                 "eta": 0.0, "clip_sample": True, "sigma_max": None})
    fig = viz.plot_steps_vs_quality(rows, title="t")
    ax_q = fig.axes[0]
    assert len(ax_q.get_lines()) == 3 + 1  # three samplers and the reference line
    assert viz._spread_ticks([9, 10, 20, 100]) == [10, 20, 100]


def test_slider_falls_back_to_a_static_strip(monkeypatch):
    monkeypatch.setenv("COURSE_STATIC", "1")
    assert not widgets.widgets_available()
    fig = widgets.timestep_slider(torch.zeros(1, 3, 16, 16), make_schedule("linear", 50))
    assert isinstance(fig, plt.Figure) and len(fig.axes) == 6


def test_exercise_check():
    assert check("n", None, 1.0) is False
    assert check("n", 0.5, torch.tensor(0.5)) is True
    assert check("name", "cosine", "cosine") is True
    with pytest.raises(AssertionError, match="got 0.4"):
        check("n", 0.4, 0.5)
