"""Fine-tuning heads on `BertModel`: one Flax module per task family.

Every module keeps the encoder under the key "bert" (as `BertForPreTraining` does), so encoder
weights from pretraining or from an imported checkpoint drop in unchanged; the head lives under its
own key ("classifier" or "qa_outputs") and is initialised fresh.

Shapes: B batch, S sequence, D hidden, C labels (classes).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from bertjax import model as bert_model
from bertjax import ops

Array = jax.Array

HEAD_KEYS = ("classifier", "qa_outputs")


def _head_dense(cfg: ml_collections.ConfigDict, features: int, name: str) -> nn.Dense:
    # Heads run in float32 whatever the compute dtype: their logits feed a softmax/loss.
    return nn.Dense(
        features, dtype=jnp.float32, param_dtype=jnp.float32,
        kernel_init=nn.with_logical_partitioning(
            nn.initializers.truncated_normal(cfg.initializer_range), ("embed", None)),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros, (None,)), name=name)


def _encode(cfg: ml_collections.ConfigDict, input_ids: Array, token_type_ids: Array | None,
            attention_mask: Array | None, deterministic: bool) -> dict[str, Array]:
    # Called inside a head's compact __call__, so the encoder is its submodule "bert".
    return bert_model.BertModel(cfg, name="bert")(
        input_ids, token_type_ids, attention_mask, deterministic=deterministic)


def _classify(cfg: ml_collections.ConfigDict, x: Array, num_labels: int,
              classifier_dropout: float | None, deterministic: bool) -> Array:
    """Dropout (classifier_dropout, or the model's rate when None) + the "classifier" dense."""
    rate = cfg.dropout_rate if classifier_dropout is None else classifier_dropout
    x = ops.Dropout(rate)(x.astype(jnp.float32), deterministic=deterministic)
    return _head_dense(cfg, num_labels, "classifier")(x)


class BertForSequenceClassification(nn.Module):
    """Dropout + dense on the pooled [CLS] vector.

    num_labels C: C > 1 classes (softmax, or sigmoid for multi-label: the loss decides);
    C == 1 is regression (the single logit is the predicted value).
    classifier_dropout: None uses cfg.dropout_rate.
    """
    cfg: ml_collections.ConfigDict
    num_labels: int
    classifier_dropout: float | None = None

    @nn.compact
    def __call__(self, input_ids: Array, token_type_ids: Array | None = None,
                 attention_mask: Array | None = None, *, deterministic: bool = True
                 ) -> dict[str, Any]:
        """ids: [B, S] -> {"logits": [B, C] float32, "pooled_output": [B, D]}."""
        out = _encode(self.cfg, input_ids, token_type_ids, attention_mask, deterministic)
        logits = _classify(self.cfg, out["pooled_output"], self.num_labels,
                           self.classifier_dropout, deterministic)
        return {"logits": logits, "pooled_output": out["pooled_output"]}


class BertForTokenClassification(nn.Module):
    """Dropout + dense on every token's final hidden state (NER, POS tagging)."""
    cfg: ml_collections.ConfigDict
    num_labels: int
    classifier_dropout: float | None = None

    @nn.compact
    def __call__(self, input_ids: Array, token_type_ids: Array | None = None,
                 attention_mask: Array | None = None, *, deterministic: bool = True
                 ) -> dict[str, Any]:
        """ids: [B, S] -> {"logits": [B, S, C] float32}."""
        out = _encode(self.cfg, input_ids, token_type_ids, attention_mask, deterministic)
        return {"logits": _classify(self.cfg, out["sequence_output"], self.num_labels,
                                    self.classifier_dropout, deterministic)}


class BertForQuestionAnswering(nn.Module):
    """A [D, 2] projection of every token to start and end logits (Devlin et al. 2018, sec 4.2)."""
    cfg: ml_collections.ConfigDict

    @nn.compact
    def __call__(self, input_ids: Array, token_type_ids: Array | None = None,
                 attention_mask: Array | None = None, *, deterministic: bool = True
                 ) -> dict[str, Any]:
        """ids: [B, S] -> {"start_logits": [B, S], "end_logits": [B, S]} float32."""
        out = _encode(self.cfg, input_ids, token_type_ids, attention_mask, deterministic)
        x = out["sequence_output"].astype(jnp.float32)
        logits = _head_dense(self.cfg, 2, "qa_outputs")(x)  # [B, S, 2]
        return {"start_logits": logits[..., 0], "end_logits": logits[..., 1]}


def init_head_model(module: nn.Module, seq_len: int, rng: Array) -> dict:
    """Plain (unboxed) params of a head model for a [1, seq_len] dummy batch."""
    ids = jnp.zeros((1, seq_len), jnp.int32)
    variables = module.init(rng, ids, ids, jnp.ones_like(ids), deterministic=True)
    return bert_model.unbox(variables["params"])


class EncoderMismatchError(ValueError):
    """A pretrained encoder weight is missing or has the wrong shape; the message names it."""


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in tree.items():
        path = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, dict) or hasattr(value, "items"):
            flat.update(_flatten(dict(value), path))
        else:
            flat[path] = value
    return flat


def _unflatten(flat: dict[str, Any]) -> dict:
    tree: dict = {}
    for path, value in flat.items():
        node = tree
        *parents, leaf = path.split("/")
        for name in parents:
            node = node.setdefault(name, {})
        node[leaf] = value
    return tree


def transfer_encoder(fresh: dict, pretrained: dict) -> dict:
    """Fresh task params (canonical layout) with "bert" replaced by the pretrained encoder.

    Every encoder weight the task model has must be in `pretrained["bert"]` with the same shape:
    a missing or mismatched one raises EncoderMismatchError naming it (never a silent re-init).
    Pretrained weights the task model has no use for (pretraining heads "mlm", "nsp", or a pooler
    the task lacks) are dropped. Heads keep their fresh initialisation.
    """
    fresh = bert_model.canonical_params(fresh)
    pretrained = bert_model.canonical_params(pretrained)
    if "bert" not in pretrained:
        raise EncoderMismatchError(
            f"the checkpoint has no 'bert' encoder; its top-level keys are {sorted(pretrained)}")
    want, have = _flatten(fresh["bert"]), _flatten(pretrained["bert"])
    missing = sorted(set(want) - set(have))
    if missing:
        raise EncoderMismatchError(
            f"encoder weight bert/{missing[0]} is missing from the checkpoint "
            f"({len(missing)} missing in all: {', '.join('bert/' + m for m in missing[:5])})")
    out = {}
    for path, value in want.items():
        got = np.shape(have[path])
        if got != np.shape(value):
            raise EncoderMismatchError(
                f"encoder weight bert/{path} has shape {got} in the checkpoint but the task "
                f"model wants {np.shape(value)}: does config.model match the checkpoint?")
        out[path] = jnp.asarray(have[path], dtype=jnp.asarray(value).dtype)
    return {**fresh, "bert": _unflatten(out)}
