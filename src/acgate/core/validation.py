"""Input validation for the core: one place, messages that quote the offending value.

Every public core function validates through these helpers, so a user gets the same wording
whichever entry point they used. Errors are ``ValueError`` (bad values, shapes, lengths) or
``TypeError`` (wrong kinds of values); nothing here asserts.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

#: Largest label accepted. A proxy model has one output per class up to the largest label, so an
#: absurd label (2,000,000,000) would size a terabyte output layer; real label sets are far
#: smaller (ImageNet-21k: 21,841 classes).
MAX_LABEL = 100_000


def _describe(values: Any, limit: int = 5) -> str:
    flat = np.asarray(values).ravel()
    shown = ", ".join(repr(v.item() if hasattr(v, "item") else v) for v in flat[:limit])
    return f"[{shown}{', ...' if flat.size > limit else ''}]"


def check_activations(activations: Any, *, name: str = "activations") -> np.ndarray:
    """Return ``activations`` as a finite 2-D float array (n_samples x n_features).

    Raises:
        TypeError: When the values are not numeric.
        ValueError: When the array is empty, not 2-D, or holds NaN/inf.
    """
    try:
        array = np.asarray(activations)
    except ValueError as error:  # ragged nested lists
        raise ValueError(f"{name} must be a rectangular 2-D array; got ragged rows ({error})")
    if array.dtype == object:
        raise ValueError(f"{name} must be a rectangular 2-D numeric array; got ragged or "
                         f"object values of shape {array.shape}")
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise TypeError(f"{name} must be numeric; got dtype {array.dtype}")
    if array.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features); got shape {array.shape}")
    if array.shape[0] == 0:
        raise ValueError(f"{name} is empty: shape {array.shape}")
    if array.shape[1] == 0:
        raise ValueError(f"{name} has no features: shape {array.shape}")
    if not np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float64)
    finite = np.isfinite(array)
    if not finite.all():
        bad_rows = np.flatnonzero(~finite.all(axis=1))
        raise ValueError(
            f"{name} contains NaN or inf in {bad_rows.size} row(s), first rows "
            f"{_describe(bad_rows)}"
        )
    return array


def check_labels(labels: Any, n_samples: int, *, name: str = "labels") -> np.ndarray:
    """Return ``labels`` as a 1-D int64 array of length ``n_samples`` with values >= 0.

    Float labels are accepted only when every value is integral (e.g. ``3.0``).

    Raises:
        TypeError: When labels are not integers (strings, fractional floats, objects).
        ValueError: When the length differs from ``n_samples``, or a label is negative.
    """
    array = np.asarray(labels)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D; got shape {array.shape}")
    if len(array) != n_samples:
        raise ValueError(
            f"{name} has length {len(array)} but activations have {n_samples} rows"
        )
    if array.dtype == bool or not np.issubdtype(array.dtype, np.number):
        raise TypeError(f"{name} must be integers; got dtype {array.dtype} "
                        f"(first values {_describe(array)})")
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ValueError(f"{name} contains NaN or inf")
        fractional = array != np.round(array)
        if fractional.any():
            raise TypeError(f"{name} must be integers; got non-integral values "
                            f"{_describe(array[fractional])}")
    array = array.astype(np.int64)
    negative = array < 0
    if negative.any():
        raise ValueError(f"{name} must be >= 0; got negative values {_describe(array[negative])}")
    too_large = array > MAX_LABEL
    if too_large.any() and name != "sample_ids":
        raise ValueError(f"{name} must be <= {MAX_LABEL} (one proxy output per class); got "
                         f"{_describe(array[too_large])} at rows "
                         f"{_describe(np.flatnonzero(too_large))}")
    return array


def check_class_count(
    labels: np.ndarray, *, name: str = "labels", minimum: int = 2, min_class_size: int = 2
) -> None:
    """Refuse inputs with fewer than ``minimum`` distinct classes, or a class of one sample.

    Activation Clustering judges each class against the others (the retrain of exclusionary
    reclassification classifies a left-out cluster into the other classes), so one class alone
    cannot be analysed. A class with a single sample cannot be split or judged at all and is
    almost always a labelling mistake, so it is refused rather than silently passed; classes
    with a few more samples than that are clustered or skipped with the reason recorded.

    Raises:
        ValueError: Naming ``name``, the classes present or the undersized classes and their
            rows.
    """
    classes, counts = np.unique(labels, return_counts=True)
    if len(classes) < minimum:
        raise ValueError(f"{name} holds {len(classes)} distinct class(es) "
                         f"{classes.tolist()}; at least {minimum} are needed")
    small = classes[counts < min_class_size]
    if len(small):
        rows = np.flatnonzero(np.isin(labels, small))
        raise ValueError(f"{name}: class(es) {_describe(small)} have fewer than "
                         f"{min_class_size} samples (rows {_describe(rows)}); every class needs "
                         f"at least {min_class_size} to be judged: drop or relabel those rows")


def check_informative(activations: np.ndarray, segments: np.ndarray, *,
                      name: str = "activations") -> None:
    """Refuse activations that carry no information: identical vectors within every class.

    All-zero activations (a dead layer, an untrained model, the wrong layer) or vectors that are
    constant per class would leave every class unjudged; a verdict drawn from them would be
    empty, so they are an error rather than a "clean" result.

    Raises:
        ValueError: Naming ``name``, saying whether the values are all zero or constant per
            class.
    """
    for label in np.unique(segments):
        rows = activations[segments == label]
        if len(rows) > 1 and np.ptp(rows, axis=0).any():
            return
    what = ("all zero" if not activations.any() else
            "identical within every class (constant per class)")
    raise ValueError(
        f"{name} carry no information: the {activations.shape[0]} x {activations.shape[1]} "
        f"values are {what}, so no class can be judged. The model or layer is dead, untrained "
        "or the wrong one: extract from another layer, or train the model")


def check_sample_ids(sample_ids: Any, n_samples: int) -> np.ndarray:
    """Return unique int64 sample ids (default: ``0..n_samples-1``)."""
    if sample_ids is None:
        return np.arange(n_samples, dtype=np.int64)
    array = check_labels(sample_ids, n_samples, name="sample_ids")
    if len(np.unique(array)) != len(array):
        values, counts = np.unique(array, return_counts=True)
        raise ValueError(f"sample_ids must be unique; duplicated: {_describe(values[counts > 1])}")
    return array


def check_choice(value: Any, allowed: Iterable[str], *, name: str) -> str:
    """Check that ``value`` is one of ``allowed`` (the registry of a family of choices)."""
    allowed = tuple(allowed)
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}; got {value!r}")
    return value


def check_fraction(value: Any, *, name: str, low: float = 0.0, high: float = 1.0) -> float:
    """Check a float threshold in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a number; got {type(value).__name__} {value!r}")
    value = float(value)
    if not np.isfinite(value) or not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}]; got {value!r}")
    return value


def check_positive_int(value: Any, *, name: str, minimum: int = 1) -> int:
    """Check an integer parameter ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer; got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}; got {value!r}")
    return int(value)


def check_random_state(value: Any) -> int:
    """Check a seed: a non-negative integer (``None`` is refused: every step is seeded)."""
    if value is None:
        raise TypeError("random_state must be an integer seed; None is not allowed "
                        "(acgate seeds every random step)")
    return check_positive_int(value, name="random_state", minimum=0)
