"""Fine-tuning data: rows from local CSV/TSV/JSONL/SQuAD-JSON files or TFDS, into typed examples.

Rows are read by `sources` (re-exported here: read_rows, read_tfds, Row, DataError, ...); a `Row`
remembers where it came from ("file:line"), so every bad input is reported with its place.
What happens to a bad row (missing field, unknown label in validation/test, unparsable number) is
decided by `on_bad_row`: "error" stops with the place and reason; "skip" drops the row and logs one
warning per split with the count and the first few places. Nothing is dropped without a word.

String labels become ids through a `LabelSpace` read from the training data (sorted, so the same
data always gives the same ids); it is stored with the checkpoint (see `LabelSpace.to_json`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterable

from absl import logging
import numpy as np

# Re-exported: callers read rows and catch DataError through readers.
from bertjax.tasks.sources import (  # noqa: F401
    DataError, Row, position, read_rows, read_tfds, tfds_label_names)


@dataclasses.dataclass
class Example:
    """One classification/regression/multi-label/tagging example.

    text: str (or list of words for tagging); pair: the second segment or None;
    label: int class id | float value | list of int ids (multi-label, tag per word) | None (test).
    """
    where: str
    text: Any
    pair: str | None = None
    label: Any = None
    uid: str = ""


@dataclasses.dataclass
class QAExample:
    """One extractive-QA example. answers: gold texts with their char starts; [] = no answer."""
    where: str
    uid: str
    question: str
    context: str
    answer_texts: list[str]
    answer_starts: list[int]


# --------------------------------------------------------------------------------------------
# Bad rows


class BadRows:
    """Applies `on_bad_row` ("error" | "skip") and counts what it skipped."""

    def __init__(self, policy: str, split: str):
        if policy not in ("error", "skip"):
            raise DataError(f"config.data.on_bad_row must be 'error' or 'skip', got {policy!r}")
        self.policy, self.split, self.skipped = policy, split, []

    def __call__(self, row: Row, reason: str) -> None:
        if self.policy == "error":
            raise DataError(f"{row.where}: {reason} (to skip bad rows with a warning: "
                            "--config.data.on_bad_row=skip in training, --on_bad_row skip in "
                            "bertjax.predict)")
        self.skipped.append(f"{row.where}: {reason}")

    def report(self) -> None:
        if self.skipped:
            logging.warning("%s: skipped %d bad rows, e.g. %s", self.split, len(self.skipped),
                            "; ".join(self.skipped[:3]))


# --------------------------------------------------------------------------------------------
# Labels


def _label_key(label: str):
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)


@dataclasses.dataclass
class LabelSpace:
    """Class names in id order. Numeric-looking names sort numerically, others by string."""
    names: list[str]

    @classmethod
    def from_labels(cls, labels: Iterable[str]) -> "LabelSpace":
        return cls(sorted(set(labels), key=_label_key))

    def id(self, name: str) -> int:
        try:
            return self._index[name]
        except AttributeError:
            self._index = {n: i for i, n in enumerate(self.names)}
            return self.id(name)

    def __contains__(self, name: str) -> bool:
        return name in self.names

    def __len__(self) -> int:
        return len(self.names)

    def to_json(self) -> list[str]:
        return list(self.names)


def label_string(value: Any) -> str:
    """A label as read (str, int, bool, finite float) -> its canonical string form. Any other value
    (a list, an object, NaN) is no label: "", so the label-set scans take no class from it
    (`_label_value` says why, for the bad row)."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int) or (isinstance(value, float) and math.isfinite(value)):
        return str(value)
    return ""


def _type_name(value: Any) -> str:
    """The type of a value read from JSON, for messages ("null" for None)."""
    return "null" if value is None else type(value).__name__


