"""Rerun chapters with papermill: one notebook, all of them, or a grid of parameters.

    python -m course_lib.sweep all --profile cpu --out build/notebooks
    python -m course_lib.sweep grid notebooks/02_noise_schedules.ipynb -p schedule linear,cosine

``make course`` and ``make sweep`` call this. papermill injects the parameters after the cell
tagged ``parameters``; the notebook's validation cell then checks them.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

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
    return dest


def run_all(profile: Profile, out_dir: Path | str, only: Iterable[str] = ()) -> list[tuple[Path, float]]:
    """Execute every chapter (or those whose names contain one of ``only``) into ``out_dir``."""
    results = []
    for src in notebook_paths():
        if only and not any(o in src.name for o in only):
            continue
        start = time.perf_counter()
        print(f"▶ {src.name} (profile={profile}) …", flush=True)
        run_notebook(src, Path(out_dir) / src.name, profile=profile)
        results.append((src, time.perf_counter() - start))
        print(f"  done in {results[-1][1]:.1f} s", flush=True)
    return results


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_lib.sweep", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_all = sub.add_parser("all", help="execute every chapter")
    p_all.add_argument("--only", nargs="*", default=[], help="substrings of notebook names to run")
    p_grid = sub.add_parser("grid", help="execute one notebook over a grid of parameters")
    p_grid.add_argument("notebook")
    p_grid.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "V1,V2,…"), default=[])
    for p in (p_all, p_grid):
        p.add_argument("--profile", default=os.environ.get("PROFILE", "auto"),
                       choices=["smoke", "cpu", "gpu", "auto"])
        p.add_argument("--out", default="build/notebooks" if p is p_all else "build/sweep")
    args = parser.parse_args(argv)
    if args.command == "all":
        results = run_all(args.profile, args.out, args.only)
        print(f"executed {len(results)} notebooks into {args.out} in {sum(t for _, t in results):.0f} s")
    else:
        grid = {name: [parse_value(v) for v in values.split(",")] for name, values in args.param}
        run_grid(args.notebook, grid, args.out, args.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
