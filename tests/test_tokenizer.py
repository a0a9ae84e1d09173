"""The WordPiece tokenizer gives google-research/bert's tokens (a reference written out below, and
transformers' slow BertTokenizer, its port, where the two agree)."""

import collections
import json
import os
import random
import unicodedata

import pytest
import tokenizers
import transformers
from tokenizers import normalizers

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


def test_an_interrupted_save_leaves_the_directory_as_it_was(trained, tmp_path, monkeypatch):
    """Ctrl-C while a tokenizer is saved over another (vocab --overwrite) leaves the old files
    whole and together, and no temporary file: it used to leave a new vocab.txt beside the old
    tokenizer.json, or a cut-off vocab.txt."""
    _, _, tok = trained
    small_vocab = tokenizer_lib.train_wordpiece(iter(CORPUS), vocab_size=120, lowercase=True,
                                                out_dir=str(tmp_path / "small"))
    tokenizer_lib.save_tokenizer(tok, str(tmp_path / "run"))
    before = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()}

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(tokenizer_lib.json, "dump", interrupted)  # the last file written
    with pytest.raises(KeyboardInterrupt):
        tokenizer_lib.save_tokenizer(small_vocab, str(tmp_path / "run"))
    assert {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()} == before
    assert small_vocab.get_vocab_size() != tok.get_vocab_size()  # a save would have shown


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


# google-research/bert's tokenizer (tokenization.py: BasicTokenizer, then WordpieceTokenizer),
# written out here from its rules as the reference. transformers' slow BertTokenizer ports it but
# differs three ways: its tokenize() lowercases the text character by character first (so Σ is
# always σ); its BasicTokenizer deletes private-use (Co) and unassigned (Cn) characters too (its
# _is_control takes every category "C*") and puts the text in NFC first (which shows where accents
# are kept). So it serves only as a cross-check of this reference: its BasicTokenizer and
# WordpieceTokenizer called directly, on text without Co or Cn characters and already in NFC.

_GOOGLE_CJK = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
               (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))


def _google_deletes(c):
    return c in "\x00\ufffd" or (unicodedata.category(c) in ("Cc", "Cf") and c not in "\t\n\r")


def _google_space(c):
    return c in "\t\n\r" or unicodedata.category(c) == "Zs"


def _google_cjk(c):
    return any(lo <= ord(c) <= hi for lo, hi in _GOOGLE_CJK)


def _google_punctuation(c):
    ascii_symbol = 33 <= ord(c) <= 47 or 58 <= ord(c) <= 64 or 91 <= ord(c) <= 96 or (
        123 <= ord(c) <= 126)
    return ascii_symbol or unicodedata.category(c).startswith("P")


def _strip_accents(word):
    return "".join(c for c in unicodedata.normalize("NFD", word)
                   if unicodedata.category(c) != "Mn")


def _split_punctuation(word):
    """Each punctuation character is a word, and so is each run of other characters."""
    words, run = [], ""
    for c in word:
        if _google_punctuation(c):
            words += [run, c] if run else [c]
            run = ""
        else:
            run += c
    return words + [run] if run else words


def _google_words(text, lowercase, strip_accents=None):
    """BasicTokenizer: clean, space out CJK, split on whitespace, lowercase and strip accents each
    word, split off punctuation. strip_accents: transformers' override (Google strips exactly when
    lowercasing)."""
    text = "".join(" " if _google_space(c) else c for c in text if not _google_deletes(c))
    text = "".join(f" {c} " if _google_cjk(c) else c for c in text)
    strip = lowercase if strip_accents is None else strip_accents
    words = []
    for word in text.split():
        word = word.lower() if lowercase else word
        words += _split_punctuation(_strip_accents(word) if strip else word)
    return words


def _google_wordpiece(word, vocab):
    """Greedy longest match first, "##" inside a word; [UNK] for the whole word if a piece is
    missing or the word is longer than 200 characters."""
    if len(word) > tokenizer_lib.MAX_WORD_CHARS:
        return ["[UNK]"]
    pieces, start = [], 0
    while start < len(word):
        end = next((e for e in range(len(word), start, -1)
                    if ("##" if start else "") + word[start:e] in vocab), None)
        if end is None:
            return ["[UNK]"]
        pieces.append(("##" if start else "") + word[start:end])
        start = end
    return pieces


