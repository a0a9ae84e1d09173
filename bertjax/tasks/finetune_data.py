"""What every fine-tuning task shares: its data config, tokenizer lookup, sources, label file, and
the in-memory `FinetuneData` (a `base.TaskData`) that turns feature arrays into batches.

Train batches come from a Grain pipeline (shuffled, reshuffled every epoch, checkpointable);
eval batches have the train batches' shape, the last one padded with rows whose
`example_weight` is 0 and `example_id` is -1, so nothing recompiles and padding counts nowhere.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from typing import Iterator

import grain
import ml_collections
import numpy as np
import tokenizers

from bertjax import checkpoint
from bertjax import config as config_lib
from bertjax.data import tokenizer as tokenizer_lib
from bertjax.model import ConfigError
from bertjax.tasks import readers

LABELS_FILE = "labels.json"


def data_config(**overrides) -> ml_collections.ConfigDict:
    """config.data for fine-tuning tasks (local files or one TFDS dataset)."""
    c = ml_collections.ConfigDict()
    c.train = ""  # Local training file (.csv, .tsv, .jsonl; .json for SQuAD).
    c.validation = ""  # Local dev file: evaluated every eval_every_steps.
    c.test = ""  # Local test file (labels not needed): used by bertjax.predict.
    c.tfds_name = ""  # A TFDS dataset, e.g. "glue/sst2", "squad/v2.0"; unused once a file is set.
    c.tfds_data_dir = ""  # TFDS data_dir ("" = TFDS's default); nothing is ever downloaded.
    c.train_split = "train"  # TFDS split names.
    c.validation_split = "validation"
    c.test_split = "test"
    c.text_column = "text"  # Field with the (first) text; the word list for tagging.
    c.text_pair_column = ""  # Field with the second text of a pair ("" = single texts).
    c.label_column = "label"  # Field with the label (tags for tagging).
    c.id_column = ""  # Optional field with an example id, copied to predictions.
    c.labels = ""  # Comma-separated label names in id order ("" = sorted set of train labels).
    c.label_separator = "|"  # Multi-label: separator of several labels in one string field.
    c.on_bad_row = "error"  # error: stop at a bad row (file:line); skip: skip it, with a warning.
    c.max_seq_length = 128  # S: every example is truncated / padded to this many tokens.
    c.tokenizer = ""  # vocab.txt / tokenizer.json / dir; "" = the one of config.init_from.
    c.lowercase = ml_collections.config_dict.placeholder(bool)  # None: the tokenizer's own.
    c.update(overrides)
    return c


def run_config(size: str = "base"):
    """The run config shared by every fine-tuning config (the trainer is the pretraining one)."""
    c = config_lib.pretraining(size)
    c.batch_size = 32  # Global batch per update (BERT paper: 16 or 32).
    c.num_train_steps = 3000  # Updates (~3 epochs of a 32k-example train set at batch 32).
    c.log_every_steps = 50  # Train metrics to metrics.jsonl.
    c.eval_every_steps = 500  # Dev-set evaluation period (and at the end).
    c.checkpoint_every_steps = 500  # Checkpoint period (and at the end).
    c.max_to_keep = 2  # Checkpoints kept.
    c.data = data_config()  # Local files or TFDS; see finetune_data.data_config.
    c.optimizer.learning_rate = 2e-5  # Peak lr: BERT's fine-tuning grid is {5e-5, 3e-5, 2e-5}.
    c.optimizer.warmup_steps = 300  # 10% of num_train_steps.
    c.model.dropout_rate = 0.1  # Encoder dropout while fine-tuning.
    c.eval_metric = ""  # Dev metric that picks W/best/ (e.g. accuracy, matthews, f1); "" = none.
    c.eval_metric_mode = "max"  # max | min: which way eval_metric improves.
    c.early_stopping_patience = 0  # Stop after this many evaluations without improvement; 0 = off.
    c.seeds = ""  # bertjax.seeds: comma-separated seeds, one run each, median reported.
    return c


def given_tokenizer(data_cfg: ml_collections.ConfigDict) -> str:
    """config.data.tokenizer as a path ("" when unset). A given tokenizer is the run's, whatever
    config.init_from holds (that one is only the default), so a path that is not there, or a
    directory with no vocab.txt / tokenizer.json, is a ConfigError naming the field: never
    skipped for init_from's, which may be another vocabulary."""
    if not data_cfg.tokenizer:
        return ""
    path = os.path.expanduser(data_cfg.tokenizer)
    if not os.path.exists(path):
        raise ConfigError(f"config.data.tokenizer={data_cfg.tokenizer!r} does not exist (a "
                          "vocab.txt, a tokenizer.json or a directory with either; unset it to "
                          "use config.init_from's tokenizer)")
    if os.path.isdir(path) and not tokenizer_lib.holds_tokenizer(path):
        raise ConfigError(f"config.data.tokenizer={data_cfg.tokenizer!r} is a directory with no "
                          "vocab.txt or tokenizer.json")
    return path


