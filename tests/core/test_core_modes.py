"""Multimodal classes: k chosen per class, and the source-share test of exclusionary
reclassification (a natural mode with no other home scatters; poison goes to its source)."""

from __future__ import annotations

import numpy as np
import pytest
from synthetic import left_out_outcome, with_activations

from acgate.core import detect
from acgate.core.clustering import cluster_class
from acgate.core.detect import (
    MULTI_SOURCE_BAND_CLASSES,
    MULTI_SOURCE_BAND_TYPICALITY,
    MULTI_SOURCE_CONFIDENCE,
    MULTI_SOURCE_WIDE_CLASSES,
    MULTI_SOURCE_WIDE_CONFIDENCE,
    MULTI_SOURCE_WIDE_TYPICALITY,
    SOURCE_SHARE_THRESHOLD,
)
from acgate.core.evidence import Thresholds
from acgate.core.exre import (
    ONE_SOURCE_CONFIDENCE,
    _flag_again,
    _flag_unsure,
    _flagging,
    _GroupVerdict,
    _judge_group,
    _multi_source,
    effective_classes,
)


def _class_with_modes(rng, centres, sizes, spread=1.0):
    return np.concatenate([rng.normal(c, spread, size=(n, len(c))) for c, n in zip(centres, sizes,
                                                                                 strict=True)])


def _dataset(mode_centre_of, n_features=24, seed=0, poison_share=0.0):
    """Classes 0-3, one Gaussian each; class 3 also holds a 30% mode at ``mode_centre_of(means)``
    and optionally ``poison_share`` of rows drawn around class 0's mean (poison)."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0.0, 4.0, size=(4, n_features))
    xs, ys, truth = [], [], []
    for label in range(4):
        if label != 3:
            xs.append(rng.normal(means[label], 1.0, size=(200, n_features)))
            ys += [label] * 200
            truth += [False] * 200
            continue
        n_poison = int(round(poison_share * 300))
        n_mode, n_main = 90, 300 - 90 - n_poison
        xs.append(rng.normal(means[3], 1.0, size=(n_main, n_features)))
        xs.append(rng.normal(mode_centre_of(means), 1.0, size=(n_mode, n_features)))
        ys += [3] * (n_main + n_mode)
        truth += [False] * (n_main + n_mode)
        if n_poison:
            xs.append(rng.normal(means[0], 1.0, size=(n_poison, n_features)))
            ys += [3] * n_poison
            truth += [True] * n_poison
    return np.concatenate(xs), np.asarray(ys), np.asarray(truth)


def _between_three(means):
    # The circumcentre of classes 0, 1 and 2 (equidistant from the three, far from class 3):
    # a mode with no other home; its rows' nearest other class is 0, 1 or 2 by chance.
    m0, m1, m2 = means[:3]
    basis = np.stack([m1 - m0, m2 - m0])
    a, b = np.linalg.solve(2 * basis @ basis.T, (basis ** 2).sum(axis=1))
    return m0 + a * (m1 - m0) + b * (m2 - m0)


def test_a_mode_with_no_other_home_is_not_poison(nearest_centroid_retrain):
    x, y, _ = _dataset(_between_three)
    retrain = nearest_centroid_retrain(x, y)
    result = detect(x, y, analysis="exre", retrain_and_predict=retrain)
    report = result.class_report(3)
    assert report.exre_score is not None and report.exre_score < 1.0  # l/p alone says poison
    assert report.verdict == "clean", report.reason
    assert "legitimate" in report.reason and "of it in class" in report.reason
    assert result.poisoned_classes == ()
    # Without the source-share test (the paper's l/p rule alone) the mode is flagged.
    plain = detect(x, y, analysis="exre", retrain_and_predict=retrain,
                   source_share_threshold=0.0)
    assert plain.poisoned_classes == (3,)


def test_poison_that_goes_to_one_source_is_still_flagged(nearest_centroid_retrain, planted):
    retrain = nearest_centroid_retrain(planted.activations, planted.labels)
    result = detect(planted.activations, planted.labels, analysis="exre",
                    retrain_and_predict=retrain)
    assert result.poisoned_classes == (2,)
    np.testing.assert_array_equal(result.flagged_indices, planted.poison_ids)
    assert result.info.params["source_share_threshold"] == pytest.approx(SOURCE_SHARE_THRESHOLD)
    assert result.class_report(2).thresholds["source_share"] == pytest.approx(0.5)


@pytest.mark.parametrize("value", [-0.1, 1.5, float("nan")])
def test_bad_source_share_threshold_is_refused(planted, value):
    with pytest.raises(ValueError, match="source_share_threshold"):
        detect(planted.activations, planted.labels, source_share_threshold=value)


def test_auto_k_follows_the_modes():
    rng = np.random.default_rng(0)
    centres = rng.normal(0.0, 6.0, size=(3, 16))
    three = _class_with_modes(rng, centres, (120, 100, 80))
    one = rng.normal(0.0, 1.0, size=(300, 16))
    by_three = cluster_class(three, label=0, positions=np.arange(300), n_clusters="auto")
    by_one = cluster_class(one, label=1, positions=np.arange(300), n_clusters="auto")
    assert by_three.n_clusters == 3
    assert sorted(by_three.cluster_sizes, reverse=True) == [120, 100, 80]
    assert any("chosen by silhouette" in note for note in by_three.warnings)
    assert by_one.n_clusters == 2  # nothing better than the default split: smallest k wins ties


def test_auto_k_isolates_poison_hidden_next_to_a_natural_mode(nearest_centroid_retrain):
    # Class 3: main mode, a 30% natural mode close to it, and 15% poison around class 0.
    x, y, truth = _dataset(lambda means: means[3] + 5.0, poison_share=0.15)
    retrain = nearest_centroid_retrain(x, y)
    result = detect(x, y, analysis="exre", retrain_and_predict=retrain, n_clusters="auto")
    report = result.class_report(3)
    assert report.n_clusters >= 3
    assert result.poisoned_classes == (3,)
    np.testing.assert_array_equal(result.flagged_indices, np.flatnonzero(truth))
    assert report.suspected_source == 0


def test_auto_k_is_deterministic(nearest_centroid_retrain):
    x, y, _ = _dataset(_between_three, poison_share=0.1)
    retrain = nearest_centroid_retrain(x, y)
    first = detect(x, y, analysis="exre", retrain_and_predict=retrain, n_clusters="auto")
    second = detect(x, y, analysis="exre", retrain_and_predict=retrain, n_clusters="auto")
    np.testing.assert_array_equal(first.is_poison, second.is_poison)
    assert [c.n_clusters for c in first.classes] == [c.n_clusters for c in second.classes]


@pytest.mark.parametrize("value", ["three", 1, 0, 2.5])
def test_bad_n_clusters_is_refused(planted, value):
    with pytest.raises((ValueError, TypeError), match="n_clusters"):
        detect(planted.activations, planted.labels, n_clusters=value)


def _all_to_one(seed=0, n_features=24, rate=0.08):
    """Classes 0-4 (200 rows each); class 4 also holds ``rate`` of its rows drawn around the
    means of classes 0-3 (several sources) and shifted along one shared trigger direction."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0.0, 4.0, size=(5, n_features))
    trigger = np.zeros(n_features)
    trigger[0] = 12.0
    xs, ys, truth = [], [], []
    for label in range(5):
        xs.append(rng.normal(means[label], 1.0, size=(200, n_features)))
        ys += [label] * 200
        truth += [False] * 200
    n_poison = int(round(rate * 200))
    sources = rng.integers(0, 4, size=n_poison)
    xs.append(rng.normal(means[sources], 1.0) + trigger)
    ys += [4] * n_poison
    truth += [True] * n_poison
    return np.concatenate(xs), np.asarray(ys), np.asarray(truth), sources


