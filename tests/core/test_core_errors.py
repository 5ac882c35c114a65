"""Every bad input to detect() gets its own error, quoting the offending value."""

from __future__ import annotations

import numpy as np
import pytest

from acgate.core import detect

RNG = np.random.default_rng(0)
X = RNG.normal(size=(40, 5))
Y = np.repeat([0, 1], 20)


def with_value(row: int, col: int, value: float) -> np.ndarray:
    x = X.copy()
    x[row, col] = value
    return x


@pytest.mark.parametrize(
    ("activations", "labels", "error", "match"),
    [
        pytest.param(with_value(3, 1, np.nan), Y, ValueError, r"NaN or inf in 1 row.*\[3\]",
                     id="nan"),
        pytest.param(with_value(7, 0, np.inf), Y, ValueError, r"NaN or inf in 1 row.*\[7\]",
                     id="inf"),
        pytest.param(with_value(9, 2, -np.inf), Y, ValueError, r"NaN or inf", id="-inf"),
        pytest.param(X[:, 0], Y, ValueError, r"must be 2-D .*shape \(40,\)", id="rank-1"),
        pytest.param(X.reshape(40, 5, 1), Y, ValueError, r"must be 2-D .*\(40, 5, 1\)",
                     id="rank-3"),
        pytest.param(X, Y[:-1], ValueError, r"labels has length 39 but activations have 40 rows",
                     id="length-mismatch"),
        pytest.param(X, Y.reshape(20, 2), ValueError, r"labels must be 1-D", id="labels-2d"),
        pytest.param(X, np.array(["a", "b"] * 20), TypeError, r"labels must be integers.*'a'",
                     id="string-labels"),
        pytest.param(X, np.r_[Y[:-1].astype(float), 1.5], TypeError,
                     r"non-integral values \[1\.5\]", id="fractional-labels"),
        pytest.param(X, np.r_[Y[:-1], -2], ValueError, r"labels must be >= 0.*\[-2\]",
                     id="negative-labels"),
        pytest.param(X, np.r_[Y[:-1].astype(float), np.nan], ValueError,
                     r"labels contains NaN", id="nan-labels"),
        pytest.param(np.empty((0, 5)), np.empty(0, dtype=int), ValueError,
                     r"activations is empty: shape \(0, 5\)", id="empty"),
        pytest.param(np.empty((40, 0)), Y, ValueError, r"has no features", id="no-features"),
        pytest.param([], [], ValueError, r"must be 2-D", id="empty-list"),
        pytest.param(np.array([["a", "b"]] * 40), Y, TypeError, r"must be numeric", id="text"),
        pytest.param([[1.0, 2.0], [3.0]], [0, 1], ValueError, r"rectangular", id="ragged"),
    ],
)
def test_bad_arrays(activations, labels, error, match):
    with pytest.raises(error, match=match):
        detect(activations, labels)


def test_integral_float_labels_are_accepted():
    result = detect(X, Y.astype(float))
    assert result.labels.dtype == np.int64
    np.testing.assert_array_equal(result.labels, Y)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"reducer": "tsne"}, ValueError, r"reducer must be one of \['pca', 'ica', 'none'\]; "
                                          r"got 'tsne'"),
        ({"analysis": "smaller"}, ValueError, r"analysis must be one of .*got 'smaller'"),
        ({"analysis": "exre"}, ValueError, r"analysis='exre' needs retrain_and_predict"),
        ({"segment_by": "cluster"}, ValueError, r"segment_by must be one of"),
        ({"segment_by": "prediction"}, ValueError, r"needs predictions"),
        ({"n_clusters": 1}, ValueError, r"n_clusters must be >= 2; got 1"),
        ({"n_components": 0}, ValueError, r"n_components must be >= 1"),
        ({"n_components": 2.5}, TypeError, r"n_components must be an integer"),
        ({"size_threshold": 1.5}, ValueError, r"size_threshold must be in \[0.0, 1.0\]"),
        ({"silhouette_threshold": "high"}, TypeError, r"silhouette_threshold must be a number"),
        ({"random_state": None}, TypeError, r"random_state must be an integer seed"),
        ({"random_state": -1}, ValueError, r"random_state must be >= 0"),
        ({"retrain_and_predict": "model.pt"}, TypeError, r"retrain_and_predict must be callable"),
        ({"sample_ids": np.zeros(40, dtype=int)}, ValueError, r"sample_ids must be unique"),
        ({"sample_ids": np.arange(39)}, ValueError, r"sample_ids has length 39"),
    ],
)
def test_bad_parameters(kwargs, error, match):
    with pytest.raises(error, match=match):
        detect(X, Y, **kwargs)
