"""Times bertjax's pretraining step (and optionally its peers) on whatever devices are present.

    python -m bertjax.bench --config configs/bert_mini.py --batch_size 32 --seq_len 128 [--steps 10]
        [--mode train|finetune|inference] [--peers auto|none|hf_flax,torch] [--rounds 5]
        [--config.model.dtype=bfloat16]

What is timed: for `train`, the full jitted pretraining update (forward, backward, AdamW with BERT's
settings, MLM + NSP loss) on a fixed synthetic batch with BERT's shapes (P = 15% of S rounded up to a
multiple of 4 masked positions, 20 at S=128 and 80 at S=512); `finetune` the same update for sequence
classification; `inference` the encoder + pooler forward pass. Each step is timed to completion after
`--warmup` steps (compilation excluded); step_ms is the median. A benchmark, not a test.

Side by side: bertjax, its peers and (on a CPU host) the matmul-rate probe take turns, `--steps /
--rounds` steps at a time, so every figure and ratio comes from the same minutes of a machine
whose speed may drift (a shared VM's other tenants, turbo). `--rounds 1` times them one after
another instead, each model built just before its turn (least memory at once, e.g. on one GPU).
On one GPU, JAX reserves 75% of its memory when it starts: with the PyTorch peer, run with e.g.
XLA_PYTHON_CLIENT_MEM_FRACTION=0.45 so that PyTorch has room (benchmarks/gpu_suite.sh does).

FLOPs: `bertjax.flops.step_flops` (matmul FLOPs only: 6 x matmul params per token plus attention,
the MLM head only at masked positions); for `inference` one third of that (no backward pass), for
`finetune` the MLM head replaced by a [D, 2] classifier. The same count is used for every peer, so
model_tflops_per_sec compares work done, not work wasted. mfu = model FLOP/s / peak FLOP/s of the
devices (bertjax.flops.peak_flops: a chip table; on CPU the fp32 rate of 1024^2 and 2048^2 matmuls,
median per size, best size, timed between the steps and stored as the host's rate).

The last line printed is JSON with tokens_per_sec, sequences_per_sec, step_ms, model_tflops_per_sec,
mfu, step_ms_min / step_ms_max (the spread of the timed steps: on a shared host a ratio of medians
means little when the spreads overlap), and per peer the same figures plus the ratio bertjax / peer.
"""

from __future__ import annotations

import json
import logging
import math
import platform
import statistics
import sys
from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from bertjax import bench_peers, flops as flops_lib, host, optim, sharding, steps
from bertjax import model as model_lib
from bertjax.tasks import base as tasks_base

def define_flags() -> dict:
    """Defines the command-line flags (at run time, so that importing this module for `run` does
    not clash with bertjax.train's --config in the same process). Returns the flag holders."""
    return {
        "config": config_flags.DEFINE_config_file("config", None, "Run config (configs/*.py).",
                                                  lock_config=False),
        "batch_size": flags.DEFINE_integer("batch_size", 32, "Global batch size."),
        "seq_len": flags.DEFINE_integer("seq_len", 128, "Sequence length."),
        "steps": flags.DEFINE_integer("steps", 10,
                                      "Timed steps (the median is reported; at least 5)."),
        "warmup": flags.DEFINE_integer("warmup", 2, "Untimed steps after compilation."),
        "mode": flags.DEFINE_enum("mode", "train", ["train", "finetune", "inference"],
                                  "What to time."),
        "peers": flags.DEFINE_string("peers", "auto", "auto (all installed) | none | comma list "
                                     "of hf_flax,torch. Peers run the train mode only."),
        "torch_threads": flags.DEFINE_integer("torch_threads", 0,
                                              "torch.set_num_threads (0: torch's default)."),
        "rounds": flags.DEFINE_integer(
            "rounds", 5, "Runners (bertjax, peers, CPU matmul probe) take turns over this many "
            "rounds of steps/rounds steps each; 1: one after another, one model in memory at a "
            "time."),
    }


def max_predictions(seq_len: int) -> int:
    """BERT's masked positions per sequence: 15% of S rounded up to a multiple of 4."""
    return 4 * math.ceil(0.15 * seq_len / 4)


# The shortest sequence with room for max_predictions(S) distinct masked positions between [CLS]
# and the final [SEP] (6: 4 positions in 1..4).
MIN_SEQ_LEN = next(s for s in range(3, 64) if max_predictions(s) <= s - 2)