def _retrain_with_activations(nearest_centroid_retrain, x, y, trigger_column=0):
    """Nearest centroid on the features with the trigger column dropped (a retrain that never
    saw the trigger), with ``.activations`` (those features) for the typicality test."""
    features = np.delete(x, trigger_column, axis=1)
    return with_activations(nearest_centroid_retrain(features, y), features)


def test_poison_from_several_sources_into_one_class_is_flagged(nearest_centroid_retrain):
    x, y, truth, _ = _all_to_one()
    retrain = _retrain_with_activations(nearest_centroid_retrain, x, y)
    result = detect(x, y, analysis="exre", retrain_and_predict=retrain)
    assert result.poisoned_classes == (4,)
    assert "several source classes" in result.class_report(4).reason
    flagged = result.is_poison
    assert (flagged & truth).sum() / truth.sum() >= 0.9
    assert (flagged & ~truth).sum() == 0


def test_without_the_retrains_activations_the_several_sources_rule_stays_off(
        nearest_centroid_retrain):
    x, y, _, _ = _all_to_one()
    retrain = nearest_centroid_retrain(np.delete(x, 0, axis=1), y)  # no .activations
    result = detect(x, y, analysis="exre", retrain_and_predict=retrain)
    # Only per-source sub-clusters can be judged then (one source each), never the whole mode.
    assert "several source classes" not in result.class_report(4).reason


def test_a_mode_between_classes_stays_clean_even_with_the_typicality_test(
        nearest_centroid_retrain):
    x, y, _ = _dataset(_between_three)
    retrain = _retrain_with_activations(nearest_centroid_retrain,
                                        np.column_stack([np.zeros(len(x)), x]), y)
    result = detect(x, y, analysis="exre", retrain_and_predict=retrain)
    assert result.poisoned_classes == ()


