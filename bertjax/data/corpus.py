"""Corpus readers: raw text -> documents, each a list of sentences (str).

Three sources, chosen by `config.data.corpus`:

  "builtin"                      English text shipped with Python: the pydoc topics and the docstrings
                                 of a fixed list of standard-library modules (no download).
  "tfds:NAME[:VERSION]:FEATURE[:SPLIT]"  one TFDS record = one document, e.g.
                                 "tfds:wikipedia/20230601.en:text" or "tfds:lm1b:1.1.0:text:train[:10%]".
  any other string               a glob of plain-text files.

Text files follow google-research/bert's format: one sentence per line, a blank line between
documents. Lines that hold a whole paragraph are split into sentences by `split_sentences`, so
ordinary prose (paragraphs separated by blank lines; each paragraph then is a document) works too.
With `split_lines=False` (config.data.split_lines) every line is one sentence as it stands, as
google-research/bert's create_pretraining_data reads its format: for a corpus already split into
sentences that reproduces the reference's segments exactly (the splitter may cut a line again, at
"p.m. Then"). The same holds for the lines of a TFDS record.

Bad input never stops a run and never takes good text down with it: a binary file (a NUL byte in its
first 8 KiB), an empty file, a line of invalid UTF-8 or a line longer than `max_line_bytes` is skipped
and counted in `SkipReport` (count per reason, with the files and line numbers); the rest of the file
is read as usual.
"""

from __future__ import annotations

import collections
import dataclasses
import glob as globlib
import hashlib
import importlib
import inspect
import json
import logging
import os
import re
import subprocess
import sys
import warnings
from typing import Iterator

Document = list[str]  # sentences of one document, in order

log = logging.getLogger(__name__)

# --- sentence splitting -----------------------------------------------------------------------------

# Words after which a period does not end a sentence (lowercased, without the period).
ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st vs etc e.g i.e cf al fig figs no nos vol eq approx dept est inc ltd "
    "co corp jan feb mar apr jun jul aug sep sept oct nov dec u.s u.k ph.d op cit resp ca".split())
# A candidate boundary: terminal punctuation, optional closing quotes/brackets, then whitespace.
_BOUNDARY = re.compile(r"[.!?]+[\"'\u201d\u2019)\]]*\s+")
_CJK_BOUNDARY = re.compile(r"(?<=[\u3002\uff01\uff1f])")  # after 。！？


def split_sentences(text: str) -> list[str]:
    """Splits a paragraph into sentences with a small rule-based splitter.

    A sentence ends at '.', '!' or '?' (plus any closing quotes/brackets) followed by whitespace and a
    capital letter, a digit or an opening quote/bracket -- except after a known abbreviation
    (`ABBREVIATIONS`) or a single-letter initial ("J. Smith"). CJK text also splits after 。！？.
    A line that is already one sentence comes back unchanged (stripped).
    """
    text = text.strip()
    if not text:
        return []
    out, start = [], 0
    for m in _BOUNDARY.finditer(text):
        end = m.end()
        if end >= len(text):
            break
        nxt = text[end]
        if not (nxt.isupper() or nxt.isdigit() or nxt in "\"'(\u201c\u2018["):
            continue
        if text[m.start()] == ".":
            word = text[start:m.start()].rsplit(None, 1)[-1] if text[start:m.start()].strip() else ""
            word = word.lstrip("\"'(\u201c\u2018[").lower()
            if word in ABBREVIATIONS or (len(word) == 1 and word.isalpha()):
                continue
        out.append(text[start:end].strip())
        start = end
    out.append(text[start:].strip())
    sentences = []
    for s in out:
        sentences.extend(p.strip() for p in _CJK_BOUNDARY.split(s) if p.strip())
    return sentences


def _sentences(line: str, split: bool) -> list[str]:
    """One corpus line -> its sentences: split_sentences, or the stripped line as one sentence."""
    if split:
        return split_sentences(line)
    line = line.strip()
    return [line] if line else []


_LINES_TAG = ":lines"


def _lines_tag(split_lines: bool) -> str:
    """Part of a corpus identity (and so of the cache key); empty for the default."""
    return "" if split_lines else _LINES_TAG


class CorpusError(ValueError):
    """A config.data.corpus spec that names no usable corpus; the message names the field."""


# --- skip accounting --------------------------------------------------------------------------------

