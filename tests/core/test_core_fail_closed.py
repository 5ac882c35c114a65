"""Fail closed: activations that carry nothing are an error; an unjudged class is not clean."""

from __future__ import annotations

import numpy as np
import pytest

from acgate.core import detect
from acgate.core.analyses import ANALYSES

NON_RETRAIN = [name for name in ANALYSES if name != "exre"]


def _labels(n_per_class=40, n_classes=3):
    return np.repeat(np.arange(n_classes), n_per_class)


@pytest.mark.parametrize("analysis", NON_RETRAIN)
def test_all_zero_activations_are_an_error_not_a_clean_verdict(analysis):
    labels = _labels()
    with pytest.raises(ValueError, match="carry no information.*all zero"):
        detect(np.zeros((len(labels), 16)), labels, analysis=analysis)


@pytest.mark.parametrize("analysis", NON_RETRAIN)
def test_activations_constant_per_class_are_an_error(analysis):
    labels = _labels()
    activations = np.repeat(np.eye(3, 16), 40, axis=0) * 5.0
    with pytest.raises(ValueError, match="constant per class"):
        detect(activations, labels, analysis=analysis)


def test_a_class_too_small_to_judge_makes_the_verdict_incomplete():
    rng = np.random.default_rng(0)
    labels = np.concatenate([np.repeat([0, 1], 60), [2, 2, 2]])
    activations = rng.normal(size=(len(labels), 8)) + labels[:, None]
    result = detect(activations, labels, analysis="size-silhouette")
    assert result.skipped_classes == (2,)
    assert result.poisoned_classes == ()
    assert result.verdict == "incomplete"


def test_a_fully_judged_clean_run_stays_clean():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 60)
    activations = rng.normal(size=(len(labels), 8)) + 3 * labels[:, None]
    assert detect(activations, labels, analysis="size-silhouette").verdict == "clean"
