"""Beyond the paper on real digits (real proxy training, real retrain): a blended trigger and
two clean classes merged under one label. Measured in bench/RESULTS.md ("beyond")."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from acgate.core import detect, flag_metrics
from acgate.io.datasets import ImageDataset
from acgate.io.loaders import load_digits_dataset
from acgate.io.poison import TriggerSpec, poison_image_dataset
from acgate.scan import ScanConfig, make_retrain, train_proxy
from acgate.torch.extract import extract_activations


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def scan(dataset: ImageDataset, seed: int = 0):
    config = ScanConfig(seed=seed)
    model, _ = train_proxy(dataset, config)
    activations, predictions = extract_activations(model, dataset.images)
    return detect(activations, dataset.labels, retrain_and_predict=make_retrain(dataset, config),
                  predictions=predictions, random_state=seed)


def test_blended_trigger_at_15_percent_is_found():
    data = poison_image_dataset(load_digits_dataset(), rate=0.15, seed=0,
                                trigger=TriggerSpec(kind="blend", alpha=0.1, seed=0))
    result = scan(data)
    f1 = flag_metrics(result, data.columns["is_poison"])["overall"]["f1"]
    assert f1 >= 0.9, f"blend alpha 0.1 at 15%: poison F1 {f1:.3f}"


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_two_clean_classes_merged_under_one_label_flag_at_most_one_class(seed):
    # bench/RESULTS.md "beyond": the merged class itself stays clean on some seeds; a clean
    # class is flagged on others (the known limit on ~180 images a class), never more than one.
    base = load_digits_dataset()
    labels = base.labels.copy()
    labels[labels == 1] = 0
    labels = np.where(labels > 1, labels - 1, labels)
    result = scan(ImageDataset(images=base.images, labels=labels, name="digits-0+1"), seed)
    assert len(result.poisoned_classes) <= 1, result.poisoned_classes
