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
  every tail row sent away: the class's ordinary hard cases stay unflagged;
- unless, in a large class, the class the clump mostly went to and this one overlap by
  nature: the same retrain sends that class's own tail here far more than other classes'
  tails (:func:`held_out_overlap`, which exclusionary reclassification's one-source rule asks
  too), or both that overlap and the proxy's own confusion of the two classes reach half their
  cuts (the same "together" test the one-source rule asks). Then only the clump's rows sent to
  other classes count: all-to-one poison's clump goes to many source classes, a natural
  look-alike's to its one neighbour;
- a tail **without a clump** is poison too when its flips, as many as a clump needs, went to
  several classes (:data:`TAIL_SPREAD_CLASSES` effective classes): all-to-one poison at 0.3%
  is too few rows per source to clump, but held out it goes back to all its sources, while a
  class's hard cases go to a few neighbours. Its flips are flagged when the tail alone proves
  the class; beside a candidate that proves it they add clean rows and no poison, and are not.

Measured in ``bench/RESULTS.md`` ("attack_matrix", variants ``spread`` and ``beside``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
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
#: A tail without a clump is poison too when its flips (as many as a clump needs) went to at
#: least this effective number of classes (the inverse Simpson index of their destinations):
#: all-to-one poison at 0.3% is 6-7 rows per source class, too few to clump, but held out they
#: go back to all nine sources, while a class's natural hard cases go to their few neighbours.
#: The table that chose it: bench/RESULTS.md "tail_spread" (``bench/tail_spread.py``).
TAIL_SPREAD_CLASSES = 6.0
#: ... asked in classes of at least this many rows (a digits-sized class's tail, ~36 rows,
#: has too few flips to measure a spread).
TAIL_SPREAD_MIN_CLASS_ROWS = 1000

#: Held-out overlap (:func:`held_out_overlap`): two classes overlap by nature when the tails'
#: retrain (trained without every class's tail and every candidate) sends at least this share
#: of one's tail to the other (the default of the ``overlap_threshold`` setting, the class's
#: ``Thresholds.overlap``) ...
HELD_OUT_OVERLAP = 0.03
#: ... and at least this multiple of the median share of the other classes' tails it sends
#: there. Natural one-neighbour modes that passed every other test (MNIST 20k clean, a cluster
#: of 7s sent to 9; Fashion-MNIST, sneakers sent to ankle boot) measured 0.050 against a median
#: of 0.006 and 0.033 against 0.000; the one-source poison candidates of the attack matrix at
#: most 2.7 times their median, the poisoned classes' tails at most 2.5 times but one (6.6
#: times, whose clump's rows sent to other classes kept it poison; bench/RESULTS.md
#: "attack_matrix"). Poison rows are genuine samples of their source: the source's own
#: outliers seldom lean towards the target. But on MNIST 60k BadNets all-to-all 10% the 1s' tail
#: went to 2 at 0.034 against a median of 0.006 (5.4 times; the 1 -> 2 pair leans by nature, 1.9
#: times on the 20k cells): at 4 times, the default scan cleared class 2's poison (bench/RESULTS.md
#: "art"). 6.5 sits between that 5.4 and the natural 8.3.
HELD_OUT_OVERLAP_RATIO = 6.5
#: The median needs at least this many other classes with a tail (two-class data has no
#: baseline, and a binary task's tails cross over at a high rate by nature) ...
HELD_OUT_OVERLAP_MIN_OTHERS = 2
#: ... and the test is asked in classes of at least this many rows, of a source whose tail has
#: at least :data:`TAIL_SHARE` of as many (a tail of a digits-sized class, ~36 rows, moves the
#: share 0.03 with one row).
HELD_OUT_OVERLAP_MIN_CLASS_ROWS = 1000
#: The proxy's confusion and the held-out overlap each below its cut but both at least this
#: share of it (the overlap still at least :data:`HELD_OUT_OVERLAP_RATIO` times
#: the other tails' median) are, together, a natural overlap: two measurements of the same
#: pair leaning together. On the Intel Xeon's proxies the sneakers sent to ankle boot (Fashion-
#: MNIST blend all-to-one, seeds 1 and 2: confusion 0.024, overlap 0.018-0.022 against a median
#: of 0.000, typicality 0.10-0.28) were flagged in two poisoned runs whose poison was elsewhere;
#: of the 4,190 candidates of both CPUs' records no poison candidate reached more than 0.84 of
#: these half cuts (bench/RESULTS.md "attack matrix", variant ``again``). Asked of the one-source
#: rule (:func:`acgate.core.exre.one_source_verdict`) and of a tail's clump (:class:`TailVerdict`).
OVERLAP_TOGETHER_SHARE = 0.5


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
        overlap: The held-out overlap of the class and ``source`` and its baseline
            (:func:`held_out_overlap`), or ``None`` when not asked: with a natural overlap,
            only the clump's rows sent elsewhere count.
        sent_to: Per tail row, the class the retrain sent it to (``None``: not recorded; every
            clump row then counts).
        overlap_threshold: The overlap's cut (:func:`natural_overlap`; the class's
            ``Thresholds.overlap``).
        confusion: The proxy's confusion of the class and ``source``
            (:func:`acgate.core.exre.natural_confusion`), or ``None`` when not asked.
        together: The overlap and that confusion, each under its cut, both reach
            :data:`OVERLAP_TOGETHER_SHARE` of it: a natural overlap too.
        class_rows: Rows of the class (0: not recorded; the spread is then not asked).
    """

    members: np.ndarray
    sent_away: np.ndarray
    flips: np.ndarray
    cohesive: np.ndarray
    amid_cohesive: np.ndarray
    needed: int
    source: int | None
    overlap: tuple[float, float] | None = None
    sent_to: np.ndarray | None = None
    overlap_threshold: float = HELD_OUT_OVERLAP
    confusion: float | None = None
    together: bool = False
    class_rows: int = 0

    @property
    def clump(self) -> np.ndarray:
        """Per tail row: sent away amid cohesive flips (:data:`TAIL_CLUMP`)."""
        return self.sent_away & (self.amid_cohesive >= TAIL_CLUMP)

    @property
    def reach(self) -> np.ndarray:
        """Per tail row: sent away within the clump's reach (:data:`TAIL_REACH`): flagged."""
        return self.sent_away & (self.amid_cohesive >= TAIL_REACH)

    @property
    def clumped(self) -> bool:
        """Whether the clump holds the rows it needs."""
        return int(self.clump.sum()) >= self.needed

    @property
    def natural(self) -> bool:
        """Whether the clump's class and this one overlap by nature (measured and natural)."""
        return self.overlap is not None and (self.together or natural_overlap(
            *self.overlap, threshold=self.overlap_threshold))

    @property
    def beyond_source(self) -> int:
        """Rows of the clump sent to another class than :attr:`source`."""
        if self.sent_to is None:
            return int(self.clump.sum())
        return int((self.clump & (np.asarray(self.sent_to) != self.source)).sum())

    @property
    def spread(self) -> float:
        """The effective number of classes the flips went to (0 when not recorded)."""
        if self.sent_to is None:
            return 0.0
        return effective_classes(np.asarray(self.sent_to)[self.flips])

    @property
    def spread_asked(self) -> bool:
        """Whether the several-sources test of a tail without a clump applies.

        A tail without a clump, in a class of at least :data:`TAIL_SPREAD_MIN_CLASS_ROWS`
        rows, with as many flips as a clump needs and where they went recorded.
        """
        return (not self.clumped and self.class_rows >= TAIL_SPREAD_MIN_CLASS_ROWS
                and int(self.flips.sum()) >= self.needed and self.sent_to is not None)

    @property
    def scattered(self) -> bool:
        """Whether, with no clump, its flips went to several source classes.

        See :data:`TAIL_SPREAD_CLASSES`.
        """
        return self.spread_asked and self.spread >= TAIL_SPREAD_CLASSES

    @property
    def poisoned(self) -> bool:
        """Whether the tail holds poison."""
        if self.scattered:
            return True
        return self.clumped and (not self.natural or self.beyond_source >= self.needed)

    @property
    def flagged(self) -> np.ndarray:
        """Per tail row: flagged when the tail is poison (the clump's reach, or the flips)."""
        return self.flips if self.scattered else self.reach

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
                f"neighbours cohesive flips{where}), {'>=' if self.clumped else '<'} "
                f"{self.needed} needed"
                + self._overlap_clause(label) + self._spread_clause()
                + f" -> {'poison' if self.poisoned else 'legitimate'}")

    def _spread_clause(self) -> str:
        """The several-sources test of a tail without a clump, in words, when it was asked."""
        if not self.spread_asked:
            return ""
        spread = self.spread
        # Two decimals near the cut: 5.96 is not "6.0 (< 6)".
        shown = f"{spread:.1f}" if abs(spread - TAIL_SPREAD_CLASSES) >= 0.05 else f"{spread:.2f}"
        return (f"; its {int(self.flips.sum())} flips went to {shown} effective classes "
                f"({'>=' if spread >= TAIL_SPREAD_CLASSES else '<'} {TAIL_SPREAD_CLASSES:g}"
                f"{': samples of several source classes' if self.scattered else ''})")

    def _overlap_clause(self, label: int) -> str:
        """The held-out overlap test in words, when it was asked."""
        if not self.clumped or self.overlap is None:
            return ""
        natural, clause = describe_overlap(label, self.source, *self.overlap,
                                           threshold=self.overlap_threshold)
        if not natural and self.together:
            natural = True
            clause += (f", but with the proxy's confusion of the two ({self.confusion:.3f}) "
                       f"both reach {OVERLAP_TOGETHER_SHARE:g} of their cuts: together a natural "
                       "overlap")
        if natural and self.sent_to is None:
            clause += ", where the clump's rows went is not recorded: every one counts"
        elif natural:
            beyond = self.beyond_source
            clause += (f", {beyond} of the clump sent to other classes "
                       f"({'>=' if beyond >= self.needed else '<'} {self.needed} needed)")
        return "; " + clause


