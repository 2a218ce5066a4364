"""Checkpoint retention: Ray's ``num_to_keep`` against ``ups.tune.retention.CheckpointRetention``, one run.

The same Tune experiment twice on one local Ray: ``--trials`` trials, each reporting ``--iterations``
checkpoints ``--sleep`` s apart, keeping ``--keep``. After every controller step a ``RetentionAudit``
reads the experiment state on storage (what ``resume=true`` would restore from) and counts the
checkpoints it names that no longer exist: each such step is a moment where a killed driver would
resume that trial from nothing. Also reported: the most checkpoint folders one trial held during the
run, what is left at the end, and the wall clock of each (the ratio is the callback's overhead).

    python benchmarks/checkpoint_retention.py                       # ≈ 30 s
    python benchmarks/checkpoint_retention.py --sync-period auto    # Tune's default state-sync period

Prints one JSON object and a one-line summary.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def trainable(iterations: int, sleep: float):
    def fn(config):
        from ray import tune
        from ray.tune import Checkpoint

        for i in range(iterations):
            time.sleep(sleep)
            with tempfile.TemporaryDirectory() as d:  # report persists it to storage before returning
                Path(d, "state.bin").write_bytes(os.urandom(64 * 1024))
                tune.report({"i": i, "loss": 1.0 / (i + 1)}, checkpoint=Checkpoint.from_directory(d))

    return fn


def experiment(mode: str, args: argparse.Namespace, root: Path) -> dict:
    from ray import tune
    from ray.tune import CheckpointConfig, RunConfig

    from ups.tune.retention import CheckpointRetention, RetentionAudit

    audit = RetentionAudit()
    callbacks = [audit] + ([CheckpointRetention(args.keep, period_s=args.prune_period)] if mode == "ups" else [])
    keep = None if mode == "ups" else args.keep
    t0 = time.perf_counter()
    tune.Tuner(trainable(args.iterations, args.sleep),
               tune_config=tune.TuneConfig(num_samples=args.trials, metric="loss", mode="min"),
               run_config=RunConfig(name=mode, storage_path=str(root), verbose=0, callbacks=callbacks,
                                    checkpoint_config=CheckpointConfig(num_to_keep=keep))).fit()
    wall = time.perf_counter() - t0
    left = sorted(len(list(d.glob("checkpoint_*"))) for d in (root / mode).iterdir() if d.is_dir())
    return {"steps": audit.steps, "named_checks": audit.named, "named_but_deleted": len(audit.missing),
            "distinct_deleted_named": len(set(audit.missing)), "most_held_per_trial": audit.most_held,
            "left_per_trial": left, "wall_s": round(wall, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=2)
    ap.add_argument("--iterations", type=int, default=40)
    ap.add_argument("--sleep", type=float, default=0.02)
    ap.add_argument("--keep", type=int, default=2)
    ap.add_argument("--prune-period", type=float, default=0.0, help="CheckpointRetention period_s (sweeps: 5)")
    ap.add_argument("--sync-period", default="1", help="TUNE_GLOBAL_CHECKPOINT_S: seconds, or auto (≥ 10 s)")
    args = ap.parse_args()
    os.environ["TUNE_GLOBAL_CHECKPOINT_S"] = args.sync_period
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        with tempfile.TemporaryDirectory(prefix="retention_") as root:
            warm = argparse.Namespace(**{**vars(args), "trials": 1, "iterations": 2})
            experiment("warmup", warm, Path(root))  # the first Tuner pays for worker start-up: not compared
            res = {m: experiment(m, args, Path(root)) for m in ("ray", "ups")}
    finally:
        ray.shutdown()
    out = {"config": vars(args), **res, "wall_ratio_ups_over_ray": round(res["ups"]["wall_s"] / res["ray"]["wall_s"], 3)}
    print(json.dumps(out, indent=1))
    r, u = res["ray"], res["ups"]
    print(f"[checkpoint_retention] state on storage named a deleted checkpoint {r['named_but_deleted']}× in "
          f"{r['steps']} steps with Ray's num_to_keep={args.keep}, {u['named_but_deleted']}× in {u['steps']} with "
          f"CheckpointRetention; most held per trial {r['most_held_per_trial']} vs {u['most_held_per_trial']}, "
          f"left {r['left_per_trial']} vs {u['left_per_trial']}; wall ×{out['wall_ratio_ups_over_ray']}")


if __name__ == "__main__":
    main()
