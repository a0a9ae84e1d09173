"""Tokenizer throughput on one thread: bertjax's Google-exact pipeline against HF's BertNormalizer.

A benchmark, not a test. Run with the Rust tokenizer single-threaded:

  RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false python benchmarks/tokenizer_bench.py

Trains an uncased WordPiece vocabulary on the corpus's first --texts texts, then encodes them all
with `encode_batch` in --rounds interleaved rounds: bertjax's normalizer and pre-tokenizer
(bertjax/data/tokenizer.py), and Hugging Face's BertNormalizer + BertPreTokenizer on the same
vocabulary (what bertjax used before it matched google-research/bert exactly). Prints the median
and best characters per second of each; interleaving keeps a shared machine's drift out of the ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root

from tokenizers import normalizers, pre_tokenizers  # noqa: E402

from bertjax.data import corpus as corpus_lib  # noqa: E402
from bertjax.data import tokenizer as tokenizer_lib  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", default="builtin")
    p.add_argument("--texts", type=int, default=20_000)
    p.add_argument("--vocab_size", type=int, default=8000)
    p.add_argument("--rounds", type=int, default=8)
    args = p.parse_args()
    texts = []
    for text in corpus_lib.open_corpus(args.corpus, 1_000_000).texts():
        texts.append(text)
        if len(texts) == args.texts:
            break
    chars = sum(len(t) for t in texts)
    tok = tokenizer_lib.train_wordpiece(iter(texts), args.vocab_size, True, tempfile.mkdtemp())
    setups = {"bertjax": (tok.normalizer, tok.pre_tokenizer),
              "hf_bert": (normalizers.BertNormalizer(lowercase=True),
                          pre_tokenizers.BertPreTokenizer())}
    times: dict[str, list[float]] = {name: [] for name in setups}
    for r in range(args.rounds):
        for name in (list(setups) if r % 2 == 0 else list(setups)[::-1]):
            tok.normalizer, tok.pre_tokenizer = setups[name]
            start = time.perf_counter()
            tok.encode_batch(texts)
            times[name].append(time.perf_counter() - start)
    print(f"{len(texts)} texts, {chars:,} characters, {args.rounds} rounds")
    for name, seconds in times.items():
        print(f"{name:8s} median {chars / statistics.median(seconds) / 1e6:.2f} Mchar/s, "
              f"best {chars / min(seconds) / 1e6:.2f} Mchar/s")


if __name__ == "__main__":
    main()
