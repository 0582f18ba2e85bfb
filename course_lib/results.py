"""A chapter's headline figures, recorded so that a sweep can collect them, and result tables.

    from course_lib.results import record, show_table
    record("class_accuracy", 0.982, s=3.0)     # a named figure, with labels telling rows apart
    show_table(["s", "accuracy"], [[3, "98 %"]])  # a table that renders as a table everywhere

:func:`record` writes the figure into the notebook itself: it displays an output of MIME type
:data:`RESULT_MIME` (a small JSON object) whose visible part is an empty HTML comment, so the
reader sees nothing new and papermill keeps it in the executed notebook. :func:`read_results`
reads them back from an executed ``.ipynb`` (``python -m course_lib.sweep grid`` does that for
every run of a grid and prints one table).

:func:`show_table` displays a Markdown table (with the same table as plain text for a terminal):
Jupyter, Colab and the book (MyST-NB with ``nb_render_markdown_format: myst``) render it as a table,
where ``print``-ed text would stay a paragraph of pipes.
"""

from __future__ import annotations

import json
import math
import numbers
from pathlib import Path
from typing import Any, Sequence

RESULT_MIME = "application/vnd.course-lib.result+json"

_recorded: list[dict[str, Any]] = []  # this kernel's records, in order (also handy outside Jupyter)


def _plain(value: Any) -> Any:
    """A JSON-safe copy: tensors and numpy scalars become Python numbers, NaN/inf become None."""
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 0) == 0:
        value = value.item()
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        return value if math.isfinite(value) else None
    raise TypeError(f"record() takes a number, a bool or a string; got {type(value).__name__}")


def record(name: str, value: Any, **labels: Any) -> None:
    """Record one named figure of this run, e.g. ``record("fid", 5.03, s=3.0)``.

    ``labels`` tell apart several figures of the same name in one run (one per guidance scale,
    per sampler…); a sweep turns each distinct set of labels into its own row.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"record() needs a non-empty name, got {name!r}")
    entry = {"name": name, "value": _plain(value), "labels": {k: _plain(v) for k, v in labels.items()}}
    _recorded.append(entry)
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # plain Python: keep it in memory only
        return
    if get_ipython() is not None:
        comment = json.dumps(entry, ensure_ascii=True).replace("--", "- -")
        display({RESULT_MIME: entry, "text/html": f"<!-- course_lib result: {comment} -->"}, raw=True)


def recorded() -> list[dict[str, Any]]:
    """The figures recorded so far in this process (a copy)."""
    return [dict(e) for e in _recorded]


def read_results(notebook: Path | str) -> list[dict[str, Any]]:
    """Every figure :func:`record` wrote into an executed notebook, in order."""
    import nbformat

    nb = nbformat.read(str(notebook), as_version=4)
    found = []
    for cell in nb.cells:
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            data = out.get("data", {})
            if RESULT_MIME in data:
                entry = data[RESULT_MIME]
                if isinstance(entry, str):  # some writers store JSON outputs as text
                    entry = json.loads(entry)
                found.append({"name": entry["name"], "value": entry["value"], "labels": dict(entry.get("labels", {}))})
    return found


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub/MyST Markdown table; cells are written with ``str`` (format numbers before)."""
    if any(len(r) != len(header) for r in rows):
        raise ValueError(f"every row needs {len(header)} cells (one per header name)")
    esc = lambda c: str(c).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["| " + " | ".join(esc(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def text_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """The same table as aligned plain text (numbers right-aligned), for terminals and logs."""
    cells = [[str(h) for h in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    numeric = [all(_looks_numeric(r[i]) for r in cells[1:]) and len(cells) > 1 for i in range(len(header))]
    fmt = lambda r: "  ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in zip(r, widths, numeric))  # noqa: E731
    return "\n".join([fmt(cells[0]), "  ".join("-" * w for w in widths)] + [fmt(r) for r in cells[1:]]).rstrip()


def _looks_numeric(text: str) -> bool:
    try:
        float(text.rstrip("%×s ").replace(",", ""))
        return True
    except ValueError:
        return text in ("", "nan", "None")


def show_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Display a table as Markdown (Jupyter, Colab, the book) with a plain-text twin; return the Markdown."""
    md = markdown_table(header, rows)
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        print(text_table(header, rows))
        return md
    if get_ipython() is None:
        print(text_table(header, rows))
    else:
        display({"text/markdown": md, "text/plain": text_table(header, rows)}, raw=True)
    return md
