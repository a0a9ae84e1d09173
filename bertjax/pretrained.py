"""Load any BERT checkpoint and use it: `pretrained.load(path).embed(texts)`.

    from bertjax import pretrained
    bert = pretrained.load("path/to/model")         # bertjax, Hugging Face, Google TF, or a workdir
    vectors = bert.embed(["a sentence", "another"])  # [2, D] float32, unit rows
    pairs = bert.embed([("a question?", "a passage.")])  # a sentence pair: [CLS] A [SEP] B [SEP]

`embed` tokenizes, truncates to `max_length`, pads each batch to one of a few bucketed shapes
(powers of two) so that jit compiles once per bucket rather than once per batch, and pools over
the real tokens only (padding never changes a text's vector). Each batch's rows are split over
all of this process's devices (e.g. every GPU of the host), the params replicated on each. A text
is a string or a (text, text_pair) tuple, encoded as BERT and transformers encode pairs: token
type 1 on "B [SEP]", and truncation cuts the longer of the two first.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tokenizers

from bertjax import convert
from bertjax import model as model_lib

POOLINGS = ("mean", "cls", "max", "pooler")
Text = str | tuple[str, str]  # one text, or a (text, text_pair) sentence pair
MIN_LENGTH = 16  # Shortest padded length and fewest padded rows: small batches share one
MIN_ROWS = 8  # compiled shape, and cost next to nothing.


def _bucket(n: int, cap: int, smallest: int) -> int:
    """The smallest power of two >= n (at least `smallest`), clipped to `cap`."""
    size = smallest
    while size < n:
        size *= 2
    return min(size, cap)


def _pool(module: model_lib.BertModel, params, ids, type_ids, mask) -> dict[str, jax.Array]:
    """ids, type_ids, mask: [B, S] -> {pooling: [B, D] float32}, padding (mask 0) excluded.

    All poolings come from one compiled function (they cost nothing next to the encoder), so
    switching pooling never recompiles.
    """
    out = module.apply({"params": params}, ids, type_ids, mask)
    x = out["sequence_output"].astype(jnp.float32)  # [B, S, D]
    keep = mask[..., None].astype(bool)  # [B, S, 1]
    return {"mean": jnp.sum(jnp.where(keep, x, 0.0), axis=1) / jnp.sum(keep, axis=1),
            "max": jnp.max(jnp.where(keep, x, -jnp.inf), axis=1),
            "cls": x[:, 0],
            "pooler": out["pooled_output"].astype(jnp.float32)}


def _sequence(module: model_lib.BertModel, params, ids, type_ids, mask):
    return module.apply({"params": params}, ids, type_ids, mask)["sequence_output"].astype(
        jnp.float32)


def _whole(name: str, value: Any) -> int:
    """An int argument (numpy ints too) as int; a float, bool, string or None is a TypeError
    naming the argument (a float batch_size used to fail deep inside range())."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r}")
    return int(value)


def _check_texts(texts: Sequence[Text]) -> list[Text]:
    """texts as a list, each a str or a (str, str) pair; TypeError naming the first that is not."""
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings, got one string")
    items = list(texts)
    for i, item in enumerate(items):
        pair = (isinstance(item, tuple) and len(item) == 2
                and all(isinstance(x, str) for x in item))
        if not (isinstance(item, str) or pair):
            raise TypeError(f"texts[{i}] must be a string or a (text, text_pair) tuple of two "
                            f"strings, got {type(item).__name__} {str(item)[:40]!r}")
    return items


@functools.lru_cache(maxsize=16)
def _compiled(config_json: str):
    """(pool, sequence, init) jitted for one model config; models of one config share them."""
    cfg = ml_collections.ConfigDict(json.loads(config_json))
    bert = model_lib.BertModel(cfg)
    return (jax.jit(functools.partial(_pool, bert)), jax.jit(functools.partial(_sequence, bert)),
            jax.jit(model_lib.BertForPreTraining(cfg).init))


