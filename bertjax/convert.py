"""Hugging Face / Google TF BERT weights <-> bertjax, and the bertjax model directory.

  python -m bertjax.convert SRC DST [--to bertjax|huggingface] [--lowercase | --cased]

SRC may be any format `load_any` detects: a bertjax directory, a Hugging Face directory
(config.json + model.safetensors or pytorch_model.bin), a Google directory (bert_config.json +
bert_model.ckpt.*), or a training workdir (checkpoints/). Every input this module cannot use raises
`ConvertError` naming the file and the tensor or field; the CLI prints it and exits with status 2.

All readers go through one intermediate form: {HF name without the "bert." prefix: array in HF's
orientation (Linear weights [out, in])}, e.g. "encoder.layer.0.attention.self.query.weight".
`_to_params` turns that into the canonical bertjax tree (see bertjax/model.py) and `_from_params`
back. Tensors are read with the safetensors numpy API, `torch.load(weights_only=True)` or
`tf.train.load_checkpoint`: nothing is unpickled or executed.
"""

from __future__ import annotations

import argparse
import glob
import json
import logging
import os
import re
import sys
from typing import Any

import jax
import ml_collections
import numpy as np
import tokenizers

from bertjax import config as config_lib
from bertjax import model as model_lib
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


class ConvertError(ValueError):
    """An input that cannot be converted; the message names the file and the tensor or field."""


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
# Name and layout mapping: HF-named tensors <-> the canonical bertjax tree


def _layer_names(i: int) -> dict[str, str]:
    p = f"encoder.layer.{i}."
    return {"q": p + "attention.self.query", "k": p + "attention.self.key",
            "v": p + "attention.self.value", "out": p + "attention.output.dense",
            "attention_norm": p + "attention.output.LayerNorm",
            "intermediate": p + "intermediate.dense", "output": p + "output.dense",
            "output_norm": p + "output.LayerNorm"}


def _expected_shapes(cfg) -> dict[str, tuple[int, ...]]:
    """Every HF tensor (no "bert." prefix) that a model of `cfg` has -> its shape."""
    d, f, v = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size
    shapes = {"embeddings.word_embeddings.weight": (v, d),
              "embeddings.position_embeddings.weight": (cfg.max_position_embeddings, d),
              "embeddings.token_type_embeddings.weight": (cfg.type_vocab_size, d),
              "embeddings.LayerNorm.weight": (d,), "embeddings.LayerNorm.bias": (d,),
              "pooler.dense.weight": (d, d), "pooler.dense.bias": (d,)}
    for i in range(cfg.num_layers):
        n = _layer_names(i)
        for key in ("q", "k", "v", "out"):
            shapes[n[key] + ".weight"], shapes[n[key] + ".bias"] = (d, d), (d,)
        for key in ("attention_norm", "output_norm"):
            shapes[n[key] + ".weight"], shapes[n[key] + ".bias"] = (d,), (d,)
        shapes[n["intermediate"] + ".weight"], shapes[n["intermediate"] + ".bias"] = (f, d), (f,)
        shapes[n["output"] + ".weight"], shapes[n["output"] + ".bias"] = (d, f), (d,)
    return shapes


MLM_SHAPES = {"cls.predictions.transform.dense.weight": ("D", "D"),
              "cls.predictions.transform.dense.bias": ("D",),
              "cls.predictions.transform.LayerNorm.weight": ("D",),
              "cls.predictions.transform.LayerNorm.bias": ("D",), "cls.predictions.bias": ("V",)}
NSP_SHAPES = {"cls.seq_relationship.weight": (2, "D"), "cls.seq_relationship.bias": (2,)}


def _head_shapes(cfg, table):
    dims = {"D": cfg.hidden_size, "V": cfg.vocab_size}
    return {k: tuple(dims.get(s, s) for s in shape) for k, shape in table.items()}


def _canonical_name(name: str) -> str:
    """HF variants -> one spelling: no "bert." prefix, LayerNorm gamma/beta -> weight/bias."""
    if name.startswith("bert."):
        name = name[len("bert."):]
    name = re.sub(r"(LayerNorm|layer_norm)\.gamma$", "LayerNorm.weight", name)
    name = re.sub(r"(LayerNorm|layer_norm)\.beta$", "LayerNorm.bias", name)
    return name


