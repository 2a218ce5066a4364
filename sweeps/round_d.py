#!/usr/bin/env python
"""Round D — architecture refinement (playbook 04, phase 4): from the champion, stochastic depth, TTC reward
weights searched harder, a larger latent (dim 64, tokens 64), and longer training on GPUs (40+15+15 epochs).

    python sweeps/round_d.py                           # needs reports/champion.json (any round that crowns one first: round_a, round_b, aggressive)
    python sweeps/round_d.py profile=full              # 40+15+15 epochs on GPUs (resources.gpu=0.5)
    python sweeps/round_d.py champion=path/to/champion.json num_samples=8

The playbook runs it when the aggressive round "shows promise but is not quite there". The champion's config
is the base and the first trial (the round's reference for the small-eval gates); search_spaces/round_d.yaml
says what moves. Without a champion the script stops at once and says what to run.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout

from ups.tune.cli import run_script  # noqa: E402

ROUND = "round_d"
DEFAULTS = {
    "searcher": {"name": "optuna"},
    "scheduler": {"name": "asha"},
    "smoke": {"num_samples": 4},
    "full": {"num_samples": 16, "resources": {"gpu": 0.5},  # dim 64 × 64 tokens: two trials per GPU
             "trial": ["stages.operator.epochs=40", "stages.diff_residual.epochs=15",
                       "stages.consistency_distill.epochs=15"]},
}


def main(overrides: list[str]) -> int:
    from ups.tune.launcher import run_round  # Ray and torch: imported once the overrides passed the quick check

    o = run_round(ROUND, overrides, defaults=DEFAULTS, around_champion=True)
    if o.champion:  # after the promotion; the one the round started from is printed before its trials
        new = o.champion.get("experiment") == o.experiment
        print(f"round D: champion now {o.champion['run_id']} (score {o.champion['score']:.4g}"
              f"{', crowned by this round' if new else ', not from this round'})")
    return o.exit_status


if __name__ == "__main__":
    raise SystemExit(run_script(main))
