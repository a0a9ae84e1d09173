"""Fine-tuning from a real checkpoint (a random transformers BertForPreTraining saved to disk)."""

import os

import jax
import numpy as np
import pytest

from bertjax import checkpoint as ckpt_lib
from bertjax import convert, predict, train
from bertjax.model import ConfigError
from bertjax.tasks import base, heads
from conftest import TINY_HF
from configs import classify as classify_config

TEXTS = ["the quick brown fox", "a lazy dog sleeps", "birds sing and rivers flow",
         "the warm afternoon sun"]


def hf_model_fields():
    return dict(vocab_size=TINY_HF["vocab_size"], hidden_size=TINY_HF["hidden_size"],
                num_heads=TINY_HF["num_attention_heads"],
                intermediate_size=TINY_HF["intermediate_size"],
                num_layers=TINY_HF["num_hidden_layers"],
                max_position_embeddings=TINY_HF["max_position_embeddings"])


def make_config(tmp_path, init_from, **model):
    cfg = classify_config.get_config("single")
    cfg.model.update(hf_model_fields())
    cfg.model.update(model)
    cfg.init_from = str(init_from)
    rows = [(TEXTS[i % 4], "yes" if i % 2 else "no") for i in range(16)]
    for split in ("train", "dev"):
        path = tmp_path / f"{split}.csv"
        path.write_text("text,label\n" + "".join(f"{t},{l}\n" for t, l in rows))
    cfg.data.update(train=str(tmp_path / "train.csv"), validation=str(tmp_path / "dev.csv"),
                    max_seq_length=12)
    cfg.update(batch_size=8, num_train_steps=1, log_every_steps=1, eval_every_steps=1,
               checkpoint_every_steps=1, progress_bar=False)
    cfg.optimizer.update(warmup_steps=0, learning_rate=1e-2)
    return cfg


def flat(tree, prefix=""):
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(flat(v, f"{prefix}{k}/"))
        else:
            out[prefix + k] = np.asarray(v)
    return out


def _one_frozen_update(tmp_path, source_dir):
    """Fine-tunes one update from source_dir with the embeddings and every layer frozen; ->
    (workdir, the source's "bert" params, the run's "bert" params, flattened; the run's params)."""
    cfg = make_config(tmp_path, source_dir)
    cfg.optimizer.update(freeze_embeddings=True, freeze_layers=TINY_HF["num_hidden_layers"])
    workdir = str(tmp_path / "run")
    summary = train.train_and_evaluate(cfg, workdir)
    assert summary["step"] == 1 and "eval/accuracy" in summary["eval"]
    _, source, _ = convert.load_any(str(source_dir))
    _, tuned, _, _ = ckpt_lib.restore_params(workdir)
    return workdir, flat(source["bert"]), flat(tuned["bert"]), tuned


def test_encoder_starts_from_the_checkpoint(tmp_path, hf_pretraining_dir):
    """One update with the embeddings and all layers frozen: the encoder is still the source's,
    bit for bit, while the fresh head and the pooler moved."""
    workdir, src, got, tuned = _one_frozen_update(tmp_path, hf_pretraining_dir)
    frozen = [k for k in src if k.startswith(("embeddings/", "encoder/"))]
    assert len(frozen) > 10
    for k in frozen:
        np.testing.assert_array_equal(got[k], src[k], err_msg=k)
    assert not np.array_equal(got["pooler/kernel"], src["pooler/kernel"])
    assert set(tuned) == {"bert", "classifier"}

    # The same workdir predicts (params from the latest checkpoint: no W/best here).
    test = tmp_path / "test.csv"
    test.write_text("text\n" + "".join(f"{t}\n" for t in TEXTS))
    run = predict.load_run(workdir)
    assert "checkpoints step 1" in run.source
    preds = predict.predict_file(run, str(test))
    assert len(preds) == 4 and all(p["label"] in ("no", "yes") for p in preds)


def test_init_from_a_workdir_starts_from_its_best_checkpoint(tmp_path, hf_pretraining_dir):
    """A workdir as init_from is read by the rule predict and pretrained.load follow: W/best/
    when the run kept one, the latest step with config.init_from_use="latest"."""
    run, _, _, tuned = _one_frozen_update(tmp_path, hf_pretraining_dir)
    cfg = make_config(tmp_path, run)
    cfg.init_from_use = "newest"
    with pytest.raises(ConfigError, match=r"config.init_from_use='newest' is not one of"):
        train.validate(cfg, num_devices=1, process_count=1)
    cfg.init_from_use = "best"
    with pytest.raises(ConfigError, match=r"config.init_from_use='best'.*no best checkpoint"):
        train.adopt_init_from_model(cfg)
    # A best checkpoint that differs from the latest step in every encoder weight.
    model_cfg, _, tok = convert.load_any(run)
    best = {"bert": dict(tuned["bert"]), "classifier": tuned["classifier"]}
    best["bert"]["encoder"] = jax.tree.map(lambda x: np.asarray(x) + 0.5,
                                           tuned["bert"]["encoder"])
    convert.save_bertjax(model_cfg, best, tok, os.path.join(run, "best"))

    task = base.get_task(cfg.task)(cfg)
    fresh = jax.tree.map(np.zeros_like, tuned)
    shardings = jax.tree.map(lambda _: jax.sharding.SingleDeviceSharding(jax.devices()[0]), fresh)
    for use, want in (("auto", best), ("latest", tuned)):
        params, _ = train._load_init_from(run, task, cfg.model, fresh, shardings, use)
        got, expected = flat(params["bert"]), flat(want["bert"])
        assert set(got) == set(expected)
        for k in got:
            np.testing.assert_array_equal(got[k], expected[k], err_msg=f"{use}: {k}")