def _to_params(cfg, tensors: dict[str, np.ndarray], where: str,
               sources: dict[str, str] | None = None) -> Params:
    """{canonical HF name: array} -> the canonical bertjax params (with heads that are present)."""
    sources = sources or {}
    if "cls.predictions.bias" not in tensors and "cls.predictions.decoder.bias" in tensors:
        tensors["cls.predictions.bias"] = tensors["cls.predictions.decoder.bias"]
    required = _expected_shapes(cfg)
    mlm, nsp = _head_shapes(cfg, MLM_SHAPES), _head_shapes(cfg, NSP_SHAPES)
    if any(k in tensors for k in mlm):
        required.update(mlm)
    if any(k in tensors for k in nsp):
        required.update(nsp)
    for name, shape in required.items():
        label = sources.get(name, name)
        if name not in tensors:
            raise ConvertError(f"{where}: tensor {label!r} is missing")
        if tuple(tensors[name].shape) != shape:
            raise ConvertError(f"{where}: tensor {label!r} has shape {tuple(tensors[name].shape)}, "
                               f"expected {shape} from the config")
    decoder = tensors.get("cls.predictions.decoder.weight")
    if decoder is not None and not np.array_equal(
            decoder, tensors["embeddings.word_embeddings.weight"]):
        raise ConvertError(f"{where}: 'cls.predictions.decoder.weight' is not tied to the word "
                           "embeddings; bertjax ties the MLM decoder")
    unused = sorted(set(tensors) - set(required) - {"cls.predictions.decoder.weight",
                                                    "cls.predictions.decoder.bias"})
    if unused:
        logging.warning("%s: ignoring %d tensors bertjax has no place for: %s", where,
                        len(unused), ", ".join(sources.get(u, u) for u in unused[:10]))

    t = {k: np.asarray(tensors[k], dtype=np.float32) for k in required}
    n, h, d = cfg.num_heads, cfg.hidden_size // cfg.num_heads, cfg.hidden_size

    def dense(name):  # HF Linear weight [out, in] -> flax kernel [in, out].
        return {"kernel": t[name + ".weight"].T.copy(), "bias": t[name + ".bias"]}

    def norm(name):
        return {"scale": t[name + ".weight"], "bias": t[name + ".bias"]}

    encoder = {}
    for i in range(cfg.num_layers):
        names = _layer_names(i)
        kernels = [t[names[x] + ".weight"].T.reshape(d, n, h) for x in "qkv"]
        biases = [t[names[x] + ".bias"].reshape(n, h) for x in "qkv"]
        encoder[f"layer_{i}"] = {
            "attention": {
                "qkv": {"kernel": np.stack(kernels, axis=1), "bias": np.stack(biases, axis=0)},
                "out": {"kernel": t[names["out"] + ".weight"].T.reshape(n, h, d).copy(),
                        "bias": t[names["out"] + ".bias"]}},
            "attention_norm": norm(names["attention_norm"]),
            "intermediate": dense(names["intermediate"]), "output": dense(names["output"]),
            "output_norm": norm(names["output_norm"])}
    embeddings = {k: {"embedding": t[f"embeddings.{k}.weight"]}
                  for k in ("word_embeddings", "position_embeddings", "token_type_embeddings")}
    embeddings["layer_norm"] = norm("embeddings.LayerNorm")
    params: Params = {"bert": {"embeddings": embeddings, "encoder": encoder,
                               "pooler": dense("pooler.dense")}}
    if "cls.predictions.bias" in required:
        params["mlm"] = {"transform": dense("cls.predictions.transform.dense"),
                         "layer_norm": norm("cls.predictions.transform.LayerNorm"),
                         "bias": t["cls.predictions.bias"]}
    if "cls.seq_relationship.bias" in required:
        params["nsp"] = {"kernel": t["cls.seq_relationship.weight"].T.copy(),
                         "bias": t["cls.seq_relationship.bias"]}
    return params


