"""WordPiece tokenization with the semantics of google-research/bert, on Hugging Face `tokenizers`.

A BERT tokenizer gives the tokens of google-research/bert's tokenization.py (BasicTokenizer, then
WordpieceTokenizer), built from `tokenizers`' own normalizers and pre-tokenizers only, so that it
serialises into a tokenizer.json that `transformers.BertTokenizerFast` loads as it is:

- normalizer: delete control (Cc) and format (Cf) characters, NUL and U+FFFD, keeping \t \n \r;
  turn \t \n \r and space separators (Zs) into a space. Private-use (Co) and unassigned (Cn)
  characters stay, as in Google's; Hugging Face's BertNormalizer deletes private-use ones.
  When lowercasing: Python's str.lower(), i.e. a capital sigma becomes the final form ς when the
  nearest character before it that is not case-ignorable is cased and the nearest one after it
  (if any) is not (BertNormalizer always gives σ). When stripping accents (after lowercasing, as
  Google does): NFD, then delete nonspacing marks (Mn).
- pre-tokenizer: split on whitespace (dropped), then make each punctuation character (category P,
  or ASCII other than letters and digits) and each CJK ideograph (Google's _is_chinese_char blocks,
  U+2B820-U+2B91F included, which BertNormalizer's handle_chinese_chars leaves out) a word.
- model: WordPiece ("##" continuation, [UNK] for words it cannot cover or longer than 200
  characters, Google's limit, for a tokenizer built from a vocab.txt or trained here; a
  tokenizer.json keeps the limit it was saved with, e.g. 100 in Hugging Face's and in bertjax's
  before 2026-11-22).
- post-processor: [CLS] A [SEP] (type ids 0) and B [SEP] (type ids 1) for pairs. The special
  tokens written in the text stay whole, as in transformers (Google's splits them like any text).

Character properties (categories, Cased, Case_Ignorable, case mappings, NFD) are those of the
Unicode version of `tokenizers` (16.0 in tokenizers 0.22), where Google's tokenizer uses its
Python's (e.g. 14.0 in Python 3.11): on characters assigned or recategorised between the two the
results can differ. BertNormalizer and BertPreTokenizer are not used: their categories are older
still (Unicode 8.0; later nonspacing marks stay, later punctuation does not split words).

On disk a tokenizer is a `vocab.txt` (one token per line, line number = id; Google's and HF's
format) and a `tokenizer.json` (the `tokenizers` serialisation), plus a `tokenizer_config.json`
with `do_lower_case` and `strip_accents` so that `transformers.BertTokenizerFast.from_pretrained`
agrees. (transformers' slow BertTokenizer agrees too, except that it gives up on words over 100
characters, deletes private-use and unassigned characters, lowercases every Σ to σ and puts the
text in NFC.) A tokenizer.json is read for its vocabulary, WordPiece settings and whether it
lowercases and strips accents (from bertjax's normalizer, or from a BertNormalizer: Hugging
Face's, and bertjax's own until 2026-11-22); its normalizer and pre-tokenizer are replaced by
the ones above. Vocabulary and ids stay; only text the old normalizer got wrong (see above) now
gets other tokens.
strip_accents None means "as lowercase" (google-research/bert's rule); a bool overrides it, as
transformers' strip_accents does, e.g. for an uncased model that keeps accents.
"""

from __future__ import annotations

import collections
import itertools
import json
import os
from typing import Callable, Iterable, Iterator

import tokenizers
from tokenizers import decoders, models, normalizers, pre_tokenizers, processors, trainers

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
MAX_WORD_CHARS = 200  # google-research/bert's max_input_chars_per_word (transformers: 100).


class TokenizerError(ValueError):
    """A tokenizer file that cannot be used; the message names the file and the problem."""


# google-research/bert's _clean_text: what it deletes and what it turns into a space (" " itself
# is left out of the second only because replacing it by itself is wasted work).
_DELETED = r"[\p{Cc}\p{Cf}\x{FFFD}&&[^\t\n\r]]"
_SPACES = r"[\t\n\r\p{Zs}&&[^ ]]"
# Python's str.lower() turns Σ into ς where CPython finds Unicode's Final_Sigma context: skipping
# case-ignorable characters, the nearest one before is cased and the nearest one after is not
# (or there is none). A character both cased and case-ignorable (e.g. ʰ) is skipped, so "cased"
# here is "cased and not case-ignorable". Lowercase() alone maps every Σ to σ.
_CASED = r"[\p{Cased}&&\P{Case_Ignorable}]"
_FINAL_SIGMA = (r"(?<=" + _CASED + r"\p{Case_Ignorable}*)\x{03A3}"
                r"(?!\p{Case_Ignorable}*" + _CASED + r")")
