"""Pretraining examples from tokenized documents, with google-research/bert's semantics.

A document is a list of sentences, each a 1-D int array of WordPiece ids (no special tokens).
An example ("record") is one int32 array `[label, *row]`: `row` is the example's tokens laid out
with their special tokens, unpadded, and `label` is the NSP label (0 = B follows A, 1 = B is
random) or -1 without NSP. The loader derives token types, segment and position ids from where
[CLS] and [SEP] sit in `row`, so a record needs no other field.

  next_sentence=True   [CLS] A [SEP] B [SEP]  (create_pretraining_data.py: target length, short_seq_prob,
                       A/B split at a random sentence boundary, random B from another document half
                       the time with its unused sentences put back, truncate_seq_pair)
  next_sentence=False  [CLS] X [SEP]          X fills up to the target length with consecutive
                       sentences of one document (RoBERTa's DOC-SENTENCES)
  packing=True         [CLS] X1 [SEP] [CLS] X2 [SEP] ...  several MLM-only examples in one row

Every random choice for document d in copy k (dupe_factor) comes from
np.random.default_rng([seed, d, k]): a document's examples do not depend on any other document's
processing order, only on which documents share its shard (the pool random B is drawn from).
"""

from __future__ import annotations

import dataclasses

import numpy as np

Sentence = np.ndarray  # [n] int32 ids
NO_LABEL = -1


@dataclasses.dataclass(frozen=True)
class Specials:
    """Ids of the special tokens."""

    pad: int
    unk: int
    cls: int
    sep: int
    mask: int

    @classmethod
    def of(cls, tok) -> "Specials":
        """The ids in `tok`; a ValueError if any is missing (see missing_specials)."""
        missing = missing_specials(tok)
        if missing:
            raise ValueError(f"tokenizer vocabulary lacks special tokens {missing}")
        return cls(**{name: tok.token_to_id(f"[{name.upper()}]") for name in _SPECIAL_NAMES})


_SPECIAL_NAMES = ("pad", "unk", "cls", "sep", "mask")


def missing_specials(tok) -> list[str]:
    """The special tokens of Specials (e.g. "[MASK]") that `tok`'s vocabulary lacks."""
    return [f"[{name.upper()}]" for name in _SPECIAL_NAMES
            if tok.token_to_id(f"[{name.upper()}]") is None]


def _record(label: int, *parts: np.ndarray) -> np.ndarray:
    return np.concatenate([np.asarray([label], np.int32), *[np.asarray(p, np.int32) for p in parts]])


