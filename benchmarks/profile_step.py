"""Where a pretraining step's time goes: step time, then XLA's per-op times grouped by model part.

    python benchmarks/profile_step.py --config configs/bert_mini.py --batch_size 32 --seq_len 128 \
        --config.model.dtype=float32 [--steps 10] [--profile] [--matmuls] [--ab_options JSON]

Prints the median and minimum of --steps timed train steps (the bench's own jitted, donated
update, after 3 warm-up steps). With --profile, traces two more steps with jax.profiler and sums
the per-op (thunk) times by the model part named in each op's HLO metadata (fwd/bwd x qkv,
attention products, intermediate, output, layer norms, dropout, mlm, ...). Ops run concurrently
on a multi-threaded CPU backend, so parts can add up to more than the step; compare a part
between two versions rather than parts with each other. With --matmuls, times single matmuls of
the config's shapes (forward, and both weight-gradient forms) to show the backend's rate on them.
Run two versions of the code back to back to A/B a change: shared machines drift by +-15%.
With --ab_options '{"xla_cpu_prefer_vector_width": 512}', compiles the same step a second time
with those XLA compiler options and times the two in interleaved rounds in this one process (after
checking that both give the same metrics), which is how XLA flags are A/B'd on a noisy host.
"""

from __future__ import annotations

import collections
import glob
import gzip
import json
import os
import re
import shutil
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from absl import app, flags  # noqa: E402

from bertjax import bench, bench_peers, host, sharding  # noqa: E402

# --config, --batch_size, --seq_len and --steps are bertjax.bench's flags.
_BENCH_FLAGS = bench.define_flags()
_CONFIG, _BATCH, _SEQ, _STEPS = (_BENCH_FLAGS[k] for k in ("config", "batch_size", "seq_len",
                                                           "steps"))
_PROFILE = flags.DEFINE_bool("profile", False, "Per-op times by model part (jax.profiler).")
_MATMULS = flags.DEFINE_bool("matmuls", False, "Time single matmuls of the config's shapes.")
_AB_OPTIONS = flags.DEFINE_string("ab_options", None, "A JSON dict of XLA compiler options: "
                                  "time the step compiled with them against the default.")
_SAVE_TO = flags.DEFINE_string("save_to", None, "With --profile: also keep the compiled HLO "
                               "(hlo.txt.gz) and the perfetto trace here, to study elsewhere.")

PARTS = ("dropout", "attention_norm", "output_norm", "layer_norm", "qkv", "BTNH,BSNH",
         "BNTS,BSNH", "attention/out", "intermediate", "output/", "erf", "mlm", "/nsp/", "pooler",
         "embeddings")


def part_of(op_name: str) -> str:
    side = "bwd" if "transpose(" in op_name else "fwd"
    if "jvp" not in op_name:
        return "update/metrics"
    for part in PARTS:
        if part.lower() in op_name.lower():
            return f"{side} {part.strip('/')}"
    return f"{side} other"


def trace_file(trace_dir: str) -> str:
    """The perfetto trace jax.profiler.trace(create_perfetto_trace=True) wrote under trace_dir."""
    return glob.glob(f"{trace_dir}/**/*perfetto_trace.json.gz", recursive=True)[0]


def op_table(hlo: str, trace_dir: str, steps: int) -> list[tuple[str, float]]:
    names = {}
    for line in hlo.splitlines():
        m = re.match(r'\s*(?:ROOT )?%?([\w.\-]+) = .*op_name="([^"]+)"', line)
        if m:
            names[m.group(1)] = m.group(2)
    with gzip.open(trace_file(trace_dir)) as f:
        trace = json.load(f)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    parts = collections.Counter()
    for e in events:
        if e.get("ph") == "X" and e.get("name") in names:
            parts[part_of(names[e["name"]])] += e.get("dur", 0) / 1e3 / steps
    return parts.most_common()


