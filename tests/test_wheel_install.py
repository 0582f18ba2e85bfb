"""The package as Colab gets it: a built wheel, installed (not editable) into a fresh virtual
environment, running a chapter with papermill from a folder outside the checkout.

A data file missing from the wheel's package data, or a path that only exists in a source checkout,
fails here. To stay fast and offline the fresh environment sees this environment's third-party
packages through a ``.pth`` line (torch is not downloaded again); course_lib itself comes only from
the wheel, which the executed notebook proves by printing where it imported course_lib from.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import nbformat
import pytest

from course_lib.sweep import NOTEBOOK_DIR, REPO_ROOT

CHAPTER = "03_denoiser.ipynb"  # reads the shipped digits, builds the U-Net and the schedules: fast in smoke


def run(cmd, **kw):
    out = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert out.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


def tracked_copy(dest: Path) -> Path:
    """The files git tracks (what a clone holds), so the wheel cannot pick up local leftovers."""
    try:
        files = run(["git", "ls-files", "-z"], cwd=REPO_ROOT).stdout.split("\0")
    except (AssertionError, FileNotFoundError):
        files = [str(p.relative_to(REPO_ROOT)) for p in REPO_ROOT.rglob("*") if p.is_file()
                 and not any(part in (".git", ".venv", "build", "runs") for part in p.relative_to(REPO_ROOT).parts)]
    for name in filter(None, files):
        src = REPO_ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


@pytest.mark.timeout(600)
def test_wheel_installs_and_runs_a_chapter_outside_the_checkout(tmp_path):
    src = tracked_copy(tmp_path / "src")
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
         "-w", str(tmp_path / "dist"), str(src)])
    wheel = next((tmp_path / "dist").glob("course_lib-*.whl"))
    with zipfile.ZipFile(wheel) as zf:  # every file of the package, shipped weights and data included
        missing = {str(p.relative_to(src)) for p in (src / "course_lib").rglob("*") if p.is_file()} - set(zf.namelist())
    assert not missing, f"the wheel lacks {sorted(missing)}: add them to [tool.setuptools.package-data]"

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    py = venv / "bin" / "python"
    purelib = Path(run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    # this environment's third-party packages, after the venv's own (not its editable course_lib: a plain
    # path line does not run the .pth hooks of the directory it adds)
    parents = dict.fromkeys(site.getsitepackages() + [sysconfig.get_paths()["purelib"]])
    (purelib / "_parent_env.pth").write_text("\n".join(parents) + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "COURSE_RUNS_DIR")}
    env.update(HOME=str(tmp_path / "home"), COURSE_PROFILE="smoke", MPLBACKEND="Agg", PIP_NO_INDEX="1",
               OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "1"))
    run([str(py), "-m", "pip", "install", "--quiet", "--no-deps", "--force-reinstall", str(wheel)], env=env, cwd=tmp_path)

    # every dependency the wheel declares is satisfied in the fresh environment
    check = ("from importlib.metadata import requires, version\n"
             "from packaging.requirements import Requirement\n"
             "bad = [str(r) for r in map(Requirement, requires('course_lib')) if not r.marker"
             " and not r.specifier.contains(version(r.name), prereleases=True)]\n"
             "assert not bad, bad\n")
    run([str(py), "-c", check], env=env, cwd=tmp_path)

    work = tmp_path / "learner"  # a folder with nothing of the checkout in it
    work.mkdir()
    nb = nbformat.read(NOTEBOOK_DIR / CHAPTER, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(
        "import course_lib, sys\nprint('course_lib from', course_lib.__file__)\nprint('python', sys.executable)"))
    nbformat.write(nb, work / CHAPTER)
    run([str(py), "-m", "papermill", CHAPTER, "out.ipynb", "-p", "profile", "smoke", "-k", "python3",
         "--no-progress-bar"], env=env, cwd=work, timeout=500)

    executed = nbformat.read(work / "out.ipynb", as_version=4)
    text = "".join(o.get("text", "") for o in executed.cells[-1].outputs)
    assert f"course_lib from {purelib}" in text, text
    assert str(REPO_ROOT) not in text, text
    assert not any(p.name == "runs" for p in work.iterdir()), "the chapter wrote runs/ into the learner's folder"
