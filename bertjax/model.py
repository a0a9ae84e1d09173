"""BERT in Flax linen, with the semantics of google-research/bert.

Shapes use: B batch, S sequence, D hidden, N heads, H head dim, F feed-forward width,
V vocabulary, P masked positions per sequence, L layers.

Every parameter is created with logical axis names (the rule table is in `config.py`):
  vocab, embed, embed_out, mlp, heads, kv, layers (the stacked axis under scan), None for tiny
  axes; activations use batch, length, act_embed, mlp, heads, kv.

The parameter tree (unscanned) is

  bert/embeddings/{word_embeddings, position_embeddings, token_type_embeddings}/embedding
  bert/embeddings/layer_norm/{scale,bias}
  bert/encoder/layer_{i}/attention/{qkv,out}/{kernel,bias}     qkv kernel: [D, 3, N, H]
  bert/encoder/layer_{i}/{attention_norm,output_norm}/{scale,bias}
  bert/encoder/layer_{i}/{intermediate,output}/{kernel,bias}
  bert/encoder/final_norm/{scale,bias}                          (pre-LN only)
  bert/pooler/{kernel,bias}
  mlm/{transform/{kernel,bias}, layer_norm/{scale,bias}, bias}  decoder tied to word embeddings
  nsp/{kernel,bias}

With `scan_layers=True` the `layer_{i}` subtrees become one `layers` subtree whose leaves carry a
leading [L] axis; `stack_layers` / `unstack_layers` convert between the two.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from bertjax import ops

Array = jax.Array
PyTree = Any


def gelu(x: Array) -> Array:
    """Exact GELU in PyTorch's (and so HF's) form: x/2 * (1 + erf(x / sqrt(2))).

    jax.nn.gelu(approximate=False) is the same function written with erfc, which XLA expands
    into two polynomial branches and an exp per element, forward and backward. erf is one
    rational polynomial: on an H100 the feed-forward GELU of BERT-large (bf16, batch 256 x 128)
    went from 19.2 to 13.2 ms of the step, forward plus backward (docs/PERFORMANCE.md)."""
    return 0.5 * x * (1.0 + jax.lax.erf(x * jnp.asarray(np.sqrt(0.5), x.dtype)))


ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    # HF's "gelu" is the exact erf form; google-research/bert's gelu is the tanh approximation.
    "gelu": gelu,
    "gelu_tanh": functools.partial(jax.nn.gelu, approximate=True),
    "relu": jax.nn.relu,
}

REMAT_POLICIES = {
    "none": None,
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    "dots_all": jax.checkpoint_policies.dots_saveable,
}

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


class ConfigError(ValueError):
    """A configuration that cannot work; the message names the field."""


def validate_config(cfg: ml_collections.ConfigDict) -> None:
    """Fails with a message naming the field for any impossible model config."""
    positive = ["vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size",
                "max_position_embeddings", "type_vocab_size"]
    for name in positive:
        value = cfg[name]
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"config.model.{name} must be a positive integer, got {value!r}")
    if cfg.hidden_size % cfg.num_heads:
        raise ConfigError(
            f"config.model.hidden_size={cfg.hidden_size} is not divisible by "
            f"config.model.num_heads={cfg.num_heads}")
    for name in ("dropout_rate", "attention_dropout_rate"):
        if not 0.0 <= cfg[name] < 1.0:
            raise ConfigError(f"config.model.{name} must be in [0, 1), got {cfg[name]!r}")
    choices = {
        "hidden_act": ACTIVATIONS, "remat_policy": REMAT_POLICIES, "dtype": DTYPES,
        "position_embedding": ("learned", "sinusoidal"),
        "attention_impl": ("auto", "xla", "cudnn", "einsum"),
    }
    for name, allowed in choices.items():
        if cfg[name] not in allowed:
            raise ConfigError(
                f"config.model.{name}={cfg[name]!r} is not one of {sorted(allowed)}")
    if cfg.layer_norm_eps <= 0:
        raise ConfigError(f"config.model.layer_norm_eps must be > 0, got {cfg.layer_norm_eps!r}")


def _dense_init(cfg, axes):
    return nn.with_logical_partitioning(
        nn.initializers.truncated_normal(cfg.initializer_range), axes)


def _zeros(axes):
    return nn.with_logical_partitioning(nn.initializers.zeros, axes)


def _ones(axes):
    return nn.with_logical_partitioning(nn.initializers.ones, axes)


class _FlatSafePartitioned(nn.LogicallyPartitioned):
    """DenseGeneral initialises kernels flat ([D, 3*N*H]) and reshapes them; flax would apply the
    4-axis sharding constraint to the flat array and fail under a mesh. Skip it at that point."""

    def unbox(self, apply_constraint=True):
        if jnp.ndim(self.value) != len(self.names):
            return self.value
        return super().unbox(apply_constraint)


def _flat_safe(init, axes):
    return lambda *args: _FlatSafePartitioned(init(*args), axes)


def _rows(x: Array) -> Array:
    """[..., D] -> [tokens, D] for a dense layer.

    With 3-D activations the weight gradient contracts two dims ({batch, seq}); XLA:CPU then
    transposes the whole [B*S, F] cotangent before an Eigen dot. On 2-D rows it is one plain dot:
    a BERT-mini layer's fwd+bwd dense matmuls run ~1.4x faster (docs/PERFORMANCE.md). The
    reshape merges a (possibly sharded) batch dim with unsharded ones: no communication.
    """
    return x.reshape(-1, x.shape[-1])


def _layer_norm(cfg, name):
    return nn.LayerNorm(epsilon=cfg.layer_norm_eps, dtype=jnp.float32, param_dtype=jnp.float32,
                        scale_init=_ones(("embed",)), bias_init=_zeros(("embed",)), name=name)


def sinusoidal_positions(length: int, dim: int) -> np.ndarray:
    """The original Transformer's fixed encoding: [length, dim], sin on even, cos on odd dims."""
    position = np.arange(length, dtype=np.float64)[:, None]
    div = np.exp(np.arange(0, dim, 2, dtype=np.float64) * (-math.log(10000.0) / dim))
    table = np.zeros((length, dim), dtype=np.float64)
    table[:, 0::2] = np.sin(position * div)
    table[:, 1::2] = np.cos(position * div)[:, : dim // 2]
    return table.astype(np.float32)


class Embeddings(nn.Module):
    cfg: ml_collections.ConfigDict

    def setup(self):
        cfg = self.cfg
        init = _dense_init(cfg, ("vocab", "embed"))
        self.word_embeddings = nn.Embed(cfg.vocab_size, cfg.hidden_size, embedding_init=init,
                                        param_dtype=jnp.float32, name="word_embeddings")
        if cfg.position_embedding == "learned":
            self.position_embeddings = nn.Embed(
                cfg.max_position_embeddings, cfg.hidden_size,
                embedding_init=_dense_init(cfg, (None, "embed")), param_dtype=jnp.float32,
                name="position_embeddings")
        self.token_type_embeddings = nn.Embed(
            cfg.type_vocab_size, cfg.hidden_size, embedding_init=_dense_init(cfg, (None, "embed")),
            param_dtype=jnp.float32, name="token_type_embeddings")
        self.layer_norm = _layer_norm(cfg, "layer_norm")
        self.dropout = ops.Dropout(cfg.dropout_rate)

    def __call__(self, input_ids: Array, token_type_ids: Array, position_ids: Array,
                 deterministic: bool) -> Array:
        """ids: [B, S] int -> [B, S, D] in the compute dtype."""
        cfg = self.cfg
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
        if cfg.position_embedding == "learned":
            x = x + self.position_embeddings(position_ids)
        else:
            table = jnp.asarray(sinusoidal_positions(cfg.max_position_embeddings, cfg.hidden_size))
            x = x + table[position_ids]
        # The lookup inherits the table's sharding (embed over fsdp); re-lay it out by batch.
        x = nn.with_logical_constraint(x, ("batch", "length", "act_embed"))
        x = self.layer_norm(x)
        x = self.dropout(x, deterministic=deterministic)
        return x.astype(DTYPES[cfg.dtype])

    def attend(self, x: Array, bias: Array | None = None) -> Array:
        """Tied decoder: [..., D] -> [..., V] logits (float32 when `bias` is given)."""
        table = self.word_embeddings.embedding
        if bias is None:
            return jnp.einsum("...D,VD->...V", x, table.astype(x.dtype))
        return ops.tied_decoder(x, table, bias)


class SelfAttention(nn.Module):
    cfg: ml_collections.ConfigDict

    @nn.compact
    def __call__(self, x: Array, mask: Array, deterministic: bool) -> Array:
        """x: [B, S, D], mask: [B, 1, S, S] bool (True = attend), or [B] int32 lengths of
        right-padded sequences (see `attention_padding`) -> [B, S, D]."""
        cfg = self.cfg
        dtype = DTYPES[cfg.dtype]
        n, h = cfg.num_heads, cfg.hidden_size // cfg.num_heads
        b, s, d = x.shape
        # One fused projection for Q, K and V: a single [D, 3*N*H] matmul, on token rows (see
        # _rows). (Three matmuls on the kernel's slices, so that cuDNN's custom call gets q, k
        # and v without the copy that slices them apart, measured slower on an H100: the copy
        # went, three input-gradient sums came; docs/PERFORMANCE.md.)
        qkv = nn.DenseGeneral(
            features=(3, n, h), axis=-1, dtype=dtype, param_dtype=jnp.float32,
            kernel_init=_flat_safe(nn.initializers.truncated_normal(cfg.initializer_range),
                                   ("embed", None, "heads", "kv")),
            bias_init=_flat_safe(nn.initializers.zeros, (None, "heads", "kv")),
            name="qkv")(_rows(x)).reshape(b, s, 3, n, h)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        q = nn.with_logical_constraint(q, ("batch", "length", "heads", "kv"))
        use_dropout = cfg.attention_dropout_rate > 0.0 and not deterministic
        einsum = cfg.attention_impl == "einsum" or use_dropout
        lengths = None
        if mask.ndim == 1:  # lengths of right-padded sequences
            if einsum:
                mask = make_attention_mask(jnp.arange(s)[None, :] < mask[:, None])
            else:  # split over devices as the batch is (cuDNN's partitioner does not check)
                lengths, mask = nn.with_logical_constraint(mask, ("batch",)), None
        if einsum:
            # jax.nn.dot_product_attention has no dropout; this path computes the same thing
            # with dropout on the probabilities, as google-research/bert does.
            logits = jnp.einsum("BTNH,BSNH->BNTS", q, k) / jnp.sqrt(h).astype(dtype)
            logits = jnp.where(mask, logits.astype(jnp.float32), jnp.finfo(jnp.float32).min)
            probs = jax.nn.softmax(logits, axis=-1).astype(dtype)
            probs = ops.Dropout(cfg.attention_dropout_rate)(probs, deterministic=deterministic)
            out = jnp.einsum("BNTS,BSNH->BTNH", probs, v)
        else:
            impl = None if cfg.attention_impl == "auto" else cfg.attention_impl
            out = jax.nn.dot_product_attention(q, k, v, mask=mask, query_seq_lengths=lengths,
                                               key_value_seq_lengths=lengths,
                                               implementation=impl)
        out = nn.DenseGeneral(
            features=cfg.hidden_size, axis=(-2, -1), dtype=dtype, param_dtype=jnp.float32,
            kernel_init=_flat_safe(nn.initializers.truncated_normal(cfg.initializer_range),
                                   ("heads", "kv", "embed")),
            bias_init=_zeros(("embed",)), name="out")(out.reshape(b * s, n, h))
        return out.reshape(b, s, d)


class EncoderLayer(nn.Module):
    """One Transformer layer: post-LN (BERT) or pre-LN."""
    cfg: ml_collections.ConfigDict

    @nn.compact
    def __call__(self, x: Array, mask: Array, deterministic: bool) -> Array:
        cfg = self.cfg
        dtype = DTYPES[cfg.dtype]
        act = ACTIVATIONS[cfg.hidden_act]
        drop = ops.Dropout(cfg.dropout_rate)
        attention_norm = _layer_norm(cfg, "attention_norm")
        output_norm = _layer_norm(cfg, "output_norm")

        y = attention_norm(x).astype(dtype) if cfg.pre_layer_norm else x
        y = SelfAttention(cfg, name="attention")(y, mask, deterministic)
        x = x + drop(y, deterministic=deterministic)
        if not cfg.pre_layer_norm:
            x = attention_norm(x).astype(dtype)

        y = output_norm(x).astype(dtype) if cfg.pre_layer_norm else x
        y = nn.Dense(cfg.intermediate_size, dtype=dtype, param_dtype=jnp.float32,
                     kernel_init=_dense_init(cfg, ("embed", "mlp")), bias_init=_zeros(("mlp",)),
                     name="intermediate")(_rows(y))
        y = nn.with_logical_constraint(act(y), ("batch", "mlp"))  # [B*S, I]
        y = nn.Dense(cfg.hidden_size, dtype=dtype, param_dtype=jnp.float32,
                     kernel_init=_dense_init(cfg, ("mlp", "embed")), bias_init=_zeros(("embed",)),
                     name="output")(y)
        x = x + drop(y.reshape(x.shape), deterministic=deterministic)
        if not cfg.pre_layer_norm:
            x = output_norm(x).astype(dtype)
        return nn.with_logical_constraint(x, ("batch", "length", "act_embed"))


class _ScanBody(nn.Module):
    """Adapts EncoderLayer to nn.scan's (carry, x) -> (carry, y) signature."""
    cfg: ml_collections.ConfigDict
    deterministic: bool
    collect: bool

    @nn.compact
    def __call__(self, x, mask):
        layer = _remat(EncoderLayer, self.cfg)
        x = layer(self.cfg, name="layer")(x, mask, self.deterministic)
        return x, (x if self.collect else None)


def _remat(module_cls, cfg):
    policy = cfg.remat_policy
    if policy == "none":
        return module_cls
    # deterministic (arg 3, counting self) must stay a Python bool under remat.
    return nn.remat(module_cls, policy=REMAT_POLICIES[policy], static_argnums=(3,),
                    prevent_cse=not cfg.scan_layers)


class Encoder(nn.Module):
    cfg: ml_collections.ConfigDict

    @nn.compact
    def __call__(self, x: Array, mask: Array, deterministic: bool,
                 output_hidden_states: bool = False) -> tuple[Array, list[Array] | None]:
        """x: [B, S, D] -> ([B, S, D], per-layer outputs [L x [B, S, D]] when asked)."""
        cfg = self.cfg
        hidden = [x] if output_hidden_states else None
        if cfg.scan_layers:
            scanned = nn.scan(
                _ScanBody, variable_axes={"params": 0}, split_rngs={"params": True, "dropout": True},
                in_axes=nn.broadcast, length=cfg.num_layers,
                metadata_params={nn.PARTITION_NAME: "layers"})
            x, ys = scanned(cfg, deterministic, output_hidden_states, name="layers")(x, mask)
            if output_hidden_states:
                hidden.extend(ys[i] for i in range(cfg.num_layers))
        else:
            layer_cls = _remat(EncoderLayer, cfg)
            for i in range(cfg.num_layers):
                x = layer_cls(cfg, name=f"layer_{i}")(x, mask, deterministic)
                if output_hidden_states:
                    hidden.append(x)
        if cfg.pre_layer_norm:
            x = _layer_norm(cfg, "final_norm")(x).astype(x.dtype)
            if output_hidden_states:
                hidden[-1] = x
        return x, hidden


def attention_padding(cfg: ml_collections.ConfigDict, attention_mask: Array,
                      segment_ids: Array | None = None) -> tuple[Array, Array | None]:
    """What the encoder's attention takes for a [B, S] padding mask (1 = token).

    With attention_impl="cudnn" and no packing segments, the [B] int32 lengths of the sequences:
    cuDNN's fused kernel then masks by length rather than reading a [B, 1, S, S] mask (BERT-large
    at 256 x 128 on an H200: 149.5 -> 147.4 ms a step, within one run's spread of 143-163 ms;
    docs/PERFORMANCE.md). Lengths stand for right-padded masks (every 1 before every 0), which
    every bertjax pipeline makes; the second value is then a [B] bool, False for a sequence whose
    mask is not right-padded, which the caller must poison: BertModel makes that sequence's
    outputs NaN rather than silently attending to the wrong tokens, so the batch's loss and
    gradients are NaN too and training stops at that step (unless skip_nonfinite). Otherwise the
    [B, 1, S, S] bool mask of `make_attention_mask`, and None.
    """
    if cfg.attention_impl != "cudnn" or segment_ids is not None:
        return make_attention_mask(attention_mask, segment_ids), None
    keep = attention_mask.astype(bool)
    lengths = jnp.sum(keep, axis=-1, dtype=jnp.int32)
    right_padded = jnp.all(keep == (jnp.arange(keep.shape[-1])[None, :] < lengths[:, None]),
                           axis=-1)
    # An all-padding row (a batch's filler) attends to its first token: finite, and unread.
    return jnp.maximum(lengths, 1), right_padded


def make_attention_mask(attention_mask: Array, segment_ids: Array | None = None) -> Array:
    """[B, S] padding mask (1 = token) and optional packing segments -> [B, 1, S, S] bool."""
    keep = attention_mask.astype(bool)
    mask = keep[:, None, None, :] & keep[:, None, :, None]
    if segment_ids is not None:
        mask = mask & (segment_ids[:, None, :, None] == segment_ids[:, None, None, :])
    # Padded query rows attend to themselves alone so the softmax is never over an empty set.
    eye = jnp.eye(attention_mask.shape[-1], dtype=bool)[None, None]
    return mask | (eye & ~keep[:, None, :, None])


class BertModel(nn.Module):
    """Embeddings + encoder + tanh pooler on [CLS]."""
    cfg: ml_collections.ConfigDict

    def setup(self):
        cfg = self.cfg
        self.embeddings = Embeddings(cfg, name="embeddings")
        self.encoder = Encoder(cfg, name="encoder")
        self.pooler = nn.Dense(cfg.hidden_size, dtype=DTYPES[cfg.dtype], param_dtype=jnp.float32,
                               kernel_init=_dense_init(cfg, ("embed", "embed_out")),
                               bias_init=_zeros(("embed_out",)), name="pooler")

    def __call__(self, input_ids: Array, token_type_ids: Array | None = None,
                 attention_mask: Array | None = None, *, segment_ids: Array | None = None,
                 position_ids: Array | None = None, deterministic: bool = True,
                 output_hidden_states: bool = False) -> dict[str, Any]:
        """input_ids, token_type_ids, attention_mask, segment_ids, position_ids: [B, S].

        Returns {"sequence_output": [B, S, D], "pooled_output": [B, D],
                 "hidden_states": [L + 1 x [B, S, D]] when asked}.
        """
        if token_type_ids is None:
            token_type_ids = jnp.zeros_like(input_ids)
        if attention_mask is None:
            attention_mask = jnp.ones_like(input_ids)
        if position_ids is None:
            position_ids = jnp.broadcast_to(jnp.arange(input_ids.shape[-1]), input_ids.shape)
        mask, right_padded = attention_padding(self.cfg, attention_mask, segment_ids)
        x = self.embeddings(input_ids, token_type_ids, position_ids, deterministic)
        if right_padded is not None:
            x = jnp.where(right_padded[:, None, None], x, jnp.asarray(jnp.nan, x.dtype))
        x, hidden = self.encoder(x, mask, deterministic, output_hidden_states)
        pooled = jnp.tanh(self.pooler(x[:, 0]))
        out = {"sequence_output": x, "pooled_output": pooled}
        if output_hidden_states:
            out["hidden_states"] = hidden
        return out

    def attend(self, x: Array, bias: Array | None = None) -> Array:
        return self.embeddings.attend(x, bias)


def gather_positions(x: Array, positions: Array) -> Array:
    """x: [B, S, D], positions: [B, P] int -> [B, P, D]."""
    return jnp.take_along_axis(x, positions[..., None].astype(jnp.int32), axis=1)


class MaskedLMHead(nn.Module):
    """dense + activation + LayerNorm, then the tied word-embedding decoder plus an output bias."""
    cfg: ml_collections.ConfigDict

    @nn.compact
    def __call__(self, x: Array, decoder: Callable[[Array], Array]) -> Array:
        """x: [..., D] -> logits [..., V] in float32."""
        cfg = self.cfg
        x = nn.Dense(cfg.hidden_size, dtype=DTYPES[cfg.dtype], param_dtype=jnp.float32,
                     kernel_init=_dense_init(cfg, ("embed", "embed_out")),
                     bias_init=_zeros(("embed_out",)), name="transform")(_rows(x)).reshape(x.shape)
        x = _layer_norm(cfg, "layer_norm")(ACTIVATIONS[cfg.hidden_act](x)).astype(x.dtype)
        # Explicit layouts around the tied decoder. Left to propagation, x's hidden dim arrives
        # split over "tensor" (the transform's embed_out) while the table splits vocab over
        # "tensor" and its hidden dim over "fsdp"; with data, fsdp and tensor all > 1, XLA's SPMD
        # partitioner (GSPMD and Shardy alike, jax 0.10.2) then computed wrong gradients
        # (tests/test_sharding.py compares one step against one device).
        x = nn.with_logical_constraint(x, ("batch", "length", "act_embed"))
        bias = self.param("bias", _zeros(("vocab",)), (cfg.vocab_size,), jnp.float32)
        return nn.with_logical_constraint(decoder(x, bias), ("batch", "length", "vocab"))


class BertForPreTraining(nn.Module):
    """BERT with the masked-LM and next-sentence heads."""
    cfg: ml_collections.ConfigDict

    def setup(self):
        self.bert = BertModel(self.cfg, name="bert")
        self.mlm = MaskedLMHead(self.cfg, name="mlm")
        self.nsp = nn.Dense(2, dtype=jnp.float32, param_dtype=jnp.float32,
                            kernel_init=_dense_init(self.cfg, ("embed", None)),
                            bias_init=_zeros((None,)), name="nsp")

    def __call__(self, input_ids: Array, token_type_ids: Array | None = None,
                 attention_mask: Array | None = None, masked_lm_positions: Array | None = None,
                 *, segment_ids: Array | None = None, position_ids: Array | None = None,
                 deterministic: bool = True, output_hidden_states: bool = False) -> dict[str, Any]:
        """masked_lm_positions: [B, P] int, or None for logits at every position.

        Returns the BertModel outputs plus "mlm_logits" ([B, P, V] or [B, S, V], float32)
        and "nsp_logits" ([B, 2], float32).
        """
        out = self.bert(input_ids, token_type_ids, attention_mask, segment_ids=segment_ids,
                        position_ids=position_ids, deterministic=deterministic,
                        output_hidden_states=output_hidden_states)
        x = out["sequence_output"]
        if masked_lm_positions is not None:
            # Only the P masked positions go through the head: the [*, V] matmul is the
            # largest in a small BERT, and P << S.
            x = gather_positions(x, masked_lm_positions)
        out["mlm_logits"] = self.mlm(x, self.bert.attend)
        out["nsp_logits"] = self.nsp(out["pooled_output"].astype(jnp.float32))
        return out


# ---------------------------------------------------------------------------------------------
# Parameter-tree helpers


def unbox(tree: PyTree) -> PyTree:
    """Strips flax's LogicallyPartitioned boxes, leaving plain arrays."""
    return nn.meta.unbox(tree)


def stack_layers(encoder: dict, num_layers: int) -> dict:
    """{'layer_0': t0, ...} -> {'layers': {'layer': stacked t}} (the scan_layers layout)."""
    layers = [encoder[f"layer_{i}"] for i in range(num_layers)]
    stacked = jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *layers)
    rest = {k: v for k, v in encoder.items() if not k.startswith("layer_")}
    return {**rest, "layers": {"layer": stacked}}


