"""What a class's flagged rows have in common, for a reviewer telling a trigger from a style.

The detector decides from activations; a reviewer looks at the data. Poison rows share their
trigger, and nothing else: they are samples of their source classes wearing one pattern. So
the report shows, per class with flagged rows, what is left of them once their sources are
taken away:

- **Images** (:func:`mean_difference`): the mean of the flagged images minus, row by row, the
  mean kept image of the row's suspected source class (of its own class where no source is
  named). What the rows share stays; what differs from row to row averages out. A stamped
  patch, a blended pattern or a sinusoid stays as a spot or a texture of full strength; a
  natural group of the class (a writing style, a cut of garment) leaves an outline: its
  shape against the source's. :func:`strength` says how strong the difference is at its
  strongest pixel, :func:`concentration` how much of it the strongest few pixels hold (a
  patch: most), :func:`fine_grain` how much of it is fine grain (a blended or sinusoidal
  pattern: much; an outline: little).
- **Texts** (:func:`overrepresented_tokens`): the tokens in far more of the flagged texts
  than of the kept texts of their suspected sources (a signature: in all of the first, none
  of the second).

Neither decides anything: the gate acts on the detector's verdict. Pure numpy.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from acgate.core.result import NO_VALUE

#: :func:`concentration` measures the share of the difference held by this share of pixels.
TOP_PIXEL_SHARE = 0.02
#: A token is listed when it is in at least this share of the flagged texts ...
MIN_TOKEN_SUPPORT = 0.2
#: ... and in at least this many more percentage points of them than of the reference texts.
MIN_TOKEN_LIFT = 0.2


def mean_difference(images: np.ndarray, labels: np.ndarray, kept: np.ndarray,
                    rows: np.ndarray, sources: np.ndarray, label: int) -> np.ndarray | None:
    """The flagged rows of one class minus their sources, averaged (``C x H x W``).

    Args:
        images: ``N x C x H x W`` images of every row.
        labels: ``N`` labels.
        kept: ``N`` booleans, the rows no class flagged.
        rows: The class's flagged rows (positions).
        sources: Their suspected source classes (``NO_VALUE`` where none is named).
        label: The class.

    Returns:
        The mean of ``image - reference``, where a row's reference is the mean kept image of
        its suspected source (of ``label`` where none is named or the source has no kept
        row); ``None`` without flagged rows or without any reference.
    """
    if not len(rows):
        return None
    wanted = np.where(np.asarray(sources) == NO_VALUE, label, sources).astype(np.int64)
    means = {}
    for c in np.unique(np.append(wanted, label)).tolist():
        reference = kept & (labels == c)
        if reference.any():
            means[c] = images[reference].mean(axis=0)
    wanted = np.array([w if w in means else label for w in wanted.tolist()], dtype=np.int64)
    usable = np.isin(wanted, list(means))
    if not usable.any():
        return None
    total = np.zeros(images.shape[1:], dtype=np.float64)
    for row, source in zip(np.asarray(rows)[usable].tolist(), wanted[usable].tolist(),
                           strict=True):
        total += images[row] - means[source]
    return total / int(usable.sum())


def strength(difference: np.ndarray) -> float:
    """The difference at its strongest pixel: the most, over pixels, of its mean absolute value.

    Each pixel's magnitude is the mean over channels of the absolute difference (images in
    ``[0, 1]``), as in :func:`concentration`: a trigger of colour alone (more red, less green
    and blue) is not averaged away.

    Poison rows are samples of their source wearing a trigger: once the source is taken away,
    only the trigger is left, at full strength where it is stamped, faint where it is blended
    or warped in. A natural group differs from its suspected source by its whole shape.
    """
    return float(_magnitude(difference).max())


def concentration(difference: np.ndarray, top_share: float = TOP_PIXEL_SHARE) -> float:
    """The share of the difference's absolute mass in its top pixels.

    ``top_share`` of the pixels, at least one, by their magnitude (see :func:`strength`). A
    difference spread evenly gives about ``top_share``; a patch of that many pixels on an
    unchanged background gives about 1.
    """
    magnitude = _magnitude(difference).ravel()
    total = float(magnitude.sum())
    if total == 0.0:
        return 0.0
    count = max(1, int(round(top_share * magnitude.size)))
    return float(np.sort(magnitude)[-count:].sum() / total)


def fine_grain(difference: np.ndarray) -> float:
    """The share of the difference's energy that a 3x3 box blur removes (every channel).

    A blended or sinusoidal pattern changes neighbouring pixels differently (much of it is
    fine grain); the outline of a shape differs smoothly (little); a patch is in between. Each
    channel is blurred on its own and the energies summed, so a texture of colour counts too.
    """
    values = np.asarray(difference, dtype=np.float64)
    energy = float((values**2).sum())
    if energy == 0.0:
        return 0.0
    padded = np.pad(values, ((0, 0), (1, 1), (1, 1)), mode="edge")
    height, width = values.shape[1:]
    blurred = sum(padded[:, i:i + height, j:j + width] for i in range(3) for j in range(3)) / 9.0
    return float(((values - blurred) ** 2).sum() / energy)


def _magnitude(difference: np.ndarray) -> np.ndarray:
    """Per pixel, the mean over channels of the difference's absolute value (``H x W``)."""
    return np.abs(np.asarray(difference, dtype=np.float64)).mean(axis=0)