def _google_tokens(text, vocab, lowercase, strip_accents=None):
    return [piece for word in _google_words(text, lowercase, strip_accents)
            for piece in _google_wordpiece(word, vocab)]


def _write_vocab(vocab, directory):
    path = directory / "vocab.txt"
    path.write_text("".join(t + "\n" for t in sorted(vocab, key=vocab.get)), encoding="utf-8")
    return str(path)


def _words(pieces):
    """WordPiece pieces joined back into words ("##" pieces onto the one before)."""
    return "".join(p[2:] if p.startswith("##") else " " + p for p in pieces).strip()


def _slow_tokens(slow, text):
    return [piece for word in slow.basic_tokenizer.tokenize(text)
            for piece in slow.wordpiece_tokenizer.tokenize(word)]


def test_reference_agrees_with_transformers_slow_tokenizer_on_these_probes(tmp_path):
    """The reference above, checked against transformers' port of the same code."""
    vocab = {t: i for i, t in enumerate(list(tokenizer_lib.SPECIAL_TOKENS) + [
        "hello", "world", "##s", ",", "!", "中", "文", "cafe", "café", "Hello", "eleve", "##ve"])}
    _write_vocab(vocab, tmp_path)
    # Not the probe with [MASK] and [SEP] in it: transformers keeps special tokens whole, Google's
    # splits them as any text.
    texts = [t for t in PROBES + CORPUS if "[" not in t] + ["Hello, worlds! 中文 Café", "ÉLÈVE"]
    for lowercase in (True, False):
        slow = _slow(tmp_path, lowercase)
        for text in texts:
            assert _google_tokens(text, vocab, lowercase) == _slow_tokens(slow, text), text


# Characters to fuzz with: a sample of every general category (surrogates aside: `tokenizers`
# takes only valid UTF-8), and the ones each rule is about.
_HAND_PICKED = (
    "abcXYZ019 \t\n\r\x00\x01\x1f\x7f\x85\ufffd\u00a0\u2028\u2029\u3000\u200b\u200d\u00ad\ufeff"
    "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~¡¿«»‐–—…“”„\u166d\u2e53\u2e5d"  # punctuation, old and new
    "ΣσςΑΒΓΔΟΌΆάόαβγδ\u0370\u0345ʰᵃ\u02bc\u0387ǅ"  # Greek, and cased + case-ignorable characters
    "İıIiŞşßẞÉéÅåÑñ\u0301\u0308\u0327\u0898\u1ab0\U0001e4ec"  # Turkish, accents, newer Mn
    "\ue000\uf8ff\U000f0000\U0010fffd\u0378\ufdd0\uffff\U00040000\U000e0080"  # Co, Cn
    "가한ᄀ\u3042\u30a2")  # Hangul (NFD splits syllables), kana
_CJK_EDGES = "".join(chr(c) for lo, hi in _GOOGLE_CJK for c in (lo - 1, lo, hi, hi + 1)) + (
    "\U0002b820\U0002b8ff\U0002b91f\U0002b920\uf900\U0002f800")  # U+2B820-2B91F: HF's gap


def _category_sample(rng, per_category):
    by_category = collections.defaultdict(list)
    for cp in range(0x110000):
        if not 0xD800 <= cp <= 0xDFFF:
            by_category[unicodedata.category(chr(cp))].append(chr(cp))
    return [c for chars in by_category.values()
            for c in rng.sample(chars, min(per_category, len(chars)))]


