"""The held-out overlap test of the one-source rule and the tail (``acgate.core.tail``).

A candidate that goes to one neighbour is cleared when a model that never saw it (the tails'
retrain) sends the neighbour's own outliers to the candidate's class much more than it sends
other classes' outliers there: the two classes overlap by nature. Poison rows are genuine
samples of their source; the source's outliers do not lean to the target. An overlap explains
look-alikes only (rows at the source's edge): rows that sit inside the source like its own
members stay poison whatever the overlap.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from synthetic import poison_inside_spread, with_activations

from acgate.core import detect
from acgate.core.evidence import Thresholds
from acgate.core.exre import (
    ONE_SOURCE_TYPICALITY,
    OVERLAP_LOOKALIKE_TYPICALITY,
    OVERLAP_TOGETHER_SHARE,
    one_source_verdict,
)
from acgate.core.tail import (
    HELD_OUT_OVERLAP,
    HELD_OUT_OVERLAP_RATIO,
    TAIL_MIN_COHESIVE,
    held_out_overlap,
    tail_members,
    tail_verdict,
    whitened,
)
from acgate.review import clauses


def _stretched_toward(blobs, source: int, target: int, factor: float) -> np.ndarray:
    """The activations with class ``source`` stretched ``factor`` times along the line to
    ``target``'s mean: its outliers reach into ``target`` (a natural overlap of the two)."""
    x = blobs.activations.copy()
    toward = blobs.means[target] - blobs.means[source]
    toward /= np.linalg.norm(toward)
    rows = blobs.labels == source
    along = (x[rows] - blobs.means[source]) @ toward
    x[rows] += np.outer(along * (factor - 1.0), toward)
    return x


def _at_the_edge(blobs, x: np.ndarray, source: int, target: int, way: float) -> np.ndarray:
    """``x`` with the poison rows moved ``way`` of the line from ``source``'s mean to
    ``target``'s: look-alikes at the source's edge rather than typical members of it."""
    x = x.copy()
    x[blobs.is_poison] += way * (blobs.means[target] - blobs.means[source])
    return x


def _scan(x, labels, retrain, **settings):
    return detect(x, labels, analysis="exre", retrain_and_predict=with_activations(retrain, x),
                  n_clusters=2, **settings)


def test_the_overlap_is_the_sources_tail_share_against_the_other_tails_median():
    def tail(n_rows, sent_to_2):
        return np.array([2] * sent_to_2 + [9] * (n_rows - sent_to_2))

    sent = {0: tail(200, 40), 1: tail(400, 100), 2: tail(200, 200), 3: tail(300, 0)}
    overlap = held_out_overlap(sent)
    assert overlap(2, 0) == pytest.approx((0.2, 0.125))  # others: class 1 (0.25), class 3 (0)
    assert overlap(1, 0) == pytest.approx((0.0, 0.0))
    assert overlap(2, 5) is None  # the source has no tail
    # A source's tail under 20% of 1,000 rows: one row would move the share by the cut.
    assert held_out_overlap({**sent, 0: tail(199, 40)})(2, 0) is None
    # Fewer than two other classes give no baseline (two- and three-class data).
    assert held_out_overlap({0: tail(200, 40), 1: tail(200, 0), 2: tail(200, 0)})(2, 0) is None


@pytest.mark.parametrize(("overlap", "median", "natural"), [
    (HELD_OUT_OVERLAP, 0.0, True),
    (0.8 * HELD_OUT_OVERLAP, 0.0, False),  # under the absolute cut
    (0.05, 0.05 / HELD_OUT_OVERLAP_RATIO + 0.001, False),  # other tails go there almost as much
    (0.05, 0.05 / HELD_OUT_OVERLAP_RATIO, True),
])
def test_a_held_out_overlap_clears_one_source_only_at_both_cuts(overlap, median, natural):
    poisoned, why = one_source_verdict(0.1, 0.9, 0.0, Thresholds(), label=7, source=9,
                                       overlap=overlap, overlap_median=median)
    assert poisoned is not natural
    assert f"held out, class 9's tail goes to class 7 at {overlap:.3f}" in why
    assert ("a natural overlap" in why) is natural
    # Without the baseline the test does not apply (the gate replays missing metrics so).
    assert one_source_verdict(0.1, 0.9, 0.0, Thresholds(), overlap=overlap)[0]


