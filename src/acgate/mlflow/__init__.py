"""The one module family that talks to MLflow: tracking and the promotion gate.

Importing this package does not import :mod:`mlflow`; the functions import it when called.
See ``docs/gate.md`` for how a training script registers a model version the gate accepts
(:func:`register_model_version` does it in one call); :func:`tag_verdict` writes a scan's verdict
onto the model version trained on the scanned data.
"""

from acgate.mlflow.bounds import DEFAULT_BOUNDS, MlflowBounds, StoreUnreachableError
from acgate.mlflow.gate import OUTCOME_EXIT_CODES, GateDecision, Outcome, exit_code, promote
from acgate.mlflow.registry import SCAN_TAGS, register_model_version, tag_verdict
from acgate.mlflow.tracking import (
    TRAINING_DATA_SHA256_TAG,
    check_tracking_store,
    dataset_input,
    default_artifact_location,
    default_tracking_uri,
    log_repair,
    log_scan,
)

__all__ = [
    "DEFAULT_BOUNDS",
    "OUTCOME_EXIT_CODES",
    "SCAN_TAGS",
    "TRAINING_DATA_SHA256_TAG",
    "GateDecision",
    "MlflowBounds",
    "Outcome",
    "StoreUnreachableError",
    "check_tracking_store",
    "dataset_input",
    "default_artifact_location",
    "default_tracking_uri",
    "exit_code",
    "log_repair",
    "log_scan",
    "promote",
    "register_model_version",
    "tag_verdict",
]
