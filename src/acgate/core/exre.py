"""Exclusionary reclassification: the analyzer that judges every class with one shared retrain.

Candidate clusters of every class are left out of one retrain (:data:`RetrainAndPredict`);
the retrained model then classifies each candidate's rows. ``l`` = rows classified as their
own label, ``p`` = rows of the most common other class. A candidate is poison when
``l / p < exre`` and at least ``source_share`` of it went to that one class (the suspected
source), unless the proxy itself confuses the two classes (:func:`natural_confusion`) or, in
large classes, a model that never saw the candidates does (:func:`held_out_overlap`); or when
it is *multi-source* poison (see :data:`MULTI_SOURCE_OWN_SHARE`). A second retrain, without
the candidates and every class's *tail* as well, judges the tails: poison that no candidate
holds (:mod:`acgate.core.tail`). Chen et al. 2018, section "Exclusionary reclassification",
with the changes measured in ``bench/RESULTS.md``.

:func:`judge_exre` is the analyzer's judge (registered as ``"exre"`` in
:mod:`acgate.core.analyses`); the rest are its steps, exposed for the promotion gate
(:func:`one_source_verdict`, :func:`retrain_mask`) and the tests.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from acgate.core.clustering import ClassClustering
from acgate.core.evidence import (
    ClassJudgement,
    Evidence,
    RetrainAndPredict,
    Thresholds,
    membership_scores,
    smallest_cluster,
)
from acgate.core.result import NO_VALUE
from acgate.core.tail import (
    HELD_OUT_OVERLAP_MIN_CLASS_ROWS,
    OVERLAP_TOGETHER_SHARE,
    TAIL_GROUP,
    TailVerdict,
    describe_overlap,
    effective_classes,
    held_out_overlap,
    natural_overlap,
    tail_members,
    tail_verdict,
    whitened,
)

logger = logging.getLogger(__name__)

#: Default candidate cut under exclusionary reclassification (measured: bench/RESULTS.md).
EXRE_SIZE_THRESHOLD = 0.45
#: Exclusionary reclassification also keeps each candidate's *margin* out of the retrain: the
#: rows of its class beyond the top ``share + HALO_MARGIN`` along the direction from the rest of
#: the class to the candidate (at most ``HALO_MAX_SHARE`` of the class). Poison left in the
#: training data re-teaches the trigger: MNIST 20k, BadNets all-to-one at 1%, a candidate with
#: 173 of the 200 poisoned rows: with the other 27 still in training, 73% of the left-out poison
#: was classified as the target again; with a margin that left 3 in training, none was.
HALO_MARGIN = 0.15
HALO_MAX_SHARE = 0.6
#: Only candidates of at most this share get a margin: a larger one holds nearly all of its
#: class's poison already, and margins around many large candidates starve the retrain
#: (digits, BadNets 33% all-to-all: F1 0.94 -> 0.78 with margins on every candidate).
HALO_MAX_CANDIDATE_SHARE = 0.25
#: ... and only in classes of at least this many rows: in a small class the margin takes away
#: much of what the retrain knows of the class's natural variety (digits, ~180 images a class:
#: margins added clean-run false alarms and cost F1 at 33%, bench/RESULTS.md "attack matrix").
HALO_MIN_CLASS_ROWS = 1000
#: Multi-source poison: left out, at most this share of a candidate is classified as its own
#: label ...
MULTI_SOURCE_OWN_SHARE = 0.2
#: ... the rest goes to at least two other classes with at least this mean confidence (the
#: poisoned rows are genuine samples of their source classes; a natural mode of the class that
#: has no other home scatters with low confidence) ...
MULTI_SOURCE_CONFIDENCE = 0.85
#: ... and no single other class takes the source share (that is the one-source rule's case) ...
MULTI_SOURCE_MIN_CLASSES = 2
#: ... and, when the retrain can give its activations, the rows it sends elsewhere are typical
#: members of those classes: the median, over those rows, of the share of the class's own
#: training rows lying at least as far from the class centre (in the retrained model's last
#: hidden layer) is at least this. Poison rows are genuine source samples (typical); a natural
#: mode of a class with no other home lies between classes, far from every centre, however
#: confidently a model assigns it.
MULTI_SOURCE_TYPICALITY = 0.05
#: A candidate whose rows spread over many classes needs less confidence: at least this
#: effective number of destination classes (the inverse Simpson index of the rows sent
#: elsewhere: 9 equal sources give 9, one source 1) ...
MULTI_SOURCE_WIDE_CLASSES = 5.0
#: ... with at least this mean confidence ...
MULTI_SOURCE_WIDE_CONFIDENCE = 0.6
#: ... and this median typicality. All-to-one poison on Fashion-MNIST, whose classes overlap,
#: goes to its nine sources at mean confidence 0.64-0.87 (effective classes 5.3-8.6); the
#: natural modes that leave a clean Fashion-MNIST, MNIST or digits class go to one or two
#: neighbours (effective classes <= 3.4 on the AMD EPYC's proxies, one at 4.1 on the Intel
#: Xeon's, bench/RESULTS.md "attack_matrix"); the few that scatter wider lie between classes
#: (typicality <= 0.09). Between the two: a dense-core candidate of
#: blended poison that also holds a quarter of clean rows of its class (those go to a neighbour,
#: atypically) reached 0.096 (Fashion-MNIST blend all-to-one, seed 2).
MULTI_SOURCE_WIDE_TYPICALITY = 0.08
#: Between this many effective classes and :data:`MULTI_SOURCE_WIDE_CLASSES` the wide rule
#: holds with its confidence but asks this higher median typicality. On the Intel Xeon's
#: proxies blended Fashion-MNIST pullovers (all-to-one 1%, seed 2) went to their sources as 4.6
#: effective classes (a third to bag) at confidence 0.74, typicality 0.17, and were missed;
#: cutting at 4 alone also flagged a natural mode of the clean merged MNIST class 7 (4.1
#: effective classes, confidence 0.71, typicality 0.09). bench/RESULTS.md "attack matrix",
#: variants ``wide4`` and ``wideband``.
MULTI_SOURCE_BAND_CLASSES = 4.0
MULTI_SOURCE_BAND_TYPICALITY = 0.12
#: In classes of at least this many rows, the one-source rule also asks how surely the rows a
#: candidate sends to its suspected source go there: with at least this mean confidence ...
#: (MNIST 20k, bench/RESULTS.md "attack_matrix": one-source poison candidates of all-to-all
#: BadNets / blend / warp went there at 0.92-1.00, median typicality 0.17-0.54; the natural
#: clusters of class 7 that went >= 50% to class 9 or 3 and were flagged, at 0.85-0.89.)
#: Digits-sized classes keep the rule without it: 8x8 poison rows are not typical of their
#: source (median 0.02-0.03).
ONE_SOURCE_SURE_MIN_CLASS_ROWS = 1000
ONE_SOURCE_CONFIDENCE = 0.9
#: ... and at least this median typicality (see :data:`MULTI_SOURCE_TYPICALITY`).
ONE_SOURCE_TYPICALITY = 0.05
#: Reference rows per class for that typicality (seeded sample of the retrain's training rows).
TYPICALITY_REFERENCE_ROWS = 300
#: A held-out natural overlap explains look-alikes: rows at the edge of the source class. A
#: candidate whose rows sit inside the source like its own members, at this median typicality
#: there or more (genuine members give about 0.5), is not explained by it. MNIST and
#: Fashion-MNIST 20k (bench/RESULTS.md "attack_matrix", variants ``redraw``, ``xeon``): the
#: natural clusters that went to their neighbour at mean confidence >= 0.9 did so at a median
#: 0.18-0.28 (7s to 9, sneakers to ankle boot); the MNIST all-to-all poison the overlap
#: cleared (class 9 from 8, at 6.7-10.7x the other tails' median) at 0.31-0.50.
OVERLAP_LOOKALIKE_TYPICALITY = 0.3

#: Beside proven poison, a cleared candidate is judged again on the tails' retrain
#: (:func:`_flag_again`) in classes of at least this many rows ...
#: (the tails' retrain lacks 20% of every class: in a digits-sized class a natural writing
#: style then finds no home, and was flagged in 6 poisoned digits cells, variant ``again``) ...
AGAIN_MIN_CLASS_ROWS = 1000
#: ... when it holds at most this share of its class: one source's share of an attack from
#: several (the natural mode of MNIST 7+'s merged class flagged that way held 39%; every poison
#: candidate it found held 3.5-18.8%).
AGAIN_MAX_CANDIDATE_SHARE = 0.25

#: Retrain groups: by key ``(label, group id)``, the group's label and its row positions.
Groups = Mapping[tuple[int, int], tuple[int, np.ndarray]]
#: A class's candidates: by group id, ``(member indices into the class, nested, description,
#: several sources only, separated)``; several sources only is ``True`` for a mode toward a
#: dense core, which only the several-sources rule may judge poison (see
#: :data:`acgate.core.clustering.DENSE_MIN_CLASS_ROWS`); separated for a dense core standing
#: apart (:data:`acgate.core.clustering.DENSE_CORE_SEPARATION`), which every rule judges, its
#: separation standing in for the one-source rule's sureness (mean confidence and typicality).
Candidates = dict[int, tuple[np.ndarray, bool, str, bool, bool]]


@dataclass(frozen=True)
class ExReOutcome:
    """Exclusionary reclassification of one candidate cluster.

    Attributes:
        label: The class the cluster belongs to.
        cluster: The candidate cluster id.
        n_own: ``l``: samples classified as their own label by the retrained model.
        n_other: ``p``: samples classified as the most common other class.
        source: That most common other class (the suspected source), or ``None``.
        score: ``l / max(p, 1)``; below the threshold means poison.
        own_probability: Per-sample probability of the own label (aligned with the cluster's
            positions in the clustering).
        predicted: Per-sample predicted class.
        max_probability: Per-sample probability of the predicted class (the retrain's
            confidence), or ``None`` when not recorded.
    """

    label: int
    cluster: int
    n_own: int
    n_other: int
    source: int | None
    score: float
    own_probability: np.ndarray
    predicted: np.ndarray
    max_probability: np.ndarray | None = None


def retrain_mask(groups: Groups, n_samples: int,
                 leave_out: np.ndarray | None = None) -> np.ndarray:
    """The training mask of the one retrain: every row but the groups' and ``leave_out``.

    Shared by :func:`exclusionary_reclassification_groups` and any later call that must reach
    the same retrained model (a retrain callable caches its model by this mask).
    """
    train_mask = np.ones(n_samples, dtype=bool)
    for _, positions in groups.values():
        train_mask[positions] = False
    if leave_out is not None:
        train_mask[np.asarray(leave_out, dtype=np.int64)] = False
    return train_mask


def exclusionary_reclassification_groups(
    groups: Groups,
    n_samples: int,
    retrain_and_predict: RetrainAndPredict,
    *,
    leave_out: np.ndarray | None = None,
) -> dict[tuple[int, int], ExReOutcome]:
    """Retrain once without every group, then classify each group's rows.

    Groups may overlap (a sub-cluster inside a candidate cluster): the retrain leaves out their
    union and each group is judged over its own rows.

    Args:
        groups: By key ``(label, group id)``: the group's label and its row positions.
        n_samples: Rows in the full arrays (for the training mask).
        retrain_and_predict: See :data:`RetrainAndPredict`.
        leave_out: Further row positions kept out of the retrain (the candidates' margins:
            poison left in training re-teaches the trigger).

    Returns:
        By key, the :class:`ExReOutcome` (``cluster`` is the group id).

    Raises:
        ValueError: When ``retrain_and_predict`` returns probabilities of the wrong shape.
    """
    if not groups:
        return {}
    query = np.flatnonzero(~retrain_mask(groups, n_samples))  # the margins are not judged
    train_mask = retrain_mask(groups, n_samples, leave_out)
    probabilities = np.asarray(retrain_and_predict(train_mask, query), dtype=np.float64)
    if probabilities.ndim != 2 or probabilities.shape[0] != len(query):
        raise ValueError(
            f"retrain_and_predict returned shape {probabilities.shape}; expected "
            f"({len(query)}, n_classes)"
        )
    row_of = np.full(n_samples, -1, dtype=np.int64)
    row_of[query] = np.arange(len(query))
    return {key: _outcome(label, key[1], probabilities[row_of[positions]])
            for key, (label, positions) in groups.items()}


def _outcome(label: int, group: int, rows: np.ndarray) -> ExReOutcome:
    """``l``, ``p`` and the suspected source of one group from its rows' probabilities."""
    predicted = rows.argmax(axis=1)
    own_probability = rows[:, label] if label < rows.shape[1] else np.zeros(len(rows))
    n_own = int((predicted == label).sum())
    others = np.bincount(predicted[predicted != label], minlength=rows.shape[1])
    source = int(others.argmax()) if others.sum() else None
    n_other = int(others.max()) if others.sum() else 0
    return ExReOutcome(
        label=label, cluster=group, n_own=n_own, n_other=n_other, source=source,
        score=n_own / max(n_other, 1), own_probability=own_probability,
        predicted=predicted, max_probability=rows.max(axis=1),
    )


