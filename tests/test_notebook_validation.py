"""Bad notebook parameters fail in the validation cell with a message naming the parameter.

Each case runs a real notebook through papermill with a bad value injected, as an instructor
would, and checks the error and that it was raised by the validation cell (the third code cell).
"""

import nbformat
import papermill as pm
import pytest

from course_lib.sweep import NOTEBOOK_DIR

SCHEDULES = "02_noise_schedules.ipynb"
SAMPLERS = "06_ddim_and_fast_samplers.ipynb"
FLOW = "12_flow_matching.ipynb"
FAMILIES = "09_three_families.ipynb"


@pytest.mark.parametrize(
    "notebook, params, expected",
    [
        (SCHEDULES, {"profile": "fast"}, "profile='fast' is not allowed"),
        (SCHEDULES, {"schedule": "cosin"}, "schedule='cosin' is not allowed"),
        (SCHEDULES, {"num_timesteps": 0}, "num_timesteps=0 is out of range"),
        (SCHEDULES, {"seed": "abc"}, "seed must be an integer"),
        (SAMPLERS, {"spacing": "trailing"}, "sigma_max=80.0 only applies to spacing='karras'"),
        (SAMPLERS, {"sampler": "dpm_solver"}, "sampler='dpm_solver' is not allowed"),
        (FLOW, {"sampler": "rk4"}, "sampler='rk4' is not allowed"),
        (FLOW, {"shift": 0.0}, "shift=0.0 is out of range"),
        (FAMILIES, {"families": ["vae", "flow"]}, "families=['vae', 'flow'] is not allowed"),
        (FAMILIES, {"beta": -0.5}, "beta=-0.5 is out of range"),
        (FAMILIES, {"budget_seconds": 0}, "budget_seconds must be > 0"),
    ],
)
def test_bad_parameter_fails_in_validation_cell(tmp_path, monkeypatch, notebook, params, expected):
    monkeypatch.delenv("COURSE_PROFILE", raising=False)  # let the bad profile reach the notebook
    out = tmp_path / "out.ipynb"
    with pytest.raises(pm.PapermillExecutionError) as err:
        pm.execute_notebook(str(NOTEBOOK_DIR / notebook), str(out), parameters={"profile": "smoke", **params},
                            kernel_name="python3", progress_bar=False, cwd=str(NOTEBOOK_DIR))
    assert err.value.ename == "ValueError"
    assert expected in err.value.evalue
    executed = nbformat.read(out, as_version=4)
    code = [c for c in executed.cells if c.cell_type == "code"]
    failed = [i for i, c in enumerate(code) if any(o.get("output_type") == "error" for o in c.get("outputs", []))]
    # code cells: setup, parameters, injected-parameters, validation
    assert failed == [3], f"error raised in code cell {failed}, expected the validation cell"
