"""Rerun chapters with papermill: one notebook, all of them, or a grid of parameters.

    python -m course_lib.sweep all --profile cpu --out build/notebooks
    python -m course_lib.sweep grid notebooks/07_guidance.ipynb -p scales 1,3 -p sampler ddim,euler
    python -m course_lib.sweep table build/sweep/07_guidance__*.ipynb   # the table again, from the runs

``make course`` and ``make sweep`` call this. papermill injects the parameters after the cell
tagged ``parameters``; the notebook's validation cell then checks them. A grid ends with one table
(also written to ``results.csv`` in the output folder): a row per run and per set of labels, the
grid's parameters as the first columns, then every figure the chapter recorded with
:func:`course_lib.results.record` and the run's seconds.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

if TYPE_CHECKING:  # settings imports torch; the command line does not need it to start
    from .settings import Profile

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = REPO_ROOT / "notebooks"


def notebook_paths(root: Path | str = NOTEBOOK_DIR) -> list[Path]:
    """The chapters in course order (``NN_name.ipynb``)."""
    return sorted(p for p in Path(root).glob("[0-9][0-9]_*.ipynb"))


def repository_url() -> str:
    """The repository URL from pyproject's ``[project.urls]`` (the one place it is written)."""
    from importlib.metadata import PackageNotFoundError, metadata

    try:
        for entry in metadata("course_lib").get_all("Project-URL") or []:
            label, _, url = entry.partition(",")
            if label.strip().lower() == "repository":
                return url.strip().rstrip("/")
    except PackageNotFoundError:
        pass
    import tomllib

    with open(REPO_ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]["urls"]["Repository"].rstrip("/")


def colab_url(notebook_name: str, branch: str = "main") -> str:
    """The "Open in Colab" link of ``notebooks/<notebook_name>``."""
    path = repository_url().removeprefix("https://github.com/")
    return f"https://colab.research.google.com/github/{path}/blob/{branch}/notebooks/{notebook_name}"


def run_notebook(src: Path | str, dest: Path | str, *, profile: Profile = "auto", log_output: bool = False,
                 **parameters: Any) -> Path:
    """Execute ``src`` top to bottom in a fresh kernel with papermill, writing the result to ``dest``."""
    import papermill as pm

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    # figures must render inline even when the caller runs headless with MPLBACKEND=Agg
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    pm.execute_notebook(
        str(src), str(dest), parameters={"profile": profile, **parameters}, kernel_name="python3",
        cwd=str(Path(src).resolve().parent), log_output=log_output, progress_bar=False,
    )
    hide_injected_parameters(dest)
    return dest


def hide_injected_parameters(notebook: Path | str) -> None:
    """Tag papermill's injected "# Parameters" cell ``remove-cell`` so the book does not show it.

    The reader sees the chapter's own parameters cell; the values a run used stay in the .ipynb.
    """
    import nbformat

    nb = nbformat.read(str(notebook), as_version=4)
    changed = False
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
            changed = True
    if changed:
        nbformat.write(nb, str(notebook))


def run_all(profile: Profile, out_dir: Path | str, only: Iterable[str] = (), *, keep_going: bool = False,
            **parameters: Any) -> list[tuple[Path, float]]:
    """Execute every chapter (or those whose names contain one of ``only``) into ``out_dir``.

    ``keep_going``: a chapter that fails is reported in one line (its error) and the next one runs;
    a failed chapter's seconds are returned negative.
    """
    from papermill.exceptions import PapermillExecutionError

    results = []
    for src in notebook_paths():
        if only and not any(o in src.name for o in only):
            continue
        start = time.perf_counter()
        print(f"▶ {src.name} (profile={profile}{''.join(f', {k}={v}' for k, v in parameters.items())}) …", flush=True)
        try:
            run_notebook(src, Path(out_dir) / src.name, profile=profile, **parameters)
        except PapermillExecutionError as err:
            if not keep_going:
                raise
            results.append((src, -(time.perf_counter() - start)))
            print(f"  FAILED after {-results[-1][1]:.1f} s in cell {err.exec_count}: {err.ename}: {err.evalue}", flush=True)
            continue
        results.append((src, time.perf_counter() - start))
        print(f"  done in {results[-1][1]:.1f} s · {count_claims(Path(out_dir) / src.name)} claims checked", flush=True)
    return results


def count_claims(executed: Path | str) -> int:
    """How many of the chapter's figures :func:`course_lib.claims.claim` confirmed in an executed notebook."""
    import nbformat

    from .claims import is_confirmation

    nb = nbformat.read(str(executed), as_version=4)
    lines = (line for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", [])
             if out.get("output_type") == "stream" for line in out.get("text", "").splitlines())
    return sum(1 for line in lines if is_confirmation(line))


def over_budget(results: Sequence[tuple[Path, float]], max_seconds: float) -> list[str]:
    """The chapters that took longer than ``max_seconds`` (the per-chapter budget of a profile)."""
    return [f"{src.name} took {abs(seconds):.0f} s > {max_seconds:.0f} s" for src, seconds in results
            if abs(seconds) > max_seconds]


