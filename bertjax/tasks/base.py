"""The Task interface: what changes between pretraining and fine-tuning (the loop does not).

A task gives the trainer (bertjax/train.py, bertjax/steps.py) five things:

  1. a model      `build_model(model_cfg) -> flax module`, and `dummy_batch(B, S)` to trace it;
  2. a loss       `loss_fn(model, params, batch, rng, deterministic) -> (loss_sums, metrics)`
                  with `loss_denominators(batch)`: the loss is sum_k loss_sums[k] / denominators[k];
  3. metrics      sums and counts, reduced on device, finalised on the host (`finalize_metrics`,
                  plus an optional prediction-based evaluation: `predict_fn` + `evaluate_predictions`);
  4. data         `data(config, workdir, process_index, process_count) -> TaskData`;
  5. init_from    which top-level parameter subtrees come from a pretrained model
                  (`pretrained_keys`); every other subtree is a freshly initialised head.

Why losses are (sum, denominator) pairs: the number of masked tokens (or of real examples) varies
between batches and between micro-batches. The denominators depend on the batch only, never on the
parameters, so the trainer computes them once for the whole global batch and every micro-batch's
gradient is that of loss_sums / full-batch denominators: gradient accumulation then gives exactly the
gradient of the full batch, and multi-device / multi-host reductions are plain sums.

Batches are dicts of numpy arrays whose leading axis is the batch axis (per process: global batch //
process_count rows). Every leaf is sharded along that axis. Eval batches must have the same shapes as
train batches (pad the last one, with zero weights, so nothing recompiles and padding is not counted).

Registering a task:

    @base.register_task("classification")
    class ClassificationTask(base.Task):
        ...

`get_task(name)` finds registered tasks, importing every module of `bertjax.tasks` on a miss.
A task reads its own options from the full run config (e.g. `config.classification.num_labels`);
library code below it still receives only the sub-config it needs.
"""

from __future__ import annotations

import abc
import difflib
import importlib
import pkgutil
from typing import Any, Iterable, Iterator, Protocol

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

Array = jax.Array
PyTree = Any
Batch = dict[str, np.ndarray]
# name -> (sum, count): metric value = sum / count after summing over micro-batches, devices, steps.
MetricSums = dict[str, tuple[Array, Array]]


class CheckpointableIterator(Protocol):
    """A grain DatasetIterator or anything with the same protocol."""

    def __next__(self) -> Batch: ...
    def __iter__(self) -> Iterator[Batch]: ...
    def get_state(self) -> dict: ...
    def set_state(self, state: dict) -> None: ...


class TaskData(Protocol):
    """What `Task.data` returns (`bertjax.data.pipeline.PretrainingData` is one)."""

    tokenizer: Any  # tokenizers.Tokenizer
    tokenizer_dir: str  # directory with vocab.txt + tokenizer.json, copied to W/tokenizer/

    def train_iterator(self) -> CheckpointableIterator:
        """Infinite iterator of per-process train batches, checkpointable via get/set_state."""

    def eval_batches(self) -> Iterable[Batch]:
        """Finite, deterministic held-out batches with the train batches' shapes."""

    def check_eval(self) -> None:
        """Raises if eval_batches() would fail; the trainer calls it before the first step when
        it will evaluate (PretrainingData: no held-out examples)."""


