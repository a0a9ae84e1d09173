"""Fine-tuning metrics (official definitions) and SQuAD span decoding on hand-built cases."""

import collections

import numpy as np
import pytest
from transformers.data.metrics.squad_metrics import compute_f1

from bertjax.tasks import metrics, squad_decode


def test_classification_metrics():
    y = np.array([1, 0, 1, 1, 0, 0])
    p = np.array([1, 0, 0, 1, 1, 0])
    assert metrics.accuracy(y, p) == pytest.approx(4 / 6)
    assert metrics.f1(y, p) == pytest.approx(2 / 3)  # tp 2, fp 1, fn 1
    # MCC = (tp*tn - fp*fn) / sqrt(...) = (2*2 - 1*1) / sqrt(3*3*3*3) = 1/3
    assert metrics.matthews(y, p) == pytest.approx(1 / 3)
    assert metrics.f1_macro(np.array([0, 1, 2]), np.array([0, 1, 1])) == pytest.approx(
        (1 + 2 / 3 + 0) / 3)


def test_correlations():
    x = np.array([0.0, 1.0, 2.0, 3.0])
    assert metrics.pearson(x, 2 * x + 1) == pytest.approx(1.0)
    assert metrics.spearman(x, x ** 3) == pytest.approx(1.0)
    assert metrics.pearson(x, np.ones(4)) == 0.0


def test_squad_normalisation_and_scores():
    assert metrics.normalize_answer("The  Eiffel-Tower!") == "eiffeltower"
    assert metrics.normalize_answer("an apple, a pear") == "apple pear"
    assert metrics.squad_exact("The cat", "cat.") == 1.0
    for v2 in (False, True):
        assert metrics.squad_f1("the big red house", "red house nearby",
                                version_2=v2) == pytest.approx(2 * (2 / 3) * (2 / 3) / (4 / 3))
    golds = {"q1": ["Paris", "in Paris"], "q2": [], "q3": ["London"]}
    preds = {"q1": "in paris", "q2": "", "q3": "Rome"}
    s = metrics.squad_scores(golds, preds, version_2=True)
    assert s["exact_match"] == pytest.approx(2 / 3)
    assert s["f1"] == pytest.approx(2 / 3)
    assert s["no_ans_exact_match"] == 1.0 and s["has_ans_exact_match"] == 0.5
    assert set(s) == metrics.squad_score_names(version_2=True)  # eval_metric's up-front names
    # As evaluate-v2.0.py: "the" normalises to nothing, so only "" scores on q4, but q4 had an
    # answer text and so counts in the has-answer breakdown.
    s = metrics.squad_scores(dict(golds, q4=["The"]), dict(preds, q4=""), version_2=True)
    assert s["exact_match"] == pytest.approx(3 / 4)
    assert s["has_ans_exact_match"] == pytest.approx(2 / 3) and s["no_ans_exact_match"] == 1.0
    # A non-empty answer to an unanswerable question scores 0; a missing prediction scores 0.
    assert metrics.squad_scores({"q": [""]}, {"q": "x"}, version_2=True)["f1"] == 0.0
    assert metrics.squad_scores({"q": ["x"]}, {}, version_2=False)["exact_match"] == 0.0
    # An empty gold answer text in v1.1 is an answer (it was read from the file), not an error.
    assert metrics.squad_scores({"q": [""]}, {"q": ""}, version_2=False)["exact_match"] == 1.0
    # v1.1 has no unanswerable questions.
    with pytest.raises(ValueError, match="'q2' has no gold answer"):
        metrics.squad_scores(golds, preds, version_2=False)


def v11_f1(prediction, ground_truth):
    """evaluate-v1.1.py's f1_score (its argument order), on bertjax's normalisation."""
    p = metrics.normalize_answer(prediction).split()
    g = metrics.normalize_answer(ground_truth).split()
    same = sum((collections.Counter(p) & collections.Counter(g)).values())
    if same == 0:
        return 0
    precision, recall = same / len(p), same / len(g)
    return 2 * precision * recall / (precision + recall)


@pytest.mark.parametrize("gold, pred", [("The", "a"), ("The", "the"), ("...", ""), ("the", "cat"),
                                        ("an apple", "apple"), ("Paris", "in paris")])
def test_squad_v1_f1_is_the_official_v11_one(gold, pred):
    """v1.1 scores F1 0 without a shared token, even when both answers normalise to nothing;
    v2.0 (evaluate-v2.0.py compute_f1, here transformers' port of it) calls two empties a match."""
    assert metrics.squad_f1(gold, pred, version_2=False) == pytest.approx(v11_f1(pred, gold))
    assert metrics.squad_f1(gold, pred, version_2=True) == pytest.approx(compute_f1(gold, pred))


def test_squad_scores_by_version_when_the_gold_answer_normalises_to_nothing():
    golds, preds = {"q": ["The"]}, {"q": "a"}
    # v1.1: the gold "The" is an answer like any other: exact match (both normalise to ""), F1 0.
    assert metrics.squad_scores(golds, preds, version_2=False) == {"exact_match": 1.0, "f1": 0.0}
    # v2.0: the question has no answer, and "a" is no answer. It had an answer text, so it is
    # the has-answer breakdown's (evaluate-v2.0.py gives HasAns_* whenever such questions exist).
    assert metrics.squad_scores(golds, preds, version_2=True) == {
        "exact_match": 1.0, "f1": 1.0, "has_ans_exact_match": 1.0, "has_ans_f1": 1.0}
    # v2.0 drops a gold that normalises to nothing; v1.1 keeps it (and its exact match).
    golds = {"q": ["The", "Paris"]}
    assert metrics.squad_scores(golds, preds, version_2=False) == {"exact_match": 1.0, "f1": 0.0}
    assert metrics.squad_scores(golds, preds, version_2=True) == {
        "exact_match": 0.0, "f1": 0.0, "has_ans_exact_match": 0.0, "has_ans_f1": 0.0}
    # Unanswerable questions alone: the no-answer breakdown alone.
    assert metrics.squad_scores({"q": []}, {"q": ""}, version_2=True) == {
        "exact_match": 1.0, "f1": 1.0, "no_ans_exact_match": 1.0, "no_ans_f1": 1.0}


