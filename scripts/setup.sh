#!/usr/bin/env bash
# Idempotent set-up: creates/reuses .venv and installs the pinned package with all extras.
# Re-installs only when pyproject.toml changed (stamp file). Needs nothing but python3.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
stamp_want=$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PY --version)"
  $PY -m venv .venv
fi
if [ "$(cat .venv/.ups-stamp 2>/dev/null)" != "$stamp_want" ]; then
  echo "[setup] installing ups-sweeps (torch==2.13.0 CPU wheel, ray==2.60.0, optuna, wandb, hydra) …"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[all]'
  echo "$stamp_want" > .venv/.ups-stamp
else
  echo "[setup] .venv up to date"
fi
if [ "${UPS_WITH_BROWSER:-0}" = 1 ] && ! command -v chromium >/dev/null 2>&1; then
  # headless Chromium + chromedriver for the HTML report screenshot test (Debian packages)
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "[setup] installing chromium + chromium-driver (apt) for report rendering tests …"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
      || echo "[setup] WARNING: could not install chromium; the report screenshot test will be skipped"
  fi
fi
