"""The project's architecture page (docs/architecture.md) is the one the code cites, and it stays current.

- the book's copy (book/architecture.md: the book build copies only book/*.md) is the same page;
- every section that code, tests, benchmarks or notebooks cite as ``docs/architecture.md, "Name"`` exists;
- every module of course_lib (and of its models/, pretrained/ and latent/ packages) is named on the page;
- nothing cites the design note that lived outside the repository.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "architecture.md"
BOOK_COPY = ROOT / "book" / "architecture.md"
CITING = ("course_lib", "tests", "benchmarks", "notebooks")
OUTSIDE_NOTE = "DESIGN" + ".md"  # the design note that lived outside the repository


def cited_files() -> list[Path]:
    """The code, tests, benchmarks and notebooks (not this file, whose docstring shows the citation form)."""
    return [p for d in CITING for p in sorted((ROOT / d).rglob("*"))
            if p.suffix in (".py", ".ipynb") and p.is_file() and p.resolve() != Path(__file__).resolve()]


def headings() -> set[str]:
    return {m.group(1).strip() for m in re.finditer(r"^#{1,6} (.+)$", PAGE.read_text(encoding="utf-8"), re.M)}


def test_book_copy_is_the_page():
    assert BOOK_COPY.read_bytes() == PAGE.read_bytes(), (
        "book/architecture.md differs from docs/architecture.md: edit docs/architecture.md, then "
        "cp docs/architecture.md book/architecture.md")


def test_cited_sections_exist():
    cited = {}
    for path in cited_files():
        text = path.read_text(encoding="utf-8")
        for name in re.findall(r'docs/architecture\.md,\s*\\?"([^"\\]+)\\?"', text):
            cited.setdefault(" ".join(name.split()), path.relative_to(ROOT))  # a name may wrap onto the next line
    assert cited, "nothing cites docs/architecture.md by section"
    missing = {name: str(where) for name, where in cited.items() if name not in headings()}
    assert not missing, f"sections cited but not on docs/architecture.md: {missing}"


def test_every_module_is_on_the_page():
    page = PAGE.read_text(encoding="utf-8")
    pkg = ROOT / "course_lib"
    names = {p.stem for p in pkg.glob("*.py") if p.stem != "__init__"}
    names |= {p.name for p in pkg.iterdir() if (p / "__init__.py").is_file()}
    for sub in ("models", "pretrained", "latent"):
        names |= {p.stem for p in (pkg / sub).glob("*.py") if p.stem != "__init__"}
    missing = sorted(n for n in names if f"`{n}`" not in page and f"`{n}/`" not in page)
    assert not missing, f"modules not described on docs/architecture.md: {missing}"


def test_nothing_cites_the_old_design_note():
    citing = [str(p.relative_to(ROOT)) for p in cited_files() if OUTSIDE_NOTE in p.read_text(encoding="utf-8")]
    assert not citing, f"cite docs/architecture.md (by section) instead of {OUTSIDE_NOTE}: {citing}"