def effective_classes(predicted: np.ndarray) -> float:
    """The effective number of classes among ``predicted`` (inverse Simpson index; 0 if empty).

    Computed in integers: ``n`` rows split evenly over ``k`` classes give exactly ``k``.
    """
    if not len(predicted):
        return 0.0
    counts = np.unique(np.asarray(predicted), return_counts=True)[1].astype(np.int64)
    return float(int(counts.sum()) ** 2 / int(np.sum(counts * counts)))


def held_out_overlap(sent: Mapping[int, np.ndarray]
                     ) -> Callable[[int, int], tuple[float, float] | None]:
    """How much a model that never saw the candidates or the tails mixes up two classes.

    Args:
        sent: By class, where the tails' retrain sent each row of the class's tail.

    Returns:
        A function of ``(label, source)``: the share of ``source``'s tail sent to ``label`` and
        the median of that share over the other classes' tails; ``None`` when ``source``'s tail
        is smaller than :data:`TAIL_SHARE` of :data:`HELD_OUT_OVERLAP_MIN_CLASS_ROWS` (one row
        would move the share by the cut) or fewer than :data:`HELD_OUT_OVERLAP_MIN_OTHERS`
        other classes have a tail.
    """
    min_tail_rows = math.ceil(TAIL_SHARE * HELD_OUT_OVERLAP_MIN_CLASS_ROWS)

    def overlap(label: int, source: int) -> tuple[float, float] | None:
        tail = sent.get(source)
        others = [float(np.mean(np.asarray(rows) == label)) for c, rows in sent.items()
                  if c not in (label, source) and len(rows)]
        if (tail is None or len(tail) < min_tail_rows
                or len(others) < HELD_OUT_OVERLAP_MIN_OTHERS):
            return None
        return float(np.mean(np.asarray(tail) == label)), float(np.median(others))

    return overlap


