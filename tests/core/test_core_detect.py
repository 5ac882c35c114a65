"""detect() on seeded synthetic activations: flags, skips, determinism, order invariance."""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from acgate.core import DetectionResult, detect

PER_CLASS = ("size-silhouette", "distance")


@pytest.mark.parametrize("analysis", PER_CLASS)
def test_planted_cluster_is_flagged_by_per_class_analyses(planted, analysis):
    result = detect(planted.activations, planted.labels, analysis=analysis, random_state=0)

    assert isinstance(result, DetectionResult)
    assert result.poisoned_classes == (2,)
    np.testing.assert_array_equal(result.flagged_indices, planted.poison_ids)
    report = result.class_report(2)
    assert report.verdict == "poisoned"
    assert report.size_ratio == pytest.approx(0.15)
    assert report.cluster_sizes == (170, 30)
    assert report.suspicious_cluster == 1
    for label in (0, 1, 3):
        assert result.class_report(label).verdict == "clean"
    # Flagged samples score higher than the rest of their class.
    in_class = result.labels == 2
    assert result.poison_score[in_class & result.is_poison].min() > \
        result.poison_score[in_class & ~result.is_poison].max()


def test_distance_names_the_source_class(planted):
    result = detect(planted.activations, planted.labels, analysis="distance")
    assert result.class_report(2).suspected_source == 0
    assert set(result.suspected_source[result.is_poison]) == {0}
    assert (result.suspected_source[~result.is_poison] == -1).all()


def test_exre_with_a_real_nearest_centroid_retrain(planted, nearest_centroid_retrain):
    calls = []
    retrain = nearest_centroid_retrain(planted.activations, planted.labels, calls)
    result = detect(planted.activations, planted.labels, analysis="exre",
                    retrain_and_predict=retrain)

    assert result.info.params["analysis"] == "exre"
    assert result.poisoned_classes == (2,)
    np.testing.assert_array_equal(result.flagged_indices, planted.poison_ids)
    report = result.class_report(2)
    assert report.exre_score is not None and report.exre_score < 1.0
    assert report.suspected_source == 0
    # One retrain, and the planted rows were left out of it and queried.
    assert len(calls) == 1
    train_mask, query = calls[0]
    assert not train_mask[planted.poison_ids].any()
    assert set(planted.poison_ids) <= set(query.tolist())


def test_auto_uses_exre_when_a_retrain_is_given(planted, nearest_centroid_retrain):
    retrain = nearest_centroid_retrain(planted.activations, planted.labels)
    with_retrain = detect(planted.activations, planted.labels, retrain_and_predict=retrain)
    without = detect(planted.activations, planted.labels)
    assert with_retrain.info.params["analysis"] == "exre"
    assert with_retrain.info.params["size_threshold"] == pytest.approx(0.45)
    assert without.info.params["analysis"] == "size-silhouette"
    assert without.info.params["size_threshold"] == pytest.approx(0.35)


@pytest.mark.parametrize("analysis", [*PER_CLASS, "exre"])
def test_clean_gaussian_classes_are_not_flagged(clean_blobs, analysis, nearest_centroid_retrain):
    retrain = (nearest_centroid_retrain(clean_blobs.activations, clean_blobs.labels)
               if analysis == "exre" else None)
    result = detect(clean_blobs.activations, clean_blobs.labels, analysis=analysis,
                    retrain_and_predict=retrain)
    assert result.verdict == "clean"
    assert result.poisoned_classes == ()
    assert not result.is_poison.any()
    assert all(c.verdict == "clean" for c in result.classes)


def test_retrain_returning_wrong_shape_is_an_error(planted):
    def bad_retrain(train_mask, query):
        return np.zeros((len(query) + 1, 4))

    with pytest.raises(ValueError, match=r"retrain_and_predict returned shape"):
        detect(planted.activations, planted.labels, analysis="exre",
               retrain_and_predict=bad_retrain)


def test_small_class_is_skipped_with_its_reason(planted):
    x = np.concatenate([planted.activations, planted.activations[:5] + 50.0])
    y = np.concatenate([planted.labels, np.full(5, 7)])
    result = detect(x, y, analysis="size-silhouette")

    assert result.skipped_classes == (7,)
    report = result.class_report(7)
    assert report.verdict == "skipped"
    assert "5 samples" in report.reason
    assert report.n_samples == 5 and report.n_clusters == 0
    assert any("5 samples" in w for w in result.info.warnings)
    assert (result.clusters[y == 7] == -1).all()
    assert not result.is_poison[y == 7].any()
    # The other classes are still analysed.
    assert result.poisoned_classes == (2,)


def test_same_seed_gives_identical_results(planted):
    a = detect(planted.activations, planted.labels, reducer="ica", random_state=3)
    b = detect(planted.activations, planted.labels, reducer="ica", random_state=3)
    np.testing.assert_array_equal(a.is_poison, b.is_poison)
    np.testing.assert_array_equal(a.clusters, b.clusters)
    np.testing.assert_array_equal(a.poison_score, b.poison_score)
    assert [c.to_dict() for c in a.classes] == [c.to_dict() for c in b.classes]


@pytest.mark.parametrize("reducer", ["pca", "ica", "none"])
def test_permuting_rows_with_their_ids_gives_the_same_flagged_ids(planted, reducer):
    ids = np.arange(len(planted.labels)) * 7 + 100
    base = detect(planted.activations, planted.labels, sample_ids=ids, reducer=reducer)
    order = np.random.default_rng(42).permutation(len(ids))
    permuted = detect(planted.activations[order], planted.labels[order], sample_ids=ids[order],
                      reducer=reducer)
    np.testing.assert_array_equal(base.flagged_indices, permuted.flagged_indices)
    np.testing.assert_array_equal(base.flagged_indices, ids[planted.poison_ids])
    # Per-row outputs follow their rows.
    np.testing.assert_array_equal(permuted.is_poison, base.is_poison[order])
    np.testing.assert_array_equal(permuted.clusters, base.clusters[order])
    np.testing.assert_allclose(permuted.poison_score, base.poison_score[order])


@pytest.mark.parametrize("reducer", ["pca", "ica"])
def test_results_do_not_depend_on_blas_threads(make_blobs, reducer):
    blobs = make_blobs(n_classes=3, n_per_class=400, n_features=64, poisoned={1: 2}, seed=5)
    runs = []
    for threads in (1, 2):
        with threadpool_limits(limits=threads):
            runs.append(detect(blobs.activations, blobs.labels, reducer=reducer))
    one, two = runs
    np.testing.assert_array_equal(one.is_poison, two.is_poison)
    np.testing.assert_array_equal(one.clusters, two.clusters)
    np.testing.assert_array_equal(one.poison_score, two.poison_score)
    assert [c.silhouette for c in one.classes] == [c.silhouette for c in two.classes]


def test_segment_by_prediction(planted):
    # Predictions equal to the labels: the same segmentation, the same flags.
    by_label = detect(planted.activations, planted.labels)
    by_prediction = detect(planted.activations, planted.labels, segment_by="prediction",
                           predictions=planted.labels)
    np.testing.assert_array_equal(by_label.is_poison, by_prediction.is_poison)
    np.testing.assert_array_equal(by_prediction.segments, planted.labels)