def unstack_layers(encoder: dict) -> dict:
    """Inverse of `stack_layers`."""
    if "layers" not in encoder:
        return dict(encoder)
    stacked = encoder["layers"]["layer"]
    num_layers = jax.tree.leaves(stacked)[0].shape[0]
    out = {k: v for k, v in encoder.items() if k != "layers"}
    for i in range(num_layers):
        out[f"layer_{i}"] = jax.tree.map(lambda x, i=i: x[i], stacked)
    return out


def canonical_params(params: PyTree) -> PyTree:
    """Any layout (scanned or not, with or without heads) -> the unscanned layout."""
    params = unbox(params)
    params = jax.tree.map(lambda x: x, dict(params))  # shallow copy of the dict structure
    bert = dict(params["bert"]) if "bert" in params else None
    if bert is not None:
        bert["encoder"] = unstack_layers(dict(bert["encoder"]))
        params["bert"] = bert
    return params


def layout_params(params: PyTree, cfg: ml_collections.ConfigDict) -> PyTree:
    """The unscanned layout -> the layout `cfg.scan_layers` asks for."""
    params = canonical_params(params)
    if cfg.scan_layers and "bert" in params:
        bert = dict(params["bert"])
        bert["encoder"] = stack_layers(dict(bert["encoder"]), cfg.num_layers)
        params["bert"] = bert
    return params


def count_params(params: PyTree) -> int:
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(unbox(params))))
