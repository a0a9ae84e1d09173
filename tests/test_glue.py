"""GLUE configs on tfds.testing.mock_data, the table convention, and the driver end to end."""

import json
import logging
import os

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from bertjax import config as config_lib
from bertjax import convert, glue
from bertjax import model as model_lib
from bertjax.data import tokenizer as tokenizer_lib
from bertjax.tasks import base, readers
from configs import glue as glue_config
from test_finetune_classify import VOCAB, write_vocab


def tiny_model_cfg():
    return config_lib.model(vocab_size=len(VOCAB) + 3, hidden_size=32, num_layers=2, num_heads=2,
                            intermediate_size=37, max_position_embeddings=32)


def save_random_bert(out_dir, vocab_dir, model_cfg):
    """A bertjax model dir with random MLM+NSP params and the tiny vocab."""
    module = model_lib.BertForPreTraining(model_cfg)
    ids = jax.ShapeDtypeStruct((1, 4), np.int32)
    shapes = jax.eval_shape(lambda: model_lib.unbox(module.init(jax.random.key(0), ids)["params"]))
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda x: (0.02 * rng.standard_normal(x.shape)).astype(np.float32),
                          shapes)
    convert.save_bertjax(model_cfg, params, tokenizer_lib.load_tokenizer(vocab_dir), str(out_dir))
    return params


def test_every_glue_config_reads_mock_data(tmp_path):
    vocab = write_vocab(tmp_path)
    with tfds.testing.mock_data(num_examples=6):
        for name, (columns, metrics, kind, _, _) in glue_config.TASKS.items():
            cfg = glue.task_config(name, "", [("data.tokenizer", vocab),
                                              ("data.max_seq_length", "16")])
            assert cfg.data.tfds_name == f"glue/{name}"
            assert cfg.eval_metric == metrics[0] and cfg.optimizer.warmup_proportion == 0.1
            task = base.get_task(cfg.task)(cfg)
            task.validate(cfg)
            data = task.data(cfg, None, 0, 1)
            train = data._train
            assert train["input_ids"].shape == (6, 16), name
            assert bool(np.any(train["token_type_ids"] == 1)) == (len(columns) == 2), name
            if kind == "regression":
                assert train["labels"].dtype == np.float32 and task.num_labels == 1
            else:
                assert task.num_labels == {"mnli": 3}.get(name, 2), name
                assert set(train["labels"].tolist()) <= set(range(task.num_labels))
            batches = data.eval_batches()
            assert sum(int(b["example_weight"].sum()) for b in batches) == 6, name
    mnli = glue_config.get_config("task=mnli")
    assert mnli.data.validation_split == "validation_matched"
    assert tuple(mnli.extra_eval_splits) == ("validation_mismatched",)
    with pytest.raises(ValueError, match="unknown GLUE task 'mnlii'"):
        glue_config.get_config("task=mnlii")


@pytest.mark.parametrize("field", ["text_column", "text_pair_column", "label_column"])
def test_a_column_the_tfds_dataset_lacks_is_named_with_its_features(tmp_path, field):
    """Before any row is read: the dataset, the feature, the config field and the features the
    dataset has (it was a "missing field" error on the first row, suggesting to skip bad rows)."""
    vocab = write_vocab(tmp_path)
    with tfds.testing.mock_data(num_examples=3):
        cfg = glue.task_config("mrpc", "", [("data.tokenizer", vocab),
                                            ("data.max_seq_length", "16"),
                                            (f"data.{field}", "nosuch")])
        task = base.get_task(cfg.task)(cfg)
        task.validate(cfg)
        with pytest.raises(readers.DataError, match=(
                rf"tfds:glue/mrpc\[train\] has no feature 'nosuch' \(config.data.{field}\); its "
                r"features: idx, label, sentence1, sentence2")):
            task.data(cfg, None, 0, 1)


def test_table_follows_the_glue_score_convention():
    results = {"cola": {"matthews": 0.5, "accuracy": 0.9},
               "mrpc": {"f1": 0.9, "accuracy": 0.8},
               "stsb": {"pearson": 0.8, "spearman": 0.6},
               "mnli": {"accuracy": 0.7, "validation_mismatched/accuracy": 0.9}}
    names, cells, score = glue.table(results)
    assert names == ["CoLA", "MRPC", "STS-B", "MNLI-m", "MNLI-mm"]  # GLUE's column order
    assert cells == ["50.0", "90.0/80.0", "80.0/60.0", "70.0", "90.0"]
    assert score == pytest.approx((50 + 85 + 70 + 80) / 4)


