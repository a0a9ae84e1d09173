"""Fine-tuning data sources: local CSV/TSV/JSONL/SQuAD-JSON files or TFDS, read into `Row`s.

A `Row` remembers where it came from ("file:line"), so every bad input is reported with its place.
A row that cannot be read as fields (invalid JSON, more fields than the CSV header) carries the
reason as "__invalid__", for `readers` to apply on_bad_row to; a file that cannot be read as a
whole from some point on (not UTF-8, a broken CSV quote, not shaped as SQuAD) is a DataError.

Delimited and JSONL files are read as "utf-8-sig": a byte-order mark (Excel's "CSV UTF-8") is
dropped, not read into the first column name.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import re
from typing import Any, Iterator

import numpy as np


class DataError(ValueError):
    """Bad fine-tuning data; the message names the file and line (or TFDS split and index)."""


@dataclasses.dataclass(frozen=True)
class Row:
    where: str  # "path:line" or "tfds:name[split]#index"
    fields: dict[str, Any]


def position(where: str) -> int | None:
    """The line number ("path:12", a CSV row's first line) or TFDS index ("tfds:x[test]#12") at
    the end of a Row's `where`; None for places that are not a number (SQuAD JSON)."""
    match = re.search(r"[:#](\d+)$", where)
    return int(match.group(1)) if match else None


# "utf-8-sig" reads plain UTF-8 too; it only drops a leading byte-order mark.
_TEXT_ENCODING = "utf-8-sig"

# Long texts are legitimate (features truncate them to max_seq_length), but csv refuses a field
# over 128 KiB. Its limit is one for the whole process, so it is raised once, here, and never
# lowered; 2**31 - 1 fits the C long it is kept in on every platform.
csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))


def _text_lines(path: str, f) -> Iterator[str]:
    """The lines of open text file f; a byte that is not UTF-8 is a DataError naming the file and
    its line."""
    try:
        yield from f
    except UnicodeDecodeError:
        raise DataError(_not_utf8(path)) from None


def _not_utf8(path: str) -> str:
    """Where and why `path` is not UTF-8 text. Text files are decoded in blocks, so the decoder's
    error cannot say the line; the file is read again as bytes, a line at a time (a UTF-8 character
    never holds a newline byte), counting line ends as text mode does (\n, \r\n, lone \r)."""
    with open(path, "rb") as f:
        line = 1
        for raw in f:
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as e:
                line += len(re.findall(rb"\r(?!\n)", raw[:e.start]))
                return (f"{path}:{line}: not UTF-8 text (byte 0x{raw[e.start]:02x}: {e.reason}); "
                        "save the file as UTF-8")
            line += 1 + len(re.findall(rb"\r(?!\n)", raw))
    return f"{path}: not UTF-8 text; save the file as UTF-8"


def _read_delimited(path: str, delimiter: str) -> Iterator[Row]:
    with open(path, newline="", encoding=_TEXT_ENCODING) as f:
        quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
        reader = csv.reader(_text_lines(path, f), delimiter=delimiter, quoting=quoting,
                            strict=True)
        records = _csv_records(path, reader)
        _, header = next(records, (0, None))
        if header is None:
            raise DataError(f"{path}: empty file (a header row naming the columns is required)")
        for start, record in records:
            yield Row(f"{path}:{start}", _delimited_fields(header, record, delimiter))


def _csv_records(path: str, reader) -> Iterator[tuple[int, list[str]]]:
    """(first line, fields) of each non-blank record of csv `reader` over the file `path`; a record
    csv cannot parse raises `_csv_error`."""
    start = 1
    while True:
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise _csv_error(path, start, reader.line_num, e) from None
        if record:
            yield start, record
        start = reader.line_num + 1


def _csv_error(path: str, start: int, line: int, error: csv.Error) -> DataError:
    """A record (from line `start`, csv stopped at `line`) that csv cannot parse: a quote left open
    at the end of the file, a closing quote followed by more text. An error whatever on_bad_row:
    csv would go on at the next line, which may be inside the broken record."""
    if str(error) == "unexpected end of data":  # strict csv's word for a quote open at the end
        return DataError(f"{path}:{start}: unterminated quoted field starting at line {start} "
                         "(no closing quote: the rest of the file would be read into it)")
    hint = '; a quote inside a quoted field is written twice ("")' if '"' in str(error) else ""
    return DataError(f"{path}:{line}: malformed CSV in the row starting at line {start} "
                     f"({error}){hint}")


def _delimited_fields(header: list[str], record: list[str], delimiter: str) -> dict[str, Any]:
    """A CSV/TSV record -> Row fields. More fields than the header is a bad row ("__invalid__"):
    which field is which is unknown (an unquoted comma in a text); unless the extra ones are all
    empty (a trailing delimiter, as spreadsheets write), which are dropped. Fewer is kept, with
    the missing ones absent, so the field check names what is missing (trailing columns may be
    optional)."""
    counts = f"{len(record)} fields, the header has {len(header)}"
    if len(record) > len(header) and not any(f.strip() for f in record[len(header):]):
        record = record[:len(header)]
    if len(record) > len(header):
        hint = "; a field with a comma in it must be quoted" if delimiter == "," else ""
        return {"__invalid__": counts + hint}
    fields = dict(zip(header, record))
    if len(record) < len(header):
        fields["__ragged__"] = counts
    return fields


