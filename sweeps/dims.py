#!/usr/bin/env python
"""Dims map (playbook 01): latent dims 8, 16, 24, 32, 64 — each trained and evaluated with and without
TTC. Question: "does TTC help small models more?"

    python sweeps/dims.py                                      # smoke grid on a local Ray instance, one seed
    python sweeps/dims.py num_samples=15                       # every dim with training seeds 0, 1, 2
    python sweeps/dims.py profile=full                         # GPUs, 3 training seeds per dim
    python sweeps/dims.py space=search_spaces/my_dims.yaml     # another grid

A grid over latent.dim (scaling rules derived per dim), no early stopping (FIFO): every dim runs to
its final evaluation, which reports nrmse (no TTC) and nrmse_ttc (TTC) on the same test samples. The script
ends with the answer: the slope of TTC's gain against log2(dim), with a paired bootstrap interval over the
test samples (``ups.ttc_gain``), printed and written to ``ttc_by_dim_<experiment>.json`` next to the report.
``num_samples`` beyond one pass of the grid trains every dim again with the next training seeds; the
verdict then averages each dim's seeds and its interval holds the seed-to-seed spread too (the playbook's
"smaller models benefit more" came from one run per dim).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout

from ups.tune.cli import run_script  # noqa: E402
from ups.config import ConfigError  # noqa: E402
if TYPE_CHECKING:  # the launcher imports Ray and torch: main() imports it, after run_script's quick check
    from ups.tune.prepare import Prepared
from ups.ttc_gain import dims_rows, ttc_verdict, verdict_file, write_verdict  # noqa: E402

ROUND = "dims"
DEFAULTS = {
    "searcher": {"name": "grid"},
    "scheduler": {"name": "fifo"},
    "num_samples": 1,  # one pass over the grid
    # a map of every dim: no trial is cut short by the in-flight physics gates (NaN still ends a
    # trial); the small-eval gates are still applied and shown on the leaderboard
    "gates": {"enabled": False},
    # the answer needs an interval over test samples (ups.ttc_gain): the smoke profile scores its whole test
    # split (25 trajectories)
    # the question is about models, not about one training run each: 3 training seeds per dim on GPUs
    "full": {"num_samples": 15},
}


def needs_ttc(p: Prepared) -> None:
    """The round compares every dim with and without TTC: with TTC off there is nothing to compare."""
    if not p.base.ttc.enabled:
        raise ConfigError("dims: ttc.enabled=false, but this round evaluates every dim with and without TTC to answer "
                          "'does TTC help small models more?'; with TTC off both figures are the plain rollout's. "
                          "Fix: drop ttc.enabled=false, or sweep the dims without TTC as another round "
                          "(python sweeps/round_b.py space=search_spaces/dims.yaml searcher.name=grid "
                          "scheduler.name=fifo num_samples=1 ttc.enabled=false)")


def main(overrides: list[str]) -> int:
    from ups.tune.launcher import run_round  # Ray and torch: imported once the overrides passed the quick check

    o = run_round(ROUND, overrides, defaults=DEFAULTS, check=needs_ttc)
    verdict = ttc_verdict(dims_rows(o.rows, o.experiment))
    for d in verdict.dims:
        ci = f"  [{d.lo:+.1%} … {d.hi:+.1%}]" if d.n_samples else "  (no per-sample figures)"
        seeds = f"  ({d.seeds} seeds)" if d.seeds > 1 else ""
        print(f"dims: dim={d.dim:>3}  params={d.params!s:>8}  nrmse={d.nrmse:.4g}  nrmse_ttc={d.nrmse_ttc:.4g}  "
              f"round trip={d.recon_nrmse:.4g}  TTC gain={d.gain:+.1%}{ci}{seeds}")
    print(f"dims: does TTC help small models more? {verdict.text}")
    out = write_verdict(verdict_file(o.report.parent if o.report else o.leaderboard.parent, o.experiment), verdict)
    print(f"dims: verdict written to {out}")
    return o.exit_status


if __name__ == "__main__":
    raise SystemExit(run_script(main))
