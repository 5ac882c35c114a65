"""The issue's acceptance tests: BadNets on real digits, real proxy training, poison F1.

Measured with the defaults (PCA 10, stable candidate clusters, exclusionary reclassification,
seed 0): see bench/RESULTS.md "digits_quality"; the unpoisoned run flags nothing. Other seeds
reach lower F1 at 10% and flag a clean class now and then (bench/RESULTS.md "candidates").
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from acgate.core import flag_metrics


def poison_f1(digits_scan, poisoned_digits, rate):
    result = digits_scan(rate).result
    truth = np.asarray(poisoned_digits(rate).columns["is_poison"], dtype=bool)
    np.testing.assert_array_equal(result.sample_ids, np.arange(len(truth)))
    return flag_metrics(result, truth)["overall"]["f1"]


@pytest.mark.parametrize("rate", [0.10, 0.15, 0.33])
def test_poison_f1_meets_the_target(digits_scan, poisoned_digits, rate):
    f1 = poison_f1(digits_scan, poisoned_digits, rate)
    assert f1 >= 0.9, f"poison F1 {f1:.3f} at {rate:.0%} is below 0.9"


def test_cli_scan_at_33_percent_meets_the_floor(poisoned_cli_scan, poisoned_digits):
    report = json.loads((poisoned_cli_scan.out / "report.json").read_text())
    truth = np.asarray(poisoned_digits(0.33).columns["is_poison"], dtype=bool)
    flagged = np.zeros(len(truth), dtype=bool)
    flagged[report["flagged_indices"]] = True
    tp = int((flagged & truth).sum())
    assert 2 * tp / (flagged.sum() + truth.sum()) >= 0.9


def test_unpoisoned_run_flags_no_class(clean_cli_scan):
    report = json.loads((clean_cli_scan.out / "report.json").read_text())
    assert report["poisoned_classes"] == []
    assert report["flagged_indices"] == []


def test_two_runs_with_the_same_seed_flag_the_same_rows(digits_scan, poisoned_cli_scan):
    report = json.loads((poisoned_cli_scan.out / "report.json").read_text())
    assert report["flagged_indices"] == digits_scan(0.33).result.flagged_indices.tolist()
    assert len(report["flagged_indices"]) > 0
