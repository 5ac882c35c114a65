"""The one module family that talks to MLflow: tracking and the promotion gate.

Importing this package does not import :mod:`mlflow`; the functions import it when called.
"""

from acgate.mlflow.gate import GateDecision, promote
from acgate.mlflow.tracking import (
    default_artifact_location,
    default_tracking_uri,
    log_repair,
    log_scan,
)

__all__ = [
    "GateDecision",
    "default_artifact_location",
    "default_tracking_uri",
    "log_repair",
    "log_scan",
    "promote",
]
