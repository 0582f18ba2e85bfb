"""The command line every script in ``benchmarks/`` shares: flags, run conditions, table-or-JSON output.

Imported by the scripts next to it as ``from _cli import …`` (``python benchmarks/X.py`` puts this
folder on ``sys.path``; README, "Performance").

Each benchmark takes ``--profile``, ``--device``, ``--threads`` and ``--json``, validates them before
any work starts (a bad value is a clear error naming the flag), records the conditions of the run
(device, thread count, torch version, load average: CPU timings mean little without them) and
prints either a table or one JSON object.

    ap = benchmark_parser(__doc__)
    ap.add_argument(...)                     # the script's own flags
    args = ap.parse_args(argv)
    profile, device = apply_common(args)
    ...
    emit({**result, **run_conditions(device)}, args.json, print_table)
"""

from __future__ import annotations

import argparse
import json
import sys
import os
from typing import Any, Callable

import torch

from course_lib.guidance import check_guidance_scale
from course_lib.settings import DEVICES, PROFILES, check_choice, check_int, get_device, resolve_profile


def benchmark_parser(doc: str | None) -> argparse.ArgumentParser:
    """An ArgumentParser described by the first paragraph of ``doc``, with the four common flags."""
    ap = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    ap.add_argument("--profile", default="auto", help=f"one of {PROFILES}")
    ap.add_argument("--device", default="auto", help=f"one of {DEVICES}")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    return ap


def apply_common(args: argparse.Namespace, *, cpu_for_smoke: bool = False) -> tuple[str, torch.device]:
    """Validate the common flags, set torch's thread count, and return ``(profile, device)``.

    ``cpu_for_smoke``: in the smoke profile, ``--device auto`` means the CPU (seconds-long runs are
    not worth a GPU's start-up).
    """
    profile = resolve_profile(check_choice("--profile", args.profile, PROFILES))
    check_choice("--device", args.device, DEVICES)
    if args.threads is not None:
        torch.set_num_threads(check_int("--threads", args.threads, min_value=1))
    if cpu_for_smoke and profile == "smoke" and args.device == "auto":
        return profile, torch.device("cpu")
    return profile, get_device(args.device)


def device_name(device: torch.device) -> str:
    """"cpu", or "cuda (NVIDIA H100 …)" with the card's name."""
    return f"cuda ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else device.type


def load_average() -> float | None:
    """The 1-minute load average (None where the OS has none): how busy the machine was."""
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def run_conditions(device: torch.device) -> dict[str, Any]:
    """What a timing needs next to it: device, threads, torch version and load average."""
    return {"device": device_name(device), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "load_average": load_average()}


def emit(result: dict[str, Any], as_json: bool, print_table: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Print ``result`` as one JSON line (``--json``) or with ``print_table``; return it."""
    if as_json:
        print(json.dumps(result))
    else:
        print_table(result)
    return result


def run_main(main: Callable[[], Any]) -> None:
    """Run a benchmark's ``main()``; a ValueError (a bad option) prints ``error: …`` and exits with status 2."""
    try:
        main()
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


def parse_scales(text: str) -> list[float]:
    """"0,1,2.5" → [0.0, 1.0, 2.5]; ValueError naming --scales otherwise."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError as err:
        raise ValueError(f"--scales must be comma-separated numbers like 0,1,2,3,5,8, got {text!r}") from err
    if not values:
        raise ValueError(f"--scales must list at least one guidance scale, got {text!r}")
    return [check_guidance_scale(v, "--scales") for v in values]
