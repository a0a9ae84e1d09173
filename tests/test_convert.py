"""Imported weights compute what transformers (PyTorch CPU) computes; exports load back in it."""

import json
import os
import subprocess
import sys
import types

import jax
import ml_collections
import numpy as np
import pytest
import torch
import transformers
from safetensors.numpy import load_file, save_file

from bertjax import convert
from bertjax import model as model_lib
from conftest import TINY_HF, randomize

B, S, P = 3, 13, 4
LENGTHS = [13, 9, 5]


def _batch(vocab_size, seed=0):
    """A padded batch: token types 0 then 1 within each sequence, zeros in the attention mask."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, vocab_size, size=(B, S)).astype(np.int32)
    mask = np.zeros((B, S), np.int32)
    types_ = np.zeros((B, S), np.int32)
    positions = np.zeros((B, P), np.int32)
    for b, n in enumerate(LENGTHS):
        mask[b, :n] = 1
        types_[b, n // 2:n] = 1
        ids[b, n:] = 0
        positions[b] = rng.choice(np.arange(1, n), size=P, replace=False)
    return ids, types_, mask, positions


def _rel(ours, ref):
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    assert ours.shape == ref.shape
    return np.max(np.abs(ours - ref)) / np.max(np.abs(ref))


def _hf_forward(torch_model, ids, types_, mask):
    with torch.no_grad():
        return torch_model(input_ids=torch.tensor(ids, dtype=torch.long),
                           token_type_ids=torch.tensor(types_, dtype=torch.long),
                           attention_mask=torch.tensor(mask, dtype=torch.long),
                           output_hidden_states=True)


def _ours_forward(cfg, params, ids, types_, mask, positions):
    params = model_lib.layout_params(params, cfg)
    if "mlm" in params:
        module = model_lib.BertForPreTraining(cfg)
        return module.apply({"params": params}, ids, types_, mask, positions,
                            output_hidden_states=True)
    return model_lib.BertModel(cfg).apply({"params": params["bert"]}, ids, types_, mask,
                                          output_hidden_states=True)


def _assert_same(cfg, params, torch_model, vocab_size, heads=True):
    ids, types_, mask, positions = _batch(vocab_size)
    ref = _hf_forward(torch_model, ids, types_, mask)
    ours = _ours_forward(cfg, params, ids, types_, mask, positions)
    keep = mask.astype(bool)
    assert len(ours["hidden_states"]) == len(ref.hidden_states) == cfg.num_layers + 1
    for layer, (a, b) in enumerate(zip(ours["hidden_states"], ref.hidden_states)):
        assert _rel(np.asarray(a)[keep], b.numpy()[keep]) < 1e-4, f"hidden state {layer}"
    if heads:
        mlm_ref = np.take_along_axis(ref.prediction_logits.numpy(), positions[..., None], axis=1)
        assert _rel(ours["mlm_logits"], mlm_ref) < 1e-4
        assert _rel(ours["nsp_logits"], ref.seq_relationship_logits.numpy()) < 1e-4
        pooled_ref = torch_model.bert.pooler(ref.hidden_states[-1]).detach().numpy()
    else:
        pooled_ref = ref.pooler_output.numpy()
    assert _rel(ours["pooled_output"], pooled_ref) < 1e-4


@pytest.fixture(scope="module")
def hf_model(hf_pretraining_dir):
    return transformers.BertForPreTraining.from_pretrained(str(hf_pretraining_dir)).eval()


@pytest.fixture(scope="module")
def imported(hf_pretraining_dir):
    return convert.from_huggingface(str(hf_pretraining_dir))


@pytest.mark.parametrize("scan", [False, True], ids=["unscanned", "scan_layers"])
def test_huggingface_pretraining_matches(imported, hf_model, scan):
    cfg, params, tok = imported
    assert set(params) == {"bert", "mlm", "nsp"}
    assert cfg.hidden_act == "gelu" and cfg.num_layers == 3 and cfg.hidden_size == 30
    assert tok is not None and tok.token_to_id("[CLS]") == 2
    cfg = ml_collections.ConfigDict(cfg.to_dict())
    cfg.scan_layers = scan
    _assert_same(cfg, params, hf_model, TINY_HF["vocab_size"])


def test_huggingface_bare_model_pytorch_bin(tmp_path):
    hf_cfg = transformers.BertConfig(vocab_size=53, hidden_size=35, num_attention_heads=5,
                                     intermediate_size=23, num_hidden_layers=2,
                                     max_position_embeddings=29, type_vocab_size=3,
                                     hidden_act="gelu_new", layer_norm_eps=1e-7)
    torch.manual_seed(3)
    torch_model = randomize(transformers.BertModel(hf_cfg), seed=4)
    torch_model.save_pretrained(str(tmp_path), safe_serialization=False)
    assert (tmp_path / "pytorch_model.bin").is_file()
    cfg, params, tok = convert.from_huggingface(str(tmp_path))
    assert tok is None and set(params) == {"bert"}
    assert cfg.hidden_act == "gelu_tanh" and cfg.type_vocab_size == 3
    assert cfg.layer_norm_eps == pytest.approx(1e-7)
    _assert_same(cfg, params, torch_model, 53, heads=False)


def test_old_gamma_beta_names(tmp_path, hf_pretraining_dir, imported):
    tensors = load_file(str(hf_pretraining_dir / "model.safetensors"))
    renamed = {k.replace("LayerNorm.weight", "LayerNorm.gamma")
                .replace("LayerNorm.bias", "LayerNorm.beta"): v for k, v in tensors.items()}
    save_file(renamed, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text((hf_pretraining_dir / "config.json").read_text())
    _, params, _ = convert.from_huggingface(str(tmp_path))
    jax.tree.map(np.testing.assert_array_equal, params, imported[1])


def test_roundtrip_bertjax_huggingface_bertjax_is_exact(tmp_path, imported, hf_model):
    cfg, params, tok = imported
    convert.to_huggingface(cfg, params, tok, str(tmp_path / "hf"))
    reloaded, info = transformers.BertForPreTraining.from_pretrained(
        str(tmp_path / "hf"), output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert not info["mismatched_keys"]
    ids, types_, mask, _ = _batch(TINY_HF["vocab_size"])
    a, b = _hf_forward(reloaded.eval(), ids, types_, mask), _hf_forward(hf_model, ids, types_, mask)
    np.testing.assert_array_equal(a.prediction_logits.numpy(), b.prediction_logits.numpy())
    cfg2, params2, tok2 = convert.from_huggingface(str(tmp_path / "hf"))
    assert cfg2.to_dict() == cfg.to_dict()
    assert jax.tree.structure(params2) == jax.tree.structure(params)
    assert all(jax.tree.leaves(jax.tree.map(np.array_equal, params2, params)))
    assert tok2.get_vocab() == tok.get_vocab()
    hf_tok = transformers.BertTokenizer.from_pretrained(str(tmp_path / "hf"))
    assert hf_tok("Café the FOX")["input_ids"] == tok.encode("Café the FOX").ids


def test_exported_tokenizer_truncates_to_the_models_positions(tmp_path, imported):
    cfg, params, tok = imported
    assert cfg.max_position_embeddings == 41  # not 512, so a hard-coded length cannot pass
    convert.to_huggingface(cfg, params, tok, str(tmp_path / "hf"))
    convert.save_bertjax(cfg, params, tok, str(tmp_path / "bj"))
    for out in ("hf", "bj"):
        saved = json.loads((tmp_path / out / "tokenizer_config.json").read_text())
        assert saved["model_max_length"] == 41, out
    hf_tok = transformers.BertTokenizerFast.from_pretrained(str(tmp_path / "hf"))
    assert len(hf_tok("the cat sat " * 100, truncation=True)["input_ids"]) == 41


def test_bertjax_directory_roundtrip_and_gelu_tanh_export(tmp_path, imported):
    cfg, params, tok = imported
    convert.save_bertjax(cfg, params, tok, str(tmp_path / "bj"), extra={"task": "pretraining"})
    meta = json.loads((tmp_path / "bj" / "bertjax.json").read_text())
    assert meta["format"] == "bertjax" and meta["version"] == 1
    assert meta["tokenizer"] == {"lowercase": True}
    cfg2, params2, tok2, extra = convert.load_any(str(tmp_path / "bj"), with_extra=True)
    assert extra == {"task": "pretraining"} and cfg2.to_dict() == cfg.to_dict()
    assert all(jax.tree.leaves(jax.tree.map(np.array_equal, params2, params)))
    assert tok2.encode("the quick fox").ids == tok.encode("the quick fox").ids
    cfg_tanh = ml_collections.ConfigDict(cfg.to_dict())
    cfg_tanh.hidden_act = "gelu_tanh"
    convert.to_huggingface(cfg_tanh, params, None, str(tmp_path / "hf"))
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["hidden_act"] == "gelu_new"


def test_export_refuses_what_huggingface_cannot_represent(tmp_path, imported):
    cfg, params, _ = imported
    for field, value in [("pre_layer_norm", True), ("position_embedding", "sinusoidal")]:
        bad = ml_collections.ConfigDict(cfg.to_dict())
        bad[field] = value
        with pytest.raises(convert.ConvertError, match=field):
            convert.to_huggingface(bad, params, None, str(tmp_path))


def _write_google_checkpoint(directory, torch_model, cfg_dict):
    """google-research/bert's variable names and orientations, via TF1 graph-mode Variables."""
    import tensorflow as tf
    sd = {k: v.numpy() for k, v in torch_model.state_dict().items()}
    variables = {}
    for name, value in sd.items():
        if name.endswith("position_ids") or "decoder" in name:
            continue
        g = name.replace("bert.", "bert/", 1) if name.startswith("bert.") else name
        g = g.replace(".", "/").replace("layer/", "layer_")
        if g.endswith("_embeddings/weight"):
            g = g[: -len("/weight")]
        elif "LayerNorm" in g:
            g = g.replace("/weight", "/gamma").replace("/bias", "/beta")
        elif g == "cls/predictions/bias":
            g = "cls/predictions/output_bias"
        elif g.startswith("cls/seq_relationship"):
            g = g.replace("/weight", "/output_weights").replace("/bias", "/output_bias")
        elif g.endswith("/weight"):
            g, value = g[: -len("/weight")] + "/kernel", value.T  # TF dense kernels are [in, out].
        variables[g] = value
    assert "bert/encoder/layer_1/attention/self/query/kernel" in variables
    assert variables["cls/seq_relationship/output_weights"].shape == (2, 30)
    with tf.Graph().as_default():
        tf_vars = [tf.compat.v1.Variable(v, name=k) for k, v in variables.items()]
        tf_vars.append(tf.compat.v1.Variable(np.zeros((30,), np.float32),
                                             name="bert/pooler/dense/kernel/adam_m"))
        tf_vars.append(tf.compat.v1.Variable(np.int64(7), name="global_step"))
        saver = tf.compat.v1.train.Saver(tf_vars)
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            saver.save(sess, os.path.join(directory, "bert_model.ckpt"))
    with open(os.path.join(directory, "bert_config.json"), "w") as f:
        json.dump(cfg_dict, f)


