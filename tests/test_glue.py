"""GLUE configs on tfds.testing.mock_data, the table convention, and the driver end to end."""

import json
import os

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from bertjax import config as config_lib
from bertjax import convert, glue
from bertjax import model as model_lib
from bertjax.data import tokenizer as tokenizer_lib
from bertjax.tasks import base
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


def test_glue_periods_follow_an_overridden_num_train_steps():
    cfg = glue.task_config("mnli", "", [("num_train_steps", "100")])
    assert (cfg.eval_every_steps, cfg.checkpoint_every_steps) == (17, 17)  # ceil(100 / 6)
    cfg = glue.task_config("mnli", "", [("num_train_steps", "100"),
                                        ("checkpoint_every_steps", "5")])
    assert (cfg.eval_every_steps, cfg.checkpoint_every_steps) == (17, 5)
    cfg = glue.task_config("rte", "", [("eval_every_steps", "4")])
    assert (cfg.eval_every_steps, cfg.checkpoint_every_steps) == (4, 4)
    assert json.loads(cfg.to_json())["eval_every_steps"] == 4  # config.json holds the value