def one_source_verdict(score: float, source_share: float, confusion: float | None,
                       thresholds: Thresholds, *, nested: bool = False,
                       label: int | None = None, source: int | None = None,
                       confidence: float | None = None, typicality: float | None = None,
                       overlap: float | None = None, overlap_median: float | None = None,
                       typicality_cut: bool = True) -> tuple[bool, str]:
    """Exclusionary reclassification's one-source rule on a candidate's measured numbers.

    Poison when ``l/p`` is below ``thresholds.exre``, at least the source share (nested: the
    nested source share) of the left-out candidate went to one other class, the proxy does
    not itself confuse the two classes at ``thresholds.confusion`` or more, the tails' retrain
    does not find them overlapping by nature (when measured:
    :func:`acgate.core.tail.natural_overlap`, or with the proxy's confusion, each at
    :data:`OVERLAP_TOGETHER_SHARE` of its cut or more; an overlap explains only rows at the source's
    edge, below :data:`OVERLAP_LOOKALIKE_TYPICALITY`, when their typicality is measured), and
    (when measured) the rows went there surely enough. The scan judges every candidate with
    this function, and the promotion gate replays it on the numbers a scan run recorded, so
    the two can never disagree.

    Args:
        score: ``l/p`` of the candidate.
        source_share: Share of the left-out candidate classified as its suspected source.
        confusion: The natural confusion of the class and the source (``None``: not measured).
        thresholds: The thresholds the class is judged with.
        nested: The candidate is a sub-cluster inside a larger candidate.
        label: The candidate's class (for the explanation).
        source: The suspected source class (for the explanation).
        confidence: Mean confidence of the rows the retrain sent to the source (``None``: the
            cut does not apply, see :data:`ONE_SOURCE_SURE_MIN_CLASS_ROWS`).
        typicality: Their median typicality there (``None``: the cut does not apply, nor the
            held-out overlap's look-alike cut).
        typicality_cut: Whether a measured ``typicality`` is also cut at
            :data:`ONE_SOURCE_TYPICALITY` (``False``: it serves the look-alike test only; a
            dense core standing apart, whose separation stands in for the sureness cuts).
        overlap: The share of the source's tail the tails' retrain sent to the class (``None``:
            the test does not apply, see :func:`acgate.core.tail.held_out_overlap`).
        overlap_median: The median share of the other classes' tails it sent there (needed
            with ``overlap``).

    Returns:
        ``(poisoned, why)``.
    """
    needed = thresholds.nested_source_share if nested else thresholds.source_share
    if score >= thresholds.exre:
        return False, f"l/p = {score:.2f} (>= {thresholds.exre:g})"
    poisoned = source_share >= needed
    where = f"class {source}" if source is not None else "one other class"
    why = (f"l/p = {score:.2f} (< {thresholds.exre:g}), {source_share:.0%} of it in {where} "
           f"({'>=' if poisoned else '<'} {needed:.0%})")
    if poisoned and confusion is not None:
        natural = confusion >= thresholds.confusion
        pair = (f"classes {label} and {source}" if label is not None and source is not None
                else "the two classes")
        why += (f"; the proxy confuses {pair} at {confusion:.3f} "
                f"({'>=' if natural else '<'} {thresholds.confusion:g}"
                f"{': a natural overlap' if natural else ''})")
        poisoned = not natural
    if poisoned and overlap is not None and overlap_median is not None:
        natural, clause = describe_overlap(label, source, overlap, overlap_median,
                                           threshold=thresholds.overlap)
        why += "; " + clause
        if not natural and _together(confusion, overlap, overlap_median, thresholds):
            natural = True
            why += (f", but with the proxy's confusion both reach {OVERLAP_TOGETHER_SHARE:g} of "
                    "their cuts: together a natural overlap")
        if natural and typicality is not None:
            inside = f"class {source}" if source is not None else "the source"
            if typicality >= OVERLAP_LOOKALIKE_TYPICALITY:
                natural = False
                why += (f", but the rows sent there sit inside {inside} (median typicality "
                        f"{typicality:.2f} >= {OVERLAP_LOOKALIKE_TYPICALITY:g}): its own "
                        "members, not look-alikes")
            else:
                why += (f", and the rows sent there sit at the edge of {inside} (median "
                        f"typicality {typicality:.2f} < {OVERLAP_LOOKALIKE_TYPICALITY:g}): "
                        "look-alikes")
        poisoned = not natural
    cut_typicality = typicality if typicality_cut else None
    for name, value, cut in (("confidence", confidence, ONE_SOURCE_CONFIDENCE),
                             ("typicality", cut_typicality, ONE_SOURCE_TYPICALITY)):
        if poisoned and value is not None:
            sure = value >= cut
            why += (f"; {'mean' if name == 'confidence' else 'median'} {name} there {value:.2f} "
                    f"({'>=' if sure else '<'} {cut:g}{'' if sure else ': not sure'})")
            poisoned = sure
    return poisoned, why


