"""Every chapter follows docs/architecture.md, "Notebook conventions" (no execution here)."""

from pathlib import Path

import nbformat
import pytest
import yaml

from course_lib.sweep import NOTEBOOK_DIR, colab_url, notebook_paths, repository_url

NOTEBOOKS = notebook_paths()
TOC = Path(__file__).resolve().parent.parent / "book" / "_toc.yml"
MAX_CELL_LINES = 30  # "no cell longer than a screen" (issue 10: no code cell over 30 lines)


def toc_files() -> set[str]:
    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                yield node["file"]
            for value in node.values():
                yield from walk(value)
        elif isinstance(node, list):
            for item in node:
                yield from walk(item)

    return set(walk(yaml.safe_load(TOC.read_text())))


def test_there_are_chapters():
    assert len(NOTEBOOKS) >= 3
    assert [p.name[:2] for p in NOTEBOOKS] == sorted(p.name[:2] for p in NOTEBOOKS)


@pytest.fixture(params=NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def nb(request):
    return request.param, nbformat.read(request.param, as_version=4)


def test_no_stored_outputs(nb):
    path, book = nb
    for i, cell in enumerate(book.cells):
        if cell.cell_type == "code":
            assert not cell.outputs, f"{path.name} cell {i} has stored outputs; clear them before committing"
            assert cell.execution_count is None, f"{path.name} cell {i} has an execution count"


def test_title_and_colab_badge(nb):
    path, book = nb
    first = book.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith(f"# {path.name[:2]} · ")
    assert f"({colab_url(path.name)})" in first.source, f"{path.name}: Colab badge must link to {colab_url(path.name)}"


def test_setup_parameters_and_validation_cells(nb):
    path, book = nb
    code = [c for c in book.cells if c.cell_type == "code"]
    setup, params, validate = code[0], code[1], code[2]
    assert '"google.colab" in sys.modules' in setup.source and repository_url() in setup.source
    assert "describe_environment" in setup.source
    assert "parameters" in params.metadata.get("tags", []), f"{path.name}: second code cell must be tagged 'parameters'"
    for line in params.source.splitlines():  # plain assignments only
        assert not line.strip() or line.lstrip().startswith("#") or " = " in line.split("#")[0], line
    assert "profile" in params.source and "seed" in params.source
    assert "settings.setup(profile=profile, seed=seed" in validate.source


def test_cells_fit_on_a_screen(nb):
    path, book = nb
    for i, cell in enumerate(book.cells):
        if cell.cell_type == "code":
            assert len(cell.source.splitlines()) <= MAX_CELL_LINES, f"{path.name} cell {i} is longer than a screen"


def test_has_an_exercise_with_a_check(nb):
    path, book = nb
    assert any("## Exercise" in c.source for c in book.cells if c.cell_type == "markdown")
    assert any("check(" in c.source or "exercises.check_" in c.source for c in book.cells if c.cell_type == "code")


def test_has_an_exercise_where_the_learner_writes_code(nb):
    """Issue 11: every chapter has a function exercise (course_lib.exercises.check_*) with hints and a reference solution."""
    path, book = nb
    stubs = [c for c in book.cells if c.cell_type == "code" and "exercises.check_" in c.source]
    assert stubs, f"{path.name}: no exercise where the learner writes a function (exercises.check_*)"
    for c in stubs:
        assert "return None  # your code here" in c.source, f"{path.name}: the stub must start empty"
    text = "\n".join(c.source for c in book.cells if c.cell_type == "markdown")
    assert "<summary>Hint 1</summary>" in text and "exercises.solution_" in text.replace("ex.solution_", "exercises.solution_")


def test_every_notebook_is_in_the_toc():
    listed = toc_files()
    for path in NOTEBOOKS:
        assert f"notebooks/{path.stem}" in listed, f"{path.name} is missing from book/_toc.yml"
    for entry in listed:
        if entry.startswith("notebooks/"):
            assert (NOTEBOOK_DIR / f"{entry.removeprefix('notebooks/')}.ipynb").exists(), f"_toc.yml lists missing {entry}"