class Task(abc.ABC):
    """Head + loss + metrics + data. Subclasses set `name` and override the abstract methods.

    The instance is built once per run as `TaskClass(config)` from the full run config and is
    used as a static (Python-level) argument of the jitted steps: keep it free of arrays.
    """

    name: str = ""
    # Top-level parameter subtrees taken from `config.init_from`; everything else is a fresh head.
    # Subtrees listed here but absent from the source are an error, except those in
    # `optional_pretrained_keys` (e.g. a pretraining head missing from an imported encoder).
    pretrained_keys: tuple[str, ...] = ("bert",)
    optional_pretrained_keys: tuple[str, ...] = ()
    # Parameter subtrees ("nsp", "bert/pooler") that the loss never reads: training leaves them
    # as they started, so one that started untrained stays so (see `unused_params`).
    unused_param_paths: tuple[str, ...] = ()

    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config

    # -- model ------------------------------------------------------------------------------

    @abc.abstractmethod
    def build_model(self, model_cfg: ml_collections.ConfigDict) -> nn.Module:
        """The flax module whose params the trainer owns (top-level keys: "bert" + heads)."""

    @abc.abstractmethod
    def dummy_batch(self, batch_size: int, seq_len: int) -> Batch:
        """A batch with the real batch's keys, shapes and dtypes (zeros are fine)."""

    def unused_params(self) -> tuple[str, ...]:
        """Subtrees this run's loss gets no gradient for (default: `unused_param_paths`)."""
        return self.unused_param_paths

    def init_params(self, model: nn.Module, rng: Array, batch: Batch) -> PyTree:
        """Boxed (logically partitioned) params. Default: model.init(rng, **model_inputs(batch))."""
        return model.init({"params": rng, "dropout": rng}, **self.model_inputs(batch),
                          deterministic=True)["params"]

    def model_inputs(self, batch: Batch) -> dict[str, Any]:
        """The keyword arguments of model.__call__ taken from a batch (default: the encoder's)."""
        keys = ("input_ids", "token_type_ids", "attention_mask", "segment_ids", "position_ids")
        return {k: batch[k] for k in keys if k in batch}

    # -- loss and metrics -------------------------------------------------------------------

    @abc.abstractmethod
    def loss_fn(self, model: nn.Module, params: PyTree, batch: Batch, rng: Array,
                deterministic: bool) -> tuple[dict[str, Array], MetricSums]:
        """-> (loss_sums {term: scalar float32 sum over the batch}, metric sums).

        rng: a key for dropout (already folded with the step and micro-batch index).
        Metric sums should include each loss term (e.g. "mlm_loss": (sum, count)) so the
        logged losses are the true averages.
        """

    @abc.abstractmethod
    def loss_denominators(self, batch: Batch) -> dict[str, Array]:
        """{term: scalar float32} with the keys of loss_sums; a function of the batch only."""

    def finalize_metrics(self, means: dict[str, float]) -> dict[str, float]:
        """Host-side: derived metrics from the averaged ones (e.g. perplexity). Default: as is."""
        return dict(means)

    # -- optional prediction-based evaluation (e.g. F1 over spans, MCC) -----------------------

    def predict_fn(self, model: nn.Module, params: PyTree, batch: Batch) -> dict[str, Array] | None:
        """Per-example outputs for `evaluate_predictions`, leading axis = batch. None: not used."""
        return None

    def evaluate_predictions(self, predictions: list[dict[str, np.ndarray]],
                             batches: list[Batch]) -> dict[str, float]:
        """Host-side metrics from all eval predictions (numpy, global batches). Default: none."""
        return {}

    def eval_metric_names(self) -> frozenset[str] | None:
        """The names (without "eval/") an evaluation under this config can log: those of
        loss_fn's metrics, "loss", finalize_metrics' and evaluate_predictions'. The trainer
        checks config.eval_metric against them before anything is built (bertjax.best.validate).
        None (the default): not known up front, no check."""
        return None

    # -- data -------------------------------------------------------------------------------

    @abc.abstractmethod
    def data(self, config: ml_collections.ConfigDict, workdir: str | None, process_index: int,
             process_count: int) -> TaskData:
        """This process's share of the data: batches of config.batch_size // process_count rows."""

    def validate(self, config: ml_collections.ConfigDict) -> None:
        """Raises model.ConfigError naming the field for task options that cannot work."""


def sum_and_count(values: Array, weights: Array) -> tuple[Array, Array]:
    """Weighted sum and total weight, both float32 scalars (a MetricSums entry)."""
    weights = weights.astype(jnp.float32)
    return jnp.sum(values.astype(jnp.float32) * weights), jnp.sum(weights)


def cross_entropy(logits: Array, labels: Array) -> Array:
    """logits: [..., C] float, labels: [...] int -> per-position loss [...] (float32)."""
    return cross_entropy_and_hits(logits, labels)[0]


def cross_entropy_and_hits(logits: Array, labels: Array) -> tuple[Array, Array]:
    """Per-position loss [...] and hits [...] (1.0 where the label's logit is the largest).

    The hit test reuses the softmax's max instead of an argmax (a second pass over [..., C]
    that is slow on CPU for a 30k vocabulary); a label tied for the maximum counts as a hit.
    """
    logits = logits.astype(jnp.float32)
    top = jax.lax.stop_gradient(jnp.max(logits, axis=-1, keepdims=True))
    logz = jnp.log(jnp.sum(jnp.exp(logits - top), axis=-1)) + top[..., 0]
    picked = jnp.take_along_axis(logits, labels[..., None].astype(jnp.int32), axis=-1)[..., 0]
    return logz - picked, (picked >= top[..., 0]).astype(jnp.float32)


# -- registry ---------------------------------------------------------------------------------

_REGISTRY: dict[str, type[Task]] = {}


def register_task(name: str):
    """Class decorator: makes `get_task(name)` return the class."""
    def wrap(cls: type[Task]) -> type[Task]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"task {name!r} registered twice: {_REGISTRY[name]} and {cls}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls
    return wrap


def _import_all_tasks() -> None:
    package = importlib.import_module("bertjax.tasks")
    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"bertjax.tasks.{info.name}")


def get_task(name: str) -> type[Task]:
    """The Task class registered as `name` (the value of config.task)."""
    if name not in _REGISTRY:
        _import_all_tasks()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"config.task={name!r} is not a known task (known: {sorted(_REGISTRY)})"
                         f"{hint}")
    return _REGISTRY[name]


def available_tasks() -> list[str]:
    _import_all_tasks()
    return sorted(_REGISTRY)
