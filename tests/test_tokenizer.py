"""The WordPiece tokenizer gives the ids of transformers.BertTokenizer (the slow, reference one)."""

import json
import os

import pytest
import transformers

from bertjax.data import tokenizer as tokenizer_lib

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Le café est très chaud, n'est-ce pas? Élève, naïve, façade.",
    "Der Bär läuft über die Straße; Grüße aus München!",
    "El niño comió piñata — ¿verdad? ¡Sí!",
    "東京は日本の首都です。北京是中国的首都。",
    "Москва — столица России. Привет, мир!",
    "Η Αθήνα είναι η πρωτεύουσα της Ελλάδας.",
    "서울은 한국의 수도입니다. नमस्ते दुनिया",
    "Prices: $3.50, 20% off (today only) -- e-mail me@example.com #deal",
    "Quick QUICK quick, brown Brown BROWN: foxes jumped; dogs slept.",
]

PROBES = [
    "Héllo, Wörld! Ça va?",
    "naïve résumé façade Ångström",
    "中文字符和日本語のテキスト",
    "tab\there, newline\nthere\r\nand\x00null\x07bell\u200bzero-width",
    "punctuation!!! ... ?!? (brackets) [square] {curly} <angle> a-b_c/d\\e",
    "Мир, ΕΛΛΑΔΑ, Straße, ÉCOLE",
    "unknownword zzzzqqqq xylophone",
    "a" * 120 + " long",
    "",
    "   ",
    "mixed CASE Text With Acçénts",
    "emoji 🙂 and symbols € £ ¥ © ™",
    "The [MASK] sat on the [SEP] mat",
]


@pytest.fixture(scope="module", params=[True, False], ids=["uncased", "cased"])
def trained(request, tmp_path_factory):
    lowercase = request.param
    out = tmp_path_factory.mktemp("uncased" if lowercase else "cased_tok")
    tok = tokenizer_lib.train_wordpiece(iter(CORPUS * 3), vocab_size=300, lowercase=lowercase,
                                        out_dir=str(out))
    return lowercase, out, tok


def _slow(out, lowercase):
    """transformers' port of google-research/bert's tokenizer, set to Google's 200-character
    word limit (transformers' own default is 100)."""
    slow = transformers.BertTokenizer(os.path.join(out, "vocab.txt"), do_lower_case=lowercase)
    slow.wordpiece_tokenizer.max_input_chars_per_word = tokenizer_lib.MAX_WORD_CHARS
    return slow


def test_train_writes_vocab_and_json(trained):
    lowercase, out, tok = trained
    vocab = (out / "vocab.txt").read_text(encoding="utf-8").split("\n")[:-1]
    assert vocab[:5] == list(tokenizer_lib.SPECIAL_TOKENS)
    assert len(vocab) == tok.get_vocab_size(with_added_tokens=False) <= 300
    assert tok.token_to_id("[PAD]") == 0
    assert (out / "tokenizer.json").is_file()
    assert json.loads((out / "tokenizer_config.json").read_text())["do_lower_case"] is lowercase
    assert tokenizer_lib.tokenizer_lowercase(tok) is lowercase


@pytest.mark.parametrize("source", ["vocab.txt", "tokenizer.json", "dir"])
def test_ids_equal_slow_bert_tokenizer(trained, source):
    lowercase, out, _ = trained
    path = str(out) if source == "dir" else str(out / source)
    tok = tokenizer_lib.load_tokenizer(path)
    assert tokenizer_lib.tokenizer_lowercase(tok) is lowercase
    slow = _slow(out, lowercase)
    for text in PROBES + CORPUS:
        ours = tok.encode(text)
        ref = slow(text)
        assert ours.ids == ref["input_ids"], text
        assert ours.type_ids == ref["token_type_ids"], text
    for a, b in zip(PROBES, CORPUS):
        ours = tok.encode(a, b)
        ref = slow(a, b)
        assert ours.ids == ref["input_ids"], (a, b)
        assert ours.type_ids == ref["token_type_ids"], (a, b)


