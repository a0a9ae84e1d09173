"""Corpus readers: sentence splitting, file formats, bad input, builtin and TFDS sources."""

import os
import re

import pytest

from bertjax.data import corpus


def test_split_sentences_rules():
    text = ('Dr. Smith met J. R. Tolkien in the U.S. on Monday. He said "Hi!" Then they left? '
            "Yes. 3 cats came, e.g. the black one. done")
    assert corpus.split_sentences(text) == [
        "Dr. Smith met J. R. Tolkien in the U.S. on Monday.", 'He said "Hi!"', "Then they left?",
        "Yes.", "3 cats came, e.g. the black one. done"]
    assert corpus.split_sentences("  one sentence only  ") == ["one sentence only"]
    assert corpus.split_sentences("") == []
    assert corpus.split_sentences("第一句。第二句！第三句？") == ["第一句。", "第二句！", "第三句？"]


def test_bert_format_and_paragraphs(tmp_path):
    (tmp_path / "a.txt").write_text("First doc one.\nFirst doc two.\n\n\nSecond doc.\n")
    (tmp_path / "b.txt").write_text("A paragraph here. It has two sentences.\n\nAnother one.\n")
    c = corpus.open_corpus(str(tmp_path / "*.txt"))
    assert list(c.documents()) == [["First doc one.", "First doc two."], ["Second doc."],
                                   ["A paragraph here.", "It has two sentences."], ["Another one."]]
    assert not c.skipped.counts


def test_lines_as_sentences_reads_the_reference_format_as_it_stands(tmp_path):
    """split_lines=False: google-research/bert's reading, one segment per line, even where the
    splitter would cut it ("p.m. Then"); a new cache key, since the segments differ."""
    (tmp_path / "a.txt").write_text("He came at 5 p.m. Then he left.\n  Second line. \n\nNext.\n")
    split = corpus.open_corpus(str(tmp_path / "a.txt"))
    lines = corpus.open_corpus(str(tmp_path / "a.txt"), split_lines=False)
    assert list(lines.documents()) == [["He came at 5 p.m. Then he left.", "Second line."],
                                       ["Next."]]
    assert list(split.documents())[0] == ["He came at 5 p.m.", "Then he left.", "Second line."]
    assert lines.identity == split.identity + ":lines"
    with pytest.raises(ValueError, match="split_lines=False .* builtin corpus"):
        corpus.open_corpus("builtin", split_lines=False)


def test_bad_input_is_counted_and_good_text_survives(tmp_path, caplog):
    good_then_bad = b"Good one.\nGood two.\n\xff\xfe broken \xc3\x28 bytes\nGood three.\n\nNext doc.\n"
    (tmp_path / "1_mixed.txt").write_bytes(good_then_bad)
    (tmp_path / "2_binary.txt").write_bytes(b"\x00\x01\x02 binary \x00" * 100)
    (tmp_path / "3_empty.txt").write_bytes(b"")
    (tmp_path / "4_long.txt").write_bytes(b"Before long.\n" + b"x" * (10 * 2**20) + b"\nAfter long.\n")
    c = corpus.FileCorpus(str(tmp_path / "*.txt"), max_line_bytes=100_000)
    with caplog.at_level("INFO"):
        docs = list(c.documents())
    assert docs == [["Good one.", "Good two.", "Good three."], ["Next doc."],
                    ["Before long.", "After long."]]
    assert dict(c.skipped.counts) == {"invalid_utf8": 1, "binary_file": 1, "empty_file": 1,
                                      "line_too_long": 1}
    assert c.skipped.places["invalid_utf8"] == [f"{tmp_path / '1_mixed.txt'}:3"]
    assert c.skipped.places["line_too_long"] == [f"{tmp_path / '4_long.txt'}:2"]
    assert "binary_file: 1" in caplog.text and "2_binary.txt" in caplog.text


def test_no_files_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.data.corpus"):
        corpus.open_corpus(str(tmp_path / "nothing*.txt"))
    for spec in ("tfds:lm1b", "tfds::text", "tfds:lm1b:1.1.0"):
        with pytest.raises(ValueError, match=r"tfds:NAME\[:VERSION\]:FEATURE"):
            corpus.open_corpus(spec)