def _together(confusion: float | None, overlap: float, overlap_median: float,
              thresholds: Thresholds) -> bool:
    """Whether confusion and held-out overlap, each below its cut, together say natural.

    Both tests must be on (a confusion cut of 2 or an overlap cut above 1 turns its test off)
    and both numbers reach :data:`OVERLAP_TOGETHER_SHARE` of their cuts.
    """
    if confusion is None or thresholds.confusion >= 2 or thresholds.overlap > 1:
        return False
    return (confusion >= OVERLAP_TOGETHER_SHARE * thresholds.confusion
            and natural_overlap(overlap, overlap_median,
                                threshold=OVERLAP_TOGETHER_SHARE * thresholds.overlap))


def natural_confusion(predictions: np.ndarray, labels: np.ndarray, label: int, source: int,
                      exclude: np.ndarray | None = None) -> float:
    """How much the proxy itself mixes up two classes, in [0, 2].

    The share of ``label``'s samples the proxy predicts as ``source`` plus the share of
    ``source``'s samples it predicts as ``label``, over the samples not in ``exclude`` (the
    candidate clusters: poison the proxy has not fully learnt must not count as confusion).

    Args:
        predictions: The proxy's prediction per sample.
        labels: Label per sample.
        label: The judged class.
        source: The suspected source class.
        exclude: Boolean mask of samples to leave out of the count.
    """
    keep = np.ones(len(labels), dtype=bool) if exclude is None else ~np.asarray(exclude)
    total = 0.0
    for a, b in ((label, source), (source, label)):
        rows = keep & (labels == a)
        if rows.any():
            total += float(np.mean(predictions[rows] == b))
    return total


# --------------------------------------------------------------------------- the candidates


def _candidate_clusters(clustering: ClassClustering, size: float) -> list[int]:
    """Every cluster but the largest (id 0) holding at most ``size`` of the class."""
    sizes = np.asarray(clustering.cluster_sizes, dtype=np.float64)
    shares = sizes / sizes.sum()
    return [c for c in range(1, clustering.n_clusters) if shares[c] <= size]


def _candidate_groups(clustering: ClassClustering, size: float, *,
                      several_sources: bool = True) -> Candidates:
    """The class's candidates, by group id (the tuples of :data:`Candidates`).

    ``several_sources=False`` (a retrain without activations: the several-sources rule cannot
    run) drops the modes toward dense cores, which only that rule may judge: left out for
    nothing they would only take rows from the retrain.

    Stable mode: the clustering's :class:`~acgate.core.clustering.CandidateCluster` list;
    otherwise every non-largest cluster within the size cut (group id = cluster id).
    """
    if clustering.candidates is not None:
        return {i: (c.members, c.nested, _describe_candidate(c), c.several_sources_only,
                    c.separated_core)
                for i, c in enumerate(clustering.candidates)
                if several_sources or not c.several_sources_only}
    return {c: (np.flatnonzero(clustering.clusters == c), False, f"cluster {c}", False, False)
            for c in _candidate_clusters(clustering, size)}


