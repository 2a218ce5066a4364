#!/usr/bin/env python
"""Aggressive (playbook 04): capacity + longer training + stronger TTC, promoted to full-eval even if
its small-eval is marginal (promotion.force=true), as the playbook prescribes.

    python sweeps/aggressive.py                   # smoke sweep on a local Ray instance (CPU)
    python sweeps/aggressive.py profile=full      # 30+12+12 epochs on GPUs (resources.gpu=0.5)

The post-mortem (playbook 03) found a 15× cost for ~1.5 % gain: the leaderboard's wall_clock and
est_cost columns sit next to nRMSE so the trade-off is visible.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout

from ups.tune.cli import run_script  # noqa: E402
if TYPE_CHECKING:  # the launcher imports Ray and torch: main() imports it, after run_script's quick check
    from ups.tune.summary import SweepOutcome

ROUND = "aggressive"
DEFAULTS = {
    "searcher": {"name": "optuna"},
    "scheduler": {"name": "asha"},
    "promotion": {"force": True, "top_k": 1},
    "smoke": {"num_samples": 3, "trial": ["stages.operator.epochs=4"]},
    "full": {"num_samples": 8, "resources": {"gpu": 0.5},
             "trial": ["stages.operator.epochs=30", "stages.diff_residual.epochs=12",
                       "stages.consistency_distill.epochs=12", "ttc.steps=2",
                       "ttc.max_evaluations=161"]},  # 16 candidates × 5 beams × horizon 2 + 1: untrimmed
}


def summarize(o: SweepOutcome) -> None:
    """Cost vs gain: wall clock and est. cost next to the val nRMSE of each trial, with TTC (what TPE was told: the
    round searches TTC keys) and without, best first (trials ASHA stopped, which have no TTC figure, last)."""
    df = o.rows[(o.rows["experiment"] == o.experiment) & (o.rows["kind"] == "trial")]
    key = "val_nrmse_ttc" if "val_nrmse_ttc" in df else "val_nrmse"
    for _, r in df.sort_values([key, "val_nrmse"], na_position="last").iterrows():
        ttc = r.get("val_nrmse_ttc")
        print(f"aggressive: val_nrmse_ttc={ttc!s:<10.8} val_nrmse={r['val_nrmse']!s:<10.8} wall={r['wall_clock']}s "
              f"cost=${r['est_cost']}  {r['stop_reason']}")


def main(overrides: list[str]) -> int:
    from ups.tune.launcher import run_round  # Ray and torch: imported once the overrides passed the quick check

    o = run_round(ROUND, overrides, defaults=DEFAULTS)
    summarize(o)
    return o.exit_status


if __name__ == "__main__":
    raise SystemExit(run_script(main))
