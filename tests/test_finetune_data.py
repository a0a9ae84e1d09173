"""Fine-tuning readers and features: files, bad rows, label spaces, WordPiece alignment, doc stride."""

import csv
import json
import re

import numpy as np
import pytest

from bertjax.data import tokenizer as tokenizer_lib
from bertjax.tasks import features, readers

WORDS = ("the cat sat on mat dog ran a big red house where is what who did john "
         "mary paris london lives in went to . , ? !").split()


def tiny_tokenizer():
    """An uncased WordPiece tokenizer over a few words, with ##s pieces for plural splitting."""
    vocab = list(tokenizer_lib.SPECIAL_TOKENS) + WORDS + ["##s", "##ing", "un", "##known"]
    return tokenizer_lib.from_vocab({t: i for i, t in enumerate(vocab)}, lowercase=True)


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_csv_rows_carry_file_and_line(tmp_path):
    path = write(tmp_path / "train.csv", 'text,label\n"a cat,\nsat",pos\nthe dog,neg\n')
    rows = list(readers.read_rows(path))
    assert [r.where for r in rows] == [f"{path}:2", f"{path}:4"]
    assert rows[0].fields == {"text": "a cat,\nsat", "label": "pos"}


def test_label_space_is_sorted_and_deterministic():
    assert readers.LabelSpace.from_labels(["neg", "pos", "neg", "mid"]).names == ["mid", "neg", "pos"]
    assert readers.LabelSpace.from_labels(["10", "2", "1"]).names == ["1", "2", "10"]
    space = readers.LabelSpace(["a", "b"])
    assert space.id("b") == 1 and "c" not in space


def test_unknown_label_is_an_error_naming_file_and_line(tmp_path):
    path = write(tmp_path / "dev.tsv", "sentence\tlabel\nthe cat\tpos\nthe dog\tmaybe\n")
    rows = readers.read_rows(path)
    with pytest.raises(readers.DataError, match=r"dev.tsv:3: unknown label 'maybe'"):
        readers.text_examples(rows, kind="classification", text_column="sentence",
                              text_pair_column=None, label_column="label",
                              labels=readers.LabelSpace(["neg", "pos"]),
                              bad=readers.BadRows("error", "validation"))


def test_skip_policy_counts_and_keeps_good_rows(tmp_path):
    path = write(tmp_path / "train.jsonl",
                 '{"text": "a", "label": 0.5}\n{"text": "b"}\n{"text": "c", "label": "x"}\n'
                 'not json\n{"text": "d", "label": 2}\n')
    bad = readers.BadRows("skip", "train")
    examples = readers.text_examples(
        readers.read_rows(path), kind="regression", text_column="text", text_pair_column=None,
        label_column="label", labels=None, bad=bad)
    assert [(e.text, e.label) for e in examples] == [("a", 0.5), ("d", 2.0)]
    assert len(bad.skipped) == 3
    assert bad.skipped[0].startswith(f"{path}:2: missing field 'label'")
    assert "not a number" in bad.skipped[1] and f"{path}:3" in bad.skipped[1]
    assert f"{path}:4: invalid JSON" in bad.skipped[2]


def test_missing_pair_column_is_an_error(tmp_path):
    path = write(tmp_path / "train.csv", "s1,label\nthe cat,a\n")
    with pytest.raises(readers.DataError, match=r"train.csv:2: missing field 's2'"):
        readers.text_examples(readers.read_rows(path), kind="classification", text_column="s1",
                              text_pair_column="s2", label_column="label",
                              labels=readers.LabelSpace(["a"]), bad=readers.BadRows("error", "t"))


def test_multilabel_from_separator_and_lists(tmp_path):
    path = write(tmp_path / "t.jsonl", '{"text": "a", "label": "x|z"}\n{"text": "b", "label": ["y"]}\n')
    examples = readers.text_examples(
        readers.read_rows(path), kind="multilabel", text_column="text", text_pair_column=None,
        label_column="label", labels=readers.LabelSpace(["x", "y", "z"]),
        bad=readers.BadRows("error", "t"))
    assert [e.label for e in examples] == [[0, 2], [1]]


