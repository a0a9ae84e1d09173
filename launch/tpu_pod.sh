#!/usr/bin/env bash
# Runs the trainer on every host of a Cloud TPU pod slice (jax.distributed initialises itself).
# Usage: launch/tpu_pod.sh TPU_NAME ZONE --config configs/bert_base.py --workdir gs://BUCKET/run
# The repository must already be at ~/bertjax on every host with its .venv (launch/venv.sh).
set -euo pipefail
if (($# < 2)); then
  echo "Usage: $0 TPU_NAME ZONE --config CONFIG --workdir gs://BUCKET/run [trainer flags]" >&2
  exit 2
fi
tpu="$1"; zone="$2"; shift 2
args="$(printf '%q ' "$@")"
gcloud compute tpus tpu-vm ssh "$tpu" --zone "$zone" --worker=all \
  --command="cd ~/bertjax && source .venv/bin/activate && python -m bertjax.train ${args}"
