"""Autoencoder-stage reuse (``stage_cache``): the same round-A sweep with the cache off and on, one run.

Both sweeps run the CPU smoke profile (dim32, 10 autoencoder + 30 operator epochs) on one local Ray,
FIFO, random search with the same seed: the same configurations in the same order (TPE's suggestions
would depend on which of two concurrent trials ends first).  Reported: Σ trial compute
(Σ ``time_this_iter_s``) of each, their ratio, the compute of the autoencoder iterations, how many
trials reused the stage, and whether every trial's val nRMSE is identical (it must be: a reused stage
is the stage the trial would have trained).

    python benchmarks/stage_cache.py                 # 6 trials, 2 at a time (≈ 3 min)
    python benchmarks/stage_cache.py --trials 4 --concurrent 1

Prints one JSON object and a one-line summary.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


def sweep(flag: bool, args: argparse.Namespace, root: Path) -> dict:
    from ups.reports.experiment import load_experiment
    from ups.tune.launcher import run_round

    name = f"stage_cache_{str(flag).lower()}"
    out = run_round("round_a", [f"name={name}", f"storage_path={root / 'runs'}", f"leaderboard={root / 'lb.csv'}",
                                f"report_dir={root / 'reports'}", "promotion.top_k=0", "write_report=false",
                                "wandb.enabled=false", "baselines=false", "verbose=0", "print_top=0",
                                "scheduler.name=fifo", "searcher.name=random", "gates.enabled=false", f"num_samples={args.trials}",
                                f"max_concurrent={args.concurrent}", f"stage_cache={str(flag).lower()}"])
    h = load_experiment(out.experiment_path).histories()
    h = h.sort_values(["trial_id", "training_iteration"])
    ae = h["stage"] == "autoencoder"
    cached = h.get("stage_cached")
    finals = [float(g["val_nrmse"].iloc[-1]) for _, g in h.groupby("trial_id", sort=True)]
    return {"compute_s": round(float(h["time_this_iter_s"].sum()), 1),
            "autoencoder_compute_s": round(float(h.loc[ae, "time_this_iter_s"].sum()), 1),
            "trials_reusing_stage": int(h.loc[cached.fillna(0) == 1, "trial_id"].nunique()) if cached is not None else 0,
            "final_val_nrmse": finals}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=6)
    ap.add_argument("--concurrent", type=int, default=2)
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    root = Path(args.out or tempfile.mkdtemp(prefix="stage_cache_"))
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        off = sweep(False, args, root)
        on = sweep(True, args, root)
    finally:
        ray.shutdown()
    out = {"trials": args.trials, "concurrent": args.concurrent, "off": off, "on": on,
           "compute_ratio_off_over_on": round(off["compute_s"] / on["compute_s"], 3),
           "identical_results": off["final_val_nrmse"] == on["final_val_nrmse"]}
    print(json.dumps(out))
    print(f"stage_cache: Σ trial compute {off['compute_s']:.0f} s without vs {on['compute_s']:.0f} s with the cache "
          f"({out['compute_ratio_off_over_on']:.2f}×; {on['trials_reusing_stage']}/{args.trials} trials reused the "
          f"autoencoder stage, its compute {off['autoencoder_compute_s']:.0f} → {on['autoencoder_compute_s']:.0f} s); "
          f"identical val nRMSE in every trial: {out['identical_results']}")


if __name__ == "__main__":
    main()
