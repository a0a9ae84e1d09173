"""Fine-tuning metrics on host numpy arrays, with their official definitions.

Classification metrics come from scikit-learn, correlations from scipy. SQuAD exact match and F1
follow the official evaluate-v1.1.py or evaluate-v2.0.py, by version: answers are normalised
(lowercase, punctuation and the articles a/an/the removed, whitespace collapsed) and each prediction
is scored against its best gold answer. v2.0 alone reads an answer that normalises to nothing as
no answer: it drops such gold answers, an unanswerable question's gold answers are [""], and two
empty answers have F1 1; v1.1 scores F1 0 without a shared token, even when both normalise to
nothing (gold "The", prediction "a"). Entity F1 for
BIO/IOB2 tagging is the CoNLL-2000 definition (an entity counts only if its type and both
boundaries match), written here rather than pulling in seqeval.

All scores are returned as fractions in [0, 1] (correlations in [-1, 1]).
"""

from __future__ import annotations

import collections
import re
import string
from typing import Callable, Sequence

import numpy as np
import scipy.stats
from sklearn import metrics as skm


def accuracy(labels: np.ndarray, preds: np.ndarray) -> float:
    """labels, preds: [N] int."""
    return float(skm.accuracy_score(labels, preds))


def f1(labels: np.ndarray, preds: np.ndarray) -> float:
    """Binary F1 of the positive class 1 (GLUE's MRPC/QQP F1)."""
    return float(skm.f1_score(labels, preds, average="binary", pos_label=1, zero_division=0))


def f1_macro(labels: np.ndarray, preds: np.ndarray) -> float:
    return float(skm.f1_score(labels, preds, average="macro", zero_division=0))


def f1_micro(labels: np.ndarray, preds: np.ndarray) -> float:
    return float(skm.f1_score(labels, preds, average="micro", zero_division=0))


def matthews(labels: np.ndarray, preds: np.ndarray) -> float:
    """Matthews correlation coefficient (GLUE's CoLA metric)."""
    return float(skm.matthews_corrcoef(labels, preds))


def pearson(labels: np.ndarray, preds: np.ndarray) -> float:
    """labels, preds: [N] float (GLUE's STS-B metric, with spearman)."""
    if np.std(labels) == 0 or np.std(preds) == 0:
        return 0.0  # undefined for a constant vector; 0 rather than NaN so selection still works
    return float(scipy.stats.pearsonr(labels, preds)[0])


def spearman(labels: np.ndarray, preds: np.ndarray) -> float:
    if np.std(labels) == 0 or np.std(preds) == 0:
        return 0.0
    return float(scipy.stats.spearmanr(labels, preds)[0])


def multilabel_f1_micro(labels: np.ndarray, preds: np.ndarray) -> float:
    """labels, preds: [N, C] {0, 1} indicator matrices."""
    return float(skm.f1_score(labels, preds, average="micro", zero_division=0))


def multilabel_f1_macro(labels: np.ndarray, preds: np.ndarray) -> float:
    return float(skm.f1_score(labels, preds, average="macro", zero_division=0))


def subset_accuracy(labels: np.ndarray, preds: np.ndarray) -> float:
    """Fraction of examples whose whole label set is predicted exactly."""
    return float(np.mean(np.all(labels == preds, axis=-1)))


# Metrics on (labels, predictions) that a config can name in `config.metrics`.
CLASSIFICATION: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "accuracy": accuracy, "f1": f1, "f1_macro": f1_macro, "f1_micro": f1_micro,
    "matthews": matthews,
}
# Defined for two classes only (sklearn raises on 3+): tasks refuse them on more labels.
BINARY_ONLY = frozenset({"f1"})
REGRESSION = {"pearson": pearson, "spearman": spearman}
MULTILABEL = {"f1_micro": multilabel_f1_micro, "f1_macro": multilabel_f1_macro,
              "subset_accuracy": subset_accuracy}