def test_google_checkpoint_matches_huggingface_gelu_new(tmp_path, tiny_tokenizer_dir):
    torch.manual_seed(5)
    torch_model = randomize(transformers.BertForPreTraining(
        transformers.BertConfig(hidden_act="gelu_new", **TINY_HF)), seed=6)
    google_dir = tmp_path / "uncased_L-3_H-30_A-3"
    google_dir.mkdir()
    google_cfg = {"attention_probs_dropout_prob": 0.1, "hidden_act": "gelu",
                  "hidden_dropout_prob": 0.1, "initializer_range": 0.02, **{
                      k: v for k, v in TINY_HF.items()}}
    _write_google_checkpoint(str(google_dir), torch_model, google_cfg)
    (google_dir / "vocab.txt").write_text((tiny_tokenizer_dir / "vocab.txt").read_text())
    cfg, params, tok = convert.load_any(str(google_dir))
    assert cfg.hidden_act == "gelu_tanh" and cfg.layer_norm_eps == 1e-12
    assert set(params) == {"bert", "mlm", "nsp"}
    from bertjax.data.tokenizer import tokenizer_lowercase
    assert tokenizer_lowercase(tok) is True  # guessed from the directory name
    _assert_same(cfg, params, torch_model, TINY_HF["vocab_size"])
    # pretrained.load reads it the same way, and the lowercase override wins over the name.
    from bertjax import pretrained
    bert = pretrained.load(str(google_dir), lowercase=False)
    assert bert.config.to_dict() == cfg.to_dict() and set(bert.params) == set(params)
    assert all(jax.tree.leaves(jax.tree.map(np.array_equal, bert.params, params)))
    assert tokenizer_lowercase(bert.tokenizer) is False
    # A missing variable is named the way the checkpoint names it.
    (google_dir / "bert_config.json").write_text(json.dumps({**google_cfg,
                                                             "num_hidden_layers": 4}))
    with pytest.raises(convert.ConvertError,
                       match="bert/encoder/layer_3/attention/self/query/kernel"):
        convert.from_google(str(google_dir))


