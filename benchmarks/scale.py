"""Scaling properties of the compiled pretraining step, from XLA's own view of it (no timing loops).

    python benchmarks/scale.py collectives [--devices 8] [--size tiny]
        Pure data parallelism vs FSDP vs data+fsdp+tensor on simulated CPU devices: the collectives
        in each compiled step's HLO, and the per-device bytes of parameters + optimizer state from
        the compiled step's memory analysis.
    python benchmarks/scale.py compile [--size base] [--layers 2,6,12,24]
        Compile time of the train step as the number of layers grows, with and without scan.
    python benchmarks/scale.py memory [--size base] [--seq_len 512] [--batches 8,16,32]
        [--budget_gib 141] [--dtype bfloat16]
        Peak device memory of the compiled step (XLA buffer assignment) per remat policy and batch,
        and the largest batch that fits in --budget_gib by linear extrapolation. Computed by the CPU
        compiler here: an estimate for accelerators, whose buffer assignment differs.

Each prints a markdown table (for docs/PERFORMANCE.md) and a final JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time


def _setup_devices(n: int) -> None:
    """Must run before jax is imported: n simulated CPU devices."""
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               f" --xla_force_host_platform_device_count={n}").strip()
    os.environ.setdefault("JAX_PLATFORMS", "cpu")


def _config(size: str, batch: int, seq: int, **model_overrides):
    from bertjax import bench, config as config_lib
    c = config_lib.pretraining(size)
    c.model.update(model_overrides)
    c.batch_size = batch
    c.data.max_seq_length = seq
    c.data.max_predictions_per_seq = bench.max_predictions(seq)
    c.num_train_steps = 1000
    c.optimizer.warmup_steps = 10
    return c


def _compile(config):
    """-> (compiled executable, seconds to lower + compile)."""
    import jax
    from bertjax import bench
    batch = bench.synthetic_batch(config.model, config.batch_size, config.data.max_seq_length,
                                  config.data.max_predictions_per_seq)
    setup = bench.build_train(config, batch)
    start = time.perf_counter()
    with jax.set_mesh(setup.mesh):
        compiled = setup.step_fn.lower(setup.state, setup.batch, setup.base_key).compile()
    return compiled, time.perf_counter() - start, setup


COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "collective-permute", "all-to-all")


def hlo_collectives(hlo_text: str) -> dict[str, int]:
    """Counts of each collective op in optimized HLO text (async start/done pairs count once)."""
    counts = {}
    for op in COLLECTIVES:
        n = len(re.findall(rf"= [^=]*? {op}(?:-start)?\(", hlo_text))
        if n:
            counts[op] = n
    return counts


def state_bytes_per_device(state) -> int:
    """Bytes of params + optimizer state held by device 0 (from each array's shard shape)."""
    import jax
    import numpy as np
    total = 0
    for leaf in jax.tree.leaves((state.params, state.opt_state)):
        shard = leaf.sharding.shard_shape(leaf.shape)
        total += int(np.prod(shard)) * leaf.dtype.itemsize
    return total


def collectives(args) -> dict:
    _setup_devices(args.devices)
    import jax
    meshes = {"data": dict(data=-1, fsdp=1, tensor=1),
              "fsdp": dict(data=1, fsdp=-1, tensor=1),
              "data+fsdp+tensor": dict(data=2, fsdp=2, tensor=2)}
    rows = {}
    for name, mesh in meshes.items():
        config = _config(args.size, args.batch, args.seq_len)
        config.mesh.update(mesh)
        compiled, seconds, setup = _compile(config)
        mem = compiled.memory_analysis()
        rows[name] = {
            "collectives": hlo_collectives(compiled.as_text()),
            "state_bytes_per_device": state_bytes_per_device(setup.state),
            "argument_bytes_per_device": int(mem.argument_size_in_bytes),
            "temp_bytes_per_device": int(mem.temp_size_in_bytes),
            "compile_s": seconds,
        }
    base = rows["data"]["state_bytes_per_device"]
    print(f"| mesh ({jax.device_count()} devices) | collectives in the step | params+opt per device "
          f"| vs data-parallel | compiled argument bytes |")
    print("| --- | --- | --- | --- | --- |")
    for name, r in rows.items():
        coll = ", ".join(f"{k} x{v}" for k, v in sorted(r["collectives"].items())) or "none"
        print(f"| {name} | {coll} | {r['state_bytes_per_device'] / 2**20:.2f} MiB | "
              f"{r['state_bytes_per_device'] / base:.3f} | "
              f"{r['argument_bytes_per_device'] / 2**20:.2f} MiB |")
    return {"size": args.size, "devices": jax.device_count(), "meshes": rows}


def compile_times(args) -> dict:
    _setup_devices(1)
    out = {}
    print("| layers | compile s (unrolled) | compile s (scan) |")
    print("| --- | --- | --- |")
    for layers in [int(x) for x in args.layers.split(",")]:
        row = {}
        for scan in (False, True):
            config = _config(args.size, args.batch, args.seq_len, num_layers=layers,
                             scan_layers=scan)
            _, seconds, _ = _compile(config)
            row["scan" if scan else "unrolled"] = seconds
        out[layers] = row
        print(f"| {layers} | {row['unrolled']:.1f} | {row['scan']:.1f} |", flush=True)
    return {"size": args.size, "seq_len": args.seq_len, "batch": args.batch, "compile_s": out}


def memory(args) -> dict:
    _setup_devices(1)
    batches = [int(x) for x in args.batches.split(",")]
    budget = args.budget_gib * 2**30
    out = {}
    print(f"| remat | " + " | ".join(f"peak GiB @ batch {b}" for b in batches) +
          f" | GiB per example | largest batch in {args.budget_gib:g} GiB |")
    print("|" + " --- |" * (len(batches) + 3))
    for policy in args.policies.split(","):
        peaks = []
        for b in batches:
            config = _config(args.size, b, args.seq_len, remat_policy=policy, scan_layers=True,
                             dtype=args.dtype)
            compiled, _, _ = _compile(config)
            m = compiled.memory_analysis()
            peaks.append(m.argument_size_in_bytes + m.output_size_in_bytes
                         - m.alias_size_in_bytes + m.temp_size_in_bytes)
        per_example = (peaks[-1] - peaks[0]) / (batches[-1] - batches[0])
        fixed = peaks[0] - per_example * batches[0]
        largest = int((budget - fixed) // per_example) if per_example > 0 else None
        out[policy] = {"peak_bytes": dict(zip(batches, peaks)), "bytes_per_example": per_example,
                       "largest_batch": largest}
        print(f"| {policy} | " + " | ".join(f"{p / 2**30:.2f}" for p in peaks) +
              f" | {per_example / 2**30:.3f} | {largest} |", flush=True)
    return {"size": args.size, "seq_len": args.seq_len, "dtype": args.dtype,
            "budget_gib": args.budget_gib, "remat": out}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("collectives")
    c.add_argument("--devices", type=int, default=8)
    c.add_argument("--size", default="tiny")
    c.add_argument("--batch", type=int, default=32)
    c.add_argument("--seq_len", type=int, default=128)
    t = sub.add_parser("compile")
    t.add_argument("--size", default="base")
    t.add_argument("--layers", default="2,6,12,24")
    t.add_argument("--batch", type=int, default=8)
    t.add_argument("--seq_len", type=int, default=128)
    m = sub.add_parser("memory")
    m.add_argument("--size", default="base")
    m.add_argument("--seq_len", type=int, default=512)
    m.add_argument("--batches", default="8,16")
    m.add_argument("--policies", default="none,dots,full")
    m.add_argument("--dtype", default="bfloat16")
    m.add_argument("--budget_gib", type=float, default=141.0)
    args = p.parse_args(argv)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    result = {"collectives": collectives, "compile": compile_times, "memory": memory}[args.cmd](args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
