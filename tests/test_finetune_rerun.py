"""Running the trainer again on a fine-tuning workdir: a rejected config leaves the finished run
intact, a first try that failed on its data can be retried, and init_from's model shape is taken
when the config leaves it at its default."""

import json
import os

import jax
import numpy as np
import pytest

from bertjax import checkpoint as ckpt_lib
from bertjax import train
from bertjax.model import ConfigError
from bertjax.tasks import finetune_data, readers
from configs import classify as classify_config
from test_finetune_classify import make_config, write_csv


def _config(tmp_path, name, steps):
    (tmp_path / name).mkdir()
    return make_config(tmp_path / name, steps=steps)


def _snapshot(workdir):
    files = ("config.json", "labels.json", os.path.join("tokenizer", "vocab.txt"))
    return {name: open(os.path.join(workdir, name), "rb").read() for name in files}


def test_rejected_rerun_leaves_the_finished_run_intact(tmp_path):
    workdir = str(tmp_path / "run")
    train.train_and_evaluate(_config(tmp_path, "first", 2), workdir)
    before = _snapshot(workdir)

    other_kind = _config(tmp_path, "kind", 4)
    other_kind.classification.kind = "multilabel"  # same head shape, other meaning
    other_kind.classification.metrics = ("f1_micro",)
    with pytest.raises(ckpt_lib.CheckpointMismatchError,
                       match="classification.kind: checkpoint 'single' vs config 'multilabel'"):
        train.train_and_evaluate(other_kind, workdir)
    assert _snapshot(workdir) == before

    other_vocab = _config(tmp_path, "vocab", 4)
    vocab = os.path.join(other_vocab.data.tokenizer, "vocab.txt")
    with open(vocab, "a") as f:
        f.write("bird\n")
    with pytest.raises(ckpt_lib.CheckpointMismatchError, match="differs from this run's vocab"):
        train.train_and_evaluate(other_vocab, workdir)
    assert _snapshot(workdir) == before

    # A compatible config that trains nothing more (the run is finished) is no new record either.
    other_rate = _config(tmp_path, "rate", 2)
    other_rate.optimizer.learning_rate *= 2
    assert train.train_and_evaluate(other_rate, workdir)["step"] == 2
    assert _snapshot(workdir) == before


def test_restore_of_another_shape_is_a_mismatch_error(tmp_path):
    checkpointer = ckpt_lib.Checkpointer(str(tmp_path), async_save=False)
    checkpointer.manager.save(1, args=ckpt_lib.ocp.args.Composite(
        state=ckpt_lib.ocp.args.StandardSave({"w": np.zeros((4, 2), np.float32)})))
    checkpointer.wait()
    one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    target = {"w": jax.ShapeDtypeStruct((4, 1), np.float32, sharding=one)}
    with pytest.raises(ckpt_lib.CheckpointMismatchError, match=r"\(step 1\) does not fit"):
        ckpt_lib.restore_or_explain(checkpointer, 1, target, None, str(tmp_path))


def test_first_try_that_failed_on_its_data_can_be_retried(tmp_path):
    cfg = make_config(tmp_path, steps=2)
    cfg.classification.metrics = ("accuracy", "f1_macro")  # f1 is for two classes
    with open(cfg.data.validation, "a") as f:
        f.write("the cat sat,maybe\n")
    workdir = str(tmp_path / "run")
    with pytest.raises(readers.DataError, match="unknown label 'maybe'"):
        train.train_and_evaluate(cfg, workdir)
    with open(cfg.data.train, "a") as f:  # the fix: the train set gets the third class
        f.write("the dog ran,maybe\n")
    assert train.train_and_evaluate(cfg, workdir)["step"] == 2
    assert finetune_data.read_labels(workdir) == ["maybe", "neg", "pos"]


def _workdir_with_model(path, **model):
    os.makedirs(os.path.join(path, "checkpoints", "1"))  # a saved step (its contents unread)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump({"task": "pretraining", "model": model}, f)
    return str(path)


