#!/usr/bin/env bash
# Runs N local processes of the trainer on this machine (CPU), coordinated on 127.0.0.1.
# Usage: launch/local_multiprocess.sh N --config configs/bert_tiny.py:smoke --workdir runs/mp [flags]
# SIGTERM or SIGINT to this script reaches every trainer as SIGTERM (they checkpoint and exit
# cleanly), and the script waits for them. TERM, not INT: a terminal's Ctrl-C also reaches the
# trainers directly, and a second SIGINT would kill them without their checkpoint.
set -euo pipefail
usage="Usage: $0 N --config CONFIG --workdir DIR [trainer flags]  (N: number of processes, >= 1)"
if [[ $# -lt 1 || ! "$1" =~ ^[0-9]+$ ]] || ((10#$1 < 1)); then
  echo "${usage}" >&2; exit 2
fi
n=$((10#$1)); shift
port="${PORT:-$((20000 + RANDOM % 20000))}"
pids=()
signalled=0
forward() { signalled=1; kill -TERM "${pids[@]}" 2>/dev/null || true; }
trap forward TERM INT
for ((i = 0; i < n; i++)); do
  JAX_PLATFORMS=cpu python -m bertjax.train --coordinator_address="127.0.0.1:${port}" \
    --num_processes="$n" --process_id="$i" "$@" &
  pids+=("$!")
done
status=0
for pid in "${pids[@]}"; do
  rc=0
  while :; do
    signalled=0
    code=0; wait "$pid" || code=$?
    ((code != 127)) || break  # already collected by the wait that a signal interrupted
    rc=$code
    ((signalled)) || break  # else a trapped signal cut this wait short: wait again
  done
  ((rc == 0)) || status=$rc
done
exit "$status"
