"""Span QA through the shared trainer on a tiny SQuAD-format file; decoding to answer text."""

import json
import os
import re

import numpy as np
import pytest
import transformers
from transformers.data.metrics.squad_metrics import get_final_text

from bertjax import checkpoint as ckpt_lib
from bertjax import train
from bertjax.model import ConfigError
from bertjax.data import tokenizer as tokenizer_lib
from bertjax.tasks import base, features, readers, squad_decode
from configs import squad as squad_config
from test_finetune_classify import tiny_model, write_vocab

CONTEXT = "the cat sat on the mat . the dog ran to the big red house ."


def squad_file(path, n):
    qas = []
    for i in range(n):
        answer = ["cat", "dog", "big red house"][i % 3]
        qas.append({"id": f"q{i}", "question": "where is the " + ["cat", "dog", "house"][i % 3],
                    "answers": [{"text": answer, "answer_start": CONTEXT.index(answer)}]})
    path.write_text(json.dumps({"data": [{"title": "t", "paragraphs": [
        {"context": CONTEXT, "qas": qas}]}]}))
    return str(path)


def test_squad_trains_and_decodes(tmp_path):
    cfg = squad_config.get_config("v1")
    tiny_model(cfg)
    cfg.data.tfds_name = ""
    cfg.data.tokenizer = write_vocab(tmp_path)
    cfg.data.max_seq_length = 16
    cfg.squad.update(doc_stride=4, max_query_length=5)
    cfg.data.train = squad_file(tmp_path / "train.json", 32)
    cfg.data.validation = squad_file(tmp_path / "dev.json", 6)
    cfg.update(batch_size=8, num_train_steps=4, log_every_steps=2, eval_every_steps=4,
               checkpoint_every_steps=4, progress_bar=False)
    cfg.optimizer.warmup_steps = 1
    summary = train.train_and_evaluate(cfg, str(tmp_path / "run"))
    assert summary["step"] == 4 and np.isfinite(summary["eval"]["eval/loss"])
    names = base.get_task("span_qa")(cfg).eval_metric_names()  # what eval_metric is checked on
    assert {k.removeprefix("eval/") for k in summary["eval"]} == names

    task = base.get_task("span_qa")(cfg)
    data = task.data(cfg, None, 0, 1)
    batches = list(data.eval_batches())
    w = task.eval_windows
    assert w.arrays["input_ids"].shape[0] > len(task.eval_examples)  # several windows each
    # Logits that point at the gold positions decode to the gold text (max-context windows).
    preds = []
    for b in batches:
        start = np.full(b["input_ids"].shape, -10.0)
        end = np.full(b["input_ids"].shape, -10.0)
        rows = np.arange(len(start))
        start[rows, b["start_positions"]] = 10.0
        end[rows, b["end_positions"]] = 10.0
        preds.append({"start_logits": start, "end_logits": end})
    scores = task.evaluate_predictions(preds, batches)
    assert scores["exact_match"] == 1.0 and scores["f1"] == 1.0


# A context whose answers can start or end inside a word: 1990 ##s, cat ##s, un ##known.
QA_CONTEXT = "It happened in the 1990s, in Paris; the unknown cats sat."
QA_VOCAB = list(tokenizer_lib.SPECIAL_TOKENS) + (
    "it happened in the 1990 ##s , paris ; un ##known cat sat . when ?".split())


def qa_window(tmp_path):
    """-> (vocab.txt path, the one window of QA_CONTEXT, its pieces)."""
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(QA_VOCAB) + "\n")
    tok = tokenizer_lib.load_tokenizer(str(vocab), lowercase=True)
    ex = readers.QAExample("x", "q", "when ?", QA_CONTEXT, [], [])
    w = features.encode_qa(tok, [ex], max_seq_length=24, doc_stride=8, max_query_length=8)
    assert w.arrays["input_ids"].shape[0] == 1  # the whole context fits one window
    pieces = [tok.id_to_token(int(i)) for i in w.arrays["input_ids"][0]]
    return str(vocab), w, pieces


