#!/usr/bin/env bash
# Installs the test requirements into .venv and runs the whole suite (offline, CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
source launch/venv.sh requirements-dev.txt
export JAX_PLATFORMS=cpu HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TF_CPP_MIN_LOG_LEVEL=3
exec python -m pytest -q -n 2 "$@"
