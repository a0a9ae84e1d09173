"""Extractive QA (SQuAD v1.1 / v2.0): start and end logits per token, over doc-stride windows.

Loss = (CE(start_logits, start) + CE(end_logits, end)) / 2 per window (google-research/bert);
windows without the answer point at [CLS] (position 0). Host metrics: SQuAD exact match and F1
(v1.1 or v2.0 scoring, as config.squad.version_2 says) after n-best decoding with the max-context
rule (bertjax.tasks.squad_decode).
"""

from __future__ import annotations

import logging

import jax.numpy as jnp
import ml_collections
import numpy as np

from bertjax import best
from bertjax.model import ConfigError
from bertjax.tasks import base, features, finetune_data, heads, metrics, readers, squad_decode


def options(**overrides) -> ml_collections.ConfigDict:
    """config.squad."""
    c = ml_collections.ConfigDict()
    c.version_2 = False  # True: SQuAD v2.0, unanswerable questions allowed and v2.0 scoring.
    c.doc_stride = 128  # Tokens between the starts of consecutive context windows.
    c.max_query_length = 64  # Questions are cut to this many tokens.
    c.n_best_size = 20  # Start/end candidates per window.
    c.max_answer_length = 30  # Longest answer in tokens.
    c.null_threshold = 0.0  # v2.0: answer "" when null score - best span score > this.
    c.update(overrides)
    return c


def check_metric_has_questions(config: ml_collections.ConfigDict,
                               evaluation: list[readers.QAExample]) -> None:
    """A v2.0 breakdown as config.eval_metric (has_ans_* / no_ans_*) is scored only when the dev
    set has questions of its kind (metrics.squad_scores): ConfigError now, when the dev set is
    read, rather than at the first evaluation after training began."""
    metric = best.metric_name(config)
    kind = next((k for k in metrics.SQUAD_BREAKDOWN if metric.startswith(k + "_")), None)
    if kind is None or not evaluation:
        return
    answerable = [bool(e.answer_texts) for e in evaluation]  # squad_scores' has_ans rule
    if any(answerable) if kind == "has_ans" else not all(answerable):
        return
    what = "answerable" if kind == "has_ans" else "unanswerable"
    raise ConfigError(
        f"config.eval_metric={config.eval_metric!r} scores the dev set's {what} questions, but "
        f"{finetune_data.split_source(config.data, 'validation')} has no {what} question (all "
        f"{len(evaluation)} are {'un' if what == 'answerable' else ''}answerable): choose "
        f"another metric (f1, exact_match), or a dev set with {what} questions")


