"""The analysis one class at a time (issue 22): the flags ``analyze`` gives, never every row."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from acgate.core import analyze, cluster_classes
from acgate.core.by_class import analyze_by_class, by_class_analyses, principal_coordinates
from acgate.core.reducers import reduce_pca


@pytest.fixture(scope="module")
def planted():
    """Four classes, 10% of class 1 shifted along two units, and a class too small to judge."""
    rng = np.random.default_rng(1)
    n, width = 12_000, 24
    labels = rng.integers(0, 4, n)
    labels[:5] = 4  # skipped: below the smallest class judged
    x = rng.standard_normal((n, width)) + rng.normal(0, 3, (5, width))[labels]
    poison = (rng.random(n) < 0.1) & (labels == 1)
    x[poison, :2] += 3.5  # near enough that the redraw moves rows (4 added, 2 dropped)
    x = x.astype(np.float32)
    ids = np.arange(100, 100 + n)
    clusterings = cluster_classes(x, labels, ids, random_state=0)
    return x, labels, ids, poison, clusterings


def _streamed(x, size=1000):
    """``class_rows`` from two streamed passes of ``size``-row batches."""
    def rows(clustering):
        part = x[clustering.positions]
        return principal_coordinates(
            lambda: (part[i:i + size] for i in range(0, len(part), size)), 20)
    return rows


def _same(one, other):
    np.testing.assert_array_equal(one.is_poison, other.is_poison)
    np.testing.assert_array_equal(one.clusters, other.clusters)
    np.testing.assert_array_equal(one.suspected_source, other.suspected_source)
    assert [c.reason for c in one.classes] == [c.reason for c in other.classes]
    assert [c.verdict for c in one.classes] == [c.verdict for c in other.classes]


def test_by_class_gives_the_flags_of_analyze_and_reads_only_poisoned_classes(planted):
    x, labels, ids, poison, clusterings = planted
    whole = analyze(x, labels, clusterings, sample_ids=ids, segments=labels, random_state=0)
    asked = []

    def class_rows(clustering):
        asked.append(clustering.label)
        return x[clustering.positions]

    by_class = analyze_by_class(iter(clusterings), labels, sample_ids=ids, segments=labels,
                                class_rows=class_rows, random_state=0)
    _same(whole, by_class)
    np.testing.assert_array_equal(whole.poison_score, by_class.poison_score)
    assert whole.info.params == by_class.info.params
    assert whole.info.warnings == by_class.info.warnings  # notes, then skipped classes
    assert whole.info.params["analysis"] == "size-silhouette"
    assert asked == [1]  # the one poisoned class; the others are judged from their clustering
    assert [c.verdict for c in by_class.classes] == ["clean", "poisoned", "clean", "clean",
                                                     "skipped"]
    f1 = 2 * (by_class.is_poison & poison).sum() / (by_class.is_poison.sum() + poison.sum())
    assert f1 > 0.9
    assert "redrawn" in by_class.classes[1].reason


@pytest.mark.parametrize("analysis", by_class_analyses())
def test_streamed_principal_coordinates_redraw_as_the_rows_do(planted, analysis):
    x, labels, ids, _, clusterings = planted
    whole = analyze(x, labels, clusterings, sample_ids=ids, segments=labels, random_state=0,
                    analysis=analysis)
    streamed = analyze_by_class(clusterings, labels, sample_ids=ids, segments=labels,
                                class_rows=_streamed(x), random_state=0, analysis=analysis)
    _same(whole, streamed)
    np.testing.assert_allclose(whole.poison_score, streamed.poison_score, atol=1e-9)


def test_principal_coordinates_are_the_pca_projection_up_to_signs():
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((5000, 16)) * np.linspace(3, 0.5, 16) + 40).astype(np.float32)
    coordinates = principal_coordinates(lambda: (x[i:i + 700] for i in range(0, 5000, 700)), 6)
    expected, _ = reduce_pca(x.astype(np.float64), n_components=6, random_state=0)
    signs = np.sign((coordinates * expected).sum(axis=0))
    np.testing.assert_allclose(coordinates * signs, expected, atol=1e-6)
    constant = np.ones((50, 4))
    assert not principal_coordinates(lambda: [constant], 3).any()  # nothing varies


def test_principal_coordinates_refuse_passes_that_disagree():
    rows = np.arange(30.0).reshape(10, 3) ** 1.5
    for second in ([rows[:9]], [rows, rows[:1]]):  # a row short, a row more
        passes = iter([[rows], second])
        with pytest.raises(ValueError, match="second pass"):
            principal_coordinates(lambda passes=passes: next(passes), 2)
    with pytest.raises(ValueError, match=r"width 2 among batches of width 3"):
        passes = iter([[rows], [rows[:, :2]]])
        principal_coordinates(lambda: next(passes), 2)
    with pytest.raises(ValueError, match=r"m x d, got shape \(3,\)"):
        principal_coordinates(lambda: [rows[0]], 2)
    empty_first = principal_coordinates(lambda: [rows[:0], rows[:5], rows[:0], rows[5:]], 2)
    np.testing.assert_allclose(empty_first, principal_coordinates(lambda: [rows], 2))
    with pytest.raises(ValueError, match="at least 2 rows"):
        principal_coordinates(lambda: [np.ones((1, 3))], 2)
    with pytest.raises(ValueError, match="width"):
        principal_coordinates(lambda: [np.ones((4, 3)), np.ones((4, 2))], 2)


def test_only_analyses_judged_from_the_clustering_run_by_class(planted):
    x, labels, ids, _, clusterings = planted
    assert set(by_class_analyses()) == {"size-silhouette", "size", "silhouette", "robust"}
    for analysis in ("exre", "distance", "spectral"):
        with pytest.raises(ValueError, match="one class at a time|needs") as caught:
            analyze_by_class(clusterings, labels, sample_ids=ids, segments=labels,
                             class_rows=_streamed(x), analysis=analysis, random_state=0)
        assert analysis in str(caught.value) or "retrain" in str(caught.value)


def test_clusterings_must_match_the_segments_in_order(planted):
    x, labels, ids, _, clusterings = planted
    kwargs = {"sample_ids": ids, "segments": labels, "class_rows": _streamed(x),
              "random_state": 0}
    with pytest.raises(ValueError, match="ascending label order"):
        analyze_by_class(clusterings[::-1], labels, **kwargs)
    with pytest.raises(ValueError, match="no clustering of segments \\[2\\]"):
        analyze_by_class([c for c in clusterings if c.label != 2], labels, **kwargs)
    wrong = dataclasses.replace(clusterings[0], positions=clusterings[1].positions)
    with pytest.raises(ValueError, match="not the .* rows of segment 0"):
        analyze_by_class([wrong, *clusterings[1:]], labels, **kwargs)
    with pytest.raises(ValueError, match="random_state"):
        analyze_by_class(clusterings, labels, sample_ids=ids, segments=labels,
                         class_rows=_streamed(x))
