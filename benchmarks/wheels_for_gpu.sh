#!/usr/bin/env bash
# Fetches, on this machine, the wheels benchmarks/gpu_suite.sh installs on a lent GPU machine
# (Python 3.12 there; its image has jax/jaxlib for CUDA but lacks these). .whl/ is gitignored and
# travels with the device tool's `carry: [".whl"]` (~17 MB of its 64 MiB).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
get() {
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any -d .whl "$@"
}
# Pins from requirements*.txt where the project has them.
get ml-collections==1.1.0 grain==0.2.18 array-record==0.8.6 flax==0.12.8 optax==0.2.8 \
  transformers==4.57.6
# transformers 4.57 refuses the machine's tokenizers 0.23.2 and huggingface_hub 1.x
get tokenizers==0.22.1 huggingface_hub==0.36.0
get portpicker==1.6.0  # grain needs it; not in the project's pins (grain pulls it in here)
ls -l .whl
