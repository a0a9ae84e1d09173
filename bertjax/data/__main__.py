"""Command line: train a WordPiece vocabulary, or prepare pretraining shards ahead of training.

  python -m bertjax.data vocab --corpus 'text/*.txt' --vocab-size 30522 --out vocab_dir [--cased]
  python -m bertjax.data prepare --config configs/bert_base.py --workdir runs/x
  python -m bertjax.data prepare --config configs/bert_tiny.py:smoke --workdir runs/x
  python -m bertjax.data prepare --corpus builtin --cache-dir /tmp/data [--set max_seq_length=512 ...]

`prepare` with --config FILE.py[:ARG] reads `config.data` from get_config(ARG) of a config file, as
`python -m bertjax.train --config` does (e.g. configs/bert_tiny.py:smoke); without it, it starts
from bertjax.config.data(). --set FIELD=VALUE overrides any data field, the value read as the
field's type (true/false/True/False/1/0 for a flag, 512 for an integer, 0.2 for a number, text
as it is). It prints the shard directory and its meta.json summary.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import sys

from bertjax import config as config_lib
from bertjax.data import corpus as corpus_lib
from bertjax.data import prepare as prepare_lib
from bertjax.data import tokenizer as tokenizer_lib


def load_config_file(spec: str) -> "config_lib.ml_collections.ConfigDict":
    """`FILE.py[:ARG]` -> FILE's get_config(ARG), as `python -m bertjax.train --config` reads it.

    Everything after the first colon is the argument (ml_collections' config_flags convention).
    A missing file, a file without get_config or an argument get_config refuses raises
    DataConfigError naming the flag and the file (main prints it as "error: ...", exit 2).
    """
    path, colon, arg = spec.partition(":")
    if not os.path.isfile(path):
        raise prepare_lib.DataConfigError(f"--config {spec}: no such config file {path!r}")
    module_spec = importlib.util.spec_from_file_location("bertjax_user_config", path)
    if module_spec is None or module_spec.loader is None:
        raise prepare_lib.DataConfigError(
            f"--config {spec}: {path!r} is not a Python config file (FILE.py[:ARG])")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)  # the user's own config file, as bertjax.train runs it
    if not callable(getattr(module, "get_config", None)):
        raise prepare_lib.DataConfigError(f"--config {spec}: {path} defines no get_config()")
    try:
        cfg = module.get_config(arg) if colon else module.get_config()
    except (ValueError, KeyError, TypeError) as e:  # a variant or argument the file refuses
        raise prepare_lib.DataConfigError(
            f"--config {spec}: {path} get_config({arg!r}) failed: {e}") from None
    if cfg is None:
        raise prepare_lib.DataConfigError(f"--config {spec}: {path} get_config() returned None")
    return cfg


def _data_config(args) -> tuple["config_lib.ml_collections.ConfigDict", int | None]:
    """(config.data with the flags applied, config.model.vocab_size of a --config that has a
    model, else None)."""
    model_vocab_size = None
    if args.config:
        cfg = load_config_file(args.config)
        if "model" in cfg and "vocab_size" in cfg.model:
            model_vocab_size = cfg.model.vocab_size
        cfg = cfg.data if "data" in cfg else cfg
    else:
        cfg = config_lib.data()
    for name in ("corpus", "tokenizer", "cache_dir"):
        value = getattr(args, name)
        if value is not None:
            cfg[name] = value
    for item in args.set or []:
        field, eq, raw = item.partition("=")
        if not eq:
            raise prepare_lib.DataConfigError(f"--set {item}: expected FIELD=VALUE")
        if field not in cfg:
            raise prepare_lib.DataConfigError(f"--set {item}: config.data has no field {field!r}")
        value = parse_set_value(item, cfg[field], raw)
        try:
            cfg[field] = value
        except (TypeError, ValueError) as e:  # ml_collections refuses another type
            raise prepare_lib.DataConfigError(f"--set {item}: {e}") from None
    return cfg, model_vocab_size


_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")


def parse_set_value(item: str, current, raw: str):
    """--set FIELD=RAW -> a value of the field's type (bool: true/false in any case, 1/0,
    yes/no; int: an integer; float: any number; str: the text as written, or a JSON string).
    A value that does not fit the field raises DataConfigError naming --set FIELD=RAW."""
    def bad(expected):
        return prepare_lib.DataConfigError(
            f"--set {item}: config.data.{item.partition('=')[0]} takes {expected}, got {raw!r}")
    if isinstance(current, bool):
        if raw.strip().lower() in _TRUE:
            return True
        if raw.strip().lower() in _FALSE:
            return False
        raise bad("true or false")
    if isinstance(current, int):
        try:
            return int(raw.strip())
        except ValueError:
            raise bad("an integer") from None
    if isinstance(current, float):
        try:
            return float(raw.strip())
        except ValueError:
            raise bad("a number") from None
    if isinstance(current, str):
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            return raw
        return value if isinstance(value, str) else raw
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bertjax.data", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    v = sub.add_parser("vocab", help="train a WordPiece vocabulary")
    v.add_argument("--corpus", required=True, help="file glob, 'builtin' or tfds:NAME[:VERSION]:FEATURE[:SPLIT]")
    v.add_argument("--vocab-size", type=int, default=30522)
    v.add_argument("--out", required=True, help="directory for vocab.txt and tokenizer.json")
    v.add_argument("--cased", action="store_true", help="keep case and accents (default: uncased)")
    v.add_argument("--max-line-bytes", type=int, default=1_000_000)
    v.add_argument("--overwrite", action="store_true",
                   help="replace a tokenizer (vocab.txt, tokenizer.json) already in --out")
    p = sub.add_parser("prepare", help="tokenize a corpus and write example shards")
    p.add_argument("--config", metavar="FILE.py[:ARG]",
                   help="a config file with get_config([ARG]) (its .data is used)")
    p.add_argument("--workdir", help="shards go to WORKDIR/data unless cache_dir is set")
    p.add_argument("--corpus")
    p.add_argument("--tokenizer")
    p.add_argument("--cache-dir", dest="cache_dir")
    p.add_argument("--set", action="append", metavar="FIELD=VALUE", help="override a data field")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        _run(args)
    except (FileNotFoundError, prepare_lib.DataConfigError, tokenizer_lib.TokenizerError,
            corpus_lib.CorpusError) as e:
        # A user's input (corpus glob, config field, vocabulary) is wrong: say so, no traceback.
        print(f"error: {_name_the_flags(str(e), args)}", file=sys.stderr)
        raise SystemExit(2) from None


# config.data fields that the commands' flags set (field -> flag).
_FLAGS = {"corpus": "--corpus", "tokenizer": "--tokenizer", "cache_dir": "--cache-dir"}


def _name_the_flags(message: str, args) -> str:
    """An error about config.data.FIELD='VALUE' names the flag that gave the value (--corpus X)."""
    for field, flag in _FLAGS.items():
        value = getattr(args, field, None)
        if value is not None:
            message = message.replace(f"config.data.{field}={value!r}", f"{flag} {value}")
            message = message.replace(f"config.data.{field} ", f"{flag} ")
    return message


def check_vocab_out(out: str, overwrite: bool) -> None:
    """Raises DataConfigError, before any training, unless `vocab --out` can take a vocabulary: a
    new or empty directory, or one of other files. A tokenizer already there (vocab.txt or
    tokenizer.json) is replaced only with --overwrite; a training workdir or a model directory is
    never written into (its tokenizer belongs to its weights)."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise prepare_lib.DataConfigError(
            f"--out {out}: exists and is not a directory; give a new or existing directory")
    if not os.path.isdir(out):
        parent = os.path.dirname(os.path.abspath(out))
        while not os.path.exists(parent):
            parent = os.path.dirname(parent)
        if not os.path.isdir(parent):
            raise prepare_lib.DataConfigError(
                f"--out {out}: {parent} is a file, not a directory; cannot create {out}")
        return
    from bertjax import convert  # imports jax: only when the directory exists
    held = convert.held_format(out)
    if held == "workdir":
        raise prepare_lib.DataConfigError(
            f"--out {out}: is a training workdir (it has checkpoints/); its tokenizer belongs to "
            "the run. Write the vocabulary to a new directory")
    if held is not None:
        raise prepare_lib.DataConfigError(
            f"--out {out}: holds a {held} model; its tokenizer belongs to the model's weights. "
            "Write the vocabulary to a new directory")
    existing = [f for f in ("vocab.txt", "tokenizer.json")
                if os.path.exists(os.path.join(out, f))]
    if existing and not overwrite:
        raise prepare_lib.DataConfigError(
            f"--out {out}: already holds a tokenizer ({', '.join(existing)}); pass --overwrite "
            "to replace it, or write to a new directory")


def _run(args) -> None:
    if args.command == "vocab":
        check_vocab_out(args.out, args.overwrite)
        corpus = corpus_lib.open_corpus(args.corpus, args.max_line_bytes)
        tok = tokenizer_lib.train_wordpiece(corpus.texts, args.vocab_size, not args.cased, args.out)
        print(f"wrote {tok.get_vocab_size()} tokens to {args.out}/vocab.txt")
        return
    cfg, model_vocab_size = _data_config(args)
    prepared = prepare_lib.prepare(cfg, args.workdir, model_vocab_size)
    summary = {k: prepared.meta[k] for k in ("num_train", "num_eval", "stats", "skipped", "seconds")}
    print(json.dumps({"shards": prepared.directory, "tokenizer": prepared.tokenizer_dir, **summary},
                     indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
