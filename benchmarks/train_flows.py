"""Train chapter 12's ``cpu`` flow and reflow digits models and write them, with their cards, to course_lib/weights.

Rerunnable by anyone, CPU only (about 15 minutes on the 2-core reference machine, 2 threads):

    python benchmarks/train_flows.py                    # flow, then reflow from it
    python benchmarks/train_flows.py --only reflow      # reflow from the flow already in --run-root

Each model trains with the ``cpu`` recipe of ``course_lib.pretrained`` through the same functions the
chapter calls with ``retrain=True`` (checkpointed under ``--run-root``, so an interrupted run resumes),
then is measured and written by ``course_lib.registry.write_shipped`` (records ``FLOW``, ``REFLOW``): the card keeps the recipe
(``flow_identity`` / ``reflow_identity``, checked on every load), the training seconds and the scores:
FID (1,000 samples against the 1,000 test digits, seed 0, as ``benchmarks/samplers.py``) at a few
network-call counts — flow: Euler-10 and SDE-DPM-Solver++(2M)-10; reflow: Euler-1 and DPM-Solver++(2M)-4.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from course_lib.data import load_mnist5000
from course_lib.pretrained.flows import FLOW, REFLOW, flow_digits_model, reflow_digits_model
from course_lib.registry import write_shipped
from course_lib.settings import WEIGHTS_DIR, check_choice, check_int
from course_lib.steps_table import FlowRowConfig, flow_steps_vs_quality

PROFILE = "cpu"
SCORED = {"flow": (("euler", 10), ("dpmpp_2m_sde", 10)), "reflow": (("euler", 1), ("dpmpp_2m", 4))}


def scores(name: str, model: torch.nn.Module) -> dict[str, float]:
    rows = flow_steps_vs_quality({name: model.eval()}, load_mnist5000("test", size=32).images,
                                 [FlowRowConfig(name, s, n) for s, n in SCORED[name]], 1000, progress=False)
    return {f"fid {r['label']}": round(r["fid"], 3) for r in rows}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="all", help="flow, reflow or all (in that order)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--run-root", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "flows-train")
    parser.add_argument("--out-dir", type=Path, default=WEIGHTS_DIR)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    only = check_choice("only", args.only, ("flow", "reflow", "all"))
    torch.set_num_threads(check_int("threads", args.threads, min_value=1))
    tic, result = time.perf_counter(), {}
    flow_dir, reflow_dir = args.run_root / "flow-digits-cpu", args.run_root / "reflow-digits-cpu"
    if only in ("flow", "all"):
        flow, info = flow_digits_model(PROFILE, run_dir=flow_dir, progress=not args.json)
        result["flow"] = scores("flow", flow)
        write_shipped(FLOW, flow, info, result["flow"], profile=PROFILE, weights_dir=args.out_dir)
    if only in ("reflow", "all"):
        reflow, info = reflow_digits_model(PROFILE, run_dir=reflow_dir, base_run_dir=flow_dir, progress=not args.json)
        result["reflow"] = scores("reflow", reflow)
        write_shipped(REFLOW, reflow, info, result["reflow"], profile=PROFILE, weights_dir=args.out_dir)
    result["wall_seconds"] = round(time.perf_counter() - tic, 1)
    print(json.dumps(result, indent=1) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))
    return result


if __name__ == "__main__":
    main()
