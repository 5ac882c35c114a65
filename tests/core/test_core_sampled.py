"""A class larger than memory (issue 22): a seeded sample clustered, every row assigned."""

from __future__ import annotations

import numpy as np
import pytest

from acgate.core import cluster_class
from acgate.core.sampled import extend_clustering, sample_ordinals


def _planted(n=3000, width=32, poison_share=0.08, seed=0, shift=1.0):
    """A class with a tight poison cluster: activations, positions and the planted rows."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, width)).astype(np.float32)
    poison = np.sort(rng.choice(n, size=int(poison_share * n), replace=False))
    x[poison] += shift * (6.0 * np.eye(width, dtype=np.float32)[0] + 4.0 * np.eye(width)[1])
    positions = np.arange(10_000, 10_000 + 2 * n, 2)  # positions in a larger table
    return x, positions, poison


def _batches(x, positions, size=700):
    for start in range(0, len(x), size):
        yield positions[start:start + size], x[start:start + size]


def _best_jaccard(clustering, planted):
    truth = set(planted.tolist())
    return max(len(truth & set(c.members.tolist())) / len(truth | set(c.members.tolist()))
               for c in clustering.candidates)


def test_a_sampled_class_finds_the_poison_a_whole_class_finds():
    x, positions, poison = _planted()
    whole = cluster_class(x, label=3, positions=positions, n_clusters="stable", random_state=0)
    ordinals = sample_ordinals(len(x), 1000, random_state=0)
    sample = cluster_class(x[ordinals], label=3, positions=positions[ordinals],
                           n_clusters="stable", random_state=0)
    extended = extend_clustering(sample, x[ordinals], _batches(x, positions), n_rows=len(x))
    np.testing.assert_array_equal(extended.positions, positions)
    assert extended.clusters.shape == (3000,) and extended.reduced.shape == (3000, 10)
    assert _best_jaccard(whole, poison) > 0.95
    assert _best_jaccard(extended, poison) > 0.95
    # The sampled rows keep their own cluster, reduced values and candidate memberships.
    np.testing.assert_array_equal(extended.clusters[ordinals], sample.clusters)
    np.testing.assert_allclose(extended.reduced[ordinals], sample.reduced)
    for full, own in zip(extended.candidates, sample.candidates, strict=True):
        assert set(full.members.tolist()) & set(ordinals.tolist()) == set(
            ordinals[own.members].tolist())
    # The clusters agree with the whole class's on the rows: the same split, up to ids.
    agree = max(np.mean(extended.clusters == whole.clusters),
                np.mean(extended.clusters != whole.clusters))
    assert agree > 0.97 or extended.n_clusters != 2
    # Every row is mapped into the sample's reduced space: for PCA, exactly its projection.
    from sklearn.decomposition import PCA

    pca = PCA(n_components=10, svd_solver="covariance_eigh").fit(x[ordinals].astype(np.float64))
    np.testing.assert_allclose(extended.reduced, pca.transform(x.astype(np.float64)),
                               atol=1e-6)
    assert extended.silhouette == sample.silhouette
    assert "seeded sample of 1,000 of its 3,000 rows" in extended.warnings[-1]


def test_sample_ordinals_are_seeded_sorted_and_distinct():
    first = sample_ordinals(10_000, 500, random_state=4)
    assert np.array_equal(first, sample_ordinals(10_000, 500, random_state=4))
    assert not np.array_equal(first, sample_ordinals(10_000, 500, random_state=5))
    assert len(np.unique(first)) == 500 and (np.diff(first) > 0).all()
    with pytest.raises(ValueError, match="max_rows 10 is not below the class's 10 rows"):
        sample_ordinals(10, 10, random_state=0)


def test_batches_must_hold_every_row_in_order():
    x, positions, _ = _planted(n=600)
    ordinals = sample_ordinals(600, 200, random_state=0)
    sample = cluster_class(x[ordinals], label=0, positions=positions[ordinals],
                           n_clusters="stable", random_state=0)
    with pytest.raises(ValueError, match="the batches hold 599 rows, the class 600"):
        extend_clustering(sample, x[ordinals], _batches(x[:599], positions[:599]), n_rows=600)
    reordered = list(_batches(x, positions, size=100))[::-1]
    with pytest.raises(ValueError, match="do not ascend"):
        extend_clustering(sample, x[ordinals], reordered, n_rows=600)
    shifted = ((p + 1, b) for p, b in _batches(x, positions))
    with pytest.raises(ValueError, match="miss a sampled row"):
        extend_clustering(sample, x[ordinals], shifted, n_rows=600)


def test_a_small_candidate_reaches_the_unsampled_rows():
    """A candidate of a few dozen sampled rows is wholly in the reference (its own stratum), so
    the unsampled poison rows around it join it (a 5% random reference would hold ~3 of them:
    too few to be a majority of 10 neighbours); votes are weighted by the strata's rates."""
    x, positions, poison = _planted(n=40_000, poison_share=300 / 40_000, seed=1, shift=3.0)
    ordinals = sample_ordinals(len(x), 8_000, random_state=0)
    sample = cluster_class(x[ordinals], label=0, positions=positions[ordinals],
                           n_clusters="stable", random_state=0)
    assert _best_jaccard(sample, np.flatnonzero(np.isin(ordinals, poison))) > 0.9
    extended = extend_clustering(sample, x[ordinals], _batches(x, positions, size=5_000),
                                 n_rows=len(x), reference_rows=400)
    assert _best_jaccard(extended, poison) > 0.9
    sizes = np.bincount(extended.clusters)
    assert sizes[0] == sizes.max()  # cluster 0 is the largest over the whole class


@pytest.mark.parametrize("n_clusters", [2, "auto"])
def test_k_means_clusters_reach_the_other_rows_by_their_nearest_centre(n_clusters):
    """Without stable candidates the clusters are k-means's, the Voronoi cells of their means:
    an unsampled row takes its nearest centre's cluster (no neighbour search)."""
    x, positions, poison = _planted(n=6000, seed=2)
    ordinals = sample_ordinals(len(x), 2000, random_state=0)
    sample = cluster_class(x[ordinals], label=0, positions=positions[ordinals],
                           n_clusters=n_clusters, random_state=0)
    assert sample.candidates is None
    extended = extend_clustering(sample, x[ordinals], _batches(x, positions), n_rows=len(x))
    centres = np.stack([sample.reduced[sample.clusters == c].mean(axis=0)
                        for c in range(sample.n_clusters)])
    nearest = ((extended.reduced[:, None] - centres[None]) ** 2).sum(axis=2).argmin(axis=1)
    sizes = np.bincount(nearest, minlength=sample.n_clusters)
    renumbered = np.argsort(np.argsort(-sizes, kind="stable"), kind="stable")[nearest]
    np.testing.assert_array_equal(extended.clusters, renumbered)
    np.testing.assert_array_equal(extended.clusters[ordinals], sample.clusters)
    smallest = extended.clusters == extended.n_clusters - 1
    truth = np.isin(np.arange(len(x)), poison)
    assert (smallest & truth).sum() / (smallest | truth).sum() > 0.95  # the planted cluster
    assert "nearest cluster centre" in extended.warnings[-1]
