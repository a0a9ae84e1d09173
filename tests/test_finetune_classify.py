"""Classification through the shared trainer: a separable synthetic task, labels saved, bad rows."""

import json
import os
import random

import numpy as np
import pytest

from bertjax import train
from bertjax.data import tokenizer as tokenizer_lib
from bertjax.tasks import classification, finetune_data, readers
from configs import classify as classify_config

FILLER = "the a big red house sat on mat ran to went in where is".split()
VOCAB = list(tokenizer_lib.SPECIAL_TOKENS) + FILLER + ["cat", "dog", "##s"]


def tiny_model(cfg):
    cfg.model.update(vocab_size=len(VOCAB) + 3, hidden_size=30, num_layers=2, num_heads=3,
                     intermediate_size=37, max_position_embeddings=17, dropout_rate=0.0,
                     attention_dropout_rate=0.0)


def write_vocab(tmp_path):
    d = tmp_path / "vocab"
    d.mkdir()
    (d / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    return str(d)


def synthetic(n, seed):
    """Sentences with 'cat' are pos, with 'dog' neg; the word sits anywhere among fillers."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        words = rng.sample(FILLER, 6)
        label = rng.choice(["pos", "neg"])
        words.insert(rng.randrange(7), "cat" if label == "pos" else "dog")
        rows.append((" ".join(words), label))
    return rows


def write_csv(path, rows):
    with open(path, "w") as f:
        f.write("text,label\n")
        f.writelines(f"{t},{l}\n" for t, l in rows)
    return str(path)


def make_config(tmp_path, steps=40):
    cfg = classify_config.get_config("single")
    tiny_model(cfg)
    cfg.data.tokenizer = write_vocab(tmp_path)
    cfg.data.max_seq_length = 12
    cfg.data.train = write_csv(tmp_path / "train.csv", synthetic(256, 0))
    cfg.data.validation = write_csv(tmp_path / "dev.csv", synthetic(60, 1))
    cfg.batch_size = 16
    cfg.num_train_steps = steps
    cfg.log_every_steps = 10
    cfg.eval_every_steps = steps
    cfg.checkpoint_every_steps = steps
    cfg.optimizer.learning_rate = 3e-3  # BERT's Adam (no bias correction) steps ~3x early on
    cfg.optimizer.schedule = "constant"
    cfg.optimizer.warmup_steps = 4
    cfg.optimizer.weight_decay = 0.0
    cfg.classification.metrics = ("accuracy", "f1", "matthews")
    cfg.progress_bar = False
    return cfg


def test_classifier_learns_separable_task_and_saves_labels(tmp_path):
    cfg = make_config(tmp_path)
    workdir = str(tmp_path / "run")
    summary = train.train_and_evaluate(cfg, workdir)
    assert summary["step"] == 40
    assert summary["eval"]["eval/accuracy"] >= 0.9, summary["eval"]
    # What config.eval_metric is checked against up front is what an evaluation logs.
    task = classification.ClassificationTask(cfg)
    assert {k.removeprefix("eval/") for k in summary["eval"]} == task.eval_metric_names()
    assert finetune_data.read_labels(workdir) == ["neg", "pos"]
    lines = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
    assert any("eval/accuracy" in l for l in lines)


def test_unknown_validation_label_names_file_and_line(tmp_path):
    cfg = make_config(tmp_path, steps=2)
    with open(cfg.data.validation, "a") as f:
        f.write("the cat sat,maybe\n")
    with pytest.raises(readers.DataError, match=r"dev.csv:62: unknown label 'maybe'"):
        train.train_and_evaluate(cfg, str(tmp_path / "run"))


def test_empty_train_label_is_not_a_class(tmp_path):
    from bertjax.tasks import classification
    cfg = make_config(tmp_path)
    with open(cfg.data.train, "a") as f:
        f.write("sad dog,\n")
    task = classification.ClassificationTask(cfg)
    assert task.labels.names == ["neg", "pos"]
    with pytest.raises(readers.DataError, match=r"train.csv:258: empty label in 'label'"):
        task.read_examples("train")
    cfg.data.on_bad_row = "skip"
    assert len(task.read_examples("train")) == 256


def test_a_row_with_an_unquoted_comma_adds_no_class(tmp_path):
    from bertjax.tasks import classification
    cfg = make_config(tmp_path)
    with open(cfg.data.train, "a") as f:
        f.write("the dog, big house,neg\n")
    task = classification.ClassificationTask(cfg)
    assert task.labels.names == ["neg", "pos"]  # not " big house"
    with pytest.raises(readers.DataError, match=r"train.csv:258: 3 fields, the header has 2"):
        task.read_examples("train")


def test_a_json_label_that_is_no_label_adds_no_class(tmp_path):
    from bertjax.tasks import classification
    cfg = make_config(tmp_path)
    rows = [{"text": t, "label": l} for t, l in synthetic(8, 0)]
    rows += [{"text": "the cat", "label": ["pos"]}, {"text": "the cat", "label": float("nan")}]
    cfg.data.train = str(tmp_path / "train.jsonl")
    with open(cfg.data.train, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    task = classification.ClassificationTask(cfg)
    assert task.labels.names == ["neg", "pos"]  # not "['pos']" or "nan"
    with pytest.raises(readers.DataError, match=r"train.jsonl:9: label in 'label' must be a string"):
        task.read_examples("train")


def test_header_only_train_file_is_named(tmp_path):
    from bertjax.tasks import classification
    cfg = make_config(tmp_path)
    cfg.data.train = write_csv(tmp_path / "empty.csv", [])
    task = classification.ClassificationTask(cfg)
    with pytest.raises(readers.DataError, match=r"no labels in column 'label' of .*empty.csv"):
        task.labels


def test_binary_f1_on_three_classes_fails_before_training(tmp_path):
    """f1 is the positive-class F1 of a binary task; on 3+ classes it is refused up front."""
    from bertjax.model import ConfigError
    from bertjax.tasks import classification
    cfg = make_config(tmp_path)
    cfg.classification.metrics = ("accuracy", "f1")
    # Labels given in the config: known at validate time.
    cfg.data.labels = "neg,mid,pos"
    with pytest.raises(ConfigError, match=r"'f1'.*3 classes.*f1_macro.*f1_micro"):
        classification.ClassificationTask(cfg).validate(cfg)
    # Labels found in the train data: refused when the data is set up, before any step.
    cfg.data.labels = ""
    cfg.data.train = write_csv(tmp_path / "three.csv", synthetic(20, 0) + [("a cat", "mid")])
    task = classification.ClassificationTask(cfg)
    task.validate(cfg)
    with pytest.raises(ConfigError, match=r"'f1'.*3 classes.*f1_macro"):
        task.data(cfg, None, 0, 1)
    # Two classes are fine.
    cfg.data.train = write_csv(tmp_path / "two.csv", synthetic(20, 0))
    classification.ClassificationTask(cfg).data(cfg, None, 0, 1)


def test_a_label_named_twice_in_config_labels_fails_validation(tmp_path):
    """neg,pos,neg would be three output units and lose one in the predictions' names."""
    from bertjax.model import ConfigError
    from bertjax.tasks import classification, tagging
    from configs import tagging as tagging_config
    cfg = make_config(tmp_path)
    cfg.data.labels = "neg, pos,neg"
    with pytest.raises(ConfigError, match=r"config.data.labels='neg, pos,neg' names 'neg' more "
                                          r"than once"):
        classification.ClassificationTask(cfg).validate(cfg)
    tag = tagging_config.get_config()
    tag.data.labels = "O,B-X,O,B-X"
    with pytest.raises(ConfigError, match=r"names 'B-X', 'O' more than once"):
        tagging.TaggingTask(tag).validate(tag)
    cfg.data.labels = "neg,pos"
    classification.ClassificationTask(cfg).validate(cfg)


@pytest.mark.parametrize("pair,length,ok", [(False, 2, False), (False, 3, True), (True, 4, False),
                                            (True, 5, True), (False, 0, False)])
def test_max_seq_length_must_hold_the_shortest_example(tmp_path, pair, length, ok):
    """S=0/1 failed in numpy broadcasting and pairs at S=2 with 'pop from empty list'."""
    from bertjax.model import ConfigError
    from bertjax.tasks import classification
    cfg = make_config(tmp_path)
    cfg.data.text_pair_column = "text_b" if pair else ""
    cfg.data.max_seq_length = length
    task = classification.ClassificationTask(cfg)
    if ok:
        task.validate(cfg)
        return
    layout = r"\[CLS\] a \[SEP\] b \[SEP\], at least 5" if pair else r"\[CLS\] text \[SEP\], at least 3"
    with pytest.raises(ConfigError, match=rf"config.data.max_seq_length={length} is too short: "
                                          rf"an example is {layout} tokens"):
        task.validate(cfg)


def test_max_seq_length_beyond_the_position_table_fails_validation(tmp_path):
    from bertjax.model import ConfigError
    cfg = make_config(tmp_path)
    cfg.data.max_seq_length = 18
    with pytest.raises(ConfigError, match=r"config.data.max_seq_length=18 exceeds "
                                          r"config.model.max_position_embeddings=17"):
        train.validate(cfg, num_devices=1, process_count=1)


@pytest.mark.parametrize("split", ["validation", "train"])
def test_a_split_file_without_examples_is_an_error_naming_it(tmp_path, split):
    """A header-only validation file used to mean no evaluation without a word (and, with
    config.eval_metric, a late 'not among the eval metrics []'); a header-only train file with
    config.data.labels given said 'no training data: set config.data.train'."""
    from bertjax.tasks import classification
    cfg = make_config(tmp_path)
    cfg.data.labels = "neg,pos"
    cfg.data[split] = write_csv(tmp_path / "header_only.csv", [])
    task = classification.ClassificationTask(cfg)
    with pytest.raises(readers.DataError, match=rf"config.data.{split}='.*header_only.csv' has "
                                                r"no examples"):
        task.data(cfg, None, 0, 1)
    # Rows all skipped as bad are no examples either.
    cfg.data.on_bad_row = "skip"
    write_csv(tmp_path / "header_only.csv", [("a cat", "maybe" if split == "validation" else "")])
    with pytest.raises(readers.DataError, match=r"header_only.csv' has no examples"):
        task.data(cfg, None, 0, 1)


def test_eval_metric_without_validation_data_fails_validation(tmp_path):
    from bertjax.model import ConfigError
    from bertjax.tasks import classification
    cfg = make_config(tmp_path)
    cfg.eval_metric = "accuracy"
    classification.ClassificationTask(cfg).validate(cfg)
    cfg.data.validation = ""
    with pytest.raises(ConfigError, match=r"config.eval_metric='accuracy' needs evaluations but "
                                          r"no validation data is set"):
        classification.ClassificationTask(cfg).validate(cfg)


def test_eval_metric_typo_fails_before_anything_is_built(tmp_path):
    """Found at the first evaluation (step 500 by default) before; now before any data is read."""
    from bertjax.model import ConfigError
    cfg = make_config(tmp_path)
    cfg.eval_metric = "acuracy"
    cfg.data.train = str(tmp_path / "never_read.csv")
    workdir = tmp_path / "run"
    with pytest.raises(ConfigError, match=r"config.eval_metric='acuracy' is not among the eval "
                                          r"metrics of this config \['accuracy', 'f1', 'loss', "
                                          r"'matthews'\]; did you mean 'accuracy'\?"):
        train.train_and_evaluate(cfg, str(workdir))
    assert not workdir.exists()
    # A classification metric the config does not compute: where to add it.
    cfg.classification.metrics = ("accuracy",)
    cfg.eval_metric = "eval/matthews"
    with pytest.raises(ConfigError, match=r"config.eval_metric='eval/matthews' is computed only "
                                          r"when config.classification.metrics lists it"):
        train.train_and_evaluate(cfg, str(workdir))
    # The names follow the kind: a regression logs no accuracy.
    reg = classify_config.get_config("regression")
    reg.eval_metric = "accuracy"
    task = classification.ClassificationTask(reg)
    assert task.eval_metric_names() == {"loss", "pearson", "spearman"}
    with pytest.raises(ConfigError, match=r"'accuracy' is not among .*\['loss', 'pearson'"):
        from bertjax import best
        best.validate(reg, task.eval_metric_names())