def test_encode_pairs_truncates_the_longer_segment():
    tok = tiny_tokenizer()
    ex = [readers.Example("x", "the cat sat on the mat", "a dog", 0)]
    f = features.encode_texts(tok, ex, max_seq_length=8)
    ids = f["input_ids"][0].tolist()
    toks = [tok.id_to_token(i) for i in ids]
    assert toks == ["[CLS]", "the", "cat", "sat", "[SEP]", "a", "dog", "[SEP]"]
    assert f["token_type_ids"][0].tolist() == [0, 0, 0, 0, 0, 1, 1, 1]
    assert f["attention_mask"][0].tolist() == [1] * 8
    single = features.encode_texts(tok, [readers.Example("x", "the cat")], max_seq_length=7)
    assert single["attention_mask"][0].tolist() == [1, 1, 1, 1, 0, 0, 0]
    assert single["input_ids"][0, 4:].tolist() == [0, 0, 0]


def test_tagging_labels_on_first_piece_and_back_to_words():
    tok = tiny_tokenizer()
    # "cats" -> cat ##s ; "unknown" -> un ##known
    ex = readers.Example("x", ["John", "cats", "unknown", "paris"], None, [1, 0, 2, 3])
    f = features.encode_tagging(tok, [ex], max_seq_length=9)
    toks = [tok.id_to_token(i) for i in f["input_ids"][0].tolist()]
    assert toks[:8] == ["[CLS]", "john", "cat", "##s", "un", "##known", "paris", "[SEP]"]
    assert f["word_index"][0].tolist() == [-1, 0, 1, -1, 2, -1, 3, -1, -1]
    assert f["label_weights"][0].tolist() == [0, 1, 1, 0, 1, 0, 1, 0, 0]
    assert f["labels"][0][[1, 2, 4, 6]].tolist() == [1, 0, 2, 3]
    pred = np.array([9, 1, 0, 7, 2, 7, 3, 9, 9])
    assert features.words_from_tokens(pred, f["word_index"][0], 4, fill=0) == [1, 0, 2, 3]
    # Truncation: words past the window get the fill label.
    short = features.encode_tagging(tok, [ex], max_seq_length=5)
    assert features.words_from_tokens(pred[:5], short["word_index"][0], 4, fill=0) == [1, 0, 0, 0]


def test_qa_windows_doc_stride_offsets_and_positions():
    tok = tiny_tokenizer()
    context = "the cat sat on the mat . the dog ran to the big red house . mary lives in paris ."
    start = context.index("paris")
    ex = readers.QAExample("x", "q1", "where is mary ?", context, ["paris"], [start])
    w = features.encode_qa(tok, [ex], max_seq_length=16, doc_stride=4, max_query_length=4)
    # question 4 tokens -> room 16 - 4 - 3 = 9 context tokens per window; context has 21 tokens.
    n_windows = w.arrays["input_ids"].shape[0]
    assert n_windows == 4  # windows start at 0, 4, 8, 12
    assert w.arrays["example_index"].tolist() == [0] * 4
    # Only the last window holds "paris"; the others point at [CLS].
    starts, ends = w.arrays["start_positions"].tolist(), w.arrays["end_positions"].tolist()
    assert starts[:3] == [0, 0, 0] and ends[:3] == [0, 0, 0]
    last = n_windows - 1
    assert tok.id_to_token(int(w.arrays["input_ids"][last, starts[last]])) == "paris"
    a, b = w.offsets[last, starts[last]]
    assert context[a:b] == "paris"
    # Question tokens and specials have no offsets; type ids are 1 from the context on.
    assert (w.offsets[:, :6] == -1).all()
    assert w.arrays["token_type_ids"][0, :6].tolist() == [0] * 6
    assert w.arrays["token_type_ids"][0, 6] == 1
    # Each context token is max-context in exactly one window.
    for token in range(21):
        owners = [v for v in range(n_windows) for j in range(16)
                  if w.max_context[v, j] and w.offsets[v, j, 0] == tok.encode(
                      context, add_special_tokens=False).offsets[token][0]]
        assert len(owners) == 1, token


