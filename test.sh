#!/usr/bin/env bash
# Test command: set up .venv (idempotent, plus headless Chromium when root) and run the suite.
set -euo pipefail
cd "$(dirname "$0")"
UPS_WITH_BROWSER=1 bash scripts/setup.sh
export WANDB_MODE=${WANDB_MODE:-offline} WANDB_SILENT=true RAY_DEDUP_LOGS=0
# two workers: the tests on the session's Ray cluster in one, the rest beside them (tests/conftest.py)
exec .venv/bin/python -m pytest -q -n 2 --dist loadgroup "$@"
