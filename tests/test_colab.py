"""Colab as it is today (Python 3.13, torch 2.11, numpy 2.1): the package's bounds admit it, and every
chapter's setup cell installs the package before anything imports numpy, so no restart is needed."""

import re
import sys
import tomllib
import types

import nbformat
import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from course_lib import settings
from course_lib.sweep import REPO_ROOT, notebook_paths

COLAB = {"python": "3.13.0", "torch": "2.11.0", "numpy": "2.1.0", "torchvision": "0.26.0"}


def project():
    with open(REPO_ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]


def test_bounds_admit_colabs_versions_and_never_cap_torch_or_numpy():
    """Colab's own torch and numpy must stay: the package only sets lower bounds on them, at or below Colab's."""
    assert SpecifierSet(project()["requires-python"]).contains(COLAB["python"])
    reqs = {Requirement(r).name: Requirement(r) for r in project()["dependencies"]}
    for name in ("torch", "numpy", "torchvision"):
        operators = {spec.operator for spec in reqs[name].specifier}
        assert operators == {">="}, f"{reqs[name]}: only a lower bound (>=) is allowed, never a pin or a cap"
        assert reqs[name].specifier.contains(COLAB[name]), f"{reqs[name]} does not admit Colab's {name} {COLAB[name]}"


def test_the_installed_package_declares_requirements_colab_satisfies():
    """From the installed distribution's metadata (what pip resolves on Colab), not from hand-copied bounds: it
    admits Python 3.13, and every requirement that applies there admits Colab's own torch, numpy and torchvision.
    `make py313` (in `.ci/run`) then resolves and installs it on a real 3.13 and runs the core tests."""
    import importlib.metadata

    dist = importlib.metadata.distribution("course_lib")
    assert SpecifierSet(dist.metadata["Requires-Python"]).contains(COLAB["python"])
    env = {"python_version": "3.13", "python_full_version": COLAB["python"], "sys_platform": "linux",
           "platform_system": "Linux", "implementation_name": "cpython", "extra": ""}
    applying = [r for r in map(Requirement, dist.requires or []) if r.marker is None or r.marker.evaluate(env)]
    names = {r.name for r in applying}
    assert {"torch", "numpy", "torchvision"} <= names, names
    for r in applying:
        if r.name in COLAB:
            assert r.specifier.contains(COLAB[r.name]), f"{r} excludes Colab's {r.name} {COLAB[r.name]}"


def test_ci_runs_the_python_313_step():
    run = (REPO_ROOT / ".ci" / "run").read_text().splitlines()
    assert run.index("make test") < run.index("make py313"), run


@pytest.mark.parametrize("path", notebook_paths(), ids=lambda p: p.stem)
def test_setup_cell_installs_before_numpy_is_imported(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    setup = code[0].source.splitlines()
    pip = [i for i, line in enumerate(setup) if line.strip().startswith("%pip install")]
    assert len(pip) == 1, f"{path.name}: the first code cell must %pip install the package (on Colab)"
    imported = {m.group(2).split(".")[0] for line in setup[: pip[0]]
                if (m := re.match(r"\s*(import|from)\s+([\w.]+)", line))}
    assert imported <= {"sys"}, f"{path.name}: {imported - {'sys'}} imported before the install"
    line = setup[pip[0]]
    assert not any(flag in line.split() for flag in ("-U", "--upgrade", "--force-reinstall")), \
        f"{path.name}: the install must not replace Colab's own packages: {line}"
    rest = "\n".join(setup[pip[0] + 1:])
    assert "describe_environment" in rest, f"{path.name}: the setup cell reports through describe_environment"
    assert "restart" not in code[0].source.lower()


def test_a_replaced_numpy_asks_for_a_restart(monkeypatch):
    from importlib import metadata

    monkeypatch.setitem(sys.modules, "numpy", types.SimpleNamespace(__version__="1.0.0"))
    assert settings.stale_imports(("numpy",)) == [f"numpy: loaded 1.0.0, installed {metadata.version('numpy')}"]
    with pytest.raises(RuntimeError, match="Restart the runtime"):
        settings.describe_environment()
    monkeypatch.undo()
    assert settings.stale_imports() == []