def test_a_candidate_from_a_neighbour_whose_outliers_lean_in_is_a_natural_overlap(
        make_blobs, nearest_centroid_retrain):
    # Class 2 holds a 15% cluster of class-0-like rows; a large class (>= 1,000 rows) is asked.
    blobs = make_blobs(n_per_class=1000, poisoned={2: 0})
    compact = _scan(blobs.activations, blobs.labels,
                    nearest_centroid_retrain(blobs.activations, blobs.labels))
    assert compact.poisoned_classes == (2,)
    report = compact.class_report(2)
    assert report.scores["overlap"] == 0.0 and report.scores["overlap_median"] == 0.0
    # Class 0's own outliers reach into class 2, and the cluster sits at class 0's edge toward
    # class 2 (look-alikes): a natural overlap.
    x = _at_the_edge(blobs, _stretched_toward(blobs, 0, 2, factor=8.0), 0, 2, way=0.4)
    overlapping = _scan(x, blobs.labels, nearest_centroid_retrain(x, blobs.labels))
    assert overlapping.poisoned_classes == ()
    report = overlapping.class_report(2)
    assert report.scores["overlap"] >= HELD_OUT_OVERLAP
    assert ONE_SOURCE_TYPICALITY <= report.scores["typicality"] < OVERLAP_LOOKALIKE_TYPICALITY
    assert "held out, class 0's tail goes to class 2" in report.reason
    assert "a natural overlap), and the rows sent there sit at the edge of class 0" in report.reason
    assert "look-alikes -> legitimate" in report.reason
    assert report.thresholds["overlap"] == HELD_OUT_OVERLAP
    # The scan's overlap_threshold is the cut: over the measured share (or 2: off) it is poison.
    share = report.scores["overlap"]
    for cut in (min(share + 0.01, 1.0), 2.0):
        strict = _scan(x, blobs.labels, nearest_centroid_retrain(x, blobs.labels),
                       overlap_threshold=cut)
        assert strict.poisoned_classes == (2,)
        assert strict.class_report(2).thresholds["overlap"] == cut
        assert strict.info.params["overlap_threshold"] == cut
        assert f"< the larger of {cut:g} and" in strict.class_report(2).reason


def test_the_overlap_does_not_explain_rows_typical_of_the_source(make_blobs,
                                                                  nearest_centroid_retrain):
    # The same overlap, but the cluster's rows sit inside class 0 like its own members (backdoor
    # poison: genuine source images with a trigger): not look-alikes, poison.
    blobs = make_blobs(n_per_class=1000, poisoned={2: 0})
    x = _stretched_toward(blobs, 0, 2, factor=8.0)
    scan = _scan(x, blobs.labels, nearest_centroid_retrain(x, blobs.labels))
    assert scan.poisoned_classes == (2,)
    report = scan.class_report(2)
    assert report.scores["overlap"] >= HELD_OUT_OVERLAP
    assert report.scores["typicality"] >= OVERLAP_LOOKALIKE_TYPICALITY
    assert "a natural overlap), but the rows sent there sit inside class 0" in report.reason
    flagged = np.asarray(scan.is_poison, bool)
    assert flagged[blobs.is_poison].mean() > 0.9 and not flagged[~blobs.is_poison].any()


@pytest.mark.parametrize(("typicality", "poisoned"), [
    (None, False),  # not measured: the overlap alone decides
    (OVERLAP_LOOKALIKE_TYPICALITY - 0.01, False),
    (OVERLAP_LOOKALIKE_TYPICALITY, True),
    (0.5, True),
])
def test_a_natural_overlap_clears_only_look_alikes(typicality, poisoned):
    verdict, why = one_source_verdict(0.1, 0.9, 0.0, Thresholds(), label=7, source=9,
                                      confidence=0.95, typicality=typicality, overlap=0.06,
                                      overlap_median=0.005)
    assert verdict is poisoned
    assert ("its own members, not look-alikes" in why) is poisoned
    assert ("sit at the edge of class 9" in why) is (typicality is not None and not poisoned)


# Sneakers sent to ankle boot on another CPU's proxy: confusion 0.024 and held-out overlap 0.022
# against a median of 0, each below its cut (0.03), rows at the edge of the source.
SNEAKERS = {"confusion": 0.024, "overlap": 0.022, "overlap_median": 0.0, "typicality": 0.14}