def _label_value(value: Any, what: str) -> str:
    """label_string(value), or KeyError saying why `what` (e.g. "tag 3 in 'tags'") is no label."""
    if not isinstance(value, (str, int, float)):
        raise KeyError(f"{what} must be a string or a number, not {_type_name(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise KeyError(f"{what} is {value}, not a finite number")
    return label_string(value)


def _listed(value: Any, column: str, what: str) -> list:
    """A tagging row's words or tags in `column`: a list, or one string split at spaces; else
    KeyError naming the column and the type found."""
    if isinstance(value, str):
        return value.split()
    if not isinstance(value, list):
        raise KeyError(f"{column!r} must be a list of {what}, not {_type_name(value)}")
    return value


def tag_names(value: Any, column: str) -> list[str]:
    """A tagging row's tags in `column` (a list, or one string split at spaces) -> tag names, or
    KeyError with the reason: not a list, or a tag that is not a string or number or is blank."""
    value = _listed(value, column, "tags")
    names = [_label_value(tag, f"tag {k} in {column!r}") for k, tag in enumerate(value)]
    if "" in names:
        raise KeyError(f"tag {names.index('')} in {column!r} is blank")
    return names


def split_multilabel(value: Any, separator: str) -> list[str]:
    """A multi-label field (list, or names joined by separator) -> names; empty names dropped."""
    if isinstance(value, (list, tuple)):
        return [name for name in map(label_string, value) if name]
    text = label_string(value)
    return [t.strip() for t in text.split(separator) if t.strip()] if text else []


# --------------------------------------------------------------------------------------------
# Rows -> examples


def _field(row: Row, name: str) -> Any:
    """The row's value for `name`, or raises KeyError with the reason."""
    if "__invalid__" in row.fields:
        raise KeyError(row.fields["__invalid__"])
    value = row.fields.get(name)
    if value is None:
        reason = f"missing field {name!r}"
        if "__ragged__" in row.fields:
            reason += f" ({row.fields['__ragged__']})"
        raise KeyError(reason)
    return value


def _text(row: Row, name: str) -> str:
    """The row's text in field `name`. JSON can give other values: a number, list or object there is
    a bad row (most likely the wrong column or a broken export), not text made of its repr."""
    value = _field(row, name)
    if not isinstance(value, str):
        raise KeyError(f"{name!r} must be a string, not {_type_name(value)}")
    return value


def _label_name(row: Row, name: str) -> str:
    """The row's label in field `name` as a string (see label_string); an empty or blank one is
    missing; a list, object or NaN is no label."""
    label = _label_value(_field(row, name), f"label in {name!r}")
    if not label:
        raise KeyError(f"empty label in {name!r}")
    return label


def _regression_value(row: Row, name: str) -> float:
    """The row's target in field `name`: a number, or a string that reads as one; finite. true and
    false are not numbers."""
    if isinstance(row.fields.get(name), bool):
        raise KeyError(f"label {row.fields[name]} in {name!r} is not a number")
    raw = _label_name(row, name)
    try:
        value = float(raw)
    except ValueError:
        raise KeyError(f"label {raw!r} in {name!r} is not a number") from None
    if not np.isfinite(value):
        raise KeyError(f"label {raw!r} in {name!r} is not finite")
    return value


def _multilabel_names(row: Row, name: str, separator: str) -> list[str]:
    """The row's label names in field `name` (see split_multilabel); a label that is a list, an
    object or NaN is a bad row, not dropped."""
    value = _field(row, name)
    if isinstance(value, list):
        for k, item in enumerate(value):
            _label_value(item, f"label {k} in {name!r}")
    else:
        _label_value(value, f"label in {name!r}")
    return split_multilabel(value, separator)


def _example_id(row: Row, id_column: str | None, required: bool) -> str:
    """The row's id in id_column; without one (or when it is absent and not required) the row's
    place stands in. required: a missing id is a bad row (test data: predictions carry it)."""
    if id_column and (required or row.fields.get(id_column) is not None):
        return str(_field(row, id_column))
    return row.where


def text_examples(rows: Iterable[Row], *, kind: str, text_column: str,
                  text_pair_column: str | None, label_column: str, labels: LabelSpace | None,
                  bad: BadRows, with_labels: bool = True, label_separator: str = "|",
                  id_column: str | None = None) -> list[Example]:
    """Rows -> Examples for kind "classification" | "regression" | "multilabel".

    labels: the label space for classification/multilabel (None for regression). A label not in it,
    or an empty one, is a bad row (an empty multi-label field is the empty set). with_labels=False
    (test data) reads no label. id_column: the field that becomes Example.uid (see _example_id).
    """
    out = []
    for row in rows:
        try:
            text = _text(row, text_column)
            pair = _text(row, text_pair_column) if text_pair_column else None
            label = None
            if with_labels:
                if kind == "regression":
                    label = _regression_value(row, label_column)
                elif kind == "multilabel":
                    names = _multilabel_names(row, label_column, label_separator)
                    unknown = [n for n in names if n not in labels]
                    if unknown:
                        raise KeyError(f"unknown label {unknown[0]!r} (known: {labels.names})")
                    label = sorted(labels.id(n) for n in names)
                else:
                    name = _label_name(row, label_column)
                    if name not in labels:
                        raise KeyError(f"unknown label {name!r} (known: {labels.names})")
                    label = labels.id(name)
            uid = _example_id(row, id_column, required=not with_labels)
        except KeyError as e:
            bad(row, e.args[0])
            continue
        out.append(Example(row.where, text, pair, label, uid))
    bad.report()
    return out


def _words(value: Any, column: str) -> list[str]:
    """A tagging row's words in `column` (a list, or one string split at spaces), or KeyError with
    the reason: not a list, no words, or a word that is not a string or is blank."""
    value = _listed(value, column, "words")
    if not value:
        raise KeyError(f"no words in {column!r}")
    for k, word in enumerate(value):
        if not isinstance(word, str):
            raise KeyError(f"word {k} in {column!r} must be a string, not {_type_name(word)}")
        if not word.strip():
            raise KeyError(f"word {k} in {column!r} is blank ({word!r})")
    return value


def tagging_examples(rows: Iterable[Row], *, tokens_column: str, tags_column: str,
                     labels: LabelSpace | None, bad: BadRows, with_labels: bool = True,
                     id_column: str | None = None) -> list[Example]:
    """Rows with a list of words and a list of tags (one per word) -> Examples.

    id_column: the field that becomes Example.uid (see _example_id).
    """
    out = []
    for row in rows:
        try:
            words = _words(_field(row, tokens_column), tokens_column)
            label = None
            if with_labels:
                tags = tag_names(_field(row, tags_column), tags_column)
                if len(tags) != len(words):
                    raise KeyError(f"{len(words)} words but {len(tags)} tags")
                unknown = [t for t in tags if t not in labels]
                if unknown:
                    raise KeyError(f"unknown tag {unknown[0]!r} (known: {labels.names})")
                label = [labels.id(t) for t in tags]
            uid = _example_id(row, id_column, required=not with_labels)
        except KeyError as e:
            bad(row, e.args[0])
            continue
        out.append(Example(row.where, list(words), None, label, uid))
    bad.report()
    return out


def _answer_start(k: int, start: Any) -> int:
    """Answer k's answer_start as an int, or raises KeyError with the reason."""
    if start is None:
        raise KeyError(f"answer {k} has no 'answer_start'")
    try:
        return int(start)
    except (TypeError, ValueError):
        raise KeyError(f"answer {k}: answer_start {start!r} is not an integer") from None


def qa_examples(rows: Iterable[Row], *, bad: BadRows, allow_no_answer: bool,
                with_labels: bool = True) -> list[QAExample]:
    """Rows with id, question, context, answers {text: [...], answer_start: [...]} -> QAExamples.

    An answer whose text is not found at its answer_start in the context is a bad row. A question
    with no answers is a bad row unless allow_no_answer (SQuAD v2.0).
    """
    out = []
    for row in rows:
        try:
            question, context = _text(row, "question"), _text(row, "context")
            uid = str(row.fields.get("id") or row.where)
            texts, starts = [], []
            if with_labels:
                answers = _field(row, "answers")
                if not isinstance(answers, dict):
                    raise KeyError("'answers' must be an object {text: [...], answer_start: [...]}")
                texts, starts = list(answers.get("text", [])), list(answers.get("answer_start", []))
                if len(texts) != len(starts):
                    raise KeyError(f"{len(texts)} answer texts but {len(starts)} answer_start")
                starts = [_answer_start(k, start) for k, start in enumerate(starts)]
                for k, (text, start) in enumerate(zip(texts, starts)):
                    if not isinstance(text, str):
                        raise KeyError(f"answer {k} has no 'text'" if text is None else
                                       f"answer {k}: 'text' must be a string, not {text!r}")
                    if context[start: start + len(text)] != text:
                        raise KeyError(f"answer {text!r} is not at character {start} of context")
                if not texts and not allow_no_answer:
                    raise KeyError("no answers (unanswerable questions need SQuAD v2.0 mode)")
        except KeyError as e:
            bad(row, e.args[0])
            continue
        out.append(QAExample(row.where, uid, question, context, texts, starts))
    bad.report()
    return out
