"""Shared by the trainer's tests: a tiny text corpus and a tiny pretraining config."""

from __future__ import annotations

import os

import numpy as np

from bertjax import config as config_lib

WORDS = ("the cat dog bird sat ran flew on under over a mat log tree red blue green big small "
         "quick slow happy sad river hill house garden runs jumps sings sleeps eats reads").split()


def write_corpus(directory: str, num_docs: int = 60, seed: int = 0) -> str:
    """A google-research/bert-format corpus (one sentence per line, blank line between docs)."""
    rng = np.random.default_rng(seed)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "corpus.txt")
    with open(path, "w") as f:
        for _ in range(num_docs):
            for _ in range(int(rng.integers(3, 8))):
                n = int(rng.integers(4, 10))
                f.write(" ".join(rng.choice(WORDS, n)) + " .\n")
            f.write("\n")
    return path


def tiny_config(corpus: str, cache_dir: str, **top):
    """Hidden 32, 2 layers, seq 32, vocab <= 128: compiles in seconds on one CPU core."""
    c = config_lib.pretraining("tiny")
    c.model = config_lib.model(vocab_size=128, hidden_size=32, num_heads=2, intermediate_size=37,
                               num_layers=2, max_position_embeddings=32)
    c.data.corpus = corpus
    c.data.cache_dir = cache_dir
    c.data.vocab_size = 128
    c.data.max_seq_length = 32
    c.data.max_predictions_per_seq = 5
    c.data.eval_fraction = 0.1
    c.data.num_eval_examples = 16
    c.data.prefetch_batches = 0
    c.batch_size = 8
    c.num_train_steps = 6
    c.log_every_steps = 2
    c.eval_every_steps = 3
    c.checkpoint_every_steps = 2
    c.optimizer.learning_rate = 1e-3
    c.optimizer.warmup_steps = 2
    c.progress_bar = False
    c.update(top)
    return c


def cli_overrides(corpus: str, cache_dir: str, **top) -> list[str]:
    """The same config as --config.x=v flags on configs/bert_tiny.py:smoke."""
    c = tiny_config(corpus, cache_dir, **top)
    flags = []
    for section in ("model", "data"):
        for k, v in c[section].items():
            flags.append(f"--config.{section}.{k}={v}")
    for k in ("batch_size", "num_train_steps", "log_every_steps", "eval_every_steps",
              "checkpoint_every_steps", "seed"):
        flags.append(f"--config.{k}={c[k]}")
    flags += [f"--config.optimizer.learning_rate={c.optimizer.learning_rate}",
              f"--config.optimizer.warmup_steps={c.optimizer.warmup_steps}"]
    return flags
