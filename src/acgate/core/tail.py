"""The class's tail: poison that no cluster of the class isolates.

All-to-one poison at 1% of the data, a blended or a sinusoid trigger, or several source classes
into one target do not always form a k-means cluster or a mode of one principal direction of
the target class; what they always are is *unusual* for it: rows far from the class's centre.
Exclusionary reclassification therefore also leaves each class's tail (the :data:`TAIL_SHARE`
of its rows farthest from its centre, in whitened reduced space) out of its one retrain and
looks at where the retrained model sends those rows:

- a **flip** is a tail row sent to another class confidently (:data:`TAIL_CONFIDENCE`) as a
  typical member of it (:data:`TAIL_TYPICALITY`, the same measure as the several-sources rule):
  poison rows are genuine samples of their source classes; atypical clean rows of the class
  either stay, or go elsewhere hesitantly, or land between classes;
- a flip is **cohesive** when at least :data:`TAIL_COHESION` of its :data:`TAIL_NEIGHBOURS`
  nearest neighbours in the class are flips too: poison shares its trigger and forms a clump
  in the class's activations, while the few clean rows a retrain misclassifies are scattered
  among rows it keeps;
- the **clump** is the tail rows sent away amid cohesive flips: at least :data:`TAIL_CLUMP` of
  their neighbours are cohesive flips. A clean class's hard cases make a few cohesive flips
  here and there (up to 65 in a 2,247-row MNIST class) but seldom a clump (at most 30); a
  poisoned class's flips are one clump (126-196 rows at 1% of MNIST);
- the tail is **poison** when its clump holds at least :data:`TAIL_MIN_COHESIVE` rows and at
  least :data:`TAIL_MIN_COHESIVE_SHARE` of the class. The rows flagged are the tail rows sent
  away within the clump's reach (:data:`TAIL_REACH` of their neighbours cohesive flips), not
  every tail row sent away: the class's ordinary hard cases stay unflagged.

Measured in ``bench/RESULTS.md`` ("attack_matrix", variant ``default``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from sklearn.neighbors import NearestNeighbors

#: The share of each class, farthest from its centre, left out of the retrain as its tail.
TAIL_SHARE = 0.2
#: Group id of a class's tail among the retrain's groups (candidates count from 0).
TAIL_GROUP = -1
#: A flip is sent elsewhere with at least this probability ...
TAIL_CONFIDENCE = 0.85
#: ... as a row at least this typical of the receiving class (see
#: :data:`acgate.core.exre.MULTI_SOURCE_TYPICALITY`).
TAIL_TYPICALITY = 0.05
#: Neighbours (within the class, in whitened reduced space) looked at for cohesion ...
TAIL_NEIGHBOURS = 10
#: ... of which at least this share must be flips for a flip to be cohesive.
TAIL_COHESION = 0.5
#: A tail row sent away is in the clump when at least this share of its neighbours are
#: cohesive flips ...
TAIL_CLUMP = 0.5
#: ... and flagged (the tail being poison) when at least this share are.
TAIL_REACH = 0.3
#: The tail is poison with a clump of at least this many rows ...
TAIL_MIN_COHESIVE = 10
#: ... and at least this share of the class.
TAIL_MIN_COHESIVE_SHARE = 0.02


def whitened(reduced: np.ndarray) -> np.ndarray:
    """The reduced activations, centred and scaled to unit variance per component.

    The reducers' components are uncorrelated (PCA) or independent (ICA), so this is the
    whitened space: Euclidean distance there is the Mahalanobis distance to the class.
    """
    x = np.asarray(reduced, dtype=np.float64)
    centred = x - x.mean(axis=0)
    spread = centred.std(axis=0)
    return np.divide(centred, spread, out=np.zeros_like(centred), where=spread > 0)


def tail_members(space: np.ndarray) -> np.ndarray:
    """Class-local indices of the :data:`TAIL_SHARE` rows farthest from the class's centre.

    Args:
        space: The class's :func:`whitened` reduced activations.

    Ties are broken by position (a stable sort), so the same rows give the same tail.
    """
    n = len(space)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    distance = np.linalg.norm(space, axis=1)
    size = min(n, math.ceil(TAIL_SHARE * n))
    return np.sort(np.argsort(-distance, kind="stable")[:size])


@dataclass(frozen=True)
class TailVerdict:
    """Where the retrain sent one class's tail.

    Attributes:
        members: Class-local indices of the tail.
        sent_away: Per tail row: classified as another class.
        flips: Per tail row: sent away confidently as a typical member of that class.
        cohesive: Per tail row: a flip whose neighbours are mostly flips.
        amid_cohesive: Per tail row: the share of its neighbours that are cohesive flips.
        needed: Rows the clump needs for the tail to be poison.
        source: The class most of the clump went to, or ``None``.
    """

    members: np.ndarray
    sent_away: np.ndarray
    flips: np.ndarray
    cohesive: np.ndarray
    amid_cohesive: np.ndarray
    needed: int
    source: int | None

    @property
    def clump(self) -> np.ndarray:
        """Per tail row: sent away amid cohesive flips (:data:`TAIL_CLUMP`)."""
        return self.sent_away & (self.amid_cohesive >= TAIL_CLUMP)

    @property
    def reach(self) -> np.ndarray:
        """Per tail row: sent away within the clump's reach (:data:`TAIL_REACH`): flagged."""
        return self.sent_away & (self.amid_cohesive >= TAIL_REACH)

    @property
    def poisoned(self) -> bool:
        """Whether the tail holds poison."""
        return int(self.clump.sum()) >= self.needed

    def explain(self, label: int, n_class: int) -> str:
        """The verdict in words."""
        where = f", most to class {self.source}" if self.source is not None else ""
        return (f"tail ({len(self.members)} rows, {len(self.members) / max(n_class, 1):.0%} of "
                f"the class farthest from its centre) left out of the retrain: "
                f"{int(self.sent_away.sum())} classified as another class, "
                f"{int(self.flips.sum())} confidently (>= {TAIL_CONFIDENCE:g}) as typical rows "
                f"(typicality >= {TAIL_TYPICALITY:g}), {int(self.cohesive.sum())} of them "
                f"cohesive (>= {TAIL_COHESION:.0%} of {TAIL_NEIGHBOURS} neighbours too); "
                f"clump of {int(self.clump.sum())} sent away amid them (>= {TAIL_CLUMP:.0%} of "
                f"neighbours cohesive flips{where}), {'>=' if self.poisoned else '<'} "
                f"{self.needed} needed -> {'poison' if self.poisoned else 'legitimate'}")


