"""Stable candidate clusters (``n_clusters="stable"``) and the natural-confusion test of
exclusionary reclassification: hand-built arrays, real k-means, a real (nearest-centroid)
retrain."""

from __future__ import annotations

import numpy as np
import pytest
from synthetic import (
    NESTED_POISON_ROWS,
    left_out_outcome,
    mode_with_nested_poison,
    poison_inside_spread,
)

from acgate.core import detect
from acgate.core.analyses import natural_confusion
from acgate.core.clustering import CandidateCluster, cluster_class, nestedness, stable_candidates
from acgate.core.detect import resolve_n_clusters
from acgate.core.exre import OVERLAP_LOOKALIKE_TYPICALITY


def _elongated_class_with_poison(seed: int = 0, n: int = 600, poison: int = 30):
    """A class spread along one axis (2-means halves it) plus a tight 5% cluster off-axis."""
    rng = np.random.default_rng(seed)
    spread = np.column_stack([rng.uniform(-12.0, 12.0, n - poison),
                              rng.normal(0.0, 1.0, size=(n - poison, 5))])
    tight = rng.normal(0.0, 0.5, size=(poison, 6)) + np.array([0.0, 9.0, 0, 0, 0, 0])
    x = np.concatenate([spread, tight])
    truth = np.r_[np.zeros(n - poison, bool), np.ones(poison, bool)]
    return x, truth


# ----------------------------------------------------------------------------- nestedness


def test_nestedness_is_one_when_the_finer_clustering_only_splits_inside():
    cluster = np.r_[np.ones(10, bool), np.zeros(30, bool)]
    finer = np.r_[[0] * 5, [1] * 5, [2] * 15, [3] * 15]
    assert nestedness(cluster, finer) == 1.0


def test_nestedness_drops_when_the_boundary_is_redrawn():
    cluster = np.r_[np.ones(20, bool), np.zeros(20, bool)]
    redrawn = np.r_[[0] * 10, [1] * 20, [2] * 10]  # cluster 1 straddles the boundary
    assert nestedness(cluster, redrawn) == pytest.approx(0.5)
    assert nestedness(np.zeros(5, bool), np.zeros(5, int)) == 0.0


# ------------------------------------------------------------------------ stable candidates


def test_a_tight_small_cluster_inside_an_arbitrary_halving_is_the_candidate():
    x, truth = _elongated_class_with_poison()
    # Two levels: a uniform slab's thirds keep their boundaries at k = 4 (the fourth cluster
    # goes to the poison) and fool a one-level check, not a two-level one.
    k, assignments, candidates, notes = stable_candidates(x, random_state=0, depth=2)
    assert k >= 3 and len(assignments) == len(x)
    members = [set(c.members) for c in candidates]
    assert set(np.flatnonzero(truth)) in members, notes
    found = next(c for c in candidates if set(c.members) == set(np.flatnonzero(truth)))
    assert found.stability >= 0.9 and not found.nested
    one_level = stable_candidates(x, random_state=0, depth=1)[2]
    assert not any(set(c.members) == set(np.flatnonzero(truth)) for c in one_level)
    # 2-means alone halves the spread and hides the poison inside a half.
    halves = cluster_class(x, label=0, positions=np.arange(len(x)), n_clusters=2)
    assert min(halves.cluster_sizes) > 200


def test_one_gaussian_has_no_stable_small_cluster():
    rng = np.random.default_rng(1)
    x = rng.normal(0.0, 1.0, size=(500, 6))
    k, assignments, candidates, notes = stable_candidates(x, random_state=0)
    assert candidates == () and k == 2 and "no stable cluster" in notes[0]


def test_poison_inside_a_natural_mode_is_a_nested_candidate():
    x = mode_with_nested_poison(seed=2)
    k, _, candidates, _ = stable_candidates(x, random_state=0)
    poison_rows = NESTED_POISON_ROWS
    nested = [c for c in candidates if c.nested]
    assert any(np.isin(poison_rows, c.members).all() and len(c.members) <= 55
               for c in nested), candidates
    assert all(len(c.members) <= 0.45 * len(x) for c in candidates)


