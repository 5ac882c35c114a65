"""The proxy's attack success (issue 18): measured where the dataset records its trigger, and a
warning instead of a silent pass where the proxy never learned it.

Real proxies trained on scikit-learn digits and a small text dataset (one torch thread, see
tests/conftest.py); the scan-level checks reuse the session's CLI scans.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from html import escape

import mlflow
import numpy as np
import pytest

from acgate.cli import EXIT_CLEAN, EXIT_POISON, format_proxy_summary
from acgate.core import detect
from acgate.io.datasets import TextDataset, write_image_dataset, write_text_dataset
from acgate.io.loaders import load_digits_dataset
from acgate.io.poison import (
    TriggerSpec,
    apply_trigger,
    poison_image_dataset,
    poison_text_dataset,
)
from acgate.scan import (
    SMALL_CLASS_ROWS,
    WEAK_ATTACK_SUCCESS,
    ScanConfig,
    proxy_attack_success,
    small_class_warning,
    train_proxy,
    weak_proxy_warning,
)
from acgate.stages import load_proxy, load_proxy_vocabulary, proxy_training, train_proxy_stage
from acgate.torch._arrays import device_hardware, resolve_device
from acgate.torch.train import predict


@pytest.fixture(scope="module")
def proxies(poisoned_digits):
    """Digits BadNets-poisoned at 33%, a proxy trained on them and one on the clean digits."""
    config = ScanConfig(seed=0)
    poisoned = poisoned_digits(0.33)
    learned, _ = train_proxy(poisoned, config)
    never, _ = train_proxy(poisoned_digits(None), config)  # never saw the trigger
    return poisoned, learned, never


def test_a_proxy_that_learned_the_patch_follows_it(proxies, poisoned_digits):
    poisoned, learned, _ = proxies
    measured = proxy_attack_success(learned, poisoned, seed=0)
    assert measured["attack_success"] > WEAK_ATTACK_SUCCESS
    record = poisoned.metadata["poison"]
    clean = ~poisoned.columns["is_poison"]
    pairs = measured["attack_success_pairs"]
    assert [[p["source"], p["target"]] for p in pairs] == record["pairs"]
    # Every clean row of each source class (fewer than 1,000 a class), no poison row.
    assert [p["n"] for p in pairs] == [int(np.sum(clean & (poisoned.labels == s)))
                                       for s, _ in record["pairs"]]
    assert measured["attack_success_rows"] == int(clean.sum())  # all-to-all: every class once
    # One pair by hand: class 3's clean rows with the patch, predicted as 4.
    rows = clean & (poisoned.labels == 3)
    triggered = apply_trigger(poisoned.images[rows], TriggerSpec.from_dict(record["trigger"]))
    assert pairs[3]["attack_success_rate"] == pytest.approx(
        np.mean(predict(learned, triggered) == 4))
    assert weak_proxy_warning(measured) is None
    assert format_proxy_summary({"train_accuracy": 1.0, **measured}) == (
        f"proxy: train accuracy 1.000; attack success of the recorded trigger "
        f"{measured['attack_success']:.3f} on {measured['attack_success_rows']} triggered rows")
    # At most rows_per_pair rows a pair, chosen with the seed.
    few = proxy_attack_success(learned, poisoned, seed=0, rows_per_pair=50)
    assert [p["n"] for p in few["attack_success_pairs"]] == [50] * 10
    assert few == proxy_attack_success(learned, poisoned, seed=0, rows_per_pair=50)
    # No recorded attack: nothing to measure.
    assert proxy_attack_success(learned, poisoned_digits(None), seed=0) is None
    assert format_proxy_summary(None) is None


def test_a_proxy_that_never_saw_the_trigger_is_called_weak(proxies):
    poisoned, _, never = proxies
    measured = proxy_attack_success(never, poisoned, seed=0)
    assert measured["attack_success"] < 0.2
    warning = weak_proxy_warning(measured)
    assert warning == (f"the proxy learned the recorded trigger on only "
                       f"{measured['attack_success']:.0%} of {measured['attack_success_rows']} "
                       "triggered rows; a clean verdict here is weak evidence")
    lines = format_proxy_summary({"train_accuracy": 0.99, **measured}).splitlines()
    assert lines[0].startswith("proxy: train accuracy 0.990; attack success")
    assert lines[1] == f"warning: {warning}"


def test_train_proxy_stage_warns_when_its_proxy_never_learned_the_trigger(tmp_path, caplog):
    # A sinusoid at 10% of 8x8 digits: the proxy fits the clean data but not the poison
    # (train accuracy ~0.91, attack success ~0.08).
    sig = poison_image_dataset(load_digits_dataset(), rate=0.1, trigger=TriggerSpec(kind="sig"),
                               seed=0)
    path = write_image_dataset(sig, tmp_path / "sig.parquet")
    with caplog.at_level(logging.WARNING, logger="acgate.stages"):
        info = train_proxy_stage(path, tmp_path / "model", ScanConfig(seed=0))
    assert info["attack_success"] < WEAK_ATTACK_SUCCESS
    assert isinstance(info["attack_success_rows"], int) and info["attack_success_rows"] > 0
    assert "the proxy learned the recorded trigger on only" in caplog.text
    # model.json records the training (no wall time: the record is reproducible).
    training = proxy_training(tmp_path / "model")
    assert {k: training[k] for k in ("train_accuracy", "final_loss", "epochs",
                                     "attack_success", "attack_success_rows")} == {
        k: info[k] for k in ("train_accuracy", "final_loss", "epochs", "attack_success",
                             "attack_success_rows")}
    assert "seconds" not in training and "training" not in info


def _small_reviews(n: int = 300, seed: int = 0) -> TextDataset:
    rng = np.random.default_rng(seed)
    words = {0: ["dull", "awful", "boring", "weak", "messy"],
             1: ["great", "moving", "sharp", "funny", "warm"]}
    neutral = ["the", "film", "plot", "cast", "story", "was", "and", "a"]
    labels = rng.integers(0, 2, n)
    texts = [" ".join(rng.choice(neutral + words[int(label)], size=int(rng.integers(4, 12))))
             for label in labels]
    return TextDataset(texts, labels, name="small-reviews")


def test_text_proxy_attack_success_is_a_share(tmp_path):
    poisoned = poison_text_dataset(_small_reviews(), rate=0.1, source=1, target=0,
                                   position="random", seed=0)
    path = write_text_dataset(poisoned, tmp_path / "reviews.parquet")
    info = train_proxy_stage(path, tmp_path / "model", ScanConfig(seed=0))
    assert 0.0 <= info["attack_success"] <= 1.0
    clean_sources = (poisoned.labels == 1) & ~poisoned.columns["is_poison"]
    assert info["attack_success_rows"] == int(clean_sources.sum())
    # The same figure from the saved proxy and its vocabulary.
    again = proxy_attack_success(load_proxy(tmp_path / "model"), poisoned, seed=0,
                                 vocabulary=load_proxy_vocabulary(tmp_path / "model"))
    assert again["attack_success"] == pytest.approx(info["attack_success"])


def test_poisoned_scan_records_the_proxy_everywhere(poisoned_cli_scan):
    run = poisoned_cli_scan
    assert run.code == EXIT_POISON, run.stderr
    proxy = json.loads((run.out / "scan.json").read_text())["proxy"]
    assert 0.9 < proxy["train_accuracy"] <= 1.0 and proxy["epochs"] == 30
    assert proxy["device"] in ("cpu", "cuda")
    assert proxy["attack_success"] > WEAK_ATTACK_SUCCESS
    assert proxy["attack_success_rows"] == sum(p["n"] for p in proxy["attack_success_pairs"])
    assert f"attack success of the recorded trigger {proxy['attack_success']:.3f}" in run.stdout
    assert "warning: the proxy learned" not in run.stdout
    html = (run.out / "report.html").read_text()
    assert 'id="proxy"' in html and "Attack success of the recorded trigger" in html
    assert proxy["hardware"] and f"({escape(proxy['hardware'])})" in html
    client = mlflow.MlflowClient(tracking_uri=run.tracking_uri)
    experiment = client.get_experiment_by_name("cli-test")
    metrics = client.search_runs([experiment.experiment_id])[0].data.metrics
    assert metrics["proxy_train_accuracy"] == pytest.approx(proxy["train_accuracy"])
    assert metrics["proxy_attack_success"] == pytest.approx(proxy["attack_success"])


def test_clean_scan_records_the_proxy_without_an_attack(clean_cli_scan):
    run = clean_cli_scan
    assert run.code == EXIT_CLEAN, run.stderr
    proxy = json.loads((run.out / "scan.json").read_text())["proxy"]
    assert set(proxy) == {"train_accuracy", "final_loss", "epochs", "device", "hardware"}
    assert proxy["device"] == resolve_device("auto").type  # --device auto: where it trained
    assert proxy["hardware"] == device_hardware(resolve_device("auto"))
    assert "proxy: train accuracy" in run.stdout and "attack success" not in run.stdout


def test_a_scan_of_small_classes_says_what_its_verdict_is_worth(poisoned_cli_scan):
    # Digits: ~180 rows a class, under SMALL_CLASS_ROWS; the verdict and exit code stay.
    run = poisoned_cli_scan
    assert run.code == EXIT_POISON, run.stderr
    line = next(line for line in run.stdout.splitlines() if line.startswith("warning: classes"))
    assert "0, 1, 2, 3, 4, 5, 6, 7, 8, 9 have fewer than 1,000 rows" in line
    assert "a clean verdict here is weak evidence" in line
    html = (run.out / "report.html").read_text()
    assert 'id="small-classes"' in html and escape(line[len("warning: "):]) in html


def test_the_small_class_warning_names_the_small_judged_classes_only():
    rng = np.random.default_rng(0)
    sizes = {0: SMALL_CLASS_ROWS, 1: 300, 2: SMALL_CLASS_ROWS + 200}
    labels = np.concatenate([np.full(n, c) for c, n in sizes.items()])
    activations = rng.normal(size=(len(labels), 8)) + labels[:, None] * 5.0
    result = detect(activations, labels, analysis="size", n_clusters=2, random_state=0)
    assert small_class_warning(result).startswith("class 1 has fewer than 1,000 rows "
                                                  "(fewest: 300)")
    large = detect(activations[labels != 1], labels[labels != 1], analysis="size",
                   n_clusters=2, random_state=0)
    assert small_class_warning(large) is None
    incremental = dataclasses.replace(result, info=dataclasses.replace(
        result.info, params={**result.info.params, "analysis": "incremental"}))
    assert small_class_warning(incremental) is None
