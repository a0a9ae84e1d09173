"""Span QA through the shared trainer on a tiny SQuAD-format file; decoding to answer text."""

import json

import numpy as np

from bertjax import train
from bertjax.tasks import base, features, readers, squad_decode
from configs import squad as squad_config
from test_finetune_classify import tiny_model, write_vocab
from test_finetune_data import tiny_tokenizer

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


def test_answers_are_whole_words_when_the_best_span_starts_or_ends_inside_one():
    tok = tiny_tokenizer()
    context = "the cats sat on the unknown mat."  # cats -> cat ##s, unknown -> un ##known
    ex = readers.QAExample("x", "q", "what sat ?", context, [], [])
    w = features.encode_qa(tok, [ex], max_seq_length=20, doc_stride=8, max_query_length=8)
    pieces = [tok.id_to_token(int(i)) for i in w.arrays["input_ids"][0]]

    def best_span(start_pieces, end_piece):
        start, end = np.full((1, 20), -5.0), np.full((1, 20), -5.0)
        for piece, logit in start_pieces.items():
            start[0, pieces.index(piece)] = logit
        end[0, pieces.index(end_piece)] = 5.0
        return squad_decode.decode_example(context, start, end, w.word_offsets, w.max_context)

    # Starts at the inner piece ##s, ends at the first piece of "unknown": whole words.
    best, nbest = best_span({"##s": 5.0, "cat": 4.0}, "un")
    assert best.text == "cats sat on the unknown"
    assert (best.start_char, best.end_char) == (4, 27)
    assert best.score == 10.0  # "cat"..."un" gives the same text, with a lower score
    texts = [a.text for a in nbest]
    assert len(texts) == len(set(texts))
    # Ends at the inner piece ##known; the "." after "mat" is a word of its own.
    best, _ = best_span({"##known": 5.0}, "##known")
    assert best.text == "unknown"
    best, _ = best_span({"##known": 5.0}, "mat")
    assert best.text == "unknown mat"