def truncate_seq_pair(a: np.ndarray, b: np.ndarray, max_num_tokens: int,
                      rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Trims the longer of a, b (b on ties) one token at a time, from the front or back at random."""
    sa, ea, sb, eb = 0, len(a), 0, len(b)
    while (ea - sa) + (eb - sb) > max_num_tokens:
        front = rng.random() < 0.5
        if ea - sa > eb - sb:
            sa, ea = (sa + 1, ea) if front else (sa, ea - 1)
        else:
            sb, eb = (sb + 1, eb) if front else (sb, eb - 1)
    return a[sa:ea], b[sb:eb]


def pair_examples(docs: list[list[Sentence]], d: int, rng: np.random.Generator, *,
                  max_seq_length: int, short_seq_prob: float, specials: Specials,
                  counts: dict | None = None) -> list[np.ndarray]:
    """NSP examples of document docs[d]: google-research/bert's create_instances_from_document.

    counts: if given, counts["truncated_tokens"] grows by the tokens of docs[d] that truncation
    (or a pair left with an empty side) keeps out of every example, as Google's rule does to a
    chunk longer than the room, e.g. a long line that was not split into sentences. Tokens of
    a random B taken from another document are not counted: that document has its own examples.
    """
    document = docs[d]
    max_num_tokens = max_seq_length - 3  # [CLS], [SEP], [SEP]
    target = max_num_tokens
    if rng.random() < short_seq_prob:
        target = int(rng.integers(2, max_num_tokens + 1))
    cls_, sep = [specials.cls], [specials.sep]
    out: list[np.ndarray] = []
    chunk: list[Sentence] = []
    length, i = 0, 0
    while i < len(document):
        chunk.append(document[i])
        length += len(document[i])
        if i == len(document) - 1 or length >= target:
            a_end = int(rng.integers(1, len(chunk))) if len(chunk) >= 2 else 1
            tokens_a = np.concatenate(chunk[:a_end])
            if len(chunk) == 1 or rng.random() < 0.5:
                is_random = 1
                target_b = target - len(tokens_a)
                r = d
                for _ in range(10):  # a different document, if one comes up within 10 draws
                    r = int(rng.integers(0, len(docs)))
                    if r != d:
                        break
                other = docs[r]
                start = int(rng.integers(0, len(other)))
                b_parts, b_len = [], 0
                for j in range(start, len(other)):
                    b_parts.append(other[j])
                    b_len += len(other[j])
                    if b_len >= target_b:
                        break
                tokens_b = np.concatenate(b_parts)
                i -= len(chunk) - a_end  # put the unused sentences back
            else:
                is_random = 0
                tokens_b = np.concatenate(chunk[a_end:])
            own = len(tokens_a) + (0 if is_random else len(tokens_b))  # docs[d]'s own tokens
            tokens_a, tokens_b = truncate_seq_pair(tokens_a, tokens_b, max_num_tokens, rng)
            kept = 0
            if len(tokens_a) >= 1 and len(tokens_b) >= 1:
                out.append(_record(is_random, cls_, tokens_a, sep, tokens_b, sep))
                kept = len(tokens_a) + (0 if is_random else len(tokens_b))
            if counts is not None:
                counts["truncated_tokens"] = counts.get("truncated_tokens", 0) + own - kept
            chunk, length = [], 0
        i += 1
    return out


def single_examples(docs: list[list[Sentence]], d: int, rng: np.random.Generator, *,
                    max_seq_length: int, short_seq_prob: float, specials: Specials,
                    counts: dict | None = None) -> list[np.ndarray]:
    """MLM-only examples of docs[d]: consecutive sentences up to the target length, [CLS] X [SEP].

    A sentence longer than the room is cut into pieces of max_seq_length - 2; a chunk that would
    overflow the target is emitted first. The target is max_seq_length - 2, or with probability
    short_seq_prob a random length in [2, max_seq_length - 2], redrawn for every example; a piece
    longer than a short target is cut to it (the rest is lost, and added to
    counts["truncated_tokens"] when counts is given). With short_seq_prob=0 nothing is lost.
    """
    max_num_tokens = max_seq_length - 2

    def new_target() -> int:
        if rng.random() < short_seq_prob:
            return int(rng.integers(2, max_num_tokens + 1))
        return max_num_tokens

    out: list[np.ndarray] = []

    def emit(parts: list[Sentence], target: int) -> None:
        row = np.concatenate(parts)
        if counts is not None and len(row) > target:
            counts["truncated_tokens"] = counts.get("truncated_tokens", 0) + len(row) - target
        row = row[:target]
        if len(row):
            out.append(_record(NO_LABEL, [specials.cls], row, [specials.sep]))

    target = new_target()
    chunk: list[Sentence] = []
    length = 0
    for sentence in docs[d]:
        for p in range(0, len(sentence), max_num_tokens):
            piece = sentence[p:p + max_num_tokens]
            if length and length + len(piece) > target:
                emit(chunk, target)
                chunk, length, target = [], 0, new_target()
            chunk.append(piece)
            length += len(piece)
            if length >= target:
                emit(chunk, target)
                chunk, length, target = [], 0, new_target()
    if chunk:
        emit(chunk, target)
    return out


def pack_records(records: list[np.ndarray], max_seq_length: int, open_rows: int = 8) -> list[np.ndarray]:
    """Packs MLM-only records ([-1, CLS, ..., SEP]) into rows of at most max_seq_length tokens.

    First fit over the `open_rows` most recently opened rows, in input order (deterministic); a row is
    closed when it is full or pushed out of the window. Returns records [-1, CLS x1 SEP CLS x2 SEP ...].
    """
    done: list[list[np.ndarray]] = []
    rows: list[list[np.ndarray]] = []
    room: list[int] = []
    for rec in records:
        row = rec[1:]
        n = len(row)
        for k in range(len(rows)):
            if room[k] >= n:
                rows[k].append(row)
                room[k] -= n
                break
        else:
            rows.append([row])
            room.append(max_seq_length - n)
            if len(rows) > open_rows:
                done.append(rows.pop(0))
                room.pop(0)
        full = [k for k in range(len(rows)) if room[k] < 3]  # nothing fits in fewer than 3 tokens
        for k in reversed(full):
            done.append(rows.pop(k))
            room.pop(k)
    done.extend(rows)
    return [_record(NO_LABEL, *parts) for parts in done]


def shard_examples(docs: list[list[Sentence]], doc_ids: list[int], *, seed: int, dupe_factor: int,
                   max_seq_length: int, short_seq_prob: float, next_sentence: bool, packing: bool,
                   specials: Specials, counts: dict | None = None) -> list[np.ndarray]:
    """All records of one shard of documents: copies k = 0..dupe_factor-1, documents in order.

    doc_ids: the corpus-wide index of each document (keys its random stream).
    counts: if given, counts["truncated_tokens"] grows by the document tokens that example
    creation drops, summed over the dupe_factor copies (see pair_examples, single_examples).
    """
    make = pair_examples if next_sentence else single_examples
    out: list[np.ndarray] = []
    for k in range(dupe_factor):
        for d, doc_id in enumerate(doc_ids):
            rng = np.random.default_rng([seed, doc_id, k])
            out.extend(make(docs, d, rng, max_seq_length=max_seq_length,
                            short_seq_prob=short_seq_prob, specials=specials, counts=counts))
    if packing:
        out = pack_records(out, max_seq_length)
    return out