def test_qa_positions_span_every_piece_of_the_answer_words():
    tok = tiny_tokenizer()
    context = "the cats sat on the unknown mat ."  # cats -> cat ##s, unknown -> un ##known
    answers = ["cats sat", "the unknown"]
    examples = [readers.QAExample("x", a, "what ?", context, [a], [context.index(a)])
                for a in answers]
    w = features.encode_qa(tok, examples, max_seq_length=16, doc_stride=8, max_query_length=4)
    firsts, lasts = w.arrays["start_positions"], w.arrays["end_positions"]
    for row, (answer, first, last) in enumerate(zip(answers, ("cat", "the"), ("sat", "##known"))):
        ids = w.arrays["input_ids"][row]
        assert tok.id_to_token(int(ids[firsts[row]])) == first
        assert tok.id_to_token(int(ids[lasts[row]])) == last
        a, b = w.offsets[row, firsts[row], 0], w.offsets[row, lasts[row], 1]
        assert context[a:b] == answer


def test_squad_json_reader(tmp_path):
    doc = {"data": [{"title": "t", "paragraphs": [{"context": "mary lives in paris .", "qas": [
        {"id": "a", "question": "where ?", "answers": [{"text": "paris", "answer_start": 14}]},
        {"id": "b", "question": "who ?", "answers": [], "is_impossible": True},
        {"id": "c", "question": "x ?", "answers": [{"text": "london", "answer_start": 0}]}]}]}]}
    path = tmp_path / "dev.json"
    path.write_text(json.dumps(doc))
    bad = readers.BadRows("skip", "validation")
    examples = readers.qa_examples(readers.read_rows(str(path)), bad=bad, allow_no_answer=True)
    assert [e.uid for e in examples] == ["a", "b"]
    assert examples[1].answer_texts == []
    assert "data[0].paragraphs[0].qas[2]: answer 'london' is not at character 0" in bad.skipped[0]
    with pytest.raises(readers.DataError, match=r"qas\[1\]: no answers"):
        readers.qa_examples(readers.read_rows(str(path)), bad=readers.BadRows("error", "v"),
                            allow_no_answer=False)


def squad_examples(path, policy="error", allow_no_answer=False):
    bad = readers.BadRows(policy, "validation")
    examples = readers.qa_examples(readers.read_rows(str(path)), bad=bad,
                                   allow_no_answer=allow_no_answer)
    return examples, bad


def test_squad_json_syntax_errors_name_file_line_and_column(tmp_path):
    doc = {"data": [{"paragraphs": [{"context": "mary lives in paris .", "qas": []}]}]}
    path = tmp_path / "dev.json"
    path.write_text(json.dumps(doc)[:-5])  # truncated
    with pytest.raises(readers.DataError, match=r"dev\.json:1:\d+: invalid JSON \(Expecting"):
        squad_examples(path)
    path.write_text('{"data": [\n {"paragraphs": [\n  {"context": "x", "qas": [}]}\n]}\n')
    with pytest.raises(readers.DataError, match=r"dev\.json:3:\d+: invalid JSON"):
        squad_examples(path)


def test_squad_json_bad_questions_are_bad_rows_and_bad_structure_an_error(tmp_path):
    ok = {"id": "a", "question": "where ?", "answers": [{"text": "paris", "answer_start": 14}]}
    qas = [ok,
           {"id": "b", "question": "who ?", "answers": [{"answer_start": 0}]},
           {"id": "c", "question": "who ?", "answers": [{"text": "mary"}]},
           {"id": "d", "question": "who ?", "answers": {"text": "mary", "answer_start": 0}},
           "not a question",
           {"id": "e", "question": 5, "answers": [{"text": "mary", "answer_start": 0}]}]
    doc = {"data": [{"paragraphs": [{"context": "mary lives in paris .", "qas": qas}]}]}
    path = tmp_path / "dev.json"
    path.write_text(json.dumps(doc))
    at = f"{path}:data[0].paragraphs[0]"
    with pytest.raises(readers.DataError, match=r"qas\[1\]: answer 0 has no 'text' \(to skip"):
        squad_examples(path)
    examples, bad = squad_examples(path, policy="skip")
    assert [e.uid for e in examples] == ["a"]
    assert bad.skipped == [
        f"{at}.qas[1]: answer 0 has no 'text'",
        f"{at}.qas[2]: answer 0 has no 'answer_start'",
        f"{at}.qas[3]: 'answers' must be a list of objects {{text, answer_start}}",
        f"{at}.qas[4]: a question must be a JSON object, not str",
        f"{at}.qas[5]: 'question' must be a string, not int"]
    # Above the questions, a malformed file is an error whatever the policy.
    doc["data"][0]["paragraphs"].append(["not", "a", "paragraph"])
    path.write_text(json.dumps(doc))
    with pytest.raises(readers.DataError,
                       match=r"data\[0\]\.paragraphs\[1\]: a paragraph must be a JSON object"):
        squad_examples(path, policy="skip")
    path.write_text(json.dumps({"data": {"paragraphs": []}}))
    with pytest.raises(readers.DataError, match=r"dev\.json: 'data' must be a JSON list, not dict"):
        squad_examples(path, policy="skip")


