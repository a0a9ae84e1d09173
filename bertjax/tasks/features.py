"""Examples -> fixed-shape model features (numpy), for each fine-tuning task family.

All features are padded to max_seq_length S so every batch has one shape (nothing recompiles):
input_ids, token_type_ids, attention_mask: [N, S] int32.

Token classification: each word's label goes on its first WordPiece; the other pieces (and the
special tokens, and padding) get label weight 0. `word_index` [N, S] (-1 = not a first piece)
maps predictions back to words.

Extractive QA (google-research/bert run_squad semantics): [CLS] question [SEP] context-window [SEP],
the question cut to max_query_length tokens, the context split into windows of the remaining room
that start doc_stride tokens apart. Per window: `offsets` [S, 2] (character span of each token,
a WordPiece, in the context; -1 outside the context), `max_context` [S] (the window where a token
has the most context on both sides is the one allowed to predict spans starting there), and
start/end positions of the answer: the first and last pieces that overlap its characters (0 = [CLS]
when the window has no answer or holds only part of it).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np
import tokenizers

from bertjax.tasks.readers import DataError, Example, QAExample


def _special(tok: tokenizers.Tokenizer, token: str) -> int:
    i = tok.token_to_id(token)
    if i is None:
        raise DataError(f"the tokenizer has no {token} token")
    return i


def _pad_id(tok: tokenizers.Tokenizer) -> int:
    i = tok.token_to_id("[PAD]")
    return 0 if i is None else i


def _truncate_pair(a: list[int], b: list[int], room: int) -> tuple[list[int], list[int]]:
    """google-research/bert's rule: drop from the end of the longer segment until both fit."""
    a, b = list(a), list(b)
    while len(a) + len(b) > room:
        (a if len(a) > len(b) else b).pop()
    return a, b


def encode_texts(tok: tokenizers.Tokenizer, examples: Sequence[Example],
                 max_seq_length: int) -> dict[str, np.ndarray]:
    """Single texts or pairs -> {input_ids, token_type_ids, attention_mask}: [N, S] int32."""
    n, s = len(examples), max_seq_length
    ids = np.full((n, s), _pad_id(tok), np.int32)
    types = np.zeros((n, s), np.int32)
    mask = np.zeros((n, s), np.int32)
    cls_id, sep_id = _special(tok, "[CLS]"), _special(tok, "[SEP]")
    firsts = tok.encode_batch([e.text for e in examples], add_special_tokens=False)
    pairs = [e.pair for e in examples]
    seconds = (tok.encode_batch([p or "" for p in pairs], add_special_tokens=False)
               if any(p is not None for p in pairs) else [None] * n)
    for i, (a, b) in enumerate(zip(firsts, seconds)):
        if b is None or pairs[i] is None:
            a_ids, b_ids = a.ids[: s - 2], None
        else:
            a_ids, b_ids = _truncate_pair(a.ids, b.ids, s - 3)
        row = [cls_id] + a_ids + [sep_id]
        type_row = [0] * len(row)
        if b_ids is not None:
            row += b_ids + [sep_id]
            type_row += [1] * (len(b_ids) + 1)
        ids[i, : len(row)] = row
        types[i, : len(row)] = type_row
        mask[i, : len(row)] = 1
    return {"input_ids": ids, "token_type_ids": types, "attention_mask": mask}


def encode_tagging(tok: tokenizers.Tokenizer, examples: Sequence[Example],
                   max_seq_length: int) -> dict[str, np.ndarray]:
    """Word lists (+ per-word label ids) -> encoder inputs plus

    labels [N, S] int32 (0 where unlabelled), label_weights [N, S] float32 (1 on first pieces
    of labelled words), word_index [N, S] int32 (word number on a first piece, else -1),
    num_words [N] int32 (words in the example; those cut by truncation have no first piece).
    """
    n, s = len(examples), max_seq_length
    cls_id, sep_id = _special(tok, "[CLS]"), _special(tok, "[SEP]")
    out = {"input_ids": np.full((n, s), _pad_id(tok), np.int32),
           "token_type_ids": np.zeros((n, s), np.int32),
           "attention_mask": np.zeros((n, s), np.int32),
           "labels": np.zeros((n, s), np.int32),
           "label_weights": np.zeros((n, s), np.float32),
           "word_index": np.full((n, s), -1, np.int32),
           "num_words": np.array([len(e.text) for e in examples], np.int32)}
    encodings = tok.encode_batch([e.text for e in examples], is_pretokenized=True,
                                 add_special_tokens=False) if examples else []
    for i, (example, enc) in enumerate(zip(examples, encodings)):
        piece_ids, word_ids = enc.ids[: s - 2], enc.word_ids[: s - 2]
        row = [cls_id] + piece_ids + [sep_id]
        out["input_ids"][i, : len(row)] = row
        out["attention_mask"][i, : len(row)] = 1
        previous = None
        for j, w in enumerate(word_ids, start=1):
            if w is not None and w != previous:
                out["word_index"][i, j] = w
                if example.label is not None:
                    out["labels"][i, j] = example.label[w]
                    out["label_weights"][i, j] = 1.0
            previous = w
    return out


