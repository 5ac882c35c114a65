"""The class's tail (``acgate.core.tail``): poison that no cluster isolates, found by where the
retrain sends the rows farthest from their class."""

from __future__ import annotations

import numpy as np
import pytest
from synthetic import left_out_outcome, poison_inside_spread, with_activations

from acgate.core import detect
from acgate.core.tail import (
    TAIL_MIN_COHESIVE,
    TAIL_SHARE,
    tail_members,
    tail_verdict,
    whitened,
)


def test_whitened_space_has_unit_variance_and_keeps_constant_components_at_zero():
    rng = np.random.default_rng(0)
    x = np.column_stack([rng.normal(0, 5, 300), rng.normal(3, 0.1, 300), np.full(300, 7.0)])
    w = whitened(x)
    np.testing.assert_allclose(w.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(w.std(axis=0), [1, 1, 0], atol=1e-12)


def test_the_tail_is_the_share_of_rows_farthest_from_the_centre_in_whitened_space():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(500, 4)) * [10.0, 1.0, 1.0, 1.0]
    far = np.arange(0, 500, 50)
    x[far, 1] = 8.0  # 8 SD on a narrow axis: farther than any row along the wide one
    tail = tail_members(whitened(x))
    assert len(tail) == int(np.ceil(TAIL_SHARE * 500))
    assert set(far) <= set(tail)
    assert np.all(np.diff(tail) > 0)
    np.testing.assert_array_equal(tail, tail_members(whitened(x.copy())))