PEERS = ("hf_flax", "torch")  # bertjax.bench_peers: Hugging Face Flax BERT, PyTorch BERT


def check_args(batch_size: int, seq_len: int, steps_n: int) -> None:
    """Raises ValueError naming the flag whose value the benchmark cannot run with."""
    check_shape(batch_size, seq_len)
    if steps_n < 5:
        raise ValueError(f"--steps must be at least 5 (the median of >= 5 steps), got {steps_n}")


def check_run(config: ml_collections.ConfigDict, mode: str, peers: list[str], rounds: int,
              warmup: int) -> None:
    """Raises ValueError naming the flag (or config field) the benchmark cannot run with: checked
    before any model is built, so that the command fails at once with a one-line message."""
    unknown = sorted(set(peers) - set(PEERS))
    if unknown:
        raise ValueError(f"--peers: unknown peer(s) {unknown}; known: {list(PEERS)}, or auto / "
                         "none")
    if rounds < 1:
        raise ValueError(f"--rounds must be at least 1, got {rounds}")
    if warmup < 0:
        raise ValueError(f"--warmup must be at least 0, got {warmup}")
    task = config.get("task", "pretraining")
    if mode == "train" and task != "pretraining":
        raise ValueError(
            f"--mode train times the pretraining (MLM + NSP) update, but --config is a {task!r} "
            "config: use a pretraining config (configs/bert_*.py), or --mode finetune / "
            "inference, which take only its model")
    model_lib.validate_config(config.model)  # a ConfigError (a ValueError) naming the field


def check_shape(batch_size: int, seq_len: int) -> None:
    """Raises ValueError unless synthetic_batch can build a batch of this shape."""
    if batch_size < 1:
        raise ValueError(f"--batch_size must be at least 1, got {batch_size}")
    if seq_len < MIN_SEQ_LEN:
        raise ValueError(f"--seq_len must be at least {MIN_SEQ_LEN} (room for "
                         f"{max_predictions(MIN_SEQ_LEN)} masked positions between [CLS] and "
                         f"[SEP]), got {seq_len}")


def synthetic_batch(cfg: ml_collections.ConfigDict, batch_size: int, seq_len: int,
                    num_predictions: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A full-length pretraining batch with BERT's shapes; masked positions distinct and sorted."""
    r = np.random.default_rng(seed)
    ids = r.integers(1000 if cfg.vocab_size > 2000 else 5, cfg.vocab_size,
                     (batch_size, seq_len)).astype(np.int32)
    half = seq_len // 2
    positions = np.sort(np.stack([r.choice(np.arange(1, seq_len - 1), num_predictions, False)
                                  for _ in range(batch_size)]), axis=1).astype(np.int32)
    return {
        "input_ids": ids,
        "token_type_ids": (np.arange(seq_len)[None] >= half).astype(np.int32).repeat(batch_size, 0),
        "attention_mask": np.ones((batch_size, seq_len), np.int32),
        "masked_lm_positions": positions,
        "masked_lm_ids": np.take_along_axis(ids, positions, 1),
        "masked_lm_weights": np.ones((batch_size, num_predictions), np.float32),
        "next_sentence_labels": r.integers(0, 2, batch_size).astype(np.int32),
        # Fine-tuning (sequence classification) keys.
        "labels": r.integers(0, 2, batch_size).astype(np.int32),
        "example_weight": np.ones(batch_size, np.float32),
        "example_id": np.arange(batch_size, dtype=np.int32),
    }


class TrainSetup(NamedTuple):
    step_fn: Any  # jitted (state, batch, key) -> (state, metrics), state donated
    state: steps.TrainState
    batch: dict  # on device, sharded along the batch axis
    base_key: jax.Array
    mesh: Any


def build_train(config: ml_collections.ConfigDict, batch: dict[str, np.ndarray]) -> TrainSetup:
    """The trainer's own jitted, sharded, donated update (steps.build_steps) and a fresh state."""
    task = tasks_base.get_task(config.task)(config)
    model = task.build_model(config.model)
    tx = optim.make_optimizer(config.optimizer, config.num_train_steps)
    keys = set(task.dummy_batch(2, batch["input_ids"].shape[1]))
    batch = {k: v for k, v in batch.items() if k in keys}
    mesh = sharding.make_mesh(config.mesh)
    rules = sharding.rules(config.mesh)
    init_key, base_key = jax.random.split(jax.random.key(config.seed))
    built = steps.build_steps(config, task, model, tx, mesh, rules, batch, init_key)
    state = built.init(init_key, batch)
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        # Lower inside the mesh/rules context so activation constraints resolve; later calls hit
        # the cache.
        built.train_step.lower(abstract_like(state), abstract_like(batch), base_key)
    return TrainSetup(built.train_step, state, jax.device_put(batch, built.batch_in), base_key,
                      mesh)


def abstract_like(tree):
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype,
                                                       sharding=getattr(x, "sharding", None)), tree)