def natural_overlap(share: float, median: float, *,
                    threshold: float = HELD_OUT_OVERLAP) -> bool:
    """Whether a held-out overlap says the two classes overlap by nature.

    Args:
        share: The share of the source's tail the tails' retrain sent to the class.
        median: The median of that share over the other classes' tails.
        threshold: The smallest share that counts (the class's ``Thresholds.overlap``; above 1
            no share does: the test is off).

    Returns:
        ``True`` when ``share`` is above 0 and reaches both ``threshold`` and
        :data:`HELD_OUT_OVERLAP_RATIO` times ``median``.
    """
    return share > 0 and share >= max(threshold, HELD_OUT_OVERLAP_RATIO * median)


def describe_overlap(label: int | None, source: int | None, share: float, median: float, *,
                     threshold: float = HELD_OUT_OVERLAP) -> tuple[bool, str]:
    """The held-out overlap test in words.

    Args:
        label: The judged class (``None``: "the class").
        source: The class whose tail was measured (``None``: "the source's").
        share: As :func:`natural_overlap`.
        median: As :func:`natural_overlap`.
        threshold: As :func:`natural_overlap`.

    Returns:
        ``(natural, clause)``: :func:`natural_overlap` and the clause for the class's reason.
    """
    natural = natural_overlap(share, median, threshold=threshold)
    of = f"class {source}'s tail" if source is not None else "the source's tail"
    to = f"class {label}" if label is not None else "the class"
    return natural, (f"held out, {of} goes to {to} at {share:.3f}, the other tails at a median "
                     f"{median:.3f} ({'>=' if natural else '<'} the larger of "
                     f"{threshold:g} and {HELD_OUT_OVERLAP_RATIO:g} x that"
                     f"{': a natural overlap' if natural else ''})")


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
                       amid_cohesive=amid_cohesive, needed=needed, source=source,
                       sent_to=np.asarray(predicted), class_rows=n_class)