def test_stable_candidates_respect_the_size_threshold_and_are_deterministic():
    x, _ = _elongated_class_with_poison(seed=3)
    first = stable_candidates(x, random_state=5, size_threshold=0.2)
    second = stable_candidates(x, random_state=5, size_threshold=0.2)
    assert all(len(c.members) <= 0.2 * len(x) for c in first[2])
    assert [c.members.tolist() for c in first[2]] == [c.members.tolist() for c in second[2]]
    np.testing.assert_array_equal(first[1], second[1])


def test_cluster_class_stable_records_candidates_and_skips_tiny_classes():
    x, truth = _elongated_class_with_poison()
    clustering = cluster_class(x, label=4, positions=np.arange(100, 100 + len(x)),
                               n_clusters="stable")
    assert clustering.candidates and clustering.n_clusters >= 2
    assert any("stable candidates at k" in note for note in clustering.warnings)
    tiny = cluster_class(x[:5], label=1, positions=np.arange(5), n_clusters="stable")
    assert tiny.skipped and tiny.candidates == ()
    two_means = cluster_class(x, label=4, positions=np.arange(len(x)), n_clusters=2)
    assert two_means.candidates is None


def test_candidate_cluster_is_frozen_and_sorted():
    candidate = CandidateCluster(np.array([5, 1, 3]), 3, 0.95)
    assert candidate.members.tolist() == [1, 3, 5] and not candidate.members.flags.writeable
    assert candidate.to_dict() == {"members": [1, 3, 5], "k": 3, "stability": 0.95,
                                   "nested": False, "direction": None, "separation": None,
                                   "core": None, "alone": False,
                                   "core_separation": None}


def test_n_clusters_defaults_to_stable_under_exre_only():
    assert resolve_n_clusters(None, "exre") == "stable"
    assert resolve_n_clusters(None, "exre", n_classes=10) == "stable"
    assert resolve_n_clusters(None, "exre", n_classes=2) == 2  # binary: 2-means
    assert resolve_n_clusters("stable", "exre", n_classes=2) == "stable"
    assert resolve_n_clusters(None, "size-silhouette") == 2
    assert resolve_n_clusters(3, "exre") == 3
    with pytest.raises(ValueError, match="n_clusters"):
        resolve_n_clusters("stabel", "exre")


# ---------------------------------------------------------------- detect with stable mode


def test_stable_mode_finds_low_rate_poison_that_two_means_misses(make_blobs,
                                                                 nearest_centroid_retrain):
    x, blobs = poison_inside_spread(make_blobs)
    retrain = nearest_centroid_retrain(x, blobs.labels)
    stable = detect(x, blobs.labels, analysis="exre", retrain_and_predict=retrain)
    assert stable.info.params["n_clusters"] == "stable"
    assert stable.poisoned_classes == (2,)
    np.testing.assert_array_equal(stable.flagged_indices, blobs.poison_ids)
    report = stable.class_report(2)
    assert report.suspected_source == 0 and report.scores["stability"] >= 0.9
    assert "stability" in report.reason
    two_means = detect(x, blobs.labels, analysis="exre", retrain_and_predict=retrain,
                       n_clusters=2)
    assert two_means.poisoned_classes == ()  # the poison hides inside a half


def test_stable_mode_flags_nothing_in_clean_blobs(make_blobs, nearest_centroid_retrain):
    clean = make_blobs(seed=4)
    retrain = nearest_centroid_retrain(clean.activations, clean.labels)
    result = detect(clean.activations, clean.labels, analysis="exre",
                    retrain_and_predict=retrain)
    assert result.poisoned_classes == ()


# ------------------------------------------------------------------------ natural confusion


def test_natural_confusion_counts_both_directions_and_skips_excluded_rows():
    labels = np.array([0] * 10 + [1] * 10)
    predictions = labels.copy()
    predictions[:2] = 1      # 20% of class 0 predicted as 1
    predictions[10:11] = 0   # 10% of class 1 predicted as 0
    assert natural_confusion(predictions, labels, 0, 1) == pytest.approx(0.3)
    exclude = np.zeros(20, bool)
    exclude[:2] = True
    assert natural_confusion(predictions, labels, 0, 1, exclude=exclude) == pytest.approx(0.1)


