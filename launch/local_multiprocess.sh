#!/usr/bin/env bash
# Runs N local processes of the trainer on this machine (CPU), coordinated on 127.0.0.1.
# Usage: launch/local_multiprocess.sh N --config configs/bert_tiny.py:smoke --workdir runs/mp [flags]
set -euo pipefail
n="$1"; shift
port="${PORT:-$((20000 + RANDOM % 20000))}"
pids=()
for ((i = 0; i < n; i++)); do
  JAX_PLATFORMS=cpu python -m bertjax.train --coordinator_address="127.0.0.1:${port}" \
    --num_processes="$n" --process_id="$i" "$@" &
  pids+=("$!")
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
exit "$status"
