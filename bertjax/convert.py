"""Hugging Face / Google TF BERT weights -> bertjax -> Hugging Face; the bertjax model directory.

  python -m bertjax.convert SRC DST [--to bertjax|huggingface] [--lowercase | --cased]
      [--use auto|best|latest]

SRC may be any format `load_any` detects: a bertjax directory, a Hugging Face directory
(config.json + model.safetensors or pytorch_model.bin), a Google directory (bert_config.json +
bert_model.ckpt.*), or a training workdir (checkpoints/; its W/best/ when the run kept one).
Every input this module cannot use raises `ConvertError` naming the file and the tensor or field;
the CLI prints it and exits with status 2.

All readers go through one intermediate form, HF-named tensors in HF's orientation; the mapping
to and from the bertjax tree lives in bertjax/param_names.py. Google checkpoints are read only:
there is no export to Google's TF format. Tensors are read with the safetensors numpy API,
`torch.load(weights_only=True)` or `tf.train.load_checkpoint`: nothing is unpickled or executed.

A checkpoint saved without a pooler (transformers' BertForMaskedLM, BertForTokenClassification,
BertForQuestionAnswering) is imported with a fresh one, initialised as bertjax initialises a new
model (as transformers does when it loads such a checkpoint into a class that has a pooler), with
a warning; the model's `extra` records it as {"untrained": ["bert/pooler"]}, which a bertjax
directory keeps. Fine-tuning trains that pooler like any fresh head; `pretrained.embed` refuses
pooling="pooler" on it, and export to Hugging Face leaves it out rather than pass it off as trained.
"""

from __future__ import annotations

import argparse
import glob
import json
import logging
import os
import re
import sys
from typing import Any, Sequence

import jax
import ml_collections
import numpy as np
import tokenizers

from bertjax import best
from bertjax import config as config_lib
from bertjax import model as model_lib
from bertjax import param_names as names
from bertjax.data import tokenizer as tokenizer_lib

Params = dict[str, Any]
Loaded = tuple[ml_collections.ConfigDict, Params, "tokenizers.Tokenizer | None"]

FORMAT_VERSION = 1
HF_TO_OURS_ACT = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh",
                  "relu": "relu"}
GOOGLE_TO_OURS_ACT = {"gelu": "gelu_tanh", "relu": "relu"}  # Google's gelu is the tanh form.
OURS_TO_HF_ACT = {"gelu": "gelu", "gelu_tanh": "gelu_new", "relu": "relu"}
# HF config.json field -> ours; Google's bert_config.json uses the same names.
CONFIG_FIELDS = {"vocab_size": "vocab_size", "hidden_size": "hidden_size",
                 "num_hidden_layers": "num_layers", "num_attention_heads": "num_heads",
                 "intermediate_size": "intermediate_size",
                 "max_position_embeddings": "max_position_embeddings",
                 "type_vocab_size": "type_vocab_size"}
OPTIONAL_FIELDS = {"hidden_dropout_prob": "dropout_rate",
                   "attention_probs_dropout_prob": "attention_dropout_rate",
                   "layer_norm_eps": "layer_norm_eps", "initializer_range": "initializer_range"}
IGNORED_SUFFIXES = ("adam_m", "adam_v", "global_step", "position_ids", "Adam", "Adam_1")
UNTRAINED = names.UNTRAINED
POOLER_TENSORS = ("pooler.dense.weight", "pooler.dense.bias")
ConvertError = names.ConvertError


# ---------------------------------------------------------------------------------------------
# Configs


def _read_json(path: str) -> dict:
    if not os.path.isfile(path):
        raise ConvertError(f"{path}: file is missing")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ConvertError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ConvertError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _model_config(raw: dict, path: str, acts: dict[str, str]) -> ml_collections.ConfigDict:
    """An HF config.json / Google bert_config.json dict -> our model config."""
    overrides: dict[str, Any] = {}
    for theirs, ours in CONFIG_FIELDS.items():
        if theirs not in raw:
            raise ConvertError(f"{path}: field {theirs!r} is missing")
        overrides[ours] = raw[theirs]
    for theirs, ours in OPTIONAL_FIELDS.items():
        if raw.get(theirs) is not None:
            overrides[ours] = float(raw[theirs])
    act = raw.get("hidden_act", "gelu")
    if act not in acts:
        raise ConvertError(f"{path}: field 'hidden_act'={act!r} is not one of {sorted(acts)}")
    overrides["hidden_act"] = acts[act]
    position_type = raw.get("position_embedding_type", "absolute")
    if position_type != "absolute":
        raise ConvertError(f"{path}: field 'position_embedding_type'={position_type!r}: "
                           "only 'absolute' (learned) positions are supported")
    cfg = config_lib.model(**overrides)
    try:
        model_lib.validate_config(cfg)
    except model_lib.ConfigError as e:
        raise ConvertError(f"{path}: {e}") from None
    return cfg


