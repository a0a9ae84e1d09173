"""Preparation: corpus -> tokenizer -> example records in ArrayRecord shards, once, cached.

Layout under the cache root (config.data.cache_dir, or WORKDIR/data):

  tokenizer-<key>/   vocab.txt, tokenizer.json (trained on the corpus, or a copy of the given one)
  shards-<key>/      train-NNNNN.array_record, eval-NNNNN.array_record, meta.json

The shard key hashes the corpus identity (file names, sizes and mtimes; TFDS name/split/size; the
builtin corpus's Python version), the tokenizer (its full JSON) and every data field that changes the
records. A second run with the same key logs "reusing prepared shards at ..." and reads nothing else.
Directories are written under a temporary name and renamed into place, so concurrent or interrupted
preparations never leave a half-written cache behind.

A record is the little-endian int32 array `[label, *row]` of `examples.py` (raw bytes, no pickle).
Documents are held out for eval when splitmix64(doc index) / 2**64 < eval_fraction: the split does not
depend on any seed, and eval documents never reach a training shard.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time

import ml_collections
import numpy as np
import tokenizers
from array_record.python.array_record_module import ArrayRecordWriter

from bertjax.data import corpus as corpus_lib
from bertjax.data import examples
from bertjax.data import masking
from bertjax.data import tokenizer as tokenizer_lib

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
# Fields that change the records (masking fields do not: masks are drawn at load time).
RECORD_FIELDS = ("max_seq_length", "short_seq_prob", "next_sentence", "packing", "dupe_factor",
                 "seed", "eval_fraction", "docs_per_shard", "max_line_bytes")


class DataConfigError(ValueError):
    """An impossible config.data; the message names the field."""


def open_corpus(cfg: ml_collections.ConfigDict) -> corpus_lib.Corpus:
    """config.data's corpus (a config.json of an older run may lack split_lines: the default)."""
    return corpus_lib.open_corpus(cfg.corpus, cfg.max_line_bytes, cfg.get("split_lines", True))


def validate(cfg: ml_collections.ConfigDict) -> None:
    """Raises DataConfigError naming the field for any impossible data config."""
    def bad(field, why):
        raise DataConfigError(f"config.data.{field}={cfg[field]!r}: {why}")
    for f in ("max_seq_length", "max_predictions_per_seq", "dupe_factor", "vocab_size",
              "docs_per_shard", "max_line_bytes"):
        if not isinstance(cfg[f], int) or isinstance(cfg[f], bool) or cfg[f] <= 0:
            bad(f, "must be a positive integer")
    if not isinstance(cfg.get("split_lines", True), bool):
        bad("split_lines", "must be true or false")
    if cfg.max_seq_length < 5:
        bad("max_seq_length", "needs room for [CLS] A [SEP] B [SEP] (at least 5)")
    if cfg.max_predictions_per_seq > cfg.max_seq_length:
        bad("max_predictions_per_seq", f"exceeds max_seq_length={cfg.max_seq_length}")
    if not 0.0 < cfg.masked_lm_prob < 1.0:
        bad("masked_lm_prob", "must be in (0, 1)")
    if not 0.0 <= cfg.short_seq_prob <= 1.0:
        bad("short_seq_prob", "must be in [0, 1]")
    if not 0.0 < cfg.eval_fraction < 1.0:
        bad("eval_fraction", "must be in (0, 1)")
    if cfg.packing and cfg.next_sentence:
        raise DataConfigError("config.data.packing=True needs config.data.next_sentence=False: "
                              "packed rows hold several examples, so there is no single NSP pair")
    if cfg.num_eval_examples < 0 or cfg.worker_count < 0 or cfg.prefetch_batches < 0:
        raise DataConfigError("config.data.num_eval_examples, worker_count and prefetch_batches "
                              "must be >= 0")


def cache_root(cfg: ml_collections.ConfigDict, workdir: str | None) -> str:
    if cfg.cache_dir:
        return os.path.expanduser(cfg.cache_dir)
    if workdir:
        return os.path.join(workdir, "data")
    raise DataConfigError("config.data.cache_dir is empty and there is no workdir to put data in")