def test_byte_order_mark_is_not_part_of_the_first_header(tmp_path):
    """Excel's "CSV UTF-8" starts the file with a BOM; it must not rename the first column."""
    for name, text in [("a.csv", "text,label\nthe cat,pos\n"),
                       ("a.tsv", "text\tlabel\nthe cat\tpos\n"),
                       ("a.jsonl", '{"text": "the cat", "label": "pos"}\n')]:
        path = tmp_path / name
        path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
        rows = list(readers.read_rows(str(path)))
        assert rows[0].fields == {"text": "the cat", "label": "pos"}, name
    squad = {"data": [{"paragraphs": [{"context": "mary lives in paris .", "qas": [
        {"id": "a", "question": "where ?", "answers": [{"text": "paris", "answer_start": 14}]}]}]}]}
    path = tmp_path / "dev.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(squad).encode("utf-8"))
    assert [e.uid for e in squad_examples(path)[0]] == ["a"]


@pytest.mark.parametrize("cell", ["", "  "])
def test_empty_label_is_a_bad_row_not_a_class(tmp_path, cell):
    path = write(tmp_path / "train.csv", f"text,label\nthe cat,pos\nsad dog,{cell}\n")
    args = dict(kind="classification", text_column="text", text_pair_column=None,
                label_column="label", labels=readers.LabelSpace(["pos"]))
    with pytest.raises(readers.DataError, match=r"train.csv:3: empty label in 'label'"):
        readers.text_examples(readers.read_rows(path), bad=readers.BadRows("error", "t"), **args)
    bad = readers.BadRows("skip", "train")
    examples = readers.text_examples(readers.read_rows(path), bad=bad, **args)
    assert [e.text for e in examples] == ["the cat"] and len(bad.skipped) == 1


@pytest.mark.parametrize("name,head,good", [("a.csv", b"text,label\r\n", b"the cat,pos\r\n"),
                                            ("a.tsv", b"text\tlabel\r", b"the cat\tpos\r"),
                                            ("a.jsonl", b"", b'{"text": "the cat"}\n')])
def test_a_file_that_is_not_utf8_is_a_data_error_naming_its_line(tmp_path, name, head, good):
    """Text is decoded in blocks of thousands of bytes; the error names the bad byte's own line."""
    bad = good.replace(b"cat", b"caf\xe9")
    path = tmp_path / name
    for before in (0, 2000):
        path.write_bytes(head + good * before + bad + good)
        line = before + 1 + (head != b"")
        with pytest.raises(readers.DataError,
                           match=rf"{name}:{line}: not UTF-8 text \(byte 0xe9: invalid"):
            list(readers.read_rows(str(path)))
    path = tmp_path / "dev.json"
    path.write_bytes(b'{"data": [\n' + b'{"paragraphs": []},\n' * 2000 + b'"caf\xe9"]}\n')
    with pytest.raises(readers.DataError, match=r"dev\.json:2002: not UTF-8 text \(byte 0xe9"):
        squad_examples(path)


def text_examples(path, policy="error", kind="classification", labels=("neg", "pos"), **kw):
    """readers.text_examples on a file's rows with text/label columns; returns (examples, bad)."""
    bad = readers.BadRows(policy, "train")
    space = readers.LabelSpace(list(labels)) if kind != "regression" else None
    examples = readers.text_examples(readers.read_rows(str(path)), kind=kind, text_column="text",
                                     text_pair_column=None, label_column="label", labels=space,
                                     bad=bad, **kw)
    return examples, bad


@pytest.mark.parametrize("kind,row", [("classification", "the dog, big house,neg"),
                                      ("regression", "the mat,1,5")])