def decode_span(w, i, j):
    """The best answer when the logits point at start piece i and end piece j."""
    start, end = np.full((1, 24), -5.0), np.full((1, 24), -5.0)
    start[0, i], end[0, j] = 5.0, 5.0
    return squad_decode.decode_example(QA_CONTEXT, start, end, w.offsets, w.max_context)[0]


def test_answer_text_runs_from_the_start_piece_to_the_end_piece(tmp_path):
    _, w, pieces = qa_window(tmp_path)
    at = pieces.index
    # Ends on "1990" of "1990s": the year, as run_squad and run_qa answer (not the word "1990s").
    best = decode_span(w, at("1990"), at("1990"))
    assert best.text == "1990" and (best.start_char, best.end_char) == (19, 23)
    assert decode_span(w, at("the"), at("##s")).text == "the 1990s"
    # Starts on "##s" of "cats"; ends on "un" of "unknown"; punctuation is a piece of its own.
    assert decode_span(w, len(pieces) - 1 - pieces[::-1].index("##s"), at("sat")).text == "s sat"
    assert decode_span(w, at("paris"), at("un")).text == "Paris; the un"
    assert decode_span(w, at("##known"), at("##known")).text == "known"


def test_answer_text_matches_hugging_face_and_google_rules(tmp_path):
    """Every span of the window decodes to HF run_qa's text (context[offsets of start and end
    piece], utils_qa.postprocess_qa_predictions), which is also google-research/bert's
    get_final_text of the pieces projected onto the whitespace words they cover."""
    vocab, w, pieces = qa_window(tmp_path)
    hf_tok = transformers.BertTokenizerFast(vocab_file=vocab, do_lower_case=True)
    enc = hf_tok("when ?", QA_CONTEXT, return_offsets_mapping=True)
    assert enc["input_ids"] == w.arrays["input_ids"][0, : len(enc["input_ids"])].tolist()
    context_pieces = [k for k, seq in enumerate(enc.sequence_ids()) if seq == 1]
    assert len(context_pieces) == 17
    hf_offsets = enc["offset_mapping"]
    # run_squad's doc_tokens: the whitespace words, as character spans.
    words = [(m.start(), m.end()) for m in re.finditer(r"\S+", QA_CONTEXT)]
    for i in context_pieces:
        for j in context_pieces:
            if j < i:
                continue
            hf_text = QA_CONTEXT[hf_offsets[i][0]: hf_offsets[j][1]]
            pred_text = " ".join(pieces[i: j + 1]).replace(" ##", "").replace("##", "")
            covered = [QA_CONTEXT[a:b] for a, b in words
                       if a < hf_offsets[j][1] and b > hf_offsets[i][0]]
            google_text = get_final_text(pred_text, " ".join(covered), do_lower_case=True)
            assert decode_span(w, i, j).text == hf_text == google_text, (i, j)


def test_window_options_that_cannot_work_fail_validation_naming_the_field(caplog):
    """doc_stride=0 used to loop forever building windows; each bad option is named up front."""
    from bertjax.model import ConfigError
    import pytest

    def check(match, **squad):
        cfg = squad_config.get_config("v1")
        cfg.data.max_seq_length = 32
        cfg.squad.update(doc_stride=8, max_query_length=10)
        cfg.squad.update(squad)
        task = base.get_task("span_qa")(cfg)
        if match is None:
            task.validate(cfg)
            return
        with pytest.raises(ConfigError, match=match):
            task.validate(cfg)

    check(None)
    check(None, doc_stride=19)  # 32 - 10 - 3: windows side by side
    check(r"config.squad.doc_stride must be >= 1, got 0 \(windows would never advance\)",
          doc_stride=0)
    check(None, doc_stride=20)  # more than a window holds: a warning, as the reference runs it
    assert "config.squad.doc_stride=20 exceeds the 19 context tokens" in caplog.text
    check(r"config.squad.max_query_length must be >= 1, got 0", max_query_length=0)
    check(r"config.data.max_seq_length=32 leaves no room for the context after "
          r"config.squad.max_query_length=29", max_query_length=29)
    check(r"config.squad.n_best_size must be >= 1", n_best_size=0)
    check(r"config.squad.max_answer_length must be >= 1", max_answer_length=-1)
    with pytest.raises(ValueError, match="doc_stride must be >= 1"):  # the library guard
        features.encode_qa(None, [], max_seq_length=32, doc_stride=0, max_query_length=10)