_NONSPACING_MARK = r"\p{Mn}"  # what Google's accent stripping deletes after NFD
# Google's _is_punctuation (category P, and all ASCII but letters, digits, space and controls)
# and _is_chinese_char (CJK ideograph blocks; BertNormalizer has 0x2B920 for 0x2B820 there).
_PUNCTUATION = r"!-/:-@\[-`{-~\p{P}"
_CJK = (r"\x{4E00}-\x{9FFF}\x{3400}-\x{4DBF}\x{20000}-\x{2A6DF}\x{2A700}-\x{2B73F}"
        r"\x{2B740}-\x{2B81F}\x{2B820}-\x{2CEAF}\x{F900}-\x{FAFF}\x{2F800}-\x{2FA1F}")


def _replace(pattern: str, content: str) -> normalizers.Normalizer:
    return normalizers.Replace(tokenizers.Regex(pattern), content)


def _normalizer(lowercase: bool, strip_accents: bool | None = None) -> normalizers.Normalizer:
    """google-research/bert's text cleaning, lowercasing and accent stripping (module docstring).

    strip_accents None strips exactly when lowercasing (Google's rule); a bool overrides it.
    """
    steps = [_replace(_DELETED, ""), _replace(_SPACES, " ")]
    if lowercase:  # after cleaning: a deleted control character no longer separates Σ from text
        steps += [_replace(_FINAL_SIGMA, "\u03c2"), normalizers.Lowercase()]
    if lowercase if strip_accents is None else strip_accents:
        steps += [normalizers.NFD(), _replace(_NONSPACING_MARK, "")]
    return normalizers.Sequence(steps)


def _pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    """Whitespace ends a word; each punctuation character and CJK ideograph is a word."""
    return pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(),
        pre_tokenizers.Split(tokenizers.Regex(f"[{_PUNCTUATION}{_CJK}]"), behavior="isolated")])


def _finish(tok: tokenizers.Tokenizer, lowercase: bool, where: str,
            strip_accents: bool | None = None) -> tokenizers.Tokenizer:
    """Sets normalizer, pre-tokenizer, post-processor and decoder to BERT's."""
    for special in ("[CLS]", "[SEP]", "[UNK]"):
        if tok.token_to_id(special) is None:
            raise TokenizerError(f"{where}: the vocabulary has no {special} token")
    tok.normalizer = _normalizer(lowercase, strip_accents)
    tok.pre_tokenizer = _pre_tokenizer()
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
    tok.decoder = decoders.WordPiece(prefix="##")
    # Special tokens written in the text stay whole, as in transformers.BertTokenizer.
    tok.add_special_tokens([t for t in SPECIAL_TOKENS if tok.token_to_id(t) is not None])
    return tok


def read_vocab(path: str) -> dict[str, int]:
    """vocab.txt (one token per line; the line number is its id) -> {token: id}."""
    vocab: dict[str, int] = {}
    try:
        with open(path, encoding="utf-8") as f:
            for i, line in enumerate(f):
                token = line.rstrip("\n").rstrip("\r")
                if token in vocab:
                    raise TokenizerError(
                        f"{path}, line {i + 1}: token {token!r} repeats line {vocab[token] + 1}")
                vocab[token] = i
    except UnicodeDecodeError as e:
        raise TokenizerError(f"{path}: not UTF-8 text ({e})") from None
    if not vocab:
        raise TokenizerError(f"{path}: the vocabulary is empty")
    return vocab


def from_vocab(vocab: dict[str, int], lowercase: bool, where: str = "vocab",
               strip_accents: bool | None = None) -> tokenizers.Tokenizer:
    """A BERT tokenizer over {token: id}; strip_accents None strips exactly when lowercasing."""
    if "[UNK]" not in vocab:
        raise TokenizerError(f"{where}: the vocabulary has no [UNK] token")
    model = models.WordPiece(vocab, unk_token="[UNK]", continuing_subword_prefix="##",
                             max_input_chars_per_word=MAX_WORD_CHARS)
    return _finish(tokenizers.Tokenizer(model), lowercase, where, strip_accents)


def _lowercase_from_vocab(vocab: Iterable[str]) -> bool:
    """Uncased vocabularies hold no uppercase letters outside [SPECIAL] tokens."""
    for token in vocab:
        if token.startswith("[") and token.endswith("]"):
            continue
        if token.lower() != token:
            return False
    return True


