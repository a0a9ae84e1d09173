"""A fine-tuning run end to end on CPU: time to the first update and the steady throughput.

A benchmark, not a test. It fine-tunes a sentence classifier (configs/classify.py) from scratch on
a synthetic CSV through the trainer itself (tokenizer, in-memory examples, grain iterator,
tracing, compiling, updates) and prints one JSON line:

  python benchmarks/finetune_bench.py --size tiny --steps 1     # startup: trace + compile
  python benchmarks/finetune_bench.py --size mini --steps 60    # throughput at BERT-mini size

wall_s is the whole train_and_evaluate call; trace_s and compile_s sum JAX's own jaxpr-tracing
and XLA-compile durations over every program of the run (jax.monitoring events);
tokens_per_sec is what the trainer logs per window of --log_every steps (padding included).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root

import jax  # noqa: E402

from bertjax import train  # noqa: E402
from configs import classify as classify_config  # noqa: E402

WORDS = "the a big red house sat on mat ran to went in where is".split()
SIZES = {  # L / H / A / F, sequence length
    "tiny": dict(num_layers=3, hidden_size=30, num_heads=3, intermediate_size=37, seq=12),
    "mini": dict(num_layers=4, hidden_size=256, num_heads=4, intermediate_size=1024, seq=128),
}


def write_data(out: str, rows: int, words_per_row: int) -> tuple[str, str]:
    """A vocab.txt of WORDS + the two label words, and a CSV where 'cat' means pos."""
    vocab = os.path.join(out, "vocab")
    os.makedirs(vocab)
    with open(os.path.join(vocab, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, "cat", "dog"]))
    path = os.path.join(out, "train.csv")
    with open(path, "w", encoding="utf-8") as f:
        f.write("text,label\n")
        for i in range(rows):
            label = "pos" if i % 2 else "neg"
            words = [WORDS[(i * 7 + j) % len(WORDS)] for j in range(words_per_row - 1)]
            f.write(" ".join(words + ["cat" if label == "pos" else "dog"]) + f",{label}\n")
    return vocab, path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=sorted(SIZES), default="tiny")
    p.add_argument("--steps", type=int, default=1)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--log_every", type=int, default=10)
    args = p.parse_args()

    durations = collections.Counter()
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, secs, **_: durations.update({event: secs}))

    size = dict(SIZES[args.size])
    seq = size.pop("seq")
    out = tempfile.mkdtemp(prefix="bertjax-finetune-bench-")
    vocab, csv = write_data(out, rows=4000, words_per_row=seq)
    cfg = classify_config.get_config("single")
    cfg.model.update(vocab_size=len(WORDS) + 7, max_position_embeddings=seq, **size)
    cfg.data.update(tokenizer=vocab, train=csv, validation="", max_seq_length=seq)
    cfg.update(batch_size=args.batch_size, num_train_steps=args.steps, num_eval_batches=0,
               eval_every_steps=0, log_every_steps=args.log_every,
               checkpoint_every_steps=max(args.steps, 1), progress_bar=False)
    cfg.optimizer.warmup_steps = 0
    workdir = os.path.join(out, "run")
    start = time.perf_counter()
    train.train_and_evaluate(cfg, workdir)
    wall = time.perf_counter() - start
    with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    print(json.dumps({
        "size": args.size, "steps": args.steps, "batch_size": args.batch_size, "seq_len": seq,
        "wall_s": round(wall, 2),
        "trace_s": round(durations["/jax/core/compile/jaxpr_trace_duration"], 2),
        "compile_s": round(durations["/jax/core/compile/backend_compile_duration"], 2),
        "tokens_per_sec": [round(r["perf/tokens_per_sec"]) for r in rows
                           if "perf/tokens_per_sec" in r],
    }))


if __name__ == "__main__":
    main()
