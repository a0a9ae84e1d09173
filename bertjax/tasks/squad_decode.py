"""Start/end logits over doc-stride windows -> answer text per question (SQuAD v1.1 and v2.0).

Per window, the n_best_size highest start and end logits are paired; a pair is a candidate span
when both tokens lie in the context, start <= end, the span has at most max_answer_length tokens,
and the window is the start token's max-context window (so an answer near a window edge is
judged where it has the most context). A span's text is the context from the start token's first
character to the end token's last character (offsets, see features.encode_qa): Hugging Face run_qa's
rule (utils_qa.postprocess_qa_predictions). google-research/bert run_squad's get_final_text gives
the same text except where it cannot align the pieces with the text (an [UNK] piece, accents that
change length), where it falls back to the whole whitespace words. A span may start or end inside a
word: one ending on "1990" of "1990s" answers "1990". Candidates with the same character span keep
their best score. Candidates from all windows of a question are ranked by start_logit + end_logit.
The null score is the smallest start[0] + end[0] ([CLS]) over the windows; in v2.0 mode the answer
is "" when null_score - best_span_score > null_threshold.

Shapes: W windows, S sequence.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Sequence

import numpy as np


@dataclasses.dataclass
class Answer:
    text: str  # "" for no answer
    score: float  # start_logit + end_logit of the span (the null score for "")
    start_char: int  # character offsets in the context, end exclusive; -1 for no answer
    end_char: int
    probability: float  # softmax over the n-best candidates (null included in v2.0)
    null_score: float


def _top(logits: np.ndarray, n: int) -> np.ndarray:
    return np.argsort(-logits, kind="stable")[:n]


def decode_example(context: str, start_logits: np.ndarray, end_logits: np.ndarray,
                   offsets: np.ndarray, max_context: np.ndarray, *, n_best_size: int = 20,
                   max_answer_length: int = 30, version_2: bool = False,
                   null_threshold: float = 0.0) -> tuple[Answer, list[Answer]]:
    """One question's windows -> (best answer, n-best list).

    start_logits, end_logits: [W, S]; offsets: [W, S, 2] char span of each token in the context
    (-1 outside it); max_context: [W, S] bool.
    """
    candidates = []  # (score, start_char, end_char)
    null_score = np.inf
    for w in range(start_logits.shape[0]):
        starts, ends = start_logits[w], end_logits[w]
        null_score = min(null_score, float(starts[0] + ends[0]))
        for i in _top(starts, n_best_size):
            if offsets[w, i, 0] < 0 or not max_context[w, i]:
                continue
            for j in _top(ends, n_best_size):
                if offsets[w, j, 0] < 0 or j < i or j - i + 1 > max_answer_length:
                    continue
                candidates.append((float(starts[i] + ends[j]), int(offsets[w, i, 0]),
                                   int(offsets[w, j, 1])))
    # Keep the best-scored candidate per distinct character span, then the n best.
    best_by_span: dict[tuple[int, int], float] = {}
    for score, a, b in candidates:
        best_by_span[(a, b)] = max(score, best_by_span.get((a, b), -np.inf))
    ranked = sorted(best_by_span.items(), key=lambda kv: (-kv[1], kv[0]))[:n_best_size]
    entries = [(score, a, b) for (a, b), score in ranked]
    if version_2:
        entries.append((null_score, -1, -1))
    if not entries:  # v1 with no valid span at all: an empty answer rather than a crash
        entries = [(null_score, -1, -1)]
    scores = np.array([e[0] for e in entries])
    probs = np.exp(scores - scores.max())
    probs /= probs.sum()
    nbest = [Answer(context[a:b] if a >= 0 else "", s, a, b, float(p), null_score)
             for (s, a, b), p in zip(entries, probs)]
    nbest.sort(key=lambda x: -x.score)
    spans = [x for x in nbest if x.start_char >= 0]
    if not spans:
        return nbest[0], nbest
    best = spans[0]
    if version_2 and null_score - best.score > null_threshold:
        best = next(x for x in nbest if x.start_char < 0)
    return best, nbest


def decode(contexts: Sequence[str], example_index: np.ndarray, start_logits: np.ndarray,
           end_logits: np.ndarray, offsets: np.ndarray, max_context: np.ndarray,
           **kwargs) -> list[Answer]:
    """All windows -> one Answer per example (examples without a window get "").

    contexts: per example; example_index: [W] which example each window belongs to;
    start_logits, end_logits: [W, S]; offsets: [W, S, 2]; max_context: [W, S].
    kwargs: n_best_size, max_answer_length, version_2, null_threshold (see decode_example).
    """
    windows = collections.defaultdict(list)
    for w, e in enumerate(np.asarray(example_index).tolist()):
        windows[e].append(w)
    out = []
    for e, context in enumerate(contexts):
        ws = windows.get(e)
        if not ws:
            out.append(Answer("", 0.0, -1, -1, 1.0, 0.0))
            continue
        best, _ = decode_example(context, start_logits[ws], end_logits[ws], offsets[ws],
                                 max_context[ws], **kwargs)
        out.append(best)
    return out
