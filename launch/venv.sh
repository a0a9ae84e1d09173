#!/usr/bin/env bash
# Creates (or refreshes) the project virtualenv at .venv from a requirements file; idempotent.
# Usage: source launch/venv.sh requirements-dev.txt
set -euo pipefail
req="${1:-requirements.txt}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${BERTJAX_VENV:-$root/.venv}"
python="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
fi
stamp="$venv/.installed-$(cat "$root/$req" "$root"/requirements*.txt | sha1sum | cut -c1-12)-$(basename "$req")"
if [ ! -f "$stamp" ]; then
  "$venv/bin/python" -m pip install -q -r "$root/$req"
  touch "$stamp"
fi
export PATH="$venv/bin:$PATH"