def test_mismatched_checkpoint_is_an_error_naming_the_field(tmp_path, hf_pretraining_dir):
    cfg = make_config(tmp_path, hf_pretraining_dir, hidden_size=33, num_heads=3)
    with pytest.raises(ckpt_lib.CheckpointMismatchError, match=r"model.hidden_size: .* has 30"):
        train.train_and_evaluate(cfg, str(tmp_path / "run"))


def test_transfer_encoder_names_the_mismatched_parameter(hf_pretraining_dir):
    _, source, _ = convert.load_any(str(hf_pretraining_dir))
    fresh = {"bert": {k: v for k, v in source["bert"].items()}, "classifier": {}}
    fresh["bert"] = dict(fresh["bert"])
    fresh["bert"]["pooler"] = {"kernel": np.zeros((30, 31), np.float32),
                               "bias": source["bert"]["pooler"]["bias"]}
    with pytest.raises(heads.EncoderMismatchError, match=r"bert/pooler/kernel has shape \(30, 30\) in the checkpoint"):
        heads.transfer_encoder(fresh, source)


def test_fine_tunes_from_a_checkpoint_saved_without_a_pooler(tmp_path, tiny_tokenizer_dir):
    """A transformers BertForMaskedLM has no pooler; classification needs one: the import gives it
    a fresh one (as transformers' BertForSequenceClassification.from_pretrained would), trained
    with the classifier, and the encoder is the checkpoint's."""
    import shutil
    import torch
    import transformers
    from conftest import randomize
    source_dir = tmp_path / "mlm"
    torch.manual_seed(11)
    model = randomize(transformers.BertForMaskedLM(transformers.BertConfig(**TINY_HF)), seed=12)
    model.save_pretrained(str(source_dir))
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_tokenizer_dir / name, source_dir / name)
    _, src, got, tuned = _one_frozen_update(tmp_path, source_dir)
    np.testing.assert_array_equal(got["encoder/layer_0/output/kernel"],
                                  src["encoder/layer_0/output/kernel"])
    assert got["pooler/kernel"].shape == (30, 30) and np.all(np.isfinite(got["pooler/kernel"]))
    # Not the import's stand-in (one fixed draw for every conversion): the run's own seeded
    # initialisation, trained with the classifier.
    assert not np.allclose(got["pooler/kernel"], src["pooler/kernel"], atol=1e-3)
    assert set(tuned) == {"bert", "classifier"}


def test_a_given_tokenizer_that_is_not_there_is_an_error_not_init_froms(tmp_path,
                                                                          tiny_tokenizer_dir):
    """config.data.tokenizer wins over init_from's tokenizer (that one is the default): a path
    that is not there fails validation, naming the field, in every fine-tuning task, instead of
    silently training with init_from's vocabulary."""
    from bertjax.tasks import finetune_data
    from configs import squad as squad_config
    from configs import tagging as tagging_config
    missing = str(tmp_path / "does/not/exist/vocab.txt")
    for cfg in (make_config(tmp_path, tiny_tokenizer_dir), tagging_config.get_config(),
                squad_config.get_config("v1")):
        cfg.init_from = str(tiny_tokenizer_dir)
        cfg.data.tokenizer = missing
        with pytest.raises(ConfigError, match=rf"config.data.tokenizer='{missing}' does not exist"):
            base.get_task(cfg.task)(cfg).validate(cfg)
    with pytest.raises(ConfigError, match=r"config.data.tokenizer=.* does not exist"):
        finetune_data.load_tokenizer(cfg)  # and the data never falls back to init_from's
    cfg.data.tokenizer = str(tmp_path)
    with pytest.raises(ConfigError, match=r"config.data.tokenizer=.* is a directory with no "
                                          r"vocab.txt or tokenizer.json"):
        finetune_data.load_tokenizer(cfg)
    cfg.data.tokenizer = ""  # unset: init_from's
    assert finetune_data.load_tokenizer(cfg)[0].token_to_id("[CLS]") is not None


def test_the_tokenizers_temporary_copy_is_gone_when_the_process_exits(tmp_path,
                                                                      tiny_tokenizer_dir):
    """load_tokenizer's normalised copy (for W/tokenizer/) is there while the process runs, and
    removed at exit: every fine-tuning run used to leave a bertjax_tokenizer_* folder in /tmp."""
    import subprocess
    import sys
    code = ("import os; from bertjax.tasks import finetune_data; from configs import classify; "
            "cfg = classify.get_config(); cfg.data.tokenizer = os.environ['TOK']; "
            "_, out = finetune_data.load_tokenizer(cfg); "
            "assert os.path.isfile(os.path.join(out, 'vocab.txt')); print(out)")
    env = dict(os.environ, TOK=str(tiny_tokenizer_dir), TMPDIR=str(tmp_path), JAX_PLATFORMS="cpu")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert done.returncode == 0, done.stderr
    out = done.stdout.strip().splitlines()[-1]
    assert out.startswith(str(tmp_path)) and not os.path.exists(out)