def load_tokenizer(config: ml_collections.ConfigDict) -> tuple[tokenizers.Tokenizer, str]:
    """config.data.tokenizer, else the tokenizer of config.init_from -> (tokenizer, dir with
    vocab.txt and tokenizer.json; a temporary copy that lives until the process exits)."""
    given = given_tokenizer(config.data)
    candidates = [given] if given else []
    if config.get("init_from") and not given:
        candidates += [os.path.join(config.init_from, "tokenizer"), config.init_from]
    for path in candidates:
        if not os.path.exists(path) or (os.path.isdir(path)
                                        and not tokenizer_lib.holds_tokenizer(path)):
            continue
        tok = tokenizer_lib.load_tokenizer(path, config.data.lowercase)
        # A normalised copy (vocab.txt + tokenizer.json) for W/tokenizer/, read when the run's
        # files are written; removed when the process exits (every run left one in /tmp).
        out = tempfile.mkdtemp(prefix="bertjax_tokenizer_")
        atexit.register(shutil.rmtree, out, ignore_errors=True)
        tokenizer_lib.save_tokenizer(tok, out)
        return tok, out
    raise readers.DataError(
        "no tokenizer: set config.data.tokenizer, or config.init_from to a directory with "
        f"vocab.txt or tokenizer.json (looked in {candidates or 'nothing'})")


def validate(config: ml_collections.ConfigDict, *, layout: str = "[CLS] text [SEP]") -> None:
    """The checks of config.data that every fine-tuning task's validate makes, before any data
    is read or anything is built: raises ConfigError naming the field.

    layout: the task's shortest sequence, one token per word that is not a special token
    ("[CLS] a [SEP] b [SEP]"): max_seq_length must hold it. (train.validate checks that
    max_seq_length fits config.model.max_position_embeddings.)"""
    data = config.data
    shortest = len(layout.split())
    if data.max_seq_length < shortest:
        raise ConfigError(f"config.data.max_seq_length={data.max_seq_length} is too short: an "
                          f"example is {layout}, at least {shortest} tokens")
    given_tokenizer(data)
    metric = config.get("eval_metric", "")
    has_validation = data.validation_split if uses_tfds(data) else data.validation
    if metric and config.get("num_eval_batches", -1) != 0 and not has_validation:
        raise ConfigError(f"config.eval_metric={metric!r} needs evaluations but no validation "
                          "data is set: set config.data.validation (or config.data.tfds_name "
                          "and validation_split), or unset config.eval_metric")


def uses_tfds(data_cfg: ml_collections.ConfigDict) -> bool:
    """TFDS is the source when tfds_name is set and no local file is: a config whose default is
    a TFDS dataset (configs/squad.py) reads the user's files once they are given. Files for
    some splits but no train file, with tfds_name set, is ambiguous: a ConfigError says so."""
    files = [split for split in ("train", "validation", "test") if data_cfg.get(split)]
    if data_cfg.tfds_name and files and "train" not in files:
        raise ConfigError(
            f"config.data.{files[0]} is a local file but config.data.train is not, while "
            f"config.data.tfds_name={data_cfg.tfds_name!r}: local files replace TFDS for every "
            "split, so set config.data.train too (or tfds_name='' / no local files)")
    return bool(data_cfg.tfds_name) and not files


