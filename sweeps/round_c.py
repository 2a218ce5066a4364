#!/usr/bin/env python
"""Round C — local Bayesian optimisation (playbook 04): Optuna TPE within ±20 % of the current
champion's lr, grad clip, TTC threshold and lambda_spectral.

    python sweeps/round_c.py                           # needs reports/champion.json (run round_a first)
    python sweeps/round_c.py champion=path/to/champion.json num_samples=12

The champion's config is the base (and first trial); search_spaces/round_c.yaml says which keys move
and by how much (`dist: around`). Without a champion the script stops at once and says what to run.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout

from ups.tune.cli import run_script  # noqa: E402

ROUND = "round_c"
DEFAULTS = {
    "searcher": {"name": "optuna", "n_startup_trials": 2},
    "scheduler": {"name": "asha"},
    "smoke": {"num_samples": 4},
    "full": {"num_samples": 12},
}


def main(overrides: list[str]) -> int:
    from ups.tune.launcher import run_round  # Ray and torch: imported once the overrides passed the quick check

    o = run_round(ROUND, overrides, defaults=DEFAULTS, around_champion=True)
    if o.champion:  # after the promotion; the one the round started from is printed before its trials
        new = o.champion.get("experiment") == o.experiment
        print(f"round C: champion now {o.champion['run_id']} (score {o.champion['score']:.4g}"
              f"{', crowned by this round' if new else ', not from this round'})")
    return o.exit_status


if __name__ == "__main__":
    raise SystemExit(run_script(main))
