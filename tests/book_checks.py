"""Run after `make course`: the built book holds every chapter with its figures, and reads offline.

Not collected by the unit-test run (name does not start with test_); `make test` calls it
explicitly after the book build. The page checks are plain functions of a page's HTML, so
tests/test_book_checks.py shows on small pages that each one fails on what it guards against:

- the math renderer (MathJax) is served from the book itself, not from a CDN;
- papermill's injected "# Parameters" cell is not shown;
- a Markdown table in an output is rendered as a table, not left as a paragraph (or block) of pipes.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HTML = ROOT / "build" / "book" / "html"
EXECUTED = ROOT / "build" / "notebooks"

MATH_RENDERERS = ("mathjax", "katex")
DASHES = r":?(?:-{3,}|[—–][-—–]*):?"  # --- (or the em dash a typographer makes of it)
SEPARATOR = re.compile(rf"^\s*\|?\s*{DASHES}\s*(\|\s*{DASHES}\s*)+\|?\s*$")  # |---|---| of a Markdown table


# ----------------------------------------------------------------------------- page checks
def script_sources(html: str) -> list[str]:
    return re.findall(r"<script\b[^>]*\bsrc=\"([^\"]+)\"", html)


def remote_math_scripts(html: str) -> list[str]:
    """Math-renderer scripts loaded from another host (a CDN): they fail on a laptop with no network."""
    return [s for s in script_sources(html)
            if re.match(r"^(https?:)?//", s) and any(r in s.lower() for r in MATH_RENDERERS)]


def local_math_scripts(html: str, page: Path) -> list[Path]:
    """Math-renderer scripts the page loads from the book itself (only those whose file exists)."""
    found = []
    for s in script_sources(html):
        if not re.match(r"^([a-z]+:)?//", s) and any(r in s.lower() for r in MATH_RENDERERS):
            path = (page.parent / s.split("?")[0]).resolve()
            if path.is_file():
                found.append(path)
    return found


def has_math(html: str) -> bool:
    return 'class="math' in html or "\\(" in html or "\\[" in html


def visible_injected_cells(html: str) -> int:
    """How many of papermill's injected-parameters cells the page shows."""
    tagged = len(re.findall(r"class=\"[^\"]*\btag_injected-parameters\b", html))
    comment = len(re.findall(r"<span class=\"c1\">#\s*Parameters</span>", html))
    return max(tagged, comment)


class _TextBlocks(HTMLParser):
    """Collects the text of every <p> and of every <pre> inside a cell's output."""

    def __init__(self):
        super().__init__()
        self.blocks: list[tuple[str, str]] = []  # (tag, text)
        self._stack: list[tuple[str, bool]] = []  # (tag, starts an output area)
        self._current: list[str] | None = None
        self._current_tag = ""

    def _in_output(self) -> bool:
        return any(is_out for _, is_out in self._stack)

    def handle_starttag(self, tag, attrs):
        cls = dict(attrs).get("class") or ""
        if tag in ("br", "img", "hr", "meta", "link", "input"):
            return
        self._stack.append((tag, "cell_output" in cls or "output" in cls.split()))
        if self._current is None and (tag == "p" or (tag == "pre" and self._in_output())):
            self._current, self._current_tag = [], tag

    def handle_endtag(self, tag):
        while self._stack:
            open_tag, _ = self._stack.pop()
            if open_tag == tag:
                break
        if self._current is not None and tag == self._current_tag:
            self.blocks.append((tag, "".join(self._current)))
            self._current = None

    def handle_data(self, data):
        if self._current is not None:
            self._current.append(data)


def tables_left_as_text(html: str) -> list[str]:
    """Paragraphs, and output text blocks, that hold a Markdown table's |---|---| line: a table
    the reader sees as pipes instead of rows and columns."""
    parser = _TextBlocks()
    parser.feed(html)
    bad = []
    for tag, text in parser.blocks:
        lines = text.splitlines()
        flat = [text] if tag == "p" else []  # a paragraph may have lost its line breaks
        if any(SEPARATOR.match(line) for line in lines) or any(re.search(rf"\|\s*{DASHES}\s*\|", f) for f in flat):
            bad.append(text.strip()[:120])
    return bad


def output_tables(html: str) -> int:
    """How many <table> elements the page has (rendered Markdown tables among them)."""
    return len(re.findall(r"<table\b", html))


# ----------------------------------------------------------------------------- the built book
def chapter_pages():
    from course_lib.sweep import notebook_paths

    return [(nb, HTML / "notebooks" / f"{nb.stem}.html") for nb in notebook_paths()]


def test_index_exists():
    assert (HTML / "index.html").exists()
    assert (HTML / "notation.html").exists()


def test_every_chapter_page_shows_figures():
    for _, page in chapter_pages():
        assert page.exists(), f"{page} missing from the book"
        images = re.findall(r"<img [^>]*src=\"(\.\./_images/[^\"]+)\"", page.read_text())
        assert images, f"{page.name} has no figures"
        for src in images:
            assert (page.parent / src).resolve().exists(), f"{page.name} links a missing image {src}"


def test_executed_notebooks_have_outputs():
    import nbformat

    for nb, _ in chapter_pages():
        executed = nbformat.read(EXECUTED / nb.name, as_version=4)
        assert any(c.get("outputs") for c in executed.cells if c.cell_type == "code"), nb.name


def all_pages():
    return sorted(HTML.rglob("*.html"))


def test_math_is_rendered_by_the_book_itself():
    pages_with_math = 0
    for page in all_pages():
        html = page.read_text()
        assert not remote_math_scripts(html), f"{page.relative_to(HTML)} loads its math renderer from the network: " \
                                              f"{remote_math_scripts(html)}"
        if has_math(html):
            pages_with_math += 1
            assert local_math_scripts(html, page), f"{page.relative_to(HTML)} has math but no local MathJax script"
    assert pages_with_math >= 3, "expected math on the notation page and in the chapters"


def test_injected_parameters_cells_are_hidden():
    for _, page in chapter_pages():
        shown = visible_injected_cells(page.read_text())
        assert shown == 0, f"{page.name} shows papermill's injected parameters cell"


def test_result_tables_render_as_tables():
    import nbformat

    for nb, page in chapter_pages():
        html = page.read_text()
        left = tables_left_as_text(html)
        assert not left, f"{page.name}: Markdown tables left as text: {left}"
        executed = nbformat.read(EXECUTED / nb.name, as_version=4)
        md_tables = sum(1 for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", [])
                        if any(SEPARATOR.match(line) for line in str(o.get("data", {}).get("text/markdown", "")).splitlines()))
        prose_tables = sum(1 for c in executed.cells if c.cell_type == "markdown"
                           if any(SEPARATOR.match(line) for line in c.source.splitlines()))
        assert output_tables(html) >= md_tables + prose_tables, \
            f"{page.name}: {md_tables} Markdown tables in outputs and {prose_tables} in the text, " \
            f"but only {output_tables(html)} <table> elements"
