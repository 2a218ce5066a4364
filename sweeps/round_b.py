#!/usr/bin/env python
"""Round B — capacity (playbook 04): latent tokens, hidden dim, depths, heads.

    python sweeps/round_b.py                      # smoke sweep on a local Ray instance (CPU)
    python sweeps/round_b.py profile=full         # GPUs, 4 trials per GPU (resources.gpu=0.25)
    python sweeps/round_b.py num_samples=6 trial.stages.operator.epochs=3

Scaling rules stay consistent (search_spaces/round_b.yaml): heads and group size are snapped to
divisors of hidden_dim, decoder/diffusion widths follow the operator. The leaderboard's `params`
column shows what each capacity costs.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout

from ups.tune.cli import run_script  # noqa: E402
if TYPE_CHECKING:  # the launcher imports Ray and torch: main() imports it, after run_script's quick check
    from ups.tune.summary import SweepOutcome

ROUND = "round_b"
DEFAULTS = {
    "searcher": {"name": "optuna"},
    "scheduler": {"name": "asha"},
    "smoke": {"num_samples": 4},
    "full": {"num_samples": 12, "trial": ["stages.operator.epochs=20", "stages.diff_residual.epochs=8",
                                          "stages.consistency_distill.epochs=8"]},
}


def summarize(o: SweepOutcome) -> None:
    """Capacity vs accuracy: parameters against validation nRMSE, smallest model first."""
    df = o.rows[(o.rows["experiment"] == o.experiment) & (o.rows["kind"] == "trial")]
    for _, r in df.sort_values("params").iterrows():
        print(f"round B: params={r['params']!s:>8}  val_nrmse={r['val_nrmse']!s:<10.8}  {r['label']}")


def main(overrides: list[str]) -> int:
    from ups.tune.launcher import run_round  # Ray and torch: imported once the overrides passed the quick check

    o = run_round(ROUND, overrides, defaults=DEFAULTS)
    summarize(o)
    return o.exit_status


if __name__ == "__main__":
    raise SystemExit(run_script(main))
