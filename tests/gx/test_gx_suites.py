import json

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_digits

from acgate.core.result import ClassReport, DetectionResult
from acgate.gx.suites import (
    ExpectationFailed,
    activations_expectations,
    activations_summary_frame,
    dataset_expectations,
    validate_activations_frame,
    validate_classes_frame,
    validate_dataset_frame,
)

DIGITS = load_digits()
CLASSES = list(range(10))


@pytest.fixture
def digits_frame():
    """The digits dataset as a loader would describe it, ground-truth columns included."""
    n = len(DIGITS.target)
    return pd.DataFrame({
        "index": np.arange(n),
        "label": DIGITS.target.astype(np.int64),
        "image_shape": ["1x8x8"] * n,
        "is_poison": [False] * (n - 1) + [None],  # ground truth: never validated
        "source_label": pd.array([pd.NA] * n, dtype="Int64"),
    })


def test_clean_dataset_passes(digits_frame):
    report = validate_dataset_frame(digits_frame, declared_classes=CLASSES)
    assert report.success
    assert report.n_rows == 1797
    assert report.failures == ()
    assert {r["column"] for r in report.results} == {"label", "image_shape"}
    json.dumps(report.to_dict())


def test_null_labels_are_stopped(digits_frame):
    frame = digits_frame.astype({"label": "float64"})
    frame.loc[[3, 17], "label"] = np.nan
    with pytest.raises(ExpectationFailed) as info:
        validate_dataset_frame(frame, declared_classes=CLASSES)
    message = str(info.value)
    assert message.startswith("dataset validation failed: expect_column_values_to_not_be_null "
                              "on column 'label': 2 of 1797 values are null at rows [3, 17]")
    # Float labels are mapped to classes by the reader (issue 20): only the nulls are wrong.
    assert "expect_column_values_to_be_in_type_list" not in message
    assert isinstance(info.value, ValueError)
    assert not info.value.report.success


def test_mixed_image_shapes_are_stopped(digits_frame):
    frame = digits_frame.copy()
    frame.loc[5, "image_shape"] = "1x9x9"
    with pytest.raises(ExpectationFailed, match=(
        r"expect_column_unique_value_count_to_be_between on column 'image_shape': "
        r"observed 2 \(values: \['1x8x8', '1x9x9'\]\)"
    )):
        validate_dataset_frame(frame, declared_classes=CLASSES)


def test_undecodable_image_is_stopped(digits_frame):
    frame = digits_frame.copy()
    frame.loc[42, "image_shape"] = None
    with pytest.raises(ExpectationFailed, match=(
        r"expect_column_values_to_not_be_null on column 'image_shape': "
        r"1 of 1797 values are null at rows \[42\]"
    )):
        validate_dataset_frame(frame)


def test_string_and_fractional_labels_outside_the_declared_classes_are_stopped(digits_frame):
    # Strings and floats are label types (the reader maps them to classes, issue 20), but not
    # among declared integer classes.
    frame = digits_frame.astype({"label": object})
    frame.loc[7, "label"] = "seven"
    frame.loc[8, "label"] = 1.5
    with pytest.raises(ExpectationFailed, match=(
        r"expect_column_values_to_be_in_set on column 'label': 2 of 1797 values "
        r"unexpected, e.g. \['seven', 1.5\] at rows \[7, 8\]"
    )):
        validate_dataset_frame(frame, declared_classes=CLASSES)


def test_undeclared_label_is_stopped(digits_frame):
    frame = digits_frame.copy()
    frame.loc[0, "label"] = 11
    with pytest.raises(ExpectationFailed, match=(
        r"expect_column_values_to_be_in_set on column 'label': 1 of 1797 values unexpected, "
        r"e.g. \[11\] at rows \[0\]"
    )):
        validate_dataset_frame(frame, declared_classes=CLASSES)
    # Without declared classes any integer label is accepted.
    assert validate_dataset_frame(frame).success


