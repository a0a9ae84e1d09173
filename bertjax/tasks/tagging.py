"""Token classification (NER, POS): one label per word, predicted on its first WordPiece.

Data: rows with a word list (config.data.text_column, default "tokens") and a tag list
(config.data.label_column, default "tags"), e.g. JSONL {"tokens": [...], "tags": ["B-PER", ...]}.
Loss = sum over first pieces of CE / number of labelled words. Metrics: eval/word_accuracy (every
tag set; the one to read for POS) and host entity F1 over BIO spans (NER; it is 0 for tags
without B-/I- prefixes, such as POS tags).
"""

from __future__ import annotations

import jax.numpy as jnp
import ml_collections
import numpy as np

from bertjax.tasks import base, features, finetune_data, heads, metrics, readers

ENTITY_SCORES = ("f1", "precision", "recall")  # of metrics.entity_f1, logged as entity_<name>


def options(**overrides) -> ml_collections.ConfigDict:
    """config.tagging."""
    c = ml_collections.ConfigDict()
    c.classifier_dropout = ml_collections.config_dict.placeholder(float)  # None: model dropout.
    c.outside_label = "O"  # Label evaluation gives words cut off by max_seq_length (predict
    #   reads long texts in windows: no word is cut there).
    c.update(overrides)
    return c


@base.register_task("tagging")
class TaggingTask(finetune_data.LabelNames, base.Task):
    """config.tagging: see `options`; config.data: see finetune_data.data_config."""
    unused_param_paths = ("bert/pooler",)  # heads on the token states, not on [CLS]

    def __init__(self, config: ml_collections.ConfigDict):
        super().__init__(config)
        self.eval_examples: list[readers.Example] = []

    @property
    def labels(self) -> readers.LabelSpace:
        return readers.LabelSpace(self.label_names())

    def _labels_in_train(self) -> list[str]:
        data = self.config.data
        found = set()
        for row in self._train_rows("tag set", ("label_column",)):
            try:
                found.update(readers.tag_names(row.fields.get(data.label_column), data.label_column))
            except KeyError:
                continue  # a bad row, reported when the examples are read
        return readers.LabelSpace.from_labels(found).names

    def build_model(self, model_cfg):
        return heads.BertForTokenClassification(model_cfg, len(self.labels),
                                                self.config.tagging.classifier_dropout)

    def dummy_batch(self, batch_size, seq_len):
        b, s = batch_size, seq_len
        batch = {k: np.zeros((b, s), np.int32) for k in
                 ("input_ids", "token_type_ids", "attention_mask", "labels", "word_index")}
        batch["label_weights"] = np.zeros((b, s), np.float32)
        batch["num_words"] = np.zeros((b,), np.int32)
        batch["example_weight"] = np.ones((b,), np.float32)
        batch["example_id"] = np.zeros((b,), np.int32)
        return batch

    def _weights(self, batch):
        return (jnp.asarray(batch["label_weights"], jnp.float32)
                * jnp.asarray(batch["example_weight"], jnp.float32)[:, None])

    def loss_denominators(self, batch):
        return {"loss": jnp.sum(self._weights(batch))}

    def loss_fn(self, model, params, batch, rng, deterministic):
        out = model.apply({"params": params}, **self.model_inputs(batch),
                          deterministic=deterministic, rngs={"dropout": rng})
        logits, labels, w = out["logits"], batch["labels"], self._weights(batch)
        ce = base.cross_entropy(logits, labels)  # [B, S]
        correct = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
        m = {"loss": base.sum_and_count(ce, w), "word_accuracy": base.sum_and_count(correct, w)}
        return {"loss": m["loss"][0]}, m

    def predict_fn(self, model, params, batch):
        out = model.apply({"params": params}, **self.model_inputs(batch), deterministic=True)
        return {"pred": jnp.argmax(out["logits"], -1)}

    def word_labels(self, pred: np.ndarray, word_index: np.ndarray, num_words: int) -> list[str]:
        """pred, word_index: [S] -> one tag name per word."""
        names = self.labels.names
        outside = self.config.tagging.outside_label
        fill = names.index(outside) if outside in names else 0
        return [names[i] for i in features.words_from_tokens(pred, word_index, num_words, fill)]

    def encode_windows(self, tok, examples) -> dict[str, np.ndarray]:
        """Prediction features that cover every word (features.encode_tagging_windows)."""
        return features.encode_tagging_windows(tok, examples, self.config.data.max_seq_length)

    def window_word_labels(self, examples, windows: dict[str, np.ndarray],
                           pred: np.ndarray) -> list[list[str | None]]:
        """pred [W, S] over encode_windows' rows -> per example, one tag name per word; None
        for a word that has no WordPiece (the model never sees it)."""
        names = self.labels.names
        out: list[list[str | None]] = [[None] * len(e.text) for e in examples]
        rows, cols = np.nonzero(windows["word_index"] >= 0)
        for r, c in zip(rows.tolist(), cols.tolist()):
            out[windows["example_index"][r]][windows["word_index"][r, c]] = names[pred[r, c]]
        return out

    def evaluate_predictions(self, predictions, batches):
        gold, pred = [], []
        names = self.labels.names
        for p, b in zip(predictions, batches):
            for i in range(len(b["example_weight"])):
                if b["example_weight"][i] <= 0:
                    continue
                n = int(b["num_words"][i])
                words = self.word_labels(np.asarray(p["pred"][i]), b["word_index"][i], n)
                ex = self.eval_examples[int(b["example_id"][i])]
                gold.append([names[t] for t in ex.label])
                pred.append(words)
        scores = metrics.entity_f1(gold, pred)
        return {f"entity_{k}": scores[k] for k in ENTITY_SCORES}

    def eval_metric_names(self):
        return frozenset({"loss", "word_accuracy"} | {f"entity_{k}" for k in ENTITY_SCORES})

    def read_examples(self, split: str, with_labels: bool = True):
        data = self.config.data
        columns = ("text_column",) + (("label_column",) if with_labels else ())
        rows = finetune_data.split_rows(data, split, columns)
        if rows is None:
            return None
        return readers.tagging_examples(
            rows, tokens_column=data.text_column, tags_column=data.label_column,
            labels=self.labels, bad=readers.BadRows(data.on_bad_row, split),
            with_labels=with_labels, id_column=data.id_column or None)

    def encode(self, tok, examples):
        return features.encode_tagging(tok, examples, self.config.data.max_seq_length)

    def data(self, config, workdir, process_index, process_count):
        return finetune_data.encoded_data(self, config, workdir, process_index, process_count,
                                          self.labels.names)

    def validate(self, config):
        finetune_data.validate(config, layout="[CLS] word [SEP]")
        self.known_label_count()  # config.data.labels: each name once
