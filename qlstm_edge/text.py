"""Text for sequence classifiers: a simple tokenizer, a size-limited vocabulary, and an IMDB-folder loader.

The loader reads the standard IMDB review layout (the ``aclImdb`` folder of the Large Movie Review
Dataset, which you download yourself; nothing is fetched here)::

    aclImdb/train/pos/*.txt   aclImdb/train/neg/*.txt
    aclImdb/test/pos/*.txt    aclImdb/test/neg/*.txt

Labels are 1 for ``pos`` and 0 for ``neg``. Encoding pads on the left (``<pad>`` = 0), so a classifier
that reads the last step reads the document's last kept token.
"""
from __future__ import annotations

import json
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import torch

from ._io import atomic_path

PAD, UNK = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1
LABELS = {"neg": 0, "pos": 1}
SPLITS = ("train", "test")

_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[!?]")

PathLike = Union[str, os.PathLike]


class DatasetLayoutError(ValueError):
    """A data folder that does not have the expected layout or content; the message names the problem."""


def tokenize(text: str) -> List[str]:
    """Lower-case words (with an inner apostrophe: ``don't``), numbers, and ``!``/``?``; HTML line breaks
    (``<br />``, common in IMDB reviews) count as spaces; every other character separates tokens."""
    return _TOKEN.findall(_BREAK.sub(" ", text).lower())


@dataclass(frozen=True)
class Vocabulary:
    """Token <-> id map. Ids 0 and 1 are ``<pad>`` and ``<unk>``; the rest are ordered by frequency
    (most frequent first, ties alphabetical), so building from the same texts always gives the same ids."""

    tokens: Tuple[str, ...]

    def __post_init__(self):
        if self.tokens[:2] != (PAD, UNK):
            raise ValueError(f"a vocabulary starts with {PAD!r}, {UNK!r}; got {list(self.tokens[:2])}")
        if len(set(self.tokens)) != len(self.tokens):
            raise ValueError("vocabulary tokens must be unique")
        object.__setattr__(self, "_ids", {t: i for i, t in enumerate(self.tokens)})

    @classmethod
    def build(cls, documents: Iterable[Sequence[str]], max_size: int, min_freq: int = 1) -> "Vocabulary":
        """The ``max_size - 2`` most frequent tokens seen at least ``min_freq`` times, plus the two specials."""
        if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 3:
            raise ValueError(f"max_size must be an integer >= 3 (two specials plus at least one token), "
                             f"got {max_size!r}")
        if min_freq < 1:
            raise ValueError(f"min_freq must be >= 1, got {min_freq}")
        counts = Counter()
        for doc in documents:
            if isinstance(doc, str):
                raise TypeError("Vocabulary.build takes tokenized documents (lists of tokens); "
                                "call tokenize(text) first")
            counts.update(doc)
        for special in (PAD, UNK):
            counts.pop(special, None)
        ranked = sorted((t for t, n in counts.items() if n >= min_freq), key=lambda t: (-counts[t], t))
        return cls((PAD, UNK, *ranked[:max_size - 2]))

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: str) -> bool:
        return token in self._ids

    def id(self, token: str) -> int:
        return self._ids.get(token, UNK_ID)

    def encode(self, tokens: Sequence[str]) -> List[int]:
        return [self._ids.get(t, UNK_ID) for t in tokens]

    def decode(self, ids: Iterable[int]) -> List[str]:
        return [self.tokens[i] for i in ids]

    def to_dict(self) -> Dict[str, object]:
        return {"format": "qlstm_edge.vocabulary", "tokens": list(self.tokens)}

    def save(self, path: PathLike) -> Path:
        path = Path(path)
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(self.to_dict(), ensure_ascii=False) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: PathLike) -> "Vocabulary":
        path = Path(path)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: not a readable vocabulary file ({e})") from None
        if not isinstance(doc, dict) or doc.get("format") != "qlstm_edge.vocabulary" \
                or not isinstance(doc.get("tokens"), list):
            raise ValueError(f"{path}: not a qlstm-edge vocabulary (expected a JSON object with "
                             f"format 'qlstm_edge.vocabulary' and a 'tokens' list)")
        return cls(tuple(doc["tokens"]))