def _describe_candidate(candidate: Any) -> str:
    if candidate.alone:
        return (f"dense core of {len(candidate.members)} rows (separation "
                f"{candidate.separation:.1f} SD from the rest of the class)")
    if candidate.core is not None:
        return (f"mode toward a dense core of {candidate.core} rows (separation "
                f"{candidate.separation:.1f} SD)")
    if candidate.direction is not None:
        return (f"mode of principal direction {candidate.direction + 1} (separation "
                f"{candidate.separation:.1f} SD)")
    return (f"{'sub-cluster' if candidate.nested else 'cluster'} of k = {candidate.k} "
            f"(stability {candidate.stability:.2f})")


def candidate_margin(reduced: np.ndarray, members: np.ndarray) -> np.ndarray:
    """Class-local indices of a candidate and its margin (see :data:`HALO_MARGIN`).

    Along the direction from the mean of the rest of the class to the candidate's mean, the
    top ``share + HALO_MARGIN`` of the class (at most :data:`HALO_MAX_SHARE`), plus the
    candidate itself.
    """
    n = len(reduced)
    inside = np.zeros(n, dtype=bool)
    inside[members] = True
    if (inside.all() or not inside.any() or inside.mean() > HALO_MAX_CANDIDATE_SHARE
            or n < HALO_MIN_CLASS_ROWS):
        return np.flatnonzero(inside)
    direction = reduced[inside].mean(axis=0) - reduced[~inside].mean(axis=0)
    projection = reduced @ direction
    share = min(inside.mean() + HALO_MARGIN, HALO_MAX_SHARE)
    inside |= projection >= np.quantile(projection, 1.0 - share)
    return np.flatnonzero(inside)


def _retrain_groups(judged: Sequence[ClassClustering],
                    candidates: Mapping[int, Candidates]) -> tuple[Groups, np.ndarray | None]:
    """The retrain's groups (every candidate of every class) and the margins kept out too."""
    groups = {(c.label, group): (c.label, c.positions[members])
              for c in judged for group, (members, *_) in candidates[c.label].items()}
    margins = [c.positions[candidate_margin(c.reduced, members)]
               for c in judged if c.reduced is not None
               for members, *_ in candidates[c.label].values()]
    return groups, (np.concatenate(margins) if margins else None)


# ----------------------------------------------------------------------------- the verdicts


@dataclass(frozen=True)
class _GroupVerdict:
    """Exclusionary reclassification's verdict on one candidate group of a class."""

    group: int
    members: np.ndarray
    outcome: ExReOutcome
    poisoned: bool
    source_share: float
    confusion: float | None
    text: str
    confidence: float | None = None
    typicality: float | None = None
    #: The effective number of destination classes when the wide multi-source rule decided.
    spread: float | None = None
    #: A mode toward a dense core that does not stand apart: only the several-sources rule
    #: judges it.
    several_only: bool = False
    #: The held-out overlap of the class and the suspected source and its baseline (see
    #: :func:`acgate.core.tail.held_out_overlap`), when measured.
    overlap: tuple[float, float] | None = None
    #: Cleared by the sureness cuts alone: every other part of the one-source rule said poison.
    #: Beside proven poison in the same class its rows are flagged (:func:`_class_judgement`).
    unsure_only: bool = False


def _judge_group(group: int, members: np.ndarray, nested: bool, description: str,
                 outcome: ExReOutcome, used: Thresholds, n_class: int,
                 confusion_of: Callable[[int, int], float] | None,
                 typicality: np.ndarray | None = None, *,
                 several_only: bool = False, separated: bool = False,
                 overlap_of: Callable[[int, int], tuple[float, float] | None] | None = None
                 ) -> _GroupVerdict:
    """The multi-source rule, else l/p, the source share and (when known) the confusion.

    ``several_only``: a mode toward a dense core, poison by the multi-source rule or not at
    all. ``separated``: the candidate of a dense core standing apart (its separation asked
    instead of the one-source rule's sureness: mean confidence and typicality).
    ``overlap_of``: the held-out overlap of two classes and its baseline (see
    :func:`held_out_overlap`), asked in large classes only.
    """
    label = outcome.label
    source_share = outcome.n_other / max(len(members), 1)
    needed = used.nested_source_share if nested else used.source_share
    confusion = None
    overlap = None
    sure: tuple[float | None, float | None] = (None, None)
    unsure_only = False
    multi = _multi_source(outcome, len(members), needed, typicality)
    spread = None
    if multi is not None:
        poisoned = True
        why, spread = multi
    elif several_only:
        poisoned = False
        why = (f"l/p = {outcome.score:.2f}, not samples of several source classes (a dense "
               f"core that does not stand apart is judged by that rule only)")
    else:
        one_source = (outcome.score < used.exre and source_share >= needed
                      and outcome.source is not None)
        if one_source and confusion_of is not None:
            confusion = confusion_of(label, outcome.source)
        if n_class >= ONE_SOURCE_SURE_MIN_CLASS_ROWS:
            sure = _sureness(outcome, typicality)
            if separated:  # measured for the look-alike test, cut by neither
                sure = (None, sure[1])
        if one_source and overlap_of is not None and n_class >= HELD_OUT_OVERLAP_MIN_CLASS_ROWS:
            overlap = overlap_of(label, outcome.source)
        share_there, median_there = overlap if overlap is not None else (None, None)
        poisoned, why = one_source_verdict(
            outcome.score, source_share, confusion, used, nested=nested, label=label,
            source=outcome.source, confidence=sure[0], typicality=sure[1],
            overlap=share_there, overlap_median=median_there, typicality_cut=not separated)
        if poisoned and separated:
            why += "; no sureness cut (the core stands apart)"
        if not poisoned and sure != (None, None) and not separated:
            unsure_only = one_source_verdict(
                outcome.score, source_share, confusion, used, nested=nested,
                overlap=share_there, overlap_median=median_there)[0]
    elsewhere = (f"{outcome.n_other} as class {outcome.source}" if outcome.source is not None
                 else "none as another class")
    text = (f"{description}, {len(members) / n_class:.1%} of the class, left out of a retrain: "
            f"{outcome.n_own} classified as {label}, {elsewhere}; {why} -> "
            f"{'poison' if poisoned else 'legitimate'}")
    return _GroupVerdict(group, members, outcome, poisoned, source_share, confusion, text,
                         *sure, spread=spread, several_only=several_only, overlap=overlap,
                         unsure_only=unsure_only)


def _sureness(outcome: ExReOutcome, typicality: np.ndarray | None
              ) -> tuple[float | None, float | None]:
    """Mean confidence and median typicality of the rows sent to the suspected source.

    ``(None, None)`` when they cannot be measured (no activations from the retrain, or no row
    sent to another class): the one-source rule then goes without these cuts.
    """
    if outcome.source is None or outcome.max_probability is None or typicality is None:
        return None, None
    to_source = outcome.predicted == outcome.source
    values = typicality[to_source]
    values = values[np.isfinite(values)]
    if not to_source.any() or not len(values):
        return None, None
    return float(outcome.max_probability[to_source].mean()), float(np.median(values))