def _copy_hf(src, dst, **tensor_edits):
    os.makedirs(dst, exist_ok=True)
    (dst / "config.json").write_text((src / "config.json").read_text())
    tensors = load_file(str(src / "model.safetensors"))
    for name, value in tensor_edits.items():
        name = name.replace("__", ".")
        if value is None:
            del tensors[name]
        else:
            tensors[name] = value
    save_file(tensors, str(dst / "model.safetensors"))


def test_bad_inputs_raise_convert_error_naming_what(tmp_path, hf_pretraining_dir):
    src = hf_pretraining_dir
    d = tmp_path / "no_weights"
    d.mkdir()
    (d / "config.json").write_text((src / "config.json").read_text())
    with pytest.raises(convert.ConvertError, match="no_weights.*weights file is missing"):
        convert.load_any(str(d))

    _copy_hf(src, tmp_path / "missing", **{
        "bert__encoder__layer__1__attention__self__key__weight": None})
    with pytest.raises(convert.ConvertError,
                       match=r"model.safetensors.*encoder.layer.1.attention.self.key.weight"):
        convert.load_any(str(tmp_path / "missing"))

    _copy_hf(src, tmp_path / "shape", **{
        "bert__encoder__layer__2__intermediate__dense__weight": np.zeros((36, 30), np.float32)})
    with pytest.raises(convert.ConvertError,
                       match=r"encoder.layer.2.intermediate.dense.weight.*\(36, 30\)"):
        convert.load_any(str(tmp_path / "shape"))

    d = tmp_path / "corrupt"
    _copy_hf(src, d)
    data = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[:100] + b"\xff" * 50)
    with pytest.raises(convert.ConvertError, match="corrupt.*model.safetensors"):
        convert.load_any(str(d))

    d = tmp_path / "bad_config"
    _copy_hf(src, d)
    cfg = json.loads((d / "config.json").read_text())
    del cfg["num_attention_heads"]
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(convert.ConvertError, match="config.json.*num_attention_heads"):
        convert.load_any(str(d))

    cfg["num_attention_heads"], cfg["model_type"] = 3, "roberta"
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(convert.ConvertError, match="config.json.*model_type.*roberta"):
        convert.load_any(str(d))

    d = tmp_path / "mystery"
    d.mkdir()
    (d / "weights.npz").write_bytes(b"")
    with pytest.raises(convert.ConvertError, match="mystery.*unknown model format"):
        convert.load_any(str(d))


