"""Token classification through the shared trainer; predictions mapped back to words, entity F1."""

import json
import random

import numpy as np
import pytest

from bertjax import train
from bertjax.tasks import base, finetune_data, readers
from configs import tagging as tagging_config
from test_finetune_classify import FILLER, tiny_model, write_vocab


def sentences(n, seed):
    """'cat' / 'cats' are B-ANI entities, everything else O."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        words = rng.sample(FILLER, 5)
        words.insert(rng.randrange(6), rng.choice(["cat", "cats"]))
        rows.append({"tokens": words, "tags": ["B-ANI" if w.startswith("cat") else "O"
                                               for w in words]})
    return rows


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_tagger_trains_and_predicts_per_word(tmp_path):
    cfg = tagging_config.get_config()
    tiny_model(cfg)
    cfg.data.tokenizer = write_vocab(tmp_path)
    cfg.data.max_seq_length = 12
    cfg.data.train = write_jsonl(tmp_path / "train.jsonl", sentences(128, 0))
    cfg.data.validation = write_jsonl(tmp_path / "dev.jsonl", sentences(20, 1))
    cfg.update(batch_size=16, num_train_steps=30, log_every_steps=10, eval_every_steps=30,
               checkpoint_every_steps=30, progress_bar=False)
    cfg.optimizer.update(learning_rate=3e-3, schedule="constant", warmup_steps=3,
                         weight_decay=0.0)
    workdir = str(tmp_path / "run")
    summary = train.train_and_evaluate(cfg, workdir)
    assert summary["eval"]["eval/word_accuracy"] >= 0.9, summary["eval"]
    names = base.get_task("tagging")(cfg).eval_metric_names()  # what eval_metric is checked on
    assert {k.removeprefix("eval/") for k in summary["eval"]} == names
    assert finetune_data.read_labels(workdir) == ["B-ANI", "O"]
    # A tagger never reads the pooler: trained from scratch, it leaves it untrained, and says so.
    from bertjax import checkpoint as ckpt_lib
    assert ckpt_lib.read_untrained(workdir) == ["bert/pooler"]

    # Prediction-based evaluation maps first-piece predictions back to words and scores entities.
    # (Fed with the gold piece labels and with all-"O" predictions; bertjax.checkpoint's
    # restore_params is exercised by its own tests.)
    task = base.get_task("tagging")(cfg)
    task.set_labels(finetune_data.read_labels(workdir))
    data = task.data(cfg, None, 0, 1)
    batches = list(data.eval_batches())
    gold = [{"pred": b["labels"]} for b in batches]
    assert task.evaluate_predictions(gold, batches)["entity_f1"] == 1.0
    outside = [{"pred": np.ones_like(b["labels"])} for b in batches]  # "O" is id 1
    assert task.evaluate_predictions(outside, batches)["entity_recall"] == 0.0
    b = batches[0]
    words = task.word_labels(b["labels"][0], b["word_index"][0], int(b["num_words"][0]))
    ex = task.eval_examples[0]
    assert words == [task.labels.names[t] for t in ex.label]


def test_max_seq_length_too_short_for_a_word_fails_validation():
    from bertjax.model import ConfigError
    cfg = tagging_config.get_config()
    cfg.data.max_seq_length = 2
    with pytest.raises(ConfigError, match=r"config.data.max_seq_length=2 is too short: an "
                                          r"example is \[CLS\] word \[SEP\]"):
        base.get_task("tagging")(cfg).validate(cfg)


def test_eval_metric_is_checked_against_the_tagging_metrics():
    from bertjax import best
    from bertjax.model import ConfigError
    cfg = tagging_config.get_config()
    cfg.eval_metric = "f1"
    with pytest.raises(ConfigError, match=r"config.eval_metric='f1' is not among .*'entity_f1'.*"
                                          r"did you mean 'entity_f1'"):
        best.validate(cfg, base.get_task("tagging")(cfg).eval_metric_names())


def test_bad_tags_are_bad_rows_and_no_class(tmp_path):
    """Tags that are not a list of names (5, null, "") add no class to the tag set: they are bad
    rows, named when the examples are read."""
    cfg = tagging_config.get_config()
    bad = [{"tokens": ["john"], "tags": 5}, {"tokens": ["a", "b"], "tags": ["O", None]},
           {"tokens": ["a", "b"], "tags": ["O", ""]}, {"tokens": ["a"], "tags": {"X": 1}}]
    cfg.data.train = write_jsonl(tmp_path / "train.jsonl", sentences(4, 0) + bad)
    task = base.get_task("tagging")(cfg)
    assert task.labels.names == ["B-ANI", "O"]
    with pytest.raises(readers.DataError, match=r"train\.jsonl:5: 'tags' must be a list of tags"):
        task.read_examples("train")
    cfg.data.on_bad_row = "skip"
    assert len(task.read_examples("train")) == 4
