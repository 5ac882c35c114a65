"""Per-class thresholds calibrated on trusted (vouched-for clean) samples.

Without trusted data the silhouette threshold is one global number, and measured clean classes
range from 0.08 to 0.37 (natural sub-populations such as crossed sevens). With trusted samples
of a class, its clean silhouette is measured with the same reducer and clustering, and the
class's threshold becomes that value plus a margin: a poisoned class must separate better than
its own clean data does.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from acgate.core import validation
from acgate.core.analyses import Thresholds
from acgate.core.clustering import MIN_CLASS_SIZE
from acgate.core.detect import SIZE_THRESHOLD, cluster_classes
from acgate.core.reducers import REDUCERS, ReducerName

#: Added to a class's trusted clean silhouette to form its threshold.
CALIBRATION_MARGIN = 0.05


def calibrate_thresholds(
    trusted_activations: Any,
    trusted_labels: Any,
    *,
    base: Thresholds | None = None,
    reducer: ReducerName = "pca",
    n_components: int = 10,
    n_clusters: int = 2,
    margin: float = CALIBRATION_MARGIN,
    min_class_size: int = MIN_CLASS_SIZE,
    random_state: int = 0,
) -> dict[int, Thresholds]:
    """Per-class thresholds from trusted clean activations.

    Args:
        trusted_activations: Activations of trusted samples (n x d), from the same model and
            layer as the activations to be scanned.
        trusted_labels: Their labels.
        base: The global thresholds to start from (default: size 0.35, silhouette 0.10).
        reducer: Reducer used for the scan (must match).
        n_components: Dimensions used for the scan.
        n_clusters: k used for the scan.
        margin: Added to each class's clean silhouette.
        min_class_size: Classes with fewer trusted samples keep the base thresholds.
        random_state: Seed.

    Returns:
        By class: ``base`` with ``silhouette = max(base, clean + margin)``.
    """
    x = validation.check_activations(trusted_activations, name="trusted_activations")
    y = validation.check_labels(trusted_labels, x.shape[0], name="trusted_labels")
    validation.check_choice(reducer, REDUCERS, name="reducer")
    margin = validation.check_fraction(margin, name="margin")
    base = base or Thresholds(size=SIZE_THRESHOLD)
    ids = np.arange(len(y), dtype=np.int64)
    calibrated: dict[int, Thresholds] = {}
    for clustering in cluster_classes(x, y, ids, reducer=reducer, n_components=n_components,
                                      n_clusters=n_clusters, random_state=random_state,
                                      min_class_size=min_class_size):
        if clustering.skipped or clustering.silhouette is None:
            continue
        silhouette = max(base.silhouette, min(1.0, clustering.silhouette + margin))
        # Only the silhouette is calibrated; every other threshold stays the base's.
        calibrated[clustering.label] = dataclasses.replace(base, silhouette=silhouette)
    return calibrated