def test_init_from_model_shape_is_taken_where_the_config_keeps_its_default(tmp_path):
    src = _workdir_with_model(tmp_path / "tiny", vocab_size=99, hidden_size=32, num_layers=2,
                              num_heads=2, intermediate_size=37, max_position_embeddings=64,
                              hidden_act="gelu_new")
    cfg = classify_config.get_config("single")  # BERT-base model fields
    cfg.init_from = src
    cfg.model.max_position_embeddings = 128  # set in the config file: kept
    changed = train.adopt_init_from_model(cfg, explicit={"model.num_layers": 4})
    cfg_model = cfg.model
    assert (cfg_model.vocab_size, cfg_model.hidden_size, cfg_model.num_heads,
            cfg_model.intermediate_size, cfg_model.hidden_act) == (99, 32, 2, 37, "gelu_new")
    assert cfg_model.num_layers == 12  # named on the command line: not the checkpoint's 2
    assert cfg_model.max_position_embeddings == 128
    assert "model.hidden_size=32" in changed and not any("num_layers" in c for c in changed)

    cfg.init_from = str(tmp_path / "nothing")
    with pytest.raises(ConfigError, match=r"config.init_from=.*nothing.*no such file"):
        train.adopt_init_from_model(cfg)


def test_local_files_replace_the_configs_default_tfds_dataset(tmp_path):
    data = finetune_data.data_config(tfds_name="squad")
    assert finetune_data.uses_tfds(data)
    data.train = write_csv(tmp_path / "t.csv", [("a cat", "pos")])
    assert not finetune_data.uses_tfds(data)
    rows = list(finetune_data.split_rows(data, "train"))
    assert [r.fields["text"] for r in rows] == ["a cat"]
    assert finetune_data.split_rows(data, "validation") is None
    data.train = ""
    data.validation = str(tmp_path / "t.csv")  # a local dev file with TFDS train: ambiguous
    with pytest.raises(ConfigError, match="config.data.validation is a local file but"):
        finetune_data.uses_tfds(data)


def test_a_resumed_run_keeps_its_own_model_whatever_init_from_holds_now(tmp_path):
    run = _workdir_with_model(tmp_path / "run", vocab_size=99, hidden_size=32, num_layers=2,
                              num_heads=2, intermediate_size=37, hidden_act="gelu_tanh")
    cfg = classify_config.get_config("single")
    cfg.init_from = str(tmp_path / "gone")  # moved away since the run started
    changed = train.adopt_init_from_model(cfg, workdir=run)
    assert "model.hidden_act='gelu_tanh'" in changed and cfg.model.hidden_size == 32
    cfg.model.hidden_act = "gelu"  # same shapes, another function: not resumable
    with pytest.raises(ckpt_lib.CheckpointMismatchError, match="model.hidden_act: checkpoint"):
        ckpt_lib.check_compatible(run, cfg)


def test_init_from_a_non_bert_hf_model_is_refused_before_anything_is_built(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "roberta"}))
    cfg = classify_config.get_config("single")
    cfg.init_from = str(tmp_path)
    with pytest.raises(ConfigError, match="model_type'='roberta'"):
        train.adopt_init_from_model(cfg)


def test_evaluation_off_with_an_eval_metric_is_a_config_error():
    cfg = classify_config.get_config("single")
    cfg.num_eval_batches = 0
    cfg.eval_metric = "accuracy"
    with pytest.raises(ConfigError, match="num_eval_batches=0 .*config.eval_metric='accuracy'"):
        train.validate(cfg, 1, 1)


def test_labels_json_is_kept_once_best_params_were_saved_with_it(tmp_path):
    finetune_data.write_labels(str(tmp_path), "classification", ["neg", "pos"])
    finetune_data.write_labels(str(tmp_path), "classification", ["a", "b"])  # no run yet: ok
    (tmp_path / "best").mkdir()
    with pytest.raises(readers.DataError, match="must keep its label set"):
        finetune_data.write_labels(str(tmp_path), "classification", ["a", "b", "c"])