def _multi_source(outcome: ExReOutcome, n_members: int, needed: float,
                  typicality: np.ndarray | None) -> tuple[str, float | None] | None:
    """Why a candidate is multi-source poison (see :data:`MULTI_SOURCE_OWN_SHARE`), or None.

    Returns:
        The reason, and the effective number of destination classes when only the wide rule
        (:data:`MULTI_SOURCE_WIDE_CLASSES`) accepts the candidate (else ``None``); ``None`` when
        the candidate is not multi-source poison.

    Without ``typicality`` (a retrain that cannot give its activations) the rule is off: the
    retrain's confidence alone does not tell a between-classes mode from source samples.
    """
    if outcome.max_probability is None or typicality is None or n_members == 0:
        return None
    elsewhere = outcome.predicted != outcome.label
    own_share = 1.0 - elsewhere.mean()
    classes = np.unique(outcome.predicted[elsewhere])
    if (own_share > MULTI_SOURCE_OWN_SHARE or len(classes) < MULTI_SOURCE_MIN_CLASSES
            or outcome.n_other / n_members >= needed):
        return None
    confidence = float(outcome.max_probability[elsewhere].mean())
    typical = float(np.median(typicality[elsewhere]))
    spread = effective_classes(outcome.predicted[elsewhere])
    logger.debug("class %s candidate of %d: own %.2f, %d other classes (effective %.1f), "
                 "confidence %.2f, typicality %.3f", outcome.label, n_members, own_share,
                 len(classes), spread, confidence, typical)
    wide = None
    at_least, typical_cut = _wide_cuts(spread)
    if confidence >= MULTI_SOURCE_CONFIDENCE and typical >= MULTI_SOURCE_TYPICALITY:
        how = (f"with mean confidence {confidence:.2f} (>= {MULTI_SOURCE_CONFIDENCE:g}) and "
               f"median typicality {typical:.2f} (>= {MULTI_SOURCE_TYPICALITY:g})")
    elif (spread >= at_least and confidence >= MULTI_SOURCE_WIDE_CONFIDENCE
          and typical >= typical_cut):
        wide = spread
        how = (f"spread as {spread:.1f} effective classes (>= {at_least:g}) "
               f"with mean confidence {confidence:.2f} (>= {MULTI_SOURCE_WIDE_CONFIDENCE:g}) and "
               f"median typicality {typical:.2f} (>= {typical_cut:g})")
    else:
        return None
    return (f"{own_share:.0%} classified as {outcome.label} (<= {MULTI_SOURCE_OWN_SHARE:.0%}), "
            f"the rest as {len(classes)} other classes {how}: samples of several source "
            f"classes"), wide


def _wide_cuts(spread: float) -> tuple[float, float]:
    """The wide multi-source rule's band at ``spread`` classes: its lower edge, its typicality."""
    if spread >= MULTI_SOURCE_WIDE_CLASSES:
        return MULTI_SOURCE_WIDE_CLASSES, MULTI_SOURCE_WIDE_TYPICALITY
    return MULTI_SOURCE_BAND_CLASSES, MULTI_SOURCE_BAND_TYPICALITY


def _no_candidate_judgement(clustering: ClassClustering, used: Thresholds,
                            tail: TailVerdict | None,
                            cleared: Sequence[str] = ()) -> ClassJudgement:
    """A class with no candidate the recorded scores can speak for (``cleared``: dense cores)."""
    smallest, share = smallest_cluster(clustering)
    why = (f"no stable cluster of at most {used.size:.0%} of the class"
           if clustering.candidates is not None else
           f"smallest cluster holds {share:.1%} of the class (> size threshold {used.size:.0%})")
    silhouette = clustering.silhouette if clustering.silhouette is not None else float("nan")
    if cleared:
        why += (" (modes toward dense cores that do not stand apart only, each judged by the "
                "several-sources rule alone)")
    reason = "; ".join([f"no candidate: {why}", *cleared])
    if tail is not None:
        reason += "; " + tail.explain(clustering.label, len(clustering.positions))
    return ClassJudgement(
        suspicious_cluster=None, size_ratio=share, is_poisoned=False, reason=reason,
        flagged=np.zeros(len(clustering.positions), dtype=bool),
        sample_scores=membership_scores(clustering, smallest),
        scores={"size_ratio": share, "silhouette": silhouette, **_tail_scores(tail)},
    )


def _tail_scores(tail: TailVerdict | None) -> dict[str, float]:
    """The tail's counts for the class report (none when the tail was not measured)."""
    if tail is None:
        return {}
    return {"tail_flips": float(tail.flips.sum()), "tail_cohesive": float(tail.cohesive.sum()),
            "tail_clump": float(tail.clump.sum())}


def _class_judgement(clustering: ClassClustering, verdicts: Sequence[_GroupVerdict],
                     tail: TailVerdict | None, tail_outcome: ExReOutcome | None,
                     used: Thresholds, again: Sequence[_GroupVerdict] = ()) -> ClassJudgement:
    """Combine the verdicts on a class's candidate groups and its tail into its judgement.

    ``again``: the verdicts on the candidates the candidates' retrain cleared, judged again on
    the tails' retrain (:func:`_flag_again`; used beside proven poison only).
    """
    label = clustering.label
    n_class = len(clustering.positions)
    tail_poisoned = tail is not None and tail.poisoned
    if not any(v.poisoned for v in verdicts) and tail_poisoned:
        return _tail_judgement(clustering, verdicts, tail, tail_outcome, again)
    if not any(v.poisoned or not v.several_only for v in verdicts):
        # No candidate, or only cleared dense cores: reported as a class without a candidate,
        # so the promotion gate never replays the one-source rule on numbers that rule did not
        # judge (a dense core sent to one neighbour is cleared by construction).
        return _no_candidate_judgement(clustering, used, tail, [v.text for v in verdicts])
    flagged = np.zeros(n_class, dtype=bool)
    sample_sources = _candidate_sources(verdicts, n_class)
    for verdict in _flagging(verdicts):
        # Per-sample refinement: a member still classified as its own label is kept.
        flagged[verdict.members[verdict.outcome.predicted != label]] = True
    is_poisoned = any(v.poisoned for v in verdicts)
    # Beside a poison candidate, a tail's clump joins it (the rows within its reach); a
    # scattered tail's flips do not: there they added clean rows and no poison the candidates
    # missed (bench/RESULTS.md "attack_matrix", variant ``beside``), and no one source.
    clump_joins = tail_poisoned and not tail.scattered
    if clump_joins:
        reach = tail.members[tail.flagged]
        flagged[reach] = True
        sample_sources[reach] = tail_outcome.predicted[tail.flagged]
    proven = {v.outcome.source for v in verdicts if v.poisoned}
    if clump_joins:
        proven.add(tail.source)
    unsure_clause = _flag_unsure(verdicts, label, flagged, proven) if is_poisoned else None
    again_clause = _flag_again(again, label, flagged, proven) if is_poisoned else None
    # The class is reported through its most poison-like candidate (lowest l/p); when it is
    # poisoned, through the most poison-like of the candidates judged poison.
    worst = min([v for v in verdicts if v.poisoned]
                or [v for v in verdicts if not v.several_only],
                key=lambda v: (v.outcome.score, -v.outcome.n_other))
    suspicious = int(np.bincount(clustering.clusters[worst.members]).argmax())
    scores = membership_scores(clustering, suspicious)
    for verdict in verdicts:
        # Inside a candidate, the retrained model's own-label probability is the score (one
        # retrain: a row in two overlapping candidates has one probability).
        scores[verdict.members] = 1.0 - verdict.outcome.own_probability
    share = len(worst.members) / n_class
    texts = [v.text for v in verdicts]
    if tail is not None:
        texts.append(tail.explain(label, n_class))
    if tail_poisoned and not clump_joins:
        texts.append("the scattered tail's flips are not flagged beside a candidate that "
                     "proves the class")
    texts.extend(clause for clause in (unsure_clause, again_clause) if clause)
    return ClassJudgement(
        suspicious_cluster=suspicious, size_ratio=share, is_poisoned=is_poisoned,
        reason="; ".join(texts), flagged=flagged, sample_scores=scores,
        suspected_source=worst.outcome.source if is_poisoned else None,
        exre_score=worst.outcome.score,
        scores={**_named_scores(clustering, worst, share), **_tail_scores(tail)},
        sample_sources=sample_sources,
    )


