"""Pretraining: masked LM (+ next-sentence prediction), as google-research/bert.

Loss = mlm_loss + nsp_loss, where
  mlm_loss = sum over masked positions of weight * CE(logits, id) / sum of weights,
  nsp_loss = sum over sequences of CE(nsp_logits, label) / number of sequences.
Without NSP (config.data.next_sentence=False, e.g. with packing) only the MLM term remains.
"""

from __future__ import annotations

import logging
import os

import jax.numpy as jnp
import ml_collections
import numpy as np

from bertjax import model as model_lib
from bertjax.data import tokenizer as tokenizer_lib
from bertjax.tasks import base


def use_init_from_tokenizer(config: ml_collections.ConfigDict) -> None:
    """Pretraining on from config.init_from (BERT's phase 2, or continued pretraining of an
    imported model) must keep its vocabulary: the embedding rows are indexed by it. With
    config.data.tokenizer unset, sets it to init_from's tokenizer (recorded in W/config.json);
    a tokenizer given that has another vocabulary is a ConfigError."""
    init_from = config.get("init_from")
    found = tokenizer_lib.bundled_dir(init_from) if init_from else None
    if found is None:
        return
    if not config.data.tokenizer:
        logging.info("using config.init_from's tokenizer %s", found)
        config.data.tokenizer = found
        return
    given = tokenizer_lib.load_tokenizer(os.path.expanduser(config.data.tokenizer))
    theirs = tokenizer_lib.load_tokenizer(found)
    if given.get_vocab() != theirs.get_vocab():
        raise model_lib.ConfigError(
            f"config.data.tokenizer={config.data.tokenizer!r} has another vocabulary than "
            f"config.init_from's ({found}), whose embedding rows the run starts from: unset "
            "config.data.tokenizer to use init_from's")


@base.register_task("pretraining")
class PretrainingTask(base.Task):
    pretrained_keys = ("bert", "mlm", "nsp")
    # An imported encoder may lack the NSP head (e.g. RoBERTa-style MLM-only models).
    optional_pretrained_keys = ("nsp",)

    @property
    def next_sentence(self) -> bool:
        return bool(self.config.data.get("next_sentence", True))

    def unused_params(self) -> tuple[str, ...]:
        # Without NSP (MLM only) nothing reads the pooler or the NSP head.
        return () if self.next_sentence else ("bert/pooler", "nsp")

    def build_model(self, model_cfg):
        return model_lib.BertForPreTraining(model_cfg)

    def dummy_batch(self, batch_size: int, seq_len: int) -> base.Batch:
        p = int(self.config.data.get("max_predictions_per_seq", 20))
        b, s = batch_size, seq_len
        batch = {
            "input_ids": np.zeros((b, s), np.int32),
            "token_type_ids": np.zeros((b, s), np.int32),
            "attention_mask": np.ones((b, s), np.int32),
            "masked_lm_positions": np.zeros((b, p), np.int32),
            "masked_lm_ids": np.zeros((b, p), np.int32),
            "masked_lm_weights": np.zeros((b, p), np.float32),
        }
        if self.next_sentence:
            batch["next_sentence_labels"] = np.zeros((b,), np.int32)
        if self.config.data.get("packing", False):
            batch["segment_ids"] = np.zeros((b, s), np.int32)
            batch["position_ids"] = np.zeros((b, s), np.int32)
        return batch

    def model_inputs(self, batch):
        inputs = super().model_inputs(batch)
        inputs["masked_lm_positions"] = batch["masked_lm_positions"]
        return inputs

    def loss_denominators(self, batch):
        den = {"mlm_loss": jnp.sum(jnp.asarray(batch["masked_lm_weights"], jnp.float32))}
        if "next_sentence_labels" in batch:
            den["nsp_loss"] = jnp.asarray(batch["next_sentence_labels"].shape[0], jnp.float32)
        return den

    def loss_fn(self, model, params, batch, rng, deterministic):
        out = model.apply({"params": params}, **self.model_inputs(batch),
                          deterministic=deterministic, rngs={"dropout": rng})
        logits = out["mlm_logits"]  # [B, P, V] float32
        ids, weights = batch["masked_lm_ids"], batch["masked_lm_weights"]
        mlm_ce, correct = base.cross_entropy_and_hits(logits, ids)  # [B, P] each
        metrics = {
            "mlm_loss": base.sum_and_count(mlm_ce, weights),
            "mlm_accuracy": base.sum_and_count(correct, weights),
        }
        sums = {"mlm_loss": metrics["mlm_loss"][0]}
        if "next_sentence_labels" in batch:
            labels = batch["next_sentence_labels"]
            ones = jnp.ones(labels.shape, jnp.float32)
            nsp_logits = out["nsp_logits"]  # [B, 2]
            nsp_ce = base.cross_entropy(nsp_logits, labels)
            metrics["nsp_loss"] = base.sum_and_count(nsp_ce, ones)
            metrics["nsp_accuracy"] = base.sum_and_count(
                (jnp.argmax(nsp_logits, -1) == labels).astype(jnp.float32), ones)
            sums["nsp_loss"] = metrics["nsp_loss"][0]
        return sums, metrics

    def finalize_metrics(self, means):
        out = dict(means)
        if "mlm_loss" in out:
            out["perplexity"] = float(np.exp(min(out["mlm_loss"], 80.0)))
        return out

    def data(self, config, workdir, process_index, process_count):
        from bertjax.data import pipeline  # the data helper's module; imported lazily
        use_init_from_tokenizer(config)
        return pipeline.make_pretraining_data(
            config.data, seed=config.seed, global_batch_size=config.batch_size, workdir=workdir,
            process_index=process_index, process_count=process_count,
            model_vocab_size=config.model.vocab_size)

    def validate(self, config: ml_collections.ConfigDict) -> None:
        if config.data.get("packing", False) and config.data.get("next_sentence", False):
            raise model_lib.ConfigError(
                "config.data.packing=True needs config.data.next_sentence=False "
                "(packed sequences have no sentence pairs)")