def test_a_row_with_more_fields_than_the_header_is_a_bad_row(tmp_path, kind, row):
    """An unquoted comma shifts the fields: which one is the label is unknown, so none is read."""
    path = write(tmp_path / "train.csv", f"text,label\nthe cat,1\n{row}\n")
    with pytest.raises(readers.DataError, match=r"train\.csv:3: 3 fields, the header has 2; a "
                                                r"field with a comma in it must be quoted \(to "):
        text_examples(path, kind=kind, labels=("1", "neg"))
    examples, bad = text_examples(path, "skip", kind=kind, labels=("1", "neg"))
    assert [e.text for e in examples] == ["the cat"] and len(bad.skipped) == 1
    # Prediction input (no labels read) too.
    path = write(tmp_path / "test.csv", "text\nthe dog, big house\nthe cat\n")
    examples, bad = text_examples(path, "skip", with_labels=False)
    assert [e.text for e in examples] == ["the cat"]
    assert bad.skipped == [f"{path}:2: 2 fields, the header has 1; a field with a comma in it "
                           "must be quoted"]
    path = write(tmp_path / "test.tsv", "text\tlabel\nthe\tdog\tneg\n")
    with pytest.raises(readers.DataError,
                       match=r"test\.tsv:2: 3 fields, the header has 2 \(to skip"):
        text_examples(path, with_labels=False)
    # A trailing delimiter (empty extra fields, as spreadsheets write) is no bad row.
    path = write(tmp_path / "trailing.csv", "text,label\nthe cat,1,\nthe dog,1, ,\n")
    examples, _ = text_examples(path, kind=kind, labels=("1", "neg"))
    assert [e.text for e in examples] == ["the cat", "the dog"]


@pytest.mark.parametrize("policy", ["error", "skip"])
def test_an_unterminated_quote_is_an_error_naming_its_line(tmp_path, policy):
    """A quote left open would read the rest of the file into one field: 3 rows would be 1."""
    path = write(tmp_path / "test.csv", 'text\nthe cat\n"the dog ran\nthe red house\nthe mat\n')
    with pytest.raises(readers.DataError,
                       match=r"test\.csv:3: unterminated quoted field starting at line 3 "):
        text_examples(path, policy, with_labels=False)
    # A closing quote followed by more text: csv would resume inside the record, so no skipping.
    path = write(tmp_path / "train.csv", 'text,label\n"he said "hi" to\nme",pos\nthe cat,pos\n')
    with pytest.raises(readers.DataError, match=r"train\.csv:2: malformed CSV in the row starting "
                                                r"at line 2 \(',' expected after '\"'\); a quote"):
        text_examples(path, policy)


def test_a_field_longer_than_csvs_default_limit_is_read(tmp_path):
    """csv's default limit is 128 KiB a field; a long text is data (truncated later), not an error."""
    long_text = "the cat " * 20000  # 160 000 characters
    path = write(tmp_path / "train.csv", f'text,label\n"{long_text}",pos\nthe dog,neg\n')
    examples, _ = text_examples(path)
    assert [len(e.text) for e in examples] == [len(long_text), 7]
    path = write(tmp_path / "train.tsv", f"text\tlabel\n{long_text}\tpos\n")
    assert len(text_examples(path)[0][0].text) == len(long_text)
    # Past whatever limit is set, csv's error names the file and line.
    limit = csv.field_size_limit(1000)
    try:
        with pytest.raises(readers.DataError, match=r"train\.tsv:2: malformed CSV in the row "
                                                    r"starting at line 2 \(field larger than"):
            text_examples(path)
    finally:
        csv.field_size_limit(limit)


