"""Dimensionality reducers: one registry drives validation, dispatch and docs.

Measured on real activations (``bench/RESULTS.md``): whitened FastICA spreads the poison
direction over unit-variance sources and 2-means then splits clean modes instead; PCA keeps the
high-variance poison direction. The paper's ICA is available, PCA is the default.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Literal, get_args

import numpy as np
from sklearn.decomposition import PCA, FastICA
from sklearn.exceptions import ConvergenceWarning

ReducerName = Literal["pca", "ica", "none"]
REDUCERS: tuple[str, ...] = get_args(ReducerName)

#: FastICA settings that converge on real last-hidden-layer activations (DATA.md: the default
#: max_iter=200 does not, and a non-converged ICA differs between 1 and 2 BLAS threads).
ICA_MAX_ITER = 2000
ICA_TOL = 1e-3


def _effective_components(n_components: int, x: np.ndarray) -> int:
    return max(1, min(n_components, x.shape[0] - 1, x.shape[1]))


def reduce_pca(
    x: np.ndarray, *, n_components: int, random_state: int
) -> tuple[np.ndarray, list[str]]:
    """Project on the top principal components (exact and deterministic).

    With at least as many samples as features the components come from the eigenvectors of
    the d x d covariance (no n x d SVD factors: at 100k x 128 per class this needs ~150 MB
    instead of ~430 MB), else from a full SVD. Signs are fixed by scikit-learn's ``svd_flip``.
    """
    k = _effective_components(n_components, x)
    solver = "covariance_eigh" if x.shape[0] >= x.shape[1] else "full"
    # copy=False: centre in place (reduce() hands over a float64 copy), one n x d copy less.
    reduced = PCA(n_components=k, svd_solver=solver, copy=False,
                  random_state=random_state).fit_transform(x)
    # The full SVD's fit_transform returns a view into its n x d U: keep only the k columns.
    return np.ascontiguousarray(reduced), []


def reduce_ica(
    x: np.ndarray, *, n_components: int, random_state: int
) -> tuple[np.ndarray, list[str]]:
    """FastICA with unit-variance sources (the paper's reducer), seeded, converging."""
    notes: list[str] = []
    # Dead ReLU units (constant columns) make FastICA's whitening produce NaN: drop them.
    varying = np.ptp(x, axis=0) > 0
    if not varying.all():
        x = x[:, varying]
    rank = int(np.linalg.matrix_rank(x - x.mean(axis=0)))
    k = max(1, min(_effective_components(n_components, x), rank))
    if k < n_components:
        notes.append(f"FastICA used {k} components (the class's activations have rank {rank})")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        ica = FastICA(
            n_components=k,
            whiten="unit-variance",
            max_iter=ICA_MAX_ITER,
            tol=ICA_TOL,
            random_state=random_state,
        )
        reduced = ica.fit_transform(x)
    if any(issubclass(w.category, ConvergenceWarning) for w in caught):
        notes.append(
            f"FastICA did not converge within max_iter={ICA_MAX_ITER} (tol={ICA_TOL}); "
            "results may differ between BLAS thread counts"
        )
    return np.ascontiguousarray(reduced), notes


def reduce_none(
    x: np.ndarray, *, n_components: int, random_state: int
) -> tuple[np.ndarray, list[str]]:
    """No reduction: cluster the activations as they are."""
    del n_components, random_state
    return x, []


Reducer = Callable[..., tuple[np.ndarray, list[str]]]
REDUCER_REGISTRY: dict[str, Reducer] = {"pca": reduce_pca, "ica": reduce_ica, "none": reduce_none}


def reduce(
    x: np.ndarray, *, reducer: ReducerName, n_components: int, random_state: int,
    copy: bool = True,
) -> tuple[np.ndarray, list[str]]:
    """Reduce ``x`` (n_samples x n_features) with the named reducer.

    Args:
        x: The activations.
        reducer: A name from :data:`REDUCER_REGISTRY`.
        n_components: Dimensions to keep.
        random_state: Seed.
        copy: ``False`` lets the reducer centre ``x`` in place (pass a float64 array you own
            and no longer need: at 100k x 128 per class this saves a 100 MB copy).

    Returns:
        The reduced array (n_samples x min(n_components, ...)) and a list of warnings.
    """
    if copy or x.dtype != np.float64:
        x = np.array(x, dtype=np.float64, copy=True)
    return REDUCER_REGISTRY[reducer](x, n_components=n_components, random_state=random_state)
