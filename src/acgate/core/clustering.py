"""Per-class clustering: reduce, k-means, silhouette — one pure, seeded function per class.

:func:`cluster_class` is the unit of work that the Kubeflow pipeline fans out per class; the
analyses consume its :class:`ClassClustering`. Cluster ids are canonical: cluster 0 is the
largest, so the same data gives the same ids however the rows were ordered.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.metrics import silhouette_score
from threadpoolctl import threadpool_limits

from acgate.core.reducers import ReducerName, reduce

#: Classes smaller than this are skipped (too few samples to split meaningfully).
MIN_CLASS_SIZE = 10
#: Above this many samples a class is clustered with MiniBatchKMeans, then refined by full
#: Lloyd iterations from its centres (MiniBatchKMeans alone lost the poison split at 100k rows
#: per class in bench "scale"; full KMeans on 100k x 10 takes ~1.3 s on one thread).
MINIBATCH_CUTOFF = 250_000
#: The silhouette is computed on at most this many seeded-sampled points (it is quadratic).
SILHOUETTE_SAMPLE_SIZE = 4_000
#: ``n_clusters="auto"`` tries k = 2 .. this many clusters and keeps the best silhouette.
MAX_AUTO_CLUSTERS = 4


@dataclass(frozen=True)
class ClassClustering:
    """Clustering of one class's activations.

    Attributes:
        label: The class.
        positions: Row positions (into the arrays given to ``detect``) of the class's samples,
            in canonical (sample-id) order.
        clusters: Cluster id of each position (``-1`` everywhere when skipped).
        n_clusters: Number of clusters (0 when skipped).
        silhouette: Silhouette score of the clustering in the reduced space, or ``None``.
        reduced: The reduced activations (len(positions) x n_components), or ``None`` if skipped.
        skipped_reason: Why the class was not clustered, or ``None``.
        warnings: Statistical caveats (e.g. non-converged ICA).
        seconds: Wall time of reduce + cluster + silhouette.
    """

    label: int
    positions: np.ndarray
    clusters: np.ndarray
    n_clusters: int
    silhouette: float | None
    reduced: np.ndarray | None
    skipped_reason: str | None = None
    warnings: tuple[str, ...] = field(default_factory=tuple)
    seconds: float = 0.0

    @property
    def cluster_sizes(self) -> tuple[int, ...]:
        """Samples per cluster."""
        if self.n_clusters == 0:
            return ()
        return tuple(int(c) for c in np.bincount(self.clusters, minlength=self.n_clusters))

    @property
    def skipped(self) -> bool:
        """Whether the class was skipped."""
        return self.skipped_reason is not None


def _canonical_ids(assignments: np.ndarray, n_clusters: int) -> np.ndarray:
    """Renumber clusters by size, descending (ties broken by first occurrence)."""
    sizes = np.bincount(assignments, minlength=n_clusters)
    first = np.array([np.argmax(assignments == c) if sizes[c] else len(assignments)
                      for c in range(n_clusters)])
    order = np.lexsort((first, -sizes))
    mapping = np.empty(n_clusters, dtype=np.int64)
    mapping[order] = np.arange(n_clusters)
    return mapping[assignments]


def silhouette(reduced: np.ndarray, clusters: np.ndarray, *, random_state: int,
               sample_size: int = SILHOUETTE_SAMPLE_SIZE) -> float | None:
    """Silhouette score, on a seeded sample when the class is large; ``None`` if undefined."""
    n_labels = len(np.unique(clusters))
    if n_labels < 2 or n_labels >= len(clusters):
        return None
    if len(clusters) > sample_size:
        rng = np.random.default_rng(random_state)
        chosen = np.sort(rng.choice(len(clusters), size=sample_size, replace=False))
        if len(np.unique(clusters[chosen])) < 2:
            return None
        return float(silhouette_score(reduced[chosen], clusters[chosen]))
    return float(silhouette_score(reduced, clusters))


def _kmeans(reduced: np.ndarray, k: int, random_state: int) -> np.ndarray:
    """Seeded k-means assignments (MiniBatchKMeans refined by full Lloyd above the cutoff)."""
    if len(reduced) > MINIBATCH_CUTOFF:
        coarse = MiniBatchKMeans(n_clusters=k, n_init=10, random_state=random_state,
                                 batch_size=4096).fit(reduced)
        model = KMeans(n_clusters=k, init=coarse.cluster_centers_, n_init=1,
                       random_state=random_state)
    else:
        model = KMeans(n_clusters=k, n_init=10, random_state=random_state)
    return model.fit_predict(reduced)


def cluster_class(
    activations: np.ndarray,
    *,
    label: int,
    positions: np.ndarray,
    reducer: ReducerName = "pca",
    n_components: int = 10,
    n_clusters: int | str = 2,
    random_state: int = 0,
    min_class_size: int = MIN_CLASS_SIZE,
    max_clusters: int = MAX_AUTO_CLUSTERS,
) -> ClassClustering:
    """Reduce one class's activations and split them with seeded k-means.

    Args:
        activations: The class's activations, rows aligned with ``positions``
            (n_class x n_features), already in canonical order.
        label: The class.
        positions: Row positions of these samples in the full arrays.
        reducer: ``"pca"`` (default), ``"ica"`` or ``"none"``.
        n_components: Dimensions to reduce to (capped by the class size and width).
        n_clusters: k of k-means, or ``"auto"``: k = 2 .. ``max_clusters`` by the best
            silhouette (so a multimodal class is split into its modes and a small poison
            cluster is not hidden inside one of them); the scores are recorded in
            ``warnings``.
        random_state: Seed for the reducer, k-means and silhouette sampling.
        min_class_size: Classes with fewer samples (or fewer than ``2 * n_clusters``) are
            skipped with the reason recorded.
        max_clusters: Largest k tried by ``n_clusters="auto"``.

    Returns:
        The :class:`ClassClustering`.
    """
    start = time.perf_counter()
    n = len(positions)
    auto = n_clusters == "auto"
    k_values = list(range(2, max(2, int(max_clusters)) + 1)) if auto else [int(n_clusters)]
    needed = max(min_class_size, 2 * k_values[0])
    if n < needed:
        return ClassClustering(
            label=label, positions=positions, clusters=np.full(n, -1, dtype=np.int64),
            n_clusters=0, silhouette=None, reduced=None,
            skipped_reason=f"class {label} has {n} samples; at least {needed} are needed "
                           f"to split it into {k_values[0]} clusters",
        )
    x = np.asarray(activations, dtype=np.float64)
    if np.ptp(x, axis=0).max() == 0.0:
        return ClassClustering(
            label=label, positions=positions, clusters=np.zeros(n, dtype=np.int64),
            n_clusters=1, silhouette=None, reduced=x[:, :1],
            skipped_reason=f"class {label}: all {n} activation vectors are identical",
        )
    # One BLAS thread: the same seed must give the same clusters on 1 or 2 cores.
    with threadpool_limits(limits=1, user_api="blas"):
        # When x is this function's own float64 copy the reducer may centre it in place.
        owned = not (isinstance(activations, np.ndarray) and np.may_share_memory(x, activations))
        reduced, notes = reduce(x, reducer=reducer, n_components=n_components,
                                random_state=random_state, copy=not owned)
        fits = []
        for k in k_values:
            if k * 2 > n:
                break
            clusters = _canonical_ids(_kmeans(reduced, k, random_state), k)
            fits.append((k, clusters, silhouette(reduced, clusters, random_state=random_state)))
    # Best silhouette wins; ties (and undefined scores) go to the smaller k.
    n_clusters, clusters, score = max(
        fits, key=lambda fit: (-1.0 if fit[2] is None else fit[2], -fit[0]))
    if auto:
        tried = ", ".join(f"k={k}: {'n/a' if q is None else f'{q:.3f}'}" for k, _, q in fits)
        notes = [*notes, f"k = {n_clusters} chosen by silhouette ({tried})"]
    return ClassClustering(
        label=label, positions=positions, clusters=clusters, n_clusters=n_clusters,
        silhouette=score, reduced=reduced, warnings=tuple(notes),
        seconds=time.perf_counter() - start,
    )
