"""host.tune_malloc: XLA:CPU's per-execution buffers stop page-faulting once it has run."""

import os
import platform
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Runs a jitted function with a 64 MiB temporary buffer (over glibc's 32 MiB mmap ceiling) and
# prints whether tune_malloc applied and the minor page faults per call in steady state: the
# fewest over several windows of calls (the heap may still grow during the first windows, while
# buffers freed by one of XLA's threads find their final places).
_PROBE = """
import resource, sys
from bertjax import host
applied = host.tune_malloc() if sys.argv[1] == "tune" else None
import jax, jax.numpy as jnp
a, b = jnp.ones((16384, 64)), jnp.ones((64, 1024))
f = jax.jit(lambda a, b: jnp.sum(jnp.tanh(a @ b), axis=0) + jnp.max(a @ b, axis=0))
assert f.lower(a, b).compile().memory_analysis().temp_size_in_bytes >= 64 * 2**20
windows = []
for _ in range(8):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        f(a, b).block_until_ready()
    windows.append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5)
print(applied, min(windows))
"""

glibc_linux = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")


def _probe(mode: str, **env_overrides) -> tuple[str, float]:
    # The trainer's own compiler settings (not the suite's -O0), and no user malloc settings.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "XLA_FLAGS"}
    env.update(PYTHONPATH=ROOT, JAX_PLATFORMS="cpu", **env_overrides)
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], env=env, capture_output=True,
                         text=True, timeout=300, check=True).stdout.split()
    return out[-2], float(out[-1])


@glibc_linux
def test_tuned_process_reuses_xla_temp_buffers_without_page_faults():
    pages = 64 * 2**20 // os.sysconf("SC_PAGE_SIZE")
    _, faults_plain = _probe("plain")
    if faults_plain < pages / 2:
        pytest.skip(f"this libc already reuses the buffer ({faults_plain:.0f} faults per call)")
    applied, faults_tuned = _probe("tune")
    assert applied == "True"
    assert faults_tuned < pages / 50, (faults_plain, faults_tuned)


@glibc_linux
@pytest.mark.parametrize("env", [{"MALLOC_ARENA_MAX": "4"}, {"JAX_PLATFORMS": "cuda"}],
                         ids=["user-malloc-settings", "accelerator-platform"])
def test_left_alone_when_the_user_chose_or_an_accelerator_runs(env):
    code = "from bertjax import host; print(host.tune_malloc())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True,
                         env={**os.environ, "PYTHONPATH": ROOT, **env}).stdout.split()
    assert out[-1] == "False"