@dataclasses.dataclass
class SkipReport:
    """What was skipped and why: counts per reason and up to `max_examples` places per reason."""

    counts: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    places: dict = dataclasses.field(default_factory=lambda: collections.defaultdict(list))
    max_examples: int = 5

    def skip(self, reason: str, where: str) -> None:
        self.counts[reason] += 1
        if len(self.places[reason]) < self.max_examples:
            self.places[reason].append(where)

    def summary(self) -> str:
        if not self.counts:
            return "corpus: nothing skipped"
        parts = [f"{reason}: {n} ({', '.join(self.places[reason])}"
                 f"{', ...' if n > len(self.places[reason]) else ''})"
                 for reason, n in sorted(self.counts.items())]
        return "corpus: skipped " + "; ".join(parts)

    def as_dict(self) -> dict:
        return {r: {"count": n, "examples": list(self.places[r])} for r, n in self.counts.items()}


# --- sources ----------------------------------------------------------------------------------------

class Corpus:
    """A source of documents. `identity` names the exact content (used in cache keys)."""

    identity: str
    skipped: SkipReport

    @property
    def words_identity(self) -> str:
        """The identity of the corpus's words, whatever the sentence splitting: a WordPiece
        vocabulary counts words, so split_lines does not change it (the vocabulary's cache key)."""
        return self.identity.removesuffix(_LINES_TAG)

    def documents(self) -> Iterator[Document]:
        raise NotImplementedError

    def texts(self) -> Iterator[str]:
        """Every sentence, for tokenizer training."""
        for doc in self.documents():
            yield from doc

    def _report_skipped(self) -> None:
        """Logs what a pass over the documents skipped, once per distinct report (tokenizer
        training and example preparation each read the corpus, and the reports repeat)."""
        summary = self.skipped.summary()
        if summary != getattr(self, "_reported", None):
            log.info(summary)
            self._reported = summary


def _paragraph_document(text: str) -> Document:
    """Free text with blank-line paragraphs -> one document; code-like paragraphs are dropped.

    After removing the common indentation, a paragraph is dropped when all its lines are indented or
    it holds a '>>>' prompt (code examples in docstrings and pydoc topics); the rest is reflowed onto
    one line and sentence-split.
    """
    sentences: Document = []
    for para in re.split(r"\n\s*\n", inspect.cleandoc(text)):
        lines = [ln for ln in para.split("\n") if ln.strip()]
        if not lines or ">>>" in para or all(ln[:1].isspace() for ln in lines):
            continue
        sentences.extend(split_sentences(" ".join(ln.strip() for ln in lines)))
    return sentences


