"""The pretraining input pipeline: prepared ArrayRecord shards -> fixed-shape masked batches.

    data = make_pretraining_data(config.data, seed=0, global_batch_size=256, workdir=workdir)
    it = data.train_iterator()        # infinite; next(it) -> batch (keys: PretrainingTask.dummy_batch)
    state = it.get_state()            # JSON-able; it.set_state(state) resumes exactly
    evals = data.eval_batches()       # finite, identical on every call, held-out documents only

The stream is a grain.MapDataset over *global batch numbers* t = 0, 1, 2, ...:
  epoch, k = divmod(t, steps_per_epoch), steps_per_epoch = num_train // global_batch_size;
  the epoch's order is a permutation of all training records keyed by (seed, epoch) (a global
  shuffle; the last num_train % global_batch_size records of each permutation are dropped);
  global batch t is positions [k*G, (k+1)*G) of that order, and process p takes its slice
  [k*G + p*B, k*G + (p+1)*B) -- hosts are disjoint and together cover every epoch.
Each batch is read from the grain ArrayRecordDataSource with one batched read, padded and masked as
whole-batch numpy ops (masking.py) keyed by (seed, record index, epoch) -- epoch fixed at 0 when
data.dynamic_masking is False. The iterator's state is grain's (the next t) plus the process layout;
t means the same global batch under any layout, so a run resumes on another number of processes.
"""

from __future__ import annotations

import dataclasses
import logging

import grain
import ml_collections
import numpy as np
import tokenizers

from bertjax.data import examples
from bertjax.data import masking
from bertjax.data import prepare as prepare_lib

log = logging.getLogger(__name__)

_EVAL_SALT = 0xE7A1


@dataclasses.dataclass(frozen=True)
class BatchSpec:
    """What the collate-and-mask step needs; plain values, so it pickles to grain workers."""

    max_seq_length: int
    max_predictions: int
    masked_lm_prob: float
    vocab_size: int
    specials: examples.Specials
    next_sentence: bool
    packing: bool
    is_continuation: np.ndarray | None  # [V] bool, for whole-word masking


def collate(records: list[bytes], spec: BatchSpec) -> dict[str, np.ndarray]:
    """Records ([label, *row] int32 bytes) -> padded unmasked arrays, all [B, S] but labels [B]."""
    B, S = len(records), spec.max_seq_length
    sizes = np.fromiter(map(len, records), np.int64, B) // 4
    flat = np.frombuffer(b"".join(records), "<i4")
    starts = np.cumsum(sizes) - sizes  # where each record (its label) begins in flat
    row_len = sizes - 1
    if row_len.max(initial=0) > S:
        raise ValueError(f"a record has {row_len.max()} tokens > max_seq_length={S}; the shards do "
                         "not match config.data.max_seq_length")
    body = np.ones(len(flat), bool)
    body[starts] = False
    rows = np.repeat(np.arange(B), row_len)
    cols = np.arange(int(row_len.sum())) - np.repeat(np.cumsum(row_len) - row_len, row_len)
    ids = np.zeros((B, S), np.int32)  # [PAD] is id 0 in BERT vocabularies; set explicitly below
    ids[:] = spec.specials.pad
    ids[rows, cols] = flat[body]
    col = np.arange(S)[None, :]
    attention = col < row_len[:, None]
    batch = {"input_ids": ids, "attention_mask": attention.astype(np.int32),
             "token_type_ids": np.zeros((B, S), np.int32)}
    if spec.next_sentence:
        is_sep = ids == spec.specials.sep
        after_first_sep = (np.cumsum(is_sep, axis=1) - is_sep) >= 1
        batch["token_type_ids"] = (after_first_sep & attention).astype(np.int32)
        batch["next_sentence_labels"] = flat[starts].astype(np.int32)
    if spec.packing:
        is_cls = (ids == spec.specials.cls) & attention
        batch["segment_ids"] = (np.cumsum(is_cls, axis=1) * attention).astype(np.int32)
        last_cls = np.maximum.accumulate(np.where(is_cls, col, 0), axis=1)
        batch["position_ids"] = ((col - last_cls) * attention).astype(np.int32)
    return batch


def make_batch(records: list[bytes], keys: np.ndarray, spec: BatchSpec) -> dict[str, np.ndarray]:
    """Collates and masks one batch; keys: [B] from masking.example_keys."""
    batch = collate(records, spec)
    batch.update(masking.mask_batch(
        batch["input_ids"], batch["attention_mask"], keys, vocab_size=spec.vocab_size,
        cls_id=spec.specials.cls, sep_id=spec.specials.sep, mask_id=spec.specials.mask,
        max_predictions=spec.max_predictions, masked_lm_prob=spec.masked_lm_prob,
        is_continuation=spec.is_continuation))
    return batch


