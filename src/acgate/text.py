"""Tokenizer and vocabulary for the text path, built from the training texts alone.

No downloaded tokenizer or embedding is used: the scanned dataset *is* the training data, so the
vocabulary comes from it. The rules are fixed and simple, so that a saved vocabulary encodes
the same text to the same ids on any machine:

* :func:`tokenize` lowercases, maps typographic apostrophes and hyphens to ASCII, and splits
  into words (letters/digits joined by inner ``'`` or ``-``: ``"run-of-the-mill"``,
  ``"don't"``), words written with a leading hyphen after a space (``"-travelerthehorse"``, the
  paper's signature, stays one token) and single punctuation marks (``","``, ``"!"``).
* :func:`build_vocabulary` counts tokens, keeps those seen at least ``min_count`` times, the
  ``max_size`` most frequent (ties broken alphabetically), after the reserved ids
  :data:`PAD_ID` = 0 (``"<pad>"``) and :data:`UNK_ID` = 1 (``"<unk>"``).
* :meth:`Vocabulary.encode` turns texts into an ``int64`` matrix ``N x L``: token ids, unknown
  tokens as :data:`UNK_ID`, right-padded with :data:`PAD_ID`, truncated to ``L`` tokens. ``L``
  is the longest training text's token count, at most ``max_len_cap`` (default
  :data:`DEFAULT_MAX_LEN_CAP` = 256). Truncation is never silent: when texts are cut,
  :meth:`Vocabulary.encode` warns (:class:`TextTruncationWarning`) with how many texts were cut
  and the longest length, because a trigger placed after the ``L``-th token is never seen.
  Raise the cap with ``build_vocabulary(..., max_len_cap=...)``.

A :class:`Vocabulary` round-trips through JSON (:meth:`Vocabulary.to_json`,
:meth:`Vocabulary.from_json`, :meth:`Vocabulary.save`, :func:`load_vocabulary`), which is how a
scan stores it beside the proxy's weights (``vocab.json`` next to ``model.pt``).
"""

from __future__ import annotations

import json
import os
import re
import stat
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_MAX_LEN_CAP",
    "PAD_ID",
    "PAD_TOKEN",
    "TextTruncationWarning",
    "UNK_ID",
    "UNK_TOKEN",
    "Vocabulary",
    "build_vocabulary",
    "load_vocabulary",
    "tokenize",
]

#: Id of the padding token (its embedding row stays zero in :class:`acgate.torch.models.TextCNN`).
PAD_ID = 0
#: Id every token outside the vocabulary maps to.
UNK_ID = 1
PAD_TOKEN = "<pad>"
UNK_TOKEN = "<unk>"
#: Longest sequence :func:`build_vocabulary` picks by default (longer texts are truncated).
DEFAULT_MAX_LEN_CAP = 256
#: How a caller raises the cap (quoted in the truncation warning).
_RAISE_CAP_HINT = "build_vocabulary(..., max_len_cap=...) (acgate scan --max-tokens)"


class TextTruncationWarning(UserWarning):
    """Texts were longer than the sequence length and lost their last tokens when encoded."""
_FORMAT = "acgate-vocabulary/1"

# A word (inner ' or - allowed), a word with a leading hyphen at the start of the text or after
# whitespace (a signature such as "-travelerthehorse"), or one punctuation mark.
_TOKEN_RE = re.compile(r"(?<!\S)-\w+(?:['-]\w+)*|\w+(?:['-]\w+)*|[^\w\s]")
_NORMALISE = str.maketrans({"\u2019": "'", "\u2018": "'", "`": "'",
                            "\u2010": "-", "\u2011": "-"})