def test_effective_classes_counts_equal_shares():
    assert effective_classes(np.array([3, 3, 3])) == pytest.approx(1.0)
    assert effective_classes(np.repeat(np.arange(9), 20)) == pytest.approx(9.0)
    assert effective_classes(np.array([0, 0, 0, 1])) == pytest.approx(1.6)
    assert effective_classes(np.array([], dtype=int)) == 0.0


def test_poison_spread_over_many_sources_needs_less_confidence():
    # All-to-one poison on overlapping classes: nine sources, reached at confidence 0.7.
    spread = left_out_outcome(np.repeat(np.arange(9), 20), confidence=0.7)
    typical = np.full(180, 0.3)
    why, wide = _multi_source(spread, 180, SOURCE_SHARE_THRESHOLD, typical)
    assert "9.0 effective classes" in why and wide == pytest.approx(9.0)
    # The same confidence is not enough for rows that leave for two neighbours ...
    two = left_out_outcome(np.repeat([0, 1], [110, 70]), confidence=0.7)
    assert _multi_source(two, 180, SOURCE_SHARE_THRESHOLD, typical) is None
    # ... nor for widely scattered rows that lie between classes (atypical everywhere) ...
    assert _multi_source(spread, 180, SOURCE_SHARE_THRESHOLD,
                         np.full(180, MULTI_SOURCE_WIDE_TYPICALITY / 2)) is None
    # ... nor for wide scatter at a confidence below the wide cut.
    unsure = left_out_outcome(np.repeat(np.arange(9), 20),
                              confidence=MULTI_SOURCE_WIDE_CONFIDENCE - 0.1)
    assert _multi_source(unsure, 180, SOURCE_SHARE_THRESHOLD, typical) is None
    # Three sources reached surely stay the confident rule's case.
    sure = left_out_outcome(np.repeat([0, 1, 2], 60),
                            confidence=MULTI_SOURCE_CONFIDENCE + 0.05)
    why, wide = _multi_source(sure, 180, SOURCE_SHARE_THRESHOLD, typical)
    assert "effective" not in why and wide is None


def test_between_four_and_five_sources_the_wide_rule_asks_more_typical_rows():
    # Blended Fashion-MNIST poison seen by another CPU's proxy: its rows went back to their
    # sources as 4.4 effective classes, a third to one of them, typical there (0.17).
    band = left_out_outcome(np.repeat([0, 1, 2, 3, 4], [60, 40, 30, 30, 20]), confidence=0.74)
    spread = effective_classes(band.predicted)
    assert MULTI_SOURCE_BAND_CLASSES <= spread < MULTI_SOURCE_WIDE_CLASSES
    why, wide = _multi_source(band, 180, SOURCE_SHARE_THRESHOLD, np.full(180, 0.17))
    assert f"(>= {MULTI_SOURCE_BAND_CLASSES:g})" in why and wide == pytest.approx(spread)
    # A natural mode scattered as widely sits between classes: at the typicality the wide cut
    # (>= 5 classes) accepts, the band does not.
    between = MULTI_SOURCE_BAND_TYPICALITY - 0.03
    assert between >= MULTI_SOURCE_WIDE_TYPICALITY
    assert _multi_source(band, 180, SOURCE_SHARE_THRESHOLD, np.full(180, between)) is None
    nine = left_out_outcome(np.repeat(np.arange(9), 20), confidence=0.74)
    assert _multi_source(nine, 180, SOURCE_SHARE_THRESHOLD, np.full(180, between)) is not None
    # The band's cut is inclusive; below four effective classes the wide rule never holds.
    at_cut = np.full(180, MULTI_SOURCE_BAND_TYPICALITY)
    assert _multi_source(band, 180, SOURCE_SHARE_THRESHOLD, at_cut) is not None
    three = left_out_outcome(np.repeat([0, 1, 2], 60), confidence=0.74)
    assert _multi_source(three, 180, SOURCE_SHARE_THRESHOLD, np.full(180, 0.5)) is None


def _verdict(members, spread, poisoned=True, label=9):
    members = np.asarray(members)
    outcome = left_out_outcome(np.zeros(len(members), dtype=int), confidence=0.7, label=label)
    return _GroupVerdict(0, members, outcome, poisoned, 1.0, None, "", spread=spread)


def test_of_overlapping_wide_candidates_only_the_widest_is_flagged():
    # Nested candidates accepted by their spread: the wider holds less of the clean neighbours.
    wide, wider = _verdict(np.arange(0, 300), 6.3), _verdict(np.arange(0, 200), 6.8)
    apart = _verdict(np.arange(400, 450), 5.1)       # no overlap: flagged as well
    confident = _verdict(np.arange(100, 250), None)  # the confident rules keep their union
    cleared = _verdict(np.arange(500, 600), 7.0, poisoned=False)
    kept = _flagging([wide, wider, apart, confident, cleared])
    assert [id(v) for v in kept] == [id(confident), id(wider), id(apart)]


