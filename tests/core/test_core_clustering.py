"""Clustering and reducers: memory ownership and input immutability."""

import numpy as np
import pytest

from acgate.core.clustering import cluster_class
from acgate.core.reducers import reduce


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("reducer", ["pca", "ica", "none"])
def test_clustering_never_modifies_the_callers_activations(dtype, reducer):
    # The reducer centres its own float64 copy in place; the caller's array must stay as given.
    rng = np.random.default_rng(0)
    activations = rng.normal(size=(200, 16)).astype(dtype)
    before = activations.copy()
    cluster_class(activations, label=0, positions=np.arange(200), reducer=reducer)
    reduce(activations, reducer=reducer, n_components=3, random_state=0)
    np.testing.assert_array_equal(activations, before)


def test_reduced_activations_do_not_keep_the_svd_alive():
    # PCA's fit_transform returns a view into the n x d U; the clustering must own a k-column
    # copy, or every class would keep n x d float64 alive.
    rng = np.random.default_rng(0)
    clustering = cluster_class(rng.normal(size=(500, 64)), label=0, positions=np.arange(500),
                               n_components=10)
    assert clustering.reduced.shape == (500, 10)
    assert clustering.reduced.base is None or clustering.reduced.base.size == 500 * 10


def test_segment_rows_lists_each_segment_in_sample_id_order():
    from acgate.core.detect import segment_rows

    rng = np.random.default_rng(3)
    sample_ids = rng.permutation(500) * 7 + 11  # unsorted, not row numbers
    segments = rng.integers(0, 6, size=500)
    segments[segments == 4] = 9  # a gap in the segment values
    rows = segment_rows(sample_ids, segments)
    assert list(rows) == [0, 1, 2, 3, 5, 9]
    assert sum(len(part) for part in rows.values()) == 500
    for segment, part in rows.items():
        assert (segments[part] == segment).all()
        assert (np.diff(sample_ids[part]) > 0).all()  # canonical order: by sample id
    assert set(np.concatenate(list(rows.values())).tolist()) == set(range(500))


def test_the_silhouette_of_a_large_class_is_taken_on_a_seeded_sample():
    from acgate.core.clustering import SILHOUETTE_SAMPLE_SIZE, silhouette

    rng = np.random.default_rng(0)
    n = 3 * SILHOUETTE_SAMPLE_SIZE
    points = np.concatenate([rng.normal(0, 1, (n - 300, 4)), rng.normal(6, 1, (300, 4))])
    clusters = np.r_[np.zeros(n - 300, int), np.ones(300, int)]
    sampled = silhouette(points, clusters, random_state=0)
    assert sampled == silhouette(points, clusters, random_state=0)  # seeded
    whole = silhouette(points, clusters, random_state=0, sample_size=n)
    assert sampled != whole and abs(sampled - whole) < 0.03


def test_segment_rows_of_no_rows_and_of_one_segment():
    from acgate.core.detect import segment_rows

    assert segment_rows(np.zeros(0, np.int64), np.zeros(0, np.int64)) == {}
    rows = segment_rows(np.array([30, 10, 20]), np.array([4, 4, 4]))
    assert list(rows) == [4] and rows[4].tolist() == [1, 2, 0]


def test_a_small_cluster_is_never_left_out_of_the_silhouette_sample():
    from sklearn.metrics import silhouette_score

    from acgate.core.clustering import silhouette

    # 12 rows of 6,000: a uniform 1,000-row sample holds none of them 11% of the time (the
    # score would be undefined and a size-silhouette class left unflagged).
    rng = np.random.default_rng(1)
    points = np.concatenate([rng.normal(0, 1, (5988, 4)), rng.normal(5, 1, (12, 4))])
    clusters = np.r_[np.zeros(5988, int), np.ones(12, int)]
    exact = silhouette_score(points, clusters)
    for seed in range(20):
        score = silhouette(points, clusters, random_state=seed)
        assert score is not None and abs(score - exact) < 0.02, (seed, score, exact)