def _hf_config(cfg: ml_collections.ConfigDict, architecture: str, pad_id: int) -> dict:
    if cfg.pre_layer_norm:
        raise ConvertError("pre_layer_norm=True: Hugging Face BERT is post-LN only; cannot export")
    if cfg.position_embedding != "learned":
        raise ConvertError(f"position_embedding={cfg.position_embedding!r}: Hugging Face BERT "
                           "has only learned positions; cannot export")
    out = {"architectures": [architecture], "model_type": "bert",
           "hidden_act": OURS_TO_HF_ACT[cfg.hidden_act], "position_embedding_type": "absolute",
           "hidden_dropout_prob": cfg.dropout_rate,
           "attention_probs_dropout_prob": cfg.attention_dropout_rate,
           "layer_norm_eps": cfg.layer_norm_eps, "initializer_range": cfg.initializer_range,
           "pad_token_id": pad_id, "torch_dtype": "float32"}
    out.update({theirs: cfg[ours] for theirs, ours in CONFIG_FIELDS.items()})
    return out


# ---------------------------------------------------------------------------------------------
# Output directories


def held_format(path: str) -> str | None:
    """detect_format of an existing directory, or None where it holds no model or run."""
    if os.path.isdir(os.path.join(path, "checkpoints")):
        return "workdir"
    try:
        held = detect_format(path) if os.path.isdir(path) else None
    except ConvertError:  # a directory of other files
        return None
    if held == "huggingface" and not any(os.path.exists(os.path.join(path, name))
                                         for name in _HF_WEIGHTS):
        return None  # a config.json of something else
    return held


# Weight files that make a directory with config.json a Hugging Face model (any framework).
_HF_WEIGHTS = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
               "pytorch_model.bin.index.json", "tf_model.h5", "flax_model.msgpack")


def check_output_dir(out_dir: str, to: str, sources: Sequence[str] = ()) -> None:
    """Raises ConvertError, before any work, unless out_dir can take a `to` model: a new or
    empty directory, one of other files, or one holding a `to` model (replaced). A training
    workdir or a model of another format is refused: the two would be mixed, and readers,
    which take bertjax.json first, would then load the wrong one. So is any of `sources` (the
    directories read: a workdir and the W/best/ it resolves to)."""
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ConvertError(f"{out_dir}: exists and is not a directory; the output must be a new "
                           "or existing directory")
    if os.path.exists(out_dir) and any(os.path.exists(s) and os.path.samefile(s, out_dir)
                                       for s in sources):
        raise ConvertError(f"{out_dir}: the output is the source directory; write to another one")
    held = held_format(out_dir)
    if held == "workdir":
        raise ConvertError(f"{out_dir}: holds a training workdir (checkpoints/); writing a model "
                           "into it would shadow the run. Write to a new directory")
    if held not in (None, to):
        raise ConvertError(f"{out_dir}: holds a {held} model; writing a {to} model there would "
                           "mix the two. Write to a new or empty directory")


def _make_output_dir(out_dir: str, to: str) -> None:
    check_output_dir(out_dir, to)
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as e:  # e.g. a parent that is a file, or no permission
        raise ConvertError(f"{out_dir}: cannot create the output directory ({e})") from None


# ---------------------------------------------------------------------------------------------
# Hugging Face


def _read_safetensors(path: str) -> dict[str, np.ndarray]:
    import safetensors  # pylint: disable=import-outside-toplevel
    out = {}
    try:
        with safetensors.safe_open(path, framework="numpy") as f:
            for name in f.keys():
                out[name] = f.get_tensor(name)
    except (safetensors.SafetensorError, OSError, ValueError, TypeError) as e:
        if "bf16" in str(e).lower() or "bfloat16" in str(e).lower():
            with safetensors.safe_open(path, framework="flax") as f:  # numpy has no bfloat16.
                return {name: np.asarray(f.get_tensor(name), np.float32) for name in f.keys()}
        raise ConvertError(f"{path}: not a readable safetensors file ({e})") from None
    return out