def _from_params(cfg, params: Params) -> dict[str, np.ndarray]:
    """Canonical bertjax params -> {canonical HF name: array [out, in]}; inverse of _to_params."""
    p = jax.tree.map(np.asarray, model_lib.canonical_params(params))
    bert = p["bert"]
    out: dict[str, np.ndarray] = {}
    n, h, d = cfg.num_heads, cfg.hidden_size // cfg.num_heads, cfg.hidden_size

    def dense(name, tree):
        out[name + ".weight"], out[name + ".bias"] = tree["kernel"].T, tree["bias"]

    def norm(name, tree):
        out[name + ".weight"], out[name + ".bias"] = tree["scale"], tree["bias"]

    for k in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
        out[f"embeddings.{k}.weight"] = bert["embeddings"][k]["embedding"]
    norm("embeddings.LayerNorm", bert["embeddings"]["layer_norm"])
    for i in range(cfg.num_layers):
        names, layer = _layer_names(i), bert["encoder"][f"layer_{i}"]
        qkv = layer["attention"]["qkv"]
        for j, x in enumerate("qkv"):
            out[names[x] + ".weight"] = qkv["kernel"][:, j].reshape(d, d).T
            out[names[x] + ".bias"] = qkv["bias"][j].reshape(d)
        out[names["out"] + ".weight"] = layer["attention"]["out"]["kernel"].reshape(d, d).T
        out[names["out"] + ".bias"] = layer["attention"]["out"]["bias"]
        norm(names["attention_norm"], layer["attention_norm"])
        dense(names["intermediate"], layer["intermediate"])
        dense(names["output"], layer["output"])
        norm(names["output_norm"], layer["output_norm"])
    dense("pooler.dense", bert["pooler"])
    if "mlm" in p:
        dense("cls.predictions.transform.dense", p["mlm"]["transform"])
        norm("cls.predictions.transform.LayerNorm", p["mlm"]["layer_norm"])
        out["cls.predictions.bias"] = p["mlm"]["bias"]
    if "nsp" in p:
        out["cls.seq_relationship.weight"] = p["nsp"]["kernel"].T
        out["cls.seq_relationship.bias"] = p["nsp"]["bias"]
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}


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


def _read_torch_bin(path: str) -> dict[str, np.ndarray]:
    try:
        import torch  # pylint: disable=import-outside-toplevel
    except ImportError:
        raise ConvertError(f"{path}: reading pytorch_model.bin needs PyTorch (`pip install torch`);"
                           " or convert it to model.safetensors") from None
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as e:  # torch raises many types for a bad file.
        raise ConvertError(f"{path}: not a readable PyTorch weights file ({e})") from None
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


def _maybe_tokenizer(directory: str, lowercase: bool | None):
    if not any(os.path.isfile(os.path.join(directory, n)) for n in ("vocab.txt", "tokenizer.json")):
        return None
    try:
        return tokenizer_lib.load_tokenizer(directory, lowercase)
    except tokenizer_lib.TokenizerError as e:
        raise ConvertError(str(e)) from None


def from_huggingface(directory: str, lowercase: bool | None = None) -> Loaded:
    """An HF BERT directory -> (model_cfg, canonical params, tokenizer or None)."""
    cfg_path = os.path.join(directory, "config.json")
    cfg = _model_config(_read_json(cfg_path), cfg_path, HF_TO_OURS_ACT)
    raw, where = _read_hf_weights(directory)
    tensors = {}
    for name, value in raw.items():
        canonical = _canonical_name(name)
        if canonical.endswith("position_ids"):
            continue
        tensors[canonical] = value
    return cfg, _to_params(cfg, tensors, where), _maybe_tokenizer(directory, lowercase)


