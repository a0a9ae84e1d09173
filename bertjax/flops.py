"""FLOPs of a BERT pretraining step, device peaks, and model FLOPs utilisation (MFU).

Only matmuls are counted (2 FLOPs per multiply-add); embeddings lookups, LayerNorm, softmax,
activations and the optimizer are ignored. With D hidden, F feed-forward width, L layers, V vocab,
S sequence length, P masked positions per sequence (the MLM head runs only there), per sequence:

  encoder   S * L * (2*3*D*D  [QKV] + 2*D*D [attention out] + 2*2*D*F [feed-forward])
  attention S * L * (2*S*D [Q K^T] + 2*S*D [probabilities x V])
  pooler    2*D*D + NSP 2*D*2
  MLM head  P * (2*D*D [transform] + 2*D*V [tied decoder])

A training step costs 3x the forward pass (the backward pass costs twice the forward), so

  step_flops = 3 * batch_size * (encoder + attention + pooler + MLM head)

i.e. the familiar 6 * (parameters in matmuls) per token plus the attention terms.
MFU = step_flops * steps_per_second / (peak FLOP/s per device * number of devices).
"""

from __future__ import annotations

import json
import os
import statistics
from typing import Callable

import jax
import jax.numpy as jnp

# Dense peak FLOP/s per device: (bf16, fp32). For fp32 we give the rate JAX's default matmul
# precision reaches: TF32 on NVIDIA GPUs, a single bf16 pass on TPUs.
PEAK_FLOPS = {
    "TPU v4": (275e12, 275e12),
    "TPU v5 lite": (197e12, 197e12),  # v5e
    "TPU v5e": (197e12, 197e12),
    "TPU v5p": (459e12, 459e12),
    "TPU v5": (459e12, 459e12),  # v5p reports itself as "TPU v5"
    "TPU v6 lite": (918e12, 918e12),  # v6e (Trillium)
    "TPU v6e": (918e12, 918e12),
    "A100": (312e12, 156e12),
    "H100": (989e12, 494e12),
    "H200": (989e12, 494e12),
}
_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "bertjax", "cpu_flops.json")


def step_flops(model_cfg, batch_size: int, seq_len: int, max_predictions: int,
               next_sentence: bool = True) -> float:
    """Matmul FLOPs of one training step on a global batch (see the module docstring)."""
    d, f, n_layers, v = (model_cfg.hidden_size, model_cfg.intermediate_size,
                         model_cfg.num_layers, model_cfg.vocab_size)
    s, p = seq_len, max_predictions
    encoder = s * n_layers * (6 * d * d + 2 * d * d + 4 * d * f)
    attention = s * n_layers * 4 * s * d
    pooler = 2 * d * d + (4 * d if next_sentence else 0)
    mlm = p * (2 * d * d + 2 * d * v)
    return 3.0 * batch_size * (encoder + attention + pooler + mlm)


PROBE_SIZES = (1024, 2048)  # square fp32 matmuls whose rate stands for the CPU's


def matmul_probe(n: int) -> Callable[[], None]:
    """A no-argument call running one n x n float32 matmul (2 n^3 FLOPs) on the CPU backend."""
    a = jnp.ones((n, n), jnp.float32, device=jax.devices("cpu")[0])
    mm = jax.jit(lambda x: x @ x)
    return lambda: mm(a).block_until_ready()


def cpu_rate(times: dict[int, list[float]]) -> float:
    """{probe size n: seconds per matmul} -> FLOP/s: the best over sizes of the median rate.

    The median, not the best repeat: a single best catches turbo bursts the CPU cannot hold
    through a training step."""
    return max(2 * n**3 / statistics.median(t) for n, t in times.items())


def _cpu_key() -> str:
    return f"{jax.devices('cpu')[0].device_kind}/{os.cpu_count()}"


def _read_cache() -> dict:
    try:
        with open(_CACHE) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def remember_cpu_flops(rate: float) -> None:
    """Stores a measured rate as this host's (see measured_cpu_flops); best effort."""
    cached = _read_cache()
    cached[_cpu_key()] = rate
    try:
        os.makedirs(os.path.dirname(_CACHE), exist_ok=True)
        with open(_CACHE, "w") as f:
            json.dump(cached, f)
    except OSError:
        pass


def measured_cpu_flops() -> float:
    """Sustained FP32 matmul FLOP/s of this host's CPU backend (XLA, all its cores).

    Cached on disk per CPU model and core count; `python -m bertjax.bench` re-measures it between
    its own steps and stores it, so that a figure measured while the machine was busy does not
    linger in later MFU numbers.
    """
    cached = _read_cache()
    if _cpu_key() in cached:
        return float(cached[_cpu_key()])
    from bertjax.bench_peers import time_steps  # the benchmarks' timer (no jax import there)
    rate = cpu_rate({n: time_steps(matmul_probe(n), 1, 7) for n in PROBE_SIZES})
    remember_cpu_flops(rate)
    return rate


def peak_flops(devices=None, dtype: str = "float32") -> float | None:
    """Total peak FLOP/s of `devices` (default: all) or None for an unknown chip.

    CPU devices share one host's cores: their total is the measured rate, whatever their count.
    """
    devices = jax.devices() if devices is None else devices
    kind = devices[0].device_kind
    if devices[0].platform == "cpu":
        return measured_cpu_flops()
    column = 0 if dtype in ("bfloat16", "float16") else 1
    for name, peaks in sorted(PEAK_FLOPS.items(), key=lambda kv: -len(kv[0])):
        if name.lower() in kind.lower():
            return peaks[column] * len(devices)
    return None


def mfu(flops_per_step: float, steps_per_sec: float, total_peak: float | None) -> float:
    """Model FLOPs utilisation in [0, 1]; 0 when the peak is unknown."""
    if not total_peak:
        return 0.0
    return flops_per_step * steps_per_sec / total_peak
