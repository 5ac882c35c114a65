"""The incremental judge: a new partition against a baseline's reference (issue 22)."""

from __future__ import annotations

import numpy as np
import pytest

from acgate.core.incremental import (
    FOREIGN_SHARE,
    MIN_FOREIGN_ROWS,
    build_reference,
    judge_partition,
    reference_rows,
)

CENTRES = np.array([[0.0] * 8, [10.0] + [0.0] * 7, [0.0, 10.0] + [0.0] * 6])


def blobs(per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(CENTRES)), per_class)
    return CENTRES[labels] + rng.normal(size=(len(labels), 8)), labels


@pytest.fixture(scope="module")
def reference():
    activations, labels = blobs(300, seed=0)
    return build_reference(activations, labels)


def test_a_clean_partition_passes(reference):
    activations, labels = blobs(50, seed=1)
    result = judge_partition(reference, activations, labels, predictions=labels)
    assert result.verdict == "clean"
    assert not result.is_poison.any()
    assert result.info.params["analysis"] == "incremental"
    assert result.info.extra["shifted"] is False


def test_rows_of_another_class_under_a_label_are_flagged_with_their_source(reference):
    activations, labels = blobs(50, seed=2)
    planted, _ = blobs(10, seed=3)
    planted = planted[10:20]  # ten rows of class 1, labelled 0
    x = np.vstack([activations, planted])
    y = np.concatenate([labels, np.zeros(10, int)])
    predictions = np.concatenate([labels, np.ones(10, int)])
    result = judge_partition(reference, x, y, predictions=predictions,
                             sample_ids=np.arange(1000, 1000 + len(y)))
    assert result.poisoned_classes == (0,)
    assert set(result.flagged_indices) == set(range(1150, 1160))
    assert set(result.suspected_source[result.is_poison]) == {1}
    report = result.class_report(0)
    assert report.suspected_source == 1
    assert "10 of 60 new rows" in report.reason


def test_in_a_poisoned_class_rows_between_classes_predicted_elsewhere_are_flagged(reference):
    """A blended trigger leaves planted rows between classes (mixed neighbours): the baseline's
    proxy, which never saw the trigger, still predicts their source; a clean row of the class
    that the proxy merely gets wrong, among its own class's rows, stays unflagged."""
    activations, labels = blobs(50, seed=2)
    planted, _ = blobs(10, seed=3)
    pure = planted[10:20]  # ten rows of class 1 labelled 0: the class is judged poisoned
    between = 0.3 * CENTRES[1] + 0.7 * CENTRES[2] + np.random.default_rng(4).normal(
        scale=0.3, size=(4, 8))  # nearer class 2's rows, but predicted as class 1
    x = np.vstack([activations, pure, between])
    y = np.concatenate([labels, np.zeros(14, int)])
    predictions = np.concatenate([labels, np.ones(10, int), np.ones(4, int)])
    predictions[0] = 1  # a clean class-0 row the proxy gets wrong (its neighbours are class 0)
    result = judge_partition(reference, x, y, predictions=predictions)
    assert result.poisoned_classes == (0,)
    assert set(np.flatnonzero(result.is_poison)) == set(range(150, 164))
    assert set(result.suspected_source[160:164]) == {1}  # the prediction, not the neighbours
    assert "flagged: the 14 foreign rows and those" in result.class_report(0).reason


def test_a_foreign_row_must_be_predicted_as_the_class_it_looks_like(reference):
    activations, labels = blobs(50, seed=2)
    planted, _ = blobs(10, seed=3)
    x = np.vstack([activations, planted[10:20]])
    y = np.concatenate([labels, np.zeros(10, int)])
    # The proxy still predicts the label: the rows are not foreign (a trigger it learned).
    result = judge_partition(reference, x, y, predictions=y)
    assert result.verdict == "clean"


