#!/usr/bin/env python
"""Round A — optimizer & schedule (playbook 04): lr, warmup ratio, EMA decay, Adam betas.

    python sweeps/round_a.py                      # smoke sweep on a local Ray instance (CPU, ~3-4 min)
    python sweeps/round_a.py profile=full         # seed-scale sweep on GPUs, 4 trials per GPU
    python sweeps/round_a.py num_samples=8 max_concurrent=4 stages.operator.epochs=4
    python sweeps/round_a.py storage_path=s3://bucket/sweeps resume=true

Distributions: search_spaces/round_a.yaml (the playbook's mid-range config is the first trial, the
round's own baseline). ASHA on val_nrmse + Optuna TPE; physics gates; leaderboard; promotion.
Every key and the override rules: docs/SWEEPS.md.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout

from ups.tune.cli import run_script  # noqa: E402
if TYPE_CHECKING:  # the launcher imports Ray and torch: main() imports it, after run_script's quick check
    from ups.tune.summary import SweepOutcome

ROUND = "round_a"
DEFAULTS = {
    "searcher": {"name": "optuna"},
    "scheduler": {"name": "asha"},
    "smoke": {"num_samples": 4},
    # playbook: 20+8+8 epochs with betas (0.9, 0.95) as the starting point
    "full": {"num_samples": 16, "trial": ["stages.operator.epochs=20", "stages.diff_residual.epochs=8",
                                          "stages.consistency_distill.epochs=8"]},
}


def summarize(o: SweepOutcome) -> None:
    """Which learning rate won: lr against the trial's best validation nRMSE."""
    df = o.rows[(o.rows["experiment"] == o.experiment) & (o.rows["kind"] == "trial")]
    if df.empty:
        return
    import json

    import pandas as pd

    from ups.leaderboard import trial_standing

    def trained_lr(row: Any) -> Any:  # searched (sampled_json), else the base config's (a space=… without lr)
        lr = json.loads(row["sampled_json"] or "{}").get("stages.operator.optimizer.lr")
        if lr is None:
            cfg = json.loads(row["config_json"] or "{}")
            lr = cfg.get("stages", {}).get("operator", {}).get("optimizer", {}).get("lr")
        return lr

    scored = df.dropna(subset=["val_nrmse"])
    if scored.empty:
        print(f"round A: no trial reported a val_nrmse ({len(df)} trial(s); the leaderboard's stop_reason says why)")
        return
    # a trial that errored or a physics gate stopped is the best only when no sound one reported
    standing = pd.Series([trial_standing(r) for r in scored.to_dict("records")], index=scored.index)
    best = scored.assign(_standing=standing).sort_values(["_standing", "val_nrmse"], kind="stable").iloc[0]
    lr = trained_lr(best.fillna(""))
    at = f" at lr={lr:.3g}" if isinstance(lr, (int, float)) else ""
    broken = f", {best['status']}: {best['stop_reason']}" if best["_standing"] else ""
    print(f"round A: best val_nrmse {best['val_nrmse']:.4g}{at} ({best['run_id']}{broken})")


def main(overrides: list[str]) -> int:
    from ups.tune.launcher import run_round  # Ray and torch: imported once the overrides passed the quick check

    o = run_round(ROUND, overrides, defaults=DEFAULTS)
    summarize(o)
    return o.exit_status


if __name__ == "__main__":
    raise SystemExit(run_script(main))