def _flagging(verdicts: Sequence[_GroupVerdict]) -> list[_GroupVerdict]:
    """The poisoned candidates whose rows are flagged.

    Of overlapping candidates that only the wide multi-source rule accepted, the widest: clean
    rows that join the poison go to one or two neighbours and narrow the spread (Fashion-MNIST
    all-to-one, bench/RESULTS.md "attack_matrix": the widest of nested candidates held the same
    poison and 15-190 fewer clean rows).
    """
    poisoned = [v for v in verdicts if v.poisoned]
    widest_first = sorted((v for v in poisoned if v.spread is not None), key=lambda v: -v.spread)
    kept: list[_GroupVerdict] = []
    for verdict in widest_first:
        if not any(np.intersect1d(verdict.members, k.members).size for k in kept):
            kept.append(verdict)
    return [v for v in poisoned if v.spread is None] + kept


def _tail_judgement(clustering: ClassClustering, verdicts: Sequence[_GroupVerdict],
                    tail: TailVerdict, tail_outcome: ExReOutcome,
                    again: Sequence[_GroupVerdict] = ()) -> ClassJudgement:
    """A class whose poison only its tail shows: the tail rows sent away in its clump's reach."""
    label = clustering.label
    n_class = len(clustering.positions)
    flagged = np.zeros(n_class, dtype=bool)
    flagged[tail.members[tail.flagged]] = True
    unsure_clause = _flag_unsure(verdicts, label, flagged, {tail.source})
    again_clause = _flag_again(again, label, flagged, {tail.source})
    sample_sources = _candidate_sources(verdicts, n_class)
    sample_sources[tail.members] = tail_outcome.predicted
    suspicious = int(np.bincount(clustering.clusters[flagged]).argmax())
    scores = membership_scores(clustering, suspicious)
    scores[tail.members] = 1.0 - tail_outcome.own_probability
    share = float(flagged.mean())
    silhouette = clustering.silhouette if clustering.silhouette is not None else float("nan")
    return ClassJudgement(
        suspicious_cluster=suspicious, size_ratio=share, is_poisoned=True,
        reason="; ".join([tail.explain(label, n_class), *(v.text for v in verdicts),
                          *(c for c in (unsure_clause, again_clause) if c)]),
        flagged=flagged, sample_scores=scores, suspected_source=tail.source,
        exre_score=tail_outcome.score,
        scores={"size_ratio": share, "silhouette": silhouette, "exre": tail_outcome.score,
                "source_share": tail_outcome.n_other / max(len(tail.members), 1),
                **_tail_scores(tail)},
        sample_sources=sample_sources,
    )


def _flag_unsure(verdicts: Sequence[_GroupVerdict], label: int, flagged: np.ndarray,
                 proven: set[int | None]) -> str | None:
    """Flag, in a poisoned class, the rows a not-sure candidate sent to another source.

    The sureness cuts guard a class's verdict: a clean class's natural look-alike goes to its
    neighbour hesitantly. Beside proven poison from one source they judge nothing when a
    candidate goes to *another* source: poison from a second and a third source class goes
    there hesitantly, because the poison of the other sources left in the retrain keeps
    teaching the trigger (MNIST, three sources into one class at 20% of it,
    ``bench/RESULTS.md`` "attack_matrix": two sources' candidates at mean confidence 0.77 and
    0.89 < 0.9). A not-sure candidate that goes where the proven poison went adds nothing the
    proof covers, and is what a class falsely proven would add (its natural look-alikes of
    that one neighbour). The class's verdict does not change; ``flagged`` is updated in place.

    Args:
        verdicts: The class's candidates' verdicts.
        label: The class.
        flagged: The class's flags so far (updated).
        proven: The suspected sources of the evidence that poisoned the class.

    Returns:
        The clause for the class's reason, or ``None`` when no such candidate sent a row away.
    """
    unsure = [v for v in verdicts if v.unsure_only and v.outcome.source not in proven]
    counts = _flag_sent_away(unsure, label, flagged)
    if counts is None:
        return None
    sent, added = counts
    many = len(unsure) > 1
    sources = ", ".join(str(s) for s in sorted({v.outcome.source for v in unsure}))
    return (f"beside the poison, {len(unsure)} candidate{'s' if many else ''} cleared only as "
            f"not sure, sent to another source (class {sources}): the {sent} rows "
            f"{'they' if many else 'it'} sent away are flagged ({added} not yet flagged)")


def _flag_sent_away(verdicts: Sequence[_GroupVerdict], label: int,
                    flagged: np.ndarray) -> tuple[int, int] | None:
    """Flag the rows the ``verdicts``' candidates sent out of ``label`` (``flagged`` in place).

    Returns:
        ``(rows sent away, of them not flagged before)``, or ``None`` when none was sent away.
    """
    rows = np.zeros(len(flagged), dtype=bool)
    for verdict in verdicts:
        rows[verdict.members[verdict.outcome.predicted != label]] = True
    if not rows.any():
        return None
    added = int((rows & ~flagged).sum())
    flagged |= rows
    return int(rows.sum()), added


def _flag_again(again: Sequence[_GroupVerdict], label: int, flagged: np.ndarray,
                proven: set[int | None]) -> str | None:
    """Flag, in a poisoned class, cleared candidates the tails' retrain finds poison elsewhere.

    The candidates' retrain keeps the poison only the tail shows, which re-teaches the trigger
    (:func:`_again_without_tails`). Judged again on the tails' retrain, which left that poison
    out too, by the same rules (a dense core by the one-source rule as well: the class is
    proven poisoned already; and, as in :func:`_flag_unsure`, without the sureness cuts), a
    candidate whose rows go to a source other than the proven poison's is that source's share
    of the attack (MNIST three sources at 10%, seed 0: the dense core's rows went to class 1 at
    median typicality 0.01, a trigger the tails' retrain half learned); one that goes
    where the proven poison went is what a class falsely proven would add. The class's verdict
    does not change; ``flagged`` is updated in place.

    Returns:
        The clause for the class's reason (the candidates' verdicts, then what was flagged),
        or ``None`` when none is poison from another source.
    """
    found = [v for v in again
             if (v.poisoned or v.unsure_only) and v.outcome.source not in proven]
    counts = _flag_sent_away(found, label, flagged)
    if counts is None:
        return None
    sent, added = counts
    many = len(found) > 1
    return "; ".join([*(v.text for v in found),
                      f"beside the poison, {len(found)} candidate{'s' if many else ''} the "
                      f"candidates' retrain kept in the class went to another source once the "
                      f"tails were left out as well: the {sent} rows "
                      f"{'they' if many else 'it'} sent away are flagged ({added} not yet "
                      f"flagged)"])