@pytest.mark.parametrize("fields,reason", [
    ({"tokens": ["john"], "tags": 5}, "'tags' must be a list of tags, not int"),
    ({"tokens": ["john"], "tags": {"B-PER": 1}}, "'tags' must be a list of tags, not dict"),
    ({"tokens": ["john", "x"], "tags": ["B-PER", None]},
     "tag 1 in 'tags' must be a string or a number, not null"),
    ({"tokens": ["john", "x"], "tags": ["B-PER", ""]}, "tag 1 in 'tags' is blank"),
    ({"tokens": ["john", "x"], "tags": ["B-PER", ["O"]]},
     "tag 1 in 'tags' must be a string or a number, not list"),
    ({"tokens": ["john", "", " "], "tags": ["B-PER", "O", "O"]}, "word 1 in 'tokens' is blank"),
    ({"tokens": ["john", 7], "tags": ["B-PER", "O"]},
     "word 1 in 'tokens' must be a string, not int"),
    ({"tokens": "john", "tags": ["B-PER", "O"]}, "1 words but 2 tags"),
    ({"tokens": [], "tags": []}, "no words in 'tokens'"),
    ({"tokens": {"john": "B-PER"}, "tags": ["B-PER"]}, "'tokens' must be a list of words, not dict"),
])
def test_tagging_words_and_tags_must_be_lists_of_names(tmp_path, fields, reason):
    """Tags and words are lists of non-blank names (a tag may be a number: TFDS gives class ids),
    one tag a word; anything else is a bad row, not a crash, a "None" class or a "" class."""
    good = {"tokens": ["john", "lives"], "tags": ["B-PER", "O"]}
    path = write(tmp_path / "train.jsonl", "".join(json.dumps(r) + "\n" for r in [good, fields]))
    args = dict(tokens_column="tokens", tags_column="tags",
                labels=readers.LabelSpace(["B-PER", "O"]))
    with pytest.raises(readers.DataError, match=rf"train\.jsonl:2: {re.escape(reason)}"):
        readers.tagging_examples(readers.read_rows(path), bad=readers.BadRows("error", "t"), **args)
    bad = readers.BadRows("skip", "train")
    examples = readers.tagging_examples(readers.read_rows(path), bad=bad, **args)
    assert [e.label for e in examples] == [[0, 1]] and len(bad.skipped) == 1
    assert readers.tag_names([1, "O", 2.0], "tags") == ["1", "O", "2"]


@pytest.mark.parametrize("kind,fields,reason", [
    ("classification", {"text": {"a": 1}, "label": "pos"}, "'text' must be a string, not dict"),
    ("classification", {"text": ["the", "cat"], "label": "pos"},
     "'text' must be a string, not list"),
    ("classification", {"text": 5, "label": "pos"}, "'text' must be a string, not int"),
    ("classification", {"text": "a", "label": ["pos"]},
     "label in 'label' must be a string or a number, not list"),
    ("classification", {"text": "a", "label": float("nan")},
     "label in 'label' is nan, not a finite number"),
    ("regression", {"text": "a", "label": float("nan")},
     "label in 'label' is nan, not a finite number"),
    ("regression", {"text": "a", "label": True}, "label True in 'label' is not a number"),
    ("regression", {"text": "a", "label": [1.5]},
     "label in 'label' must be a string or a number, not list"),
    ("multilabel", {"text": "a", "label": ["pos", ["neg"]]},
     "label 1 in 'label' must be a string or a number, not list"),
    ("multilabel", {"text": "a", "label": {"pos": 1}},
     "label in 'label' must be a string or a number, not dict"),
])
def test_json_values_that_are_no_text_or_label_are_bad_rows(tmp_path, kind, fields, reason):
    """A text is a string, a label a string or a number (a multi-label field may be a list of
    them): a list or object is not read as its Python repr, NaN is no class or target."""
    path = write(tmp_path / "train.jsonl",
                 json.dumps({"text": "b", "label": "1"}) + "\n" + json.dumps(fields) + "\n")
    with pytest.raises(readers.DataError, match=rf"train\.jsonl:2: {re.escape(reason)} \(to skip"):
        text_examples(path, kind=kind, labels=("1", "neg", "pos"))
    examples, bad = text_examples(path, "skip", kind=kind, labels=("1", "neg", "pos"))
    assert [e.text for e in examples] == ["b"] and len(bad.skipped) == 1


def test_json_labels_may_be_strings_numbers_and_booleans(tmp_path):
    """Numbers and true/false name classes as before (true is "1": a binary target, as TFDS ids)."""
    rows = [{"text": "a", "label": True}, {"text": "b", "label": 0}, {"text": "c", "label": 1.0},
            {"text": "d", "label": " 0 "}]
    path = write(tmp_path / "train.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    assert [e.label for e in text_examples(path, labels=("0", "1"))[0]] == [1, 0, 1, 0]
    examples, bad = text_examples(path, "skip", kind="regression")  # true is no number
    assert [e.label for e in examples] == [0.0, 1.0, 0.0] and len(bad.skipped) == 1
    assert [readers.label_string(v) for v in (["a"], {"a": 1}, float("nan"), 2.5)] == [
        "", "", "", "2.5"]  # no class from the label-set scans