def stepper(setup: TrainSetup) -> tuple[Callable[[], None], dict]:
    """A no-argument call that runs one update to completion, and the holder of the live state
    (the old state is donated at every call)."""
    holder = {"state": setup.state}

    def one():
        with jax.set_mesh(setup.mesh):
            holder["state"], metrics = setup.step_fn(holder["state"], setup.batch, setup.base_key)
        jax.block_until_ready(metrics)

    return one, holder


def _bertjax_train(config, batch) -> Callable[[], None]:
    setup = build_train(config, batch)
    one, _ = stepper(setup)

    def step():
        one()
        if setup.step_fn._cache_size() != 1:
            raise RuntimeError("the benchmarked step recompiled")

    return step


def _bertjax_inference(config, batch) -> Callable[[], None]:
    model = model_lib.BertModel(config.model)
    inputs = {k: jnp.asarray(batch[k]) for k in ("input_ids", "token_type_ids", "attention_mask")}
    params = jax.jit(lambda k: model_lib.unbox(model.init(k, **inputs)["params"]))(jax.random.key(0))
    fwd = jax.jit(lambda p, x: model.apply({"params": p}, **x)["pooled_output"])
    return lambda: fwd(params, inputs).block_until_ready()


def figures(times: list[float], batch_size: int, seq_len: int, flops: float,
            peak: float | None) -> dict[str, float]:
    step_s = statistics.median(times)
    return {
        "step_ms": 1e3 * step_s,
        "step_ms_min": 1e3 * min(times),  # the spread: on a shared host, read it before a ratio
        "step_ms_max": 1e3 * max(times),
        "sequences_per_sec": batch_size / step_s,
        "tokens_per_sec": batch_size * seq_len / step_s,
        "model_tflops_per_sec": flops / step_s / 1e12,
        "mfu": flops_lib.mfu(flops, 1.0 / step_s, peak),
    }


def run(config: ml_collections.ConfigDict, batch_size: int, seq_len: int, mode: str, steps_n: int,
        warmup: int, peers: list[str], torch_threads: int = 0, rounds: int = 5) -> dict:
    check_args(batch_size, seq_len, steps_n)
    check_run(config, mode, peers, rounds, warmup)
    config = ml_collections.ConfigDict(config.to_dict())
    p = max_predictions(seq_len)
    config.batch_size = batch_size
    config.data.max_seq_length = seq_len
    config.data.max_predictions_per_seq = p
    table_rows = config.model.max_position_embeddings
    if seq_len > table_rows:  # a longer sequence than the config's model reads: time it anyway
        logging.warning("--seq_len %d exceeds the config's model.max_position_embeddings=%d: "
                        "timing that model with a %d-row position table", seq_len, table_rows,
                        seq_len)
        config.model.max_position_embeddings = seq_len
    if mode == "finetune":  # binary sequence classification with the task's own defaults
        from bertjax.tasks import classification, finetune_data
        ft = finetune_data.run_config()
        for key in ("model", "optimizer", "mesh", "seed", "batch_size", "num_train_steps"):
            ft[key] = config[key]
        ft.task = "classification"
        ft.classification = classification.options()
        ft.data.labels = "neg,pos"
        ft.data.max_seq_length = seq_len
        config = ft
    model_lib.validate_config(config.model)
    batch = synthetic_batch(config.model, batch_size, seq_len, p, config.seed)
    peer_builders = {
        "hf_flax": lambda: bench_peers.hf_flax_train(config.model, batch, config.optimizer,
                                                     config.model.dtype),
        "torch": lambda: bench_peers.torch_train(config.model, batch, config.optimizer,
                                                 torch_threads, config.model.dtype),
    }
    flops = flops_lib.step_flops(config.model, batch_size, seq_len, p, True)
    d, v = config.model.hidden_size, config.model.vocab_size
    if mode in ("finetune", "inference"):  # no MLM head (the classifier's [D, 2] is negligible)
        flops -= 3.0 * batch_size * p * (2 * d * d + 2 * d * v)
    if mode == "inference":  # forward only: a third of a training step
        flops /= 3.0

    # Runners, timed in turns (bench_peers.time_interleaved): bertjax, the peers, and on a CPU
    # host the matmul probe whose rate is the MFU denominator, measured in the same minutes.
    runner = _bertjax_inference if mode == "inference" else _bertjax_train
    builders = {"bertjax": lambda: runner(config, batch)}
    for name in (peers if mode == "train" else []):
        builders[name] = peer_builders[name]
    on_cpu = jax.devices()[0].platform == "cpu"
    if on_cpu:
        for n in flops_lib.PROBE_SIZES:
            builders[f"matmul {n}"] = lambda n=n: flops_lib.matmul_probe(n)
    times = bench_peers.time_interleaved(builders, max(warmup, 1), steps_n, rounds)
    if on_cpu:
        peak = flops_lib.cpu_rate({n: times.pop(f"matmul {n}") for n in flops_lib.PROBE_SIZES})
        flops_lib.remember_cpu_flops(peak)
    else:
        peak = flops_lib.peak_flops(dtype=config.model.dtype)

    result = {"mode": mode, "batch_size": batch_size, "seq_len": seq_len, "masked_positions": p,
              "dtype": config.model.dtype, "devices": f"{jax.device_count()} x "
              f"{jax.devices()[0].device_kind}", "host": platform.processor() or platform.machine(),
              "flops_per_step": flops, "peak_flops": peak, "rounds": rounds,
              "max_position_embeddings": config.model.max_position_embeddings}
    result.update(figures(times.pop("bertjax"), batch_size, seq_len, flops, peak))
    result["peers"] = {}
    for name, peer_times in times.items():
        fig = figures(peer_times, batch_size, seq_len, flops, peak)
        fig["bertjax_speedup"] = result["tokens_per_sec"] / fig["tokens_per_sec"]
        result["peers"][name] = fig
    return result