def _candidate_sources(verdicts: Sequence[_GroupVerdict], n_class: int) -> np.ndarray:
    """Per row of the class, where the retrain sent it (:data:`NO_VALUE`: in no candidate)."""
    sample_sources = np.full(n_class, NO_VALUE, dtype=np.int64)
    for verdict in verdicts:
        sample_sources[verdict.members] = verdict.outcome.predicted
    return sample_sources


def _named_scores(clustering: ClassClustering, worst: _GroupVerdict,
                  share: float) -> dict[str, float]:
    """The class report's scores, taken from its most poison-like candidate."""
    silhouette = clustering.silhouette if clustering.silhouette is not None else float("nan")
    named = {"size_ratio": share, "silhouette": silhouette, "exre": worst.outcome.score,
             "source_share": worst.source_share}
    if worst.confusion is not None:
        named["confusion"] = worst.confusion
    if worst.confidence is not None:
        named["confidence"] = worst.confidence
    if worst.typicality is not None:
        named["typicality"] = worst.typicality
    if worst.overlap is not None:
        named["overlap"], named["overlap_median"] = worst.overlap
    if clustering.candidates is not None:
        named["candidate_k"] = float(clustering.candidates[worst.group].k)
        named["stability"] = clustering.candidates[worst.group].stability
    return named


# ----------------------------------------------------------------------------- typicality


def _typicality(groups: Groups, outcomes: Mapping[tuple[int, int], ExReOutcome],
                labels: np.ndarray, retrain_and_predict: RetrainAndPredict,
                leave_out: np.ndarray | None,
                random_state: int) -> dict[tuple[int, int], np.ndarray]:
    """Per group, how typical each row is of the class the retrain sent it to (NaN: own label).

    Needs ``retrain_and_predict.activations(train_mask, positions)`` (the retrained model's
    last-hidden-layer activations; :func:`acgate.torch.exre.make_retrain_and_predict` has it).
    A row's typicality is the share of its predicted class's reference training rows (a seeded
    sample of :data:`TYPICALITY_REFERENCE_ROWS`) lying at least as far from that class's centre
    as the row: about uniform for genuine members of the class, near 0 for rows between classes.
    """
    embed = getattr(retrain_and_predict, "activations", None)
    if embed is None or not groups:
        return {}
    train_mask = retrain_mask(groups, len(labels), leave_out)  # the retrain just made
    queries = {key: positions[outcomes[key].predicted != label]
               for key, (label, positions) in groups.items()}
    targets = {key: outcomes[key].predicted[outcomes[key].predicted != groups[key][0]]
               for key in groups}
    wanted = np.unique(np.concatenate([t for t in targets.values()] or [np.zeros(0, int)]))
    if not len(wanted):
        return {}
    references = _reference_rows(wanted, train_mask, labels, random_state)
    asked = np.concatenate([*queries.values(), *references.values()])
    embedded = np.asarray(embed(train_mask, asked), dtype=np.float64)
    row_of = {int(p): i for i, p in enumerate(asked)}
    centres, spreads = {}, {}
    for target, rows in references.items():
        points = embedded[[row_of[int(r)] for r in rows]]
        centres[target] = points.mean(axis=0)
        spreads[target] = np.sort(np.linalg.norm(points - centres[target], axis=1))
    return {key: _group_typicality(label, positions, outcomes[key], targets[key],
                                   lambda p: embedded[row_of[int(p)]], centres, spreads)
            for key, (label, positions) in groups.items()}


def _reference_rows(wanted: np.ndarray, train_mask: np.ndarray, labels: np.ndarray,
                    random_state: int) -> dict[int, np.ndarray]:
    """Per wanted class, its training rows (a seeded sample of at most the reference count)."""
    rng = np.random.default_rng(random_state)
    references = {}
    for target in wanted:
        rows = np.flatnonzero(train_mask & (labels == target))
        if len(rows) > TYPICALITY_REFERENCE_ROWS:
            rows = np.sort(rng.choice(rows, TYPICALITY_REFERENCE_ROWS, replace=False))
        references[int(target)] = rows
    return references


def _group_typicality(label: int, positions: np.ndarray, outcome: ExReOutcome,
                      targets: np.ndarray, embedding_of: Callable[[int], np.ndarray],
                      centres: Mapping[int, np.ndarray],
                      spreads: Mapping[int, np.ndarray]) -> np.ndarray:
    """One group's typicality per row (NaN for rows kept in their own label)."""
    values = np.full(len(positions), np.nan)
    elsewhere = np.flatnonzero(outcome.predicted != label)
    for index, target in zip(elsewhere, targets, strict=True):
        reference = spreads.get(int(target))
        if reference is None or not len(reference):
            continue
        distance = np.linalg.norm(embedding_of(positions[index]) - centres[int(target)])
        farther = len(reference) - np.searchsorted(reference, distance, side="left")
        values[index] = (1 + farther) / (1 + len(reference))
    return values


# ------------------------------------------------------------------------------- the judge


def judge_exre(clusterings: Sequence[ClassClustering],
               evidence: Evidence) -> dict[int, ClassJudgement]:
    """Exclusionary reclassification of every class's candidates, with one shared retrain.

    Leaving out all candidates at once (not one at a time) keeps an undetected poison cluster of
    one class from teaching the retrained model the trigger that another candidate carries.
    When the retrain can give its activations, a second retrain judges every class's tail
    (:func:`_tails`): a class is also poisoned when its tail is (:mod:`acgate.core.tail`).

    Args:
        clusterings: Every class's clustering (skipped classes are not judged).
        evidence: Needs ``retrain_and_predict``; uses ``predictions`` when given (the
            natural-confusion test) and ``retrain_and_predict.activations`` when present (the
            multi-source rule's typicality and the tails).

    Returns:
        By label, the judgement of every class that was not skipped.

    Raises:
        ValueError: Without a retrain, or when it returns probabilities of the wrong shape.
    """
    retrain = evidence.retrain_and_predict
    if retrain is None:
        raise ValueError("exclusionary reclassification needs retrain_and_predict")
    labels = evidence.labels
    judged = [c for c in clusterings if not c.skipped]
    several_sources = getattr(retrain, "activations", None) is not None
    candidates = {c.label: _candidate_groups(c, evidence.thresholds_for(c.label).size,
                                             several_sources=several_sources)
                  for c in judged}
    groups, leave_out = _retrain_groups(judged, candidates)
    confusion_of = _confusion_test(groups, evidence)
    outcomes = exclusionary_reclassification_groups(groups, len(labels), retrain,
                                                    leave_out=leave_out)
    typicality = _typicality(groups, outcomes, labels, retrain, leave_out,
                             evidence.random_state)
    tails, overlap_of = _tails(judged, groups, leave_out, evidence, confusion_of)
    again, again_typicality = _again_without_tails(judged, groups, leave_out, tails, evidence)
    judgements: dict[int, ClassJudgement] = {}
    for clustering in judged:
        label = clustering.label
        used = evidence.thresholds_for(label)
        n_class = len(clustering.positions)
        verdicts = [
            _judge_group(group, members, nested, description, outcomes[(label, group)], used,
                         n_class, confusion_of, typicality.get((label, group)),
                         several_only=several_only, separated=separated,
                         overlap_of=overlap_of)
            for group, (members, nested, description, several_only, separated)
            in candidates[label].items()]
        second = [
            _judge_group(group, members, nested, f"{description}, again in the tails' retrain",
                         again[(label, group)], used, n_class, confusion_of,
                         again_typicality.get((label, group)), overlap_of=overlap_of)
            for verdict, (group, (members, nested, description, *_)) in zip(
                verdicts, candidates[label].items(), strict=True)
            if not verdict.poisoned and (label, group) in again
            and n_class >= AGAIN_MIN_CLASS_ROWS
            and len(members) <= AGAIN_MAX_CANDIDATE_SHARE * n_class]
        tail, tail_outcome = tails.get(label, (None, None))
        judgements[label] = _class_judgement(clustering, verdicts, tail, tail_outcome, used,
                                             second)
    return judgements


