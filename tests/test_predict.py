"""bertjax.predict on workdirs whose W/best/ holds known params (no training: fast)."""

import json
import os

import jax
import numpy as np
import pytest

from bertjax import checkpoint as ckpt_lib
from bertjax import convert, predict
from bertjax import model as model_lib
from bertjax.data import tokenizer as tokenizer_lib
from bertjax.tasks import base, finetune_data, readers
from configs import classify as classify_config
from configs import squad as squad_config
from configs import tagging as tagging_config
from test_finetune_classify import synthetic, tiny_model, write_csv, write_vocab
from test_finetune_squad import CONTEXT, squad_file
from test_finetune_tagging import sentences, write_jsonl


def make_workdir(tmp_path, cfg, labels=None, head_bias=None):
    """A fine-tuning workdir with config.json, tokenizer, labels.json and random W/best/ params.

    head_bias: (head key, label id): that label's bias set to +20 so it always wins.
    """
    workdir = str(tmp_path / "run")
    task = base.get_task(cfg.task)(cfg)
    if labels is not None:
        task.set_labels(labels)
        finetune_data.write_labels(workdir, cfg.task, labels)
    ckpt_lib.write_run_files(workdir, cfg, cfg.data.tokenizer)
    model = task.build_model(cfg.model)
    shapes = jax.eval_shape(lambda k: model_lib.unbox(task.init_params(
        model, k, task.dummy_batch(1, cfg.data.max_seq_length))), jax.random.key(0))
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda x: (0.05 * rng.standard_normal(x.shape)).astype(np.float32),
                          shapes)
    if head_bias is not None:
        key, label = head_bias
        params[key]["bias"][label] = 20.0
    tok = tokenizer_lib.load_tokenizer(cfg.data.tokenizer)
    convert.save_bertjax(cfg.model, params, tok, os.path.join(workdir, "best"))
    return workdir


def test_classification_predictions_and_cli(tmp_path):
    cfg = classify_config.get_config("single")
    tiny_model(cfg)
    cfg.data.tokenizer = write_vocab(tmp_path)
    cfg.data.max_seq_length = 12
    workdir = make_workdir(tmp_path, cfg, ["neg", "pos"], ("classifier", 1))
    rows = synthetic(5, 3)
    src = tmp_path / "test.csv"
    src.write_text("text\n" + "".join(f"{t}\n" for t, _ in rows))  # no label column
    out = tmp_path / "preds.jsonl"
    assert predict.main(["--checkpoint", workdir, "--input", str(src), "--output", str(out),
                         "--batch_size", "4"]) == 0
    preds = [json.loads(l) for l in out.read_text().splitlines()]
    assert len(preds) == 5
    for p in preds:
        assert p["label"] == "pos"
        assert set(p["probabilities"]) == {"neg", "pos"}
        assert sum(p["probabilities"].values()) == pytest.approx(1.0)
        assert p["probabilities"]["pos"] > 0.99

    # A bad row stops with file:line; the CLI says so and exits 1.
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "the cat sat"}\n{"txt": "the dog"}\n')
    run = predict.load_run(workdir)
    assert run.source.endswith("best")
    with pytest.raises(readers.DataError, match=r"bad.jsonl:2: missing field 'text'"):
        predict.predict_file(run, str(bad))
    assert predict.main(["--checkpoint", workdir, "--input", str(bad), "--output",
                         str(tmp_path / "x.jsonl")]) == 1


def test_tagging_predictions_per_word(tmp_path, caplog):
    cfg = tagging_config.get_config()
    tiny_model(cfg)
    cfg.data.tokenizer = write_vocab(tmp_path)
    cfg.data.max_seq_length = 12
    workdir = make_workdir(tmp_path, cfg, ["B-ANI", "O"], ("classifier", 0))
    rows = [{"tokens": r["tokens"]} for r in sentences(3, 5)]
    rows.append({"tokens": ["the", "cats", "sat"] * 5})  # longer than max_seq_length
    rows.append({"tokens": ["the", "\x00", "cat", "\u200b"]})  # words with no WordPiece
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    run = predict.load_run(workdir)
    preds = predict.predict_file(run, src, batch_size=2)
    assert [p["words"] for p in preds] == [r["tokens"] for r in rows]
    for p in preds[:4]:
        assert p["labels"] == ["B-ANI"] * len(p["words"])  # the long one too: read in windows
    # The model never sees a word without pieces: null, not a made-up "O".
    assert preds[4]["labels"] == ["B-ANI", None, "B-ANI", None]
    assert "2 words (in 1 lines) have no WordPiece" in caplog.text
    # A blank word is a bad row, as in training data.
    blank = write_jsonl(tmp_path / "blank.jsonl", rows[:1] + [{"tokens": ["the", " "]}])
    with pytest.raises(readers.DataError, match=r"blank\.jsonl:2: word 1 in 'tokens' is blank"):
        predict.predict_file(run, blank, batch_size=2)