def _key(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


@contextlib.contextmanager
def _staging(root: str, prefix: str):
    """A new temporary directory under root to build a cache entry in; removed if the block ends
    by any exception, KeyboardInterrupt included, so an interrupted preparation leaves nothing."""
    tmp = tempfile.mkdtemp(dir=root, prefix=prefix)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _publish(tmp: str, final: str) -> None:
    """Renames tmp into place; if another process got there first, keeps theirs."""
    try:
        os.rename(tmp, final)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not os.path.isdir(final):
            raise


def check_fits_model(tok: tokenizers.Tokenizer, model_vocab_size: int | None, what: str) -> None:
    """DataConfigError unless the model's embedding table (config.model.vocab_size rows, when
    known) has a row for every id of `tok` (`what`: where the tokenizer came from)."""
    ids = tokenizer_lib.num_ids(tok)
    if model_vocab_size is not None and ids > model_vocab_size:
        raise DataConfigError(
            f"{what} has {ids} ids but config.model.vocab_size={model_vocab_size} (the model's "
            f"embedding rows): set config.model.vocab_size >= {ids}, or use a smaller vocabulary")


def resolve_tokenizer(cfg: ml_collections.ConfigDict, root: str,
                      corpus: corpus_lib.Corpus | None = None,
                      model_vocab_size: int | None = None) -> tuple[tokenizers.Tokenizer, str]:
    """config.data.tokenizer (a path) or a vocab trained on the corpus -> (tokenizer, its directory).

    A given tokenizer keeps its own casing (data.lowercase is only used for training one).
    model_vocab_size: config.model.vocab_size when known; a vocabulary with more ids is refused
    (one to train with config.data.vocab_size above it, before it is trained).
    """
    os.makedirs(root, exist_ok=True)
    if cfg.tokenizer:
        path = os.path.expanduser(cfg.tokenizer)
        try:
            tok = tokenizer_lib.load_tokenizer(path)
        except tokenizer_lib.TokenizerError as e:
            raise DataConfigError(f"config.data.tokenizer={cfg.tokenizer!r}: {e}") from None
        missing = examples.missing_specials(tok)
        if missing:  # checked before anything of this tokenizer reaches the cache
            where = tokenizer_lib.tokenizer_file(path) if os.path.isdir(path) else path
            raise DataConfigError(
                f"config.data.tokenizer={cfg.tokenizer!r}: the vocabulary in {where} lacks the "
                f"special tokens {', '.join(missing)} that pretraining needs (BERT's are "
                f"{', '.join(tokenizer_lib.SPECIAL_TOKENS)})")
        check_fits_model(tok, model_vocab_size, f"config.data.tokenizer={cfg.tokenizer!r}")
        out = os.path.join(root, f"tokenizer-{_key(tok.to_str())}")
        if not os.path.isdir(out):
            with _staging(root, ".tmp-tok-") as tmp:
                tokenizer_lib.save_tokenizer(tok, tmp)
                _publish(tmp, out)
        return tok, out
    if model_vocab_size is not None and cfg.vocab_size > model_vocab_size:
        raise DataConfigError(
            f"config.data.vocab_size={cfg.vocab_size} (the vocabulary to train) exceeds "
            f"config.model.vocab_size={model_vocab_size} (the model's embedding rows): make them "
            "equal, or give a tokenizer (config.data.tokenizer)")
    corpus = corpus or open_corpus(cfg)
    out = os.path.join(root, "tokenizer-" + _key(
        {"v": FORMAT_VERSION, "corpus": corpus.words_identity, "vocab_size": cfg.vocab_size,
         "lowercase": cfg.lowercase}))
    if os.path.isdir(out):
        log.info("reusing trained vocabulary at %s", out)
    else:
        log.info("training a %d-piece WordPiece vocabulary on %s", cfg.vocab_size, corpus.identity)
        with _staging(root, ".tmp-tok-") as tmp:
            tokenizer_lib.train_wordpiece(corpus.texts, cfg.vocab_size, cfg.lowercase, tmp)
            _publish(tmp, out)
    tok = tokenizer_lib.load_tokenizer(out)
    # The trainer keeps the corpus's whole alphabet, which may take it past data.vocab_size.
    check_fits_model(tok, model_vocab_size, f"the vocabulary trained on the corpus ({out})")
    return tok, out


@dataclasses.dataclass
class Prepared:
    """Prepared shards: paths, counts and what the loader needs to know."""

    directory: str
    train_paths: list[str]
    eval_paths: list[str]
    meta: dict
    tokenizer: tokenizers.Tokenizer
    tokenizer_dir: str


def is_eval_document(doc_index: int, eval_fraction: float) -> bool:
    """The held-out split: a hash of the document index, independent of any seed."""
    h = int(masking._mix(np.asarray([doc_index], np.uint64) ^ np.uint64(0x5EED0E7A1))[0])
    return h / 2.0 ** 64 < eval_fraction


class _ShardWriter:
    """Writes numbered ArrayRecord shards of records; counts them."""

    def __init__(self, directory: str, prefix: str):
        self.directory, self.prefix = directory, prefix
        self.paths: list[str] = []
        self.count = 0
        self.random_next = 0  # records whose label (field 0) is 1: NSP pairs with a random B

    def write(self, records: list[np.ndarray]) -> None:
        if not records:
            return
        path = os.path.join(self.directory, f"{self.prefix}-{len(self.paths):05d}.array_record")
        writer = ArrayRecordWriter(path, "group_size:1")
        for rec in records:
            writer.write(rec.astype("<i4").tobytes())
        writer.close()
        self.paths.append(path)
        self.count += len(records)
        self.random_next += sum(int(rec[0]) for rec in records)


def _tokenize_docs(tok: tokenizers.Tokenizer, docs: list[list[str]], specials: examples.Specials,
                   stats: dict) -> tuple[list[list[np.ndarray]], list[int]]:
    """Sentences -> id arrays; empty sentences and documents are dropped (kept indices returned)."""
    flat = [s for d in docs for s in d]
    encode = getattr(tok, "encode_batch_fast", tok.encode_batch)
    encs = encode(flat, add_special_tokens=False) if flat else []
    special_ids = np.asarray([specials.pad, specials.cls, specials.sep, specials.mask], np.int32)
    out, kept, k = [], [], 0
    for i, d in enumerate(docs):
        sents = []
        for _ in d:
            ids = np.asarray(encs[k].ids, np.int32)
            k += 1
            if len(ids):
                ids[np.isin(ids, special_ids)] = specials.unk  # text never forges a special token
                sents.append(ids)
                stats["tokens"] += len(ids)
        if sents:
            out.append(sents)
            kept.append(i)
    return out, kept


def prepare(cfg: ml_collections.ConfigDict, workdir: str | None = None,
            model_vocab_size: int | None = None) -> Prepared:
    """Tokenizes the corpus once and writes example shards (or reuses a matching cache).

    model_vocab_size: config.model.vocab_size when known; a vocabulary with more ids is refused
    before the corpus is tokenized (see resolve_tokenizer)."""
    validate(cfg)
    root = cache_root(cfg, workdir)
    corpus = open_corpus(cfg)
    tok, tok_dir = resolve_tokenizer(cfg, root, corpus, model_vocab_size)
    key = _key({"v": FORMAT_VERSION, "corpus": corpus.identity, "tokenizer": tok.to_str(),
                **{f: cfg[f] for f in RECORD_FIELDS}})
    final = os.path.join(root, f"shards-{key}")
    if os.path.isfile(os.path.join(final, "meta.json")):
        log.info("reusing prepared shards at %s", final)
        return _load(final, tok, tok_dir)

    t0 = time.time()
    with _staging(root, ".tmp-shards-") as tmp:
        meta = _write_shards(cfg, corpus, tok, tmp, key, t0)
        with open(os.path.join(tmp, "meta.json"), "w") as f:
            json.dump(meta, f, indent=2)
        _publish(tmp, final)
    log.info("prepared %d train / %d eval examples from %d documents in %.1f s at %s",
             meta["num_train"], meta["num_eval"], meta["stats"]["documents"], meta["seconds"],
             final)
    return _load(final, tok, tok_dir)


def _write_shards(cfg: ml_collections.ConfigDict, corpus: corpus_lib.Corpus,
                  tok: tokenizers.Tokenizer, out: str, key: str, t0: float) -> dict:
    """Writes the corpus's example shards into `out` (cache key `key`, started at time t0);
    returns their meta.json. Raises DataConfigError when the corpus gives no training example."""
    work = tokenizers.Tokenizer.from_str(tok.to_str())
    work.encode_special_tokens = True  # "[MASK]" written in the corpus is text, not a special token
    specials = examples.Specials.of(tok)
    stats = {"documents": 0, "train_documents": 0, "eval_documents": 0, "tokens": 0,
             "truncated_tokens": 0}
    make = dict(seed=cfg.seed, dupe_factor=cfg.dupe_factor, max_seq_length=cfg.max_seq_length,
                short_seq_prob=cfg.short_seq_prob, next_sentence=cfg.next_sentence,
                packing=cfg.packing, specials=specials, counts=stats)
    writers = {"train": _ShardWriter(out, "train"), "eval": _ShardWriter(out, "eval")}
    pending: dict[str, tuple[list, list]] = {"train": ([], []), "eval": ([], [])}

    def flush(split: str) -> None:
        docs, ids = pending[split]
        tokenized, kept = _tokenize_docs(work, docs, specials, stats)
        writers[split].write(examples.shard_examples(tokenized, [ids[i] for i in kept], **make))
        stats[f"{split}_documents"] += len(kept)
        pending[split] = ([], [])

    for doc_index, doc in enumerate(corpus.documents()):
        stats["documents"] += 1
        split = "eval" if is_eval_document(doc_index, cfg.eval_fraction) else "train"
        pending[split][0].append(doc)
        pending[split][1].append(doc_index)
        if len(pending[split][0]) >= cfg.docs_per_shard:
            flush(split)
    flush("train")
    flush("eval")
    if not writers["train"].count:
        held = (f", {stats['eval_documents']} of them held out for evaluation by "
                f"config.data.eval_fraction={cfg.eval_fraction}" if stats["eval_documents"]
                else "")
        raise DataConfigError(f"config.data.corpus={cfg.corpus!r} gave no training examples "
                              f"({stats['documents']} documents{held}; "
                              f"{corpus.skipped.summary()})")
    meta = {"format_version": FORMAT_VERSION, "corpus": corpus.identity, "key": key,
            "fields": {f: cfg[f] for f in RECORD_FIELDS}, "num_train": writers["train"].count,
            "num_eval": writers["eval"].count, "vocab_size": tok.get_vocab_size(),
            "specials": dataclasses.asdict(specials), "stats": stats,
            "skipped": corpus.skipped.as_dict(), "seconds": round(time.time() - t0, 2),
            "train_shards": [os.path.basename(p) for p in writers["train"].paths],
            "eval_shards": [os.path.basename(p) for p in writers["eval"].paths]}
    _report_truncation(stats, cfg)
    if cfg.next_sentence:
        meta["nsp_random_fraction"] = {
            split: round(w.random_next / w.count, 4) if w.count else None
            for split, w in writers.items()}
        _report_nsp_balance(meta["nsp_random_fraction"]["train"])
    return meta


# Google's NSP rule trims the last sentence of a chunk that overshoots the room: a few percent of
# the tokens on ordinary text. More than this share means text the examples do not see.
TRUNCATION_WARN_SHARE = 0.1


def _report_truncation(stats: dict, cfg: ml_collections.ConfigDict) -> None:
    """Logs the document tokens that example creation dropped (stats["truncated_tokens"], over
    the dupe_factor copies); a warning when their share is large."""
    total = stats["tokens"] * cfg.dupe_factor
    dropped = stats["truncated_tokens"]
    share = dropped / total if total else 0.0
    message = (f"example creation dropped {dropped} of {total} document tokens ({share:.1%}) by "
               f"truncating to max_seq_length={cfg.max_seq_length}")
    if share > TRUNCATION_WARN_SHARE:
        why = ("with next_sentence=True a sentence longer than max_seq_length - 3 (or a long line "
               "that is not split into sentences) gives one truncated pair, as in "
               "google-research/bert; next_sentence=False cuts it into pieces and keeps them"
               if cfg.next_sentence else
               "short_seq_prob's shorter targets cut sentences longer than the target")
        log.warning("%s: %s", message, why)
    else:
        log.info("%s", message)


def _report_nsp_balance(random_fraction: float) -> None:
    """Logs the share of NSP pairs with a random B; warns when it is far from half.

    google-research/bert's example creation (followed exactly here) gives every chunk of a single
    sentence a random B, so one-sentence documents or long unsplit lines skew NSP towards
    "random", and nsp_accuracy's majority baseline moves from 0.5 to that share."""
    message = (f"NSP pairs: {random_fraction:.1%} with a random B (nsp_accuracy's majority "
               f"baseline {max(random_fraction, 1 - random_fraction):.2f})")
    if abs(random_fraction - 0.5) > 0.2:  # the rule leaves ~60% on documents of a few sentences
        log.warning("%s: far from google-research/bert's 50%%, which it gets only from documents "
                    "of several sentences; one-sentence documents and long lines that are not "
                    "split into sentences always take a random B (see config.data.split_lines)",
                    message)
    else:
        log.info("%s", message)


def _load(directory: str, tok: tokenizers.Tokenizer, tok_dir: str) -> Prepared:
    with open(os.path.join(directory, "meta.json")) as f:
        meta = json.load(f)
    return Prepared(directory=directory,
                    train_paths=[os.path.join(directory, p) for p in meta["train_shards"]],
                    eval_paths=[os.path.join(directory, p) for p in meta["eval_shards"]],
                    meta=meta, tokenizer=tok, tokenizer_dir=tok_dir)
