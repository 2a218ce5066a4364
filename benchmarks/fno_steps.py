"""The smoke sweep's FNO baseline at a fixed number of optimiser steps: its test nRMSE and training time.

    python benchmarks/fno_steps.py                     # 60, 120 and 200 steps, seed 0, 2 threads
    python benchmarks/fno_steps.py --steps 120 --seed 1

The smoke profile trains its FNO baseline for ``fno_steps`` steps (``ups/conf/sweep/smoke.yaml``), not for a
wall-clock budget: a budget gave as many steps as the machine's load allowed (58 steps and nRMSE 0.42 on a
busy machine, against 0.27 idle) and the baseline cache kept whichever ran first.  This prints, for each step
count, the FNO's test nRMSE on the smoke data (round A's trial data, the sweep's own cache) and its training
seconds, as JSON, then a one-line summary.  The step counts are reproducible bit for bit; the seconds are
this machine's.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, nargs="+", default=[60, 120, 200])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from ups.baselines import run_baselines
    from ups.tune.launcher import load_data
    from ups.tune.prepare import prepare

    with tempfile.TemporaryDirectory(prefix="fno_steps_") as storage:  # nothing is written there: prepare checks it
        p = prepare("round_a", [f"storage_path={storage}"])  # the smoke profile's data
    data = load_data(p.base)
    out = []
    for steps in args.steps:
        t0 = time.perf_counter()
        row = run_baselines(data, fno_budget_s=0, seed=args.seed, cache_dir=None, fno_steps=steps, names=("fno",))[0]
        out.append({"steps": steps, "nrmse": row["nrmse"], "train_s": round(row["train_s"], 2),
                    "wall_s": round(time.perf_counter() - t0, 2), "best_step": row["details"]["best_step"],
                    "seed": args.seed, "threads": args.threads, "data_hash": str(data.data_hash)[:12]})
        print(json.dumps(out[-1]), flush=True)
    print("summary: FNO baseline on the smoke data: "
          + ", ".join(f"{r['steps']} steps nRMSE {r['nrmse']:.3f} in {r['train_s']:.0f} s" for r in out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
