"""Sequence classification on the pooled [CLS] vector: single texts or pairs, and three kinds

  "single"      one class of C (softmax cross-entropy);            labels [B] int32
  "regression"  one real value (num_labels 1, squared error);      labels [B] float32
  "multilabel"  any subset of C classes (per-class sigmoid BCE);   labels [B, C] float32

Loss = sum over examples of weight * loss / sum of weights (eval padding has weight 0).
Host metrics (config.classification.metrics, logged as eval/<name>) come from bertjax.tasks.metrics.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from bertjax import best
from bertjax.model import ConfigError
from bertjax.tasks import base, features, finetune_data, heads, metrics, readers

KINDS = ("single", "regression", "multilabel")


def options(**overrides) -> ml_collections.ConfigDict:
    """config.classification."""
    c = ml_collections.ConfigDict()
    c.kind = "single"  # single | regression | multilabel.
    c.classifier_dropout = ml_collections.config_dict.placeholder(float)  # None: model dropout.
    c.metrics = ("accuracy",)  # Host metrics: accuracy f1 (2 classes) f1_macro f1_micro matthews |
    #   pearson spearman (regression) | f1_micro f1_macro subset_accuracy (multilabel).
    c.multilabel_threshold = 0.5  # Multi-label: a class is predicted when sigmoid > this.
    c.update(overrides)
    return c


@base.register_task("classification")
class ClassificationTask(finetune_data.LabelNames, base.Task):
    """config.classification: see `options`; config.data: see finetune_data.data_config."""

    def __init__(self, config: ml_collections.ConfigDict):
        super().__init__(config)
        self.eval_examples: list[readers.Example] = []

    @property
    def opts(self) -> ml_collections.ConfigDict:
        return self.config.classification

    @property
    def kind(self) -> str:
        return self.opts.kind

    # -- labels -------------------------------------------------------------------------------

    @property
    def labels(self) -> readers.LabelSpace | None:
        return None if self.kind == "regression" else readers.LabelSpace(self.label_names())

    def _labels_in_train(self) -> list[str]:
        data = self.config.data
        if finetune_data.uses_tfds(data):
            names = readers.tfds_label_names(data.tfds_name, data.label_column,
                                             data.tfds_data_dir or None)
            if names:
                return [str(i) for i in range(len(names))]  # TFDS stores class ids
        found = []
        for row in self._train_rows("label set", ("label_column",)):
            value = row.fields.get(data.label_column)
            if value is None:
                continue  # reported as a bad row when the examples are read
            if self.kind == "multilabel":
                found.extend(readers.split_multilabel(value, data.label_separator))
            elif name := readers.label_string(value):  # an empty one is a bad row, not a class
                found.append(name)
        if not found:
            raise readers.DataError(f"no labels in column {data.label_column!r} of "
                                    f"{self._train_source()}")
        return readers.LabelSpace.from_labels(found).names

    @property
    def num_labels(self) -> int:
        return 1 if self.kind == "regression" else len(self.labels)

    # -- model --------------------------------------------------------------------------------

    def build_model(self, model_cfg):
        return heads.BertForSequenceClassification(model_cfg, self.num_labels,
                                                   self.opts.classifier_dropout)

    def dummy_batch(self, batch_size, seq_len):
        b, s = batch_size, seq_len
        batch = {k: np.zeros((b, s), np.int32)
                 for k in ("input_ids", "token_type_ids", "attention_mask")}
        batch["labels"] = self._label_array(np.zeros((0,)), b)
        batch["example_weight"] = np.ones((b,), np.float32)
        batch["example_id"] = np.zeros((b,), np.int32)
        return batch

    def _label_array(self, _, n: int) -> np.ndarray:
        if self.kind == "regression":
            return np.zeros((n,), np.float32)
        if self.kind == "multilabel":
            return np.zeros((n, self.num_labels), np.float32)
        return np.zeros((n,), np.int32)

    # -- loss -----------------------------------------------------------------------------------

    def loss_denominators(self, batch):
        return {"loss": jnp.sum(jnp.asarray(batch["example_weight"], jnp.float32))}

    def per_example_loss(self, logits, labels):
        """logits [B, C], labels per kind -> [B] float32."""
        if self.kind == "regression":
            return jnp.square(logits[:, 0] - labels.astype(jnp.float32))
        if self.kind == "multilabel":
            return jnp.sum(optax.sigmoid_binary_cross_entropy(logits, labels), axis=-1)
        return base.cross_entropy(logits, labels)

    def loss_fn(self, model, params, batch, rng, deterministic):
        out = model.apply({"params": params}, **self.model_inputs(batch),
                          deterministic=deterministic, rngs={"dropout": rng})
        logits, labels, w = out["logits"], batch["labels"], batch["example_weight"]
        loss = self.per_example_loss(logits, labels)
        metrics_ = {"loss": base.sum_and_count(loss, w)}
        if self.kind == "single":
            correct = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
            metrics_["accuracy"] = base.sum_and_count(correct, w)
        return {"loss": metrics_["loss"][0]}, metrics_

    def eval_metric_names(self):
        device = ("loss", "accuracy") if self.kind == "single" else ("loss",)  # loss_fn's
        return frozenset(device) | frozenset(self.opts.metrics)  # + evaluate_predictions'

    # -- prediction-based evaluation ------------------------------------------------------------

    def predict_fn(self, model, params, batch):
        out = model.apply({"params": params}, **self.model_inputs(batch), deterministic=True)
        return {"logits": out["logits"]}

    def predictions(self, logits: np.ndarray) -> np.ndarray:
        """logits [N, C] -> class ids [N] | values [N] | indicators [N, C]."""
        if self.kind == "regression":
            return logits[:, 0]
        if self.kind == "multilabel":
            return (jax.nn.sigmoid(logits) > self.opts.multilabel_threshold).astype(np.int32)
        return np.argmax(logits, -1)

    def evaluate_predictions(self, predictions, batches):
        logits = np.concatenate([np.asarray(p["logits"]) for p in predictions])
        keep = np.concatenate([np.asarray(b["example_weight"]) for b in batches]) > 0
        labels = np.concatenate([np.asarray(b["labels"]) for b in batches])[keep]
        preds = np.asarray(self.predictions(logits[keep]))
        table = {"single": metrics.CLASSIFICATION, "regression": metrics.REGRESSION,
                 "multilabel": metrics.MULTILABEL}[self.kind]
        return {name: table[name](labels, preds) for name in self.opts.metrics}

    # -- data -----------------------------------------------------------------------------------

    def read_examples(self, split: str, with_labels: bool = True) -> list[readers.Example] | None:
        data = self.config.data
        columns = ("text_column", "text_pair_column") + (("label_column",) if with_labels else ())
        rows = finetune_data.split_rows(data, split, columns)
        if rows is None:
            return None
        return readers.text_examples(
            rows, kind=self.kind, text_column=data.text_column,
            text_pair_column=data.text_pair_column or None, label_column=data.label_column,
            labels=self.labels, bad=readers.BadRows(data.on_bad_row, split),
            with_labels=with_labels, label_separator=data.label_separator,
            id_column=data.id_column or None)

    def encode(self, tok, examples: list[readers.Example]) -> dict[str, np.ndarray]:
        arrays = features.encode_texts(tok, examples, self.config.data.max_seq_length)
        labels = self._label_array(None, len(examples))
        for i, e in enumerate(examples):
            if e.label is None:
                continue
            if self.kind == "multilabel":
                labels[i, e.label] = 1.0
            else:
                labels[i] = e.label
        arrays["labels"] = labels
        return arrays

    def data(self, config, workdir, process_index, process_count):
        if self.kind == "single":
            self._check_metrics_fit(len(self.labels))
        return finetune_data.encoded_data(
            self, config, workdir, process_index, process_count,
            self.labels.names if self.labels is not None else None)

    def validate(self, config):
        pairs = bool(config.data.text_pair_column)
        finetune_data.validate(config, layout="[CLS] a [SEP] b [SEP]" if pairs
                               else "[CLS] text [SEP]")
        if self.opts.kind not in KINDS:
            raise ConfigError(f"config.classification.kind={self.opts.kind!r} is not one of {KINDS}")
        table = {"single": metrics.CLASSIFICATION, "regression": metrics.REGRESSION,
                 "multilabel": metrics.MULTILABEL}[self.opts.kind]
        for name in self.opts.metrics:
            if name not in table:
                raise ConfigError(f"config.classification.metrics: {name!r} is not one of "
                                  f"{sorted(table)} for kind {self.opts.kind!r}")
        metric = best.metric_name(config)
        if metric in table and metric not in self.eval_metric_names():
            raise ConfigError(f"config.eval_metric={config.eval_metric!r} is computed only when "
                              f"config.classification.metrics lists it (now "
                              f"{tuple(self.opts.metrics)}); add it there")
        count = self.known_label_count()
        if self.opts.kind == "single" and count is not None:
            self._check_metrics_fit(count)

    def _check_metrics_fit(self, num_labels: int) -> None:
        """Binary-only metrics (f1) on 3+ classes: a ConfigError now, not a crash at eval.

        validate checks when the label count is known without reading data (config.data.labels);
        otherwise `data` checks once the train labels are read, before the first step.
        """
        if num_labels <= 2:
            return
        for name in self.opts.metrics:
            if name in metrics.BINARY_ONLY:
                raise ConfigError(
                    f"config.classification.metrics: {name!r} is the F1 of a binary task but the "
                    f"labels have {num_labels} classes; use 'f1_macro' or 'f1_micro'")
