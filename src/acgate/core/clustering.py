"""Per-class clustering: reduce, k-means, silhouette — one pure, seeded function per class.

:func:`cluster_class` is the unit of work that the Kubeflow pipeline fans out per class; the
analyses consume its :class:`ClassClustering`. Cluster ids are canonical: cluster 0 is the
largest, so the same data gives the same ids however the rows were ordered.

``n_clusters="stable"`` (the default under exclusionary reclassification) also names the
*candidate* clusters that the retrain should judge: the small clusters that are real rather
than arbitrary cuts through a continuum. A cluster found by k-means at ``k`` is *stable* when the
``k + 1`` clustering keeps its boundary (:func:`nestedness` >= :data:`MIN_STABILITY`): a tight
poison cluster survives every finer split (measured on MNIST: nestedness >= 0.94 at 5% and 10%
BadNets), while a 2-means cut through a class's natural spread is redrawn at ``k + 1``
(Fashion-MNIST's false alarms: 0.53 and 0.81). The candidates are the stable small clusters at
the smallest ``k`` that has any (a 5% poison cluster hides inside a natural half at ``k = 2``
and appears at ``k = 3``), plus stable sub-clusters found at larger ``k`` inside them (poison
inside a mode of a class that merges several digits). See ``bench/RESULTS.md``, "candidates".
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.cluster import HDBSCAN, KMeans, MiniBatchKMeans
from sklearn.metrics import silhouette_samples, silhouette_score
from sklearn.neighbors import NearestNeighbors
from threadpoolctl import threadpool_limits

from acgate.core.reducers import ReducerName, reduce
from acgate.core.tail import whitened
from acgate.core.validation import check_positive_int

#: Classes smaller than this are skipped (too few samples to split meaningfully).
MIN_CLASS_SIZE = 10
#: Above this many samples a class is clustered with MiniBatchKMeans, then refined by full
#: Lloyd iterations from its centres (MiniBatchKMeans alone lost the poison split at 100k rows
#: per class in bench "scale"; full KMeans on 100k x 10 takes ~1.3 s on one thread).
MINIBATCH_CUTOFF = 250_000
#: The silhouette is computed on at most this many seeded-sampled points (it is quadratic).
#: 1,000 instead of 4,000 (issue 19): on the 43 activation sets of the attack matrix's cells
#: (MNIST / Fashion-MNIST 20k, digits) ``detect(analysis="size-silhouette")`` flags the same
#: rows, every class's silhouette within 0.021; the silhouette was 40% of that call on 66k rows.
SILHOUETTE_SAMPLE_SIZE = 1_000
#: ... of which every cluster gets at least this many rows (all of a smaller one).
SILHOUETTE_MIN_PER_CLUSTER = 50
#: k-means restarts (k-means++ seeds) of every clustering. Not fewer: on the same 43 activation
#: sets 3 restarts changed the flagged classes of ``detect(analysis="size-silhouette")`` on 7,
#: 1 restart on 20 (k = 2 splits of a class without poison have near-equal optima).
KMEANS_INITS = 10
#: ``n_clusters="auto"`` tries k = 2 .. this many clusters and keeps the best silhouette.
MAX_AUTO_CLUSTERS = 4
#: ``n_clusters="stable"``: candidate levels k = 2 .. this many clusters.
MAX_STABLE_LEVEL = 4
#: ``n_clusters="stable"``: sub-clusters inside a candidate are looked for up to this k.
MAX_NESTED_LEVEL = 6
#: Nestedness (see :func:`nestedness`) a cluster needs to count as stable.
MIN_STABILITY = 0.9
#: A cluster must keep its boundary at this many finer levels (k + 1, ..., k + depth). One
#: level was measured best (bench/RESULTS.md, "candidates": two levels cost recall on digits
#: and on MNIST "0 <- 7+"), though a finer clustering that spends its extra cluster elsewhere
#: can make an arbitrary cut look stable at one level (a uniform slab's thirds).
STABILITY_DEPTH = 1
#: A next-level cluster counts as inside a cluster when this share of it lies there.
INSIDE_SHARE = 0.9
#: Smallest candidate cluster (samples).
MIN_CANDIDATE_SIZE = 3
#: A sub-cluster this similar (Jaccard) to a candidate already listed is the same candidate.
SAME_CANDIDATE_JACCARD = 0.8
#: Default largest share of its class a candidate may hold (the analysis' size threshold).
CANDIDATE_SHARE = 0.45
#: Direction candidates: the smaller side of a split along one principal direction counts when
#: it holds at most this share of the class ...
DIRECTION_SHARE = 0.35
#: ... and the two sides' means lie at least this many pooled standard deviations apart.
#: Poison from many source classes into one target is not a k-means cluster of its own (it sits
#: near each source's region, shifted along the trigger's direction) but is a well-separated
#: mode of one direction: MNIST 20k, BadNets all-to-one at 1% of the data, separation 5.3; the
#: natural modes of clean MNIST classes measured <= 3.7 (digits: 4.0 and, one class, 5.3-5.9).
MIN_DIRECTION_SEPARATION = 4.0
#: Dense-core candidates: in a class of at least this many rows, the dense cores that HDBSCAN
#: finds in the whitened reduced activations (each at least :data:`DENSE_CORE_MIN_SHARE` and at
#: most :data:`DENSE_CORE_MAX_SHARE` of the class) point at a direction; the side of the exact
#: 1-D split of that direction that holds the core is a candidate when it lies
#: :data:`MIN_DIRECTION_SEPARATION` from the rest and holds at most :data:`DIRECTION_SHARE`.
#: A blended trigger from nine sources into one Fashion-MNIST class is neither a k-means cluster
#: nor a mode of a principal direction, but its triggered rows crowd into one dense core (50-99
#: rows, all poison) whose direction splits off the poison at separation 4.3-7.6 (clean cores:
#: <= 4.6). Exclusionary reclassification judges these candidates by the several-sources rule
#: only, a dense core being also where a class's natural look-alikes of one neighbour crowd,
#: unless the core stands apart (:data:`DENSE_CORE_SEPARATION`).
DENSE_MIN_CLASS_ROWS = 1000
DENSE_CORE_MIN_SHARE = 0.02
DENSE_CORE_MAX_SHARE = 0.2
#: HDBSCAN's ``min_samples`` (the neighbourhood that defines density).
DENSE_MIN_SAMPLES = 10
#: The cores are found in a seeded sample of at most this many rows of the class (HDBSCAN's
#: time grows faster than linearly); the split is made over every row.
DENSE_MAX_ROWS = 4000
#: The split's side must hold at least this share of the core.
DENSE_CORE_INSIDE = 0.9
#: A core whose rows lie at least this many pooled standard deviations from the rest of the
#: class along its direction stands apart: a natural crowd of look-alikes does not. Such a core
#: is judged by every rule of exclusionary reclassification (its separation standing in for the
#: one-source rule's sureness: mean confidence and typicality), and when no side of its
#: direction splits off (separation below :data:`MIN_DIRECTION_SEPARATION`) the core itself is
#: the candidate. All-to-all poison of one source that no k-means level of k <= 4 isolates and
#: that sits off the class's whitened tail (MNIST 20k, random-centre patch at 5%: 1s in class
#: 2, 7s in class 8) crowds into one core whose direction's split still runs through clean rows
#: (separation 3.0) while the core lies 4.0-4.8 from them, and the occluded rows go to their
#: source at a mean confidence of only 0.82-0.89 (the 1s of class 2 at a median typicality of
#: only 0.03-0.05). Over every core of at most :data:`DENSE_CORE_MAX_SHARE` in the cached cells
#: of the attack matrix (bench/RESULTS.md "dense_cores": MNIST, Fashion-MNIST, MNIST 7+ and
#: Rotten Tomatoes, 326 cores), the cores of clean rows measured at most 3.66 (Fashion-MNIST
#: shirts; MNIST 2.67, text none); poison cores 2.80-25.66, 203 of 217 at least 4.0.
DENSE_CORE_SEPARATION = 4.0
ClusterMode = int | str


@dataclass(frozen=True)
class CandidateCluster:
    """A cluster of one class that exclusionary reclassification should judge.

    Attributes:
        members: Indices into the class's ``positions`` (sorted, read-only).
        k: The k-means level it was found at (2 for a direction candidate).
        stability: Its :func:`nestedness` against the ``k + 1`` clustering (1 for a direction
            candidate).
        nested: ``True`` for a sub-cluster found inside a candidate at a larger ``k``.
        direction: For a candidate found by :func:`direction_candidates`: the index of the
            reduced dimension (principal direction) it was split off along; else ``None``.
        separation: For a direction candidate: the distance of the two sides' means in pooled
            standard deviations; else ``None``.
        core: For a candidate found by :func:`dense_core_candidates`: the size of the dense
            core whose direction it was split along (rows of the class; estimated from the
            sample the core was found in, for a class of more than :data:`DENSE_MAX_ROWS`);
            else ``None``.
        alone: For a dense-core candidate: ``True`` when the candidate is the core itself
            (:data:`DENSE_CORE_SEPARATION`), not the side of its direction's split.
        core_separation: For a dense-core candidate: how far the core's rows lie from the rest
            of the class along its direction, in pooled standard deviations; else ``None``.
    """

    members: np.ndarray
    k: int
    stability: float
    nested: bool = False
    direction: int | None = None
    separation: float | None = None
    core: int | None = None
    alone: bool = False
    core_separation: float | None = None

    def __post_init__(self) -> None:  # noqa: D105
        members = np.array(np.sort(np.asarray(self.members, dtype=np.int64)), copy=True)
        members.setflags(write=False)
        object.__setattr__(self, "members", members)
        object.__setattr__(self, "k", int(self.k))
        object.__setattr__(self, "stability", float(self.stability))
        object.__setattr__(self, "nested", bool(self.nested))
        if self.direction is not None:
            object.__setattr__(self, "direction", int(self.direction))
        if self.separation is not None:
            object.__setattr__(self, "separation", float(self.separation))
        if self.core is not None:
            object.__setattr__(self, "core", int(self.core))
        object.__setattr__(self, "alone", bool(self.alone))
        if self.core_separation is not None:
            object.__setattr__(self, "core_separation", float(self.core_separation))

    def attributes(self) -> dict[str, object]:
        """Everything but the members, plain Python (a clustering file's metadata entry)."""
        return {"k": self.k, "stability": self.stability, "nested": self.nested,
                "direction": self.direction, "separation": self.separation, "core": self.core,
                "alone": self.alone, "core_separation": self.core_separation}

    def to_dict(self) -> dict[str, object]:
        """Plain-Python description (members as a list)."""
        return {"members": self.members.tolist(), **self.attributes()}

    @classmethod
    def from_attributes(cls, members: np.ndarray,
                        attributes: Mapping[str, Any]) -> CandidateCluster:
        """The candidate of ``members`` that :meth:`attributes` described.

        ``k``, ``stability`` and ``nested`` are required (``KeyError`` without one); the rest
        may be absent (a file written before they existed).
        """
        return cls(members, attributes["k"], attributes["stability"],
                   nested=attributes["nested"], direction=attributes.get("direction"),
                   separation=attributes.get("separation"), core=attributes.get("core"),
                   alone=bool(attributes.get("alone", False)),
                   core_separation=attributes.get("core_separation"))

    @property
    def separated_core(self) -> bool:
        """A dense-core candidate whose core stands apart (:data:`DENSE_CORE_SEPARATION`)."""
        return (self.core_separation is not None
                and self.core_separation >= DENSE_CORE_SEPARATION)

    @property
    def several_sources_only(self) -> bool:
        """A mode toward a core that does not stand apart: only the several-sources rule judges it.

        A dense core is also where a class's natural look-alikes of one neighbour crowd.
        """
        return self.core is not None and not self.separated_core


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
        candidates: With ``n_clusters="stable"``: the clusters exclusionary reclassification
            should judge (possibly none). ``None`` in the other modes, where every non-largest
            cluster within the size threshold is a candidate.
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
    candidates: tuple[CandidateCluster, ...] | None = None

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
    """Silhouette score, on a seeded sample when the class is large; ``None`` if undefined.

    A uniform sample can all but miss a small cluster (12 rows of 6,000: 11% of 1,000-row
    samples hold none of them, and the score is then undefined), so a cluster with fewer than
    :data:`SILHOUETTE_MIN_PER_CLUSTER` sampled rows is topped up to that many (or all of it),
    and the score is then the mean weighted by each cluster's size over its sampled rows (the
    whole class's silhouette, estimated). Otherwise the plain sample mean.
    """
    n_labels = len(np.unique(clusters))
    if n_labels < 2 or n_labels >= len(clusters):
        return None
    if len(clusters) <= sample_size:
        return float(silhouette_score(reduced, clusters))
    rng = np.random.default_rng(random_state)
    chosen = np.zeros(len(clusters), dtype=bool)
    chosen[rng.choice(len(clusters), size=sample_size, replace=False)] = True
    sizes = np.bincount(clusters, minlength=int(clusters.max()) + 1)
    drawn = np.bincount(clusters[chosen], minlength=len(sizes))
    short = np.flatnonzero((sizes > 0) & (drawn < np.minimum(sizes, SILHOUETTE_MIN_PER_CLUSTER)))
    if not len(short):
        return float(silhouette_score(reduced[chosen], clusters[chosen]))
    for cluster in short:  # seeded top-up from the cluster's rows not drawn yet
        spare = np.flatnonzero((clusters == cluster) & ~chosen)
        wanted = min(int(sizes[cluster]), SILHOUETTE_MIN_PER_CLUSTER) - int(drawn[cluster])
        chosen[rng.choice(spare, size=wanted, replace=False)] = True
    drawn = np.bincount(clusters[chosen], minlength=len(sizes))
    scores = silhouette_samples(reduced[chosen], clusters[chosen])
    weights = sizes[clusters[chosen]] / drawn[clusters[chosen]]
    return float(np.average(scores, weights=weights))


def _kmeans(reduced: np.ndarray, k: int, random_state: int) -> np.ndarray:
    """Seeded k-means assignments (MiniBatchKMeans refined by full Lloyd above the cutoff)."""
    if len(reduced) > MINIBATCH_CUTOFF:
        coarse = MiniBatchKMeans(n_clusters=k, n_init=KMEANS_INITS, random_state=random_state,
                                 batch_size=4096).fit(reduced)
        model = KMeans(n_clusters=k, init=coarse.cluster_centers_, n_init=1,
                       random_state=random_state)
    else:
        model = KMeans(n_clusters=k, n_init=KMEANS_INITS, random_state=random_state)
    return model.fit_predict(reduced)


def nestedness(cluster: np.ndarray, next_level: np.ndarray,
               inside_share: float = INSIDE_SHARE) -> float:
    """How well a finer clustering keeps a cluster's boundary, in [0, 1].

    The share of the cluster's members that sit in next-level clusters lying (at least
    ``inside_share``) inside it, and the same for the rest of the class; the smaller of the two.
    1 when the finer clustering only splits inside the cluster or outside it; low when it
    redraws the boundary (an arbitrary cut through a continuum).

    Args:
        cluster: Boolean mask of the cluster over the class's samples.
        next_level: Cluster assignment of the same samples at the next k.
        inside_share: Share of a next-level cluster that must lie on one side.
    """
    cluster = np.asarray(cluster, dtype=bool)
    scores = []
    for side in (cluster, ~cluster):
        if not side.any():
            return 0.0
        kept = 0
        for label in np.unique(next_level):
            members = next_level == label
            overlap = int((members & side).sum())
            if overlap >= inside_share * int(members.sum()):
                kept += overlap
        scores.append(kept / int(side.sum()))
    return float(min(scores))


def _jaccard(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(int((a | b).sum()), 1))


def stable_candidates(
    reduced: np.ndarray,
    *,
    random_state: int,
    size_threshold: float = CANDIDATE_SHARE,
    max_level: int = MAX_STABLE_LEVEL,
    max_nested: int = MAX_NESTED_LEVEL,
    min_stability: float = MIN_STABILITY,
    min_size: int = MIN_CANDIDATE_SIZE,
    depth: int = STABILITY_DEPTH,
) -> tuple[int, np.ndarray, tuple[CandidateCluster, ...], list[str]]:
    """Stable small clusters of one class (see the module docstring).

    Args:
        reduced: The class's reduced activations (n x d).
        random_state: Seed of every k-means fit.
        size_threshold: Largest share of the class a candidate may hold.
        max_level: Candidate levels are k = 2 .. ``max_level``.
        max_nested: Sub-clusters inside a candidate are looked for up to this k.
        min_stability: Nestedness a cluster needs against each of the next ``depth`` levels.
        min_size: Smallest candidate (samples).
        depth: Finer levels a cluster must keep its boundary at (one level is fooled by a
            finer clustering that spends its extra cluster elsewhere).

    Returns:
        ``(k, assignments, candidates, notes)``: the level the candidates were found at (2 when
        none was), its canonical cluster assignment, the candidates, and notes for the report.
    """
    n = len(reduced)
    fits: dict[int, np.ndarray] = {}

    def fit(k: int) -> np.ndarray:
        if k not in fits:
            fits[k] = _canonical_ids(_kmeans(reduced, k, random_state), k)
        return fits[k]

    def stable_at(k: int, inside: list[np.ndarray] | None
                  ) -> list[tuple[np.ndarray, CandidateCluster]]:
        found = []
        assignments = fit(k)
        for cluster in range(1 if inside is None else 0, k):  # id 0 is the largest cluster
            mask = assignments == cluster
            size = int(mask.sum())
            if size < min_size or size > size_threshold * n:
                continue
            if inside is not None and not any(
                    (mask & parent).sum() >= INSIDE_SHARE * size for parent in inside):
                continue
            stability = 1.0
            for finer in range(k + 1, k + depth + 1):
                if 2 * finer > n:
                    break
                stability = min(stability, nestedness(mask, fit(finer)))
                if stability < min_stability:
                    break
            if stability >= min_stability:
                found.append((mask, CandidateCluster(np.flatnonzero(mask), k, stability,
                                                      nested=inside is not None)))
        return found

    for level in range(2, max_level + 1):
        if 2 * (level + depth) > n:
            break
        found = stable_at(level, None)
        if not found:
            continue
        parents = [mask for mask, _ in found]
        for k in range(level + 1, max_nested + 1):
            if 2 * (k + depth) > n:
                break
            for mask, sub in stable_at(k, parents):
                if all(_jaccard(mask, listed) < SAME_CANDIDATE_JACCARD for listed, _ in found):
                    found.append((mask, sub))
        candidates = [candidate for _, candidate in found]
        notes = [f"stable candidates at k = {level}: " + ", ".join(
            f"{len(c.members)} rows (k={c.k}{', nested' if c.nested else ''}, "
            f"stability {c.stability:.2f})" for c in candidates)]
        return level, fits[level], tuple(candidates), notes
    return 2, fit(2), (), [f"no stable cluster of at most {size_threshold:.0%} of the class at "
                           f"k = 2..{max_level}"]


def _best_split(values: np.ndarray) -> tuple[int, float]:
    """Exact 1-D 2-means: ``(split, separation)`` of the sorted values.

    ``split`` is how many of the smallest values form the lower side (the cut that minimises
    the within-side sum of squares); ``separation`` is the distance of the two sides' means in
    pooled standard deviations.
    """
    n = len(values)
    cumulative = np.cumsum(values)
    squares = np.cumsum(values * values)
    left = np.arange(1, n)
    left_sum, right_sum = cumulative[:-1], cumulative[-1] - cumulative[:-1]
    left_sq, right_sq = squares[:-1], squares[-1] - squares[:-1]
    within = (left_sq - left_sum ** 2 / left) + (right_sq - right_sum ** 2 / (n - left))
    split = int(np.argmin(within)) + 1
    pooled = np.sqrt(max(float(within[split - 1]), 0.0) / n)
    gap = right_sum[split - 1] / (n - split) - left_sum[split - 1] / split
    return split, float(gap / pooled) if pooled > 0 else float("inf")


def direction_candidates(
    reduced: np.ndarray,
    *,
    max_share: float = DIRECTION_SHARE,
    min_separation: float = MIN_DIRECTION_SEPARATION,
    min_size: int = MIN_CANDIDATE_SIZE,
) -> tuple[CandidateCluster, ...]:
    """Small, well-separated modes of single principal directions of one class.

    For every reduced dimension (principal direction), the values are split in two by exact
    1-D 2-means; the smaller side is a candidate when it holds at most ``max_share`` of the
    class and the sides lie ``min_separation`` pooled standard deviations apart. Poison drawn
    from many classes into one target (all-to-one) forms such a mode without being a k-means
    cluster in the full reduced space. Deterministic; candidates repeating an earlier one
    (Jaccard >= :data:`SAME_CANDIDATE_JACCARD`) are dropped.

    Args:
        reduced: The class's reduced activations (n x d), directions by decreasing variance.
        max_share: Largest share of the class a candidate may hold.
        min_separation: Smallest separation, in pooled standard deviations.
        min_size: Smallest candidate (samples).

    Returns:
        The candidates (``direction`` and ``separation`` set), strongest separation first.
    """
    n = len(reduced)
    found: list[tuple[np.ndarray, CandidateCluster]] = []
    for direction in range(reduced.shape[1] if n > 2 * min_size else 0):
        values = np.asarray(reduced[:, direction], dtype=np.float64)
        order = np.argsort(values, kind="stable")
        split, separation = _best_split(values[order])
        low_side = split <= n - split
        size = split if low_side else n - split
        if size < min_size or size > max_share * n or separation < min_separation:
            continue
        mask = np.zeros(n, dtype=bool)
        mask[order[:split] if low_side else order[split:]] = True
        if any(_jaccard(mask, listed) >= SAME_CANDIDATE_JACCARD for listed, _ in found):
            continue
        found.append((mask, CandidateCluster(np.flatnonzero(mask), 2, 1.0,
                                             direction=direction, separation=separation)))
    return tuple(sorted((c for _, c in found), key=lambda c: -float(c.separation or 0.0)))


@dataclass(frozen=True)
class DenseCore:
    """One dense core of a class, found by :func:`dense_cores`.

    Attributes:
        sampled: Row indices (into the class) of the core's rows in HDBSCAN's sample.
        members: Mask over the class's rows: the core's rows, a row outside the sample joining
            its nearest sampled row's core.
        projection: Every row of the class projected on the direction from the class's centre
            to the core (whitened reduced space).
        rows: The core's size, its count in the sample scaled to the class.
        separation: Distance of the members from the rest of the class along that direction,
            in pooled standard deviations (see :data:`DENSE_CORE_SEPARATION`).
    """

    sampled: np.ndarray
    members: np.ndarray
    projection: np.ndarray
    rows: int
    separation: float


def dense_cores(reduced: np.ndarray, *, random_state: int,
                min_size: int = MIN_CANDIDATE_SIZE) -> tuple[DenseCore, ...]:
    """HDBSCAN's dense cores of one class of at most :data:`DENSE_CORE_MAX_SHARE` of it.

    The cores are found in the whitened reduced activations, in a seeded sample of
    :data:`DENSE_MAX_ROWS` rows of a larger class; deterministic for a given ``random_state``.

    Args:
        reduced: The class's reduced activations (n x d).
        random_state: Seed of the sample.
        min_size: Smallest core HDBSCAN may return (with :data:`DENSE_CORE_MIN_SHARE`).

    Returns:
        The cores, in HDBSCAN's order.
    """
    n = len(reduced)
    space = whitened(reduced)
    sample = np.arange(n)
    if n > DENSE_MAX_ROWS:
        rng = np.random.default_rng(random_state)
        sample = np.sort(rng.choice(n, DENSE_MAX_ROWS, replace=False))
    smallest = max(min_size, int(np.ceil(DENSE_CORE_MIN_SHARE * len(sample))))
    labels = HDBSCAN(min_cluster_size=smallest, min_samples=DENSE_MIN_SAMPLES,
                     copy=True).fit(space[sample]).labels_
    found = []
    for core in range(int(labels.max()) + 1):  # HDBSCAN's noise is -1
        sampled = sample[labels == core]
        if len(sampled) > DENSE_CORE_MAX_SHARE * len(sample):
            continue
        projection = space @ (space[sampled].mean(axis=0) - space.mean(axis=0))
        members = _core_members(space, sample, labels == core)
        found.append(DenseCore(sampled, members, projection,
                               round(len(sampled) * n / len(sample)),  # the sample's, scaled
                               _pooled_separation(projection[members], projection[~members])))
    return tuple(found)


def dense_core_candidates(
    reduced: np.ndarray,
    *,
    random_state: int,
    max_share: float = DIRECTION_SHARE,
    min_separation: float = MIN_DIRECTION_SEPARATION,
    min_size: int = MIN_CANDIDATE_SIZE,
) -> tuple[CandidateCluster, ...]:
    """Modes of the directions from a class's centre to its dense cores.

    See :data:`DENSE_MIN_CLASS_ROWS`. Deterministic for a given ``random_state``; candidates
    repeating an earlier one (Jaccard >= :data:`SAME_CANDIDATE_JACCARD`) are dropped.

    Args:
        reduced: The class's reduced activations (n x d).
        random_state: Seed of the sample the cores are found in (classes of more than
            :data:`DENSE_MAX_ROWS` rows).
        max_share: Largest share of the class a candidate may hold.
        min_separation: Smallest separation of the split, in pooled standard deviations.
        min_size: Smallest candidate (samples).

    Returns:
        The candidates (``core`` and ``separation`` set), strongest separation first; none in a
        class of fewer than :data:`DENSE_MIN_CLASS_ROWS` rows.
    """
    n = len(reduced)
    if n < DENSE_MIN_CLASS_ROWS:
        return ()
    found: list[tuple[np.ndarray, CandidateCluster]] = []
    for core in dense_cores(reduced, random_state=random_state, min_size=min_size):
        mask, separation = _core_side(core.projection, core.sampled, min_separation)
        alone = mask is None
        if alone:
            if core.separation < DENSE_CORE_SEPARATION:
                continue
            mask, separation = core.members, core.separation
        size = int(mask.sum())
        if size < min_size or size > max_share * n:
            continue
        if any(_jaccard(mask, listed) >= SAME_CANDIDATE_JACCARD for listed, _ in found):
            continue
        found.append((mask, CandidateCluster(np.flatnonzero(mask), 2, 1.0, separation=separation,
                                             core=core.rows, alone=alone,
                                             core_separation=core.separation)))
    return tuple(sorted((c for _, c in found), key=lambda c: -float(c.separation or 0.0)))


def _core_side(projection: np.ndarray, in_core: np.ndarray, min_separation: float
               ) -> tuple[np.ndarray | None, float]:
    """The core's side of the exact split of its direction, or ``None`` when it does not split.

    It does not when the sides lie less than ``min_separation`` apart or the core's side holds
    less than :data:`DENSE_CORE_INSIDE` of the core.
    """
    order = np.argsort(projection, kind="stable")
    split, separation = _best_split(projection[order])
    mask = np.zeros(len(projection), dtype=bool)
    mask[order[split:]] = True  # the core's side: the direction points at the core
    if separation < min_separation or mask[in_core].mean() < DENSE_CORE_INSIDE:
        return None, separation
    return mask, separation


def _core_members(space: np.ndarray, sample: np.ndarray, in_core: np.ndarray) -> np.ndarray:
    """Mask of the class's rows in a core found in ``sample`` (``in_core`` over the sample).

    A row outside the sample joins the core of its nearest sampled row.
    """
    mask = np.zeros(len(space), dtype=bool)
    mask[sample[in_core]] = True
    if len(sample) < len(space):
        rest = np.setdiff1d(np.arange(len(space)), sample, assume_unique=True)
        nearest = NearestNeighbors(n_neighbors=1).fit(space[sample]).kneighbors(
            space[rest], return_distance=False)[:, 0]
        mask[rest[in_core[nearest]]] = True
    return mask


def _pooled_separation(inside: np.ndarray, outside: np.ndarray) -> float:
    """Distance of two groups' means in pooled (within-group) standard deviations."""
    if not len(inside) or not len(outside):
        return 0.0
    within = (inside.var() * len(inside) + outside.var() * len(outside)) / (
        len(inside) + len(outside))
    gap = float(inside.mean() - outside.mean())
    return gap / float(np.sqrt(within)) if within > 0 else float("inf")


def _new_candidates(listed: tuple[CandidateCluster, ...],
                    candidates: tuple[CandidateCluster, ...]) -> tuple[CandidateCluster, ...]:
    """``candidates`` that do not repeat one of ``listed`` (Jaccard on members)."""
    kept = []
    for candidate in candidates:
        if all(_member_jaccard(candidate.members, other.members) < SAME_CANDIDATE_JACCARD
               for other in listed):
            kept.append(candidate)
    return tuple(kept)


def _member_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    shared = len(np.intersect1d(a, b, assume_unique=True))
    return shared / max(len(a) + len(b) - shared, 1)


def cluster_class(
    activations: np.ndarray,
    *,
    label: int,
    positions: np.ndarray,
    reducer: ReducerName = "pca",
    n_components: int = 10,
    n_clusters: ClusterMode = 2,
    random_state: int = 0,
    min_class_size: int = MIN_CLASS_SIZE,
    max_clusters: int = MAX_AUTO_CLUSTERS,
    size_threshold: float = CANDIDATE_SHARE,
    directions: bool = True,
    stability_depth: int = STABILITY_DEPTH,
) -> ClassClustering:
    """Reduce one class's activations and split them with seeded k-means.

    Args:
        activations: The class's activations, rows aligned with ``positions``
            (n_class x n_features), already in canonical order.
        label: The class.
        positions: Row positions of these samples in the full arrays.
        reducer: ``"pca"`` (default), ``"ica"`` or ``"none"``.
        n_components: Dimensions to reduce to (capped by the class size and width).
        n_clusters: k of k-means; ``"auto"``: k = 2 .. ``max_clusters`` by the best
            silhouette (so a multimodal class is split into its modes and a small poison
            cluster is not hidden inside one of them; the scores are recorded in
            ``warnings``); or ``"stable"``: the level of :func:`stable_candidates`, with its
            candidates in ``candidates``.
        random_state: Seed for the reducer, k-means and silhouette sampling.
        min_class_size: Classes with fewer samples (or fewer than ``2 * n_clusters``) are
            skipped with the reason recorded.
        max_clusters: Largest k tried by ``n_clusters="auto"``.
        size_threshold: ``n_clusters="stable"``: largest share of the class a candidate may
            hold.
        directions: ``n_clusters="stable"``: also name the :func:`direction_candidates`
            (modes of single principal directions) and the :func:`dense_core_candidates`
            (modes of the directions to dense cores) that no earlier candidate covers.
        stability_depth: ``n_clusters="stable"``: finer levels a candidate must keep its
            boundary at (``depth`` of :func:`stable_candidates`; default
            :data:`STABILITY_DEPTH`).

    Raises:
        ValueError: When ``stability_depth`` is below 1.
        TypeError: When ``stability_depth`` is not an integer.

    Returns:
        The :class:`ClassClustering`.
    """
    start = time.perf_counter()
    stability_depth = check_positive_int(stability_depth, name="stability_depth")
    n = len(positions)
    stable = n_clusters == "stable"
    k_values = (list(range(2, max(2, int(max_clusters)) + 1)) if n_clusters == "auto"
                else [2] if stable else [int(n_clusters)])
    needed = max(min_class_size, 2 * k_values[0])
    if n < needed:
        return _unclustered(label, positions, np.full(n, -1, dtype=np.int64), 0, None, stable,
                            f"class {label} has {n} samples; at least {needed} are needed "
                            f"to split it into {k_values[0]} clusters")
    x = np.asarray(activations, dtype=np.float64)
    if np.ptp(x, axis=0).max() == 0.0:
        return _unclustered(label, positions, np.zeros(n, dtype=np.int64), 1, x[:, :1], stable,
                            f"class {label}: all {n} activation vectors are identical")
    # One BLAS thread: the same seed must give the same clusters on 1 or 2 cores.
    with threadpool_limits(limits=1, user_api="blas"):
        # When x is this function's own float64 copy the reducer may centre it in place.
        owned = not (isinstance(activations, np.ndarray) and np.may_share_memory(x, activations))
        reduced, notes = reduce(x, reducer=reducer, n_components=n_components,
                                random_state=random_state, copy=not owned)
        if stable:
            clustering = _stable_clustering(
                reduced, label=label, positions=positions, random_state=random_state,
                size_threshold=size_threshold, directions=directions,
                stability_depth=stability_depth, notes=notes)
        else:
            clustering = _best_k_clustering(
                reduced, label=label, positions=positions, random_state=random_state,
                k_values=k_values, notes=notes, report_choice=n_clusters == "auto")
    return dataclasses.replace(clustering, seconds=time.perf_counter() - start)


def _unclustered(label: int, positions: np.ndarray, clusters: np.ndarray, n_clusters: int,
                 reduced: np.ndarray | None, stable: bool, reason: str) -> ClassClustering:
    """A class that is not split (too small, or no variation), with the reason."""
    return ClassClustering(
        label=label, positions=positions, clusters=clusters, n_clusters=n_clusters,
        silhouette=None, reduced=reduced,
        skipped_reason=reason, candidates=() if stable else None,
    )


def _stable_clustering(reduced: np.ndarray, *, label: int, positions: np.ndarray,
                       random_state: int, size_threshold: float, directions: bool,
                       stability_depth: int, notes: list[str]) -> ClassClustering:
    """``n_clusters="stable"``: the level of :func:`stable_candidates` and its candidates."""
    k, clusters, candidates, found = stable_candidates(
        reduced, random_state=random_state, size_threshold=size_threshold,
        depth=stability_depth)
    if directions:
        extra = _new_candidates(candidates, direction_candidates(
            reduced, max_share=min(size_threshold, DIRECTION_SHARE)))
        candidates = (*candidates, *extra)
        if extra:
            found = [*found, "split along a principal direction: " + ", ".join(
                f"{len(c.members)} rows (direction {c.direction + 1}, separation "
                f"{c.separation:.1f})" for c in extra)]
        dense = _new_candidates(candidates, dense_core_candidates(
            reduced, random_state=random_state, max_share=min(size_threshold, DIRECTION_SHARE)))
        candidates = (*candidates, *dense)
        if dense:
            found = [*found, "split toward a dense core: " + ", ".join(
                f"{len(c.members)} rows ({'the core' if c.alone else f'core of {c.core}'}, "
                f"separation {c.separation:.1f})" for c in dense)]
    return ClassClustering(
        label=label, positions=positions, clusters=clusters, n_clusters=k,
        silhouette=silhouette(reduced, clusters, random_state=random_state),
        reduced=reduced, warnings=tuple([*notes, *found]), candidates=candidates,
    )


def _best_k_clustering(reduced: np.ndarray, *, label: int, positions: np.ndarray,
                       random_state: int, k_values: list[int], notes: list[str],
                       report_choice: bool) -> ClassClustering:
    """k-means at each of ``k_values`` (while 2k <= n); the best silhouette wins."""
    fits = []
    for k in k_values:
        if k * 2 > len(positions):
            break
        clusters = _canonical_ids(_kmeans(reduced, k, random_state), k)
        fits.append((k, clusters, silhouette(reduced, clusters, random_state=random_state)))
    # Best silhouette wins; ties (and undefined scores) go to the smaller k.
    n_clusters, clusters, score = max(
        fits, key=lambda fit: (-1.0 if fit[2] is None else fit[2], -fit[0]))
    if report_choice:
        tried = ", ".join(f"k={k}: {'n/a' if q is None else f'{q:.3f}'}" for k, _, q in fits)
        notes = [*notes, f"k = {n_clusters} chosen by silhouette ({tried})"]
    return ClassClustering(
        label=label, positions=positions, clusters=clusters, n_clusters=n_clusters,
        silhouette=score, reduced=reduced, warnings=tuple(notes),
    )