def table(result: dict) -> str:
    rows = [("bertjax", result)] + list(result["peers"].items())
    lines = [f"{result['mode']}: batch {result['batch_size']} x seq {result['seq_len']} "
             f"({result['masked_positions']} masked), {result['dtype']}, {result['devices']}",
             f"{'':10} {'step ms':>9} {'min-max ms':>15} {'tokens/s':>11} {'seq/s':>9} "
             f"{'TFLOP/s':>8} {'MFU':>6} {'bertjax x':>9}"]
    for name, r in rows:
        ratio = f"{r['bertjax_speedup']:.2f}" if "bertjax_speedup" in r else ""
        spread = f"{r['step_ms_min']:.1f}-{r['step_ms_max']:.1f}"
        lines.append(f"{name:10} {r['step_ms']:9.1f} {spread:>15} {r['tokens_per_sec']:11.0f} "
                     f"{r['sequences_per_sec']:9.1f} {r['model_tflops_per_sec']:8.3f} "
                     f"{100 * r['mfu']:5.1f}% {ratio:>9}")
    return "\n".join(lines)


def main(argv, f: dict):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    host.tune_malloc()  # Before JAX starts its CPU client; see bertjax/host.py.
    try:  # before the peers' probe below, which imports torch and transformers
        check_args(f["batch_size"].value, f["seq_len"].value, f["steps"].value)
    except ValueError as e:
        raise app.UsageError(str(e)) from None
    if f["peers"].value == "none":
        peers = []
    elif f["peers"].value == "auto":
        avail = bench_peers.available()
        peers = [name for name, why in avail.items() if not why]
        for name, why in avail.items():
            if why:
                print(f"skipping peer {name}: {why}", file=sys.stderr)
    else:
        peers = [p.strip() for p in f["peers"].value.split(",") if p.strip()]
    try:
        check_run(f["config"].value, f["mode"].value, peers, f["rounds"].value,
                  f["warmup"].value)
    except ValueError as e:
        raise app.UsageError(str(e)) from None
    result = run(f["config"].value, f["batch_size"].value, f["seq_len"].value, f["mode"].value,
                 f["steps"].value, f["warmup"].value, peers, f["torch_threads"].value,
                 f["rounds"].value)
    print(table(result))
    print(json.dumps(result))


if __name__ == "__main__":
    _flags = define_flags()
    flags.mark_flags_as_required(["config"])
    app.run(lambda argv: main(argv, _flags))
