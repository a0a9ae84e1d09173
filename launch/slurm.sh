#!/usr/bin/env bash
# SLURM batch script: one task per GPU; jax.distributed reads the SLURM environment.
# Usage: sbatch --nodes=2 --ntasks-per-node=8 --gpus-per-node=8 launch/slurm.sh \
#            --config configs/bert_base.py --workdir /shared/runs/bert_base
#SBATCH --job-name=bertjax
#SBATCH --time=72:00:00
set -euo pipefail
cd "${SLURM_SUBMIT_DIR:-.}"
source launch/venv.sh requirements.txt
srun --kill-on-bad-exit=1 python -m bertjax.train "$@"