def encode_tagging_windows(tok: tokenizers.Tokenizer, examples: Sequence[Example],
                           max_seq_length: int) -> dict[str, np.ndarray]:
    """Word lists -> one feature row per window of S-2 WordPieces, for prediction: unlike
    `encode_tagging`, nothing is cut, so every word that has a piece is seen by the model.

    A text that fits is one window (the row encode_tagging makes). A longer one is split as
    SQuAD's contexts are: windows of S-2 pieces starting half a window apart, and each word is read from the window where its first piece has the most context
    (`_max_context_owner`). Returns input_ids, token_type_ids, attention_mask and word_index
    [W, S] (the word number on the first pieces a window owns, else -1), example_index [W].
    A word with no piece (only characters the tokenizer drops) is in no window.
    """
    s = max_seq_length
    room = s - 2
    if room < 1:
        raise DataError(f"max_seq_length={s} leaves no room for a word after [CLS] and [SEP]")
    stride = max(1, room // 2)
    cls_id, sep_id, pad_id = _special(tok, "[CLS]"), _special(tok, "[SEP]"), _pad_id(tok)
    encodings = tok.encode_batch([e.text for e in examples], is_pretokenized=True,
                                 add_special_tokens=False) if examples else []
    rows: dict[str, list] = {k: [] for k in ("input_ids", "attention_mask", "word_index",
                                             "example_index")}
    for index, enc in enumerate(encodings):
        ids, word_ids = enc.ids, enc.word_ids
        firsts = [w is not None and (j == 0 or word_ids[j - 1] != w)
                  for j, w in enumerate(word_ids)]
        spans = _window_spans(len(ids), room, stride)
        owner = _max_context_owner(spans, len(ids))
        for w, (start, length) in enumerate(spans):
            row = np.full(s, pad_id, np.int32)
            row[: length + 2] = [cls_id] + ids[start: start + length] + [sep_id]
            mask = np.zeros(s, np.int32)
            mask[: length + 2] = 1
            word_index = np.full(s, -1, np.int32)
            for j in range(start, start + length):
                if firsts[j] and owner[j] == w:
                    word_index[j - start + 1] = word_ids[j]
            for key, value in (("input_ids", row), ("attention_mask", mask),
                               ("word_index", word_index), ("example_index", index)):
                rows[key].append(value)
    out = {k: np.asarray(v, np.int32).reshape((-1,) + ((s,) if k != "example_index" else ()))
           for k, v in rows.items()}
    out["token_type_ids"] = np.zeros_like(out["input_ids"])
    return out


def words_from_tokens(pred: np.ndarray, word_index: np.ndarray, num_words: int,
                      fill: int) -> list[int]:
    """pred, word_index: [S] -> one label id per word (`fill` for words cut by truncation)."""
    labels = [fill] * int(num_words)
    for p, w in zip(pred.tolist(), word_index.tolist()):
        if 0 <= w < num_words:
            labels[w] = p
    return labels


# --------------------------------------------------------------------------------------------
# Extractive QA


@dataclasses.dataclass
class QAWindows:
    """The doc-stride windows of many examples; arrays have one row per window."""
    arrays: dict[str, np.ndarray]  # input_ids/token_type_ids/attention_mask [W, S],
    #   start_positions/end_positions [W], example_index [W]
    offsets: np.ndarray  # [W, S, 2] int32 char span of each token in the context; -1 outside it
    max_context: np.ndarray  # [W, S] bool


def _window_spans(n_tokens: int, room: int, stride: int) -> list[tuple[int, int]]:
    """Windows (start, length) of at most `room` tokens over n_tokens, starting min(length,
    stride) apart (google-research/bert's doc spans): one window, maybe empty, when all fit."""
    spans, start = [], 0
    while True:
        length = min(n_tokens - start, room)
        spans.append((start, length))
        if start + length >= n_tokens:
            return spans
        start += min(length, stride)


def _max_context_owner(spans: list[tuple[int, int]], n_tokens: int) -> np.ndarray:
    """spans: windows (start, length) -> [n_tokens] index of each token's max-context window.

    A token's score in a window is min(tokens left of it, tokens right of it) + 0.01 * length;
    ties go to the earliest window (google-research/bert's _check_is_max_context).
    """
    best_score = np.full(n_tokens, -np.inf)
    owner = np.zeros(n_tokens, np.int64)
    for w, (start, length) in enumerate(spans):
        pos = np.arange(start, start + length)
        score = np.minimum(pos - start, start + length - 1 - pos) + 0.01 * length
        better = score > best_score[pos]
        best_score[pos[better]] = score[better]
        owner[pos[better]] = w
    return owner


def encode_qa(tok: tokenizers.Tokenizer, examples: Sequence[QAExample], *, max_seq_length: int,
              doc_stride: int, max_query_length: int) -> QAWindows:
    """QA examples -> one feature row per (example, context window); see the module docstring.

    The first gold answer is the training target (SQuAD train sets have one answer).
    """
    s = max_seq_length
    if doc_stride < 1:  # the windows would never advance (span_qa's validate names the field)
        raise ValueError(f"doc_stride must be >= 1, got {doc_stride}")
    cls_id, sep_id, pad_id = _special(tok, "[CLS]"), _special(tok, "[SEP]"), _pad_id(tok)
    questions = tok.encode_batch([e.question for e in examples], add_special_tokens=False)
    contexts = tok.encode_batch([e.context for e in examples], add_special_tokens=False)
    rows: dict[str, list] = {k: [] for k in ("input_ids", "token_type_ids", "attention_mask",
                                             "start_positions", "end_positions", "example_index")}
    all_offsets, all_max_context = [], []
    for index, (example, q_enc, c_enc) in enumerate(zip(examples, questions, contexts)):
        q_ids = q_enc.ids[:max_query_length]
        room = s - len(q_ids) - 3
        if room <= 0:
            raise DataError(f"{example.where}: max_seq_length={s} leaves no room for the context "
                            f"after a {len(q_ids)}-token question (lower max_query_length)")
        c_ids, c_offsets = c_enc.ids, c_enc.offsets
        # The answer as a token span of the whole context (None: no answer).
        answer = None
        if example.answer_texts:
            char_start = example.answer_starts[0]
            char_end = char_start + len(example.answer_texts[0])
            inside = [j for j, (a, b) in enumerate(c_offsets) if a < char_end and b > char_start]
            if inside:
                answer = (inside[0], inside[-1])
        spans = _window_spans(len(c_ids), room, doc_stride)
        owner = _max_context_owner(spans, len(c_ids))
        for w, (start, length) in enumerate(spans):
            ids = [cls_id] + q_ids + [sep_id] + c_ids[start: start + length] + [sep_id]
            first = len(q_ids) + 2  # position of the window's first context token
            offsets = np.full((s, 2), -1, np.int32)
            offsets[first: first + length] = np.asarray(c_offsets[start: start + length],
                                                        np.int32).reshape(-1, 2)
            best = np.zeros(s, bool)
            best[first: first + length] = owner[start: start + length] == w
            start_pos = end_pos = 0
            if answer is not None and start <= answer[0] and answer[1] < start + length:
                start_pos, end_pos = first + answer[0] - start, first + answer[1] - start
            padded = np.full(s, pad_id, np.int32)
            padded[: len(ids)] = ids
            types = np.zeros(s, np.int32)
            types[first: len(ids)] = 1
            mask = np.zeros(s, np.int32)
            mask[: len(ids)] = 1
            for key, value in (("input_ids", padded), ("token_type_ids", types),
                               ("attention_mask", mask), ("start_positions", start_pos),
                               ("end_positions", end_pos), ("example_index", index)):
                rows[key].append(value)
            all_offsets.append(offsets)
            all_max_context.append(best)
    arrays = {k: np.asarray(v, np.int32) for k, v in rows.items()}
    if not all_offsets:
        arrays = {k: np.zeros((0, s) if k in ("input_ids", "token_type_ids", "attention_mask")
                              else (0,), np.int32) for k in rows}
        return QAWindows(arrays, np.zeros((0, s, 2), np.int32), np.zeros((0, s), bool))
    return QAWindows(arrays, np.stack(all_offsets), np.stack(all_max_context))
