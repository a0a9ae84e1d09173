"""Regression (STS-B-like) and multi-label classification: fine-tune a few steps, log the host
metrics, and predict on new rows through bertjax.predict."""

import json
import os
import random

import numpy as np
import pytest

from bertjax import predict, train
from bertjax.tasks import classification
from configs import classify as classify_config
from test_finetune_classify import FILLER, tiny_model, write_vocab


def _rows(n, seed, kind):
    """Regression: value = number of 'cat' words (0-2). Multi-label: {cat, dog} present."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        words = rng.sample(FILLER, 5)
        cats, dog = rng.randrange(3), rng.random() < 0.5
        for w in ["cat"] * cats + (["dog"] if dog else []):
            words.insert(rng.randrange(len(words) + 1), w)
        if kind == "regression":
            label = str(float(cats))
        else:
            label = "|".join(x for x, on in (("cat", cats > 0), ("dog", dog)) if on) or "none"
        rows.append((" ".join(words), label))
    return rows


def _config(tmp_path, kind, metrics):
    cfg = classify_config.get_config(kind)
    tiny_model(cfg)
    cfg.data.tokenizer = write_vocab(tmp_path)
    cfg.data.max_seq_length = 12
    for split, n, seed in (("train", 128, 0), ("validation", 32, 1)):
        path = tmp_path / f"{split}.csv"
        path.write_text("text,label\n" + "".join(f"{t},{l}\n" for t, l in _rows(n, seed, kind)))
        cfg.data[split] = str(path)
    cfg.batch_size = 16
    cfg.num_train_steps = 12
    cfg.log_every_steps = 6
    cfg.eval_every_steps = 12
    cfg.checkpoint_every_steps = 12
    cfg.optimizer.learning_rate = 5e-3
    cfg.optimizer.warmup_steps = 2
    cfg.classification.metrics = metrics
    cfg.progress_bar = False
    return cfg


@pytest.mark.parametrize("kind,metrics", [
    ("regression", ("pearson", "spearman")),
    ("multilabel", ("f1_micro", "subset_accuracy")),
])
def test_fine_tune_and_predict(tmp_path, kind, metrics):
    cfg = _config(tmp_path, kind, metrics)
    workdir = str(tmp_path / "run")
    summary = train.train_and_evaluate(cfg, workdir)
    assert summary["step"] == 12
    task = classification.ClassificationTask(cfg)  # eval_metric's up-front names: those logged
    assert {k.removeprefix("eval/") for k in summary["eval"]} == task.eval_metric_names()
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        evals = [json.loads(l) for l in f if '"eval/' in l]
    for name in metrics:
        value = evals[-1][f"eval/{name}"]
        assert np.isfinite(value) and -1.0 <= value <= 1.0, (name, value)

    src = tmp_path / "new.csv"
    src.write_text("text\nthe cat sat on a cat mat\nthe dog ran\nthe big red house\n")
    out = tmp_path / "preds.jsonl"
    assert predict.main(["--checkpoint", workdir, "--input", str(src), "--output",
                         str(out), "--use", "latest"]) == 0
    preds = [json.loads(l) for l in out.read_text().splitlines()]
    assert [p["line"] for p in preds] == [2, 3, 4]
    for p in preds:
        if kind == "regression":
            assert set(p) == {"line", "value"} and np.isfinite(p["value"])
        else:
            assert set(p["probabilities"]) == {"cat", "dog", "none"}
            assert all(0.0 <= v <= 1.0 for v in p["probabilities"].values())
            # Independent sigmoids: the predicted set is exactly the classes over the threshold.
            assert sorted(p["labels"]) == sorted(
                k for k, v in p["probabilities"].items() if v > cfg.classification.multilabel_threshold)
