#!/usr/bin/env bash
# Installs the runtime requirements into .venv and pretrains BERT-tiny on the built-in corpus (CPU).
# Extra arguments go to the trainer, e.g. --config.num_train_steps=100. Re-running resumes the run.
set -euo pipefail
cd "$(dirname "$0")/.."
source launch/venv.sh requirements.txt
export TF_CPP_MIN_LOG_LEVEL=3
exec python -m bertjax.train --config configs/bert_tiny.py --workdir "${WORKDIR:-runs/quickstart}" "$@"
