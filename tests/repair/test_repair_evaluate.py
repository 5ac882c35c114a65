"""evaluate_backdoor and holdout_split on real digits."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from acgate.io.datasets import read_image_dataset
from acgate.io.loaders import load_digits_dataset
from acgate.io.poison import TriggerSpec, apply_trigger
from acgate.repair import evaluate_backdoor, holdout_split
from acgate.torch.byo import load_model
from acgate.torch.train import predict


@pytest.fixture(scope="module")
def poisoned_proxy(scanned):
    return load_model(scanned.model_path, module="acgate.torch.models:build_proxy",
                      module_kwargs={"name": "cnn", "input_shape": [1, 8, 8], "n_classes": 10})


def test_evaluate_backdoor_measures_the_recorded_attack(scanned, poisoned_proxy):
    test = read_image_dataset(scanned.test_path)
    record = scanned.poisoned.metadata["poison"]
    metrics = evaluate_backdoor(poisoned_proxy, test.images, test.labels, record["trigger"],
                                record["pairs"])
    assert metrics["n_test"] == len(test) and metrics["n_triggered"] == len(test)
    assert metrics["clean_accuracy"] > 0.9
    assert metrics["attack_success_rate"] > 0.5
    pair = metrics["per_pair"][3]
    images = apply_trigger(test.images[test.labels == 3], TriggerSpec.from_dict(record["trigger"]))
    assert pair["attack_success_rate"] == pytest.approx(
        np.mean(predict(poisoned_proxy, images) == 4))
    # Same spec as an object; a pair the attack never used scores low.
    same = evaluate_backdoor(poisoned_proxy, test.images, test.labels,
                             TriggerSpec.from_dict(record["trigger"]), record["pairs"])
    assert same == metrics
    other = evaluate_backdoor(poisoned_proxy, test.images, test.labels, record["trigger"],
                              [(3, 7)])
    assert other["attack_success_rate"] < 0.2


def test_evaluate_backdoor_reports_a_pair_without_test_images(scanned, poisoned_proxy):
    test = read_image_dataset(scanned.test_path)
    keep = test.labels != 2
    metrics = evaluate_backdoor(poisoned_proxy, test.images[keep], test.labels[keep],
                                TriggerSpec(), [(2, 3)])
    assert metrics["attack_success_rate"] is None
    assert metrics["per_pair"] == [{"source": 2, "target": 3, "n": 0,
                                    "attack_success_rate": None}]


def test_evaluate_backdoor_refuses_mismatched_shapes(poisoned_proxy):
    with pytest.raises(ValueError, match="one label each"):
        evaluate_backdoor(poisoned_proxy, np.zeros((3, 1, 8, 8), np.float32),
                          np.zeros(2, np.int64), TriggerSpec(), [(0, 1)])


def test_holdout_split_is_stratified_disjoint_and_seeded():
    digits = load_digits_dataset()
    train, test = holdout_split(digits, test_size=0.25, seed=0)
    assert len(train) + len(test) == len(digits)
    assert abs(len(test) - 0.25 * len(digits)) <= 1
    shares = np.bincount(test.labels, minlength=10) / np.bincount(digits.labels, minlength=10)
    assert np.all(np.abs(shares - 0.25) < 0.03)
    def images(part):
        return Counter(zip(part.labels.tolist(), (img.tobytes() for img in part.images)))

    assert images(train) + images(test) == images(digits)  # a partition of the rows
    again_train, _ = holdout_split(digits, test_size=0.25, seed=0)
    np.testing.assert_array_equal(again_train.images, train.images)
    other_train, _ = holdout_split(digits, test_size=0.25, seed=1)
    assert not np.array_equal(other_train.labels, train.labels)
