"""Scan results that do not belong to the dataset are refused before any training."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from acgate.io.schema import write_parquet
from acgate.repair import plan_repair, run_repair, scan_fingerprints


def copy_scan(scanned, tmp_path, frame=None):
    """A copy of the scan folder, optionally with another samples table."""
    folder = tmp_path / "scan"
    shutil.copytree(scanned.samples_path.parent, folder)
    if frame is not None:
        write_parquet(pa.Table.from_pandas(frame, preserve_index=False),
                      folder / "samples.parquet", "samples")
    return folder / "samples.parquet"


def samples_frame(scanned):
    return scanned.result.to_frame()


def refused(scanned, samples_path, tmp_path, match, **kwargs):
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=match):
        run_repair(scanned.dataset_path, samples_path, None, out, **kwargs)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


def test_refuses_samples_of_a_dataset_with_another_row_count(scanned, tmp_path):
    frame = samples_frame(scanned).iloc[:-10]
    refused(scanned, copy_scan(scanned, tmp_path, frame), tmp_path, r"has \d+ rows but")


def test_refuses_a_scan_whose_fingerprint_differs(scanned, tmp_path):
    samples_path = copy_scan(scanned, tmp_path)
    scan_json = samples_path.parent / "scan.json"
    info = json.loads(scan_json.read_text())
    info["fingerprint"] = "0" * 64
    scan_json.write_text(json.dumps(info))
    refused(scanned, samples_path, tmp_path, r"fingerprint mismatch: .*scan\.json")


def test_refuses_a_wrong_fingerprint_argument(scanned, tmp_path):
    refused(scanned, scanned.samples_path, tmp_path, "fingerprint argument",
            fingerprint="f" * 64)


def test_reads_the_fingerprint_run_scan_writes(scanned):
    found = scan_fingerprints(scanned.samples_path)
    assert list(found.values()) == [json.loads(
        (scanned.samples_path.parent / "scan.json").read_text())["fingerprint"]]


def test_refuses_samples_whose_labels_differ(scanned, tmp_path):
    frame = samples_frame(scanned)
    frame["label"] = (frame["label"] + 1) % 10
    samples_path = copy_scan(scanned, tmp_path, frame)
    (samples_path.parent / "scan.json").unlink()
    refused(scanned, samples_path, tmp_path, "different dataset")


@pytest.mark.parametrize("shift", [1, -1])
def test_refuses_out_of_range_indices(scanned, tmp_path, shift):
    frame = samples_frame(scanned)
    frame["index"] = frame["index"] + shift
    refused(scanned, copy_scan(scanned, tmp_path, frame), tmp_path,
            r"column 'index' holds 1 value\(s\) outside")


def test_refuses_repeated_indices(scanned, tmp_path):
    frame = samples_frame(scanned)
    frame.loc[1, "index"] = frame.loc[0, "index"]
    refused(scanned, copy_scan(scanned, tmp_path, frame), tmp_path, "repeats row")


@pytest.mark.parametrize("kwargs, match", [
    ({"strategy": "retrain"}, "strategy"),
    ({"replay_fraction": 1.5}, "replay_fraction"),
])
def test_refuses_bad_settings(scanned, tmp_path, kwargs, match):
    refused(scanned, scanned.samples_path, tmp_path, match, **kwargs)


def test_plan_relabels_flagged_rows_and_drops_those_without_a_source():
    frame = pd.DataFrame({
        "index": np.array([3, 0, 2, 1, 4]),
        "is_poison": np.array([True, False, True, False, False]),
        "suspected_source": pd.array([5, None, None, None, None], dtype="Int64"),
    })
    labels = np.array([0, 1, 2, 3, 4])
    plan = plan_repair(frame, 5, labels, "relabel")
    np.testing.assert_array_equal(plan.keep_rows, [0, 1, 3, 4])
    np.testing.assert_array_equal(plan.new_labels, [0, 1, 5, 4])
    np.testing.assert_array_equal(plan.relabelled_rows, [3])
    np.testing.assert_array_equal(plan.removed_rows, [2])
    plan = plan_repair(frame, 5, labels, "remove")
    np.testing.assert_array_equal(plan.keep_rows, [0, 1, 4])
    np.testing.assert_array_equal(plan.removed_rows, [2, 3])