def test_tagging_windows_cover_every_word_once(tmp_path):
    """A long word list is read in windows of S-2 pieces; each word's first piece is owned by
    exactly one window, the one where it has the most context; a short text is one window, the
    row encode_tagging makes."""
    from bertjax.tasks import features
    tok = tokenizer_lib.load_tokenizer(write_vocab(tmp_path))
    words = (["the", "cats", "sat", "on", "a", "dog"] * 6)[:31]
    examples = [readers.Example("x:1", words, None, None, None),
                readers.Example("x:2", ["the", "cat"], None, None, None),
                readers.Example("x:3", ["", " "], None, None, None)]
    s = 12
    win = features.encode_tagging_windows(tok, examples, s)
    pieces = tok.encode(words, is_pretokenized=True, add_special_tokens=False)
    long_rows = np.flatnonzero(win["example_index"] == 0)
    assert len(long_rows) > 1 and win["example_index"].tolist()[len(long_rows):] == [1, 2]
    owned = win["word_index"][long_rows]
    assert sorted(owned[owned >= 0].tolist()) == list(range(len(words)))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    stride = (s - 2) // 2
    for k, r in enumerate(long_rows):  # window k holds pieces [k*stride, k*stride + S-2)
        chunk = pieces.ids[k * stride: k * stride + s - 2]
        assert win["input_ids"][r, : len(chunk) + 2].tolist() == [cls] + chunk + [sep]
        assert win["attention_mask"][r].sum() == len(chunk) + 2
    # Windows 0 (pieces 0-9) and 1 (pieces 5-14) both hold words 4 ("a", piece 5) and 7
    # ("cat" "##s", pieces 8-9): each is read where it is farther from the window's edge.
    assert pieces.word_ids[5] == 4 and pieces.word_ids[8: 10] == [7, 7]
    assert 4 in owned[0] and 4 not in owned[1] and 7 in owned[1] and 7 not in owned[0]
    short = features.encode_tagging(tok, examples[1:2], s)
    assert win["input_ids"][len(long_rows)].tolist() == short["input_ids"][0].tolist()
    assert win["word_index"][len(long_rows)].tolist() == short["word_index"][0].tolist()
    assert (win["word_index"][-1] == -1).all()  # no pieces: no word in the window


def test_span_qa_answers_are_context_spans(tmp_path):
    cfg = squad_config.get_config("v1")
    tiny_model(cfg)
    cfg.data.tfds_name = ""
    cfg.data.tokenizer = write_vocab(tmp_path)
    cfg.data.max_seq_length = 16
    cfg.squad.update(doc_stride=4, max_query_length=5)
    workdir = make_workdir(tmp_path, cfg)
    src = squad_file(tmp_path / "q.json", 4)
    preds = predict.predict_file(predict.load_run(workdir), src, batch_size=8)
    assert [p["id"] for p in preds] == ["q0", "q1", "q2", "q3"]
    for p in preds:
        assert 0 <= p["start"] < p["end"] <= len(CONTEXT)
        assert p["answer"] == CONTEXT[p["start"]: p["end"]] and p["answer"]
        assert np.isfinite(p["score"])