@dataclasses.dataclass
class Pretrained:
    """A BERT model ready to use.

    config: the model ConfigDict; params: canonical (unscanned) parameter tree, with the heads the
    checkpoint had; tokenizer: its tokenizer (None if the checkpoint shipped none); extra: what
    the checkpoint recorded besides (e.g. a task's labels; "untrained": subtrees such as
    "bert/pooler" that the import initialised because the checkpoint had none).
    """
    config: ml_collections.ConfigDict
    params: dict
    tokenizer: tokenizers.Tokenizer | None
    extra: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        self.params = model_lib.canonical_params(self.params)
        self._bert = model_lib.BertModel(self.config)
        self._device_params = None
        self._pool, self._sequence, _ = _compiled(self.config.to_json(sort_keys=True))
        # Batches are split along their rows over this process's devices (data parallel).
        self._mesh = jax.sharding.Mesh(np.array(jax.local_devices()), ("rows",))
        self._truncating_cache: dict = {}  # see _truncating

    @property
    def model(self) -> model_lib.BertModel | model_lib.BertForPreTraining:
        """BertForPreTraining when the checkpoint has both heads, else the bare BertModel.

        Apply it to `model_lib.layout_params(p.params, p.config)` (or that tree's "bert" subtree
        for the BertModel).
        """
        if {"mlm", "nsp"} <= set(self.params):
            return model_lib.BertForPreTraining(self.config)
        return self._bert

    def _encoder_params(self):
        """The encoder's params, replicated on every local device (batches split across them)."""
        if self._device_params is None:
            laid_out = model_lib.layout_params(self.params, self.config)
            self._device_params = jax.device_put(laid_out["bert"], self._sharding(replicated=True))
        return self._device_params

    def _sharding(self, replicated: bool = False) -> jax.sharding.NamedSharding:
        """Rows of a batch split over this process's devices, or replicated."""
        spec = jax.sharding.PartitionSpec() if replicated else jax.sharding.PartitionSpec("rows")
        return jax.sharding.NamedSharding(self._mesh, spec)

    def _run(self, fn, params, *arrays: np.ndarray):
        """fn(params, *arrays) with the arrays' rows split over the local devices."""
        return fn(params, *jax.device_put(arrays, self._sharding()))

    def tokenize(self, texts: Sequence[Text], max_length: int | None = None) -> list[list[int]]:
        """texts -> [CLS] A [SEP] (or [CLS] A [SEP] B [SEP] for a pair) ids, each cut to max_length
        (keeping the [SEP]s; in a pair the longer text is cut first)."""
        return [enc.ids for enc in self._encode(texts, self._max_length(max_length))]

    def _encode(self, texts: Sequence[Text], limit: int) -> list[tokenizers.Encoding]:
        """Encodings (ids, type_ids) of checked texts, truncated to `limit` tokens the way
        transformers' truncation=True does (tokenizers' longest_first)."""
        if self.tokenizer is None:
            raise ValueError("this checkpoint has no tokenizer (no vocab.txt or tokenizer.json)")
        items = _check_texts(texts)
        if any(isinstance(item, tuple) for item in items):
            if limit < 3:
                raise ValueError(f"max_length={limit} leaves no room for a pair's [CLS] A [SEP] B "
                                 "[SEP]; use at least 3")
            if self.config.type_vocab_size < 2:
                raise ValueError(f"this model has type_vocab_size={self.config.type_vocab_size}: "
                                 "no token type for the second text of a pair")
        return self._truncating(limit).encode_batch(items)

    def _truncating(self, limit: int) -> tokenizers.Tokenizer:
        """A private copy of self.tokenizer that truncates to `limit` (one per limit): the user's
        tokenizer is never changed, not even for the length of a call, so threads may share it."""
        key = (id(self.tokenizer), limit)
        if key not in self._truncating_cache:
            tok = tokenizers.Tokenizer.from_str(self.tokenizer.to_str())
            tok.enable_truncation(limit)
            self._truncating_cache[key] = tok
        return self._truncating_cache[key]

    def _max_length(self, max_length: int | None) -> int:
        cap = self.config.max_position_embeddings
        if max_length is None:
            return cap
        max_length = _whole("max_length", max_length)
        if not 2 <= max_length <= cap:
            raise ValueError(f"max_length={max_length} must be in [2, {cap}] "
                             "(config.model.max_position_embeddings)")
        return max_length

    def _batches(self, encodings: list[tokenizers.Encoding], batch_size: int, max_length: int):
        """Yields (indices, ids [b, s], type_ids [b, s], mask [b, s]) with bucketed b and s;
        longest first."""
        batch_size = _whole("batch_size", batch_size)
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        pad = self.tokenizer.token_to_id("[PAD]") if self.tokenizer is not None else 0
        lengths = [len(enc.ids) for enc in encodings]
        order = sorted(range(len(encodings)), key=lambda i: -lengths[i])
        devices = self._mesh.size
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            rows = _bucket(len(chunk), batch_size, MIN_ROWS)
            rows = -(-rows // devices) * devices  # the same number of rows on every device
            cols = _bucket(max(lengths[i] for i in chunk), max_length, MIN_LENGTH)
            batch = np.full((rows, cols), 0 if pad is None else pad, np.int32)
            type_ids = np.zeros((rows, cols), np.int32)
            mask = np.zeros((rows, cols), np.int32)
            mask[len(chunk):, :2] = 1  # Filler rows: never returned, but kept well defined.
            for r, i in enumerate(chunk):
                batch[r, : lengths[i]] = encodings[i].ids
                type_ids[r, : lengths[i]] = encodings[i].type_ids  # 1 on a pair's "B [SEP]"
                mask[r, : lengths[i]] = 1
            yield chunk, batch, type_ids, mask

    def embed(self, texts: Sequence[Text], pooling: str = "mean", normalize: bool = True,
              max_length: int | None = None, batch_size: int = 64) -> np.ndarray:
        """texts: N strings or (text, text_pair) tuples -> [N, D] float32 vectors.

        A pair is one input, [CLS] A [SEP] B [SEP] with token type 1 on "B [SEP]" (as transformers
        encodes it), e.g. a question and a passage.
        pooling: "mean" / "max" over the real tokens (with [CLS] and [SEP]), "cls" the final
        hidden state of [CLS], "pooler" BERT's tanh pooler on it (refused for a checkpoint whose
        pooler was never trained, e.g. one saved by BertForMaskedLM). normalize: unit L2 rows.
        max_length: tokens per text or pair after truncation (default max_position_embeddings).
        """
        if pooling not in POOLINGS:
            raise ValueError(f"pooling={pooling!r} is not one of {POOLINGS}")
        if not isinstance(normalize, (bool, np.bool_)):  # "no" would be true
            raise TypeError(f"normalize must be True or False, got {normalize!r}")
        if pooling == "pooler" and "bert/pooler" in self.extra.get(convert.UNTRAINED, ()):
            raise ValueError(
                "pooling='pooler': this checkpoint's pooler was never trained (saved without one, "
                "e.g. by transformers' BertForMaskedLM, or trained by a run whose loss never "
                "read it: MLM-only pretraining, tagging, span QA): its vectors would be "
                "meaningless; use pooling='cls' or 'mean'")
        limit = self._max_length(max_length)
        encodings = self._encode(texts, limit)
        out = np.zeros((len(encodings), self.config.hidden_size), np.float32)
        params = self._encoder_params()
        for chunk, batch, type_ids, mask in self._batches(encodings, batch_size, limit):
            vectors = np.asarray(self._run(self._pool, params, batch, type_ids, mask)[pooling])
            out[chunk] = vectors[: len(chunk)]
        if normalize:
            out /= np.maximum(np.linalg.norm(out, axis=-1, keepdims=True), 1e-12)
        return out

    def encode(self, texts: Sequence[Text], max_length: int | None = None,
               batch_size: int = 64) -> list[np.ndarray]:
        """texts (strings or (text, text_pair) tuples, as in `embed`) -> one [len_i, D] float32
        array per text: the final hidden state of each of its `tokenize` tokens."""
        limit = self._max_length(max_length)
        encodings = self._encode(texts, limit)
        out: list[Any] = [None] * len(encodings)
        params = self._encoder_params()
        for chunk, batch, type_ids, mask in self._batches(encodings, batch_size, limit):
            states = np.asarray(self._run(self._sequence, params, batch, type_ids, mask))
            for r, i in enumerate(chunk):
                out[i] = states[r, : len(encodings[i].ids)]
        return out

    def save(self, out_dir: str) -> None:
        """Writes a bertjax model directory (see convert.save_bertjax)."""
        convert.save_bertjax(self.config, self.params, self.tokenizer, out_dir, self.extra)


def load(path: str, lowercase: bool | None = None, use: str = "auto") -> Pretrained:
    """Any checkpoint `convert.load_any` reads -> Pretrained; raises convert.ConvertError.

    use: of a training workdir, "auto" takes its best checkpoint W/best/ when the run kept one
    (as predict does), else the latest step; "best" / "latest" force one."""
    cfg, params, tok, extra = convert.load_any(path, lowercase, with_extra=True, use=use)
    return Pretrained(cfg, params, tok, extra)


def init_random(model_cfg: ml_collections.ConfigDict,
                tokenizer: tokenizers.Tokenizer | None = None, seed: int = 0,
                heads: bool = True) -> Pretrained:
    """A freshly initialised model (with MLM and NSP heads unless heads=False; the encoder is
    the same for a given seed either way).

    With a tokenizer, config.vocab_size is set to the tokenizer's vocabulary size.
    """
    cfg = ml_collections.ConfigDict(model_cfg.to_dict())
    if tokenizer is not None:
        cfg.vocab_size = tokenizer.get_vocab_size(with_added_tokens=False)
    model_lib.validate_config(cfg)
    init = _compiled(cfg.to_json(sort_keys=True))[2]  # heads=False drops the heads afterwards.
    params = model_lib.unbox(init(jax.random.key(seed), jnp.zeros((1, 2), jnp.int32))["params"])
    params = jax.tree.map(np.asarray, model_lib.canonical_params(params))
    if not heads:
        params = {"bert": params["bert"]}
    return Pretrained(cfg, params, tokenizer)
