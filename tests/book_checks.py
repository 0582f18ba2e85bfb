"""Run after `make course`: the built book holds every chapter with its figures.

Not collected by the unit-test run (name does not start with test_); `make test` calls it
explicitly after the book build.
"""

import re
from pathlib import Path

from course_lib.sweep import notebook_paths

ROOT = Path(__file__).resolve().parent.parent
HTML = ROOT / "build" / "book" / "html"


def test_index_exists():
    assert (HTML / "index.html").exists()
    assert (HTML / "notation.html").exists()


def test_every_chapter_page_shows_figures():
    for nb in notebook_paths():
        page = HTML / "notebooks" / f"{nb.stem}.html"
        assert page.exists(), f"{page} missing from the book"
        images = re.findall(r"<img [^>]*src=\"(\.\./_images/[^\"]+)\"", page.read_text())
        assert images, f"{page.name} has no figures"
        for src in images:
            assert (page.parent / src).resolve().exists(), f"{page.name} links a missing image {src}"


def test_executed_notebooks_have_outputs():
    import nbformat

    for nb in notebook_paths():
        executed = nbformat.read(ROOT / "build" / "notebooks" / nb.name, as_version=4)
        assert any(c.get("outputs") for c in executed.cells if c.cell_type == "code"), nb.name
