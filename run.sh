#!/usr/bin/env bash
# Main job: set up .venv (idempotent) and run the local smoke sweep (round A) on a local Ray
# instance; it ends by printing the leaderboard and the HTML report path. Extra args are
# Hydra-style overrides, e.g. `bash run.sh num_samples=6`.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh
exec .venv/bin/python sweeps/round_a.py "$@"