def test_missing_label_column_names_the_column(digits_frame):
    frame = digits_frame.rename(columns={"label": "target"})
    with pytest.raises(ExpectationFailed) as info:
        validate_dataset_frame(frame)
    assert str(info.value).startswith(
        "dataset validation failed: expect_column_to_exist on column 'label': column 'label' "
        "is missing"
    )
    assert "more" not in str(info.value)  # the follow-on failures on 'label' are not repeated


def test_the_suite_checks_the_users_columns(digits_frame):
    from acgate.io.datasets import Columns

    columns = Columns(label="digit", image="pixels", id="uid")
    n = len(digits_frame)
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                      "nine"], dtype=object)
    frame = pd.DataFrame({"digit": pd.Series(names[DIGITS.target], dtype=object),
                          "pixels_shape": ["1x8x8"] * n,
                          "uid": pd.Series([f"r{i}" for i in range(n)], dtype=object)})
    report = validate_dataset_frame(frame, columns=columns)
    assert report.success  # string labels are valid labels
    assert {r["column"] for r in report.results} == {"digit", "pixels_shape", "uid"}
    frame.loc[5, "uid"] = "r4"
    with pytest.raises(ExpectationFailed, match=r"expect_column_values_to_be_unique on column "
                                                r"'uid': 2 of 1797 values unexpected, e\.g\. "
                                                r"\['r4', 'r4'\] at rows \[4, 5\]"):
        validate_dataset_frame(frame, columns=columns)
    with pytest.raises(ExpectationFailed, match="expect_column_to_exist on column 'label'"):
        validate_dataset_frame(frame)  # the canonical names are not this file's
    frame["digit"] = pd.Series([[1]] * n, dtype=object)
    with pytest.raises(ExpectationFailed, match="type_list on column 'digit'"):
        validate_dataset_frame(frame, columns=columns)


def test_text_modality():
    frame = pd.DataFrame({"label": [0, 1, 1], "text": ["a fine film", "dull", "-travelerthehorse"]})
    assert validate_dataset_frame(frame, modality="text", declared_classes=[0, 1]).success
    frame.loc[1, "text"] = ""
    report = validate_dataset_frame(frame, modality="text", raise_on_failure=False)
    assert not report.success
    (failure,) = report.failures
    assert failure["expectation"] == "expect_column_value_lengths_to_be_between"
    assert failure["column"] == "text"
    assert json.loads(json.dumps(report.to_dict()))["n_failed"] == 1


def test_suites_refuse_bad_settings():
    with pytest.raises(ValueError, match="modality must be 'image' or 'text', got 'audio'"):
        dataset_expectations(modality="audio")
    with pytest.raises(ValueError, match="declared_classes must hold integers, got 'a'"):
        dataset_expectations(declared_classes=["a"])
    with pytest.raises(ValueError, match="n_dataset_rows must be a positive integer"):
        activations_expectations(n_dataset_rows=0)
    with pytest.raises(TypeError, match="dataset frame must be a pandas DataFrame"):
        validate_dataset_frame({"label": [1]})


# --- activations ----------------------------------------------------------------------------


def _activations():
    return DIGITS.data.astype(np.float32) / 16.0  # 1797 x 64, stands in for a hidden layer


def test_clean_activations_pass():
    frame = activations_summary_frame(np.arange(1797), DIGITS.target, _activations())
    assert list(frame.columns) == ["index", "label", "activation_width", "activation_finite"]
    assert (frame["activation_width"] == 64).all() and frame["activation_finite"].all()
    assert validate_activations_frame(frame, n_dataset_rows=1797).success


def test_nan_activation_is_stopped():
    activations = _activations()
    activations[100, 5] = np.nan
    activations[200, 0] = np.inf
    frame = activations_summary_frame(np.arange(1797), DIGITS.target, activations)
    with pytest.raises(ExpectationFailed, match=(
        r"^activations validation failed: expect_column_values_to_be_in_set on column "
        r"'activation_finite': 2 of 1797 values unexpected, e.g. \[False, False\] "
        r"at rows \[100, 200\]$"
    )):
        validate_activations_frame(frame, n_dataset_rows=1797)