def test_trainer_logs_prediction_metrics_keeps_best_and_stops_early(tmp_path):
    """eval/matthews and eval/f1 (predict_fn + evaluate_predictions) reach metrics.jsonl; with a
    learning rate too small to change anything, matthews never improves after the first
    evaluation: patience 1 stops at step 2 and W/best/ holds step 1, which predict then uses."""
    from bertjax import train
    from test_finetune_classify import make_config
    cfg = make_config(tmp_path, steps=5)
    cfg.update(eval_every_steps=1, checkpoint_every_steps=5, eval_metric="matthews",
               early_stopping_patience=1)
    cfg.optimizer.learning_rate = 1e-12
    workdir = str(tmp_path / "run")
    summary = train.train_and_evaluate(cfg, workdir)
    assert summary["early_stopped"] and summary["step"] == 2
    assert summary["best"] == {"step": 1, "metric": "eval/matthews",
                               "value": pytest.approx(summary["eval"]["eval/matthews"])}
    lines = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
    evals = [l for l in lines if "eval/matthews" in l]
    assert [l["step"] for l in evals] == [1, 2] and all("eval/f1" in l for l in evals)
    best = json.loads(open(os.path.join(workdir, "best.json")).read())
    assert best["step"] == 1 and best["evaluations_since"] == 1
    run = predict.load_run(workdir)
    assert run.source.endswith("best")
    # The early-stopped run resumes from its last checkpoint (step 2).
    assert ckpt_lib.restore_params(workdir)[3]["step"] == 2
    # The other readers of a workdir choose as predict does, unless told otherwise.
    from bertjax import pretrained
    assert pretrained.load(workdir).extra["best"]["step"] == 1
    assert convert.load_any(workdir, with_extra=True, use="latest")[3]["step"] == 2
    assert pretrained.load(workdir, use="latest").tokenizer is not None
    with pytest.raises(convert.ConvertError, match="applies to a training workdir"):
        convert.load_any(os.path.join(workdir, "best"), use="latest")


def test_predictions_carry_id_and_line_past_skipped_rows(tmp_path):
    """With --on_bad_row=skip a dropped row must not shift later predictions: each line names
    its input line and, with config.data.id_column, the row's id."""
    cfg = classify_config.get_config("single")
    tiny_model(cfg)
    cfg.data.tokenizer = write_vocab(tmp_path)
    cfg.data.max_seq_length = 12
    cfg.data.id_column = "uid"
    workdir = make_workdir(tmp_path, cfg, ["neg", "pos"], ("classifier", 1))
    src = tmp_path / "test.csv"
    src.write_text('uid,text\nr1,the cat sat\nr2\nr3,"the dog\nran"\nr4,a cat\n')
    out = tmp_path / "preds.jsonl"
    assert predict.main(["--checkpoint", workdir, "--input", str(src), "--output", str(out),
                         "--on_bad_row", "skip"]) == 0
    preds = [json.loads(l) for l in out.read_text().splitlines()]
    assert [(p["id"], p["line"]) for p in preds] == [("r1", 2), ("r3", 4), ("r4", 6)]
    assert all(p["label"] == "pos" for p in preds)
    # Without id_column: the line alone, and no "id" field.
    run = predict.load_run(workdir)
    run.config.data.id_column = ""
    preds = predict.predict_file(run, str(src), on_bad_row="skip")
    assert [p["line"] for p in preds] == [2, 4, 6] and "id" not in preds[0]


def test_tagging_predictions_carry_id_and_line(tmp_path):
    cfg = tagging_config.get_config()
    tiny_model(cfg)
    cfg.data.tokenizer = write_vocab(tmp_path)
    cfg.data.max_seq_length = 12
    cfg.data.id_column = "id"
    workdir = make_workdir(tmp_path, cfg, ["B-ANI", "O"], ("classifier", 0))
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "tokens": ["the", "cat"]},
                                              {"id": "b", "tokens": 3},
                                              {"id": "c", "tokens": ["a", "dog"]}])
    preds = predict.predict_file(predict.load_run(workdir), src, on_bad_row="skip")
    assert [(p["id"], p["line"], p["words"]) for p in preds] == [
        ("a", 1, ["the", "cat"]), ("c", 3, ["a", "dog"])]


def test_pretraining_run_is_refused_naming_its_task(tmp_path, capsys):
    from bertjax import config as config_lib
    cfg = config_lib.pretraining("tiny")
    workdir = str(tmp_path / "pre")
    ckpt_lib.write_run_files(workdir, cfg, None)
    with pytest.raises(ValueError, match=r"'pretraining' run.*fine-tuned"):
        predict.load_run(workdir)
    assert predict.main(["--checkpoint", workdir, "--input", "x.csv", "--output",
                         str(tmp_path / "x.jsonl")]) == 1
    assert "'pretraining' run" in capsys.readouterr().err