def _lowercase_from_name(path: str) -> bool | None:
    name = os.path.basename(os.path.normpath(os.path.abspath(path))).lower()
    if "uncased" in name:
        return True
    if "cased" in name:
        return False
    return None


def _hf_tokenizer_config(directory: str) -> dict:
    """tokenizer_config.json (HF) as a dict; {} when there is none."""
    config = os.path.join(directory, "tokenizer_config.json")
    if not os.path.isfile(config):
        return {}
    try:
        with open(config, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise TokenizerError(f"{config}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise TokenizerError(f"{config}: expected a JSON object, got {type(data).__name__}")
    return data


def _strip_accents_config(directory: str) -> bool | None:
    """strip_accents from tokenizer_config.json when it is a bool (null means: as lowercase)."""
    value = _hf_tokenizer_config(directory).get("strip_accents")
    return value if isinstance(value, bool) else None


def _lowercase_config(directory: str) -> bool | None:
    """do_lower_case from tokenizer_config.json (HF) or bertjax.json, if either says so."""
    value = _hf_tokenizer_config(directory).get("do_lower_case")
    if isinstance(value, bool):
        return value
    meta = os.path.join(directory, "bertjax.json")
    if os.path.isfile(meta):
        try:
            with open(meta, encoding="utf-8") as f:
                value = json.load(f).get("tokenizer", {}).get("lowercase")
        except (OSError, ValueError, AttributeError) as e:
            raise TokenizerError(f"{meta}: not valid JSON ({e})") from None
        if isinstance(value, bool):
            return value
    return None


def _normalizer_steps(tok: tokenizers.Tokenizer) -> list[dict]:
    """`tok`'s normalizer as a flat list of serialised steps (a Sequence's, or itself); read from
    the normalizer's own state, not from the whole tokenizer's (which carries the vocabulary)."""
    def flat(step: dict) -> list[dict]:
        if step.get("type") == "Sequence":
            return [s for inner in step.get("normalizers", []) for s in flat(inner)]
        return [step]
    return flat(json.loads(tok.normalizer.__getstate__())) if tok.normalizer is not None else []


def _strips_accents(step: dict) -> bool:
    return step.get("type") == "StripAccents" or (
        step.get("type") == "Replace" and step.get("pattern") == {"Regex": _NONSPACING_MARK})


def normalizer_settings(tok: tokenizers.Tokenizer) -> tuple[bool, bool | None]:
    """(lowercase, strip_accents) of `tok`'s normalizer, bertjax's or a BertNormalizer.

    strip_accents: None when it strips exactly as it lowercases, else a bool overriding that (a
    BertNormalizer's own strip_accents setting, when it has one)."""
    steps = _normalizer_steps(tok)
    lowercase = any(step.get("type") == "Lowercase"
                    or (step.get("type") == "BertNormalizer" and bool(step.get("lowercase")))
                    for step in steps)
    for step in steps:
        if step.get("type") == "BertNormalizer":
            value = step.get("strip_accents")
            return lowercase, value if isinstance(value, bool) else None
    strips = any(_strips_accents(step) for step in steps)
    return lowercase, None if strips == lowercase else strips


def tokenizer_lowercase(tok: tokenizers.Tokenizer) -> bool:
    """Whether `tok` lowercases (see normalizer_settings)."""
    return normalizer_settings(tok)[0]


def tokenizer_strip_accents(tok: tokenizers.Tokenizer) -> bool | None:
    """Whether `tok` strips accents (see normalizer_settings)."""
    return normalizer_settings(tok)[1]


# The files a directory's tokenizer is read from, in load_tokenizer's order of preference.
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")


def tokenizer_file(directory: str) -> str | None:
    """The file load_tokenizer(directory) reads: tokenizer.json, else vocab.txt; None if neither."""
    return next((os.path.join(directory, f) for f in TOKENIZER_FILES
                 if os.path.isfile(os.path.join(directory, f))), None)


def holds_tokenizer(directory: str) -> bool:
    """Whether directory has the files load_tokenizer reads (vocab.txt or tokenizer.json)."""
    return tokenizer_file(directory) is not None


def num_ids(tok: tokenizers.Tokenizer) -> int:
    """How many embedding rows `tok` needs: its highest id + 1 (added tokens included)."""
    return max(tok.get_vocab(with_added_tokens=True).values()) + 1


def bundled_dir(path: str) -> str | None:
    """The tokenizer that came with a model or run directory: PATH/tokenizer/ (a training
    workdir's), else PATH itself (a bertjax, Hugging Face or Google model directory); None when
    neither holds one."""
    return next((d for d in (os.path.join(path, "tokenizer"), path) if holds_tokenizer(d)), None)


def load_tokenizer(path: str, lowercase: bool | None = None,
                   strip_accents: bool | None = None) -> tokenizers.Tokenizer:
    """A vocab.txt, a tokenizer.json, or a directory with either -> a BERT tokenizer.

    lowercase: None guesses, in order, from tokenizer_config.json's do_lower_case, the
    tokenizer.json normalizer, the directory name (uncased/cased), then the vocabulary (no
    uppercase token -> uncased). A given value overrides all of these.
    strip_accents: None reads tokenizer_config.json's strip_accents, then the tokenizer.json
    normalizer's; where neither holds a bool, accents are stripped exactly when lowercasing.
    """
    if os.path.isdir(path):
        if lowercase is None:
            lowercase = _lowercase_config(path)
        if strip_accents is None:
            strip_accents = _strip_accents_config(path)
        found = tokenizer_file(path)
        if found is None:
            raise TokenizerError(f"{path}: no vocab.txt or tokenizer.json in this directory")
        return load_tokenizer(found, lowercase, strip_accents)
    if not os.path.isfile(path):
        raise TokenizerError(f"{path}: no such file")
    if path.endswith(".json"):
        try:
            tok = tokenizers.Tokenizer.from_file(path)
        except Exception as e:  # tokenizers raises its own Exception subclass.
            raise TokenizerError(f"{path}: not a tokenizers JSON file ({e})") from None
        if type(tok.model).__name__ != "WordPiece":
            raise TokenizerError(
                f"{path}: model is {type(tok.model).__name__}, bertjax needs WordPiece")
        own_lowercase, own_strip_accents = normalizer_settings(tok)
        lowercase = own_lowercase if lowercase is None else lowercase
        strip_accents = own_strip_accents if strip_accents is None else strip_accents
        return _finish(tok, lowercase, path, strip_accents)
    vocab = read_vocab(path)
    directory = os.path.dirname(os.path.abspath(path))
    if lowercase is None:
        lowercase = _lowercase_config(directory)
        if lowercase is None:
            lowercase = _lowercase_from_name(directory)
    if lowercase is None:
        lowercase = _lowercase_from_vocab(vocab)
    if strip_accents is None:
        strip_accents = _strip_accents_config(directory)
    return from_vocab(vocab, lowercase, path, strip_accents)


def save_tokenizer(tok: tokenizers.Tokenizer, out_dir: str, model_max_length: int = 512) -> None:
    """Writes out_dir/{vocab.txt, tokenizer.json, tokenizer_config.json}.

    model_max_length: what transformers truncates to; pass the model's max_position_embeddings
    when saving next to a model (512, BERT's, for a vocabulary saved on its own).
    """
    os.makedirs(out_dir, exist_ok=True)
    vocab = tok.get_vocab(with_added_tokens=False)
    by_id = sorted(vocab.items(), key=lambda kv: kv[1])
    if [i for _, i in by_id] != list(range(len(by_id))):
        raise TokenizerError("tokenizer ids are not contiguous from 0; cannot write vocab.txt")
    lowercase, strip_accents = normalizer_settings(tok)
    hf_config = {"tokenizer_class": "BertTokenizer", "do_lower_case": lowercase,
                 "strip_accents": strip_accents, "tokenize_chinese_chars": True,
                 "model_max_length": model_max_length, "unk_token": "[UNK]", "sep_token": "[SEP]",
                 "pad_token": "[PAD]", "cls_token": "[CLS]", "mask_token": "[MASK]"}
    # Every file is written in full beside its final name, then all are renamed into place: an
    # interrupted save (Ctrl-C, a full disk) leaves the directory as it was, never a cut-off
    # vocab.txt or a vocab.txt of one vocabulary beside the tokenizer.json of another.
    names = ("vocab.txt", "tokenizer.json", "tokenizer_config.json")
    tmp = {name: os.path.join(out_dir, f".{name}.tmp") for name in names}
    try:
        with open(tmp["vocab.txt"], "w", encoding="utf-8") as f:
            f.writelines(token + "\n" for token, _ in by_id)
        tok.save(tmp["tokenizer.json"])
        with open(tmp["tokenizer_config.json"], "w", encoding="utf-8") as f:
            json.dump(hf_config, f, indent=2)
    except BaseException:
        for path in tmp.values():
            if os.path.exists(path):
                os.remove(path)
        raise
    for name in names:
        os.replace(tmp[name], os.path.join(out_dir, name))


def _texts(paths: list[str]) -> Iterator[str]:
    for path in paths:
        if not os.path.isfile(path):
            raise TokenizerError(f"{path}: no such corpus file")
        with open(path, encoding="utf-8", errors="replace") as f:
            yield from f


def _line_source(texts: list[str] | Callable[[], Iterable[str]] | Iterable[str]
                 ) -> Callable[[], Iterator[str]]:
    """A function returning a fresh iterator over the training lines (training reads them 3x)."""
    if callable(texts):
        return lambda: iter(texts())
    if isinstance(texts, (list, tuple)):
        paths = list(texts)
        return lambda: _texts(paths)
    lines = list(texts)
    return lambda: iter(lines)


def _alphabet(lines: Iterator[str], normalizer: normalizers.Normalizer, limit: int) -> list[str]:
    """The `limit` most frequent characters of the normalized text, ties by code point.

    Whitespace (which the pre-tokenizer drops) is not counted, so the counts are those of the
    characters of the words the trainer sees.
    """
    counts: collections.Counter = collections.Counter()
    for chunk in iter(lambda: list(itertools.islice(lines, 1024)), []):
        counts.update(normalizer.normalize_str("\n".join(chunk)))
    chars = sorted(((c, n) for c, n in counts.items() if not c.isspace()),
                   key=lambda cn: (-cn[1], cn[0]))
    return sorted(c for c, _ in chars[:limit])


def _trained(lines: Iterator[str], lowercase: bool, vocab_size: int, min_frequency: int,
             special_tokens: list[str], alphabet: list[str]) -> tokenizers.Tokenizer:
    tok = tokenizers.Tokenizer(models.WordPiece(unk_token="[UNK]", continuing_subword_prefix="##",
                                                max_input_chars_per_word=MAX_WORD_CHARS))
    tok.normalizer = _normalizer(lowercase)
    tok.pre_tokenizer = _pre_tokenizer()
    # The alphabet is given and kept whole: limit_alphabet = its size keeps exactly these chars.
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=special_tokens,
        initial_alphabet=alphabet, limit_alphabet=len(alphabet), continuing_subword_prefix="##",
        show_progress=False)
    tok.train_from_iterator(lines, trainer=trainer)
    return tok


def train_wordpiece(texts: list[str] | Callable[[], Iterable[str]] | Iterable[str],
                    vocab_size: int, lowercase: bool, out_dir: str, *, min_frequency: int = 1,
                    limit_alphabet: int = 1000) -> tokenizers.Tokenizer:
    """Trains a BERT WordPiece vocabulary and writes out_dir/vocab.txt and tokenizer.json.

    texts: a list of text-file paths, a function returning a fresh iterable of text lines (e.g.
    `corpus.texts`; it is called three times), or any other iterable of lines (held in memory).
    The special tokens come first: [PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4.

    The same texts give the same vocab.txt in every process. tokenizers' own trainer does not
    (huggingface/tokenizers#1794): it numbers the "##c" pieces in hash-map order, which changes
    from process to process, and breaks ties between equally frequent merges by those numbers;
    its alphabet cut-off also breaks count ties arbitrarily. So the alphabet is chosen here (the
    limit_alphabet most frequent characters, ties by code point), a first pass with no merges finds
    which "##c" pieces occur, and the real pass gets them, sorted, as tokens with fixed ids. The
    merges themselves are tokenizers' BPE-style WordPiece training.
    """
    if vocab_size <= len(SPECIAL_TOKENS):
        raise TokenizerError(f"vocab_size={vocab_size} leaves no room beyond the special tokens")
    lines = _line_source(texts)
    alphabet = _alphabet(lines(), _normalizer(lowercase), limit_alphabet)
    if not alphabet:
        raise TokenizerError("the training text is empty: no characters to build a vocabulary")
    special = list(SPECIAL_TOKENS)
    first = _trained(lines(), lowercase, 1, min_frequency, special, alphabet)
    pieces = sorted(t for t in first.get_vocab(with_added_tokens=False)
                    if t.startswith("##") and len(t) == 3)
    tok = _trained(lines(), lowercase, vocab_size, min_frequency, special + pieces, alphabet)
    # Rebuild from the learnt vocabulary so a trained and a loaded tokenizer are the same object.
    tok = from_vocab(tok.get_vocab(with_added_tokens=False), lowercase, "trained vocabulary")
    save_tokenizer(tok, out_dir)
    return tok
