"""`python -m course_lib.sweep grid` over two parameters of chapter 07 (smoke profile): one table,
parameters as columns, the figures the chapter records (class accuracy and FID per guidance scale)."""

import csv
import subprocess
import sys

import pytest

from course_lib.sweep import NOTEBOOK_DIR, REPO_ROOT


@pytest.mark.timeout(900)
def test_guidance_sweep_prints_one_table(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "course_lib.sweep", "grid", str(NOTEBOOK_DIR / "07_guidance.ipynb"),
         "-p", "scales", "1,3", "-p", "sampler", "euler", "--profile", "smoke", "--out", str(tmp_path)],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=880)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:3] == ["scales", "sampler", "s"])
    assert lines[header].split() == ["scales", "sampler", "s", "class_accuracy", "fid", "seconds"]
    body = lines[header + 2: header + 4]  # two runs (kept to two for CI's time; `make sweep` runs 2 × 2)
    assert sorted((r.split()[0], r.split()[1]) for r in body) == [("1", "euler"), ("3", "euler")]
    with open(tmp_path / "07_guidance__results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    for r in rows:
        assert float(r["scales"]) == float(r["s"])  # the run's one scale is the one its figures are about
        assert 0.0 <= float(r["class_accuracy"]) <= 1.0 and float(r["fid"]) > 0 and float(r["seconds"]) > 0