def split_rows(data_cfg: ml_collections.ConfigDict, split: str,
               columns: tuple[str, ...] = ()) -> Iterator[readers.Row] | None:
    """Rows of split "train" | "validation" | "test", or None when it is not configured.

    columns: the config.data fields naming a column every row needs ("text_column", ...; an
    empty field is skipped): a TFDS dataset without one is a DataError before any row is read
    (a file's rows are checked one by one, as a row may be bad)."""
    if uses_tfds(data_cfg):
        name = data_cfg[f"{split}_split"]
        if not name:
            return None
        needed = {f"config.data.{field}": data_cfg[field] for field in columns if data_cfg[field]}
        return readers.read_tfds(data_cfg.tfds_name, name, data_cfg.tfds_data_dir or None, needed)
    path = data_cfg[split]
    return readers.read_rows(path) if path else None


def read_split(task, split: str) -> list | None:
    """task.read_examples(split): None when the split is not configured; a split that is but
    gives no example (a header-only or empty file, every row skipped as bad) is a DataError
    naming where it was read from: an empty validation set would otherwise silently mean no
    evaluation, and an empty train set a misleading "no training data"."""
    examples = task.read_examples(split)
    if examples is not None and not examples:
        fix = "" if split == "train" else " (or unset it: no evaluation)"
        raise readers.DataError(f"{split_source(task.config.data, split)} has no examples (no "
                                f"data rows, or only bad rows skipped): give one with "
                                f"examples{fix}")
    return examples


def split_source(data_cfg: ml_collections.ConfigDict, split: str) -> str:
    """Where a split's rows come from, for messages: the config field and its file or TFDS
    split ("config.data.validation='dev.json'")."""
    if uses_tfds(data_cfg):
        return (f"config.data.{split}_split={data_cfg[f'{split}_split']!r} of "
                f"tfds:{data_cfg.tfds_name}")
    return f"config.data.{split}={data_cfg[split]!r}"


class LabelNames:
    """Label names of a fine-tuning task, in id order, found once and then kept: those given by
    `set_labels` (a checkpoint's labels.json), else config.data.labels, else the ones the task's
    `_labels_in_train` finds in the train data (sorted)."""

    _labels: list[str] | None = None

    def set_labels(self, names: list[str]) -> None:
        self._labels = list(names)

    def label_names(self) -> list[str]:
        if self._labels is None:
            self._labels = self._given_labels() or self._labels_in_train()
        return self._labels

    def known_label_count(self) -> int | None:
        """The number of labels when it needs no reading of data (set, or in config), else None."""
        names = self._labels if self._labels is not None else self._given_labels()
        return len(names) if names else None

    def _given_labels(self) -> list[str]:
        """config.data.labels parsed; a name given twice is a ConfigError (it would be two
        output units, one of them never the target, and the predictions' names would clash)."""
        names = [x.strip() for x in self.config.data.labels.split(",") if x.strip()]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ConfigError(f"config.data.labels={self.config.data.labels!r} names "
                              f"{', '.join(map(repr, twice))} more than once; each label once")
        return names

    def _labels_in_train(self) -> list[str]:
        raise NotImplementedError

    def _train_rows(self, what: str, columns: tuple[str, ...] = ()) -> Iterator[readers.Row]:
        rows = split_rows(self.config.data, "train", columns)
        if rows is None:
            raise ConfigError(f"config.data.train (or tfds_name) is needed to find the {what}, "
                              "or give config.data.labels")
        return rows

    def _train_source(self) -> str:
        """Where the train rows come from, for messages: the file or the TFDS split."""
        data = self.config.data
        if uses_tfds(data):
            return f"tfds:{data.tfds_name}[{data.train_split}]"
        return data.train


def write_labels(workdir: str | None, task: str, names: list[str]) -> None:
    """W/labels.json: the id -> name mapping the checkpoint's head was trained with."""
    if not workdir:
        return
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, LABELS_FILE)
    if os.path.exists(path):
        old = read_labels(workdir)
        if old == names:
            return
        # Before the first checkpoint or kept best params nothing depends on the old set (a
        # first try that stopped at a data error, say): the new one replaces it.
        if checkpoint.has_checkpoint(workdir) or os.path.isdir(os.path.join(workdir, "best")):
            raise readers.DataError(
                f"{path} holds labels {old} but this run's data gives {names}: a resumed run "
                "must keep its label set (set config.data.labels, or use a new workdir)")
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"task": task, "labels": names}, f, indent=1)


def read_labels(workdir: str) -> list[str] | None:
    path = os.path.join(workdir, LABELS_FILE)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return list(json.load(f)["labels"])


