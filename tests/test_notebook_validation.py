"""Bad notebook parameters fail in the validation cell with a message naming the parameter.

Each case runs a real notebook through papermill with a bad value injected, as an instructor
would, and checks the error and that it was raised by the validation cell (the third code cell).
"""

import nbformat
import papermill as pm
import pytest

from course_lib.sweep import NOTEBOOK_DIR

NOTEBOOK = NOTEBOOK_DIR / "02_noise_schedules.ipynb"


@pytest.mark.parametrize(
    "params, expected",
    [
        ({"profile": "fast"}, "profile='fast' is not allowed"),
        ({"schedule": "cosin"}, "schedule='cosin' is not allowed"),
        ({"num_timesteps": 0}, "num_timesteps=0 is out of range"),
        ({"seed": "abc"}, "seed must be an integer"),
    ],
)
def test_bad_parameter_fails_in_validation_cell(tmp_path, monkeypatch, params, expected):
    monkeypatch.delenv("COURSE_PROFILE", raising=False)  # let the bad profile reach the notebook
    out = tmp_path / "out.ipynb"
    with pytest.raises(pm.PapermillExecutionError) as err:
        pm.execute_notebook(str(NOTEBOOK), str(out), parameters={"profile": "smoke", **params},
                            kernel_name="python3", progress_bar=False, cwd=str(NOTEBOOK_DIR))
    assert err.value.ename == "ValueError"
    assert expected in err.value.evalue
    executed = nbformat.read(out, as_version=4)
    code = [c for c in executed.cells if c.cell_type == "code"]
    failed = [i for i, c in enumerate(code) if any(o.get("output_type") == "error" for o in c.get("outputs", []))]
    # code cells: setup, parameters, injected-parameters, validation
    assert failed == [3], f"error raised in code cell {failed}, expected the validation cell"