def _class_with_tail(clumped: bool, seed: int = 0):
    """A 400-row class whose tail rows at ``flip_at`` are sent to class 5 confidently as
    typical rows: a clump of 30 neighbouring rows, or 30 rows spread over the tail."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(400, 5))
    if clumped:
        x[:30] = rng.normal(6.0, 0.3, size=(30, 5))
    x = whitened(x)
    tail = tail_members(x)
    flip_at = (np.flatnonzero(np.isin(tail, np.arange(30))) if clumped
               else np.arange(0, len(tail), len(tail) // 30)[:30])
    predicted = np.full(len(tail), 3)
    predicted[flip_at] = 5
    return x, tail, predicted, flip_at


@pytest.mark.parametrize("clumped", [True, False])
def test_only_a_clump_of_confident_typical_flips_makes_the_tail_poison(clumped):
    x, tail, predicted, flip_at = _class_with_tail(clumped)
    verdict = tail_verdict(x, tail, 3, predicted, np.full(len(tail), 0.99),
                           np.full(len(tail), 0.5))
    assert int(verdict.flips.sum()) == len(flip_at) == 30
    assert int(verdict.clump.sum()) == (30 if clumped else 0)
    assert verdict.poisoned is clumped
    assert (verdict.source == 5) is clumped
    text = verdict.explain(3, len(x))
    assert text.startswith("tail") and text.endswith("poison" if clumped else "legitimate")


@pytest.mark.parametrize("weak", ["confidence", "typicality"])
def test_hesitant_or_atypical_rows_sent_away_are_not_flips(weak):
    x, tail, predicted, _ = _class_with_tail(True)
    confidence = np.full(len(tail), 0.99 if weak != "confidence" else 0.6)
    typicality = np.full(len(tail), 0.5 if weak != "typicality" else 0.01)
    verdict = tail_verdict(x, tail, 3, predicted, confidence, typicality)
    assert int(verdict.sent_away.sum()) == 30
    assert not verdict.flips.any() and not verdict.poisoned


def test_only_the_rows_sent_away_within_the_clumps_reach_are_flagged():
    x, tail, predicted, flip_at = _class_with_tail(True)
    # A third of the other tail rows sent away, hesitantly: the class's hard cases.
    hard = np.setdiff1d(np.arange(len(tail)), flip_at)[::3]
    predicted[hard] = 7
    confidence = np.full(len(tail), 0.99)
    confidence[hard] = 0.6
    verdict = tail_verdict(x, tail, 3, predicted, confidence, np.full(len(tail), 0.5))
    assert verdict.poisoned and int(verdict.sent_away.sum()) == 30 + len(hard) > 40
    np.testing.assert_array_equal(np.flatnonzero(verdict.reach), flip_at)
    assert verdict.source == 5


def test_scattered_cohesive_pairs_of_flips_make_no_clump():
    """Clean hard cases: flips that sit in twos and threes are cohesive only by chance."""
    rng = np.random.default_rng(3)
    x = whitened(rng.normal(size=(600, 5)))
    tail = tail_members(x)
    predicted = np.full(len(tail), 3)
    predicted[::2] = 5  # half the tail sent away, spread over it
    verdict = tail_verdict(x, tail, 3, predicted, np.full(len(tail), 0.99),
                           np.full(len(tail), 0.5))
    assert int(verdict.flips.sum()) == len(tail[::2])
    assert int(verdict.clump.sum()) < verdict.needed and not verdict.poisoned


def test_unmeasured_typicality_never_makes_a_flip():
    x, tail, predicted, _ = _class_with_tail(True)
    verdict = tail_verdict(x, tail, 3, predicted, np.full(len(tail), 0.99),
                           np.full(len(tail), np.nan))
    assert not verdict.flips.any()


def test_a_clump_smaller_than_the_minimum_is_not_poison():
    x, tail, predicted, flip_at = _class_with_tail(True)
    predicted[flip_at[TAIL_MIN_COHESIVE - 1:]] = 3  # keep 9 of the 30 flips
    verdict = tail_verdict(x, tail, 3, predicted, np.full(len(tail), 0.99),
                           np.full(len(tail), 0.5))
    assert int(verdict.flips.sum()) == TAIL_MIN_COHESIVE - 1 and not verdict.poisoned


def test_the_tail_finds_poison_that_no_candidate_holds(make_blobs, nearest_centroid_retrain):
    x, blobs = poison_inside_spread(make_blobs, n_per_class=500)
    retrain = with_activations(nearest_centroid_retrain(x, blobs.labels), x)
    result = detect(x, blobs.labels, analysis="exre", retrain_and_predict=retrain,
                    n_clusters=2)
    assert result.poisoned_classes == (2,)
    report = result.class_report(2)
    assert report.reason.startswith("tail") and report.suspected_source == 0
    assert report.scores["tail_clump"] >= TAIL_MIN_COHESIVE
    flagged = set(result.flagged_indices)
    assert len(flagged & set(blobs.poison_ids)) >= 0.9 * len(blobs.poison_ids)
    # Without the retrain's embedding there is no typicality, so no tail is judged.
    plain = detect(x, blobs.labels, analysis="exre", n_clusters=2,
                   retrain_and_predict=nearest_centroid_retrain(x, blobs.labels))
    assert plain.poisoned_classes == ()
    assert "tail_cohesive" not in plain.class_report(2).scores


def test_clean_classes_tails_stay_legitimate(make_blobs, nearest_centroid_retrain):
    for seed in range(3):
        clean = make_blobs(seed=seed + 10, n_per_class=400)
        retrain = with_activations(
            nearest_centroid_retrain(clean.activations, clean.labels), clean.activations)
        result = detect(clean.activations, clean.labels, analysis="exre",
                        retrain_and_predict=retrain)
        assert result.poisoned_classes == (), seed
        assert all("tail" in result.class_report(c).reason for c in range(4))


def test_the_tails_get_a_retrain_of_their_own_without_the_candidates(
        planted, nearest_centroid_retrain):
    calls: list = []
    retrain = with_activations(
        nearest_centroid_retrain(planted.activations, planted.labels, calls),
        planted.activations)
    result = detect(planted.activations, planted.labels, analysis="exre",
                    retrain_and_predict=retrain)
    assert result.poisoned_classes == (2,)
    assert len(calls) == 3
    (candidates_mask, candidates_query), (tails_mask, tails_query), (again_mask, again_query) = (
        calls)
    # The candidates are asked again on the tails' training rows exactly: a retrain that caches
    # its model by the mask (the torch one) answers without training a third time.
    np.testing.assert_array_equal(again_mask, tails_mask)
    np.testing.assert_array_equal(again_query, candidates_query)
    # The candidates' retrain keeps every tail row it does not judge.
    assert candidates_mask.sum() + len(candidates_query) >= 0.9 * len(planted.labels)
    # The tails' retrain leaves out the tails and everything the candidates' retrain did.
    assert not np.any(tails_mask & ~candidates_mask)
    for label in range(4):
        rows = planted.labels == label
        assert (~tails_mask[rows]).mean() >= TAIL_SHARE - 0.01
    assert not np.any(tails_mask[tails_query])


def _scattered_tail(destinations, n_class: int = 1200, flips: int = 40):
    """A class whose ``flips`` tail rows, spread over the tail, go confidently and typically to
    ``destinations`` (cycled): all-to-one poison too sparse to clump, or a class's hard cases.

    Returns the tail's verdict, the flips' places in the tail and where the tail went.
    """
    rng = np.random.default_rng(4)
    x = whitened(rng.normal(size=(n_class, 5)))
    tail = tail_members(x)
    flip_at = np.linspace(0, len(tail) - 1, flips).astype(int)
    predicted = np.full(len(tail), 3)
    predicted[flip_at] = np.resize(destinations, flips)
    return tail_verdict(x, tail, 3, predicted, np.full(len(tail), 0.99),
                        np.full(len(tail), 0.3)), flip_at, predicted


def test_flips_back_to_many_classes_make_a_tail_without_a_clump_poison():
    from acgate.core.tail import TAIL_SPREAD_CLASSES

    # Nine sources, as all-to-one poison at 0.3% goes back: 9 effective classes.
    verdict, flip_at, _ = _scattered_tail([0, 1, 2, 4, 5, 6, 7, 8, 9])
    assert not verdict.clumped and int(verdict.flips.sum()) == 40 >= verdict.needed
    assert verdict.spread == pytest.approx(40 ** 2 / (4 * 5 ** 2 + 5 * 4 ** 2))
    assert verdict.spread >= TAIL_SPREAD_CLASSES and verdict.scattered and verdict.poisoned
    np.testing.assert_array_equal(np.flatnonzero(verdict.flagged), flip_at)
    text = verdict.explain(3, 1200)
    assert text.endswith(f"its 40 flips went to {verdict.spread:.1f} effective classes (>= "
                         f"{TAIL_SPREAD_CLASSES:g}: samples of several source classes) -> poison")


@pytest.mark.parametrize("destinations, n_class, flips", [
    ([5, 5, 8, 2], 1200, 40),                 # a class's hard cases: a few neighbours (2.7)
    ([0, 1, 2, 4, 5, 6, 7, 8, 9], 1200, 20),  # too few flips for a clump's need (24)
    ([0, 1, 2, 4, 5, 6, 7, 8, 9], 900, 40),   # a small class: not asked
])
def test_flips_to_few_classes_too_few_flips_or_a_small_class_leave_the_tail_legitimate(
        destinations, n_class, flips):
    verdict, _, _ = _scattered_tail(destinations, n_class, flips)
    assert not verdict.clumped and not verdict.scattered and not verdict.poisoned
    assert verdict.explain(3, n_class).endswith("-> legitimate")
    asked = n_class >= 1000 and flips >= verdict.needed
    assert ("effective classes (< 6)" in verdict.explain(3, n_class)) is asked


def test_the_spread_is_exact_for_even_splits_and_shown_to_two_decimals_near_the_cut():
    from acgate.core.tail import TAIL_SPREAD_CLASSES, effective_classes

    for k in range(1, 10):
        assert effective_classes(np.repeat(np.arange(k), 7)) == k
    # 6 classes, one short of even: 5.96 effective classes is not "6.0 (< 6)".
    verdict, _, _ = _scattered_tail([0, 1, 2, 4, 5, 6], flips=49)
    assert 5.95 <= verdict.spread < TAIL_SPREAD_CLASSES and not verdict.scattered
    assert f"went to {verdict.spread:.2f} effective classes (< 6)" in verdict.explain(3, 1200)


def test_beside_a_proven_candidate_the_scattered_tails_flips_are_not_flagged():
    from acgate.core.clustering import CandidateCluster, ClassClustering
    from acgate.core.detect import Thresholds
    from acgate.core.exre import _class_judgement, _judge_group

    tail, flip_at, sent = _scattered_tail([0, 1, 2, 4, 5, 6, 7, 8, 9])
    assert tail.scattered and tail.poisoned
    tail_outcome = left_out_outcome(sent, confidence=0.99, label=3)
    members = np.setdiff1d(np.arange(1200), tail.members)[:60]
    clusters = np.zeros(1200, dtype=np.int64)
    clusters[members] = 1
    clustering = ClassClustering(
        label=3, positions=np.arange(1200), clusters=clusters, n_clusters=2, silhouette=0.5,
        reduced=np.random.default_rng(0).normal(size=(1200, 2)),
        candidates=(CandidateCluster(members, 2, 1.0),))
    candidate = _judge_group(
        0, members, False, "cluster",
        left_out_outcome(np.resize([0, 1, 2, 4, 5, 6, 7, 8, 9], 60), confidence=0.9, label=3),
        Thresholds(size=0.45), 1200, None, np.full(60, 0.3))
    assert candidate.poisoned
    judgement = _class_judgement(clustering, [candidate], tail, tail_outcome,
                                 Thresholds(size=0.45))
    assert judgement.is_poisoned
    np.testing.assert_array_equal(np.flatnonzero(judgement.flagged), members)
    assert "scattered tail's flips are not flagged beside a candidate" in judgement.reason
    # Alone, the scattered tail proves the class and its flips are flagged.
    alone = _class_judgement(clustering, [], tail, tail_outcome, Thresholds(size=0.45))
    assert alone.is_poisoned
    np.testing.assert_array_equal(np.flatnonzero(alone.flagged), tail.members[flip_at])