class _TrainBatches:
    """t (global batch number) -> this process's batch. Picklable; opens its source lazily."""

    def __init__(self, paths, num_records, spec, *, seed, global_batch_size, process_index,
                 process_count, dynamic_masking):
        self.paths, self.n, self.spec = list(paths), num_records, spec
        self.seed, self.dynamic = seed, dynamic_masking
        self.per_host = global_batch_size // process_count
        self.global_batch_size = global_batch_size
        self.offset = process_index * self.per_host
        self.steps_per_epoch = num_records // global_batch_size
        self._source = None
        self._perm = (None, None)

    def __getstate__(self):
        return {**self.__dict__, "_source": None, "_perm": (None, None)}

    def order(self, epoch: int) -> np.ndarray:
        """[num_records] the epoch's global order: a permutation keyed by (seed, epoch)."""
        cached_epoch, perm = self._perm
        if cached_epoch != epoch:
            perm = np.random.default_rng([self.seed, epoch, 0x5A5F]).permutation(self.n)
            self._perm = (epoch, perm)
        return perm

    def record_indices(self, t: int) -> tuple[np.ndarray, int]:
        epoch, k = divmod(int(t), self.steps_per_epoch)
        start = k * self.global_batch_size + self.offset
        return self.order(epoch)[start:start + self.per_host], epoch

    def __call__(self, t: int) -> dict[str, np.ndarray]:
        if self._source is None:
            self._source = grain.sources.ArrayRecordDataSource(self.paths)
        indices, epoch = self.record_indices(t)
        records = self._source.__getitems__(indices.tolist())
        keys = masking.example_keys(self.seed, indices, epoch if self.dynamic else 0)
        return make_batch(records, keys, self.spec)


class DataIterator(grain.DatasetIterator):
    """grain's iterator plus the process layout in its state (logged when it changes on restore)."""

    def __init__(self, inner: grain.DatasetIterator, layout: dict):
        super().__init__()
        self._inner = inner
        self._layout = layout

    def __next__(self) -> dict[str, np.ndarray]:
        return next(self._inner)

    def get_state(self) -> dict:
        return {**self._layout, "grain": self._inner.get_state()}

    def set_state(self, state: dict) -> None:
        """The saved position is the next global batch number t, the same examples under any
        process layout (each process takes its slice), so a state saved by another number of
        processes resumes the same stream."""
        if state.get("process_count") != self._layout["process_count"]:
            log.info("data stream saved by %s processes, resumed by %d at the same global batch",
                     state.get("process_count"), self._layout["process_count"])
        for field in ("shards", "global_batch_size", "seed"):
            if state.get(field) != self._layout[field]:
                log.warning("data iterator state has %s=%r, this run %r: the resumed stream differs",
                            field, state.get(field), self._layout[field])
        self._inner.set_state(state["grain"])

    def start_prefetch(self) -> None:
        if hasattr(self._inner, "start_prefetch"):
            self._inner.start_prefetch()


