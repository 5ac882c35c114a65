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