def _torch_load_reason(error: Exception) -> str:
    """Why torch.load(weights_only=True) failed, without torch's advice to retry with
    weights_only=False: that unpickles arbitrary objects, i.e. runs code from the file."""
    text = str(error)
    if "weights_only" not in text:
        return text.strip().splitlines()[0] if text.strip() else type(error).__name__
    blocked = re.search(r"unsupported global:? (?:GLOBAL )?([\w.]+)", text, re.IGNORECASE)
    if blocked:  # e.g. posix.system: a pickle that would call Python code when loaded
        return (f"it refers to the Python object {blocked.group(1)}; bertjax loads tensors only "
                "and never unpickles other objects")
    return "damaged, or holds data other than tensors; bertjax loads tensors only"


def _read_torch_bin(path: str) -> dict[str, np.ndarray]:
    try:
        import torch  # pylint: disable=import-outside-toplevel
    except ImportError:
        raise ConvertError(f"{path}: reading pytorch_model.bin needs PyTorch (`pip install torch`);"
                           " or convert it to model.safetensors") from None
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as e:  # torch raises many types for a bad file.
        raise ConvertError(f"{path}: not a readable PyTorch weights archive "
                           f"({_torch_load_reason(e)})") from None
    if not isinstance(state, dict):
        raise ConvertError(f"{path}: expected a state dict, got {type(state).__name__}")
    return {k: v.detach().float().numpy() if v.is_floating_point() else v.numpy()
            for k, v in state.items() if hasattr(v, "numpy")}


def _read_hf_weights(directory: str) -> tuple[dict[str, np.ndarray], str]:
    """The weights of an HF directory (single file or sharded) and the file they came from."""
    for name, reader in (("model.safetensors", _read_safetensors),
                         ("pytorch_model.bin", _read_torch_bin)):
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return reader(path), path
        index = path + ".index.json"
        if os.path.isfile(index):
            weight_map = _read_json(index).get("weight_map")
            if not isinstance(weight_map, dict):
                raise ConvertError(f"{index}: field 'weight_map' is missing")
            tensors = {}
            for shard in sorted(set(weight_map.values())):
                shard_path = os.path.join(directory, os.path.basename(str(shard)))
                if not os.path.isfile(shard_path):
                    raise ConvertError(f"{shard_path}: shard named in {index} is missing")
                tensors.update(reader(shard_path))
            return tensors, index
    raise ConvertError(f"{directory}: weights file is missing (expected model.safetensors or "
                       "pytorch_model.bin)")


def _maybe_tokenizer(directory: str, lowercase: bool | None, cfg: ml_collections.ConfigDict,
                     cfg_path: str):
    """The tokenizer in `directory` (None if it has none), checked against the model's vocab_size
    (read from cfg_path): an id without an embedding row would embed as NaN or garbage."""
    if not tokenizer_lib.holds_tokenizer(directory):
        return None
    try:
        tok = tokenizer_lib.load_tokenizer(directory, lowercase)
    except tokenizer_lib.TokenizerError as e:
        raise ConvertError(str(e)) from None
    needed = tokenizer_lib.num_ids(tok)  # ids 0 .. needed - 1
    if needed > cfg.vocab_size:
        raise ConvertError(
            f"{tokenizer_lib.tokenizer_file(directory)}: the tokenizer has {needed} tokens but "
            f"{cfg_path} gives the model vocab_size={cfg.vocab_size}: token ids "
            f"{cfg.vocab_size}..{needed - 1} have no embedding row; is this the model's own "
            "tokenizer?")
    return tok


def _hf_model_config(cfg_path: str) -> ml_collections.ConfigDict:
    raw_cfg = _read_json(cfg_path)
    if raw_cfg.get("model_type", "bert") != "bert":
        raise ConvertError(f"{cfg_path}: field 'model_type'={raw_cfg['model_type']!r}: only "
                           "'bert' checkpoints can be imported")
    return _model_config(raw_cfg, cfg_path, HF_TO_OURS_ACT)