def test_an_early_stopped_run_stays_stopped_on_rerun(tmp_path):
    """The stop is recorded in W/best.json: an identical rerun (or one with a larger
    num_train_steps) returns the summary without training, so checkpoints, metrics and W/best
    stay as they were; only a patience the recorded count has not reached trains on."""
    cfg = _config(tmp_path, "first", 8)
    cfg.update(eval_every_steps=1, checkpoint_every_steps=8, eval_metric="matthews",
               early_stopping_patience=1)
    cfg.optimizer.learning_rate = 1e-12  # matthews never improves after the first evaluation
    workdir = str(tmp_path / "run")
    first = train.train_and_evaluate(cfg, workdir)
    assert first["early_stopped"] and first["step"] == 2 and first["best"]["step"] == 1
    best_json = os.path.join(workdir, "best.json")
    assert json.load(open(best_json))["early_stopped"] == 2

    def state():
        ckpts = ckpt_lib.Checkpointer(workdir)
        steps = ckpts.all_steps()
        ckpts.close()
        return (sorted(steps), open(os.path.join(workdir, "metrics.jsonl")).read(),
                open(best_json).read())

    before = state()
    for steps in (8, 20):  # the identical rerun, and one with a larger budget
        cfg.num_train_steps = steps
        again = train.train_and_evaluate(cfg, workdir)
        assert again["early_stopped"] and again["step"] == 2
        assert again["best"] == first["best"]
        assert state() == before

    cfg.num_train_steps = 8
    cfg.early_stopping_patience = 3  # lifts the stop: 1 evaluation without improvement so far
    lifted = train.train_and_evaluate(cfg, workdir)
    assert lifted["early_stopped"] and lifted["step"] == 4 and lifted["best"] == first["best"]
    assert json.load(open(best_json))["early_stopped"] == 4
    cfg.early_stopping_patience = 2  # already reached (3 evaluations): stays at step 4
    assert train.train_and_evaluate(cfg, workdir)["step"] == 4


def test_resuming_under_another_optimizer_is_said(tmp_path, caplog):
    """A run saved before bias_correction existed (so with it on) and with the linear schedule,
    resumed under today's defaults: the update rule changes, and the log says which fields."""
    cfg = classify_config.get_config("single")
    saved = json.loads(cfg.to_json())
    saved["optimizer"]["schedule"] = "linear"
    del saved["optimizer"]["bias_correction"]
    os.makedirs(tmp_path / "run")
    with open(tmp_path / "run" / "config.json", "w") as f:
        json.dump(saved, f)
    with caplog.at_level("WARNING"):
        ckpt_lib.check_compatible(str(tmp_path / "run"), cfg)
    assert "optimizer.bias_correction: run True -> config False" in caplog.text
    assert "optimizer.schedule: run 'linear' -> config 'polynomial'" in caplog.text
    caplog.clear()
    same = cfg.copy_and_resolve_references()
    same.optimizer.update(schedule="linear", bias_correction=True)  # the run's own optimizer
    with caplog.at_level("WARNING"):
        ckpt_lib.check_compatible(str(tmp_path / "run"), same)
    assert "another optimizer" not in caplog.text


def test_a_resumed_run_whose_tokenizer_is_gone_uses_the_workdirs_copy(tmp_path, caplog):
    """W/tokenizer/ is the tokenizer the run trained with: a resume whose config.data.tokenizer
    was moved or deleted since goes on with it, saying so; a fresh run still refuses the missing
    path (and a tokenizer that is there but another is refused: the test above)."""
    import logging
    cfg = _config(tmp_path, "first", 2)
    workdir = str(tmp_path / "run")
    train.train_and_evaluate(cfg, workdir)
    vocab_before = _snapshot(workdir)[os.path.join("tokenizer", "vocab.txt")]
    gone = cfg.data.tokenizer
    os.rename(gone, str(tmp_path / "moved"))
    cfg.num_train_steps = 4
    with caplog.at_level(logging.WARNING):
        assert train.train_and_evaluate(cfg, workdir)["step"] == 4
    copy = ckpt_lib.tokenizer_dir(workdir)
    warned = [r.getMessage() for r in caplog.records if gone in r.getMessage()]
    assert len(warned) == 1 and copy in warned[0], caplog.text
    assert _snapshot(workdir)[os.path.join("tokenizer", "vocab.txt")] == vocab_before
    # The run's config records what it read (the config.json before keeps the old path).
    with open(os.path.join(workdir, "config.json")) as f:
        assert json.load(f)["data"]["tokenizer"] == copy
    cfg.data.tokenizer = gone
    with pytest.raises(ConfigError, match=rf"config.data.tokenizer='{gone}' does not exist"):
        train.train_and_evaluate(cfg, str(tmp_path / "fresh"))