def test_override_errors_name_the_field():
    with pytest.raises(ValueError, match="no field config.optimizer.lr"):
        glue.task_config("cola", "", [("optimizer.lr", "1")])


def test_glue_driver_end_to_end_on_mock_data(tmp_path, capsys):
    vocab = write_vocab(tmp_path)
    init = tmp_path / "bert"
    save_random_bert(init, vocab, tiny_model_cfg())
    workdir = tmp_path / "glue"
    overrides = ["--config.batch_size=4", "--config.num_train_steps=1",
                 "--config.eval_every_steps=1", "--config.checkpoint_every_steps=1",
                 "--config.log_every_steps=1", "--config.data.max_seq_length=16",
                 "--config.progress_bar=false", "--config.optimizer.learning_rate=1e-3"]
    with tfds.testing.mock_data(num_examples=8):
        assert glue.main(["--init_from", str(init), "--workdir", str(workdir),
                          "--tasks", "mnli"] + overrides) == 0
    md = (workdir / "glue.md").read_text()
    assert md.splitlines()[0] == "| MNLI-m | MNLI-mm | Score |"
    assert md in capsys.readouterr().out
    results = json.loads((workdir / "glue.json").read_text())
    assert set(results["mnli"]) >= {"accuracy", "loss"}
    assert 0 <= results["mnli"]["validation_mismatched/accuracy"] <= 1
    # Scores are those of the best dev checkpoint, which W/<task>/best.json names.
    best = json.loads((workdir / "mnli" / "best.json").read_text())
    assert best["metric"] == "eval/accuracy" and best["step"] == 1
    assert results["mnli"]["accuracy"] == pytest.approx(best["value"])
    csv = (workdir / "glue.csv").read_text().splitlines()
    assert csv[0] == "MNLI-m,MNLI-mm,Score" and len(csv[1].split(",")) == 3
    m, mm, score = (float(x) for x in csv[1].split(","))
    assert score == pytest.approx((m + mm) / 2, abs=0.06)  # MNLI counts once: mean of m and mm
    # The encoder started from --init_from (its shape fields were taken from the checkpoint).
    run_cfg = json.loads((workdir / "mnli" / "config.json").read_text())
    assert run_cfg["model"]["hidden_size"] == 32 and run_cfg["init_from"] == str(init)


@pytest.fixture(autouse=True)
def malloc_tunings(monkeypatch):
    """glue.main tunes malloc like bertjax.train; stubbed, as it would change this pytest
    process's allocator for the rest of the session. -> the list of calls."""
    from bertjax import host
    setups = []
    monkeypatch.setattr(host, "tune_malloc", lambda: setups.append("malloc") or False)
    monkeypatch.setattr(logging.getLogger("absl"), "filters", [])
    return setups


@pytest.fixture
def fake_glue(monkeypatch, malloc_tunings):
    """glue.main without training: the trainer stubbed, outcomes[task] = (preempted, score);
    -> (outcomes, tasks trained, malloc tunings)."""
    from bertjax import train
    calls, setups = [], malloc_tunings
    monkeypatch.setattr(glue, "source_model_config", lambda path: None)
    outcomes = {}

    def fake_train(cfg, workdir):
        calls.append(cfg.glue_task)
        preempted, value = outcomes[cfg.glue_task]
        os.makedirs(workdir, exist_ok=True)
        with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
            f.write(json.dumps({"step": 3, "eval/accuracy": value, "eval/f1": value,
                                "eval/pearson": value, "eval/spearman": value}) + "\n")
        return {"step": 3, "preempted": preempted, "eval": {}, "train": {},
                "best": None if preempted else {"step": 3, "metric": "eval/x", "value": value}}
    monkeypatch.setattr(train, "train_and_evaluate", fake_train)
    return outcomes, calls, setups


def test_glue_stops_at_sigterm_and_writes_no_half_trained_score(tmp_path, fake_glue, caplog):
    outcomes, calls, _ = fake_glue
    outcomes.update(rte=(False, 0.6), stsb=(True, 0.1), mrpc=(False, 0.8))
    with caplog.at_level(logging.INFO):
        assert glue.main(["--init_from", "x", "--workdir", str(tmp_path),
                          "--tasks", "rte,stsb,mrpc"]) == 0
    assert calls == ["rte", "stsb"]  # nothing after the preempted task
    assert set(json.loads((tmp_path / "glue.json").read_text())) == {"rte"}
    assert "STS-B" not in (tmp_path / "glue.md").read_text()
    assert "Rerun the same command to resume" in caplog.text