def _google_model_config(cfg_path: str) -> ml_collections.ConfigDict:
    return _model_config(_read_json(cfg_path), cfg_path, GOOGLE_TO_OURS_ACT)


def _add_fresh_pooler(cfg: ml_collections.ConfigDict, tensors: dict[str, np.ndarray], where: str,
                      sources: dict[str, str] | None = None) -> dict[str, list[str]]:
    """Gives a checkpoint saved without a pooler (BertForMaskedLM, ...) a fresh one, in place.

    Returns the model's extra: {UNTRAINED: ["bert/pooler"]}, or {} when the checkpoint has a
    pooler (or half of one, which hf_tensors_to_params reports as missing: that file is damaged).
    """
    if any(name in tensors for name in POOLER_TENSORS):
        return {}
    d = cfg.hidden_size
    init = jax.nn.initializers.truncated_normal(cfg.initializer_range)  # model.BertModel's pooler
    kernel = np.asarray(init(jax.random.key(0), (d, d), np.float32))  # [in, out]
    tensors["pooler.dense.weight"] = kernel.T  # HF's Linear orientation, [out, in]
    tensors["pooler.dense.bias"] = np.zeros((d,), np.float32)
    missing = ", ".join((sources or {}).get(n, n) for n in POOLER_TENSORS)
    logging.warning("%s: no pooler (%s are missing, as in a BertForMaskedLM checkpoint): "
                    "initialised a fresh, untrained one; pretrained.embed refuses "
                    "pooling='pooler' on this model and export to Hugging Face leaves it out",
                    where, missing)
    return {UNTRAINED: ["bert/pooler"]}


def from_huggingface(directory: str, lowercase: bool | None = None, *, with_extra: bool = False):
    """An HF BERT directory -> (model_cfg, canonical params, tokenizer or None) [+ extra dict:
    {"untrained": ["bert/pooler"]} when the checkpoint had no pooler; pass it on to
    pretrained.Pretrained(extra=...) or save_bertjax so that the marker is not lost]."""
    loaded = _huggingface(directory, lowercase)
    return loaded if with_extra else loaded[:3]


def _huggingface(directory: str, lowercase: bool | None):
    """from_huggingface + the extra dict ({"untrained": [...]} for a fresh pooler)."""
    cfg_path = os.path.join(directory, "config.json")
    cfg = _hf_model_config(cfg_path)
    raw, where = _read_hf_weights(directory)
    tensors = {}
    for name, value in raw.items():
        canonical = names.canonical_hf_name(name)
        if canonical.endswith("position_ids"):
            continue
        tensors[canonical] = value
    extra = _add_fresh_pooler(cfg, tensors, where)
    params = names.hf_tensors_to_params(cfg, tensors, where)
    return cfg, params, _maybe_tokenizer(directory, lowercase, cfg, cfg_path), extra


