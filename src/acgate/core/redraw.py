"""The rows of a poisoned class, redrawn around the poison's centre.

An analyzer decides *whether* a class is poisoned from a candidate group of rows (a cluster, a
tail) and flags the rows its evidence speaks for: under exclusionary reclassification, the
candidate's rows that a retrain without them sends to another class. That row set is rough at
its edges. A k-means candidate cuts through the poison when the poison does not dominate the
class's first principal directions (all-to-one poison at 1% of the data is 10% of its target
class), so part of it is never left out; and clean rows left out with the candidate are sent
away too when the retrain never saw anything like them.

Poison rows share their trigger, so in the poisoned proxy's activations they sit together,
apart from the class's clean rows: measured on the cached Fashion-MNIST and MNIST all-to-one
scans of ``bench/RESULTS.md`` ("attack_matrix") with BadNets, blended and checker triggers, a
linear rule separates them at AUROC 1.00 (see below for triggers the proxy did not learn).
But the direction that separates them need not carry much of the class's variance. So the
redraw works in the class's **whitened** principal space (:data:`REDRAW_COMPONENTS`
directions, each scaled to unit variance), where a low-variance trigger direction counts as
much as the class's main modes of variation, and runs two-centroid k-means started from the
analyzer's flags: each row goes to the nearer of the flagged rows' centre and the other rows'
centre, the centres are recomputed, until nothing moves. Poison the candidate missed joins the
flagged centre; clean rows the candidate swept in go back.

The redraw is deterministic (no random step) and keeps the analyzer's flags when it cannot speak:
too few rows on either side; no row moved; a result that holds more than the analysis's size
threshold (poison is a minority of its class: a redraw that grows past that has followed a
natural split of the class instead); or an iteration that does not settle (it creeps into the
clean rows a few at a time when the poison is not a group of its own). These return no redraw
and add nothing to the reason.

A redraw that **adds** rows must also settle on a group that stands apart: along the line
through the two centres, the sides' means at least :data:`REDRAW_MIN_SEPARATION` standard
deviations apart. Where the proxy did not learn the trigger (MNIST warp all-to-one at 1%,
poison fit 0.00-0.02; SIG seed 2, 0.20), the poison is the far end of a continuum of the class
(even a linear rule fit on the truth separates it only at AUROC 0.94-0.97), and a redraw
started there settles on a wider slice of that continuum, adding clean rows. Such a redraw is
not taken: the analyzer's flags stand and the class's reason says why. A redraw that only
drops rows keeps a part of what the analysis proved and is taken at any separation.

Then the **neighbours fill** (:func:`fill_rows`): where the proxy did not learn the trigger,
part of the poison lies beyond both the candidate and the redraw, yet next to rows already
flagged (MNIST SIG all-to-one 1% seed 2: 41 poison rows missed, 32% of their 10 nearest
neighbours flagged on average, against 0.1% for the clean rows of the class). A row among the
:data:`FILL_NEIGHBOURS` nearest neighbours of a flagged row, in the same whitened space, joins
the flags when at least :data:`FILL_MIN_FLAGGED` of its own nearest neighbours are flagged,
round after round until none joins. A clean row has clean rows around it; a majority of its
neighbours flagged is a row inside the flagged group. A fill that would grow the flags past the
class's size threshold is not taken.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
from sklearn.neighbors import NearestNeighbors

from acgate.core.evidence import ClassJudgement
from acgate.core.reducers import reduce_pca
from acgate.core.result import NO_VALUE

#: Whitened principal directions of the class the redraw works in (0: no redraw). The table that
#: chose 20: ``bench/RESULTS.md``, "attack_matrix", Findings.
REDRAW_COMPONENTS = 20
#: Rounds the two-centroid iteration may take to settle. A separate group settles within 13 on
#: every bench cell; a redraw still moving after this many is creeping into the clean rows (43
#: rounds and 3x the rows on MNIST SIG seed 2 of the AMD EPYC's proxies, variant ``redraw`` of
#: bench/RESULTS.md "attack_matrix", where the proxy never learned the trigger) and is not
#: taken.
REDRAW_MAX_ROUNDS = 25
#: Rows needed on each side (flagged, not flagged) for a centre to mean anything.
REDRAW_MIN_ROWS = 5
#: A redraw that adds rows is taken only when the two sides it settles on lie at least this many
#: standard deviations apart along the line through their centres, each side's spread counting
#: equally (weighted by size, the clean side alone would set the unit and a diffuse flagged side
#: would pass; :data:`acgate.core.clustering.DENSE_CORE_SEPARATION`, the core's other 4.0 cut
#: for a group that stands apart, weights by size). Chosen on the 42 redraws that add rows in 38
#: cached all-to-one and all-to-all cells (MNIST, Fashion-MNIST, text), each class's F1 measured
#: on the same flags without and with the redraw: the three that lost more than 0.01 settled at
#: 3.47 (MNIST warp all-to-one 1% seed 2, 0.910 -> 0.741), 3.59 (SIG seed 2, 0.873 -> 0.838)
#: and 4.24 (warp all-to-all seed 1, a class 0.863 -> 0.804); every one that gained settled at
#: 4.17 or more (separations rounded down, as the reasons show them). Where every redraw of the
#: attack matrix settled: bench/RESULTS.md "redraw_separation".
REDRAW_MIN_SEPARATION = 4.0
#: Nearest neighbours of a row that the neighbours fill counts (:func:`fill_rows`) ...
FILL_NEIGHBOURS = 10
#: ... and how many of them must be flagged for the row to join: a majority. The table that
#: chose it (rows within reach of the flags, cached cells of the attack matrix, at 2 of 10 every
#: clean row next to a clean row the analysis flagged joins too): bench/RESULTS.md
#: "attack_matrix", variant ``fill``.
FILL_MIN_FLAGGED = 5
#: The fill runs in classes of at most this many rows: its exact neighbour search costs the
#: flagged rows times the class's rows (a class of 50,000 rows with 10% flagged: ~5 s on one
#: core); a larger class keeps the redraw's rows, and its reason says so.
FILL_MAX_CLASS_ROWS = 50_000

__all__ = ["FILL_MAX_CLASS_ROWS", "FILL_MIN_FLAGGED", "FILL_NEIGHBOURS", "REDRAW_COMPONENTS",
           "REDRAW_MIN_SEPARATION", "RowFill", "RowRedraw", "fill_rows", "redraw_judgement",
           "redraw_rows", "whitened_principal"]


@dataclass(frozen=True)
class RowRedraw:
    """The outcome of :func:`redraw_rows` on one class.

    Attributes:
        flagged: The redrawn flags (aligned with the class's rows).
        score: Per row, in ``[0, 1]``: the distance to the other rows' centre over the sum of
            its distances to both centres (above 0.5: nearer the flagged centre).
        added: Rows flagged now that the analyzer had not flagged.
        removed: Rows the analyzer flagged that are not flagged now.
        rounds: Iterations run.
        n_components: Whitened directions used.
        separation: How far apart the two sides' means lie along the line through their
            centres, in standard deviations (each side's spread counting equally).
    """

    flagged: np.ndarray
    score: np.ndarray
    added: int
    removed: int
    rounds: int
    n_components: int
    separation: float

    @property
    def taken(self) -> bool:
        """Whether the redrawn flags replace the analyzer's.

        ``False`` when the redraw adds rows and ``separation`` is below
        :data:`REDRAW_MIN_SEPARATION`: ``flagged`` and ``score`` then describe the split it
        settled on, and the analyzer's flags stand.
        """
        return self.added == 0 or self.separation >= REDRAW_MIN_SEPARATION

    def describe(self) -> str:
        """One clause for the class's reason."""
        space = f"the class's whitened {self.n_components}-direction principal space"
        apart = f"{_shown(self.separation)} SD apart"
        if not self.taken:
            return (f"rows not redrawn: the split a redraw settles on in {space} ({self.added} "
                    f"added, {self.removed} dropped) lies only {apart} (< "
                    f"{REDRAW_MIN_SEPARATION:g}): a slice of the class's continuum, not a group "
                    f"of its own")
        return (f"rows redrawn around the flagged rows' centre in {space}: {self.added} added, "
                f"{self.removed} dropped, {int(self.flagged.sum())} flagged, the sides "
                f"{apart}")


@dataclass(frozen=True)
class RowFill:
    """The outcome of :func:`fill_rows` on one class.

    Attributes:
        flagged: The flags with the rows that joined (aligned with the class's rows).
        share: Per row, the share of its :data:`FILL_NEIGHBOURS` nearest neighbours flagged
            when it joined (``NaN`` for the rows that did not join).
        added: Rows that joined.
        rounds: Rounds run (the last one adds nothing).
    """

    flagged: np.ndarray
    share: np.ndarray
    added: int
    rounds: int

    def describe(self) -> str:
        """One clause for the class's reason."""
        return (f"{self.added} more rows joined, each with at least {FILL_MIN_FLAGGED} of its "
                f"{FILL_NEIGHBOURS} nearest neighbours in that space flagged, "
                f"{int(self.flagged.sum())} flagged")


def _shown(separation: float) -> str:
    """Two decimals rounded down (a redraw just under the cut never reads as at it), or inf."""
    if not math.isfinite(separation):
        return str(separation)
    return f"{math.floor(separation * 100) / 100:.2f}"


def whitened_principal(activations: np.ndarray, n_components: int) -> np.ndarray:
    """The rows in their top principal directions, each scaled to unit variance.

    The clustering step's PCA (:func:`acgate.core.reducers.reduce_pca`: deterministic, the
    d x d covariance's eigenvectors when there are at least as many rows as features, else a
    full SVD; a direction's sign does not change distances). Directions with no variance are
    dropped.

    Args:
        activations: ``n x d`` rows.
        n_components: Directions kept at most (capped by ``d`` and ``n - 1``).

    Returns:
        ``n x k`` whitened coordinates, ``k <= n_components`` (``k = 0`` when nothing varies).
    """
    x = np.array(activations, dtype=np.float64, copy=True)
    if len(x) < 2 or np.ptp(x, axis=0).max() == 0.0:
        return np.zeros((len(x), 0))
    reduced, _ = reduce_pca(x, n_components=n_components, random_state=0)
    spread = reduced.std(axis=0, ddof=1)
    varying = spread > 1e-9 * max(float(spread.max()), 1e-300)
    return reduced[:, varying] / spread[varying]


def redraw_rows(activations: np.ndarray, flagged: np.ndarray, *,
                n_components: int = REDRAW_COMPONENTS,
                max_share: float = 1.0) -> RowRedraw | None:
    """Redraw a poisoned class's flagged rows by two-centroid k-means started from them.

    Args:
        activations: The class's activations (``n x d``).
        flagged: The analyzer's flags over the same rows.
        n_components: Whitened principal directions to work in (see
            :data:`REDRAW_COMPONENTS`); 0 returns ``None``.
        max_share: Largest share of the class the redrawn flags may hold (the analysis's size
            threshold); a redraw that ends beyond it returns ``None``.

    Returns:
        The :class:`RowRedraw` (not ``taken`` when it adds rows and settles on sides less than
        :data:`REDRAW_MIN_SEPARATION` apart), or ``None`` when the analyzer's flags stand and
        there is nothing to report: redraw off, fewer than :data:`REDRAW_MIN_ROWS` rows flagged
        or not flagged (at the start or on any round), no variance, no row moved, a redraw
        that does not settle within :data:`REDRAW_MAX_ROUNDS` rounds, or one that ends with
        more than ``max_share`` of the class.
    """
    start = np.asarray(flagged, dtype=bool)
    if n_components <= 0 or not _both_sides(start):
        return None
    return _redraw_in(whitened_principal(activations, n_components), start, max_share)


def _redraw_in(space: np.ndarray, start: np.ndarray, max_share: float) -> RowRedraw | None:
    """:func:`redraw_rows` in the class's whitened space, already computed."""
    if space.shape[1] == 0 or not _both_sides(start):
        return None
    current = start
    for rounds in range(1, REDRAW_MAX_ROUNDS + 1):
        near, far = _distances(space, current)
        moved = near < far
        if np.array_equal(moved, current):
            break
        if not _both_sides(moved):
            return None
        current = moved
    else:
        return None  # still moving: no separate group to settle on
    if np.array_equal(current, start) or current.mean() > max_share:
        return None  # nothing to redraw, or grown past the size a poison group may have
    near, far = _distances(space, current)
    score = far / np.maximum(near + far, 1e-300)
    return RowRedraw(flagged=current, score=score, added=int((current & ~start).sum()),
                     removed=int((start & ~current).sum()), rounds=rounds,
                     n_components=space.shape[1], separation=_separation(space, current))


def fill_rows(activations: np.ndarray, flagged: np.ndarray, *,
              n_components: int = REDRAW_COMPONENTS, max_share: float = 1.0) -> RowFill | None:
    """Let the rows whose nearest neighbours are mostly flagged join a poisoned class's flags.

    In the class's whitened principal space (:func:`whitened_principal`), a row among the
    :data:`FILL_NEIGHBOURS` nearest neighbours of a flagged row joins when at least
    :data:`FILL_MIN_FLAGGED` of its own nearest neighbours are flagged; rounds repeat until
    none joins. Deterministic (no random step).

    Args:
        activations: The class's activations (``n x d``).
        flagged: The flags so far over the same rows.
        n_components: Whitened principal directions (0 returns ``None``).
        max_share: Largest share of the class the flags may hold once filled; a fill that
            grows past it returns ``None``.

    Returns:
        The :class:`RowFill`, or ``None`` when no row joins, the fill cannot speak (fill off,
        fewer than :data:`REDRAW_MIN_ROWS` rows flagged, a class of at most
        :data:`FILL_NEIGHBOURS` rows, no variance) or it grows past ``max_share``.

    Raises:
        ValueError: A class of more than :data:`FILL_MAX_CLASS_ROWS` rows (see
            :func:`redraw_judgement`, which skips the fill there).
    """
    start = np.asarray(flagged, dtype=bool)
    if len(start) > FILL_MAX_CLASS_ROWS:
        raise ValueError(f"fill_rows works in classes of at most {FILL_MAX_CLASS_ROWS} rows, "
                         f"got {len(start)}")
    if n_components <= 0 or start.sum() < REDRAW_MIN_ROWS or len(start) <= FILL_NEIGHBOURS:
        return None
    return _fill_in(whitened_principal(activations, n_components), start, max_share)


def _fill_in(space: np.ndarray, start: np.ndarray, max_share: float) -> RowFill | None:
    """:func:`fill_rows` in the class's whitened space, already computed."""
    if (space.shape[1] == 0 or start.sum() < REDRAW_MIN_ROWS
            or len(start) <= FILL_NEIGHBOURS):
        return None
    index = NearestNeighbors(n_neighbors=FILL_NEIGHBOURS + 1, algorithm="brute").fit(space)
    known: dict[int, np.ndarray] = {}

    def neighbours(rows: np.ndarray) -> np.ndarray:
        """Each row's nearest neighbours but itself (computed once per row)."""
        todo = np.array([r for r in rows.tolist() if r not in known], dtype=np.int64)
        if len(todo):
            found = index.kneighbors(space[todo], return_distance=False)
            for row, near in zip(todo.tolist(), found, strict=True):
                # itself, or (a duplicate row listed first) the farthest one, is left out
                known[row] = near[near != row][:FILL_NEIGHBOURS]
        return np.stack([known[r] for r in rows.tolist()]) if len(rows) else np.zeros(
            (0, FILL_NEIGHBOURS), dtype=np.int64)

    current = start.copy()
    share = np.full(len(start), np.nan)
    rounds = 0
    while True:
        rounds += 1
        reach = np.unique(neighbours(np.flatnonzero(current)))
        outside = reach[~current[reach]]
        counts = current[neighbours(outside)].sum(axis=1)
        joining = outside[counts >= FILL_MIN_FLAGGED]
        if not len(joining):
            break
        share[joining] = counts[counts >= FILL_MIN_FLAGGED] / FILL_NEIGHBOURS
        current[joining] = True
    added = int((current & ~start).sum())
    if added == 0 or current.mean() > max_share:
        return None
    return RowFill(flagged=current, share=share, added=added, rounds=rounds)


def _separation(space: np.ndarray, flagged: np.ndarray) -> float:
    """The sides' means apart along the line through them, in SDs (unweighted pooling)."""
    line = space[flagged].mean(axis=0) - space[~flagged].mean(axis=0)
    length = float(np.linalg.norm(line))
    if length == 0.0:
        return 0.0
    projected = space @ (line / length)
    inside, outside = projected[flagged], projected[~flagged]
    pooled = float(np.sqrt((inside.var() + outside.var()) / 2))
    gap = float(inside.mean() - outside.mean())
    return gap / pooled if pooled > 0 else float("inf")


def _both_sides(flagged: np.ndarray) -> bool:
    """At least :data:`REDRAW_MIN_ROWS` rows flagged and as many not."""
    n_flagged = int(flagged.sum())
    return min(n_flagged, len(flagged) - n_flagged) >= REDRAW_MIN_ROWS


def _distances(space: np.ndarray, flagged: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's distance to the flagged rows' centre and to the other rows' centre."""
    near = np.linalg.norm(space - space[flagged].mean(axis=0), axis=1)
    far = np.linalg.norm(space - space[~flagged].mean(axis=0), axis=1)
    return near, far


def redraw_judgement(judgement: ClassJudgement, activations: np.ndarray, *,
                     n_components: int, max_share: float) -> ClassJudgement:
    """A poisoned class's judgement with its flagged rows redrawn, then filled.

    A clean class is returned as it is. A poisoned class's flags are redrawn by
    :func:`redraw_rows` (when the redraw speaks; a redraw not taken adds its clause to the
    reason, why the rows stand), then filled by :func:`fill_rows` (in classes of at most
    :data:`FILL_MAX_CLASS_ROWS` rows; a larger class's reason says it was not filled). Where
    the redraw is taken, the per-row scores are the redraw's (a row's ``poison_score`` then says
    how much nearer the poison's centre than the clean rows' centre it is: above 0.5, flagged);
    a row that joined in the fill scores the share of its nearest neighbours flagged (0.5 or
    more). The reason
    gains a clause for each step taken. A row either step added names no suspected source (the
    analysis did not send it anywhere as poison, and it may belong to a candidate the analysis
    cleared: the ``relabel`` repair removes such a row instead of relabelling it), unless the
    analysis names one source for the whole class (no per-row sources).

    Args:
        judgement: The analyzer's judgement of the class.
        activations: The class's activations, rows aligned with ``judgement.flagged``.
        n_components: See :func:`redraw_rows` (0: neither redraw nor fill).
        max_share: See :func:`redraw_rows` (the class's size threshold).
    """
    if not judgement.is_poisoned or n_components <= 0:
        return judgement
    space = whitened_principal(activations, n_components)
    redraw = _redraw_in(space, judgement.flagged, max_share)
    flagged, scores, clauses = judgement.flagged, judgement.sample_scores, []
    if redraw is not None:
        clauses.append(redraw.describe())
        if redraw.taken:
            flagged, scores = redraw.flagged, redraw.score
    fill = None
    if len(flagged) > FILL_MAX_CLASS_ROWS:
        clauses.append(f"no neighbours fill in a class of more than {FILL_MAX_CLASS_ROWS:,} rows")
    else:
        fill = _fill_in(space, flagged, max_share)
    if fill is not None:
        clauses.append(fill.describe())
        joined = fill.flagged & ~flagged
        scores = np.array(scores, dtype=np.float64, copy=True)
        scores[joined] = fill.share[joined]
        flagged = fill.flagged
    if not clauses:
        return judgement
    reason = "; ".join([judgement.reason, *clauses])
    if flagged is judgement.flagged:
        return dataclasses.replace(judgement, reason=reason)
    sources = judgement.sample_sources
    if sources is not None:
        sources = sources.copy()
        sources[flagged & ~judgement.flagged] = NO_VALUE
    return dataclasses.replace(
        judgement, flagged=flagged, sample_scores=scores, reason=reason,
        sample_sources=sources)