def tokenize(text: str) -> list[str]:
    """Split one text into lowercase tokens (see the module docstring for the rules).

    Args:
        text: The text.

    Returns:
        The tokens, in order. ``tokenize("A run-of-the-mill film! -travelerthehorse")`` is
        ``["a", "run-of-the-mill", "film", "!", "-travelerthehorse"]``.

    Raises:
        TypeError: When ``text`` is not a string.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a string, got {type(text).__name__}: {text!r:.80}")
    return _TOKEN_RE.findall(text.lower().translate(_NORMALISE))


def _checked_texts(texts: Iterable[str], what: str) -> list[str]:
    if isinstance(texts, (str, bytes)):
        raise TypeError(f"{what} must be a sequence of strings, not one string")
    checked = list(texts)
    for row, text in enumerate(checked):
        if not isinstance(text, str):
            raise TypeError(f"{what}[{row}] must be a string, got {type(text).__name__}: "
                            f"{text!r:.80}")
    return checked


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class Vocabulary:
    """Token ids: ``tokens[i]`` has id ``i``; ids 0 and 1 are padding and unknown.

    Attributes:
        tokens: Every token by id, starting with ``"<pad>"`` and ``"<unk>"``.
        max_len: Default sequence length of :meth:`encode`.
        min_count: The ``min_count`` the vocabulary was built with (recorded only).
        max_size: The ``max_size`` it was built with (recorded only; ``None``: unlimited).
    """

    tokens: tuple[str, ...]
    max_len: int = 64
    min_count: int = 1
    max_size: int | None = None
    _index: Mapping[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:  # noqa: D105
        tokens = tuple(self.tokens)
        if tokens[:2] != (PAD_TOKEN, UNK_TOKEN):
            raise ValueError(f"Vocabulary.tokens must start with {PAD_TOKEN!r}, {UNK_TOKEN!r}; "
                             f"got {list(tokens[:2])!r}")
        for position, token in enumerate(tokens):
            if not isinstance(token, str) or not token:
                raise TypeError(f"Vocabulary.tokens[{position}] must be a non-empty string, "
                                f"got {token!r}")
        index = {token: position for position, token in enumerate(tokens)}
        if len(index) != len(tokens):
            duplicate = next(t for t, n in Counter(tokens).items() if n > 1)
            raise ValueError(f"Vocabulary.tokens holds {duplicate!r} more than once")
        object.__setattr__(self, "tokens", tokens)
        object.__setattr__(self, "max_len", _positive_int(self.max_len, "max_len"))
        object.__setattr__(self, "min_count", _positive_int(self.min_count, "min_count"))
        if self.max_size is not None:
            object.__setattr__(self, "max_size", _positive_int(self.max_size, "max_size"))
        object.__setattr__(self, "_index", index)

    def __len__(self) -> int:  # noqa: D105
        return len(self.tokens)

    @property
    def size(self) -> int:
        """Number of ids, padding and unknown included (the embedding's ``vocab_size``)."""
        return len(self.tokens)

    def token_id(self, token: str) -> int:
        """Id of ``token``, or :data:`UNK_ID` when it is not in the vocabulary."""
        return self._index.get(token, UNK_ID)

    def encode(self, texts: Sequence[str], max_len: int | None = None) -> np.ndarray:
        """Token ids of texts, right-padded with :data:`PAD_ID` and truncated.

        Args:
            texts: ``N`` strings.
            max_len: Sequence length ``L`` (default :attr:`max_len`); longer texts lose their
                last tokens, with a :class:`TextTruncationWarning` saying how many texts were
                cut and the longest length.

        Returns:
            ``int64`` array ``N x L``. A text without any token encodes as one :data:`UNK_ID`
            followed by padding, so that every row holds at least one non-padding id.

        Raises:
            TypeError: When ``texts`` is one string or holds a non-string (the message gives
                the row).
            ValueError: When ``max_len`` is not a positive int.
        """
        length = self.max_len if max_len is None else _positive_int(max_len, "max_len")
        checked = _checked_texts(texts, "texts")
        ids = np.full((len(checked), length), PAD_ID, dtype=np.int64)
        n_cut, longest, first_cut = 0, 0, -1
        for row, text in enumerate(checked):
            tokens = tokenize(text)
            if len(tokens) > length:
                n_cut += 1
                longest = max(longest, len(tokens))
                first_cut = row if first_cut < 0 else first_cut
            row_ids = [self._index.get(token, UNK_ID) for token in tokens[:length]]
            ids[row, :len(row_ids)] = row_ids or [UNK_ID]
        if n_cut:
            warnings.warn(
                f"{n_cut} of {len(checked)} text(s) have more than {length} tokens (the longest "
                f"{longest}, first in row {first_cut}) and were truncated: tokens beyond the "
                f"first {length} (a trigger placed there) are never seen by the model; "
                f"raise the sequence length with {_RAISE_CAP_HINT} to keep them",
                TextTruncationWarning,
                stacklevel=2,
            )
        return ids

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (read back with :meth:`from_dict`)."""
        return {"format": _FORMAT, "tokens": list(self.tokens), "max_len": self.max_len,
                "min_count": self.min_count, "max_size": self.max_size}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Vocabulary:
        """Rebuild a vocabulary from :meth:`to_dict` output.

        Raises:
            ValueError: When the format tag is missing or unknown, or a field is bad.
        """
        if not isinstance(data, Mapping) or data.get("format") != _FORMAT:
            got = data.get("format") if isinstance(data, Mapping) else type(data).__name__
            raise ValueError(f"not an acgate vocabulary: expected format {_FORMAT!r}, got {got!r}")
        tokens = data.get("tokens")
        if not isinstance(tokens, list):
            raise ValueError(f"vocabulary 'tokens' must be a list, got {type(tokens).__name__}")
        return cls(tokens=tuple(tokens), max_len=data.get("max_len", 64),
                   min_count=data.get("min_count", 1), max_size=data.get("max_size"))

    def to_json(self) -> str:
        """The vocabulary as a JSON string."""
        return json.dumps(self.to_dict(), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> Vocabulary:
        """Rebuild a vocabulary from :meth:`to_json` output."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"vocabulary JSON does not parse: {error}") from error
        return cls.from_dict(data)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the vocabulary as UTF-8 JSON, atomically (temporary file, then replace)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            temporary.write_text(self.to_json(), encoding="utf-8")
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
        return path


def load_vocabulary(path: str | os.PathLike[str]) -> Vocabulary:
    """Read a vocabulary written by :meth:`Vocabulary.save`.

    Raises:
        FileNotFoundError: When the file does not exist.
        ValueError: When it is not a regular file (a named pipe is never opened) or not an
            acgate vocabulary (the message names the file).
    """
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} does not exist") from None
    if not stat.S_ISREG(mode):  # a named pipe would block the read forever: never open it
        raise ValueError(f"{path} is not a regular file; a vocabulary must be a JSON file")
    try:
        return Vocabulary.from_json(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from error


def build_vocabulary(
    texts: Sequence[str],
    *,
    min_count: int = 1,
    max_size: int | None = 20_000,
    max_len: int | None = None,
    max_len_cap: int = DEFAULT_MAX_LEN_CAP,
) -> Vocabulary:
    """Build a vocabulary from the training texts alone.

    Args:
        texts: The training texts.
        min_count: Keep tokens seen at least this many times. Default 1.
        max_size: Keep at most this many tokens (the most frequent; ties alphabetically), not
            counting padding and unknown. ``None``: no limit. Default 20,000.
        max_len: Default sequence length of :meth:`Vocabulary.encode`; ``None``: the longest
            text's token count, at most ``max_len_cap`` (so that a signature appended at the end
            of a text survives encoding).
        max_len_cap: Upper bound of the automatic ``max_len``. Default
            :data:`DEFAULT_MAX_LEN_CAP` (256). Texts longer than the resulting length are
            truncated by :meth:`Vocabulary.encode`, which warns when it happens
            (:class:`TextTruncationWarning`); raise the cap to keep late tokens.

    Returns:
        The :class:`Vocabulary`.

    Raises:
        TypeError: When ``texts`` is not a sequence of strings (the message gives the row).
        ValueError: When ``texts`` is empty or a size parameter is not a positive int.
    """
    checked = _checked_texts(texts, "texts")
    if not checked:
        raise ValueError("texts is empty; a vocabulary needs at least one training text")
    min_count = _positive_int(min_count, "min_count")
    if max_size is not None:
        max_size = _positive_int(max_size, "max_size")
    max_len_cap = _positive_int(max_len_cap, "max_len_cap")
    counts: Counter[str] = Counter()
    longest = 1
    for text in checked:
        tokens = tokenize(text)
        counts.update(tokens)
        longest = max(longest, len(tokens))
    kept = sorted((t for t, n in counts.items() if n >= min_count and t not in
                   (PAD_TOKEN, UNK_TOKEN)), key=lambda t: (-counts[t], t))
    if max_size is not None:
        kept = kept[:max_size]
    length = min(longest, max_len_cap) if max_len is None else _positive_int(max_len, "max_len")
    return Vocabulary(tokens=(PAD_TOKEN, UNK_TOKEN, *kept), max_len=length,
                      min_count=min_count, max_size=max_size)
