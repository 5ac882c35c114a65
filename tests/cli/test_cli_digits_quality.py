"""Digits quality: BadNets on real digits, real proxy training and retrain.

The default ``make test`` keeps fast end-to-end checks with real training: a 33% scan finds the
poison with high precision, an unpoisoned scan flags at most one class, and the same seed flags
the same rows. One seed's exact F1 moves with the machine (the CPU's float kernels change the
proxy's training trajectory: seed 0 at 33% gave F1 0.94 on the machine of the last benchmark run
and 0.85 on the session's), so the targets are asserted where ``bench/RESULTS.md`` reports them:
over five seeds, mean and minimum, by the slow tests (``make test-all``).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from acgate.core import flag_metrics

SEEDS = (0, 1, 2, 3, 4)


def poison_metrics(digits_scan, poisoned_digits, rate, seed=0):
    result = digits_scan(rate, seed).result
    truth = np.asarray(poisoned_digits(rate, seed).columns["is_poison"], dtype=bool)
    np.testing.assert_array_equal(result.sample_ids, np.arange(len(truth)))
    return flag_metrics(result, truth)["overall"]


def test_cli_scan_at_33_percent_finds_the_poison(poisoned_cli_scan, poisoned_digits):
    report = json.loads((poisoned_cli_scan.out / "report.json").read_text())
    truth = np.asarray(poisoned_digits(0.33).columns["is_poison"], dtype=bool)
    flagged = np.zeros(len(truth), dtype=bool)
    flagged[report["flagged_indices"]] = True
    tp = int((flagged & truth).sum())
    assert tp / max(int(flagged.sum()), 1) >= 0.9, "precision"
    assert tp / int(truth.sum()) >= 0.6, "recall"
    assert len(report["poisoned_classes"]) >= 7


def test_unpoisoned_run_flags_at_most_one_class(clean_cli_scan):
    report = json.loads((clean_cli_scan.out / "report.json").read_text())
    assert len(report["poisoned_classes"]) <= 1
    assert len(report["flagged_indices"]) <= 0.02 * report["n_samples"]


# Both tests below fail on an Intel Xeon's proxies (10%: F1 0.944 / 0.823 / 0.760 / 0.523 /
# 0.765; unpoisoned seed 3 flags classes 1, 4 and 7): bench/RESULTS.md, variant ``xeon``.
@pytest.mark.slow
@pytest.mark.parametrize(("rate", "mean_floor", "min_floor"),
                         [(0.10, 0.70, 0.55), (0.15, 0.75, 0.60), (0.33, 0.85, 0.75)])
def test_poison_f1_over_five_seeds(digits_scan, poisoned_digits, rate, mean_floor, min_floor):
    f1 = [poison_metrics(digits_scan, poisoned_digits, rate, seed)["f1"] for seed in SEEDS]
    assert np.mean(f1) >= mean_floor and min(f1) >= min_floor, f"F1 per seed {f1}"


@pytest.mark.slow
def test_unpoisoned_runs_over_five_seeds_flag_at_most_one_class_each(digits_scan):
    flagged = [digits_scan(None, seed).result.poisoned_classes for seed in SEEDS]
    assert all(len(classes) <= 1 for classes in flagged), flagged
    assert sum(len(classes) for classes in flagged) <= 4, flagged


def test_two_runs_with_the_same_seed_flag_the_same_rows(digits_scan, poisoned_cli_scan):
    report = json.loads((poisoned_cli_scan.out / "report.json").read_text())
    assert report["flagged_indices"] == digits_scan(0.33).result.flagged_indices.tolist()
    assert len(report["flagged_indices"]) > 0