def test_workdir_goes_through_checkpoint_restore_params(tmp_path, imported, monkeypatch,
                                                        tiny_tokenizer_dir):
    cfg, params, _ = imported
    (tmp_path / "checkpoints").mkdir()
    scanned_cfg = ml_collections.ConfigDict(cfg.to_dict())
    scanned_cfg.scan_layers = True
    calls = []

    def restore_params(workdir, step=None):
        calls.append((workdir, step))
        return scanned_cfg, model_lib.layout_params(params, scanned_cfg), \
            str(tiny_tokenizer_dir), {"step": 3}

    fake = types.ModuleType("bertjax.checkpoint")
    fake.restore_params = restore_params
    monkeypatch.setitem(sys.modules, "bertjax.checkpoint", fake)
    import bertjax
    monkeypatch.setattr(bertjax, "checkpoint", fake, raising=False)
    cfg2, params2, tok, extra = convert.load_any(str(tmp_path), with_extra=True)
    assert calls == [(str(tmp_path), None)] and extra == {"step": 3}
    assert all(jax.tree.leaves(jax.tree.map(np.array_equal, params2, params)))
    assert tok is not None and cfg2.scan_layers


def test_workdir_without_a_checkpoint_says_so(tmp_path, capsys):
    """A run that failed before its first save leaves checkpoints/ (maybe without config.json)."""
    from bertjax import checkpoint, pretrained
    workdir = tmp_path / "w"
    (workdir / "checkpoints").mkdir(parents=True)
    expected = "w: a training workdir with no checkpoint yet"
    for with_config in (False, True):
        if with_config:
            (workdir / "config.json").write_text(json.dumps({"task": "pretraining", "model": {}}))
        for load in (convert.load_any, convert.model_config_of, pretrained.load):
            with pytest.raises(convert.ConvertError, match=expected) as e:
                load(str(workdir))
            assert "config.json" not in str(e.value), load
        with pytest.raises(checkpoint.NoCheckpointError, match=expected):
            checkpoint.restore_params(str(workdir))
        assert convert.main([str(workdir), str(tmp_path / "out")]) == 2
        assert expected in capsys.readouterr().err