def _read_jsonl(path: str) -> Iterator[Row]:
    with open(path, encoding=_TEXT_ENCODING) as f:
        for number, line in enumerate(_text_lines(path, f), start=1):
            if not line.strip():
                continue
            try:
                fields = json.loads(line)
            except json.JSONDecodeError as e:
                yield Row(f"{path}:{number}", {"__invalid__": f"invalid JSON ({e.msg})"})
                continue
            if not isinstance(fields, dict):
                fields = {"__invalid__": "a JSON line must be an object"}
            yield Row(f"{path}:{number}", fields)


def _load_json(path: str) -> Any:
    """A whole JSON file; a syntax error names its line and column."""
    try:
        with open(path, encoding=_TEXT_ENCODING) as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}:{e.colno}: invalid JSON ({e.msg})") from None
    except UnicodeDecodeError:
        raise DataError(_not_utf8(path)) from None


def _json_list(value: Any, where: str, what: str) -> list:
    if not isinstance(value, list):
        raise DataError(f"{where}: {what} must be a JSON list, not {type(value).__name__}")
    return value


def _json_object(value: Any, where: str, what: str) -> dict:
    if not isinstance(value, dict):
        raise DataError(f"{where}: {what} must be a JSON object, not {type(value).__name__}")
    return value


def _squad_question(qa: Any, context: Any) -> dict[str, Any]:
    """One SQuAD question -> Row fields, answers laid out as TFDS does ({text: [..], answer_start:
    [..]}). An answer lacking a field gives None there, for qa_examples to name; a question that
    is not an object, or whose answers are not a list of objects, gets an "__invalid__" reason.
    """
    if not isinstance(qa, dict):
        return {"__invalid__": f"a question must be a JSON object, not {type(qa).__name__}"}
    fields = {"id": qa.get("id"), "question": qa.get("question"), "context": context,
              "is_impossible": qa.get("is_impossible", False)}
    answers = qa.get("answers", [])
    if not isinstance(answers, list) or not all(isinstance(x, dict) for x in answers):
        fields["__invalid__"] = "'answers' must be a list of objects {text, answer_start}"
        return fields
    fields["answers"] = {"text": [x.get("text") for x in answers],
                         "answer_start": [x.get("answer_start") for x in answers]}
    return fields


def _read_squad_json(path: str) -> Iterator[Row]:
    """The official SQuAD v1.1/v2.0 JSON: data -> paragraphs -> qas, one Row per question.

    A file that is not valid JSON or not shaped as SQuAD down to the question lists raises
    DataError naming the place (line:column, or data[i].paragraphs[j]); a bad question is a bad
    row at data[i].paragraphs[j].qas[k], left to on_bad_row.
    """
    doc = _load_json(path)
    if not isinstance(doc, dict) or "data" not in doc:
        raise DataError(f"{path}: not a SQuAD JSON file (no top-level 'data')")
    for a, article in enumerate(_json_list(doc["data"], path, "'data'")):
        where = f"{path}:data[{a}]"
        paragraphs = _json_object(article, where, "an article").get("paragraphs", [])
        for p, paragraph in enumerate(_json_list(paragraphs, where, "'paragraphs'")):
            at = f"{where}.paragraphs[{p}]"
            paragraph = _json_object(paragraph, at, "a paragraph")
            for q, qa in enumerate(_json_list(paragraph.get("qas", []), at, "'qas'")):
                yield Row(f"{at}.qas[{q}]", _squad_question(qa, paragraph.get("context")))


def read_rows(path: str) -> Iterator[Row]:
    """Rows of a .csv, .tsv, .jsonl (or .json SQuAD) file."""
    if not os.path.exists(path):
        raise DataError(f"data file {path} does not exist")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".csv":
        return _read_delimited(path, ",")
    if ext == ".tsv":
        return _read_delimited(path, "\t")
    if ext in (".jsonl", ".ndjson"):
        return _read_jsonl(path)
    if ext == ".json":
        return _read_squad_json(path)
    raise DataError(f"data file {path}: unknown extension {ext!r} (use .csv, .tsv, .jsonl, .json)")


def _decode(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray):
        return [_decode(v) for v in value.tolist()]
    if isinstance(value, dict):
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_tfds(name: str, split: str, data_dir: str | None = None,
              columns: dict[str, str] | None = None) -> Iterator[Row]:
    """Rows of a TFDS dataset (e.g. "glue/sst2", "squad/v2.0"); bytes decoded to str.

    columns: {what names a column (e.g. "config.data.text_column"): the column} that every row
    needs; a column that is no feature of the dataset is a DataError naming it, what named it and
    the dataset's features, before any row is read (rather than a "missing field" on each row).
    """
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    ds = tfds.load(name, split=split, data_dir=data_dir, shuffle_files=False, download=False)
    features = sorted(ds.element_spec)
    for what, column in (columns or {}).items():
        if column not in features:
            raise DataError(f"tfds:{name}[{split}] has no feature {column!r} ({what}); its "
                            f"features: {', '.join(features)}")
    for index, record in enumerate(tfds.as_numpy(ds)):
        yield Row(f"tfds:{name}[{split}]#{index}", _decode(dict(record)))


def tfds_label_names(name: str, label_column: str = "label",
                     data_dir: str | None = None) -> list[str] | None:
    """The ClassLabel names of a TFDS dataset's label feature, or None if it is not a ClassLabel."""
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    info = tfds.builder(name, data_dir=data_dir).info
    feature = info.features[label_column] if label_column in info.features else None
    names = getattr(feature, "names", None)
    return list(names) if names else None