def tail_verdict(space: np.ndarray, members: np.ndarray, label: int, predicted: np.ndarray,
                 confidence: np.ndarray, typicality: np.ndarray) -> TailVerdict:
    """Judge a class's tail from the retrain's verdict on its rows.

    Args:
        space: The class's :func:`whitened` reduced activations (n_class x n_components).
        members: The tail (class-local indices, :func:`tail_members`).
        label: The class.
        predicted: Per tail row, the retrained model's class.
        confidence: Per tail row, the retrained model's probability of that class.
        typicality: Per tail row, how typical it is of that class (NaN: not measured).

    Returns:
        The :class:`TailVerdict`.
    """
    n_class = len(space)
    members = np.asarray(members)
    sent_away = np.asarray(predicted) != label
    typical = np.nan_to_num(np.asarray(typicality, dtype=np.float64), nan=-1.0)
    flips = sent_away & (np.asarray(confidence) >= TAIL_CONFIDENCE) & (typical >= TAIL_TYPICALITY)
    cohesive = np.zeros(len(members), dtype=bool)
    amid_cohesive = np.zeros(len(members))
    k = min(TAIL_NEIGHBOURS, n_class - 1)
    if flips.any() and k > 0:
        index = NearestNeighbors(n_neighbors=k + 1).fit(space)
        neighbours = index.kneighbors(space[members], return_distance=False)[:, 1:]
        is_flip = np.zeros(n_class, dtype=bool)
        is_flip[members[flips]] = True
        cohesive = flips & (is_flip[neighbours].mean(axis=1) >= TAIL_COHESION)
        is_cohesive = np.zeros(n_class, dtype=bool)
        is_cohesive[members[cohesive]] = True
        amid_cohesive = is_cohesive[neighbours].mean(axis=1)
    needed = max(TAIL_MIN_COHESIVE, math.ceil(TAIL_MIN_COHESIVE_SHARE * n_class))
    clump = sent_away & (amid_cohesive >= TAIL_CLUMP)
    sources = np.asarray(predicted)[clump]
    source = int(np.bincount(sources).argmax()) if len(sources) else None
    return TailVerdict(members=members, sent_away=sent_away, flips=flips, cohesive=cohesive,
                       amid_cohesive=amid_cohesive, needed=needed, source=source)
