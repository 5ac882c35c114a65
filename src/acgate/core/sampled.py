"""A class larger than memory: cluster a seeded sample as usual, assign the other rows.

:func:`acgate.core.cluster_class` holds a class whole (its activations and a float64 copy). A
class of more than :data:`MAX_CLUSTER_ROWS` rows is instead clustered from a seeded sample of
that many rows (:func:`sample_ordinals`): the reducer, the k-means levels and the stable,
direction and dense-core candidates are the sample's, computed by the same code.
:func:`extend_clustering` then gives every row of the class, in batches, the sample's reduced
space (the reducers are linear: the map is fitted on the sample by least squares, exact for PCA)
and, with stable candidates (``n_clusters="stable"``), the cluster and candidate memberships of
the weighted majority of its :data:`ASSIGN_NEIGHBOURS` nearest sample rows there (among a seeded
reference of at most :data:`ASSIGN_REFERENCE_ROWS` candidate rows and as many others, each vote
weighted by its stratum's sampling rate); with k-means clusters alone (``n_clusters`` 2 or
``"auto"``), the cluster of the nearest cluster centre, k-means's own rule (the sample's
clusters are the Voronoi cells of their means). Sampled rows keep their own; cluster ids are
renumbered by size over the whole class. Memory: the sample, the reference and, per row of the
class, its position, cluster, reduced values and candidate memberships (~100 bytes at 10
components): it does not hold the class's activations.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable

import numpy as np
from sklearn.neighbors import NearestNeighbors
from threadpoolctl import threadpool_limits

from acgate.core.clustering import ClassClustering, _canonical_ids
from acgate.core.validation import check_positive_int

#: Rows of a class clustered whole; a larger class is clustered from a sample of this many.
MAX_CLUSTER_ROWS = 200_000
#: Nearest sample rows whose majority gives an unsampled row its cluster and candidates.
ASSIGN_NEIGHBOURS = 10
#: The nearest neighbours are looked up among at most this many sampled rows of candidates and
#: as many others (an exact query in 10 dimensions costs ~0.06 ms a row among 40k points by brute
#: force, ~0.15 ms with a KD-tree, whose pruning fails on such spread-out data; ~0.5 ms among
#: 200k).
ASSIGN_REFERENCE_ROWS = 20_000

__all__ = ["ASSIGN_NEIGHBOURS", "MAX_CLUSTER_ROWS", "extend_clustering", "sample_ordinals"]


def sample_ordinals(n_rows: int, max_rows: int, random_state: int) -> np.ndarray:
    """The seeded sample of a class: ``max_rows`` distinct ordinals in ``0..n_rows-1``, sorted.

    Raises:
        ValueError: ``max_rows`` not below ``n_rows`` (a class that fits is clustered whole).
    """
    check_positive_int(max_rows, name="max_rows")
    if max_rows >= n_rows:
        raise ValueError(f"max_rows {max_rows} is not below the class's {n_rows} rows: "
                         "cluster it whole")
    rng = np.random.default_rng(random_state)
    return np.sort(rng.choice(n_rows, size=max_rows, replace=False))


def extend_clustering(
    sample: ClassClustering,
    sample_activations: np.ndarray,
    batches: Iterable[tuple[np.ndarray, np.ndarray]],
    *,
    n_rows: int,
    neighbours: int = ASSIGN_NEIGHBOURS,
    reference_rows: int = ASSIGN_REFERENCE_ROWS,
    random_state: int = 0,
) -> ClassClustering:
    """The clustering of a whole class from the clustering of its seeded sample.

    With stable candidates, a row takes the weighted majority of its nearest sample rows'
    cluster and candidate memberships; the neighbours are looked up among a reference drawn
    from the sample in two strata: the rows of any candidate, and the others, at most
    ``reference_rows`` of each (all of a small candidate is in it). Each reference row's vote
    weighs its stratum's size over its draw, so the votes estimate the shares of the whole
    sample around a row. With k-means clusters alone (``sample.candidates`` is ``None``), a
    row takes its nearest cluster centre's cluster (``neighbours`` and ``reference_rows`` are
    not used).

    Args:
        sample: :func:`acgate.core.cluster_class` of the sample (its ``positions`` are the
            sampled rows' positions).
        sample_activations: The sample's activations (rows aligned with ``sample.positions``).
        batches: ``(positions, activations)`` of every row of the class, the sampled ones
            among them, in ascending position order.
        n_rows: The class's row count.
        neighbours: Reference rows whose weighted majority assigns a row.
        reference_rows: Largest draw of each stratum.
        random_state: Seed of the draws.

    Returns:
        The class's :class:`ClassClustering`: cluster ids renumbered by size over the whole
        class (0 the largest), silhouette and notes the sample's, plus a note.

    Raises:
        ValueError: Batches that do not hold exactly ``n_rows`` rows in ascending order, or
            miss a sampled row.
    """
    start = time.perf_counter()
    check_positive_int(neighbours, name="neighbours")
    check_positive_int(reference_rows, name="reference_rows")
    note = f"clustered from a seeded sample of {len(sample.positions):,} of its {n_rows:,} rows"
    if sample.skipped:
        positions = _all_positions(batches, n_rows, sample.positions)
        value = int(sample.clusters[0]) if len(sample.clusters) else -1
        return dataclasses.replace(sample, positions=positions, reduced=None,
                                   clusters=np.full(n_rows, value, dtype=np.int64),
                                   warnings=(*sample.warnings, note))
    sample_reduced = np.asarray(sample.reduced, dtype=np.float64)
    candidates = sample.candidates or ()
    member_masks = np.zeros((len(candidates), len(sample.positions)), dtype=bool)
    for index, candidate in enumerate(candidates):
        member_masks[index, candidate.members] = True
    if sample.candidates is None:  # k-means clusters alone: a row's is its nearest centre's
        assign = _nearest_centre(sample_reduced, sample.clusters, sample.n_clusters)
        note_tail = ("the others take the cluster of their nearest cluster centre (k-means's own "
                     "rule)")
    else:
        assign, neighbours, reference_size = _nearest_votes(
            sample_reduced, sample.clusters, sample.n_clusters, member_masks, neighbours,
            reference_rows, random_state)
        note_tail = (f"the others take the cluster and candidates of the weighted majority of "
                     f"their {neighbours} nearest among {reference_size:,} sample rows")
    with threadpool_limits(limits=1, user_api="blas"):  # the same rows on 1 or 2 cores
        centre, weights, offset = _linear_map(sample_activations, sample_reduced)
        positions = np.empty(n_rows, dtype=np.int64)
        clusters = np.empty(n_rows, dtype=np.int64)
        reduced = np.empty((n_rows, sample_reduced.shape[1]), dtype=np.float64)
        memberships = np.zeros((len(candidates), n_rows), dtype=bool)
        filled = 0
        for batch_positions, batch in batches:
            stop = filled + len(batch_positions)
            if stop > n_rows:
                raise ValueError(f"the batches hold more than the class's {n_rows} rows")
            part = (np.asarray(batch, dtype=np.float64) - centre) @ weights + offset
            positions[filled:stop] = batch_positions
            clusters[filled:stop], memberships[:, filled:stop] = assign(part)
            reduced[filled:stop] = part
            filled = stop
    sampled = _check_rows(positions, filled, n_rows, sample.positions)
    clusters[sampled] = sample.clusters  # sampled rows keep their own
    reduced[sampled] = sample_reduced
    memberships[:, sampled] = member_masks
    extended = tuple(dataclasses.replace(candidate, members=np.flatnonzero(memberships[index]))
                     for index, candidate in enumerate(candidates))
    note += f"; {note_tail}"
    return dataclasses.replace(
        sample, positions=positions, clusters=_canonical_ids(clusters, sample.n_clusters),
        reduced=reduced, candidates=None if sample.candidates is None else extended,
        warnings=(*sample.warnings, note),
        seconds=sample.seconds + time.perf_counter() - start)


Assign = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def _nearest_centre(sample_reduced: np.ndarray, sample_clusters: np.ndarray,
                    n_clusters: int) -> Assign:
    """Reduced rows -> (the cluster of the nearest sample cluster's mean, no memberships)."""
    sizes = np.bincount(sample_clusters, minlength=n_clusters)
    if not sizes.all():
        raise ValueError(f"the sample's clusters {np.flatnonzero(sizes == 0).tolist()} are "
                         "empty: no centre to assign rows to")
    centres = np.stack([sample_reduced[sample_clusters == c].mean(axis=0)
                        for c in range(n_clusters)])

    def assign(part: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        distances = ((part[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
        return distances.argmin(axis=1), np.zeros((0, len(part)), dtype=bool)
    return assign


def _nearest_votes(sample_reduced: np.ndarray, sample_clusters: np.ndarray, n_clusters: int,
                   member_masks: np.ndarray, neighbours: int, reference_rows: int,
                   random_state: int) -> tuple[Assign, int, int]:
    """Reduced rows -> their nearest reference rows' weighted majority cluster and memberships.

    Also returns the neighbours used and the reference's size.
    """
    reference, vote_weights = _reference(member_masks.any(axis=0), reference_rows,
                                         random_state)
    neighbours = min(neighbours, len(reference))
    reference_clusters, reference_masks = sample_clusters[reference], member_masks[:, reference]
    index = NearestNeighbors(n_neighbors=neighbours, algorithm="brute").fit(
        sample_reduced[reference])

    def assign(part: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        nearest = index.kneighbors(part, return_distance=False)
        votes = np.zeros((len(part), max(n_clusters, 1)))
        np.add.at(votes, (np.repeat(np.arange(len(part)), nearest.shape[1]),
                          reference_clusters[nearest].ravel()),
                  vote_weights[nearest].ravel())
        share = ((reference_masks[:, nearest] * vote_weights[nearest]).sum(2)
                 / vote_weights[nearest].sum(1))
        return votes.argmax(axis=1), share > 0.5
    return assign, neighbours, len(reference)


def _reference(in_candidate: np.ndarray, most: int,
               random_state: int) -> tuple[np.ndarray, np.ndarray]:
    """Sample rows to look neighbours up among, and each one's vote weight.

    Two strata (rows of a candidate, the others), at most ``most`` of each, seeded; a row's
    weight is its stratum's size over the rows drawn from it.
    """
    rng = np.random.default_rng(random_state)
    chosen, weights = [], []
    for stratum in (np.flatnonzero(in_candidate), np.flatnonzero(~in_candidate)):
        if not len(stratum):
            continue
        drawn = stratum if len(stratum) <= most else np.sort(
            rng.choice(stratum, size=most, replace=False))
        chosen.append(drawn)
        weights.append(np.full(len(drawn), len(stratum) / len(drawn)))
    order = np.argsort(np.concatenate(chosen), kind="stable")
    return np.concatenate(chosen)[order], np.concatenate(weights)[order]


def _all_positions(batches: Iterable[tuple[np.ndarray, np.ndarray]], n_rows: int,
                   sample_positions: np.ndarray) -> np.ndarray:
    """Every row's position from the batches (checked as :func:`_check_rows` checks them)."""
    positions = np.empty(n_rows, dtype=np.int64)
    filled = 0
    for batch_positions, _ in batches:
        if filled + len(batch_positions) > n_rows:
            raise ValueError(f"the batches hold more than the class's {n_rows} rows")
        positions[filled:filled + len(batch_positions)] = batch_positions
        filled += len(batch_positions)
    _check_rows(positions, filled, n_rows, sample_positions)
    return positions


def _linear_map(x: np.ndarray, reduced: np.ndarray,
                chunk: int = 65_536) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(centre, weights, offset)`` with ``reduced ~ (x - centre) @ weights + offset``.

    Least squares through the normal equations, accumulated in chunks: no float64 copy of the
    sample (exact for PCA, whose reduction is this map; min-norm for constant features).
    """
    centre = np.asarray(x.mean(axis=0, dtype=np.float64))
    offset = reduced.mean(axis=0)
    gram = np.zeros((x.shape[1], x.shape[1]))
    cross = np.zeros((x.shape[1], reduced.shape[1]))
    for start in range(0, len(x), chunk):
        part = np.asarray(x[start:start + chunk], dtype=np.float64) - centre
        gram += part.T @ part
        cross += part.T @ (reduced[start:start + chunk] - offset)
    return centre, np.linalg.lstsq(gram, cross, rcond=None)[0], offset


def _check_rows(positions: np.ndarray, filled: int, n_rows: int,
                sample_positions: np.ndarray) -> np.ndarray:
    """Where the sampled rows sit among all the rows (which must ascend and contain them)."""
    if filled != n_rows:
        raise ValueError(f"the batches hold {filled} rows, the class {n_rows}")
    if n_rows > 1 and not (np.diff(positions) > 0).all():
        raise ValueError("the batches' positions do not ascend")
    where = np.searchsorted(positions, sample_positions)
    if (where >= n_rows).any() or not np.array_equal(positions[np.minimum(where, n_rows - 1)],
                                                      sample_positions):
        raise ValueError("the batches miss a sampled row")
    return where