def to_huggingface(model_cfg: ml_collections.ConfigDict, params: Params,
                   tokenizer: tokenizers.Tokenizer | None, out_dir: str,
                   untrained: Sequence[str] = ()) -> Params:
    """Writes config.json + model.safetensors (+ tokenizer files) that transformers loads.

    Returns the params exported: the encoder and the pretraining heads (task heads, which
    transformers' BERT classes do not share, are left out with a warning). untrained: the
    model's extra["untrained"]; a pooler or head named there (initialised at import, or never
    read by the run's loss) is left out too, so that transformers initialises it afresh as it
    would have, not load it as a trained one."""
    from safetensors.numpy import save_file  # pylint: disable=import-outside-toplevel
    params = model_lib.canonical_params(params)
    untrained_heads = sorted({"mlm", "nsp"} & set(params) & set(untrained))
    if untrained_heads:
        logging.warning("to_huggingface: not exporting %s: never trained", untrained_heads)
        params = {k: v for k, v in params.items() if k not in untrained_heads}
    extra = sorted(set(params) - {"bert", "mlm", "nsp"})
    if extra:
        logging.warning("to_huggingface: not exporting task heads %s", extra)
    heads = {"mlm", "nsp"} & set(params)
    architecture = {frozenset(): "BertModel", frozenset({"mlm"}): "BertForMaskedLM",
                    frozenset({"nsp"}): "BertForNextSentencePrediction",
                    frozenset({"mlm", "nsp"}): "BertForPreTraining"}[frozenset(heads)]
    pad_id = 0
    if tokenizer is not None and tokenizer.token_to_id("[PAD]") is not None:
        pad_id = tokenizer.token_to_id("[PAD]")
    hf_cfg = _hf_config(model_cfg, architecture, pad_id)
    tensors = names.params_to_hf_tensors(model_cfg, params)
    if "bert/pooler" in untrained:
        logging.warning("to_huggingface: not exporting bert/pooler: never trained")
        tensors = {k: v for k, v in tensors.items() if k not in POOLER_TENSORS}
        params = {**params, "bert": {k: v for k, v in params["bert"].items() if k != "pooler"}}
    if heads:  # A headed model's base lives under "bert.", the heads under "cls.".
        tensors = {(k if k.startswith("cls.") else "bert." + k): v for k, v in tensors.items()}
    _make_output_dir(out_dir, "huggingface")
    with open(os.path.join(out_dir, "config.json"), "w", encoding="utf-8") as f:
        json.dump(hf_cfg, f, indent=2)
    save_file(tensors, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
    if tokenizer is not None:
        tokenizer_lib.save_tokenizer(tokenizer, out_dir, model_cfg.max_position_embeddings)
    return {k: v for k, v in params.items() if k not in extra}


# ---------------------------------------------------------------------------------------------
# Google TF checkpoints (google-research/bert)


def _checkpoint_state_path(state_file: str) -> str | None:
    """model_checkpoint_path from TF's `checkpoint` state file (protobuf text), or None.

    The file reads e.g. `model_checkpoint_path: "model.ckpt-10000"` then all_model_checkpoint_paths
    lines; it is parsed as text so that choosing the checkpoint needs no TensorFlow.
    """
    try:
        with open(state_file, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise ConvertError(f"{state_file}: TF checkpoint state file is unreadable ({e})") from None
    match = re.search(r'^\s*model_checkpoint_path:\s*"((?:[^"\\]|\\.)*)"', text, re.MULTILINE)
    return re.sub(r"\\(.)", r"\1", match.group(1)) if match else None  # undo \" and \\ escapes


def _step_of(prefix: str) -> tuple[str, int | None]:
    """".../model.ckpt-10000" -> (".../model.ckpt", 10000); no "-N" suffix -> (prefix, None)."""
    match = re.fullmatch(r"(.*)-(\d+)", prefix)
    return (match.group(1), int(match.group(2))) if match else (prefix, None)


def _google_checkpoint_prefix(directory: str) -> str:
    """The checkpoint to read: the state file's model_checkpoint_path (what TF calls the latest),
    else bert_model.ckpt (google-research/bert's releases), else the only *.ckpt* or the highest
    step of one model.ckpt-N series; ConvertError naming the candidates when that is ambiguous."""
    state_file = os.path.join(directory, "checkpoint")
    named = _checkpoint_state_path(state_file) if os.path.isfile(state_file) else None
    if named:
        # Relative to the directory; TF1 writes absolute paths, which go stale when the run
        # directory is copied or moved, so such a name is looked for in this directory first.
        tries = ([os.path.join(directory, os.path.basename(named)), named]
                 if os.path.isabs(named) else [os.path.join(directory, named)])
        for prefix in tries:
            if os.path.isfile(prefix + ".index"):
                return prefix
        raise ConvertError(f"{state_file}: names model_checkpoint_path {named!r}, but "
                           f"{os.path.basename(named)}.index is missing from {directory}")
    prefix = os.path.join(directory, "bert_model.ckpt")
    if os.path.isfile(prefix + ".index"):
        return prefix
    candidates = sorted(p[: -len(".index")]
                        for p in glob.glob(os.path.join(directory, "*.ckpt*.index")))
    if not candidates:
        raise ConvertError(f"{prefix}.index: checkpoint file is missing")
    if len(candidates) == 1:
        return candidates[0]
    stems_steps = [_step_of(p) for p in candidates]
    if len({stem for stem, _ in stems_steps}) == 1 and all(n is not None for _, n in stems_steps):
        return max(candidates, key=lambda p: _step_of(p)[1])  # numerically: 10000 after 9000
    raise ConvertError(f"{directory}: several checkpoints and no `checkpoint` state file naming "
                       f"one: {', '.join(os.path.basename(p) for p in candidates)}; keep one, or "
                       "write the state file")


def from_google(directory: str, lowercase: bool | None = None, *, with_extra: bool = False):
    """A google-research/bert directory -> (model_cfg, canonical params, tokenizer or None)
    [+ extra dict, as from_huggingface's]."""
    loaded = _google(directory, lowercase)
    return loaded if with_extra else loaded[:3]


def _google(directory: str, lowercase: bool | None):
    """from_google + the extra dict ({"untrained": [...]} for a fresh pooler)."""
    cfg_path = os.path.join(directory, "bert_config.json")
    cfg = _google_model_config(cfg_path)
    prefix = _google_checkpoint_prefix(directory)
    try:
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
    except ImportError:
        raise ConvertError(f"{prefix}: reading Google TF checkpoints needs TensorFlow; "
                           "`pip install tensorflow-cpu`") from None
    try:
        reader = tf.train.load_checkpoint(prefix)
        variables = reader.get_variable_to_shape_map()
    except Exception as e:  # TF raises its own error types for unreadable checkpoints.
        raise ConvertError(f"{prefix}: not a readable TF checkpoint ({e})") from None
    tensors, sources = {}, {}
    for name in variables:
        if name.split("/")[-1] in IGNORED_SUFFIXES:
            continue
        mapped = names.google_to_hf_name(name)
        if mapped is None:
            logging.warning("%s: ignoring variable %s", prefix, name)
            continue
        hf_name, transpose = mapped
        try:
            value = np.asarray(reader.get_tensor(name))
        except Exception as e:
            raise ConvertError(f"{prefix}: variable {name!r} cannot be read ({e})") from None
        tensors[hf_name] = value.T if transpose and value.ndim == 2 else value
        sources[hf_name] = name
    for hf_name in names.expected_hf_shapes(cfg):  # Missing tensors are named as Google names them.
        sources.setdefault(hf_name, names.hf_to_google_name(hf_name))
    extra = _add_fresh_pooler(cfg, tensors, prefix, sources)
    params = names.hf_tensors_to_params(cfg, tensors, prefix, sources)
    return cfg, params, _maybe_tokenizer(directory, lowercase, cfg, cfg_path), extra


# ---------------------------------------------------------------------------------------------
# The bertjax directory: bertjax.json + params/ (Orbax) + tokenizer files


def save_bertjax(model_cfg: ml_collections.ConfigDict, params: Params,
                 tokenizer: tokenizers.Tokenizer | None, out_dir: str,
                 extra: dict | None = None) -> None:
    """Writes out_dir/{bertjax.json, params/, vocab.txt, tokenizer.json}; params in any layout."""
    import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel
    out_dir = os.path.abspath(out_dir)
    _make_output_dir(out_dir, "bertjax")
    params = jax.tree.map(lambda x: np.asarray(x, dtype=np.float32),
                          model_lib.canonical_params(params))
    names.check_params(model_cfg, params, "save_bertjax")
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(os.path.join(out_dir, "params"), params, force=True)
    checkpointer.wait_until_finished()
    lowercase = tokenizer_lib.tokenizer_lowercase(tokenizer) if tokenizer is not None else None
    meta = {"format": "bertjax", "version": FORMAT_VERSION, "model": model_cfg.to_dict(),
            "tokenizer": {"lowercase": lowercase}, "extra": extra or {}}
    with open(os.path.join(out_dir, "bertjax.json"), "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=2)
    if tokenizer is not None:
        tokenizer_lib.save_tokenizer(tokenizer, out_dir, model_cfg.max_position_embeddings)


def _read_bertjax_meta(directory: str) -> tuple[dict, ml_collections.ConfigDict]:
    path = os.path.join(directory, "bertjax.json")
    meta = _read_json(path)
    if meta.get("format") != "bertjax":
        raise ConvertError(f"{path}: field 'format' is {meta.get('format')!r}, not 'bertjax'")
    if meta.get("version") != FORMAT_VERSION:
        raise ConvertError(f"{path}: field 'version' is {meta.get('version')!r}; this bertjax "
                           f"reads version {FORMAT_VERSION}")
    fields = meta.get("model")
    if not isinstance(fields, dict):
        raise ConvertError(f"{path}: field 'model' is missing")
    known = config_lib.model()
    for key in fields:
        if key not in known:
            raise ConvertError(f"{path}: field 'model.{key}' is not a model config field")
    cfg = config_lib.model(**fields)
    try:
        model_lib.validate_config(cfg)
    except model_lib.ConfigError as e:
        raise ConvertError(f"{path}: {e}") from None
    return meta, cfg


def load_bertjax(directory: str, lowercase: bool | None = None) -> Loaded:
    """A directory written by `save_bertjax` -> (model_cfg, canonical params, tokenizer or None)."""
    return _load_bertjax(directory, lowercase)[:3]


def _load_bertjax(directory: str, lowercase: bool | None):
    import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel
    directory = os.path.abspath(directory)
    meta, cfg = _read_bertjax_meta(directory)
    params_dir = os.path.join(directory, "params")
    if not os.path.isdir(params_dir):
        raise ConvertError(f"{params_dir}: parameter checkpoint is missing")
    checkpointer = ocp.StandardCheckpointer()
    try:
        tree = checkpointer.metadata(params_dir).item_metadata.tree
        target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype), tree)
        params = checkpointer.restore(params_dir, target)
    except Exception as e:  # Orbax/TensorStore raise many types for a damaged checkpoint.
        raise ConvertError(f"{params_dir}: not a readable Orbax checkpoint ({e})") from None
    params = jax.tree.map(np.asarray, params)
    names.check_params(cfg, params, params_dir)
    if lowercase is None:
        lowercase = (meta.get("tokenizer") or {}).get("lowercase")
    tok = _maybe_tokenizer(directory, lowercase, cfg, os.path.join(directory, "bertjax.json"))
    return cfg, params, tok, meta.get("extra") or {}


# ---------------------------------------------------------------------------------------------
# Any format


def detect_format(path: str) -> str:
    """'bertjax' | 'huggingface' | 'google' | 'workdir'; ConvertError for anything else."""
    if not os.path.exists(path):
        raise ConvertError(f"{path}: no such file or directory")
    if not os.path.isdir(path):
        raise ConvertError(f"{path}: expected a model directory, got a file")
    has = lambda name: os.path.exists(os.path.join(path, name))  # noqa: E731
    run = os.path.isdir(os.path.join(path, "checkpoints"))
    if has("bertjax.json") and run:
        raise ConvertError(f"{path}: holds both a bertjax model (bertjax.json) and a training run "
                           "(checkpoints/), so which to read is unclear; move one of them out")
    if has("bertjax.json"):
        return "bertjax"
    if run:
        return "workdir"
    if has("bert_config.json"):
        return "google"
    if has("config.json"):
        return "huggingface"
    listing = ", ".join(sorted(os.listdir(path))[:10]) or "nothing"
    raise ConvertError(
        f"{path}: unknown model format (found {listing}); expected bertjax.json, config.json + "
        "model.safetensors|pytorch_model.bin, bert_config.json + bert_model.ckpt.*, or a "
        "training workdir with checkpoints/")


def model_config_of(path: str) -> ml_collections.ConfigDict:
    """The model config of a checkpoint in any supported format, without reading its weights."""
    kind = detect_format(path)
    if kind == "bertjax":
        return _read_bertjax_meta(path)[1]
    if kind == "huggingface":
        return _hf_model_config(os.path.join(path, "config.json"))
    if kind == "google":
        return _google_model_config(os.path.join(path, "bert_config.json"))
    from bertjax import checkpoint  # pylint: disable=import-outside-toplevel
    try:  # a training workdir: its run config, if its run saved a checkpoint
        checkpoint.require_checkpoint(path)
    except checkpoint.NoCheckpointError as e:
        raise ConvertError(str(e)) from None
    cfg_path = os.path.join(path, "config.json")
    fields = _read_json(cfg_path).get("model")
    if not isinstance(fields, dict):
        raise ConvertError(f"{cfg_path}: field 'model' is missing")
    known = config_lib.model()
    return config_lib.model(**{k: v for k, v in fields.items() if k in known})


def resolve_use(path: str, use: str = "auto") -> tuple[str, str | None]:
    """(detect_format(path), the W/best/ dir that `use` picks of a workdir or None); ConvertError
    for a `use` that cannot apply: not in best.USES, not "auto" for a non-workdir, or "best" of
    a run that kept no best checkpoint."""
    kind = detect_format(path)
    if use not in best.USES:
        raise ConvertError(f"use must be one of {best.USES}, got {use!r}")
    if use != "auto" and kind != "workdir":
        raise ConvertError(f"{path}: use={use!r} applies to a training workdir, not a {kind} "
                           "model directory")
    if kind != "workdir":
        return kind, None
    try:
        return kind, best.chosen_best_dir(path, use)
    except FileNotFoundError as e:
        raise ConvertError(str(e)) from None


def load_any(path: str, lowercase: bool | None = None, *, with_extra: bool = False,
             use: str = "auto"):
    """Any supported format -> (model_cfg, canonical params, tokenizer or None) [+ extra dict].

    use: of a training workdir, "auto" loads W/best/ when the run kept one (as predict does),
    else the latest step; "best" / "latest" force one (bertjax.best.chosen_best_dir)."""
    kind, best_dir = resolve_use(path, use)
    from bertjax import checkpoint  # pylint: disable=import-outside-toplevel
    if kind == "bertjax" or best_dir is not None:
        if best_dir is not None:
            logging.info("%s: loading its best checkpoint %s", path, best_dir)
        cfg, params, tok, extra = _load_bertjax(best_dir or path, lowercase)
        run_tokenizer = checkpoint.tokenizer_dir(path) if best_dir is not None else None
    elif kind == "huggingface":
        cfg, params, tok, extra = _huggingface(path, lowercase)
    elif kind == "google":
        cfg, params, tok, extra = _google(path, lowercase)
    else:
        try:
            cfg, params, run_tokenizer, extra = checkpoint.restore_params(path)
        except ConvertError:
            raise
        except (checkpoint.NoCheckpointError,  # a run that stopped before its first save
                checkpoint.DamagedCheckpointError) as e:  # the message names the step directory
            raise ConvertError(str(e)) from None
        except Exception as e:  # The workdir reader's own errors, re-labelled with the path.
            raise ConvertError(f"{path}: cannot restore the training checkpoint ({e})") from None
        params = jax.tree.map(np.asarray, model_lib.canonical_params(params))
        tok = None
    if kind == "workdir" and tok is None:  # the run's own tokenizer, W/tokenizer/
        tok = _maybe_tokenizer(run_tokenizer, lowercase, cfg, os.path.join(path, "config.json"))
    return (cfg, params, tok, extra) if with_extra else (cfg, params, tok)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bertjax.convert",
        description="Convert a BERT checkpoint (bertjax, Hugging Face, Google TF, or a training "
                    "workdir) to a bertjax or Hugging Face directory.")
    parser.add_argument("src", help="source directory (format detected)")
    parser.add_argument("dst", help="output directory")
    parser.add_argument("--to", choices=("bertjax", "huggingface"), default="bertjax")
    case = parser.add_mutually_exclusive_group()
    case.add_argument("--lowercase", dest="lowercase", action="store_true", default=None,
                      help="force an uncased tokenizer")
    case.add_argument("--cased", dest="lowercase", action="store_false",
                      help="force a cased tokenizer")
    parser.add_argument("--use", choices=best.USES, default="auto",
                        help="of a training workdir: its best checkpoint W/best/ when kept "
                             "(auto, as predict), or force best / the latest step")
    args = parser.parse_args(argv)
    try:
        _, best_dir = resolve_use(args.src, args.use)  # a missing source is named first
        # Before loading: a large model takes a while to read.
        check_output_dir(args.dst, args.to, (args.src, best_dir or args.src))
        cfg, params, tok, extra = load_any(args.src, args.lowercase, with_extra=True,
                                           use=args.use)
        if args.to == "bertjax":
            save_bertjax(cfg, params, tok, args.dst, extra)
        else:
            # without the task heads, or a pooler that was never trained
            params = to_huggingface(cfg, params, tok, args.dst, extra.get(UNTRAINED, ()))
    except ConvertError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.to} model to {args.dst} "
          f"({model_lib.count_params(params):,} parameters, heads: "
          f"{', '.join(sorted(set(params) - {'bert'})) or 'none'})")
    if tok is None:  # embed and fine-tuning need one; say so now, not at their first use
        print(f"warning: {args.src} has no tokenizer (vocab.txt or tokenizer.json), so neither "
              f"has {args.dst}: copy the model's vocab.txt into {args.dst} before embedding or "
              "fine-tuning with it", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