def test_glue_rerun_of_some_tasks_keeps_the_other_rows(tmp_path, fake_glue):
    outcomes, calls, _ = fake_glue
    outcomes.update(rte=(False, 0.6), stsb=(False, 0.7), mrpc=(False, 0.8))
    argv = ["--init_from", "x", "--workdir", str(tmp_path)]
    assert glue.main(argv + ["--tasks", "rte,stsb,mrpc"]) == 0
    outcomes["rte"] = (False, 0.5)
    assert glue.main(argv + ["--tasks", "rte"]) == 0
    results = json.loads((tmp_path / "glue.json").read_text())
    assert {t: r["accuracy"] for t, r in results.items()} == {"rte": 0.5, "stsb": 0.7, "mrpc": 0.8}
    assert (tmp_path / "glue.md").read_text().splitlines()[0] == "| MRPC | STS-B | RTE | Score |"
    # A rerun stopped by SIGTERM drops that task's old row: it no longer describes W/<task>.
    outcomes["stsb"] = (True, 0.1)
    assert glue.main(argv + ["--tasks", "stsb"]) == 0
    assert set(json.loads((tmp_path / "glue.json").read_text())) == {"rte", "mrpc"}


def test_glue_main_sets_up_the_process_like_train(tmp_path, fake_glue):
    outcomes, _, setups = fake_glue
    outcomes["wnli"] = (False, 0.5)
    assert glue.main(["--init_from", "x", "--workdir", str(tmp_path), "--tasks", "wnli"]) == 0
    assert setups == ["malloc"]
    quiet = logging.getLogger("absl").filters
    assert len(quiet) == 1
    record = logging.LogRecord("absl", logging.INFO, "/x/orbax/checkpoint/y.py", 1, "saved",
                               None, None)
    assert not quiet[0].filter(record)
    record.levelno = logging.WARNING
    assert quiet[0].filter(record)


def test_glue_periods_follow_an_overridden_num_train_steps():
    cfg = glue.task_config("mnli", "", [("num_train_steps", "100")])
    assert (cfg.eval_every_steps, cfg.checkpoint_every_steps) == (17, 17)  # ceil(100 / 6)
    cfg = glue.task_config("mnli", "", [("num_train_steps", "100"),
                                        ("checkpoint_every_steps", "5")])
    assert (cfg.eval_every_steps, cfg.checkpoint_every_steps) == (17, 5)
    cfg = glue.task_config("rte", "", [("eval_every_steps", "4")])
    assert (cfg.eval_every_steps, cfg.checkpoint_every_steps) == (4, 4)
    assert json.loads(cfg.to_json())["eval_every_steps"] == 4  # config.json holds the value


def test_glue_bad_input_is_a_message_not_a_traceback(tmp_path, fake_glue, monkeypatch, capsys):
    """A bad override value and a task's user error (here a config the trainer refuses) end with
    a message naming what is wrong (they were tracebacks); finished tasks keep their table."""
    with pytest.raises(SystemExit) as e:
        glue.main(["--init_from", "x", "--workdir", str(tmp_path), "--tasks", "rte",
                   "--config.batch_size=x"])
    assert e.value.code == 2
    assert "--config.batch_size='x': expected an integer" in capsys.readouterr().err
    from bertjax import train
    outcomes, calls, _ = fake_glue
    outcomes["rte"] = (False, 0.6)
    fake_train = train.train_and_evaluate

    def failing_train(cfg, workdir):
        if cfg.glue_task == "mrpc":
            raise model_lib.ConfigError("config.num_train_steps must be > 0, got 0")
        return fake_train(cfg, workdir)
    monkeypatch.setattr(train, "train_and_evaluate", failing_train)
    assert glue.main(["--init_from", "x", "--workdir", str(tmp_path), "--tasks", "rte,mrpc"]) == 2
    err = capsys.readouterr().err
    assert "error: GLUE mrpc: config.num_train_steps must be > 0" in err and "glue.md" in err
    assert calls == ["rte"] and "RTE" in (tmp_path / "glue.md").read_text()


def test_glue_missing_init_from_is_a_message(tmp_path, capsys):
    assert glue.main(["--init_from", str(tmp_path / "nosuch"), "--workdir", str(tmp_path / "w"),
                      "--tasks", "rte"]) == 2
    assert "error: --init_from: " in capsys.readouterr().err