@base.register_task("span_qa")
class SpanQATask(base.Task):
    unused_param_paths = ("bert/pooler",)  # heads on the token states, not on [CLS]

    def __init__(self, config):
        super().__init__(config)
        self.eval_examples: list[readers.QAExample] = []
        self.eval_windows: features.QAWindows | None = None

    def build_model(self, model_cfg):
        return heads.BertForQuestionAnswering(model_cfg)

    def dummy_batch(self, batch_size, seq_len):
        b, s = batch_size, seq_len
        batch = {k: np.zeros((b, s), np.int32)
                 for k in ("input_ids", "token_type_ids", "attention_mask")}
        for k in ("start_positions", "end_positions", "example_index", "example_id"):
            batch[k] = np.zeros((b,), np.int32)
        batch["example_weight"] = np.ones((b,), np.float32)
        return batch

    def loss_denominators(self, batch):
        return {"loss": jnp.sum(jnp.asarray(batch["example_weight"], jnp.float32))}

    def loss_fn(self, model, params, batch, rng, deterministic):
        out = model.apply({"params": params}, **self.model_inputs(batch),
                          deterministic=deterministic, rngs={"dropout": rng})
        w = batch["example_weight"]
        ce = 0.5 * (base.cross_entropy(out["start_logits"], batch["start_positions"])
                    + base.cross_entropy(out["end_logits"], batch["end_positions"]))
        hit = ((jnp.argmax(out["start_logits"], -1) == batch["start_positions"])
               & (jnp.argmax(out["end_logits"], -1) == batch["end_positions"]))
        m = {"loss": base.sum_and_count(ce, w),
             "window_span_accuracy": base.sum_and_count(hit.astype(jnp.float32), w)}
        return {"loss": m["loss"][0]}, m

    def predict_fn(self, model, params, batch):
        out = model.apply({"params": params}, **self.model_inputs(batch), deterministic=True)
        return {"start_logits": out["start_logits"], "end_logits": out["end_logits"]}

    def decode(self, examples, windows, start_logits, end_logits) -> list[squad_decode.Answer]:
        o = self.config.squad
        return squad_decode.decode(
            [e.context for e in examples], windows.arrays["example_index"], start_logits,
            end_logits, windows.offsets, windows.max_context, n_best_size=o.n_best_size,
            max_answer_length=o.max_answer_length, version_2=o.version_2,
            null_threshold=o.null_threshold)

    def evaluate_predictions(self, predictions, batches):
        keep = np.concatenate([np.asarray(b["example_weight"]) for b in batches]) > 0
        starts = np.concatenate([np.asarray(p["start_logits"]) for p in predictions])[keep]
        ends = np.concatenate([np.asarray(p["end_logits"]) for p in predictions])[keep]
        answers = self.decode(self.eval_examples, self.eval_windows, starts, ends)
        golds = {e.uid: e.answer_texts for e in self.eval_examples}
        preds = {e.uid: a.text for e, a in zip(self.eval_examples, answers)}
        return metrics.squad_scores(golds, preds, version_2=self.config.squad.version_2)

    def eval_metric_names(self):
        return frozenset({"loss", "window_span_accuracy"}
                         | metrics.squad_score_names(self.config.squad.version_2))

    def read_examples(self, split, with_labels=True):
        data = self.config.data
        rows = finetune_data.split_rows(data, split)
        if rows is None:
            return None
        return readers.qa_examples(rows, bad=readers.BadRows(data.on_bad_row, split),
                                   allow_no_answer=self.config.squad.version_2,
                                   with_labels=with_labels)

    def encode(self, tok, examples) -> features.QAWindows:
        o = self.config.squad
        return features.encode_qa(tok, examples, max_seq_length=self.config.data.max_seq_length,
                                  doc_stride=o.doc_stride, max_query_length=o.max_query_length)

    def data(self, config, workdir, process_index, process_count):
        tok, tok_dir = finetune_data.load_tokenizer(config)
        train = finetune_data.read_split(self, "train")
        evaluation = finetune_data.read_split(self, "validation")
        check_metric_has_questions(config, evaluation or [])
        self.eval_examples = evaluation or []
        self.eval_windows = self.encode(tok, evaluation) if evaluation else None
        return finetune_data.FinetuneData(
            tok, tok_dir, self.encode(tok, train).arrays if train else None,
            self.eval_windows.arrays if evaluation else None,
            batch_size=config.batch_size // process_count, seed=config.seed,
            process_index=process_index, process_count=process_count)

    def validate(self, config):
        """config.squad against config.data.max_seq_length, as features.encode_qa builds the
        windows: [CLS] question [SEP] context [SEP], the question cut to max_query_length, the
        rest (room) for the context, windows starting doc_stride tokens apart."""
        o, seq = config.squad, config.data.max_seq_length
        for name in ("max_query_length", "doc_stride", "n_best_size", "max_answer_length"):
            if o[name] < 1:
                why = " (windows would never advance)" if name == "doc_stride" else ""
                raise ConfigError(f"config.squad.{name} must be >= 1, got {o[name]!r}{why}")
        room = seq - o.max_query_length - 3
        if room < 1:
            raise ConfigError(
                f"config.data.max_seq_length={seq} leaves no room for the context after "
                f"config.squad.max_query_length={o.max_query_length} question tokens and "
                f"[CLS] [SEP] [SEP]: max_seq_length must be > max_query_length + 3")
        if o.doc_stride > room:
            # encode_qa (as google-research/bert) advances by min(window length, doc_stride):
            # nothing is skipped, but the stride asked for is not the one used. A warning, not an
            # error: the reference runs such configs (S=128 with the defaults 64 / 128).
            logging.warning(
                "config.squad.doc_stride=%d exceeds the %d context tokens a window holds after a "
                "full question (config.data.max_seq_length=%d - config.squad.max_query_length=%d "
                "- 3): windows of long contexts will not overlap", o.doc_stride, room, seq,
                o.max_query_length)
        finetune_data.validate(config, layout="[CLS] question [SEP] context [SEP]")