def test_a_squad_file_without_questions_is_an_error_naming_it(tmp_path):
    import pytest
    cfg = squad_config.get_config("v1")
    cfg.data.update(tfds_name="", tokenizer=write_vocab(tmp_path), max_seq_length=16,
                    train=squad_file(tmp_path / "train.json", 4),
                    validation=squad_file(tmp_path / "dev.json", 0))
    cfg.squad.update(doc_stride=4, max_query_length=5)
    with pytest.raises(readers.DataError, match=r"config.data.validation='.*dev.json' has no "
                                                r"examples"):
        base.get_task("span_qa")(cfg).data(cfg, None, 0, 1)


def test_eval_metric_names_follow_the_squad_version():
    import pytest
    from bertjax import best
    from bertjax.model import ConfigError
    for version, ok in (("v1", False), ("v2", True)):
        cfg = squad_config.get_config(version)
        cfg.eval_metric = "has_ans_f1"  # the v2.0 breakdown: no such score under v1.1
        names = base.get_task("span_qa")(cfg).eval_metric_names()
        if ok:
            best.validate(cfg, names)
            continue
        with pytest.raises(ConfigError, match=r"config.eval_metric='has_ans_f1' is not among"):
            best.validate(cfg, names)


def _v2_config(tmp_path, dev_answerable: bool, metric: str):
    """SQuAD v2.0 on tiny files: train answerable, dev all answerable or all unanswerable."""
    cfg = squad_config.get_config("v2")
    tiny_model(cfg)
    dev = squad_file(tmp_path / "dev.json", 3)
    if not dev_answerable:
        text = json.loads((tmp_path / "dev.json").read_text())
        for qa in text["data"][0]["paragraphs"][0]["qas"]:
            qa.update(answers=[], is_impossible=True)
        (tmp_path / "dev.json").write_text(json.dumps(text))
    cfg.data.update(tfds_name="", tokenizer=write_vocab(tmp_path), max_seq_length=16,
                    train=squad_file(tmp_path / "train.json", 8), validation=dev)
    cfg.squad.update(doc_stride=4, max_query_length=5)
    cfg.update(batch_size=8, num_train_steps=2, eval_every_steps=1, progress_bar=False,
               eval_metric=metric)
    return cfg


@pytest.mark.parametrize("metric,dev_answerable,kind", [
    ("no_ans_f1", True, "unanswerable"), ("eval/no_ans_exact_match", True, "unanswerable"),
    ("has_ans_f1", False, "answerable"), ("has_ans_exact_match", False, "answerable")])
def test_a_v2_breakdown_metric_needs_dev_questions_of_its_kind(tmp_path, metric, dev_answerable,
                                                                kind):
    """Refused when the dev data is read, before any training step, naming the metric and the
    kind of question the dev set lacks (it used to fail, or never update, at the first eval)."""
    cfg = _v2_config(tmp_path, dev_answerable, metric)
    with pytest.raises(ConfigError, match=(
            rf"config.eval_metric='{metric}' scores the dev set's {kind} questions, but "
            rf"config.data.validation='.*dev.json' has no {kind} question")):
        train.train_and_evaluate(cfg, str(tmp_path / "run"))
    # No training step was taken: no checkpoint, no metrics logged.
    assert not ckpt_lib.has_checkpoint(str(tmp_path / "run"))
    assert not os.path.exists(tmp_path / "run" / "metrics.jsonl")


def test_a_v2_breakdown_is_logged_for_the_kind_the_dev_set_has(tmp_path):
    """As evaluate-v2.0.py: HasAns scores with answerable questions alone (it was logged only
    when the dev set had both kinds)."""
    cfg = _v2_config(tmp_path, dev_answerable=True, metric="has_ans_f1")
    summary = train.train_and_evaluate(cfg, str(tmp_path / "run"))
    assert summary["best"]["metric"] == "eval/has_ans_f1"
    assert summary["eval"]["eval/has_ans_f1"] == summary["eval"]["eval/f1"]
    assert not any(k.startswith("eval/no_ans") for k in summary["eval"])