@dataclass(frozen=True)
class TokenLift:
    """A token over-represented among a class's flagged texts.

    Attributes:
        token: The token (as :func:`acgate.text.tokenize` splits texts).
        flagged_share: Share of the flagged texts holding it.
        reference_share: Share of the reference texts (the kept texts of the flagged rows'
            suspected sources, else of the class) holding it.
    """

    token: str
    flagged_share: float
    reference_share: float


def _document_shares(texts: Sequence[str]) -> dict[str, float]:
    """Per token, the share of ``texts`` that hold it."""
    from acgate.text import tokenize

    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(set(tokenize(text)))
    return {token: count / len(texts) for token, count in counts.items()} if texts else {}


def overrepresented_tokens(texts: Sequence[str], labels: np.ndarray, kept: np.ndarray,
                           rows: np.ndarray, sources: np.ndarray, label: int, *,
                           top: int = 5) -> list[TokenLift]:
    """The tokens in far more of a class's flagged texts than of their sources' kept texts.

    A token is listed when it is in at least :data:`MIN_TOKEN_SUPPORT` of the flagged texts
    and :data:`MIN_TOKEN_LIFT` more of them than of the reference texts; the ``top`` largest
    lifts first (ties: the token's order).

    Args:
        texts: ``N`` texts.
        labels: ``N`` labels.
        kept: ``N`` booleans, the rows no class flagged.
        rows: The class's flagged rows (positions).
        sources: Their suspected source classes (``NO_VALUE`` where none is named).
        label: The class.
        top: Most tokens listed.

    Returns:
        The tokens, largest lift first; empty when nothing stands out.
    """
    if not len(rows):
        return []
    sources = np.asarray(sources)
    named = sources[sources != NO_VALUE]
    reference_classes = np.unique(named) if len(named) else np.array([label])
    reference = np.flatnonzero(kept & np.isin(labels, reference_classes))
    flagged_shares = _document_shares([texts[r] for r in rows])
    reference_shares = _document_shares([texts[r] for r in reference])
    lifts = [TokenLift(token, share, reference_shares.get(token, 0.0))
             for token, share in flagged_shares.items()
             if share >= MIN_TOKEN_SUPPORT
             and share - reference_shares.get(token, 0.0) >= MIN_TOKEN_LIFT]
    lifts.sort(key=lambda t: (-(t.flagged_share - t.reference_share), t.token))
    return lifts[:top]