@pytest.mark.parametrize("kind,files,what", [
    ("hf", {"config.json": '{"model_type": "bert"}', "model.safetensors": ""},
     "a Hugging Face model directory"),
    ("bertjax", {"bertjax.json": "{}"}, "a bertjax model directory"),
    ("google", {"bert_config.json": "{}"}, "a Google TF BERT checkpoint directory"),
    ("empty", {}, "not a directory predict can read"),
])
def test_checkpoint_that_is_no_finetuned_workdir_is_named(tmp_path, capsys, kind, files, what):
    """A model directory (not a fine-tuned run) given as --checkpoint: the error says what the
    path is and that predict needs a fine-tuned task workdir, not AttributeError 'task'."""
    path = tmp_path / kind
    path.mkdir()
    for name, text in files.items():
        (path / name).write_text(text)
    with pytest.raises(predict.ConfigError, match=rf"--checkpoint {path} is {what}.*fine-tuned"):
        predict.load_run(str(path))
    assert predict.main(["--checkpoint", str(path), "--input", "x.csv", "--output",
                         str(tmp_path / "x.jsonl")]) == 1
    err = capsys.readouterr().err
    assert f"--checkpoint {path} is {what}" in err and "Traceback" not in err
    assert not (tmp_path / "x.jsonl").exists()


def test_batch_size_below_one_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        predict.main(["--checkpoint", str(tmp_path), "--input", "x.csv", "--output",
                      str(tmp_path / "x.jsonl"), "--batch_size", "0"])
    assert e.value.code == 2
    assert "--batch_size must be a positive integer, got 0" in capsys.readouterr().err
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got -1"):
        predict.predict_file(None, "x.csv", batch_size=-1)


def test_output_dirs_are_made_and_computed_predictions_never_lost(tmp_path, capsys,
                                                                   monkeypatch):
    cfg = classify_config.get_config("single")
    tiny_model(cfg)
    cfg.data.tokenizer = write_vocab(tmp_path)
    cfg.data.max_seq_length = 12
    workdir = make_workdir(tmp_path, cfg, ["neg", "pos"], ("classifier", 1))
    src = tmp_path / "test.csv"
    src.write_text("text\nthe cat sat\na dog\n")
    # Missing parent directories are created.
    out = tmp_path / "new" / "dir" / "preds.jsonl"
    assert predict.main(["--checkpoint", workdir, "--input", str(src), "--output", str(out)]) == 0
    assert [json.loads(l)["line"] for l in out.read_text().splitlines()] == [2, 3]
    # A failed run leaves the earlier file as it was, and no temporary file beside it.
    before = out.read_text()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"txt": "x"}\n')
    assert predict.main(["--checkpoint", workdir, "--input", str(bad), "--output", str(out)]) == 1
    assert out.read_text() == before and os.listdir(out.parent) == ["preds.jsonl"]
    # An --output that cannot be made is refused before any work (here before --checkpoint is
    # even looked at), naming the flag and the path.
    (tmp_path / "afile").write_text("")
    for where, why in ((tmp_path / "afile" / "p.jsonl", "cannot create its directory"),
                       (tmp_path / "new", "is a directory"), (src, "is the --input file")):
        assert predict.main(["--checkpoint", str(tmp_path / "nothing"), "--input", str(src),
                             "--output", str(where)]) == 1
        err = capsys.readouterr().err
        assert f"--output {where}" in err and why in err
    # A write that fails once the predictions exist: they are saved elsewhere, and said where.

    def no_rename(*args):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(predict.os, "replace", no_rename)
    assert predict.main(["--checkpoint", workdir, "--input", str(src), "--output",
                         str(tmp_path / "p2.jsonl")]) == 1
    err = capsys.readouterr().err
    assert f"cannot write --output {tmp_path / 'p2.jsonl'} (No space left on device)" in err
    saved = err.rsplit("saved in ", 1)[1].strip()
    assert [json.loads(l)["line"] for l in open(saved)] == [2, 3]
    os.remove(saved)
    assert not (tmp_path / "p2.jsonl").exists() and not any(
        n.startswith(".p2.jsonl") for n in os.listdir(tmp_path))