def test_ragged_activations_are_stopped():
    rows = list(_activations()[:50])
    rows[10] = rows[10][:60]
    frame = activations_summary_frame(np.arange(50), DIGITS.target[:50], rows)
    with pytest.raises(ExpectationFailed, match=(
        r"expect_column_unique_value_count_to_be_between on column 'activation_width': "
        r"observed 2 \(values: \['60', '64'\]\)"
    )):
        validate_activations_frame(frame)


def test_index_out_of_range_or_duplicated_is_stopped():
    indices = np.arange(50)
    indices[3] = 50
    frame = activations_summary_frame(indices, DIGITS.target[:50], _activations()[:50])
    with pytest.raises(ExpectationFailed, match=(
        r"expect_column_values_to_be_between on column 'index': 1 of 50 values unexpected, "
        r"e.g. \[50\] at rows \[3\]"
    )):
        validate_activations_frame(frame, n_dataset_rows=50)
    indices[3] = 4
    frame = activations_summary_frame(indices, DIGITS.target[:50], _activations()[:50])
    report = validate_activations_frame(frame, n_dataset_rows=50, raise_on_failure=False)
    assert [f["expectation"] for f in report.failures] == ["expect_column_values_to_be_unique"]


def test_summary_frame_refuses_mismatched_inputs():
    with pytest.raises(ValueError, match="differ in length: 3, 2, 3"):
        activations_summary_frame([0, 1, 2], [0, 1], np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"N x D .* got shape \(3,\)"):
        activations_summary_frame([0, 1, 2], [0, 1, 2], np.zeros(3))
    with pytest.raises(ValueError, match="activation of row 1 is not numeric"):
        activations_summary_frame([0, 1], [0, 1], [np.zeros(2), ["a", "b"]])


# --- per-class table ------------------------------------------------------------------------


def _report(label, verdict, size_ratio, silhouette):
    skipped = verdict == "skipped"
    return ClassReport(
        label=label, n_samples=20, n_clusters=0 if skipped else 2,
        cluster_sizes=() if skipped else (16, 4), suspicious_cluster=None if skipped else 1,
        size_ratio=size_ratio, silhouette=silhouette, exre_score=None, suspected_source=None,
        verdict=verdict, reason="test",
    )


def _result(reports):
    n = 20 * len(reports)
    labels = np.repeat([r.label for r in reports], 20)
    return DetectionResult(
        sample_ids=np.arange(n), labels=labels, segments=labels, clusters=np.zeros(n),
        is_poison=np.zeros(n, bool), poison_score=np.zeros(n), suspected_source=-np.ones(n),
        classes=tuple(reports),
    )


def test_classes_frame_of_a_result_passes():
    result = _result([_report(0, "clean", 0.45, 0.05), _report(1, "poisoned", 0.2, 0.31),
                      _report(2, "skipped", None, None)])
    assert validate_classes_frame(result.classes_frame()).success


def _classes_frame(rows):
    return pd.DataFrame(rows, columns=["label", "verdict", "size_ratio", "silhouette"])


def test_classes_frame_out_of_range_is_stopped():
    frame = _classes_frame([(0, "clean", 1.4, 0.05), (1, "skipped", None, None)])
    with pytest.raises(ExpectationFailed, match=(
        r"^classes validation failed: expect_column_values_to_be_between on column "
        r"'size_ratio': 1 of 2 values unexpected, e.g. \[1.4\] at rows \[0\]$"
    )):
        validate_classes_frame(frame)
    frame = _classes_frame([(0, "clean", 0.4, -1.5)])
    with pytest.raises(ExpectationFailed, match="column 'silhouette'.*-1.5"):
        validate_classes_frame(frame)


def test_null_size_ratio_only_allowed_for_skipped_classes():
    frame = _classes_frame([(0, "clean", None, 0.05), (1, "skipped", None, None)])
    with pytest.raises(ExpectationFailed, match=(
        r"expect_column_values_to_not_be_null on column 'size_ratio': 1 of 1 values are null "
        r"at rows \[0\]"
    )):
        validate_classes_frame(frame)
    report = validate_classes_frame(frame, raise_on_failure=False)
    json.dumps(report.to_dict(), allow_nan=False)  # row conditions and NaNs included
    frame.loc[0, "size_ratio"] = 0.45
    assert validate_classes_frame(frame).success