def test_bio_entity_f1():
    assert metrics.bio_spans(["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "I-PER"]) == {
        ("PER", 0, 1), ("LOC", 3, 4), ("PER", 5, 5)}
    gold = [["B-PER", "I-PER", "O", "B-LOC"]]
    pred = [["B-PER", "O", "O", "B-LOC"]]  # PER boundary wrong
    r = metrics.entity_f1(gold, pred)
    assert r["precision"] == 0.5 and r["recall"] == 0.5 and r["f1"] == 0.5
    with pytest.raises(ValueError, match="sentence 0"):
        metrics.entity_f1(gold, [["O"]])


def _window(context, token_spans, seq_len):
    """offsets [S, 2] with the given char spans placed from position 3 on (after fake question)."""
    offsets = np.full((seq_len, 2), -1, np.int32)
    for j, span in enumerate(token_spans):
        offsets[3 + j] = span
    return offsets


CONTEXT = "aa bb cc dd ee ff"
SPANS = [(0, 2), (3, 5), (6, 8), (9, 11), (12, 14), (15, 17)]


def test_decode_picks_best_valid_span():
    s = 10
    offsets = _window(CONTEXT, SPANS, s)[None]
    max_context = (offsets[..., 0] >= 0)
    start = np.zeros((1, s)); end = np.zeros((1, s))
    start[0, 4], end[0, 5] = 5.0, 4.0   # "bb cc"
    start[0, 1], end[0, 1] = 50.0, 50.0  # question token: never an answer
    end[0, 3], start[0, 3] = 9.0, -100.0  # "aa" ends early: only spans (4.., 3) remain, invalid
    best, nbest = squad_decode.decode_example(CONTEXT, start, end, offsets, max_context,
                                              n_best_size=5, max_answer_length=5)
    assert best.text == "bb cc" and (best.start_char, best.end_char) == (3, 8)
    assert best.score == pytest.approx(9.0)
    assert abs(sum(a.probability for a in nbest) - 1) < 1e-6
    # max_answer_length=1 rules "bb cc" out.
    best, _ = squad_decode.decode_example(CONTEXT, start, end, offsets, max_context,
                                          n_best_size=5, max_answer_length=1)
    assert best.text in ("bb", "cc")


def test_stride_boundary_max_context_window_wins():
    """"dd" appears in both windows; it is at the edge of window 0 and central in window 1."""
    s = 8
    w0 = _window(CONTEXT, SPANS[0:4], s)  # aa bb cc dd  -> dd is the last token
    w1 = _window(CONTEXT, SPANS[2:6], s)  # cc dd ee ff  -> dd has context both sides
    offsets = np.stack([w0, w1])
    max_context = np.zeros((2, s), bool)
    max_context[0, 3:5] = True   # aa, bb owned by window 0
    max_context[1, 3:7] = True   # cc, dd, ee, ff owned by window 1 (more context)
    start = np.full((2, s), -5.0); end = np.full((2, s), -5.0)
    start[0, 6], end[0, 6] = 10.0, 10.0  # window 0 loves "dd" at its edge
    start[1, 4], end[1, 4] = 3.0, 3.0    # window 1 likes "dd" less
    start[1, 5], end[1, 5] = 2.0, 2.0    # and "ee" even less
    best, _ = squad_decode.decode_example(CONTEXT, start, end, offsets, max_context)
    assert best.text == "dd" and best.score == pytest.approx(6.0)  # window 1's score
    assert best.start_char == 9


def test_null_answer_and_threshold():
    s = 10
    offsets = _window(CONTEXT, SPANS, s)[None]
    max_context = offsets[..., 0] >= 0
    start = np.zeros((1, s)); end = np.zeros((1, s))
    start[0, 0], end[0, 0] = 4.0, 4.0    # null score 8
    start[0, 5], end[0, 5] = 3.0, 3.0    # best span "cc" score 6
    kw = dict(version_2=True, n_best_size=5, max_answer_length=5)
    best, nbest = squad_decode.decode_example(CONTEXT, start, end, offsets, max_context, **kw)
    assert best.text == "" and best.start_char == -1 and best.null_score == pytest.approx(8.0)
    assert any(a.text == "cc" for a in nbest)
    # null - best = 2: a threshold above 2 keeps the span.
    best, _ = squad_decode.decode_example(CONTEXT, start, end, offsets, max_context,
                                          null_threshold=2.5, **kw)
    assert best.text == "cc"
    # v1 never answers "".
    best, _ = squad_decode.decode_example(CONTEXT, start, end, offsets, max_context,
                                          n_best_size=5)
    assert best.text == "cc"


def test_decode_groups_windows_by_example():
    s = 10
    offsets = np.stack([_window(CONTEXT, SPANS, s)] * 2)
    max_context = offsets[..., 0] >= 0
    start = np.zeros((2, s)); end = np.zeros((2, s))
    start[0, 3] = end[0, 3] = 1.0   # example 0: "aa"
    start[1, 8] = end[1, 8] = 1.0   # example 1: "ff"
    answers = squad_decode.decode([CONTEXT, CONTEXT, "x"], np.array([0, 1]), start, end,
                                  offsets, max_context)
    assert [a.text for a in answers] == ["aa", "ff", ""]