@pytest.mark.parametrize(("change", "poisoned"), [
    ({}, False),
    ({"typicality": 0.35}, True),       # together natural, but the rows sit inside the source
    ({"typicality": None}, False),      # not measured: the overlap alone decides, as above
    ({"confusion": 0.014}, True),       # confusion under half its cut
    ({"confusion": None}, True),        # confusion not measured: the overlap's cut alone
    ({"overlap": 0.014}, True),         # overlap under half its cut
    ({"overlap_median": 0.004}, True),  # other tails go there too (0.022 < 6.5 x 0.004)
])
def test_confusion_and_overlap_at_half_their_cuts_together_are_natural(change, poisoned):
    numbers = {**SNEAKERS, **change}
    verdict, why = one_source_verdict(0.06, 0.93, numbers["confusion"], Thresholds(), label=7,
                                      source=9, confidence=0.93,
                                      typicality=numbers["typicality"],
                                      overlap=numbers["overlap"],
                                      overlap_median=numbers["overlap_median"])
    assert verdict is poisoned, why
    together = "together a natural overlap" in why
    assert together is (not poisoned or "typicality" in change), why
    if not poisoned and numbers["typicality"] is not None:
        assert "sit at the edge of class 9" in why


def test_the_together_rule_needs_both_tests_on_and_scales_with_their_cuts():
    def verdict(thresholds):
        return one_source_verdict(0.06, 0.93, SNEAKERS["confusion"], thresholds,
                                  confidence=0.93, typicality=0.14, overlap=SNEAKERS["overlap"],
                                  overlap_median=0.0)[0]

    assert not verdict(Thresholds())
    assert verdict(Thresholds(overlap=1.5))   # overlap test off
    assert verdict(Thresholds(confusion=2.0))  # confusion test off
    # Cuts twice as strict: the same numbers fall under half of them.
    strict = Thresholds(confusion=SNEAKERS["confusion"] / OVERLAP_TOGETHER_SHARE + 0.002)
    assert verdict(strict)


def test_a_share_of_zero_is_never_a_natural_overlap():
    # A cut of 0 would otherwise call every pair whose tails all stay home "natural".
    thresholds = Thresholds(overlap=0.0)
    assert one_source_verdict(0.1, 0.9, 0.0, thresholds, overlap=0.0, overlap_median=0.0)[0]
    assert not one_source_verdict(0.1, 0.9, 0.0, thresholds, overlap=0.01,
                                  overlap_median=0.0)[0]


@pytest.mark.parametrize("cut", [-0.1, 2.5, float("nan")])
def test_an_overlap_threshold_outside_0_to_2_is_refused(make_blobs, cut):
    blobs = make_blobs(n_per_class=50)
    with pytest.raises(ValueError, match=r"overlap_threshold must be in \[0.0, 2.0\]"):
        detect(blobs.activations, blobs.labels, overlap_threshold=cut)


def test_small_classes_and_scans_without_tails_are_not_asked(make_blobs,
                                                             nearest_centroid_retrain):
    blobs = make_blobs(n_per_class=400, poisoned={2: 0})  # below 1,000 rows a class
    x = _stretched_toward(blobs, 0, 2, factor=8.0)
    small = _scan(x, blobs.labels, nearest_centroid_retrain(x, blobs.labels))
    assert small.poisoned_classes == (2,)
    assert "overlap" not in small.class_report(2).scores
    large = make_blobs(n_per_class=1000, poisoned={2: 0})
    x = _stretched_toward(large, 0, 2, factor=8.0)
    # A retrain that cannot give its activations judges no tail: nothing to measure the overlap.
    plain = detect(x, large.labels, analysis="exre", n_clusters=2,
                   retrain_and_predict=nearest_centroid_retrain(x, large.labels))
    assert plain.poisoned_classes == (2,)
    assert "held out" not in plain.class_report(2).reason