def test_a_directory_is_not_a_glob_and_the_vocab_command_names_its_flag(tmp_path, capsys):
    from bertjax.data import __main__ as data_main
    (tmp_path / "a.txt").write_text("Some text here.\n")
    with pytest.raises(FileNotFoundError, match=r"is a directory.*" + re.escape(
            repr(str(tmp_path / "*")))):
        corpus.open_corpus(str(tmp_path))
    for spec, expected in ((str(tmp_path), "is a directory"), ("tfds:lm1b", "tfds:NAME"),
                           (str(tmp_path / "none*.txt"), "no files match")):
        with pytest.raises(SystemExit) as exit_info:
            data_main.main(["vocab", "--corpus", spec, "--out", str(tmp_path / "v")])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and err.startswith(f"error: --corpus {spec}: "), err
        assert expected in err and "config.data" not in err
    assert not (tmp_path / "v").exists()


@pytest.mark.parametrize("spec,parsed", [
    ("tfds:lm1b:text", ("lm1b", "text", "train")),
    ("tfds:lm1b:text:train[:1%]", ("lm1b", "text", "train[:1%]")),
    ("tfds:wikipedia/20230601.en:text:train[10%:20%]+validation",
     ("wikipedia/20230601.en", "text", "train[10%:20%]+validation")),
    ("tfds:lm1b:1.1.0:text:test", ("lm1b:1.1.0", "text", "test")),
    ("tfds:lm1b:1.*.*:text", ("lm1b:1.*.*", "text", "train")),
])
def test_tfds_specs_take_versions_and_split_slices(spec, parsed):
    assert corpus.parse_tfds_spec(spec) == parsed


def test_identity_changes_with_content(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("One.\n")
    first = corpus.open_corpus(str(p)).identity
    p.write_text("One. Two.\n")
    os.utime(p, ns=(1, 1))
    assert corpus.open_corpus(str(p)).identity != first


def test_builtin_corpus_is_large_english_and_deterministic():
    docs = list(corpus.BuiltinCorpus().documents())
    text = "\n".join(s for d in docs for s in d)
    assert len(docs) > 1000 and len(text.encode()) > 1_000_000
    words = text.lower().split()
    common = sum(words.count(w) for w in ("the", "of", "a", "is", "to"))
    assert common / len(words) > 0.08  # English prose, not code
    assert not any(">>>" in s for d in docs for s in d)
    assert list(corpus.BuiltinCorpus().documents())[:50] == docs[:50]


def test_tfds_source_through_mock_data():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=7):
        c = corpus.open_corpus("tfds:lm1b:text:train")
        docs = list(c.documents())
        expected = [tfds.data_source("lm1b", split="train")[i]["text"] for i in range(7)]
    assert c.identity == "tfds:lm1b:text:train:n=7"
    got = [" ".join(d) for d in docs]
    assert len(docs) + c.skipped.counts["empty_document"] == 7
    assert got == [" ".join(corpus.split_sentences(t)) for t in expected if t.strip()]


def test_a_tfds_feature_the_dataset_lacks_is_named_with_the_features_it_has(tmp_path, capsys):
    """Refused when the corpus is opened, before a vocabulary is trained, naming the dataset,
    the feature and those it has; the data command prints it without a traceback."""
    tfds = pytest.importorskip("tensorflow_datasets")
    from bertjax.data import __main__ as data_main
    message = (r"config.data.corpus='tfds:mnist:nosuchfeature': the TFDS dataset mnist "
               r"\(split train\) has no feature 'nosuchfeature'; its features: image, label")
    with tfds.testing.mock_data(num_examples=2):
        with pytest.raises(corpus.CorpusError, match=message):
            corpus.open_corpus("tfds:mnist:nosuchfeature")
        with pytest.raises(SystemExit):
            data_main.main(["prepare", "--corpus", "tfds:mnist:nosuchfeature",
                            "--cache-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert "--corpus tfds:mnist:nosuchfeature: the TFDS dataset mnist" in err
    assert "Traceback" not in err and not list(tmp_path.iterdir())
