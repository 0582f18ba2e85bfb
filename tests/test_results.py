"""course_lib.results (record, tables) and the sweep's results table, on small hand-made notebooks."""

import csv

import nbformat
import pytest

from course_lib import results
from course_lib.sweep import collect_results, write_results


def executed_notebook(path, params, figures, duration=2.0):
    """A notebook as papermill leaves it: parameters in its metadata, record() outputs in a cell."""
    outputs = [nbformat.v4.new_output("display_data", data={
        results.RESULT_MIME: {"name": n, "value": v, "labels": labels}, "text/html": "<!-- -->"})
        for n, v, labels in figures]
    cell = nbformat.v4.new_code_cell("...", outputs=outputs)
    meta = {"papermill": {"parameters": params, "duration": duration, "input_path": "notebooks/07_guidance.ipynb"}}
    nb = nbformat.v4.new_notebook(cells=[cell], metadata=meta)
    nbformat.write(nb, str(path))
    return path


def test_record_keeps_names_values_and_labels():
    import torch

    before = len(results.recorded())
    results.record("fid", torch.tensor(5.25), s=3.0)
    results.record("accuracy", 0.5)
    got = results.recorded()[before:]
    assert got == [{"name": "fid", "value": 5.25, "labels": {"s": 3.0}},
                   {"name": "accuracy", "value": 0.5, "labels": {}}]
    with pytest.raises(ValueError):
        results.record("", 1.0)
    with pytest.raises(TypeError):
        results.record("x", [1, 2])


def test_read_results_round_trip(tmp_path):
    path = executed_notebook(tmp_path / "a.ipynb", {"profile": "smoke"}, [("fid", 3.5, {"s": 1.0})])
    assert results.read_results(path) == [{"name": "fid", "value": 3.5, "labels": {"s": 1.0}}]


def test_sweep_table_has_parameters_as_columns(tmp_path):
    runs = []
    for sampler in ("ddim", "euler"):
        for scales in (1.0, 3.0):
            figures = [("class_accuracy", 0.1 * scales, {"s": scales}), ("fid", 10 / scales, {"s": scales})]
            runs.append(executed_notebook(tmp_path / f"{sampler}-{scales}.ipynb",
                                          {"profile": "smoke", "scales": scales, "sampler": sampler}, figures))
    rows = collect_results(runs, ["scales", "sampler"])  # what `sweep grid` passes: the grid's names
    assert len(rows) == 4
    assert list(rows[0]) == ["scales", "sampler", "s", "class_accuracy", "fid", "seconds"]
    assert list(collect_results(runs)[0])[:2] == ["sampler", "scales"]  # default: the parameters that vary
    text = write_results(rows, tmp_path / "results.csv")
    header = text.splitlines()[0].split()
    assert header == ["scales", "sampler", "s", "class_accuracy", "fid", "seconds"]
    with open(tmp_path / "results.csv") as f:
        table = list(csv.DictReader(f))
    assert [(r["sampler"], float(r["scales"]), float(r["fid"])) for r in table][:2] == [("ddim", 1.0, 10.0), ("ddim", 3.0, 10 / 3)]


def test_markdown_and_text_tables():
    md = results.markdown_table(["s", "accuracy"], [[1, "50 %"], [3, "a|b"]])
    assert md.splitlines()[:2] == ["| s | accuracy |", "|---|---|"]
    assert "a\\|b" in md
    text = results.text_table(["s", "accuracy"], [[1, "50%"], [3, "98%"]])
    assert text.splitlines()[0].split() == ["s", "accuracy"]
    with pytest.raises(ValueError):
        results.markdown_table(["a", "b"], [[1]])
