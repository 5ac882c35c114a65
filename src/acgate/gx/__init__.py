"""Great Expectations suites for what enters and leaves the stage.

Importing this package does not import Great Expectations (2-3 s); validating does.
"""

from acgate.gx.suites import (
    ExpectationFailed,
    ValidationReport,
    activations_summary_frame,
    validate_activations_frame,
    validate_classes_frame,
    validate_dataset_frame,
)

__all__ = [
    "ExpectationFailed",
    "ValidationReport",
    "activations_summary_frame",
    "validate_activations_frame",
    "validate_classes_frame",
    "validate_dataset_frame",
]