def _same_in_both_unicode_versions(chars):
    """The characters whose properties this Python's unicodedata and `tokenizers` (its own,
    newer, Unicode data) agree on: Google's tokens are defined by the first, ours by the second,
    so a character assigned or recategorised in between would differ for that reason alone."""
    chars = [c for c in chars if c not in "\x00\x01"]

    def marked(pattern):  # one character for one: out[i] is chars[i] or its mark
        out = normalizers.Replace(tokenizers.Regex(pattern), "\x00").normalize_str("".join(chars))
        return [o == "\x00" for o in out]

    def mapped(normalizer):  # neither Lowercase nor NFD touches the separator
        return normalizer.normalize_str("\x01".join(chars)).split("\x01")

    def category(*names):
        return [unicodedata.category(c) in names for c in chars]

    # Python has no Cased / Case_Ignorable lookup, but str.lower() reveals them through Σ:
    # after "A" + c it is final iff c is cased or case-ignorable, after c alone iff c is cased
    # and not case-ignorable.
    cased_only = [(c + "Σ").lower()[-1] == "ς" for c in chars]
    ignorable = [("A" + c + "Σ").lower()[-1] == "ς" and not co for c, co in zip(chars, cased_only)]
    checks = [
        (marked(r"\p{Cc}"), category("Cc")), (marked(r"\p{Cf}"), category("Cf")),
        (marked(r"\p{Zs}"), category("Zs")), (marked(r"\p{Mn}"), category("Mn")),
        (marked(r"\p{Cn}"), category("Cn")), (marked(r"\p{Co}"), category("Co")),
        (marked(r"\p{P}"), [unicodedata.category(c).startswith("P") for c in chars]),
        (marked(r"[\p{Cased}&&\P{Case_Ignorable}]"), cased_only),
        (marked(r"\p{Case_Ignorable}"), ignorable),
        (mapped(normalizers.Lowercase()), [c.lower() for c in chars]),
        (mapped(normalizers.NFD()), [unicodedata.normalize("NFD", c) for c in chars])]
    same = [c for i, c in enumerate(chars) if all(ours[i] == py[i] for ours, py in checks)]
    return same + ["\x00", "\x01"]  # the marks used here: Cc in every version


def _fuzz_texts(seed=0, count=1500):
    """Random short texts, mostly letters (Greek capitals often) with separators, and a third of
    their characters from the whole pool, so that each rule meets the others."""
    rng = random.Random(seed)
    pool = _category_sample(rng, 40) + list(_HAND_PICKED + _CJK_EDGES)
    same = _same_in_both_unicode_versions(pool)
    assert len(same) > 0.9 * len(pool), "tokenizers' Unicode data is far from this Python's"
    letters = "ΣΣΣΣΑΟΌάσςʰaBİÉ\u0301"
    separators = " .'\u00ad\u200b\x01:\u0345-"
    texts = []
    for _ in range(count):
        n = rng.randint(0, 24)
        draws = rng.choices((letters, separators, same), weights=(4, 2, 3), k=n)
        texts.append("".join(rng.choice(chars) for chars in draws))
    return texts


def _vocab_for(texts, rng):
    """Every character the reference gives, alone and as "##" piece, and some whole words, with
    one character in ten left out so that [UNK] comes up too."""
    words = {w for t in texts for lowercase in (True, False) for w in _google_words(t, lowercase)}
    chars = sorted({c for w in words for c in w})
    chars = [c for c in chars if rng.random() > 0.1]
    extra = sorted(w for w in words if 1 < len(w) <= 4 and rng.random() < 0.3)
    tokens = list(tokenizer_lib.SPECIAL_TOKENS) + chars + ["##" + c for c in chars] + extra
    return {t: i for i, t in enumerate(dict.fromkeys(tokens))}


@pytest.fixture(scope="module")
def fuzz():
    texts = _fuzz_texts()
    return texts, _vocab_for(texts, random.Random(1))


@pytest.mark.parametrize("lowercase,strip_accents", [(True, None), (False, None), (True, False)],
                         ids=["uncased", "cased", "uncased-keeps-accents"])
def test_fuzzed_text_gives_google_bert_tokens(fuzz, lowercase, strip_accents):
    texts, vocab = fuzz
    tok = tokenizer_lib.from_vocab(vocab, lowercase, strip_accents=strip_accents)
    ours = tok.encode_batch(texts, add_special_tokens=False)
    for text, enc in zip(texts, ours):
        assert enc.tokens == _google_tokens(text, vocab, lowercase, strip_accents), ascii(text)