class FileCorpus(Corpus):
    """A glob of UTF-8 text files, google-research/bert's format or plain paragraphs."""

    def __init__(self, pattern: str, max_line_bytes: int = 1_000_000, split_lines: bool = True):
        self.split_lines = split_lines
        self.paths = sorted(globlib.glob(os.path.expanduser(pattern), recursive=True))
        self.paths = [p for p in self.paths if os.path.isfile(p)]
        if not self.paths:
            if os.path.isdir(os.path.expanduser(pattern)):
                raise FileNotFoundError(
                    f"config.data.corpus={pattern!r}: is a directory, not a file glob; give its "
                    f"files, e.g. {os.path.join(pattern, '*')!r} or "
                    f"{os.path.join(pattern, '**', '*.txt')!r}")
            raise FileNotFoundError(f"config.data.corpus={pattern!r}: no files match")
        self.max_line_bytes = max_line_bytes
        self.skipped = SkipReport()
        h = hashlib.sha256()
        for p in self.paths:
            st = os.stat(p)
            h.update(f"{os.path.abspath(p)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        self.identity = f"files:{pattern}:{h.hexdigest()[:16]}" + _lines_tag(split_lines)

    def documents(self) -> Iterator[Document]:
        self.skipped = SkipReport()
        for path in self.paths:
            yield from self._read(path)
        self._report_skipped()

    def _read(self, path: str) -> Iterator[Document]:
        with open(path, "rb") as f:
            head = f.read(8192)
            if not head:
                self.skipped.skip("empty_file", path)
                return
            if b"\0" in head:
                self.skipped.skip("binary_file", path)
                return
            f.seek(0)
            doc: Document = []
            lineno = 0
            while True:
                raw = f.readline(self.max_line_bytes + 1)
                if not raw:
                    break
                lineno += 1
                if len(raw) > self.max_line_bytes and not raw.endswith(b"\n"):
                    while raw and not raw.endswith(b"\n"):  # drain the rest of the long line
                        raw = f.readline(1 << 20)
                    self.skipped.skip("line_too_long", f"{path}:{lineno}")
                    continue
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError:
                    self.skipped.skip("invalid_utf8", f"{path}:{lineno}")
                    continue
                if not line.strip():
                    if doc:
                        yield doc
                    doc = []
                    continue
                doc.extend(_sentences(line, self.split_lines))
            if doc:
                yield doc


class TfdsCorpus(Corpus):
    """A TFDS text dataset: one record = one document; newlines separate paragraphs."""

    def __init__(self, name: str, feature: str, split: str = "train", split_lines: bool = True):
        self.name, self.feature, self.split = name, feature, split
        self.split_lines = split_lines
        self.skipped = SkipReport()
        self._source = None
        # The name as given: pin a version in the spec (NAME:1.0.0) to tie the cache to it.
        self.identity = (f"tfds:{name}:{feature}:{split}:n={len(self._data())}"
                         + _lines_tag(split_lines))
        self._check_feature()

    def _check_feature(self) -> None:
        """CorpusError unless the records have the feature: found when the corpus is opened,
        not after a vocabulary was trained on nothing or in the middle of a preparation."""
        data = self._data()
        features = sorted(data[0]) if len(data) else []
        if features and self.feature not in features:
            raise CorpusError(
                f"the TFDS dataset {self.name} (split {self.split}) has no feature "
                f"{self.feature!r}; its features: {', '.join(features)}. Name one of them: "
                "tfds:NAME[:VERSION]:FEATURE[:SPLIT]")

    def _data(self):
        if self._source is None:
            import tensorflow_datasets as tfds  # slow import, only when asked for
            try:
                self._source = tfds.data_source(self.name, split=self.split)
            except Exception as e:  # noqa: BLE001 -- fall back to the tf.data reader
                log.info("tfds.data_source(%s) failed (%s); using tfds.load", self.name, e)
                self._source = list(tfds.as_numpy(tfds.load(self.name, split=self.split)))
        return self._source

    def documents(self) -> Iterator[Document]:
        self.skipped = SkipReport()
        data = self._data()
        for i in range(len(data)):
            record = data[i]
            where = f"{self.name}[{self.split}][{i}]"
            text = record[self.feature]  # every record has the features of the first
            if isinstance(text, bytes):
                try:
                    text = text.decode("utf-8")
                except UnicodeDecodeError:
                    self.skipped.skip("invalid_utf8", where)
                    continue
            doc = [s for line in str(text).split("\n") for s in _sentences(line, self.split_lines)]
            if doc:
                yield doc
            else:
                self.skipped.skip("empty_document", where)
        self._report_skipped()


# A fixed list, walked in this order: the builtin corpus is the same on every run of a Python version.
BUILTIN_MODULES = (
    "builtins sys time array binascii zlib unicodedata cmath gc marshal select signal errno "
    "abc argparse ast asyncio base64 bisect calendar codecs collections concurrent.futures "
    "configparser contextlib contextvars copy copyreg csv ctypes dataclasses datetime decimal difflib doctest email enum "
    "fractions ftplib functools getopt getpass graphlib gettext glob gzip hashlib heapq hmac html http.client http.server "
    "imaplib importlib inspect io ipaddress itertools json locale logging lzma mailbox math "
    "multiprocessing numbers operator optparse os pathlib pickle pickletools platform poplib pprint "
    "queue random re sched secrets selectors shelve shlex shutil smtplib socket socketserver sqlite3 "
    "ssl statistics string struct subprocess tarfile tempfile textwrap threading timeit tokenize "
    "trace traceback typing unittest urllib.parse urllib.request uuid warnings wave weakref "
    "xml.dom.minidom xml.etree.ElementTree xml.sax xmlrpc.client zipapp zipfile zoneinfo "
    "email.message email.utils email.headerregistry http.cookiejar http.cookies urllib.robotparser "
    "wsgiref.simple_server wsgiref.handlers tomllib stat filecmp fnmatch linecache reprlib bz2 "
    "zipimport pkgutil runpy symtable token keyword cProfile profile pstats pdb bdb cmd code codeop "
    "colorsys mimetypes quopri plistlib netrc").split()


def _walk_builtin() -> Iterator[tuple[str, str]]:
    """The builtin corpus' raw texts; run by BuiltinCorpus.raw_texts in a fresh interpreter."""
    from pydoc_data import topics
    for key in sorted(topics.topics):
        yield f"pydoc_data.topics[{key}]", topics.topics[key]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in BUILTIN_MODULES:
            try:
                module = importlib.import_module(name)
            except ImportError:
                continue
            if isinstance(module.__doc__, str):
                yield name, module.__doc__
            for attr, obj in sorted(vars(module).items()):
                if not (inspect.isclass(obj) or inspect.isroutine(obj)):
                    continue
                home = getattr(obj, "__module__", None) or ""
                if home != module.__name__ and not home.startswith(module.__name__ + "."):
                    continue
                if isinstance(obj.__doc__, str):
                    yield f"{name}.{attr}", obj.__doc__
                if inspect.isclass(obj):
                    for m_name, member in sorted(vars(obj).items()):
                        if inspect.isroutine(member) and isinstance(member.__doc__, str):
                            yield f"{name}.{attr}.{m_name}", member.__doc__


class BuiltinCorpus(Corpus):
    """English text that ships with Python: pydoc topics, then stdlib docstrings (fixed order).

    Each pydoc topic and each docstring (module, class, function, method) is one document.
    """

    def __init__(self):
        self.skipped = SkipReport()
        self.identity = f"builtin:v2:python{sys.version.split()[0]}"
        self._walked: str | None = None  # the walk's output, kept for later passes (~10 MB)

    def raw_texts(self) -> Iterator[tuple[str, str]]:
        """(where, text) for every topic and docstring, in a fixed order.

        The walk runs in a fresh interpreter: a module's namespace depends on what else the
        process has imported (lazily cached attributes, threads importing in the background), so
        walking it inside a training process gave a different corpus from run to run.
        """
        if self._walked is None:
            root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
            code = ("import json, sys; sys.path.insert(0, sys.argv[1]); "
                    "from bertjax.data.corpus import _walk_builtin; "
                    "[print(json.dumps(item)) for item in _walk_builtin()]")
            self._walked = subprocess.run(
                [sys.executable, "-c", code, root], capture_output=True, text=True, check=True,
                env={**os.environ, "PYTHONHASHSEED": "0"}).stdout
        for line in self._walked.splitlines():
            where, text = json.loads(line)
            yield where, text

    def documents(self) -> Iterator[Document]:
        self.skipped = SkipReport()
        seen = set()
        for where, text in self.raw_texts():
            if text in seen:  # re-exported or inherited docstrings appear once
                self.skipped.skip("duplicate", where)
                continue
            seen.add(text)
            doc = _paragraph_document(text)
            if doc:
                yield doc
            else:
                self.skipped.skip("no_prose", where)
        self._report_skipped()


# A TFDS version pinned after the name: "wikipedia/20230601.en:1.0.0", "lm1b:1.*.*".
_TFDS_VERSION = re.compile(r"[\d*]+\.[\d*]+\.[\d*]+(?=:|$)")


def parse_tfds_spec(spec: str) -> tuple[str, str, str]:
    """"tfds:NAME[:VERSION]:FEATURE[:SPLIT]" -> (name[:version], feature, split).

    The split is everything after the feature, so TFDS's slicing and joining syntax works as it
    is ("train[:1%]", "train[10%:20%]+validation"); default "train"."""
    rest = spec[len("tfds:"):]
    name, _, rest = rest.partition(":")
    version = _TFDS_VERSION.match(rest)
    if version:
        name, rest = f"{name}:{version.group()}", rest[version.end() + 1:]
    feature, _, split = rest.partition(":")
    if not name or not feature:
        raise CorpusError(f"config.data.corpus={spec!r}: expected tfds:NAME[:VERSION]:FEATURE[:SPLIT]"
                         " (e.g. tfds:lm1b:text:train[:1%])")
    return name, feature, split or "train"


def open_corpus(spec: str, max_line_bytes: int = 1_000_000, split_lines: bool = True) -> Corpus:
    """config.data.corpus -> a Corpus (see the module docstring for the forms).

    split_lines: config.data.split_lines, for files and TFDS records (see the module docstring)."""
    if not spec:
        raise CorpusError("config.data.corpus is empty; use 'builtin', a file glob or "
                         "'tfds:NAME[:VERSION]:FEATURE[:SPLIT]'")
    if spec == "builtin":
        if not split_lines:
            raise CorpusError("config.data.split_lines=False reads a file or TFDS corpus line by "
                             "line; the builtin corpus has no lines to keep (docstrings are "
                             "reflowed): leave it True")
        return BuiltinCorpus()
    if spec.startswith("tfds:"):
        name, feature, split = parse_tfds_spec(spec)
        try:
            return TfdsCorpus(name, feature, split, split_lines=split_lines)
        except CorpusError as e:
            raise CorpusError(f"config.data.corpus={spec!r}: {e}") from None
    return FileCorpus(spec, max_line_bytes, split_lines)