def _judged(predicted, confidence: float, n_class: int = 2000):
    """``_judge_group`` on a 180-row candidate of class 9 sent to ``predicted`` at
    ``confidence``, the retrain's rows typical there (0.3)."""
    outcome = left_out_outcome(predicted, confidence=confidence)
    members = np.arange(len(outcome.predicted))
    return _judge_group(0, members, False, "cluster", outcome, Thresholds(), n_class,
                        confusion_of=None, typicality=np.full(len(members), 0.3))


def test_a_candidate_cleared_only_as_not_sure_is_marked_so():
    # Every row to class 1, but hesitantly: the one-source rule's sureness cut alone clears it.
    unsure = _judged(np.repeat([1, 9], [170, 10]), confidence=ONE_SOURCE_CONFIDENCE - 0.1)
    assert not unsure.poisoned and unsure.unsure_only and "not sure" in unsure.text
    # Surely there: poison, nothing to mark.
    sure = _judged(np.repeat([1, 9], [170, 10]), confidence=ONE_SOURCE_CONFIDENCE + 0.05)
    assert sure.poisoned and not sure.unsure_only
    # Most rows stay home: l/p clears it, however sure, so it is not poison's rows.
    home = _judged(np.repeat([1, 9], [60, 120]), confidence=ONE_SOURCE_CONFIDENCE - 0.1)
    assert not home.poisoned and not home.unsure_only
    # A small class is judged without the sureness cuts: never "not sure".
    small = _judged(np.repeat([1, 9], [170, 10]), confidence=0.5, n_class=500)
    assert small.poisoned and not small.unsure_only


def test_beside_poison_the_rows_a_not_sure_candidate_sent_to_another_source_are_flagged():
    unsure = _judged(np.repeat([1, 9], [170, 10]), confidence=ONE_SOURCE_CONFIDENCE - 0.1)
    cleared = _judged(np.repeat([1, 9], [60, 120]), confidence=0.5)
    flagged = np.zeros(2000, dtype=bool)
    flagged[1000:1100] = True  # the poison the class was judged by, from class 4
    clause = _flag_unsure([unsure, cleared], 9, flagged, {4})
    # The 170 rows sent to class 1 join; the 10 kept at home and the cleared candidate do not.
    assert flagged[:170].all() and not flagged[170:1000].any() and flagged.sum() == 270
    assert "(class 1): the 170 rows it sent away are flagged (170 not yet flagged)" in clause
    assert _flag_unsure([cleared], 9, np.zeros(2000, dtype=bool), {4}) is None
    # Sent where the proven poison went: the proof covers that source, nothing is added (a
    # class falsely proven by its look-alikes of one neighbour would add more of them).
    same = np.zeros(2000, dtype=bool)
    assert _flag_unsure([unsure], 9, same, {1}) is None and not same.any()


def test_beside_poison_a_candidate_the_tails_retrain_sends_to_another_source_is_flagged():
    # Judged again on the tails' retrain (the proven poison left out too): 160 of 180 rows
    # surely to class 1, while the class was proven poisoned from class 4.
    again = _judged(np.repeat([1, 9], [160, 20]), confidence=ONE_SOURCE_CONFIDENCE + 0.05)
    cleared = _judged(np.repeat([1, 9], [60, 120]), confidence=0.95)
    assert again.poisoned and not cleared.poisoned
    flagged = np.zeros(2000, dtype=bool)
    flagged[1000:1100] = True
    clause = _flag_again([again, cleared], 9, flagged, {4})
    assert flagged[:160].all() and not flagged[160:1000].any() and flagged.sum() == 260
    assert again.text in clause
    assert clause.endswith("went to another source once the tails were left out as well: the "
                           "160 rows it sent away are flagged (160 not yet flagged)")
    # As beside proven poison in the candidates' retrain, the sureness cuts judge nothing.
    unsure = _judged(np.repeat([2, 9], [170, 10]), confidence=ONE_SOURCE_CONFIDENCE - 0.1)
    assert not unsure.poisoned and unsure.unsure_only
    assert "(170 not yet flagged)" in _flag_again([unsure], 9, np.zeros(2000, dtype=bool), {4})
    # Nothing poison, or poison where the proven poison went: nothing added.
    assert _flag_again([cleared], 9, np.zeros(2000, dtype=bool), {4}) is None
    same = np.zeros(2000, dtype=bool)
    assert _flag_again([again], 9, same, {1}) is None and not same.any()
