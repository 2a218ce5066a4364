#!/usr/bin/env python
"""Dims map (playbook 01): latent dims 8, 16, 24, 32, 64 — each trained once and evaluated with and
without TTC. Question: "does TTC help small models more?"

    python sweeps/dims.py                                      # smoke grid on a local Ray instance
    python sweeps/dims.py profile=full                         # GPUs
    python sweeps/dims.py space=search_spaces/my_dims.yaml     # another grid

A grid over latent.dim (scaling rules derived per dim), no early stopping (FIFO): every dim runs to
its final evaluation, which reports nrmse (no TTC) and nrmse_ttc (TTC) on the same test samples.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout

from ups.tune.cli import run_script  # noqa: E402
from ups.tune.launcher import SweepOutcome, run_round  # noqa: E402

ROUND = "dims"
DEFAULTS = {
    "searcher": {"name": "grid"},
    "scheduler": {"name": "fifo"},
    "num_samples": 1,  # one pass over the grid
    # a map of every dim: no trial is cut short by the in-flight physics gates (NaN still ends a
    # trial); the small-eval gates are still applied and shown on the leaderboard
    "gates": {"enabled": False},
}


def ttc_gain_table(o: SweepOutcome) -> list[dict]:
    df = o.rows[(o.rows["experiment"] == o.experiment) & (o.rows["kind"] == "trial")]
    out = []
    for _, r in df.iterrows():
        dim = json.loads(r["sampled_json"] or "{}").get("latent.dim")
        gain = (1 - r["nrmse_ttc"] / r["nrmse"]) if r["nrmse"] == r["nrmse"] and r["nrmse"] else float("nan")
        out.append({"dim": dim, "params": r["params"], "nrmse": r["nrmse"], "nrmse_ttc": r["nrmse_ttc"],
                    "ttc_gain": gain})
    return sorted(out, key=lambda d: d["dim"] or 0)


def main(overrides: list[str]) -> int:
    for row in ttc_gain_table(run_round(ROUND, overrides, defaults=DEFAULTS)):
        print(f"dims: dim={row['dim']:>3}  params={row['params']!s:>8}  nrmse={row['nrmse']:.4g}  "
              f"nrmse_ttc={row['nrmse_ttc']:.4g}  TTC gain={row['ttc_gain']:+.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_script(main))