def to_huggingface(model_cfg: ml_collections.ConfigDict, params: Params,
                   tokenizer: tokenizers.Tokenizer | None, out_dir: str) -> None:
    """Writes config.json + model.safetensors (+ tokenizer files) that transformers loads."""
    from safetensors.numpy import save_file  # pylint: disable=import-outside-toplevel
    params = model_lib.canonical_params(params)
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
    tensors = _from_params(model_cfg, params)
    if heads:  # A headed model's base lives under "bert.", the heads under "cls.".
        tensors = {(k if k.startswith("cls.") else "bert." + k): v for k, v in tensors.items()}
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "config.json"), "w", encoding="utf-8") as f:
        json.dump(hf_cfg, f, indent=2)
    save_file(tensors, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
    if tokenizer is not None:
        tokenizer_lib.save_tokenizer(tokenizer, out_dir)


# ---------------------------------------------------------------------------------------------
# Google TF checkpoints (google-research/bert)


def _google_to_hf_name(name: str) -> tuple[str, bool] | None:
    """A google-research/bert variable name -> (canonical HF name, transpose?), None if unknown."""
    parts = name.split("/")
    if parts[0] == "bert":
        parts = parts[1:]
    elif parts[0] != "cls":
        return None
    path = ".".join(parts)
    path = re.sub(r"layer_(\d+)", r"layer.\1", path)
    if path == "cls.predictions.output_bias":
        return "cls.predictions.bias", False
    if path == "cls.seq_relationship.output_weights":  # [2, D]: already HF's [out, in].
        return "cls.seq_relationship.weight", False
    if path == "cls.seq_relationship.output_bias":
        return "cls.seq_relationship.bias", False
    if re.fullmatch(r"embeddings\.(word|position|token_type)_embeddings", path):
        return path + ".weight", False
    if path.endswith(".kernel"):
        return path[: -len(".kernel")] + ".weight", True
    if path.endswith(".gamma"):
        return path[: -len(".gamma")] + ".weight", False
    if path.endswith(".beta") or path.endswith(".bias"):
        return re.sub(r"\.beta$", ".bias", path), False
    return None


def _google_checkpoint_prefix(directory: str) -> str:
    prefix = os.path.join(directory, "bert_model.ckpt")
    if os.path.isfile(prefix + ".index"):
        return prefix
    indexes = sorted(glob.glob(os.path.join(directory, "*.ckpt*.index")))
    if not indexes:
        raise ConvertError(f"{prefix}.index: checkpoint file is missing")
    return indexes[-1][: -len(".index")]


def from_google(directory: str, lowercase: bool | None = None) -> Loaded:
    """A google-research/bert directory -> (model_cfg, canonical params, tokenizer or None)."""
    cfg_path = os.path.join(directory, "bert_config.json")
    cfg = _model_config(_read_json(cfg_path), cfg_path, GOOGLE_TO_OURS_ACT)
    prefix = _google_checkpoint_prefix(directory)
    try:
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
    except ImportError:
        raise ConvertError(f"{prefix}: reading Google TF checkpoints needs TensorFlow; "
                           "`pip install tensorflow-cpu`") from None
    try:
        reader = tf.train.load_checkpoint(prefix)
        names = reader.get_variable_to_shape_map()
    except Exception as e:  # TF raises its own error types for unreadable checkpoints.
        raise ConvertError(f"{prefix}: not a readable TF checkpoint ({e})") from None
    tensors, sources = {}, {}
    for name in names:
        if name.split("/")[-1] in IGNORED_SUFFIXES:
            continue
        mapped = _google_to_hf_name(name)
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
    for hf_name, shape in _expected_shapes(cfg).items():  # Name missing ones as Google does.
        sources.setdefault(hf_name, _hf_to_google_name(hf_name))
    return cfg, _to_params(cfg, tensors, prefix, sources), _maybe_tokenizer(directory, lowercase)


def _hf_to_google_name(hf_name: str) -> str:
    name = re.sub(r"layer\.(\d+)", r"layer_\1", hf_name)
    if name.startswith("embeddings.") and name.endswith("_embeddings.weight"):
        name = name[: -len(".weight")]
    name = re.sub(r"LayerNorm\.weight$", "LayerNorm.gamma", name)
    name = re.sub(r"LayerNorm\.bias$", "LayerNorm.beta", name)
    name = re.sub(r"\.weight$", ".kernel", name)
    return "bert/" + name.replace(".", "/")


# ---------------------------------------------------------------------------------------------
# The bertjax directory: bertjax.json + params/ (Orbax) + tokenizer files


def _check_params(cfg, params: Params, where: str) -> None:
    """Every leaf of `params` has the path and shape the model of `cfg` expects."""
    flat_cfg = ml_collections.ConfigDict(cfg.to_dict())
    flat_cfg.scan_layers = False
    module = model_lib.BertForPreTraining(flat_cfg)
    ids = jax.ShapeDtypeStruct((1, 2), np.int32)
    expected = jax.eval_shape(lambda: module.init(jax.random.key(0), ids))["params"]
    expected = model_lib.unbox(expected)
    if "bert" not in params:
        raise ConvertError(f"{where}: parameter tree has no 'bert' subtree")
    for head in ("bert", "mlm", "nsp"):
        if head not in params:
            continue
        want = {jax.tree_util.keystr(k): v.shape
                for k, v in jax.tree_util.tree_leaves_with_path(expected[head])}
        have = {jax.tree_util.keystr(k): np.shape(v)
                for k, v in jax.tree_util.tree_leaves_with_path(params[head])}
        for key in sorted(set(want) | set(have)):
            if key not in have:
                raise ConvertError(f"{where}: parameter {head}{key} is missing")
            if key not in want:
                raise ConvertError(f"{where}: parameter {head}{key} is not part of the model")
            if tuple(have[key]) != tuple(want[key]):
                raise ConvertError(f"{where}: parameter {head}{key} has shape {have[key]}, "
                                   f"expected {want[key]}")


def save_bertjax(model_cfg: ml_collections.ConfigDict, params: Params,
                 tokenizer: tokenizers.Tokenizer | None, out_dir: str,
                 extra: dict | None = None) -> None:
    """Writes out_dir/{bertjax.json, params/, vocab.txt, tokenizer.json}; params in any layout."""
    import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel
    out_dir = os.path.abspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    params = jax.tree.map(lambda x: np.asarray(x, dtype=np.float32),
                          model_lib.canonical_params(params))
    _check_params(model_cfg, params, "save_bertjax")
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(os.path.join(out_dir, "params"), params, force=True)
    checkpointer.wait_until_finished()
    lowercase = tokenizer_lib.tokenizer_lowercase(tokenizer) if tokenizer is not None else None
    meta = {"format": "bertjax", "version": FORMAT_VERSION, "model": model_cfg.to_dict(),
            "tokenizer": {"lowercase": lowercase}, "extra": extra or {}}
    with open(os.path.join(out_dir, "bertjax.json"), "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=2)
    if tokenizer is not None:
        tokenizer_lib.save_tokenizer(tokenizer, out_dir)


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
    _check_params(cfg, params, params_dir)
    if lowercase is None:
        lowercase = (meta.get("tokenizer") or {}).get("lowercase")
    return cfg, params, _maybe_tokenizer(directory, lowercase), meta.get("extra") or {}


# ---------------------------------------------------------------------------------------------
# Any format


def detect_format(path: str) -> str:
    """'bertjax' | 'huggingface' | 'google' | 'workdir'; ConvertError for anything else."""
    if not os.path.exists(path):
        raise ConvertError(f"{path}: no such file or directory")
    if not os.path.isdir(path):
        raise ConvertError(f"{path}: expected a model directory, got a file")
    has = lambda name: os.path.exists(os.path.join(path, name))  # noqa: E731
    if has("bertjax.json"):
        return "bertjax"
    if os.path.isdir(os.path.join(path, "checkpoints")):
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


def load_any(path: str, lowercase: bool | None = None, *, with_extra: bool = False):
    """Any supported format -> (model_cfg, canonical params, tokenizer or None) [+ extra dict]."""
    kind = detect_format(path)
    extra: dict = {}
    if kind == "bertjax":
        cfg, params, tok, extra = _load_bertjax(path, lowercase)
    elif kind == "huggingface":
        cfg, params, tok = from_huggingface(path, lowercase)
    elif kind == "google":
        cfg, params, tok = from_google(path, lowercase)
    else:
        from bertjax import checkpoint  # pylint: disable=import-outside-toplevel
        try:
            cfg, params, tokenizer_dir, extra = checkpoint.restore_params(path)
        except ConvertError:
            raise
        except Exception as e:  # The workdir reader's own errors, re-labelled with the path.
            raise ConvertError(f"{path}: cannot restore the training checkpoint ({e})") from None
        params = jax.tree.map(np.asarray, model_lib.canonical_params(params))
        tok = _maybe_tokenizer(tokenizer_dir, lowercase) if tokenizer_dir else None
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
    args = parser.parse_args(argv)
    try:
        cfg, params, tok, extra = load_any(args.src, args.lowercase, with_extra=True)
        if args.to == "bertjax":
            save_bertjax(cfg, params, tok, args.dst, extra)
        else:
            to_huggingface(cfg, params, tok, args.dst)
    except ConvertError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.to} model to {args.dst} "
          f"({model_lib.count_params(params):,} parameters, heads: "
          f"{', '.join(sorted(set(params) - {'bert'})) or 'none'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