def test_a_few_foreign_rows_below_the_cuts_are_not_poison(reference):
    activations, labels = blobs(100, seed=4)
    planted, _ = blobs(10, seed=5)
    n = MIN_FOREIGN_ROWS - 1
    x = np.vstack([activations, planted[10:10 + n]])
    y = np.concatenate([labels, np.zeros(n, int)])
    result = judge_partition(reference, x, y)
    assert result.verdict == "clean"
    assert result.class_report(0).scores["foreign_rows"] == n
    assert result.class_report(0).thresholds["foreign_share"] == FOREIGN_SHARE


def test_a_partition_far_from_the_baseline_is_shifted(reference):
    activations, labels = blobs(50, seed=6)
    result = judge_partition(reference, activations + 40.0, labels)
    assert result.info.extra["shifted"] is True
    assert "farther from the baseline" in result.info.extra["shift_reason"]


def test_a_class_the_baseline_never_saw_is_skipped(reference):
    activations, labels = blobs(20, seed=7)
    labels = np.where(labels == 2, 5, labels)
    result = judge_partition(reference, activations, labels)
    assert result.class_report(5).verdict == "skipped"
    assert result.verdict == "incomplete"


def test_flagged_baseline_rows_stay_out_of_the_reference():
    activations, labels = blobs(300, seed=0)
    keep = np.ones(len(labels), bool)
    keep[labels == 2] = False
    reference = build_reference(activations, labels, keep=keep)
    assert set(np.unique(reference.labels)) == {0, 1}


def test_the_reference_is_a_bounded_seeded_sample():
    activations, labels = blobs(300, seed=0)
    a = build_reference(activations, labels, rows_per_class=100, random_state=3)
    b = build_reference(activations, labels, rows_per_class=100, random_state=3)
    assert len(a.labels) == 300
    np.testing.assert_array_equal(a.activations, b.activations)


def test_the_reference_rows_alone_give_the_same_reference():
    """What a published baseline keeps (the sampled kept rows) rebuilds the very reference."""
    activations, labels = blobs(300, seed=0)
    predictions = labels.copy()
    keep = np.ones(len(labels), bool)
    keep[::7] = False
    whole = build_reference(activations, labels, keep=keep, predictions=predictions,
                            rows_per_class=100, random_state=5)
    rows = reference_rows(labels, keep=keep, rows_per_class=100, random_state=5)
    assert len(rows) == 300 and keep[rows].all()
    packed = build_reference(activations[rows], labels[rows], predictions=predictions[rows],
                             rows_per_class=100, random_state=5)
    np.testing.assert_array_equal(whole.activations, packed.activations)
    np.testing.assert_array_equal(whole.labels, packed.labels)
    assert (whole.far, whole.natural) == (packed.far, packed.natural)


def test_activations_of_another_model_are_refused(reference):
    with pytest.raises(ValueError, match="9 activation dimensions"):
        judge_partition(reference, np.zeros((5, 9)), np.zeros(5, int))


def test_a_baseline_too_small_is_refused():
    with pytest.raises(ValueError, match="kept rows"):
        build_reference(np.zeros((5, 4)), np.arange(5) % 2)


def test_classes_that_overlap_by_nature_are_judged_against_their_own_overlap():
    rng = np.random.default_rng(8)

    def overlapping(per_class):
        labels = np.repeat([0, 1], per_class)
        centres = np.array([[0.0] * 8, [2.0] + [0.0] * 7])
        return centres[labels] + rng.normal(size=(len(labels), 8)), labels

    x, y = overlapping(1000)
    reference = build_reference(x, y)
    assert reference.natural[0] > FOREIGN_SHARE  # part of each class sits in the other
    new_x, new_y = overlapping(200)
    result = judge_partition(reference, new_x, new_y)
    assert result.class_report(0).scores["foreign_share"] >= FOREIGN_SHARE
    assert result.verdict == "clean"
    planted = rng.normal(size=(60, 8)) + np.array([2.0] + [0.0] * 7)
    result = judge_partition(reference, np.vstack([new_x, planted]),
                             np.concatenate([new_y, np.zeros(60, int)]))
    assert result.poisoned_classes == (0,)
