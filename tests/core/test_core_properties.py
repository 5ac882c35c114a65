"""Property tests: any small input gives a DetectionResult or a ValueError/TypeError."""

from __future__ import annotations

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from acgate.core import DetectionResult, detect

PROFILE = settings(max_examples=30, deadline=None, derandomize=True)

floats = st.floats(allow_nan=True, allow_infinity=True, width=64)
finite = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, allow_infinity=False)


def check(result_or_call):
    try:
        result = result_or_call()
    except (ValueError, TypeError):
        return None
    assert isinstance(result, DetectionResult)
    return result


@PROFILE
@given(
    activations=hnp.arrays(np.float64, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0,
                                                        max_side=30), elements=floats),
    labels=hnp.arrays(st.sampled_from([np.int64, np.float64, np.int8]),
                      hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=30),
                      elements=st.integers(-2, 4)),
    analysis=st.sampled_from(["auto", "size", "silhouette", "size-silhouette", "distance",
                              "exre", "bogus"]),
    reducer=st.sampled_from(["pca", "ica", "none", "bogus"]),
)
def test_any_shapes_give_a_result_or_a_clean_error(activations, labels, analysis, reducer):
    check(lambda: detect(activations, labels, analysis=analysis, reducer=reducer))


@PROFILE
@given(
    data=st.data(),
    n=st.integers(1, 60),
    d=st.integers(1, 6),
    n_components=st.integers(1, 12),
)
def test_valid_inputs_give_consistent_results(data, n, d, n_components):
    x = data.draw(hnp.arrays(np.float64, (n, d), elements=finite))
    y = data.draw(hnp.arrays(np.int64, n, elements=st.integers(0, 3)))
    assume(len(set(y.tolist())) >= 2)  # one class alone is refused (nothing to compare with)
    assume(np.unique(y, return_counts=True)[1].min() >= 2)  # a one-sample class is refused
    # Activations identical within every class carry no information and are refused.
    assume(any(np.ptp(x[y == c], axis=0).any() for c in np.unique(y)))
    result = check(lambda: detect(x, y, n_components=n_components, analysis="size-silhouette"))
    assert result is not None  # valid input must not be refused
    assert result.n_samples == n
    assert set(result.flagged_indices) <= set(range(n))
    assert ((result.poison_score >= 0) & (result.poison_score <= 1)).all()
    assert [c.label for c in result.classes] == sorted(set(y.tolist()))
    for report in result.classes:
        assert report.verdict in ("clean", "poisoned", "skipped")
        if report.verdict == "skipped":
            assert report.reason
    # Skipped or clean classes flag nothing.
    for report in result.classes:
        if report.verdict != "poisoned":
            assert not result.is_poison[result.segments == report.label].any()
