"""Every chapter's parameters: papermill lists each one with a type and a help text, and a bad value
fails in the validation cell with a message that names the notebook's own parameter.

`papermill --help-notebook NB` reads ``name: type = value  # help`` lines; a line with a second ``=``
(in its comment, say) is dropped silently, which is why this test compares against the cell's own
assignments, found with ``ast``.
"""

import ast
import subprocess
import sys

import nbformat
import papermill as pm
import pytest

from course_lib.sweep import notebook_paths

CHAPTERS = notebook_paths()


def parameters_cell(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    i = next(i for i, c in enumerate(code) if "parameters" in c.metadata.get("tags", []))
    return code[i], code[i + 1]


def assigned_names(source: str) -> list[str]:
    names = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.AnnAssign):
            names.append(node.target.id)
        elif isinstance(node, ast.Assign):
            names += [t.id for t in node.targets]
        else:
            raise AssertionError(f"the parameters cell holds plain assignments only, found {ast.dump(node)[:80]}")
    return names


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_papermill_lists_every_parameter_with_type_and_help(path):
    cell, _ = parameters_cell(path)
    names = assigned_names(cell.source)
    assert all(isinstance(n, ast.AnnAssign) for n in ast.parse(cell.source).body), \
        f"{path.name}: annotate every parameter with its type (`seed: int = 0`)"
    listed = pm.inspect_notebook(str(path))
    assert list(listed) == names, f"{path.name}: papermill lists {list(listed)}, the cell assigns {names}"
    for name, info in listed.items():
        assert info["inferred_type_name"] not in ("None", ""), f"{path.name}: {name} has no type for papermill"
        assert info["help"].strip(), f"{path.name}: {name} has no help comment"


def test_help_notebook_command_shows_types():
    path = next(p for p in CHAPTERS if p.name.startswith("10_"))
    out = subprocess.run([sys.executable, "-m", "papermill", "--help-notebook", str(path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for line in ("n_samples: Optional[int] (default None)", "num_steps: Optional[int] (default None)",
                 "sampler: str (default \"dpmpp_2m_sde\")"):
        assert line in out.stdout, f"{line!r} missing from:\n{out.stdout}"


BAD = {"str": "Bogus", "int": "bogus", "float": "bogus", "bool": "bogus"}


def bad_value(type_name: str):
    return BAD.get(type_name.removeprefix("Optional[").removesuffix("]"), "bogus")


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_a_bad_value_names_the_notebooks_own_parameter(path, monkeypatch):
    """Runs the parameters cell, one bad value and the validation cell in this process (no kernel)."""
    monkeypatch.delenv("COURSE_PROFILE", raising=False)
    cell, validation = parameters_cell(path)
    for name, info in pm.inspect_notebook(str(path)).items():
        namespace: dict = {}
        exec(compile(cell.source, f"{path.name}:parameters", "exec"), namespace)
        namespace[name] = bad_value(info["inferred_type_name"])
        if name != "profile":
            namespace["profile"] = "smoke"
        with pytest.raises(ValueError) as err:
            exec(compile(validation.source, f"{path.name}:validation", "exec"), namespace)
        assert name in str(err.value), f"{path.name}: {name}={namespace[name]!r} failed with {err.value!r}"


def test_chapter_01_names_schedule_name(monkeypatch):
    monkeypatch.delenv("COURSE_PROFILE", raising=False)
    cell, validation = parameters_cell(next(p for p in CHAPTERS if p.name.startswith("01_")))
    namespace: dict = {}
    exec(cell.source, namespace)
    namespace.update(profile="smoke", schedule_name="Cosine")
    with pytest.raises(ValueError, match=r"schedule_name='Cosine' is not allowed"):
        exec(validation.source, namespace)