def test_accents_and_case_follow_lowercase(trained):
    lowercase, out, _ = trained
    tok = tokenizer_lib.load_tokenizer(str(out / "vocab.txt"))
    tokens = tok.encode("Élève").tokens
    if lowercase:
        assert "".join(t.lstrip("#") for t in tokens[1:-1]) == "eleve"
    else:
        assert "".join(t.lstrip("#") for t in tokens[1:-1]) in ("Élève", "[UNK]")


def test_handwritten_google_vocab_and_lowercase_guess(tmp_path):
    tokens = ["[PAD]", "[unused0]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "##s",
              ",", "!", "中", "文", "cafe", "Hello"]
    for name, expect in [("bert_uncased_L2", True), ("bert_cased_L2", False)]:
        d = tmp_path / name
        d.mkdir()
        (d / "vocab.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
        tok = tokenizer_lib.load_tokenizer(str(d))
        assert tokenizer_lib.tokenizer_lowercase(tok) is expect
        slow = transformers.BertTokenizer(str(d / "vocab.txt"), do_lower_case=expect)
        for text in ["Hello, worlds! 中文 Café", "HELLO hellos"]:
            assert tok.encode(text).ids == slow(text)["input_ids"]
    # No name hint: the vocabulary has an uppercase token -> cased; override wins.
    d = tmp_path / "plain"
    d.mkdir()
    (d / "vocab.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
    assert tokenizer_lib.tokenizer_lowercase(tokenizer_lib.load_tokenizer(str(d))) is False
    assert tokenizer_lib.tokenizer_lowercase(
        tokenizer_lib.load_tokenizer(str(d), lowercase=True)) is True


def test_words_up_to_200_characters_are_split_as_google_bert_does(tmp_path):
    """google-research/bert's WordpieceTokenizer gives up on words over 200 characters
    (transformers' copy: 100)."""
    (tmp_path / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nab\n##ab\n")
    tok = tokenizer_lib.load_tokenizer(str(tmp_path / "vocab.txt"), lowercase=True)
    assert tok.encode("ab" * 75, add_special_tokens=False).tokens == ["ab"] + ["##ab"] * 74
    assert tok.encode("ab" * 101, add_special_tokens=False).tokens == ["[UNK]"]


def test_save_roundtrip(trained, tmp_path):
    lowercase, _, tok = trained
    tokenizer_lib.save_tokenizer(tok, str(tmp_path))
    again = tokenizer_lib.load_tokenizer(str(tmp_path / "vocab.txt"))
    for text in PROBES:
        assert again.encode(text).ids == tok.encode(text).ids


def test_errors_name_the_file(tmp_path):
    with pytest.raises(tokenizer_lib.TokenizerError, match="no such file"):
        tokenizer_lib.load_tokenizer(str(tmp_path / "missing.txt"))
    with pytest.raises(tokenizer_lib.TokenizerError, match="no vocab.txt or tokenizer.json"):
        tokenizer_lib.load_tokenizer(str(tmp_path))
    bad = tmp_path / "vocab.txt"
    bad.write_text("[PAD]\nhello\n", encoding="utf-8")
    with pytest.raises(tokenizer_lib.TokenizerError, match=r"vocab.txt.*\[UNK\]"):
        tokenizer_lib.load_tokenizer(str(bad))
    dup = tmp_path / "dup.txt"
    dup.write_text("[UNK]\n[CLS]\n[SEP]\nhello\nhello\n", encoding="utf-8")
    with pytest.raises(tokenizer_lib.TokenizerError, match="line 5"):
        tokenizer_lib.load_tokenizer(str(dup))
    corrupt = tmp_path / "tokenizer.json"
    corrupt.write_text("{not json", encoding="utf-8")
    with pytest.raises(tokenizer_lib.TokenizerError, match="tokenizer.json"):
        tokenizer_lib.load_tokenizer(str(corrupt))


def test_training_gives_one_vocabulary_in_every_process(tmp_path):
    """Equally frequent words tie on nearly every merge, and four rare letters tie at the alphabet
    cut-off: tokenizers' own trainer breaks such ties by per-process hash order
    (huggingface/tokenizers#1794; five processes gave five vocabularies on this corpus)."""
    import random
    import subprocess
    import sys
    r = random.Random(0)
    words = ["".join(r.choice("abcdefghij") for _ in range(r.randint(3, 7))) for _ in range(3000)]
    words += ["x", "y", "z", "q"]
    r.shuffle(words)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(" ".join(words[i:i + 12]) for i in range(0, len(words), 12)))
    code = ("import sys; from bertjax.data import tokenizer as t; "
            "t.train_wordpiece([sys.argv[1]], 200, True, sys.argv[2], limit_alphabet=12)")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    vocabs = []
    for i in range(3):  # separate processes: each hashes with its own random seed
        out = tmp_path / f"vocab{i}"
        subprocess.run([sys.executable, "-c", code, str(corpus), str(out)], check=True,
                       timeout=120, env={**os.environ, "PYTHONPATH": root})
        vocabs.append((out / "vocab.txt").read_text(encoding="utf-8"))
    assert vocabs[0] == vocabs[1] == vocabs[2]
    vocab = vocabs[0].split("\n")[:-1]
    assert len(vocab) == 200 and vocab[:5] == list(tokenizer_lib.SPECIAL_TOKENS)
    # The 12-letter alphabet: the ten frequent letters, then of the four tied ones the lowest
    # code points.
    assert sorted(t for t in vocab if len(t) == 1) == list("abcdefghij") + ["q", "x"]


def test_training_refuses_an_empty_text(tmp_path):
    with pytest.raises(tokenizer_lib.TokenizerError, match="empty"):
        tokenizer_lib.train_wordpiece(iter(["", "   "]), 100, True, str(tmp_path))


def test_uncased_tokenizer_that_keeps_accents_matches_transformers(tmp_path):
    """do_lower_case=True with strip_accents=False (e.g. a multilingual uncased model that keeps
    its accents): transformers lowercases and keeps "é"; so must we, from every file it reads."""
    tokens = list(tokenizer_lib.SPECIAL_TOKENS) + [
        "café", "cafe", "résumé", "resume", "naïve", "naive", "élève", "eleve", "c", "a", "f",
        "e", "é", "r", "s", "u", "m", "n", "i", "ï", "v", "l", "##é", "##e", "##s", ",", "!"]
    src = tmp_path / "src"
    src.mkdir()
    (src / "vocab.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
    fast = transformers.BertTokenizerFast(str(src / "vocab.txt"), do_lower_case=True,
                                          strip_accents=False)
    fast.save_pretrained(str(src))
    texts = ["Café résumé, NAÏVE élève!", "CAFE Resume naive", "Élève"]
    reference = transformers.AutoTokenizer.from_pretrained(str(src))
    assert reference("Café")["input_ids"][1] == tokens.index("café")  # the accent is kept
    only_json, only_vocab = tmp_path / "only_json", tmp_path / "only_vocab"
    for d, keep in [(only_json, ("tokenizer.json",)),
                    (only_vocab, ("vocab.txt", "tokenizer_config.json"))]:
        d.mkdir()
        for name in keep:
            (d / name).write_bytes((src / name).read_bytes())
    loaded = {"dir": tokenizer_lib.load_tokenizer(str(src)),
              "tokenizer.json": tokenizer_lib.load_tokenizer(str(only_json)),
              "vocab.txt + tokenizer_config.json": tokenizer_lib.load_tokenizer(str(only_vocab))}
    saved = tmp_path / "saved"
    tokenizer_lib.save_tokenizer(loaded["dir"], str(saved))
    loaded["saved"] = tokenizer_lib.load_tokenizer(str(saved / "vocab.txt"))
    resaved = transformers.AutoTokenizer.from_pretrained(str(saved))
    for source, tok in loaded.items():
        assert tokenizer_lib.tokenizer_lowercase(tok) is True, source
        for text in texts:
            assert tok.encode(text).ids == reference(text)["input_ids"], (source, text)
            assert resaved(text)["input_ids"] == reference(text)["input_ids"], text
    # Cased on the command line: no lowercasing, and (strip_accents false) accents kept.
    cased = tokenizer_lib.load_tokenizer(str(src), lowercase=False)
    assert cased.encode("café Café").tokens[1] == "café"