def test_fuzzed_reference_agrees_with_transformers_slow_tokenizer(fuzz, tmp_path):
    """Cross-check of the reference on the texts where transformers' port means to agree (see
    above: no private-use or unassigned characters, NFC)."""
    texts, vocab = fuzz
    _write_vocab(vocab, tmp_path)
    def meant_to_agree(text):
        cleaned = "".join(c for c in text if not _google_deletes(c))
        return unicodedata.normalize("NFC", cleaned) == cleaned and not any(
            unicodedata.category(c) in ("Co", "Cn") for c in text)

    kept = [t for t in texts if meant_to_agree(t)]
    assert len(kept) > len(texts) // 3
    for lowercase in (True, False):
        slow = _slow(tmp_path, lowercase)
        for text in kept:
            assert _slow_tokens(slow, text) == _google_tokens(text, vocab, lowercase), ascii(text)


def test_saved_tokenizer_gives_the_same_ids_in_transformers_fast_tokenizer(fuzz, tmp_path):
    texts, vocab = fuzz
    for lowercase in (True, False):
        tok = tokenizer_lib.from_vocab(vocab, lowercase)
        out = tmp_path / str(lowercase)
        tokenizer_lib.save_tokenizer(tok, str(out))
        fast = transformers.BertTokenizerFast.from_pretrained(str(out))
        assert fast(texts)["input_ids"] == [e.ids for e in tok.encode_batch(texts)]
        again = tokenizer_lib.load_tokenizer(str(out / "tokenizer.json"))
        assert tokenizer_lib.tokenizer_lowercase(again) is lowercase
        assert again.to_str() == tok.to_str()


def _encode_words(tok, text):
    return tok.encode(text, add_special_tokens=False).tokens


@pytest.fixture(scope="module")
def spelled():
    """A vocabulary that spells out every character the cases below give."""
    chars = sorted(set("abcxyzσςαοδιεʰ'.:-") | set("\ue000\U000f0000\u0378\U0002b820\U0002b91f"))
    tokens = list(tokenizer_lib.SPECIAL_TOKENS) + chars + ["##" + c for c in chars] + [
        "\U0002b820\U0002b91f"]
    return {t: i for i, t in enumerate(tokens)}


def test_private_use_and_unassigned_characters_stay_in_their_word(spelled):
    """Google's _clean_text deletes only Cc and Cf (BertNormalizer also deletes Co)."""
    tok = tokenizer_lib.from_vocab(spelled, lowercase=True)
    for text in ["a\ue000b", "a\U000f0000b", "a\u0378b"]:
        assert _encode_words(tok, text) == ["a", "##" + text[1], "##b"]
        assert _encode_words(tok, text) == _google_tokens(text, spelled, True)
    assert _encode_words(tok, "a\u200bb\x07c\ufffd") == ["a", "##b", "##c"]  # Cf, Cc, U+FFFD


@pytest.mark.parametrize("text,expect", [
    ("ΟΔΟΣ", "οδος"), ("ΟΔΟΣ.", "οδος ."), ("ΣΑΣ", "σας"), ("Σ", "σ"), ("Σ.Σ", "σ . ς"),
    ("ΑΣ'", "ας '"), ("Α'Σ", "α ' ς"), ("ΑΣʰ", "αςʰ"), ("ΑʰΣ", "αʰς"), ("ʰΣ", "ʰσ"),
    ("ΌΣ", "ος"), ("Ο\u0301Σ", "ος"), ("ΟΣ\u0301", "ος"),  # accents, composed and not
    ("Α\u00adΣΒ", "ασβ"), ("ΑΣ\u00adΒ", "ασβ"), ("ΑΣ\x01", "ας"), ("Α\x01Σ", "ας"),
    ("ΑΣ\x01Β", "ασβ"),
    ("İΣ", "iς"), ("ΑΣ 中", "ας 中"), ("ΑΣ\U0002b820", "ας \U0002b820"), ("1Σ", "1σ")])
