"""Pure core: numpy + scikit-learn only. Arrays in, typed frozen results out, every step seeded.

Main entry points: :func:`detect` and the :class:`ActivationClustering` estimator; the two
halves :func:`cluster_classes` / :func:`cluster_class` and :func:`analyze` for fan-out.
"""

from acgate.core.analyses import ANALYSES, ANALYZERS, Analyzer, RetrainAndPredict, Thresholds
from acgate.core.calibration import calibrate_thresholds
from acgate.core.clustering import ClassClustering, cluster_class
from acgate.core.detect import ActivationClustering, analyze, cluster_classes, detect
from acgate.core.metrics import flag_metrics, precision_recall_f1
from acgate.core.reducers import REDUCERS
from acgate.core.result import ClassReport, DetectionResult, RunInfo

__all__ = [
    "ANALYSES",
    "ANALYZERS",
    "REDUCERS",
    "ActivationClustering",
    "Analyzer",
    "ClassClustering",
    "ClassReport",
    "DetectionResult",
    "RetrainAndPredict",
    "RunInfo",
    "Thresholds",
    "analyze",
    "calibrate_thresholds",
    "cluster_class",
    "cluster_classes",
    "detect",
    "flag_metrics",
    "precision_recall_f1",
]