def encoded_data(task, config: ml_collections.ConfigDict, workdir: str | None,
                 process_index: int, process_count: int,
                 label_names: list[str] | None = None) -> FinetuneData:
    """The FinetuneData of a task whose examples are read by `task.read_examples(split)` and
    encoded by `task.encode(tok, examples)` (classification, tagging). Writes W/labels.json
    (primary process) when the task has `label_names`, and keeps the validation examples in
    task.eval_examples for its metrics."""
    tok, tok_dir = load_tokenizer(config)
    if label_names is not None and process_index == 0:
        write_labels(workdir, task.name, label_names)
    train = read_split(task, "train")
    evaluation = read_split(task, "validation")
    task.eval_examples = evaluation or []
    return FinetuneData(
        tok, tok_dir, task.encode(tok, train) if train else None,
        task.encode(tok, evaluation) if evaluation else None,
        batch_size=config.batch_size // process_count, seed=config.seed,
        process_index=process_index, process_count=process_count)


PREFETCH_BATCHES = 2  # train batches a background thread keeps ready


class FinetuneData:
    """A base.TaskData over feature arrays held in memory.

    train, evaluation: {name: [N, ...] array}; batch_size: rows per process batch.
    """

    def __init__(self, tokenizer: tokenizers.Tokenizer, tokenizer_dir: str,
                 train: dict[str, np.ndarray] | None, evaluation: dict[str, np.ndarray] | None,
                 *, batch_size: int, seed: int, process_index: int = 0, process_count: int = 1):
        self.tokenizer, self.tokenizer_dir = tokenizer, tokenizer_dir
        self.batch_size, self.seed = batch_size, seed
        self.process_index, self.process_count = process_index, process_count
        self._train, self._eval = train, evaluation

    def train_iterator(self):
        if not self._train:
            raise readers.DataError("no training data: set config.data.train or tfds_name")
        n = len(next(iter(self._train.values())))
        if n == 0:
            raise readers.DataError("the training data has no usable examples")
        arrays = {**self._train, "example_weight": np.ones(n, np.float32),
                  "example_id": np.arange(n, dtype=np.int32)}
        rows = [{k: v[i] for k, v in arrays.items()} for i in range(n)]
        ds = grain.MapDataset.source(rows).seed(self.seed).shuffle().repeat(None)
        ds = ds[self.process_index::self.process_count]
        ds = ds.batch(self.batch_size, drop_remainder=True)
        # One reader thread and a short buffer: the rows are in memory, so a batch is a few
        # array copies. grain's default (16 threads filling 500 batches) held the GIL through
        # the trainer's tracing and compiling (benchmarks/finetune_bench.py: 1.5-3 s more
        # tracing per run; with the tests' XLA flags a tiny model's step took 6.5 s, not 1.3 s).
        return iter(ds.to_iter_dataset(grain.ReadOptions(num_threads=1,
                                                         prefetch_buffer_size=PREFETCH_BATCHES)))

    def check_eval(self) -> None:
        """Nothing can fail later: without validation data eval_batches() is simply empty."""

    def eval_batches(self) -> list[dict[str, np.ndarray]]:
        if not self._eval:
            return []
        return pad_batches(self._eval, self.batch_size * self.process_count,
                           self.process_index, self.process_count)


def pad_batches(arrays: dict[str, np.ndarray], global_batch: int, process_index: int = 0,
                process_count: int = 1) -> list[dict[str, np.ndarray]]:
    """[N, ...] arrays -> this process's rows of ceil(N / global_batch) batches, padded.

    Adds example_weight [B] (0 on padding) and example_id [B] (row in `arrays`, -1 on padding).
    """
    n = len(next(iter(arrays.values())))
    arrays = {**arrays, "example_weight": np.ones(n, np.float32),
              "example_id": np.arange(n, dtype=np.int32)}
    batches = []
    per = global_batch // process_count
    for start in range(0, n, global_batch):
        batch = {}
        for k, v in arrays.items():
            chunk = v[start: start + global_batch]
            pad = global_batch - len(chunk)
            if pad:
                fill = -1 if k == "example_id" else 0
                chunk = np.concatenate([chunk, np.full((pad,) + v.shape[1:], fill, v.dtype)])
            batch[k] = chunk[process_index * per: (process_index + 1) * per]
        batches.append(batch)
    return batches