def test_cli_huggingface_to_bertjax_to_huggingface(tmp_path, hf_pretraining_dir, hf_model):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "USE_TF": "0"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    bj, hf = tmp_path / "bj", tmp_path / "hf"
    cmd = [sys.executable, "-m", "bertjax.convert"]
    r = subprocess.run(cmd + [str(hf_pretraining_dir), str(bj)], env=env, capture_output=True,
                       text=True, check=False)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(cmd + [str(bj), str(hf), "--to", "huggingface"], env=env,
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    reloaded = transformers.BertForPreTraining.from_pretrained(str(hf)).eval()
    ids, types_, mask, _ = _batch(TINY_HF["vocab_size"])
    a, b = _hf_forward(reloaded, ids, types_, mask), _hf_forward(hf_model, ids, types_, mask)
    np.testing.assert_array_equal(a.prediction_logits.numpy(), b.prediction_logits.numpy())
    np.testing.assert_array_equal(a.seq_relationship_logits.numpy(),
                                  b.seq_relationship_logits.numpy())
    # Errors: a message naming the path, exit status 2, no traceback.
    assert convert.main([str(tmp_path / "nowhere"), str(tmp_path / "out")]) == 2


def test_output_that_is_a_file_is_a_convert_error(tmp_path, hf_pretraining_dir, imported,
                                                  capsys):
    cfg, params, tok = imported
    out = tmp_path / "taken"
    out.write_text("not a directory")
    for to in ("huggingface", "bertjax"):
        assert convert.main([str(hf_pretraining_dir), str(out), "--to", to]) == 2
        assert f"error: {out}: exists and is not a directory" in capsys.readouterr().err
    with pytest.raises(convert.ConvertError, match="taken: exists and is not a directory"):
        convert.to_huggingface(cfg, params, tok, str(out))
    with pytest.raises(convert.ConvertError, match="cannot create the output directory"):
        convert.save_bertjax(cfg, params, tok, str(out / "below"))
    assert out.read_text() == "not a directory"


def test_output_holding_another_model_or_a_run_is_refused(tmp_path, hf_pretraining_dir,
                                                          imported, capsys):
    """Writing into a run or a model of another format would mix the two (bertjax.json shadows a
    run's checkpoints for every reader); rewriting a model of the same format is allowed."""
    cfg, params, tok = imported
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text('{"task": "classification"}')
    hf_before = sorted(os.listdir(hf_pretraining_dir))
    for src, dst, to, message in (
            (hf_pretraining_dir, run, "bertjax", "holds a training workdir"),
            (hf_pretraining_dir, run, "huggingface", "holds a training workdir"),
            (hf_pretraining_dir, hf_pretraining_dir, "bertjax", "the output is the source"),
            (run, hf_pretraining_dir, "bertjax", "holds a huggingface model")):
        assert convert.main([str(src), str(dst), "--to", to]) == 2
        assert f"error: {dst}: {message}" in capsys.readouterr().err
    # A missing source is named as such, not a traceback from comparing it with the output.
    assert convert.main([str(tmp_path / "nowhere"), str(run)]) == 2
    assert "nowhere: no such file or directory" in capsys.readouterr().err
    assert (run / "config.json").read_text() == '{"task": "classification"}'
    assert sorted(os.listdir(run)) == ["checkpoints", "config.json"]
    assert sorted(os.listdir(hf_pretraining_dir)) == hf_before
    with pytest.raises(convert.ConvertError, match="holds a training workdir"):
        convert.save_bertjax(cfg, params, tok, str(run))
    bj = tmp_path / "bj"
    convert.save_bertjax(cfg, params, tok, str(bj))
    convert.save_bertjax(cfg, params, tok, str(bj))  # the same format again: replaced
    with pytest.raises(convert.ConvertError, match="holds a bertjax model"):
        convert.to_huggingface(cfg, params, tok, str(bj))
    # A directory that somehow holds both is refused by every reader, not read as one of them.
    (bj / "checkpoints").mkdir()
    with pytest.raises(convert.ConvertError, match="holds both a bertjax model"):
        convert.load_any(str(bj))


def test_bfloat16_safetensors_import_as_float32(tmp_path):
    torch_model = transformers.BertModel(transformers.BertConfig(**TINY_HF)).to(torch.bfloat16)
    torch_model.save_pretrained(str(tmp_path))
    _, params, _ = convert.from_huggingface(str(tmp_path))
    table = params["bert"]["embeddings"]["word_embeddings"]["embedding"]
    assert table.dtype == np.float32
    np.testing.assert_array_equal(
        table, torch_model.embeddings.word_embeddings.weight.float().detach().numpy())


def test_bad_bertjax_directories(tmp_path, imported):
    cfg, params, tok = imported
    bad = jax.tree.map(lambda x: x, params)
    bad["nsp"] = {"kernel": np.zeros((30, 3), np.float32), "bias": np.zeros((2,), np.float32)}
    with pytest.raises(convert.ConvertError, match=r"nsp\['kernel'\].*\(30, 3\)"):
        convert.save_bertjax(cfg, bad, tok, str(tmp_path / "bad"))
    d = tmp_path / "bj"
    convert.save_bertjax(cfg, params, tok, str(d))
    meta = json.loads((d / "bertjax.json").read_text())
    meta["model"]["hidden_sise"] = 30
    (d / "bertjax.json").write_text(json.dumps(meta))
    with pytest.raises(convert.ConvertError, match=r"bertjax.json.*model.hidden_sise"):
        convert.load_any(str(d))
    del meta["model"]["hidden_sise"]
    meta["model"]["num_heads"] = 7
    (d / "bertjax.json").write_text(json.dumps(meta))
    with pytest.raises(convert.ConvertError, match=r"bertjax.json.*num_heads"):
        convert.load_any(str(d))
    meta["model"]["num_heads"] = 3
    (d / "bertjax.json").write_text(json.dumps(meta))
    import shutil
    shutil.rmtree(d / "params")
    with pytest.raises(convert.ConvertError, match=r"params.*missing"):
        convert.load_any(str(d))


def test_cli_export_reports_what_it_wrote_not_the_dropped_task_heads(tmp_path, imported,
                                                                     monkeypatch, capsys):
    """A fine-tuned run's classifier is not exported to Hugging Face: the summary line counts
    and names the exported params only."""
    cfg, params, tok = imported
    hidden = cfg.hidden_size
    classifier = {"kernel": np.ones((hidden, 3), np.float32), "bias": np.zeros(3, np.float32)}
    monkeypatch.setattr(convert, "load_any", lambda *a, **k: (
        cfg, {**params, "classifier": classifier}, tok, {"task": "classification"}))
    monkeypatch.setattr(convert, "resolve_use", lambda *a, **k: ("workdir", None))
    out = tmp_path / "hf"
    assert convert.main(["run", str(out), "--to", "huggingface"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line == (f"wrote huggingface model to {out} ({model_lib.count_params(params):,} "
                    f"parameters, heads: mlm, nsp)")
    assert set(json.load(open(out / "config.json"))["architectures"]) == {"BertForPreTraining"}


def test_unreadable_pytorch_bin_never_suggests_unsafe_loading(tmp_path, hf_pretraining_dir):
    """torch.load's own message says to retry with weights_only=False, which would run code from
    the file; the error names the file and what is wrong instead."""
    import argparse
    garbage, foreign = tmp_path / "garbage", tmp_path / "foreign"
    for d in (garbage, foreign):
        d.mkdir()
        (d / "config.json").write_text((hf_pretraining_dir / "config.json").read_text())
    (garbage / "pytorch_model.bin").write_bytes(b"not a zip archive")
    state = {"embeddings.word_embeddings.weight": torch.zeros(3, 2),
             "note": argparse.Namespace(x=1)}  # a pickled object weights_only refuses
    torch.save(state, str(foreign / "pytorch_model.bin"))
    for d in (garbage, foreign):
        with pytest.raises(convert.ConvertError) as e:
            convert.load_any(str(d))
        message = str(e.value)
        assert message.startswith(f"{d / 'pytorch_model.bin'}: not a readable PyTorch weights "
                                  "archive"), message
        assert "weights_only" not in message and "arbitrary code" not in message, message
    assert "argparse.Namespace" in message


def test_google_run_directory_reads_the_latest_step(tmp_path):
    """run_pretraining.py leaves model.ckpt-N for several N and TF's `checkpoint` state file:
    step 10000 is newer than 9000 although it sorts before it as text."""
    d = tmp_path / "pretraining_output"
    d.mkdir()
    for step in (9000, 10000, 500):
        for suffix in (".index", ".data-00000-of-00001"):
            (d / f"model.ckpt-{step}{suffix}").write_bytes(b"")
    pick = lambda: os.path.basename(convert._google_checkpoint_prefix(str(d)))  # noqa: E731
    assert pick() == "model.ckpt-10000"  # no state file: the highest step
    state = d / "checkpoint"
    state.write_text('model_checkpoint_path: "model.ckpt-9000"\n'
                     'all_model_checkpoint_paths: "model.ckpt-500"\n'
                     'all_model_checkpoint_paths: "model.ckpt-9000"\n')
    assert pick() == "model.ckpt-9000"  # the state file names the one TF would restore
    state.write_text('model_checkpoint_path: "/elsewhere/old/machine/model.ckpt-500"\n')
    assert pick() == "model.ckpt-500"  # TF1's absolute path, from before the directory moved
    state.write_text('model_checkpoint_path: "model.ckpt-7"\n')
    with pytest.raises(convert.ConvertError, match=r"checkpoint: .*ckpt-7.*\.index is missing"):
        pick()
    state.unlink()
    (d / "other.ckpt.index").write_bytes(b"")
    with pytest.raises(convert.ConvertError,
                       match="several checkpoints.*model.ckpt-10000, model.ckpt-500, "
                             "model.ckpt-9000, other.ckpt"):
        pick()


def test_tokenizer_larger_than_the_vocab_size_is_refused_at_load(tmp_path, tiny_tokenizer_dir):
    """A vocab.txt of 101 tokens next to a model of vocab_size 40: ids 40..100 have no embedding
    row, and embedding them gave NaN vectors, silently, at embed time."""
    from bertjax import pretrained
    d = tmp_path / "mismatched"
    small = transformers.BertModel(transformers.BertConfig(**{**TINY_HF, "vocab_size": 40}))
    small.save_pretrained(str(d))
    (d / "vocab.txt").write_text((tiny_tokenizer_dir / "vocab.txt").read_text())
    expected = (rf"{d / 'vocab.txt'}: the tokenizer has 101 tokens but {d / 'config.json'} "
                r"gives the model vocab_size=40")
    for load in (convert.load_any, pretrained.load):
        with pytest.raises(convert.ConvertError, match=expected):
            load(str(d))
    # A bertjax directory is checked the same way, against its bertjax.json.
    (d / "vocab.txt").unlink()
    cfg, params, tok = convert.load_any(str(d))
    assert tok is None
    convert.save_bertjax(cfg, params, None, str(tmp_path / "bj"))
    (tmp_path / "bj" / "vocab.txt").write_text((tiny_tokenizer_dir / "vocab.txt").read_text())
    with pytest.raises(convert.ConvertError,
                       match=rf"vocab.txt: the tokenizer has 101 tokens but .*bertjax.json gives"):
        convert.load_any(str(tmp_path / "bj"))


def _save_without_pooler(directory, head_class, tokenizer_dir, seed):
    torch.manual_seed(seed)
    model = randomize(head_class(transformers.BertConfig(**TINY_HF)), seed=seed + 1)
    model.save_pretrained(str(directory))
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json"):
        (directory / name).write_bytes((tokenizer_dir / name).read_bytes())
    assert not any("pooler" in k for k in load_file(str(directory / "model.safetensors")))
    return model


def test_checkpoint_saved_without_a_pooler_gets_a_fresh_untrained_one(tmp_path, caplog,
                                                                      tiny_tokenizer_dir):
    """transformers' BertForMaskedLM (and the token-classification and QA classes) save no
    pooler.dense.*: the import initialises one as bertjax would, says so, and records it as
    untrained, so that embed refuses pooling="pooler" and export to HF leaves it out."""
    import logging
    from bertjax import pretrained
    for head_class in (transformers.BertForTokenClassification,
                       transformers.BertForQuestionAnswering):
        d = tmp_path / head_class.__name__
        _save_without_pooler(d, head_class, tiny_tokenizer_dir, seed=3)
        assert convert.load_any(str(d), with_extra=True)[3] == {"untrained": ["bert/pooler"]}
        assert convert.from_huggingface(str(d), with_extra=True)[3] == {
            "untrained": ["bert/pooler"]}

    d = tmp_path / "mlm"
    mlm = _save_without_pooler(d, transformers.BertForMaskedLM, tiny_tokenizer_dir, seed=7)
    with caplog.at_level(logging.WARNING):
        cfg, params, _, extra = convert.load_any(str(d), with_extra=True)
    assert "pooler.dense.weight, pooler.dense.bias are missing" in caplog.text
    assert extra == {"untrained": ["bert/pooler"]} and set(params) == {"bert", "mlm"}
    pooler = params["bert"]["pooler"]
    assert pooler["kernel"].shape == (30, 30) and not np.any(pooler["bias"])
    assert 0.7 < np.std(pooler["kernel"]) / cfg.initializer_range < 1.3  # bertjax's own init
    # Everything else is the checkpoint's: hidden states and MLM logits are transformers'.
    ids, types_, mask, positions = _batch(TINY_HF["vocab_size"])
    ref = _hf_forward(mlm, ids, types_, mask)
    nsp = {"kernel": np.zeros((30, 2), np.float32), "bias": np.zeros((2,), np.float32)}
    ours = _ours_forward(cfg, {**params, "nsp": nsp}, ids, types_, mask, positions)
    keep = mask.astype(bool)
    for a, b in zip(ours["hidden_states"], ref.hidden_states):
        assert _rel(np.asarray(a)[keep], b.numpy()[keep]) < 1e-4
    mlm_ref = np.take_along_axis(ref.logits.numpy(), positions[..., None], axis=1)
    assert _rel(ours["mlm_logits"], mlm_ref) < 1e-4

    # embed: the pooler is refused, naming what to use instead; a bertjax copy remembers.
    bert = pretrained.load(str(d))
    bert.save(str(tmp_path / "bj"))
    for model in (bert, pretrained.load(str(tmp_path / "bj"))):
        with pytest.raises(ValueError, match="pooler was never trained.*use pooling='cls' or 'mean'"):
            model.embed(["the quick fox"], pooling="pooler")
        assert np.all(np.isfinite(model.embed(["the quick fox"], pooling="cls")))

    # Export: no invented pooler; transformers loads the masked LM as it was.
    assert convert.main([str(tmp_path / "bj"), str(tmp_path / "hf"), "--to", "huggingface"]) == 0
    assert not any("pooler" in k for k in load_file(str(tmp_path / "hf" / "model.safetensors")))
    again, info = transformers.BertForMaskedLM.from_pretrained(str(tmp_path / "hf"),
                                                               output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    np.testing.assert_array_equal(_hf_forward(again.eval(), ids, types_, mask).logits.numpy(),
                                  ref.logits.numpy())


def test_cli_says_when_the_source_has_no_tokenizer(tmp_path, hf_pretraining_dir, capsys):
    """A directory without vocab.txt converts (the weights are fine), but the output cannot
    embed or fine-tune until it has one: the command says so, not the first embed call."""
    src = tmp_path / "no_vocab"
    _copy_hf(hf_pretraining_dir, src)
    assert convert.main([str(src), str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert f"warning: {src} has no tokenizer" in err and "copy the model's vocab.txt" in err
    assert convert.main([str(hf_pretraining_dir), str(tmp_path / "with")]) == 0
    assert "no tokenizer" not in capsys.readouterr().err