def _again_without_tails(judged: Sequence[ClassClustering], groups: Groups,
                         leave_out: np.ndarray | None,
                         tails: Mapping[int, tuple[TailVerdict, ExReOutcome]],
                         evidence: Evidence
                         ) -> tuple[dict[tuple[int, int], ExReOutcome],
                                    dict[tuple[int, int], np.ndarray]]:
    """Every candidate classified again by the tails' retrain (same training rows).

    The candidates' retrain keeps every class's tail, and with it the poison that only the
    tail shows: that poison re-teaches the trigger, and a candidate holding another source's
    poison stays in its label (MNIST, three sources into one class at 10% of it, seed 0: a
    dense core of 79 rows, all poison from source 1, l/p 79 there; in the tails' retrain 62% went
    to class 1 at mean confidence 0.95). :func:`_flag_again` uses these outcomes beside proven
    poison only. Empty when no tail was judged (the tails' retrain was not made).
    """
    if not tails or not groups:
        return {}, {}
    retrain = evidence.retrain_and_predict
    n_samples = len(evidence.labels)
    tail_rows = np.concatenate([c.positions[tails[c.label][0].members]
                                for c in judged if c.label in tails])
    kept_out = np.flatnonzero(~retrain_mask(groups, n_samples, leave_out))
    # The tails' training rows exactly (the candidates and margins are in kept_out): the
    # retrain's cached model answers.
    without = np.union1d(kept_out, tail_rows)
    outcomes = exclusionary_reclassification_groups(groups, n_samples, retrain,
                                                    leave_out=without)
    typicality = _typicality(groups, outcomes, evidence.labels, retrain, without,
                             evidence.random_state)
    return outcomes, typicality


def _tails(judged: Sequence[ClassClustering], groups: Groups, leave_out: np.ndarray | None,
           evidence: Evidence, confusion_of: Callable[[int, int], float] | None = None
           ) -> tuple[dict[int, tuple[TailVerdict, ExReOutcome]],
                      Callable[[int, int], tuple[float, float] | None] | None]:
    """Every class's tail, judged by a second retrain without the tails and the candidates.

    A retrain of its own: leaving 20% of every class out of the candidates' retrain as well
    takes away the natural variety a legitimate candidate is recognised by (clean digits:
    class 1's sub-clusters then went to class 9 and were judged poison). The candidates and
    their margins stay out of this one too (poison in training re-teaches the trigger). Needs
    the retrain's activations (the flips' typicality); without them no tail is judged.

    Returns:
        By label, the tail's verdict and the retrain's outcome on its rows; and the held-out
        overlap of two classes that this retrain measures (:func:`held_out_overlap`, which the
        tails' verdicts already asked), ``None`` when no tail was judged.
    """
    retrain = evidence.retrain_and_predict
    if getattr(retrain, "activations", None) is None:
        return {}, None
    spaces = {c.label: whitened(c.reduced) for c in judged if c.reduced is not None}
    members = {label: tail_members(space) for label, space in spaces.items()}
    tail_groups = {(c.label, TAIL_GROUP): (c.label, c.positions[members[c.label]])
                   for c in judged if c.label in members}
    if not tail_groups:
        return {}, None
    kept_out = np.flatnonzero(~retrain_mask(groups, len(evidence.labels), leave_out))
    outcomes = exclusionary_reclassification_groups(tail_groups, len(evidence.labels), retrain,
                                                    leave_out=kept_out)
    typicality = _typicality(tail_groups, outcomes, evidence.labels, retrain, kept_out,
                             evidence.random_state)
    overlap_of = held_out_overlap({label: outcomes[(label, TAIL_GROUP)].predicted
                                   for label in spaces})
    tails = {}
    for label, space in spaces.items():
        outcome = outcomes[(label, TAIL_GROUP)]
        typical = typicality.get((label, TAIL_GROUP), np.full(len(members[label]), np.nan))
        verdict = tail_verdict(space, members[label], label, outcome.predicted,
                               outcome.max_probability, typical)
        tails[label] = (_with_overlap(verdict, label, len(space), overlap_of,
                                      evidence.thresholds_for(label), confusion_of), outcome)
    return tails, overlap_of


def _with_overlap(tail: TailVerdict, label: int, n_class: int,
                  overlap_of: Callable[[int, int], tuple[float, float] | None],
                  thresholds: Thresholds,
                  confusion_of: Callable[[int, int], float] | None = None) -> TailVerdict:
    """The tail with the held-out overlap of its class and its clump's source, when asked.

    Asked in large classes whose clump would make the tail poison: with a natural overlap (at
    the class's ``Thresholds.overlap``, or together with the proxy's confusion of the two
    classes: :func:`_together`) only the clump's rows sent to other classes count
    (:attr:`TailVerdict.poisoned`).
    """
    if n_class < HELD_OUT_OVERLAP_MIN_CLASS_ROWS or tail.source is None or not tail.clumped:
        return tail
    overlap = overlap_of(label, tail.source)
    confusion = confusion_of(label, tail.source) if confusion_of is not None else None
    together = overlap is not None and _together(confusion, *overlap, thresholds)
    return dataclasses.replace(tail, overlap=overlap, overlap_threshold=thresholds.overlap,
                               confusion=confusion, together=together)


def _confusion_test(groups: Groups, evidence: Evidence) -> Callable[[int, int], float] | None:
    """The natural-confusion measure over the rows outside every candidate (needs predictions)."""
    predictions = evidence.predictions
    if predictions is None:
        return None
    left_out = np.zeros(len(evidence.labels), dtype=bool)
    for _, positions in groups.values():
        left_out[positions] = True
    return lambda label, source: natural_confusion(predictions, evidence.labels, label, source,
                                                   exclude=left_out)