def parse_value(text: str) -> Any:
    """'3' → 3, '0.5' → 0.5, 'true' → True, anything else stays a string."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def run_grid(src: Path | str, grid: dict[str, list[Any]], out_dir: Path | str, profile: Profile) -> list[Path]:
    """Execute ``src`` once per combination in ``grid``; outputs are named after the values."""
    names = list(grid)
    outputs = []
    for values in itertools.product(*(grid[n] for n in names)):
        params = dict(zip(names, values))
        tag = "_".join(f"{n}-{v}" for n, v in params.items())
        dest = Path(out_dir) / f"{Path(src).stem}__{tag}.ipynb"
        print(f"▶ {Path(src).name} {params}", flush=True)
        outputs.append(run_notebook(src, dest, profile=profile, **params))
    return outputs


def collect_results(notebooks: Iterable[Path | str], param_names: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """One row per executed notebook and per set of labels: its parameters, the labels, the figures
    it recorded (:func:`course_lib.results.record`) and its seconds.

    ``param_names``: the parameter columns; default: the parameters whose values differ between runs.
    """
    import nbformat

    from course_lib.results import read_results

    runs = []
    for path in notebooks:
        meta = nbformat.read(str(path), as_version=4).metadata.get("papermill", {})
        chapter = Path(meta.get("input_path") or Path(path).name.split("__")[0]).stem
        params = {"chapter": chapter, **meta.get("parameters", {})}
        runs.append((params, meta.get("duration"), read_results(path)))
    if param_names is None:
        keys = list(dict.fromkeys(k for params, _, _ in runs for k in params))
        param_names = [k for k in keys if len({repr(p.get(k)) for p, _, _ in runs}) > 1] or ["chapter"]
    rows = []
    for params, seconds, figures in runs:
        by_labels: dict[str, dict[str, Any]] = {}
        for f in figures:
            row = by_labels.setdefault(repr(sorted(f["labels"].items())), {**f["labels"]})
            row[f["name"]] = f["value"]
        for extra in by_labels.values() or [{}]:
            rows.append({**{k: params.get(k) for k in param_names}, **extra,
                         "seconds": round(seconds, 1) if seconds is not None else None})
    return rows


def write_results(rows: Sequence[dict[str, Any]], csv_path: Path | str) -> str:
    """Write ``rows`` to a CSV file and return them as a printable table (columns: union of the keys)."""
    import csv

    from course_lib.results import text_table

    columns = list(dict.fromkeys(k for r in rows for k in r))
    columns = [c for c in columns if c != "seconds"] + (["seconds"] if "seconds" in columns else [])
    Path(csv_path).parent.mkdir(parents=True, exist_ok=True)
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return text_table(columns, [[_cell(r.get(c)) for c in columns] for r in rows])


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_lib.sweep", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_all = sub.add_parser("all", help="execute every chapter")
    p_all.add_argument("--only", nargs="*", default=[], help="substrings of notebook names to run")
    p_all.add_argument("--keep-going", action="store_true", help="run the other chapters after one fails")
    p_all.add_argument("--seed", type=int, default=None, help="the chapters' seed parameter (default: theirs, 0)")
    p_all.add_argument("--max-seconds", type=float, default=None,
                       help="fail if a chapter takes longer (the profile's per-chapter budget, e.g. 600 for cpu)")
    p_grid = sub.add_parser("grid", help="execute one notebook over a grid of parameters and print its results")
    p_grid.add_argument("notebook")
    p_grid.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "V1,V2,…"), default=[])
    p_table = sub.add_parser("table", help="print (and write to CSV) the recorded results of executed notebooks")
    p_table.add_argument("notebooks", nargs="+")
    p_table.add_argument("--csv", default=None, help="where to write the CSV (default: beside the first notebook)")
    for p in (p_all, p_grid):
        p.add_argument("--profile", default=os.environ.get("PROFILE", "auto"),
                       choices=["smoke", "cpu", "gpu", "auto"])
        p.add_argument("--out", default="build/notebooks" if p is p_all else "build/sweep")
    args = parser.parse_args(argv)
    if args.command == "all":
        if args.max_seconds is not None and args.max_seconds <= 0:
            parser.error(f"--max-seconds must be > 0, got {args.max_seconds}")
        seed = {} if args.seed is None else {"seed": args.seed}
        results = run_all(args.profile, args.out, args.only, keep_going=args.keep_going, **seed)
        print(f"executed {len(results)} notebooks into {args.out} in {sum(abs(t) for _, t in results):.0f} s")
        print(" · ".join(f"{src.name[:2]}: {abs(t):.0f} s" + (" FAILED" if t < 0 else "") for src, t in results))
        late = over_budget(results, args.max_seconds) if args.max_seconds else []
        for line in late:
            print(f"over budget: {line}", file=sys.stderr)
        return 1 if late or any(t < 0 for _, t in results) else 0
    if args.command == "grid":
        grid = {name: [parse_value(v) for v in values.split(",")] for name, values in args.param}
        if not grid:
            parser.error("grid needs at least one -p NAME V1,V2,…")
        outputs = run_grid(args.notebook, grid, args.out, args.profile)
        rows, csv_path = collect_results(outputs, list(grid)), Path(args.out) / f"{Path(args.notebook).stem}__results.csv"
    else:
        rows = collect_results(args.notebooks)
        csv_path = Path(args.csv) if args.csv else Path(args.notebooks[0]).parent / "results.csv"
    print(write_results(rows, csv_path))
    print(f"({len(rows)} rows, written to {csv_path})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