def time_matmuls(cfg, tokens: int) -> None:
    d, f = cfg.model.hidden_size, cfg.model.intermediate_size

    def rate(fn, *args, flops):
        times = bench_peers.time_steps(lambda: fn(*args).block_until_ready(), 1, 20)
        return flops / statistics.median(times) / 1e9

    for k, n in ((d, 3 * d), (d, f), (f, d)):
        x, w, g = jnp.ones((tokens, k)), jnp.ones((k, n)), jnp.ones((tokens, n))
        flops = 2 * tokens * k * n
        print(f"[{tokens},{k}] @ [{k},{n}]: forward "
              f"{rate(jax.jit(lambda a, b: a @ b), x, w, flops=flops):.0f}, input grad "
              f"{rate(jax.jit(lambda a, b: a @ b.T), g, w, flops=flops):.0f}, weight grad x^T g "
              f"{rate(jax.jit(lambda a, b: a.T @ b), x, g, flops=flops):.0f}, g^T x "
              f"{rate(jax.jit(lambda a, b: b.T @ a), x, g, flops=flops):.0f} GFLOP/s (median of 20)")


def ab_options(setup, state, cfg, options: dict, rounds: int = 6, per_round: int = 3) -> None:
    """Interleaved timing of the step compiled with and without `options`, each from a copy of
    the live `state` (setup.state itself was donated by the first step)."""
    runners = {}
    for name, opts in (("default", {}), ("options", options)):
        with jax.set_mesh(setup.mesh), nn.logical_axis_rules(sharding.rules(cfg.mesh)):
            compiled = setup.step_fn.lower(bench.abstract_like(state), setup.batch,
                                           setup.base_key).compile(compiler_options=opts)
        holder = {"state": jax.tree.map(lambda x: x.copy(), state)}

        def one(compiled=compiled, holder=holder):
            with jax.set_mesh(setup.mesh):
                holder["state"], metrics = compiled(holder["state"], setup.batch, setup.base_key)
            return jax.block_until_ready(metrics)

        runners[name] = (one, one())
    same = jax.tree.map(lambda a, b: bool(jnp.allclose(a, b, rtol=1e-4, atol=1e-5)),
                        runners["default"][1], runners["options"][1])
    print(f"first-step metrics equal (rtol 1e-4): {all(jax.tree.leaves(same))}")
    times = {name: [] for name in runners}
    for r in range(rounds):
        for name in (list(runners) if r % 2 == 0 else list(runners)[::-1]):
            times[name] += bench_peers.time_steps(runners[name][0], 0, per_round)
    for name, ts in times.items():
        print(f"{name}: median {1e3 * statistics.median(ts):.0f} ms, min {1e3 * min(ts):.0f} ms "
              f"({len(ts)} steps)")


def main(argv):
    del argv
    host.tune_malloc()  # As bertjax.bench does: before JAX starts its CPU client.
    cfg = _CONFIG.value
    b, s = _BATCH.value, _SEQ.value
    try:
        bench.check_shape(b, s)
    except ValueError as e:
        raise app.UsageError(str(e)) from None
    p = bench.max_predictions(s)
    cfg.batch_size, cfg.data.max_seq_length, cfg.data.max_predictions_per_seq = b, s, p
    setup = bench.build_train(cfg, bench.synthetic_batch(cfg.model, b, s, p, cfg.seed))
    one, holder = bench.stepper(setup)
    times = [1e3 * t for t in bench_peers.time_steps(one, 3, _STEPS.value)]
    print(f"step ms: median {statistics.median(times):.0f}, min {min(times):.0f} "
          f"({_STEPS.value} steps, batch {b} x {s}, {cfg.model.dtype})")
    if _PROFILE.value:
        with jax.set_mesh(setup.mesh), nn.logical_axis_rules(sharding.rules(cfg.mesh)):
            hlo = setup.step_fn.lower(holder["state"], setup.batch,
                                      setup.base_key).compile().as_text()
        with tempfile.TemporaryDirectory() as trace_dir:
            with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
                one()
                one()
            for part, ms in op_table(hlo, trace_dir, 2):
                print(f"{ms:9.1f} ms  {part}")
            if _SAVE_TO.value:
                os.makedirs(_SAVE_TO.value, exist_ok=True)
                with gzip.open(os.path.join(_SAVE_TO.value, "hlo.txt.gz"), "wt") as f:
                    f.write(hlo)
                shutil.copy(trace_file(trace_dir), os.path.join(_SAVE_TO.value, "trace.json.gz"))
    if _MATMULS.value:
        time_matmuls(cfg, b * s)
    if _AB_OPTIONS.value:
        ab_options(setup, holder["state"], cfg, json.loads(_AB_OPTIONS.value))


if __name__ == "__main__":
    flags.mark_flags_as_required(["config"])
    app.run(main)