def _clumped_tail(sent_to_neighbours):
    """A 400-row class 3 whose 30 clumped tail rows go to ``sent_to_neighbours`` (cycled)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 5))
    x[:30] = rng.normal(6.0, 0.3, size=(30, 5))
    x = whitened(x)
    tail = tail_members(x)
    predicted = np.full(len(tail), 3)
    clumped = np.flatnonzero(np.isin(tail, np.arange(30)))
    predicted[clumped] = np.resize(sent_to_neighbours, len(clumped))
    return x, tail_verdict(x, tail, 3, predicted, np.full(len(tail), 0.99),
                           np.full(len(tail), 0.5))


def test_a_natural_overlap_clears_a_tails_clump_sent_to_that_neighbour():
    _, verdict = _clumped_tail([5])
    assert verdict.poisoned and verdict.source == 5
    assert dataclasses.replace(verdict, overlap=(0.02, 0.0)).poisoned
    cleared = dataclasses.replace(verdict, overlap=(0.05, 0.0))
    assert cleared.clumped and not cleared.poisoned
    assert cleared.explain(3, 400).endswith(
        f">= {verdict.needed} needed; held out, class 5's tail goes to class 3 at 0.050, the "
        "other tails at a median 0.000 (>= the larger of 0.03 and 6.5 x that: a natural "
        f"overlap), 0 of the clump sent to other classes (< {verdict.needed} needed) "
        "-> legitimate")


def test_a_natural_overlap_leaves_a_clump_spread_over_several_classes_poison():
    # All-to-one poison's clump goes to many sources; one of them overlapping the class by
    # nature (or through leftover poison in the retrain) does not explain the rest.
    _, verdict = _clumped_tail([5, 6, 8])
    spread = dataclasses.replace(verdict, overlap=(0.09, 0.01))
    assert spread.beyond_source >= verdict.needed and spread.poisoned
    assert "sent to other classes (>= " in spread.explain(3, 400)
    # Without a record of where the clump's rows went, every one counts: still poison.
    unrecorded = dataclasses.replace(verdict, overlap=(0.05, 0.0), sent_to=None)
    assert unrecorded.poisoned
    assert "not recorded: every one counts -> poison" in unrecorded.explain(3, 400)


def test_a_tail_clump_from_a_neighbour_whose_outliers_lean_in_is_a_natural_overlap(
        make_blobs, nearest_centroid_retrain):
    # Class 2's 5% poison hides in its spread (no candidate holds it): only the tail finds it.
    x, blobs = poison_inside_spread(make_blobs, n_per_class=1000)
    found = _scan(x, blobs.labels, nearest_centroid_retrain(x, blobs.labels))
    assert found.poisoned_classes == (2,)
    report = found.class_report(2)
    assert report.reason.startswith("tail") and report.suspected_source == 0
    assert report.scores["tail_clump"] >= TAIL_MIN_COHESIVE
    # Class 0's own outliers reach into class 2: the clump is a natural overlap.
    stretched = _stretched_toward(dataclasses.replace(blobs, activations=x), 0, 2, factor=8.0)
    cleared = _scan(stretched, blobs.labels,
                    nearest_centroid_retrain(stretched, blobs.labels))
    assert cleared.poisoned_classes == ()
    (tail_clause,) = [c for c in clauses(cleared.class_report(2).reason)
                      if c.text.startswith("tail (")]
    assert "held out, class 0's tail goes to class 2" in tail_clause.text
    assert tail_clause.verdict == "legitimate"
    # With the test off the clump counts whole again.
    off = _scan(stretched, blobs.labels, nearest_centroid_retrain(stretched, blobs.labels),
                overlap_threshold=2.0)
    assert off.poisoned_classes == (2,)
    (tail_clause,) = [c for c in clauses(off.class_report(2).reason) if c.text.startswith("tail (")]
    assert tail_clause.verdict == "poison"


@pytest.mark.parametrize("overlap, confusion, thresholds, cleared", [
    ((0.022, 0.0), 0.068, Thresholds(), True),              # Fashion-MNIST sneakers, seed 1
    ((0.022, 0.0), 0.010, Thresholds(), False),             # the proxy does not confuse them
    ((0.012, 0.0), 0.068, Thresholds(), False),             # the overlap under half its cut
    ((0.022, 0.005), 0.068, Thresholds(), False),           # nor 6.5 x the other tails' median
    ((0.022, 0.0), 0.068, Thresholds(confusion=2.0), False),  # the confusion test off
    ((0.022, 0.0), None, Thresholds(), False),              # no predictions: not measured
])
def test_a_tails_clump_is_natural_when_confusion_and_overlap_lean_together(
        overlap, confusion, thresholds, cleared):
    # The one-source rule's "together" test, asked of a tail whose clump went to one neighbour.
    from acgate.core.exre import _with_overlap

    _, verdict = _clumped_tail([5])
    judged = _with_overlap(verdict, 3, 2000, lambda label, source: overlap, thresholds,
                           (lambda label, source: confusion) if confusion is not None else None)
    assert judged.overlap == overlap and judged.confusion == confusion
    assert judged.clumped and judged.poisoned is not cleared
    text = judged.explain(3, 2000)
    assert ("both reach 0.5 of their cuts: together a natural overlap" in text) is cleared
    assert text.endswith("-> legitimate" if cleared else "-> poison")
    # A small class is not asked (its tail's overlap is too coarse to measure).
    assert _with_overlap(verdict, 3, 999, lambda label, source: overlap, thresholds,
                         lambda label, source: 0.068) is verdict