def test_a_candidate_of_a_class_pair_the_proxy_confuses_is_legitimate(planted,
                                                                      nearest_centroid_retrain):
    retrain = nearest_centroid_retrain(planted.activations, planted.labels)
    predictions = planted.labels.copy()
    # The proxy mixes up classes 2 and 0 on 5% of their clean rows: a natural overlap.
    rng = np.random.default_rng(0)
    for a, b in ((2, 0), (0, 2)):
        rows = np.flatnonzero((planted.labels == a) & ~planted.is_poison)
        predictions[rng.choice(rows, size=len(rows) // 20, replace=False)] = b
    vetoed = detect(planted.activations, planted.labels, analysis="exre",
                    retrain_and_predict=retrain, predictions=predictions)
    report = vetoed.class_report(2)
    assert vetoed.poisoned_classes == () and "natural overlap" in report.reason
    assert report.scores["confusion"] == pytest.approx(0.1, abs=0.01)
    # The same data with the proxy's own (unconfused) predictions, or with the test off, is
    # poison.
    kept = detect(planted.activations, planted.labels, analysis="exre",
                  retrain_and_predict=retrain, predictions=planted.labels)
    off = detect(planted.activations, planted.labels, analysis="exre",
                 retrain_and_predict=retrain, predictions=predictions, confusion_threshold=2.0)
    assert kept.poisoned_classes == (2,) == off.poisoned_classes
    assert off.info.params["confusion_threshold"] == 2.0


@pytest.mark.parametrize(("name", "value"), [("confusion_threshold", -0.1),
                                             ("confusion_threshold", 2.5),
                                             ("nested_source_share_threshold", 1.5)])
def test_bad_new_thresholds_are_refused(planted, name, value):
    with pytest.raises(ValueError, match=name):
        detect(planted.activations, planted.labels, **{name: value})


def test_predictions_of_the_wrong_length_are_refused(planted):
    with pytest.raises(ValueError, match="predictions"):
        detect(planted.activations, planted.labels, predictions=planted.labels[:-1])


def test_a_candidate_that_stays_in_its_class_says_so_in_the_reason(planted):
    # A retrain that still puts every left-out row in its own label: no other class to name.
    n_classes = int(planted.labels.max()) + 1

    def own_label(train_mask: np.ndarray, query_positions: np.ndarray) -> np.ndarray:
        return np.eye(n_classes)[planted.labels[np.asarray(query_positions)]]

    result = detect(planted.activations, planted.labels, analysis="exre",
                    retrain_and_predict=own_label)
    report = result.class_report(2)
    assert result.poisoned_classes == ()
    assert "none as another class" in report.reason and "None" not in report.reason


def test_a_small_well_separated_mode_of_one_direction_is_a_direction_candidate():
    from acgate.core.clustering import direction_candidates

    rng = np.random.default_rng(0)
    reduced = rng.normal(size=(500, 4))
    reduced[:40, 2] += 8.0  # 8% of the class, far out along the third direction
    candidates = direction_candidates(reduced)
    assert [c.direction for c in candidates] == [2]
    assert candidates[0].members.tolist() == list(range(40))
    assert candidates[0].separation >= 4.0
    assert direction_candidates(rng.normal(size=(500, 4))) == ()  # a plain Gaussian has none


def test_a_dense_core_off_every_principal_direction_gives_a_dense_core_candidate():
    from acgate.core.clustering import DENSE_MIN_CLASS_ROWS, dense_core_candidates

    rng = np.random.default_rng(0)
    reduced = rng.normal(size=(2000, 10))
    # 4% of the class crowded tightly, shifted along a diagonal, the direction to its core
    # (all-to-one poison's signature).
    shift = np.full(10, 2.5)
    reduced[:80] = shift + rng.normal(scale=0.3, size=(80, 10))
    candidates = dense_core_candidates(reduced, random_state=0)
    assert len(candidates) == 1
    found = set(candidates[0].members.tolist())
    assert set(range(80)) <= found and len(found) < 120
    assert candidates[0].separation >= 4.0 and candidates[0].core is not None
    assert candidates[0].direction is None
    # Seeded: the same rows again; a plain Gaussian and a small class give none.
    again = dense_core_candidates(reduced, random_state=0)
    assert [c.to_dict() for c in again] == [c.to_dict() for c in candidates]
    assert dense_core_candidates(rng.normal(size=(2000, 10)), random_state=0) == ()
    assert dense_core_candidates(reduced[:DENSE_MIN_CLASS_ROWS - 1], random_state=0) == ()


def _class_larger_than_the_sample(planted_rows, shift):
    """A Gaussian class of 2,000 rows more than the dense-core sample, with a planted core."""
    from acgate.core.clustering import DENSE_MAX_ROWS

    rng = np.random.default_rng(1)
    n = DENSE_MAX_ROWS + 2000
    reduced = rng.normal(size=(n, 10))
    planted = rng.choice(n, planted_rows, replace=False)
    reduced[planted] = np.full(10, shift) + rng.normal(scale=0.3, size=(planted_rows, 10))
    return reduced, planted


def test_a_dense_core_in_a_class_larger_than_the_sample_is_split_over_every_row():
    from acgate.core.clustering import dense_core_candidates

    reduced, planted = _class_larger_than_the_sample(200, 2.5)
    (candidate,) = dense_core_candidates(reduced, random_state=0)
    assert set(planted.tolist()) <= set(candidate.members.tolist())
    assert len(candidate.members) < 260
    assert 150 <= candidate.core <= 250  # found in the sample, counted for the class


def test_a_dense_core_whose_direction_does_not_split_off_is_itself_the_candidate():
    from acgate.core.clustering import DENSE_CORE_SEPARATION, dense_core_candidates

    rng = np.random.default_rng(0)
    reduced = rng.normal(size=(2000, 10))
    # 5% of the class crowded tightly ~4.4 SD off its centre: the 1-D split of the direction to
    # it also takes the Gaussian's edge (separation < 4), while the core lies apart.
    reduced[:100] = np.full(10, 1.4) + rng.normal(scale=0.3, size=(100, 10))
    (candidate,) = dense_core_candidates(reduced, random_state=0)
    assert candidate.alone and candidate.members.tolist() == list(range(100))
    assert candidate.separation == candidate.core_separation >= DENSE_CORE_SEPARATION
    assert candidate.separated_core and not candidate.several_sources_only
    # Nearer the centre the crowd stands apart less: neither its side nor itself is a candidate.
    reduced[:100] = np.full(10, 1.2) + rng.normal(scale=0.3, size=(100, 10))
    assert dense_core_candidates(reduced, random_state=0) == ()


def test_a_core_standing_alone_in_a_class_larger_than_the_sample_takes_every_row_near_it():
    from acgate.core.clustering import dense_core_candidates

    reduced, planted = _class_larger_than_the_sample(300, 1.4)
    (candidate,) = dense_core_candidates(reduced, random_state=0)
    # Found in the sample, its rows outside the sample joined by their nearest sampled row.
    assert candidate.alone and set(planted.tolist()) <= set(candidate.members.tolist())
    assert len(candidate.members) < 320


def test_only_a_mode_toward_a_core_that_does_not_stand_apart_is_for_the_several_sources_rule():
    from acgate.core.clustering import DENSE_CORE_SEPARATION, CandidateCluster, ClassClustering
    from acgate.core.exre import _candidate_groups

    def mode(core_separation):
        return CandidateCluster(np.arange(20, 40), 2, 1.0, separation=5.0, core=12,
                                core_separation=core_separation)

    clustering = ClassClustering(
        label=0, positions=np.arange(100), clusters=np.zeros(100, dtype=np.int64),
        n_clusters=1, silhouette=None, reduced=np.zeros((100, 2)),
        candidates=(mode(DENSE_CORE_SEPARATION - 0.1), mode(DENSE_CORE_SEPARATION), mode(None)))
    groups = _candidate_groups(clustering, 0.45)
    assert [(g[3], g[4]) for g in groups.values()] == [(True, False), (False, True),
                                                       (True, False)]
    # Without the several-sources rule only the core standing apart is left out.
    assert list(_candidate_groups(clustering, 0.45, several_sources=False)) == [1]


def test_a_separated_core_sent_to_one_source_is_poison_without_the_sureness_cuts():
    from acgate.core.detect import Thresholds
    from acgate.core.exre import ONE_SOURCE_CONFIDENCE, ONE_SOURCE_TYPICALITY, _judge_group

    members = np.arange(180)
    # Occluded poison goes to its source less surely than the one-source rule's cut ...
    unsure = left_out_outcome(np.full(180, 4), confidence=ONE_SOURCE_CONFIDENCE - 0.05, label=0)
    kwargs = dict(used=Thresholds(size=0.45), n_class=2000, confusion_of=None,
                  typicality=np.full(180, 0.3))
    assert not _judge_group(0, members, False, "cluster", unsure, **kwargs).poisoned
    verdict = _judge_group(0, members, False, "core", unsure, separated=True, **kwargs)
    assert verdict.poisoned and verdict.confidence is None
    # ... and, the trigger covering what makes a row typical of its source, as an atypical
    # member there: the core's separation stands in for both cuts.
    atypical = dict(kwargs, typicality=np.full(180, ONE_SOURCE_TYPICALITY / 2))
    sure = left_out_outcome(np.full(180, 4), confidence=ONE_SOURCE_CONFIDENCE + 0.05, label=0)
    assert not _judge_group(0, members, False, "cluster", sure, **atypical).poisoned
    verdict = _judge_group(0, members, False, "core", unsure, separated=True, **atypical)
    assert verdict.poisoned and verdict.confidence is None
    assert verdict.typicality == ONE_SOURCE_TYPICALITY / 2  # measured, recorded, not cut


@pytest.mark.parametrize("typicality, poisoned", [(OVERLAP_LOOKALIKE_TYPICALITY, True),
                                                  (OVERLAP_LOOKALIKE_TYPICALITY / 2, False)])
def test_a_separated_core_keeps_the_overlaps_look_alike_test(typicality, poisoned):
    # Without the sureness cuts the core's typicality still tells the source's own members
    # (poison) from look-alikes at its edge, which a natural overlap explains.
    from acgate.core.detect import Thresholds
    from acgate.core.exre import ONE_SOURCE_CONFIDENCE, _judge_group

    outcome = left_out_outcome(np.full(180, 4), confidence=ONE_SOURCE_CONFIDENCE - 0.05, label=0)
    verdict = _judge_group(
        0, np.arange(180), False, "core", outcome, used=Thresholds(size=0.45), n_class=20000,
        confusion_of=None, typicality=np.full(180, typicality), separated=True,
        overlap_of=lambda label, source: (0.2, 0.01))
    assert verdict.poisoned is poisoned
    assert verdict.overlap == (0.2, 0.01) and verdict.confidence is None


def _class_with_dense_core_only(outcome_of_core):
    """A clustering whose one candidate is a dense core, and its retrain's verdict."""
    from acgate.core.clustering import CandidateCluster, ClassClustering
    from acgate.core.detect import Thresholds
    from acgate.core.exre import _class_judgement, _judge_group

    members = np.arange(180)
    clusters = np.zeros(2000, dtype=np.int64)
    clusters[members] = 1
    clustering = ClassClustering(
        label=0, positions=np.arange(2000), clusters=clusters, n_clusters=2, silhouette=0.5,
        reduced=np.random.default_rng(0).normal(size=(2000, 2)),
        candidates=(CandidateCluster(members, 2, 1.0, separation=6.0, core=60),))
    verdict = _judge_group(0, members, False, "core", outcome_of_core, Thresholds(size=0.45),
                           2000, None, np.full(180, 0.3), several_only=True)
    return _class_judgement(clustering, [verdict], None, None, Thresholds(size=0.45))


def test_a_cleared_dense_core_leaves_no_one_source_numbers_for_the_gate_to_replay():
    judgement = _class_with_dense_core_only(
        left_out_outcome(np.full(180, 4), confidence=0.99, label=0))
    assert not judgement.is_poisoned and "exre" not in judgement.scores
    assert "no candidate" in judgement.reason and "dense core" in judgement.reason
    poisoned = _class_with_dense_core_only(
        left_out_outcome(np.repeat(np.arange(9) + 1, 20), confidence=0.9, label=0))
    assert poisoned.is_poisoned and poisoned.flagged.sum() == 180
    assert poisoned.scores["exre"] == 0.0


def test_without_the_retrains_activations_dense_cores_are_not_left_out():
    from acgate.core.clustering import CandidateCluster, ClassClustering
    from acgate.core.exre import _candidate_groups

    clustering = ClassClustering(
        label=0, positions=np.arange(100), clusters=np.zeros(100, dtype=np.int64),
        n_clusters=1, silhouette=None, reduced=np.zeros((100, 2)),
        candidates=(CandidateCluster(np.arange(10), 3, 0.95),
                    CandidateCluster(np.arange(20, 40), 2, 1.0, separation=5.0, core=12)))
    assert [g[3] for g in _candidate_groups(clustering, 0.45).values()] == [False, True]
    assert list(_candidate_groups(clustering, 0.45, several_sources=False)) == [0]


def test_a_dense_core_candidate_is_cleared_unless_it_goes_to_several_sources():
    from acgate.core.detect import Thresholds
    from acgate.core.exre import _judge_group

    members = np.arange(180)
    one_source = left_out_outcome(np.full(180, 4), confidence=0.99, label=0)
    typical = np.full(180, 0.3)
    kwargs = dict(used=Thresholds(size=0.45), n_class=2000, confusion_of=None,
                  typicality=typical)
    # A k-means candidate sent surely to one class is one-source poison ...
    assert _judge_group(0, members, False, "cluster", one_source, **kwargs).poisoned
    # ... a dense core sent there is a natural look-alike of that class: cleared.
    verdict = _judge_group(0, members, False, "core", one_source, several_only=True, **kwargs)
    assert not verdict.poisoned and "several source classes" in verdict.text
    nine = left_out_outcome(np.repeat(np.arange(9) + 1, 20), confidence=0.9, label=0)
    assert _judge_group(0, members, False, "core", nine, several_only=True, **kwargs).poisoned


def test_a_candidates_margin_covers_the_rows_beyond_its_boundary():
    from acgate.core.detect import HALO_MARGIN, candidate_margin

    rng = np.random.default_rng(0)
    reduced = rng.normal(size=(2000, 3))
    reduced[:100, 0] += 6.0
    margin = candidate_margin(reduced, np.arange(80))  # the candidate missed 20 of the mode
    assert set(range(100)) <= set(margin.tolist())
    assert len(margin) == pytest.approx((0.04 + HALO_MARGIN) * 2000, abs=2)
    assert len(candidate_margin(reduced[:500], np.arange(80))) == 80  # small class: no margin


@pytest.mark.parametrize(
    ("confidence", "typicality", "poisoned"),
    [(None, None, True), (0.95, 0.3, True), (0.7, 0.3, False), (0.95, 0.02, False),
     (0.95, None, True)],
)
def test_the_one_source_rule_asks_how_surely_a_large_class_candidate_went(confidence,
                                                                          typicality, poisoned):
    from acgate.core.analyses import Thresholds, one_source_verdict

    verdict, why = one_source_verdict(0.1, 0.9, 0.0, Thresholds(), label=1, source=7,
                                      confidence=confidence, typicality=typicality)
    assert verdict is poisoned, why
    assert ("not sure" in why) is not poisoned
    # The cuts never clear what l/p already cleared, nor turn legitimate into poison.
    assert one_source_verdict(1.5, 0.9, 0.0, Thresholds(), confidence=confidence,
                              typicality=typicality)[0] is False
    assert one_source_verdict(0.1, 0.3, 0.0, Thresholds(), confidence=confidence,
                              typicality=typicality)[0] is False


def test_dense_cores_are_what_the_candidates_and_the_bench_measure():
    from acgate.core.clustering import dense_core_candidates, dense_cores

    rng = np.random.default_rng(0)
    reduced = rng.normal(size=(2000, 10))
    reduced[:100] = np.full(10, 1.4) + rng.normal(scale=0.3, size=(100, 10))
    (core,) = dense_cores(reduced, random_state=0)
    (candidate,) = dense_core_candidates(reduced, random_state=0)
    # The core standing alone is the candidate: its members, rows and separation.
    assert np.flatnonzero(core.members).tolist() == candidate.members.tolist()
    assert core.rows == candidate.core == len(core.sampled) == 100
    assert core.separation == candidate.core_separation
    assert core.projection.shape == (2000,)
    # Below the class size the candidates ask, the cores are still there to measure.
    assert dense_cores(reduced[:800], random_state=0)
    assert dense_core_candidates(reduced[:800], random_state=0) == ()
