"""Data pipeline throughput on one CPU core: preparation and loading (read + collate + mask).

A benchmark, not a test. Run pinned to one core, with the Rust tokenizer single-threaded:

  RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false taskset -c 0 \
      python benchmarks/data_bench.py --cache_dir /tmp/bertjax_bench

Preparation is timed on a fresh cache (vocabulary training is timed separately); loading is timed on
the main thread (prefetch_batches=0, worker_count=0) after a warm-up, over --batches batches.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root

from bertjax import config  # noqa: E402
from bertjax.data import pipeline  # noqa: E402
from bertjax.data import prepare as prepare_lib  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", default="builtin")
    p.add_argument("--cache_dir", default="")
    p.add_argument("--max_seq_length", type=int, default=128)
    p.add_argument("--batch_size", type=int, default=256)
    p.add_argument("--batches", type=int, default=200)
    p.add_argument("--vocab_size", type=int, default=30522)
    p.add_argument("--whole_word_masking", action="store_true")
    p.add_argument("--no_nsp", action="store_true")
    p.add_argument("--packing", action="store_true")
    args = p.parse_args()
    root = args.cache_dir or tempfile.mkdtemp(prefix="bertjax_bench_")
    cfg = config.data(corpus=args.corpus, cache_dir=root, max_seq_length=args.max_seq_length,
                      vocab_size=args.vocab_size, whole_word_masking=args.whole_word_masking,
                      next_sentence=not args.no_nsp, packing=args.packing, prefetch_batches=0,
                      max_predictions_per_seq=round(args.max_seq_length * 0.15 + 0.5))

    t = time.perf_counter()
    prepare_lib.resolve_tokenizer(cfg, root)  # trains (or reuses) the vocabulary: timed apart
    t_vocab = time.perf_counter() - t
    for name in os.listdir(root):  # always time a fresh preparation
        if name.startswith("shards-"):
            shutil.rmtree(os.path.join(root, name))
    t, c = time.perf_counter(), time.process_time()
    prepared = prepare_lib.prepare(cfg, None)
    t_prep, c_prep = time.perf_counter() - t, time.process_time() - c
    meta = prepared.meta
    n_prep = meta["num_train"] + meta["num_eval"]
    print(f"vocabulary: {t_vocab:.1f} s")
    print(f"preparation: {n_prep} examples ({meta['stats']['tokens']} tokens, "
          f"{meta['stats']['documents']} documents) in {t_prep:.2f} s wall = {n_prep / t_prep:,.0f} "
          f"examples/s; {c_prep:.2f} CPU s = {n_prep / c_prep:,.0f} examples per CPU-second")

    data = pipeline.PretrainingData(cfg, prepared, seed=0, global_batch_size=args.batch_size,
                                    process_index=0, process_count=1)
    it = data.train_iterator()
    for _ in range(5):
        next(it)
    t, c = time.perf_counter(), time.process_time()
    for _ in range(args.batches):
        batch = next(it)
    t_load, c_load = time.perf_counter() - t, time.process_time() - c
    n = args.batches * args.batch_size
    fill = batch["attention_mask"].mean()
    # CPU seconds of this process: on a shared machine, wall time also counts other programs' turns.
    print(f"loading: {n} examples in {t_load:.2f} s wall = {n / t_load:,.0f} examples/s; "
          f"{c_load:.2f} CPU s = {n / c_load:,.0f} examples per CPU-second "
          f"(S={args.max_seq_length}, B={args.batch_size}, wwm={args.whole_word_masking}, "
          f"nsp={not args.no_nsp}, packing={args.packing}, token fill {fill:.2f})")
    if not args.cache_dir:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
