"""Spectral-signature and robust-covariance analyzers, and trusted-data calibration."""

from __future__ import annotations

import numpy as np
import pytest

from acgate.core import calibrate_thresholds, detect, precision_recall_f1


def _two_mode_class(seed: int, n: int = 300, d: int = 24, label: int = 0):
    """A clean class made of two equal modes (e.g. two writing styles merged under a label)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    x[: n // 2, :3] += 9.0
    return x, np.full(n, label)


@pytest.mark.parametrize("analysis", ["spectral", "robust"])
def test_new_analyzers_flag_the_planted_cluster_only(analysis, make_blobs):
    blobs = make_blobs(poisoned={1: 0, 3: 2}, seed=3)
    result = detect(blobs.activations, blobs.labels, analysis=analysis, random_state=0)
    assert set(result.poisoned_classes) == {1, 3}
    quality = precision_recall_f1(result.is_poison, blobs.is_poison)
    assert quality["f1"] >= 0.95, quality


@pytest.mark.parametrize("analysis", ["spectral", "robust", "size-silhouette", "exre"])
def test_clean_gaussian_and_clean_two_mode_classes_stay_clean(analysis, make_blobs,
                                                            nearest_centroid_retrain):
    blobs = make_blobs(seed=5)
    two_mode, two_mode_labels = _two_mode_class(seed=6, label=int(blobs.labels.max()) + 1)
    x = np.vstack([blobs.activations, two_mode + 30.0])
    y = np.concatenate([blobs.labels, two_mode_labels])
    kwargs = {}
    if analysis == "exre":
        kwargs["retrain_and_predict"] = nearest_centroid_retrain(x, y)
    result = detect(x, y, analysis=analysis, random_state=0, **kwargs)
    assert result.poisoned_classes == ()
    assert not result.is_poison.any()


def test_spectral_reports_its_separation_score(make_blobs):
    blobs = make_blobs(poisoned={2: 0}, seed=4)
    result = detect(blobs.activations, blobs.labels, analysis="spectral")
    poisoned = result.class_report(2)
    clean = result.class_report(0)
    assert poisoned.scores["spectral_separation"] > clean.scores["spectral_separation"]
    assert 0.1 <= poisoned.size_ratio <= 0.2


def test_calibration_on_trusted_data_sets_per_class_thresholds_in_the_result():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 32))
    y = np.repeat([0, 1, 2], 200)
    # Class 1 has a natural 30% sub-population: clean, but it splits well.
    x[(y == 1) & (rng.random(600) < 0.3), :3] += 4.0
    trusted = calibrate_thresholds(x[::2], y[::2])
    assert set(trusted) == {0, 1, 2}
    assert trusted[1].silhouette > trusted[0].silhouette >= 0.10
    result = detect(x, y, analysis="size-silhouette", class_thresholds=trusted)
    frame = result.classes_frame()
    assert "threshold_silhouette" in frame
    by_class = dict(zip(frame["label"], frame["threshold_silhouette"], strict=True))
    assert by_class[1] == pytest.approx(trusted[1].silhouette)
    assert result.class_report(1).thresholds["silhouette"] == pytest.approx(trusted[1].silhouette)


def test_calibration_keeps_every_other_base_threshold():
    from acgate.core import Thresholds

    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 8))
    y = np.repeat([0, 1, 2], 100)
    base = Thresholds(size=0.3, exre=0.8, source_share=0.6, nested_source_share=0.9,
                      confusion=0.1)
    for thresholds in calibrate_thresholds(x, y, base=base).values():
        assert (thresholds.size, thresholds.exre, thresholds.source_share,
                thresholds.nested_source_share, thresholds.confusion) == (0.3, 0.8, 0.6, 0.9,
                                                                          0.1)


def test_calibration_rejects_bad_trusted_input():
    with pytest.raises(ValueError, match="trusted_activations contains NaN"):
        calibrate_thresholds(np.full((20, 3), np.nan), np.zeros(20, dtype=int))
    with pytest.raises(ValueError, match="trusted_labels has length 5"):
        calibrate_thresholds(np.zeros((20, 3)), np.zeros(5, dtype=int))
