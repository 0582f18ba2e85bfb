"""course_lib.claims: a chapter's stated figure is printed with this run's value and enforced in trained profiles."""

import nbformat
import pytest

from course_lib import claims
from course_lib.claims import ClaimError, claim
from course_lib.sweep import count_claims, over_budget


def test_a_figure_within_its_tolerance_holds_and_prints_both(capsys):
    assert claim("FID of DDIM-20", 6.4, stated=6.2, tol=0.5, fmt="{:.1f}") is True
    out = capsys.readouterr().out
    assert out.startswith("✓ FID of DDIM-20: the text says 6.2 ± 0.5, this run measured 6.4")
    assert claims.checked[-1].holds and claims.checked[-1].enforced


@pytest.mark.parametrize("kwargs, measured", [
    (dict(stated=6.2, tol=0.5), 6.8),           # outside an absolute tolerance
    (dict(stated=2.0, rel_tol=0.1), 1.7),       # outside a relative one
    (dict(at_least=0.95), 0.94),                # under a floor
    (dict(at_most=2.0), 2.01),                  # over a ceiling
    (dict(at_least=0.0, at_most=1.0), float("nan")),  # a NaN never holds
])
def test_a_figure_outside_fails_in_one_readable_line(kwargs, measured):
    with pytest.raises(ClaimError) as err:
        claim("the sentence", measured, profile="cpu", **kwargs)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("The text claims the sentence: ")
    assert "this run measured" in message and "Everything else in this run is fine" in message
    assert isinstance(err.value, AssertionError)  # pytest, nbval and papermill treat it as a failure


def test_a_fine_tolerance_is_never_shown_as_zero(capsys):
    claim("the shift multiplies σ by 3", 3.0, stated=3.0, tol=1e-6, fmt="{:.1f}")
    assert "the text says 3.0 ± 1e-06," in capsys.readouterr().out


def test_smoke_prints_but_does_not_enforce_unless_asked(capsys):
    assert claim("accuracy at s = 1", 0.3, at_least=0.95, profile="smoke") is False
    assert "this smoke run measured 0.3" in capsys.readouterr().out
    with pytest.raises(ClaimError):
        claim("a deterministic identity", 0.3, at_least=0.95, profile="smoke", profiles=claims.ALL_PROFILES)


@pytest.mark.parametrize("kwargs, match", [
    (dict(), "needs stated="),
    (dict(stated=1.0), "exactly one of tol="),
    (dict(stated=1.0, tol=0.1, rel_tol=0.1), "exactly one of tol="),
    (dict(stated=1.0, tol=-0.1), "tol=...\\) must be a number >= 0"),
    (dict(at_least=0.0, profiles=("laptop",)), "profiles=...\\) takes names from"),
])
def test_bad_arguments_name_the_parameter(kwargs, match):
    with pytest.raises(ValueError, match=match):
        claim("x", 1.0, **kwargs)
    with pytest.raises(ValueError, match="claim\\(text=...\\)"):
        claim("  ", 1.0, at_least=0.0)


def test_sweep_counts_confirmed_claims_and_budget(tmp_path):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("...")
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=(
        "✓ a: the text says 1 ± 0.1, this run measured 1\n"
        "· b: the text says at least 1 (for a trained model); this smoke run measured 0\n"
        "✓ c: the text says at most 2, this run measured 1\n"
        "✓ plain output that is no claim\n"))]
    nb.cells.append(cell)
    path = tmp_path / "00_x.ipynb"
    nbformat.write(nb, str(path))
    assert count_claims(path) == 2
    assert over_budget([(path, 590.0), (path, -612.0)], 600) == ["00_x.ipynb took 612 s > 600 s"]