def encode_documents(documents: Sequence[Sequence[str]], vocab: Vocabulary, length: int,
                     keep: str = "head") -> torch.Tensor:
    """Token lists -> ids [N, length] int64. Longer documents are truncated (``keep="head"`` keeps the
    first ``length`` tokens, ``"tail"`` the last); shorter ones are padded with ``<pad>`` on the left."""
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise ValueError(f"length must be a positive integer, got {length!r}")
    if keep not in ("head", "tail"):
        raise ValueError(f"keep must be 'head' or 'tail', got {keep!r}")
    out = torch.full((len(documents), length), PAD_ID, dtype=torch.int64)
    for n, doc in enumerate(documents):
        ids = vocab.encode(doc[:length] if keep == "head" else doc[-length:])
        if ids:
            out[n, length - len(ids):] = torch.tensor(ids, dtype=torch.int64)
    return out


def _imdb_root(root: Path) -> Path:
    if not root.is_dir():
        raise DatasetLayoutError(f"{root}: no such folder (expected the IMDB 'aclImdb' folder with "
                                 f"train/ and test/, each holding pos/ and neg/ folders of .txt reviews)")
    if not any((root / s).is_dir() for s in SPLITS) and (root / "aclImdb").is_dir():
        return root / "aclImdb"
    return root


def load_imdb(root: PathLike, split: str = "train", limit: Optional[int] = None) -> Tuple[List[str], List[int]]:
    """Read ``root/<split>/{pos,neg}/*.txt`` -> (texts, labels), neg files first, each sorted by name.

    ``root`` is the ``aclImdb`` folder (or the folder that contains it). ``limit``: at most this many
    reviews per label (the first by file name), for quick runs. Every file must be UTF-8.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1 (reviews per label), got {limit}")
    root = _imdb_root(Path(root))
    split_dir = root / split
    if not split_dir.is_dir():
        raise DatasetLayoutError(f"{root}: no {split}/ folder (expected {root}/{split}/pos and "
                                 f"{root}/{split}/neg holding .txt reviews)")
    texts, labels = [], []
    for name, label in sorted(LABELS.items(), key=lambda kv: kv[1]):
        folder = split_dir / name
        if not folder.is_dir():
            raise DatasetLayoutError(f"{split_dir}: no {name}/ folder (expected {split_dir}/pos and "
                                     f"{split_dir}/neg holding .txt reviews)")
        files = sorted(p for p in folder.iterdir() if p.suffix == ".txt" and p.is_file())
        if not files:
            raise DatasetLayoutError(f"{folder}: no .txt review files")
        for path in files[:limit]:
            try:
                texts.append(path.read_bytes().decode("utf-8"))
            except UnicodeDecodeError as e:
                raise DatasetLayoutError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason})") from None
            labels.append(label)
    return texts, labels


def imdb_tensors(root: PathLike, vocab_size: int = 20000, length: int = 256, limit: Optional[int] = None,
                 keep: str = "head"):
    """IMDB folder -> (x_train, y_train, x_test, y_test, vocab): the vocabulary is built on train only."""
    train_texts, train_y = load_imdb(root, "train", limit)
    test_texts, test_y = load_imdb(root, "test", limit)
    train_tok = [tokenize(t) for t in train_texts]
    vocab = Vocabulary.build(train_tok, max_size=vocab_size)
    x_train = encode_documents(train_tok, vocab, length, keep)
    x_test = encode_documents([tokenize(t) for t in test_texts], vocab, length, keep)
    return x_train, torch.tensor(train_y), x_test, torch.tensor(test_y), vocab