# --------------------------------------------------------------------------------------------
# SQuAD

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """The official SQuAD normalisation: lower, drop punctuation and articles, fix whitespace."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def squad_exact(gold: str, pred: str) -> float:
    return float(normalize_answer(gold) == normalize_answer(pred))


def squad_f1(gold: str, pred: str, *, version_2: bool) -> float:
    """Bag-of-tokens F1 of the normalised strings.

    version_2: two empty answers agree (F1 1; evaluate-v2.0.py). Otherwise no shared token is F1 0,
    empty answers included (evaluate-v1.1.py: gold "The", prediction "a" scores 0).
    """
    gold_tokens, pred_tokens = normalize_answer(gold).split(), normalize_answer(pred).split()
    if version_2 and (not gold_tokens or not pred_tokens):
        return float(gold_tokens == pred_tokens)
    common = collections.Counter(gold_tokens) & collections.Counter(pred_tokens)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(pred_tokens), overlap / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


SQUAD_BREAKDOWN = ("has_ans", "no_ans")  # squad_scores' v2.0 breakdowns


def squad_scores(golds: dict[str, Sequence[str]], preds: dict[str, str], *,
                 version_2: bool) -> dict[str, float]:
    """golds: id -> gold answer texts; preds: id -> predicted text.

    version_2: SQuAD v2.0 scoring (evaluate-v2.0.py): gold answers that normalise to nothing are
    dropped, a question left without any ([] or [""]) scores only "" (the breakdown, as the
    official script's, counts it as has-answer when it had any answer: only [] is no-answer).
    Otherwise v1.1 scoring (evaluate-v1.1.py): every gold answer counts as given, and a question
    without one is an error (v1.1 has no unanswerable questions).
    Returns {"exact_match", "f1"} averaged over every gold id (a missing prediction scores 0),
    plus, under v2.0, the "has_ans_*" / "no_ans_*" breakdown of each kind of question present
    (as evaluate-v2.0.py's HasAns_* / NoAns_*).
    """
    per = {"all": ([], [])}
    for qid, answers in golds.items():
        # evaluate-v2.0.py's breakdown: a question with any gold answer is has-answer, even one
        # whose text normalises to nothing ("the"), which then scores as unanswerable.
        kind = "has_ans" if answers else "no_ans"
        if version_2:
            answers = [a for a in answers if normalize_answer(a)] or [""]
        elif not answers:
            raise ValueError(f"squad_scores: question {qid!r} has no gold answer; unanswerable "
                             "questions are SQuAD v2.0 (version_2=True)")
        pred = preds.get(qid)
        em = 0.0 if pred is None else max(squad_exact(a, pred) for a in answers)
        f = 0.0 if pred is None else max(squad_f1(a, pred, version_2=version_2) for a in answers)
        for key in ("all", kind):
            per.setdefault(key, ([], []))
            per[key][0].append(em)
            per[key][1].append(f)
    out = {"exact_match": float(np.mean(per["all"][0])) if per["all"][0] else 0.0,
           "f1": float(np.mean(per["all"][1])) if per["all"][1] else 0.0}
    for kind in SQUAD_BREAKDOWN if version_2 else ():
        if kind in per:
            out[f"{kind}_exact_match"] = float(np.mean(per[kind][0]))
            out[f"{kind}_f1"] = float(np.mean(per[kind][1]))
    return out


def squad_score_names(version_2: bool) -> frozenset[str]:
    """Every key squad_scores can return: the breakdowns only under v2.0 (v1.1 has no
    unanswerable questions), and there each only when the dev set has questions of its kind
    (span_qa checks that for config.eval_metric when it reads the dev set)."""
    names = {"exact_match", "f1"}
    if version_2:
        names |= {f"{kind}_{m}" for kind in SQUAD_BREAKDOWN for m in ("exact_match", "f1")}
    return frozenset(names)


# --------------------------------------------------------------------------------------------
# Entity-level F1 for BIO / IOB2 tags


def bio_spans(tags: Sequence[str]) -> set[tuple[str, int, int]]:
    """Entities (type, first, last) in a tag sequence, CoNLL style.

    "B-X" opens an entity, "I-X" continues one of type X (or opens one when it follows a tag of
    another type, as conlleval does), "O" or anything untyped closes it.
    """
    spans, kind, start = set(), None, 0
    for i, tag in enumerate(list(tags) + ["O"]):
        prefix, _, tag_type = tag.partition("-")
        if not tag_type:
            prefix, tag_type = "O", None
        continues = prefix == "I" and tag_type == kind
        if kind is not None and not continues:
            spans.add((kind, start, i - 1))
            kind = None
        if prefix in ("B", "I") and not continues:
            kind, start = tag_type, i
    return spans


def entity_f1(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict[str, float]:
    """gold, pred: per sentence, one tag per word. Micro-averaged entity precision/recall/F1."""
    if len(gold) != len(pred):
        raise ValueError(f"entity_f1: {len(gold)} gold sentences but {len(pred)} predicted")
    tp = n_gold = n_pred = 0
    for i, (g, p) in enumerate(zip(gold, pred)):
        if len(g) != len(p):
            raise ValueError(f"entity_f1: sentence {i} has {len(g)} gold tags, {len(p)} predicted")
        gs, ps = bio_spans(g), bio_spans(p)
        tp += len(gs & ps)
        n_gold += len(gs)
        n_pred += len(ps)
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_gold if n_gold else 0.0
    f = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f}