def test_capital_sigma_lowercases_as_python_does(text, expect):
    """str.lower() (Google's) gives the final ς after a cased letter, skipping case-ignorable
    characters (' . ʰ and accents), unless a cased letter follows in the same way. Cleaning comes
    first: U+00AD and U+0001 are gone before lowercasing."""
    assert " ".join(_google_words(text, True)) == expect  # the reference is right about it
    chars = sorted(set(expect) - {" "})
    vocab = {t: i for i, t in enumerate(list(tokenizer_lib.SPECIAL_TOKENS) + chars
                                        + ["##" + c for c in chars])}
    tok = tokenizer_lib.from_vocab(vocab, lowercase=True)
    assert _words(_encode_words(tok, text)) == expect


def test_cjk_extension_e_characters_are_words(spelled):
    """U+2B820-U+2B91F are in Google's _is_chinese_char ranges (BertNormalizer's stop short)."""
    for lowercase in (True, False):
        tok = tokenizer_lib.from_vocab(spelled, lowercase)
        text = "a\U0002b820\U0002b91fb"
        assert _encode_words(tok, text) == ["a", "\U0002b820", "\U0002b91f", "b"]
        assert _encode_words(tok, text) == _google_tokens(text, spelled, lowercase)


def test_an_old_tokenizer_json_gets_the_google_normalizer_and_keeps_its_ids(spelled, tmp_path):
    """A tokenizer.json with a BertNormalizer (Hugging Face's; bertjax's own until 2026-11-22) is
    read for its vocabulary and settings; the normalizer is bertjax's."""
    old = tokenizers.Tokenizer(tokenizers.models.WordPiece(spelled, unk_token="[UNK]"))
    old.normalizer = normalizers.BertNormalizer(lowercase=True)
    old.pre_tokenizer = tokenizers.pre_tokenizers.BertPreTokenizer()
    old.save(str(tmp_path / "tokenizer.json"))
    tok = tokenizer_lib.load_tokenizer(str(tmp_path / "tokenizer.json"))
    assert tok.get_vocab() == spelled
    assert tokenizer_lib.tokenizer_lowercase(tok) is True
    assert tokenizer_lib.tokenizer_strip_accents(tok) is None
    assert _encode_words(tok, "ΟΔΟΣ a\ue000") == ["ο", "##δ", "##ο", "##ς", "a", "##\ue000"]


def _vocab_command(capsys, *args):
    """`python -m bertjax.data vocab ...` in process -> (exit code or 0, stderr)."""
    from bertjax.data import __main__ as data_main
    try:
        data_main.main(["vocab", *args])
        code = 0
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


def test_vocab_command_refuses_to_overwrite_a_tokenizer_a_workdir_or_a_file(tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(CORPUS) + "\n")
    out = tmp_path / "vocab"
    base = ["--corpus", str(corpus), "--vocab-size", "120", "--out"]
    assert _vocab_command(capsys, *base, str(out))[0] == 0
    before = (out / "vocab.txt").read_text()
    (out / "vocab.txt").write_text(before + "extra\n")
    code, err = _vocab_command(capsys, *base, str(out))
    assert code == 2 and err.startswith("error: --out ") and "vocab.txt" in err
    assert "--overwrite" in err and (out / "vocab.txt").read_text() == before + "extra\n"
    assert _vocab_command(capsys, *base, str(out), "--overwrite")[0] == 0
    assert (out / "vocab.txt").read_text() == before
    workdir = tmp_path / "run"
    (workdir / "checkpoints").mkdir(parents=True)
    code, err = _vocab_command(capsys, *base, str(workdir), "--overwrite")
    assert code == 2 and "training workdir" in err and str(workdir) in err
    assert os.listdir(workdir) == ["checkpoints"]
    for bad in (corpus, corpus / "sub"):  # a file, or a path under one
        code, err = _vocab_command(capsys, *base, str(bad))
        assert code == 2 and err.startswith(f"error: --out {bad}") and "Traceback" not in err