class PretrainingData:
    """Prepared data + tokenizer for one process. See the module docstring."""

    def __init__(self, cfg: ml_collections.ConfigDict, prepared: prepare_lib.Prepared, *, seed: int,
                 global_batch_size: int, process_index: int, process_count: int):
        if global_batch_size <= 0 or global_batch_size % process_count:
            raise ValueError(f"global_batch_size={global_batch_size} must be a positive multiple "
                             f"of process_count={process_count}")
        if not 0 <= process_index < process_count:
            raise ValueError(f"process_index={process_index} not in [0, {process_count})")
        self.cfg, self.prepared = cfg, prepared
        self.tokenizer: tokenizers.Tokenizer = prepared.tokenizer
        self.tokenizer_dir: str = prepared.tokenizer_dir
        self.seed, self.global_batch_size = seed, global_batch_size
        self.process_index, self.process_count = process_index, process_count
        self.batch_size = global_batch_size // process_count
        self.num_train = prepared.meta["num_train"]
        self.steps_per_epoch = self.num_train // global_batch_size
        if self.steps_per_epoch == 0:
            raise prepare_lib.DataConfigError(
                f"config.data.corpus={cfg.corpus!r} gives {self.num_train} training examples, fewer "
                f"than one global batch of {global_batch_size}")
        cont = None
        if cfg.whole_word_masking:
            vocab = self.tokenizer.get_vocab(with_added_tokens=False)
            cont = np.zeros(self.tokenizer.get_vocab_size(), bool)
            cont[[i for w, i in vocab.items() if w.startswith("##")]] = True
        self.spec = BatchSpec(
            max_seq_length=cfg.max_seq_length, max_predictions=cfg.max_predictions_per_seq,
            masked_lm_prob=cfg.masked_lm_prob, vocab_size=self.tokenizer.get_vocab_size(),
            specials=examples.Specials(**prepared.meta["specials"]),
            next_sentence=cfg.next_sentence, packing=cfg.packing, is_continuation=cont)
        self._eval = None

    def train_batches(self) -> _TrainBatches:
        return _TrainBatches(self.prepared.train_paths, self.num_train, self.spec, seed=self.seed,
                             global_batch_size=self.global_batch_size,
                             process_index=self.process_index, process_count=self.process_count,
                             dynamic_masking=self.cfg.dynamic_masking)

    def train_dataset(self) -> grain.IterDataset:
        """The infinite grain dataset of this process's batches."""
        ds = grain.MapDataset.range(0, 2**62).map(self.train_batches())
        prefetch = self.cfg.prefetch_batches
        ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=1 if prefetch else 0,
                                                  prefetch_buffer_size=prefetch))
        if self.cfg.worker_count:
            from absl import flags  # grain's workers read absl flags; outside an absl app, use defaults
            if not flags.FLAGS.is_parsed():
                flags.FLAGS.mark_as_parsed()
            ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=self.cfg.worker_count))
        return ds

    def train_iterator(self) -> DataIterator:
        layout = {"process_index": self.process_index, "process_count": self.process_count,
                  "global_batch_size": self.global_batch_size, "seed": self.seed,
                  "shards": self.prepared.meta["key"]}
        return DataIterator(iter(self.train_dataset()), layout)

    def check_eval(self) -> None:
        """Raises DataConfigError unless there are held-out examples to evaluate on (the trainer
        calls this before its first step, so a run does not train for hours and then fail)."""
        if self.prepared.meta["num_eval"] == 0:
            raise prepare_lib.DataConfigError(
                f"no held-out examples: corpus {self.cfg.corpus!r} gave 0 eval examples "
                f"({self.prepared.meta['num_train']} train) at config.data.eval_fraction="
                f"{self.cfg.eval_fraction}; raise it (or set config.num_eval_batches=0 to "
                "train without evaluating)")
        if self.cfg.num_eval_examples <= 0:
            raise prepare_lib.DataConfigError(
                f"config.data.num_eval_examples={self.cfg.num_eval_examples}: must be > 0 (or "
                "set config.num_eval_batches=0 to train without evaluating)")

    def eval_batches(self) -> list[dict[str, np.ndarray]]:
        """Held-out batches: the first num_eval_examples eval records, fixed masks, same every call.

        Whole global batches only; with fewer records than one global batch, the records are
        repeated to fill one. This process gets its slice of each global batch.
        """
        if self._eval is not None:
            return self._eval
        self.check_eval()
        n = min(self.prepared.meta["num_eval"], self.cfg.num_eval_examples)
        G, B = self.global_batch_size, self.batch_size
        if n < G:
            log.warning("only %d held-out examples; repeating them to fill one global batch of %d",
                        n, G)
            order = np.arange(G) % n
        else:
            order = np.arange(n - n % G)
        source = grain.sources.ArrayRecordDataSource(self.prepared.eval_paths)
        batches = []
        for start in range(0, len(order), G):
            idx = order[start + self.process_index * B: start + (self.process_index + 1) * B]
            keys = masking.example_keys(self.seed ^ _EVAL_SALT, idx, 0)
            batches.append(make_batch(source.__getitems__(idx.tolist()), keys, self.spec))
        self._eval = batches
        return batches


def make_pretraining_data(data_cfg: ml_collections.ConfigDict, *, seed: int, global_batch_size: int,
                          workdir: str | None, process_index: int = 0, process_count: int = 1,
                          model_vocab_size: int | None = None) -> PretrainingData:
    """Prepares (or reuses) the shards for data_cfg and returns this process's PretrainingData.

    model_vocab_size: config.model.vocab_size, checked against the vocabulary before preparing."""
    prepared = prepare_lib.prepare(data_cfg, workdir, model_vocab_size)
    return PretrainingData(data_cfg, prepared, seed=seed, global_batch_size=global_batch_size,
                           process_index=process_index, process_count=process_count)
