"""BERT parameter names across formats: HF tensor names <-> the bertjax tree, Google <-> HF names.

The meeting point of every format is {HF name without the "bert." prefix: array in HF's
orientation (Linear weights [out, in])}, e.g. "encoder.layer.0.attention.self.query.weight".
`hf_tensors_to_params` turns that into the canonical bertjax tree (see bertjax/model.py):
Q, K and V weights [D, D] become the fused qkv kernel [D, 3, N, H] and bias [3, N, H], the
attention output weight the out kernel [N, H, D]; `params_to_hf_tensors` is its exact inverse.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import jax
import ml_collections
import numpy as np

from bertjax import model as model_lib

Params = dict[str, Any]
# A model's extra dict's key: parameter subtrees ("bert/pooler", "nsp") that were never trained:
# initialised at import because the checkpoint lacked them, or left as initialised by a run whose
# loss never read them (an MLM-only pretraining run's pooler).
UNTRAINED = "untrained"


class ConvertError(ValueError):
    """An input that cannot be converted; the message names the file and the tensor or field."""


def layer_names(i: int) -> dict[str, str]:
    p = f"encoder.layer.{i}."
    return {"q": p + "attention.self.query", "k": p + "attention.self.key",
            "v": p + "attention.self.value", "out": p + "attention.output.dense",
            "attention_norm": p + "attention.output.LayerNorm",
            "intermediate": p + "intermediate.dense", "output": p + "output.dense",
            "output_norm": p + "output.LayerNorm"}


def expected_hf_shapes(cfg) -> dict[str, tuple[int, ...]]:
    """Every HF tensor (no "bert." prefix) that a model of `cfg` has -> its shape."""
    d, f, v = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size
    shapes = {"embeddings.word_embeddings.weight": (v, d),
              "embeddings.position_embeddings.weight": (cfg.max_position_embeddings, d),
              "embeddings.token_type_embeddings.weight": (cfg.type_vocab_size, d),
              "embeddings.LayerNorm.weight": (d,), "embeddings.LayerNorm.bias": (d,),
              "pooler.dense.weight": (d, d), "pooler.dense.bias": (d,)}
    for i in range(cfg.num_layers):
        n = layer_names(i)
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


def head_shapes(cfg, table):
    dims = {"D": cfg.hidden_size, "V": cfg.vocab_size}
    return {k: tuple(dims.get(s, s) for s in shape) for k, shape in table.items()}


def canonical_hf_name(name: str) -> str:
    """HF variants -> one spelling: no "bert." prefix, LayerNorm gamma/beta -> weight/bias."""
    if name.startswith("bert."):
        name = name[len("bert."):]
    name = re.sub(r"(LayerNorm|layer_norm)\.gamma$", "LayerNorm.weight", name)
    name = re.sub(r"(LayerNorm|layer_norm)\.beta$", "LayerNorm.bias", name)
    return name


def hf_tensors_to_params(cfg, tensors: dict[str, np.ndarray], where: str,
               sources: dict[str, str] | None = None) -> Params:
    """{canonical HF name: array} -> the canonical bertjax params (with heads that are present)."""
    sources = sources or {}
    if "cls.predictions.bias" not in tensors and "cls.predictions.decoder.bias" in tensors:
        tensors["cls.predictions.bias"] = tensors["cls.predictions.decoder.bias"]
    required = expected_hf_shapes(cfg)
    mlm, nsp = head_shapes(cfg, MLM_SHAPES), head_shapes(cfg, NSP_SHAPES)
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
        names = layer_names(i)
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


def params_to_hf_tensors(cfg, params: Params) -> dict[str, np.ndarray]:
    """Canonical bertjax params -> {canonical HF name: array [out, in]}; inverse of the above."""
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
        names, layer = layer_names(i), bert["encoder"][f"layer_{i}"]
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


def google_to_hf_name(name: str) -> tuple[str, bool] | None:
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


def hf_to_google_name(hf_name: str) -> str:
    name = re.sub(r"layer\.(\d+)", r"layer_\1", hf_name)
    if name.startswith("embeddings.") and name.endswith("_embeddings.weight"):
        name = name[: -len(".weight")]
    name = re.sub(r"LayerNorm\.weight$", "LayerNorm.gamma", name)
    name = re.sub(r"LayerNorm\.bias$", "LayerNorm.beta", name)
    name = re.sub(r"\.weight$", ".kernel", name)
    return "bert/" + name.replace(".", "/")


def check_params(cfg, params: Params, where: str) -> None:
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
